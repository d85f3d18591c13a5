"""The delivery ledger: one row per side effect (webhook_id, sink, channel).

`status` pending | sent | failed | skipped; `attempts` and `last_error` say what
happened; `external_id` is the provider's id (Slack ts, Message-ID, Twilio sid, HubSpot
record id); `detail` holds what a deferred delivery needs (the daily digest's line).
Used by f/dodo/lib/ledger.py.
"""

SQL = """
CREATE TABLE delivery_ledger (
    webhook_id  text        NOT NULL,
    sink        text        NOT NULL,
    channel     text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    external_id text,
    detail      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook_id, sink, channel)
);
CREATE INDEX delivery_ledger_open ON delivery_ledger (sink, channel, created_at)
    WHERE status IN ('pending', 'failed');
"""
