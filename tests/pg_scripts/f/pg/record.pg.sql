-- result_collection=last_statement_first_row_scalar
-- $1 call
SELECT wm_pg_test.record($1::jsonb);
