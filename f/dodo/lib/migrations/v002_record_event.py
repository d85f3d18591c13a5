"""`record_event(jsonb)`: the whole record step in one server-side call.

One round trip and one transaction per event: insert the inbox row (a duplicate of a
processed or ignored delivery returns "duplicate" and changes nothing), then upsert the
customer and the entity. An entity row is overwritten only by an event at least as new
as the one it holds, `(event_at, event_webhook_id) <= new`, so ties resolve the same
way in any arrival order and a retried event re-applies idempotently.

Duplicate per flow run, not per call: `attempt` (the entry flow run's key, made by its
preprocessor) is kept on the inbox row as `delivery_attempt`. The same run's record step
running again after its commit (Windmill restarting a zombie job with the same
arguments, or retrying after the connection dropped before the commit's answer came)
answers "recorded" with `rerun: true` and changes nothing, so the flow goes on to its
sinks (the ledger deduplicates them). A new run with the same webhook_id, or a call
without a key (UI runs), is a duplicate.

Input (built by f/dodo/lib/store.py): {webhook_id, event_type, category, business_id,
entity_id, customer_id, occurred_at, payload, attempt?, error?, lock?, customer?,
customer_ref?, table?, row?, data?, unit?}. `payload` is the delivery as received (the
envelope, or a seed transform's flat payload); `row` holds the entity table's columns; the entity's
`data` is `data` when given, else payload->'data'; `unit` is one minor unit of a
payment's currency in major units ("0.01"), for its refunded and net amounts.

Cost matters (bench/bench_store.py): the function has no SET clause (a per-call
search_path switch cost more than a statement) and names its tables with the schema
it is created in instead; each entity is one INSERT ... ON CONFLICT with a plan cached
for the session; a payment's refunded amount is computed in its own upsert.
"""

# Entity tables: conflict key, then the columns an event's state sets.
TABLES = {
    "payments": (["payment_id"], ["business_id", "customer_id", "subscription_id", "status", "currency",
                 "total_minor", "total", "tax_minor", "tax", "settlement_currency", "settlement_minor",
                 "settlement", "payment_method", "payment_method_type", "card_last_four", "card_network",
                 "charge_type", "invoice_id", "error_code", "error_message", "created_at"]),
    "refunds": (["refund_id"], ["payment_id", "business_id", "customer_id", "status", "currency",
                "amount_minor", "amount", "is_partial", "reason", "created_at"]),
    "disputes": (["dispute_id"], ["payment_id", "business_id", "customer_id", "status", "stage", "currency",
                 "amount_minor", "amount", "reason", "remarks", "created_at"]),
    "subscriptions": (["subscription_id"], ["business_id", "customer_id", "product_id", "status", "currency",
                      "recurring_pre_tax_minor", "recurring_pre_tax", "quantity", "discount_multiplier",
                      "payment_frequency_count", "payment_frequency_interval", "subscription_period_count",
                      "subscription_period_interval", "trial_period_days", "next_billing_date",
                      "previous_billing_date", "cancel_at_next_billing_date", "cancelled_at", "created_at"]),
    "license_keys": (["license_key_id"], ["key", "business_id", "customer_id", "product_id", "payment_id",
                     "subscription_id", "status", "activations_limit", "instances_count", "expires_at",
                     "created_at"]),
    "payouts": (["payout_id"], ["business_id", "status", "currency", "amount_minor", "amount", "fee_minor",
                "tax_minor", "refunds_minor", "chargebacks_minor", "payment_method", "remarks", "created_at"]),
    "credit_ledger_entries": (["entry_id"], ["business_id", "customer_id", "credit_entitlement_id",
                              "transaction_type", "is_credit", "amount", "balance_before", "balance_after",
                              "overage_before", "overage_after", "grant_id", "reference_id",
                              "reference_type", "description", "created_at"]),
    "abandoned_checkouts": (["payment_id"], ["business_id", "customer_id", "status", "abandonment_reason",
                            "abandoned_at", "recovered_payment_id"]),
    "dunning": (["subscription_id", "started_at"], ["business_id", "customer_id", "payment_id", "status",
                "trigger_state"]),
    "entitlement_grants": (["grant_id"], ["business_id", "customer_id", "entitlement_id", "integration_type",
                           "status", "payment_id", "subscription_id", "delivered_at", "revoked_at",
                           "revocation_reason", "error_code", "error_message", "created_at"]),
}

# Which event's state a row holds; set from the call, not from `row`.
_STATE = ["event_type", "event_at", "event_webhook_id", "data"]
_STATE_VALUES = ["e->>'event_type'", "at", "wid", "d"]
# A payment's refunded and net amounts follow its succeeded refunds (the advisory lock on
# the payment serialises the events that write them).
_EXTRA = {"payments": (["refunded_minor", "refunded", "net"],
                       ["rf.minor", "rf.minor * (e->>'unit')::numeric",
                        "(@col(payments.total_minor) - rf.minor) * (e->>'unit')::numeric"],
                       " FROM (SELECT coalesce(sum(amount_minor), 0) AS minor FROM @.refunds"
                       " WHERE payment_id = r->>'payment_id' AND status = 'succeeded') rf")}


def _upsert(table: str) -> str:
    key, cols = TABLES[table]
    extra_cols, extra_values, source = _EXTRA.get(table, ([], [], ""))
    set_cols = cols + extra_cols + _STATE
    values = [f"@col({table}.{c})" for c in key + cols] + extra_values + _STATE_VALUES
    return f"""
    ELSIF tbl = '{table}' THEN
        INSERT INTO @.{table} AS t ({", ".join(key + set_cols)})
        SELECT {", ".join(values)}{source}
        ON CONFLICT ({", ".join(key)}) DO UPDATE
            SET ({", ".join(set_cols)}, updated_at) = ROW({", ".join("excluded." + c for c in set_cols)}, now())
            WHERE (t.event_at, t.event_webhook_id) <= (excluded.event_at, excluded.event_webhook_id);
        GET DIAGNOSTICS n = ROW_COUNT;"""


# An older description of a customer never replaces a newer one; it may only move
# first_seen_at earlier, and otherwise writes nothing.
_NEWER = "(t.event_at IS NULL OR (t.event_at, t.event_webhook_id) <= (excluded.event_at, excluded.event_webhook_id))"
_CUSTOMER_SET = ",\n            ".join(
    f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE t.{c} END"
    for c in ["business_id", "email", "name", "phone_number", "metadata", "event_at", "event_webhook_id"])

_BODY = r"""
CREATE FUNCTION @.record_event(e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    wid text := e->>'webhook_id';
    tbl text := e->>'table';
    at timestamptz := (e->>'occurred_at')::timestamptz;
    r jsonb := e->'row';
    d jsonb;
    c jsonb := e->'customer';
    tries integer := 1;
    prior text;
    prior_attempt text;
    n integer := 0;
    done text;
BEGIN
    done := CASE WHEN e ? 'error' THEN 'failed' WHEN e->>'category' = 'unknown' THEN 'ignored' ELSE 'processed' END;
    -- Written with its final status: if anything below fails, the whole transaction does.
    INSERT INTO @.webhook_events (webhook_id, event_type, category, business_id, entity_id, customer_id,
                                  occurred_at, payload, status, last_error, failed_step, processed_at,
                                  delivery_attempt)
    VALUES (wid, e->>'event_type', e->>'category', e->>'business_id', e->>'entity_id', e->>'customer_id',
            at, e->'payload', done, e->>'error', e->>'step', CASE WHEN done <> 'failed' THEN now() END,
            e->>'attempt')
    ON CONFLICT (webhook_id) DO NOTHING;
    IF NOT FOUND THEN
        -- Seen before. Done (processed/ignored): a duplicate, unless this is the run that
        -- recorded it, its step again (its first commit stands). Failed or received: apply again.
        SELECT status, attempts + 1, delivery_attempt INTO prior, tries, prior_attempt
          FROM @.webhook_events WHERE webhook_id = wid FOR UPDATE;
        IF prior IN ('processed', 'ignored') THEN
            IF prior_attempt = e->>'attempt' THEN   -- NULL (no key) never matches
                RETURN jsonb_build_object('status', 'recorded', 'webhook_id', wid, 'inbox_status', prior,
                                          'attempts', tries - 1, 'applied', false, 'rerun', true);
            END IF;
            RETURN jsonb_build_object('status', 'duplicate', 'webhook_id', wid, 'inbox_status', prior,
                                      'attempts', tries - 1, 'applied', false);
        END IF;
        UPDATE @.webhook_events SET attempts = attempts + 1, payload = e->'payload', event_type = e->>'event_type',
               category = e->>'category', entity_id = e->>'entity_id', customer_id = e->>'customer_id',
               occurred_at = at, status = done, last_error = e->>'error', failed_step = e->>'step',
               processed_at = CASE WHEN done <> 'failed' THEN now() END, delivery_attempt = e->>'attempt'
         WHERE webhook_id = wid;
    END IF;

    IF e ? 'error' THEN   -- invalid event: recorded as failed, no entity touched
        RETURN jsonb_build_object('status', 'failed', 'webhook_id', wid, 'inbox_status', 'failed',
                                  'attempts', tries, 'applied', false, 'error', e->>'error');
    END IF;

    -- Serialise events that derive one row from others (refunds -> payments.refunded_minor).
    IF e ? 'lock' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(e->>'lock', 0));
    END IF;

    IF c IS NOT NULL THEN   -- a described customer: newest description wins
        INSERT INTO @.customers AS t (customer_id, business_id, email, name, phone_number, metadata,
                                      first_seen_at, event_at, event_webhook_id)
        VALUES (c->>'customer_id', e->>'business_id', c->>'email', c->>'name', c->>'phone_number',
                c->'metadata', at, at, wid)
        ON CONFLICT (customer_id) DO UPDATE SET
            first_seen_at = least(t.first_seen_at, excluded.first_seen_at),
            updated_at = now(),
            """ + _CUSTOMER_SET + r"""
            WHERE """ + _NEWER + r""" OR t.first_seen_at > excluded.first_seen_at;
    ELSIF e ? 'customer_ref' THEN   -- only referenced by id: make sure the row exists
        INSERT INTO @.customers AS t (customer_id, business_id, first_seen_at)
        VALUES (e->>'customer_ref', e->>'business_id', at)
        ON CONFLICT (customer_id) DO UPDATE SET first_seen_at = excluded.first_seen_at
            WHERE t.first_seen_at > excluded.first_seen_at;
    END IF;

    IF tbl IS NULL THEN
        RETURN jsonb_build_object('status', 'recorded', 'webhook_id', wid, 'inbox_status', done,
                                  'attempts', tries, 'applied', false);
    END IF;
    d := CASE WHEN e ? 'data' THEN e->'data' ELSE e->'payload'->'data' END;
    IF false THEN
        NULL;""" + "".join(_upsert(t) for t in TABLES) + r"""
    END IF;

    IF tbl = 'subscriptions' THEN   -- older events too: the lifecycle as it happened
        INSERT INTO @.subscription_status_history (subscription_id, webhook_id, event_type, status, occurred_at)
        VALUES (r->>'subscription_id', wid, e->>'event_type', r->>'status', at)
        ON CONFLICT DO NOTHING;
    ELSIF tbl = 'refunds' THEN   -- the payment's refunded and net follow its refunds
        UPDATE @.payments p SET refunded_minor = s.minor, updated_at = now(),
               refunded = s.minor * (SELECT unit FROM @.currencies WHERE code = p.currency),
               net = (p.total_minor - s.minor) * (SELECT unit FROM @.currencies WHERE code = p.currency)
          FROM (SELECT coalesce(sum(amount_minor), 0) AS minor FROM @.refunds
                 WHERE payment_id = r->>'payment_id' AND status = 'succeeded') s
         WHERE p.payment_id = r->>'payment_id' AND p.refunded_minor <> s.minor;
    END IF;

    RETURN jsonb_build_object('status', 'recorded', 'webhook_id', wid, 'inbox_status', done,
                              'attempts', tries, 'applied', n > 0);
END
$fn$;
"""

# Created by a DO block so that the body can name the schema it is created in
# (current_schema() while migrations run): the function then depends on no search_path.
# `@col(t.c)` becomes `r->>'c'` cast to the type column c of table t has in the catalog:
# a cast is resolved once per plan, where jsonb_populate_record looks up every column's
# input function again on each call.
SQL = r"""
DO $do$
DECLARE
    body text := $body$""" + _BODY + r"""$body$;
    s text := quote_ident(current_schema()) || '.';
    m text[];
    cast_ text;
BEGIN
    FOR m IN SELECT DISTINCT regexp_matches(body, '@col\((\w+)\.(\w+)\)', 'g') LOOP
        SELECT format('(r->>%L)::%s', attname, format_type(atttypid, atttypmod)) INTO cast_
          FROM pg_attribute WHERE attrelid = (s || m[1])::regclass AND attname = m[2] AND NOT attisdropped;
        IF cast_ IS NULL THEN
            RAISE EXCEPTION 'record_event: no column %.%', m[1], m[2];
        END IF;
        body := replace(body, format('@col(%s.%s)', m[1], m[2]), cast_);
    END LOOP;
    EXECUTE replace(body, '@.', s);
END
$do$;
"""
