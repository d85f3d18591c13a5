"""A stand-in of the Dodo Payments API's list and retrieve endpoints on pytest-httpserver.

Follows the documented API (docs.dodopayments.com/api-reference, and the dodopayments
SDK 1.123.0 resources): `GET /payments|/subscriptions|/refunds|/disputes` take
`page_size` (default 10, max 100), `page_number` (0-based, default 0) and
`created_at_gte` / `created_at_lte` (inclusive) and answer `{"items": [...]}`, newest
first; list items are summaries (the fields of the SDK's *ListResponse / RefundListItem
models); `GET /<kind>/<id>` answers the full object. Every request must carry
`Authorization: Bearer <key>`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from dodopayments.types import (
    DisputeListResponse,
    PaymentListResponse,
    RefundListItem,
    SubscriptionListResponse,
)
from werkzeug.wrappers import Request, Response

LIST_MODELS = {
    "payments": PaymentListResponse, "subscriptions": SubscriptionListResponse,
    "refunds": RefundListItem, "disputes": DisputeListResponse,
}
ID_KEYS = {"payments": "payment_id", "subscriptions": "subscription_id", "refunds": "refund_id",
           "disputes": "dispute_id"}
API_KEY = "test_dodo_api_key"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class DodoApi:
    def __init__(self, httpserver, objects: dict[str, dict[str, dict]]):
        self.objects = objects  # kind -> id -> full object
        self.requests: list[tuple[str, dict]] = []
        self.url = httpserver.url_for("/").rstrip("/")
        for kind in LIST_MODELS:
            httpserver.expect_request(f"/{kind}", method="GET").respond_with_handler(self._lister(kind))
            httpserver.expect_request(re.compile(rf"^/{kind}/[^/]+$"), method="GET").respond_with_handler(
                self._getter(kind))

    @property
    def resource(self) -> dict:
        return {"api_key": API_KEY, "environment": "test_mode", "base_url": self.url}

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return Response(json.dumps({"code": "UNAUTHORIZED"}), 401, content_type="application/json")
        return None

    def _lister(self, kind: str):
        fields = set(LIST_MODELS[kind].model_fields)

        def handle(request: Request) -> Response:
            self.requests.append((request.path, dict(request.args)))
            if (denied := self._auth(request)) is not None:
                return denied
            size, number = int(request.args.get("page_size", 10)), int(request.args.get("page_number", 0))
            if not (1 <= size <= 100) or number < 0:
                return Response(json.dumps({"code": "INVALID_REQUEST"}), 422, content_type="application/json")
            items = sorted(self.objects[kind].values(), key=lambda o: o["created_at"], reverse=True)
            if "created_at_gte" in request.args:
                items = [o for o in items if _time(o["created_at"]) >= _time(request.args["created_at_gte"])]
            if "created_at_lte" in request.args:
                items = [o for o in items if _time(o["created_at"]) <= _time(request.args["created_at_lte"])]
            page = [{k: v for k, v in o.items() if k in fields} for o in items[number * size:(number + 1) * size]]
            return Response(json.dumps({"items": page}), 200, content_type="application/json")

        return handle

    def _getter(self, kind: str):
        def handle(request: Request) -> Response:
            self.requests.append((request.path, dict(request.args)))
            if (denied := self._auth(request)) is not None:
                return denied
            obj = self.objects[kind].get(request.path.rsplit("/", 1)[1])
            if obj is None:
                return Response(json.dumps({"code": "NOT_FOUND"}), 404, content_type="application/json")
            return Response(json.dumps(obj), 200, content_type="application/json")

        return handle
