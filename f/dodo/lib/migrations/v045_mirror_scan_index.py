"""An index for the MySQL mirror's page query (f/dodo/lib/mysql_mirror.py `_PAGE`).

Each mirror run reads processed payment, refund and subscription deliveries after its
cursor in `(processed_at, webhook_id)` order. Without this index that is a scan and a
sort of every processed row on each tick; with it, a range read of the new rows. Partial
(the query's own predicate), so the record step's inserts of other rows do not maintain it.
"""

SQL = """
CREATE INDEX webhook_events_mirror_scan_idx ON webhook_events (processed_at, webhook_id)
 WHERE status = 'processed' AND category IN ('payment', 'refund', 'subscription');
"""
