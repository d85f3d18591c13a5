"""The warehouse export's order and cursor.

`webhook_events.export_seq` numbers inbox rows in insert order (existing rows get
numbers too); `export_cursor` holds, per export, the last number written to object
storage. f/dodo/lib/warehouse.py moves the cursor only after the files are written.
"""

SQL = """
ALTER TABLE webhook_events ADD COLUMN export_seq bigserial;
CREATE UNIQUE INDEX webhook_events_export_seq_idx ON webhook_events (export_seq);
CREATE TABLE export_cursor (
    name       text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    last_keys  jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""
