"""`record_delivery(call jsonb)`: the entry flow's record step as one SQL statement.

The flow's preprocessor normalises a verified delivery and builds the call
(f/dodo/lib/record_call.py); the record step is then a native Windmill PostgreSQL script
(f/dodo/record_delivery.pg.sql), which runs in the worker with no Python process. That
connection keeps the role's default search_path, so this function carries the schema it
was migrated into (`SET search_path FROM CURRENT`: migrate() runs with the target schema
first) for `record_event` and its tables.

Jobs never migrate, and a schema behind the code fails at once naming the fix (README,
"Least privilege"): the call carries `needs`, the schema version the code that built it
needs (`schema.latest()`), and a schema at an older version raises "SchemaBehind: ...",
as f/dodo/lib/db.py `connect` does for the Python steps. It returns `record_event`'s
result, plus `test: true` for a self-test delivery, as f/dodo/lib/store.py
`record_event` does. A value the database rejects (beyond bigint, a constraint) fails
the call with a message starting "EventRejected: ". The step's retry_if
(errors.RETRY_IF) treats both as permanent; the failure module then records the inbox
row failed with the error. A later migration that replaces this function must repeat
the SET clause.
"""

SQL = """
CREATE FUNCTION record_delivery(call jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    found integer := (SELECT max(version) FROM schema_migrations);
BEGIN
    IF found < (call->>'needs')::integer THEN
        RAISE EXCEPTION 'SchemaBehind: schema % is at version %, the code needs %: run f/dodo/migrate with the owner role',
            current_schema(), found, call->>'needs' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN record_event(call - 'needs') || CASE WHEN call ? 'test' THEN '{"test": true}'::jsonb ELSE '{}'::jsonb END;
EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
    RAISE EXCEPTION 'EventRejected: %', SQLERRM USING ERRCODE = SQLSTATE;
END
$fn$;
"""
