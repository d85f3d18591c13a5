"""A stand-in of the Dodo Payments API's list and retrieve endpoints on pytest-httpserver.

Follows the documented API (docs.dodopayments.com/api-reference, and the dodopayments
SDK 1.123.0 resources): `GET /payments|/subscriptions|/refunds|/disputes` take
`page_size` (default 10, max 100), `page_number` (0-based, default 0) and
`created_at_gte` / `created_at_lte` (inclusive) and answer `{"items": [...]}`, newest
first; list items are summaries (the fields of the SDK's *ListResponse / RefundListItem
models); `GET /<kind>/<id>` answers the full object. Every request must carry
`Authorization: Bearer <key>`. `page_number` is capped (the SDK's PaymentListParams:
"Capped to bound OFFSET-based deep pagination"; Dodo does not publish the cap): past
`max_page_number` the stand-in answers 422, and a query parameter the SDK's list params
do not have is an assertion (surfaced by `httpserver.check_assertions()`).

Webhook endpoints (dodopayments SDK `resources/webhooks/webhooks.py`, types
`webhook_create_params`, `webhook_update_params`, `webhook_details`, pagination
`SyncCursorPagePagination`): `GET /webhooks?limit=&iterator=` answers `{"data": [...],
"iterator": <next or null>, "done": bool}`; `POST /webhooks` takes the create params
(`url` required, `filter_types` known event types, `idempotency_key`: a repeated key answers
the endpoint it created); `PATCH /webhooks/<id>` the update params; `GET
/webhooks/<id>/secret` answers `{"secret": "whsec_..."}`. Unknown body keys are a 422, as
a strict API would answer, so a request shape the SDK would not send fails the test.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import typing
from datetime import datetime, timezone
from typing import Callable

from dodopayments.types import (
    DisputeListResponse,
    PaymentListResponse,
    RefundListItem,
    SubscriptionListResponse,
)
from dodopayments.types.webhook_create_params import WebhookCreateParams
from dodopayments.types.webhook_event_type import WebhookEventType
from dodopayments.types.webhook_update_params import WebhookUpdateParams
from werkzeug.wrappers import Request, Response

LIST_MODELS = {
    "payments": PaymentListResponse, "subscriptions": SubscriptionListResponse,
    "refunds": RefundListItem, "disputes": DisputeListResponse,
}
ID_KEYS = {"payments": "payment_id", "subscriptions": "subscription_id", "refunds": "refund_id",
           "disputes": "dispute_id"}
API_KEY = "test_dodo_api_key"
# Query parameters of the SDK's *ListParams used here (filters such as status are allowed too).
LIST_PARAMS = {"page_size", "page_number", "created_at_gte", "created_at_lte", "customer_id", "status",
               "brand_id", "product_id", "subscription_id", "currency", "payment_id", "dispute_status",
               "dispute_stage"}
MAX_PAGE_NUMBER = 9  # the stand-in's cap (the real one is unpublished)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class DodoApi:
    def __init__(self, httpserver, objects: dict[str, dict[str, dict]] | None = None,
                 environment: str = "test_mode", max_page_number: int = MAX_PAGE_NUMBER):
        self.objects = objects or {kind: {} for kind in LIST_MODELS}  # kind -> id -> full object
        self.max_page_number = max_page_number
        self.environment = environment
        self.requests: list[tuple[str, dict]] = []
        self.url = httpserver.url_for("/").rstrip("/")
        self.webhooks: dict[str, dict] = {}  # id -> WebhookDetails fields
        self.secrets: dict[str, str] = {}
        self.writes: list[tuple[str, str, dict]] = []  # (method, path, body) of webhook writes
        self._ids = itertools.count(1)
        self.endless_webhook_pages: Callable[[int], str] | None = None  # request number -> the cursor answered
        self._idempotency: dict[str, str] = {}
        httpserver.expect_request("/webhooks", method="GET").respond_with_handler(self._list_webhooks)
        httpserver.expect_request("/webhooks", method="POST").respond_with_handler(self._create_webhook)
        httpserver.expect_request(re.compile(r"^/webhooks/[^/]+/secret$"), method="GET").respond_with_handler(
            self._webhook_secret)
        httpserver.expect_request(re.compile(r"^/webhooks/[^/]+$"), method="PATCH").respond_with_handler(
            self._update_webhook)
        httpserver.expect_request(re.compile(r"^/webhooks/[^/]+$"), method="GET").respond_with_handler(
            self._get_webhook)
        for kind in LIST_MODELS:
            httpserver.expect_request(f"/{kind}", method="GET").respond_with_handler(self._lister(kind))
            httpserver.expect_request(re.compile(rf"^/{kind}/[^/]+$"), method="GET").respond_with_handler(
                self._getter(kind))

    @property
    def resource(self) -> dict:
        return {"api_key": API_KEY, "environment": self.environment, "base_url": self.url}

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
            assert set(request.args) <= LIST_PARAMS, sorted(set(request.args) - LIST_PARAMS)
            size, number = int(request.args.get("page_size", 10)), int(request.args.get("page_number", 0))
            if not (1 <= size <= 100) or number < 0:
                return Response(json.dumps({"code": "INVALID_REQUEST"}), 422, content_type="application/json")
            if number > self.max_page_number:
                return Response(json.dumps({"code": "INVALID_REQUEST", "message": "page_number is too large: "
                                            "narrow the created_at range"}), 422, content_type="application/json")
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

    # --- webhook endpoints ----------------------------------------------------------------

    def add_webhook(self, url: str, **fields) -> str:
        """An endpoint made elsewhere (the dashboard); returns its id."""
        wid = f"ep_{next(self._ids):04d}"
        now = datetime.now(timezone.utc).isoformat()
        self.webhooks[wid] = {"id": wid, "url": url, "description": fields.get("description") or "",
                              "metadata": fields.get("metadata") or {}, "created_at": now, "updated_at": now,
                              "disabled": bool(fields.get("disabled")), "filter_types": fields.get("filter_types") or [],
                              "rate_limit": fields.get("rate_limit")}
        self.rotate_secret(wid)
        return wid

    def rotate_secret(self, wid: str) -> str:
        """A new signing secret, as the dashboard's "rotate" makes."""
        self.secrets[wid] = "whsec_" + base64.b64encode(f"{wid}-{len(self.writes)}-{next(self._ids)}".encode()
                                                        .ljust(32, b"k")[:32]).decode()
        return self.secrets[wid]

    def _error(self, status: int, message: str) -> Response:
        return Response(json.dumps({"code": "INVALID_REQUEST", "message": message}), status,
                        content_type="application/json")

    def _body(self, request: Request, params: type, required: tuple[str, ...] = ()) -> dict | Response:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return self._error(400, "body is not JSON")
        allowed = typing.get_type_hints(params)
        unknown = sorted(set(body) - set(allowed))
        missing = [k for k in required if not body.get(k)]
        types = set(typing.get_args(WebhookEventType))
        bad = [t for t in body.get("filter_types") or [] if t not in types]
        if not isinstance(body, dict) or unknown or missing or bad:
            return self._error(422, f"unknown {unknown}, missing {missing}, bad filter_types {bad}")
        return body

    def _list_webhooks(self, request: Request) -> Response:
        self.requests.append((request.path, dict(request.args)))
        if (denied := self._auth(request)) is not None:
            return denied
        limit = int(request.args.get("limit", 10))
        if self.endless_webhook_pages is not None:  # a pager that never says done (bounded here: 1,000)
            cursor = self.endless_webhook_pages(len(self.requests))
            if not self.webhooks:
                self.add_webhook("https://elsewhere.example/hook")
            other = next(iter(self.webhooks.values()))
            return Response(json.dumps({"data": [other], "done": len(self.requests) > 1000, "iterator": cursor}),
                            200, content_type="application/json")
        ids = sorted(self.webhooks)
        start = ids.index(request.args["iterator"]) + 1 if request.args.get("iterator") else 0
        page = ids[start:start + limit]
        done = start + limit >= len(ids)
        return Response(json.dumps({"data": [self.webhooks[i] for i in page], "done": done,
                                    "iterator": None if done else page[-1]}), 200, content_type="application/json")

    def _create_webhook(self, request: Request) -> Response:
        self.requests.append((request.path, {}))
        if (denied := self._auth(request)) is not None:
            return denied
        body = self._body(request, WebhookCreateParams, ("url",))
        if isinstance(body, Response):
            return body
        self.writes.append(("POST", request.path, body))
        key = body.get("idempotency_key")
        if key and key in self._idempotency:
            return Response(json.dumps(self.webhooks[self._idempotency[key]]), 200, content_type="application/json")
        wid = self.add_webhook(**{k: v for k, v in body.items() if k not in ("headers", "idempotency_key")})
        if key:
            self._idempotency[key] = wid
        return Response(json.dumps(self.webhooks[wid]), 200, content_type="application/json")

    def _found(self, request: Request, suffix: str = "") -> str | Response:
        if (denied := self._auth(request)) is not None:
            return denied
        wid = request.path.removesuffix(suffix).rsplit("/", 1)[1]
        return wid if wid in self.webhooks else Response(json.dumps({"code": "NOT_FOUND"}), 404,
                                                         content_type="application/json")

    def _get_webhook(self, request: Request) -> Response:
        self.requests.append((request.path, {}))
        wid = self._found(request)
        return wid if isinstance(wid, Response) else Response(json.dumps(self.webhooks[wid]), 200,
                                                              content_type="application/json")

    def _update_webhook(self, request: Request) -> Response:
        self.requests.append((request.path, {}))
        wid = self._found(request)
        if isinstance(wid, Response):
            return wid
        body = self._body(request, WebhookUpdateParams)
        if isinstance(body, Response):
            return body
        self.writes.append(("PATCH", request.path, body))
        self.webhooks[wid].update({k: v for k, v in body.items() if v is not None},
                                  updated_at=datetime.now(timezone.utc).isoformat())
        return Response(json.dumps(self.webhooks[wid]), 200, content_type="application/json")

    def _webhook_secret(self, request: Request) -> Response:
        self.requests.append((request.path, {}))
        wid = self._found(request, "/secret")
        return wid if isinstance(wid, Response) else Response(json.dumps({"secret": self.secrets[wid]}), 200,
                                                              content_type="application/json")
