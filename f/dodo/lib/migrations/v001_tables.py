"""Tables: the webhook inbox, the entities keyed by Dodo's ids, currencies.

Every entity row holds the state of one event: `event_at` (the event's time),
`event_webhook_id` and `event_type` say which, `data` is that event's raw object.
Money is integer minor units (`*_minor`) plus `currency`; the plain-named columns
(`total`, `amount`, ...) are the same amounts in exact major units, written by the
store with them (not generated columns: those are planned again for every statement,
which tripled the cost of recording an event).
"""
from decimal import Decimal

from f.dodo.lib.money import EXPONENTS


def _unit(exp: int) -> str:
    return str(Decimal(1).scaleb(-exp))


def _codes(exp: int) -> str:
    return "'{%s}'::text[]" % ",".join(c for c, e in sorted(EXPONENTS.items()) if e == exp)


# NULL for an unknown code: better no major amount than a wrong one. Three array
# constants rather than a 145-way CASE: cheap to plan.
_EXPONENT = (f"(CASE WHEN upper(currency) = ANY ({_codes(2)}) THEN 2 WHEN upper(currency) = ANY ({_codes(0)}) "
             f"THEN 0 WHEN upper(currency) = ANY ({_codes(3)}) THEN 3 END)")

# Columns shared by every entity table: which event's state the row holds.
_STATE = """
    event_type text NOT NULL,
    event_at timestamptz NOT NULL,
    event_webhook_id text NOT NULL,
    data jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()"""

SQL = f"""
CREATE TABLE currencies (
    code text PRIMARY KEY,
    exponent smallint NOT NULL CHECK (exponent BETWEEN 0 AND 4),
    unit numeric NOT NULL     -- one minor unit in major units, at the currency's scale: 0.01, 1, 0.001
);
INSERT INTO currencies (code, exponent, unit) VALUES
    {", ".join(f"('{c}', {e}, {_unit(e)})" for c, e in sorted(EXPONENTS.items()))}
ON CONFLICT (code) DO UPDATE SET exponent = excluded.exponent, unit = excluded.unit;

-- Immutable (a literal table, no lookup) and single self-contained expressions, so
-- the planner inlines them.
CREATE FUNCTION currency_exponent(currency text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {_EXPONENT} $$;

CREATE FUNCTION to_major(minor numeric, currency text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT round(minor / 10::numeric ^ {_EXPONENT}, {_EXPONENT}) $$;

-- A domain rather than a table CHECK: its test is prepared once per session, where a
-- table CHECK is rebuilt from its stored text for every INSERT (a sixth of the record
-- step's cost). Reads and comparisons see plain text.
CREATE DOMAIN inbox_status AS text CHECK (VALUE IN ('received', 'processed', 'failed', 'ignored'));

CREATE TABLE webhook_events (
    webhook_id text PRIMARY KEY,
    event_type text NOT NULL,
    category text NOT NULL,
    business_id text,
    entity_id text,
    customer_id text,
    occurred_at timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL,
    status inbox_status NOT NULL DEFAULT 'received',
    attempts integer NOT NULL DEFAULT 1,
    last_error text,
    failed_step text,
    processed_at timestamptz,
    -- The entry flow run (its preprocessor's delivery_attempt key) that recorded the row:
    -- that run's record step, restarted or retried, answers "recorded" again, not "duplicate".
    delivery_attempt text
);
CREATE INDEX webhook_events_status_idx ON webhook_events (status, received_at) WHERE status <> 'processed';
CREATE INDEX webhook_events_type_idx ON webhook_events (event_type, occurred_at);
CREATE INDEX webhook_events_entity_idx ON webhook_events (entity_id);
CREATE INDEX webhook_events_customer_idx ON webhook_events (customer_id);

CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    business_id text,
    email text,
    name text,
    phone_number text,
    metadata jsonb,
    first_seen_at timestamptz NOT NULL,
    event_at timestamptz,          -- NULL while only referenced by id, never described
    event_webhook_id text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_email_idx ON customers (lower(email));

CREATE TABLE payments (
    payment_id text PRIMARY KEY,
    business_id text,
    customer_id text,
    subscription_id text,
    status text,
    currency text,
    total_minor bigint,
    tax_minor bigint,
    refunded_minor bigint NOT NULL DEFAULT 0,   -- sum of succeeded refunds
    settlement_currency text,
    settlement_minor bigint,
    payment_method text,
    payment_method_type text,
    card_last_four text,
    card_network text,
    charge_type text,
    invoice_id text,
    error_code text,
    error_message text,
    created_at timestamptz,{_STATE},
    total numeric,
    tax numeric,
    refunded numeric,
    net numeric,
    settlement numeric
);
CREATE INDEX payments_customer_idx ON payments (customer_id, created_at);
CREATE INDEX payments_status_idx ON payments (status, created_at);
CREATE INDEX payments_subscription_idx ON payments (subscription_id);

CREATE TABLE refunds (
    refund_id text PRIMARY KEY,
    payment_id text NOT NULL,
    business_id text,
    customer_id text,
    status text,
    currency text,
    amount_minor bigint,
    is_partial boolean,
    reason text,
    created_at timestamptz,{_STATE},
    amount numeric
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id);
CREATE INDEX refunds_customer_idx ON refunds (customer_id, created_at);

CREATE TABLE disputes (
    dispute_id text PRIMARY KEY,
    payment_id text,
    business_id text,
    customer_id text,
    status text,                   -- dispute_status: dispute_opened .. dispute_won, dispute_lost
    stage text,
    currency text,
    amount_minor bigint,
    reason text,
    remarks text,
    created_at timestamptz,{_STATE},
    amount numeric
);
CREATE INDEX disputes_payment_idx ON disputes (payment_id);
CREATE INDEX disputes_status_idx ON disputes (status, event_at);
CREATE INDEX disputes_customer_idx ON disputes (customer_id);

CREATE TABLE subscriptions (
    subscription_id text PRIMARY KEY,
    business_id text,
    customer_id text,
    product_id text,
    status text,
    currency text,
    recurring_pre_tax_minor bigint,
    quantity integer,
    discount_multiplier numeric NOT NULL DEFAULT 1,  -- product of active percentage discounts
    payment_frequency_count integer,
    payment_frequency_interval text,                 -- Day | Week | Month | Year
    subscription_period_count integer,
    subscription_period_interval text,
    trial_period_days integer,
    next_billing_date timestamptz,
    previous_billing_date timestamptz,
    cancel_at_next_billing_date boolean,
    cancelled_at timestamptz,
    created_at timestamptz,{_STATE},
    recurring_pre_tax numeric
);
CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_id);
CREATE INDEX subscriptions_status_idx ON subscriptions (status);

-- One row per subscription event, older ones included: the lifecycle as it happened.
CREATE TABLE subscription_status_history (
    subscription_id text NOT NULL,
    webhook_id text NOT NULL,
    event_type text NOT NULL,
    status text,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, webhook_id)
);
CREATE INDEX subscription_status_history_time_idx ON subscription_status_history (occurred_at);

CREATE TABLE license_keys (
    license_key_id text PRIMARY KEY,
    key text,
    business_id text,
    customer_id text,
    product_id text,
    payment_id text,
    subscription_id text,
    status text,
    activations_limit integer,
    instances_count integer,
    expires_at timestamptz,
    created_at timestamptz,{_STATE}
);
CREATE INDEX license_keys_customer_idx ON license_keys (customer_id);
CREATE INDEX license_keys_key_idx ON license_keys (key);

CREATE TABLE payouts (
    payout_id text PRIMARY KEY,
    business_id text,
    status text,
    currency text,
    amount_minor bigint,
    fee_minor bigint,
    tax_minor bigint,
    refunds_minor bigint,
    chargebacks_minor bigint,
    payment_method text,
    remarks text,
    created_at timestamptz,{_STATE},
    amount numeric
);
CREATE INDEX payouts_status_idx ON payouts (status, created_at);

-- Credit amounts are credit units (decimal strings in Dodo's payload), not money.
CREATE TABLE credit_ledger_entries (
    entry_id text PRIMARY KEY,
    business_id text,
    customer_id text,
    credit_entitlement_id text,
    transaction_type text,
    is_credit boolean,
    amount numeric,
    balance_before numeric,
    balance_after numeric,
    overage_before numeric,
    overage_after numeric,
    grant_id text,
    reference_id text,
    reference_type text,
    description text,
    created_at timestamptz,{_STATE}
);
CREATE INDEX credit_ledger_entries_customer_idx ON credit_ledger_entries (customer_id, created_at);

CREATE TABLE abandoned_checkouts (
    payment_id text PRIMARY KEY,
    business_id text,
    customer_id text,
    status text,
    abandonment_reason text,
    abandoned_at timestamptz,
    recovered_payment_id text,{_STATE}
);
CREATE INDEX abandoned_checkouts_customer_idx ON abandoned_checkouts (customer_id);
CREATE INDEX abandoned_checkouts_status_idx ON abandoned_checkouts (status, abandoned_at);

-- Dodo sends no dunning id: a dunning run is its subscription plus its start time.
CREATE TABLE dunning (
    subscription_id text NOT NULL,
    started_at timestamptz NOT NULL,
    business_id text,
    customer_id text,
    payment_id text,
    status text,
    trigger_state text,{_STATE},
    PRIMARY KEY (subscription_id, started_at)
);
CREATE INDEX dunning_customer_idx ON dunning (customer_id);
CREATE INDEX dunning_status_idx ON dunning (status);

CREATE TABLE entitlement_grants (
    grant_id text PRIMARY KEY,
    business_id text,
    customer_id text,
    entitlement_id text,
    integration_type text,
    status text,
    payment_id text,
    subscription_id text,
    delivered_at timestamptz,
    revoked_at timestamptz,
    revocation_reason text,
    error_code text,
    error_message text,
    created_at timestamptz,{_STATE}
);
CREATE INDEX entitlement_grants_customer_idx ON entitlement_grants (customer_id);
CREATE INDEX entitlement_grants_status_idx ON entitlement_grants (status);
"""
