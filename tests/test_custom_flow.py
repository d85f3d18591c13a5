"""The extension flow f/dodo/custom, as shipped and with the README's inventory example."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml

from f.dodo.lib.db import dsn_to_resource
from f.dodo.lib.normalizer import normalize_event
from local_runner import Config, Runner
from tests.ops_stream import BUSINESS
from tools import lint

ROOT = Path(__file__).resolve().parent.parent

# The README's example, verbatim: keep the two in step.
EXAMPLE_FLOW = """\
summary: Custom business logic (extension point)
value:
  modules:
    - id: inventory
      summary: Decrement stock for each product in the cart
      skip_if:
        expr: flow_input.event.event_type !== "payment.succeeded"
      value:
        type: rawscript
        language: python3
        content: '!inline inventory.py'
        input_transforms:
          event:
            type: javascript
            expr: flow_input.event
          db:
            type: static
            value: $res:f/dodo/postgres
schema:
  type: object
  properties:
    event:
      type: object
  required: [event]
"""
EXAMPLE_STEP = '''\
from typing import TypedDict

from f.dodo.lib import db as pg


class postgresql(TypedDict):
    host: str
    port: int
    user: str
    password: str
    dbname: str


def main(event: dict, db: postgresql) -> dict:
    key = event.get("webhook_id") or f"{event['event_type']}:{event['entity_id']}"
    cart = (event.get("data") or {}).get("product_cart") or []
    with pg.connect(db, migrate=False) as conn, conn.transaction():
        # Once per event: a replayed event finds its move and changes nothing.
        moved = conn.execute(
            "INSERT INTO public.inventory_moves (webhook_id) VALUES (%s) ON CONFLICT DO NOTHING", [key])
        if moved.rowcount == 0:
            return {"skipped": "already applied", "webhook_id": key}
        for item in cart:
            conn.execute("UPDATE public.inventory SET stock = stock - %s WHERE product_id = %s",
                         [int(item.get("quantity") or 1), item["product_id"]])
    return {"decremented": cart, "webhook_id": key}
'''
EXAMPLE_SQL = """\
CREATE TABLE public.inventory (product_id text PRIMARY KEY, stock integer NOT NULL);
CREATE TABLE public.inventory_moves (webhook_id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
"""


def event(event_type: str, webhook_id: str, cart: list[dict]) -> dict:
    envelope = {"business_id": BUSINESS, "type": event_type, "timestamp": "2026-03-01T10:00:00Z",
                "data": {"payment_id": f"pay_{webhook_id}", "status": event_type.split(".")[1],
                         "total_amount": 5000, "currency": "USD", "product_cart": cart,
                         "customer": {"customer_id": "cus_1", "email": "a@example.com", "name": "A"}}}
    return normalize_event(envelope, webhook_id)


def test_shipped_flow_is_a_no_op_identity():
    flow = yaml.safe_load((ROOT / "f/dodo/custom__flow/flow.yaml").read_text())
    assert [m["value"]["type"] for m in flow["value"]["modules"]] == ["identity"]
    assert flow["schema"]["required"] == ["event"]
    ev = event("payment.succeeded", "msg_1", [{"product_id": "pdt_1", "quantity": 1}])
    run = Runner(ROOT, Config()).run_flow("f/dodo/custom", {"event": ev})
    assert run.success and run.result == {"event": ev}


@pytest.fixture
def inventory(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.inventory, public.inventory_moves")
        conn.execute(EXAMPLE_SQL)
        conn.execute("INSERT INTO public.inventory VALUES ('pdt_1', 10), ('pdt_2', 5)")
        yield conn
        conn.execute("DROP TABLE public.inventory, public.inventory_moves")


def test_readme_inventory_example(tmp_path, pg_url, inventory):
    flow_dir = tmp_path / "f/dodo/custom__flow"
    flow_dir.mkdir(parents=True)
    (flow_dir / "flow.yaml").write_text(EXAMPLE_FLOW)
    (flow_dir / "inventory.py").write_text(EXAMPLE_STEP)
    assert lint.check_yaml(tmp_path) == [] and lint.check_flows(tmp_path) == []
    runner = Runner(tmp_path, Config(resources={"f/dodo/postgres": dsn_to_resource(pg_url)}))

    paid = event("payment.succeeded", "msg_paid", [{"product_id": "pdt_1", "quantity": 3},
                                                   {"product_id": "pdt_2", "quantity": 1}])
    first = runner.run_flow("f/dodo/custom", {"event": paid})
    again = runner.run_flow("f/dodo/custom", {"event": paid})  # a replay
    failed = runner.run_flow("f/dodo/custom", {"event": event("payment.failed", "msg_failed",
                                                               [{"product_id": "pdt_1", "quantity": 2}])})
    assert first.success and again.success and failed.success
    assert again.result["skipped"] == "already applied"
    stock = dict(inventory.execute("SELECT product_id, stock FROM public.inventory").fetchall())
    assert stock == {"pdt_1": 7, "pdt_2": 4}
