-- Record one verified, normalised delivery in Postgres, exactly once: the entry flow's
-- record step, run by the Windmill worker itself (no Python process). The call is built by
-- the flow's preprocessor (f/dodo/lib/record_call.py); the function is migration v050.
-- result_collection=last_statement_first_row_scalar
-- $1 call
SELECT dodo.record_delivery($1::jsonb);
