"""The bundle's migrations in order (f/dodo/lib/migrations/vNNN_name.py) and the schema
version the code needs. Without the database driver: the flow's preprocessor puts LATEST
in the record call (f/dodo/lib/record_call.py), and record_delivery(jsonb) refuses a
schema behind it. f/dodo/lib/schema.py applies them."""

MIGRATIONS = (
    "v001_tables",
    "v002_record_event",
    "v003_revenue_views",
    "v010_delivery_ledger",
    "v011_ledger_lease",
    "v015_ledger_unknown",
    "v020_reconcile_cursor",
    "v030_delivery_count",
    "v040_warehouse_export",
    "v045_mirror_scan_index",
    "v050_record_delivery",
)

LATEST = int(MIGRATIONS[-1][1:4])
