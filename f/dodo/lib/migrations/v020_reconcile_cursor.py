"""The reconciliation cursor: per object kind, where the last complete run started.

`f/dodo/reconcile` lists objects created since `cursor_at` minus its look-back window
and moves the cursor only after a run that recorded everything it found, so a failed
run is retried from the same place. `last_result` holds that run's counts.
"""

SQL = """
CREATE TABLE reconcile_cursor (
    kind text PRIMARY KEY CHECK (kind IN ('payments', 'subscriptions', 'refunds', 'disputes')),
    cursor_at timestamptz NOT NULL,
    last_run_at timestamptz NOT NULL DEFAULT now(),
    last_result jsonb
);
"""
