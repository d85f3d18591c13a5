"""Reconciliation heals the sinks: what webhooks missed reaches the CRM and notifications.

An object reconciliation records (a synthetic event `reconcile:<kind>:<id>:<hash>`) goes
through the same sink code as a delivery: `crm.sync` (HubSpot contact and note) and
`notify.notify` (routing rules: Slack, email, SMS, digest). Both record each send in the
delivery ledger under the synthetic event's id, so a second run, or a replay, sends
nothing twice. A sink that fails marks the inbox row failed at that step, so
`f/dodo/replay` retries it like any failed delivery.

Families: payments, refunds, disputes and subscriptions (those reconciliation lists).
"""

from __future__ import annotations

import os
from typing import Callable

from f.dodo.lib import alerting, crm, notify, store
from f.dodo.lib import destinations as dests
from f.dodo.lib import routing as rules
from f.dodo.lib import workspace as ws
from f.dodo.lib.hubspot import API, HubSpot
from f.dodo.lib.normalizer import normalize_event


def workspace_sinks() -> tuple[HubSpot | None, rules.Routing, notify.Transports]:
    """The HubSpot client, routing and notification transports the workspace configures
    (optional integrations looked up, never a static `$res:` that fails when absent)."""
    hub = ws.optional_resource(ws.INTEGRATIONS["hubspot"])
    client = HubSpot(hub["token"], os.environ.get("DODO_HUBSPOT_API_URL", API)) if hub and hub.get("token") else None
    return client, *alerting.workspace_notifications()


def workspace_destinations() -> dict:
    """The per-event destinations (analytics, campaigns, calendar) the workspace configures."""
    return {name: ws.optional_resource(path) for name, path in ws.DESTINATIONS.items()}


def sinks(conn, hubspot_client, routing, transports, destinations: dict | None = None) -> Callable[[str, dict], str]:
    """The `on_recorded` hook of `reconcile.reconcile`: run the sinks for one event (the
    CRM, notifications and, when given, the per-event destinations: lib/destinations.py)."""
    def heal(webhook_id: str, envelope: dict) -> str:
        event = normalize_event(envelope, webhook_id)
        done = []
        steps = [("crm", lambda: crm.sync(conn, event, hubspot_client)),
                 ("notify", lambda: notify.notify(conn, event, routing, transports))]
        if any((destinations or {}).values()):  # none configured: nothing to say
            steps.append(("destinations", lambda: dests.deliver(conn, event, destinations)))
        for step, run in steps:
            try:
                run()
                done.append(f"{step} done")
            except Exception as exc:  # noqa: BLE001 - recorded for replay, reported in the drift row
                store.mark_failed(conn, webhook_id, f"{type(exc).__name__}: {exc}", step, event=event)
                done.append(f"{step} failed ({type(exc).__name__}): replay {webhook_id}")
        return ", ".join(done)

    return heal
