"""The extension flow f/dodo/custom, as shipped and with the README's inventory example."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from f.dodo.lib import db as dblib
from f.dodo.lib.db import dsn_to_resource
from f.dodo.lib.normalizer import normalize_event
from local_runner import Config, Runner
from tests.ops_stream import BUSINESS
from tools import lint

ROOT = Path(__file__).resolve().parent.parent

README = (ROOT / "README.md").read_text()


def readme_block(after: str, lang: str) -> str:
    """The fenced block following `after` in the README: the test runs what users read."""
    return re.search(re.escape(after) + r".*?```" + lang + r"\n(.*?)```", README, re.S).group(1)


EXAMPLE_SQL = readme_block("First the tables:", "sql")
EXAMPLE_FLOW = readme_block("`f/dodo/custom__flow/flow.yaml`:", "yaml")
EXAMPLE_STEP = readme_block("`f/dodo/custom__flow/inventory.py`:", "python")


def event(event_type: str, webhook_id: str, cart: list[dict]) -> dict:
    envelope = {"business_id": BUSINESS, "type": event_type, "timestamp": "2026-03-01T10:00:00Z",
                "data": {"payment_id": f"pay_{webhook_id}", "status": event_type.split(".")[1],
                         "total_amount": 5000, "currency": "USD", "product_cart": cart,
                         "customer": {"customer_id": "cus_1", "email": "a@example.com", "name": "A"}}}
    return normalize_event(envelope, webhook_id)


def test_shipped_flow_is_empty_and_the_entry_flow_calls_it_only_when_it_has_steps():
    flow = yaml.safe_load((ROOT / "f/dodo/custom__flow/flow.yaml").read_text())
    assert flow["value"]["modules"] == []
    entry = yaml.safe_load((ROOT / "f/dodo/webhook__flow/flow.yaml").read_text())["value"]
    custom = next(m for m in entry["modules"] if m["id"] == "custom")["value"]
    # a branchone whose empty default pushes no job (worker_flow.rs EmptyInnerFlows)
    assert custom["type"] == "branchone" and custom["default"] == []
    (branch,) = custom["branches"]
    assert branch["expr"] == "flow_input.custom === true"
    assert [m["value"] for m in branch["modules"]] == [
        {"type": "flow", "path": "f/dodo/custom",
         "input_transforms": {"event": {"type": "javascript",
                                        "expr": "flow_input.record ? flow_input.normalized : results.normalize_record.event"}}}]
    assert flow["schema"]["required"] == ["event"]
    ev = event("payment.succeeded", "msg_1", [{"product_id": "pdt_1", "quantity": 1}])
    run = Runner(ROOT, Config()).run_flow("f/dodo/custom", {"event": ev})
    assert run.success and run.result == {"event": ev}


@pytest.fixture
def inventory(pg_url):
    with dblib.connect(pg_url, check=False) as conn:
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


EXAMPLE_STEP_TS = readme_block("`f/dodo/custom__flow/inventory.ts`", "typescript")


def test_readme_inventory_example_in_typescript(tmp_path, pg_url, inventory):
    """The README's TypeScript twin: the same flow with `language: bun`, run on Bun."""
    flow_dir = tmp_path / "f/dodo/custom__flow"
    flow_dir.mkdir(parents=True)
    flow = EXAMPLE_FLOW.replace("language: python3", "language: bun").replace("inventory.py", "inventory.ts")
    assert "language: bun" in flow and "!inline inventory.ts" in flow
    (flow_dir / "flow.yaml").write_text(flow)
    (flow_dir / "inventory.ts").write_text(EXAMPLE_STEP_TS)
    assert lint.check_yaml(tmp_path) == []
    runner = Runner(tmp_path, Config(resources={"f/dodo/postgres": dsn_to_resource(pg_url)}))

    paid = event("payment.succeeded", "msg_paid_ts", [{"product_id": "pdt_1", "quantity": 3},
                                                      {"product_id": "pdt_2", "quantity": 1}])
    first = runner.run_flow("f/dodo/custom", {"event": paid})
    again = runner.run_flow("f/dodo/custom", {"event": paid})  # a replay
    failed = runner.run_flow("f/dodo/custom", {"event": event("payment.failed", "msg_failed_ts",
                                                               [{"product_id": "pdt_1", "quantity": 2}])})
    assert first.success and again.success and failed.success, (first.result, again.result, failed.result)
    assert first.result == {"decremented": [{"product_id": "pdt_1", "quantity": 3},
                                            {"product_id": "pdt_2", "quantity": 1}], "webhook_id": "msg_paid_ts"}
    assert again.result == {"skipped": "already applied", "webhook_id": "msg_paid_ts"}
    assert [j.kind for j in first.jobs] == ["flow", "rawscript"]
    stock = dict(inventory.execute("SELECT product_id, stock FROM public.inventory").fetchall())
    assert stock == {"pdt_1": 7, "pdt_2": 4}


def _entry_steps(run) -> list[str]:
    return [j.step_id or j.kind for j in run.jobs]


@pytest.mark.parametrize("schema_name", ["dodo"])  # the flows use their scripts' default schema
def test_the_entry_flow_calls_custom_only_when_it_has_steps(tmp_path, db, inventory, outbox):
    """Empty (as shipped): no job for f/dodo/custom. With the README's step: its branch,
    the flow and the step, 3 jobs more, and the step sees the normalised event."""
    from local_runner.demo import bundle_config  # noqa: PLC0415
    from tests.fixture_data import FIXTURE_SECRET, envelope, sign  # noqa: PLC0415

    def delivery(wid: str, product: str) -> dict:
        env = envelope("payment.succeeded")
        env["data"]["payment_id"] = f"pay_{wid}"
        env["data"]["product_cart"] = [{"product_id": product, "quantity": 2}]
        body = json.dumps(env)
        return {"kind": "webhook", "body": env, "raw_string": body, "query": {},
                "headers": {k.replace("-", "_"): v for k, v in sign(body, FIXTURE_SECRET, wid).items()}}

    config = bundle_config(db.url, FIXTURE_SECRET)
    shipped = Runner(ROOT, config).run_flow("f/dodo/webhook", event=delivery("msg_custom_empty", "pdt_1"))
    assert shipped.success and shipped.job_count == 8
    assert not {"custom", "custom/branch-0", "custom_flow"} & set(_entry_steps(shipped))

    shutil.copytree(ROOT / "f", tmp_path / "f")
    (tmp_path / "f/dodo/custom__flow/flow.yaml").write_text(EXAMPLE_FLOW)
    (tmp_path / "f/dodo/custom__flow/inventory.py").write_text(EXAMPLE_STEP)
    extended = Runner(tmp_path, config).run_flow("f/dodo/webhook", event=delivery("msg_custom_steps", "pdt_2"))
    assert extended.success, extended.result
    assert extended.job_count == 8 + 3
    assert {"custom/branch-0", "custom_flow", "inventory"} <= set(_entry_steps(extended))
    assert extended.result == {"decremented": [{"product_id": "pdt_2", "quantity": 2}],
                               "webhook_id": "msg_custom_steps"}
    stock = dict(inventory.execute("SELECT product_id, stock FROM public.inventory").fetchall())
    assert stock == {"pdt_1": 10, "pdt_2": 3}
