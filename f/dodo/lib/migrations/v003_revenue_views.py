"""Revenue views. Days are UTC calendar days; money per currency, never converted.

- subscription_mrr: each active subscription's monthly recurring revenue:
  recurring_pre_tax_minor x quantity x discount_multiplier x (periods per year) / 12 /
  payment_frequency_count, with Day = 365, Week = 52, Month = 12, Year = 1 per year.
- mrr, arr: per currency, from subscription_mrr.
- subscription_days: per day, subscriptions active at the end of the day, new ones (first
  active that day) and churned ones (entered cancelled/expired/failed that day from
  another status), from the status history in event-time order.
- revenue_daily: per day and currency, gross (succeeded payments' total, by payment
  creation day), refunds (succeeded refunds, by refund creation day), lost disputes (by
  the day of the event that lost them), net = gross - refunds - lost disputes.
- customer_lifetime_value: the same figures per customer and currency, over all time.
"""

SQL = r"""
CREATE VIEW subscription_mrr AS
SELECT subscription_id, customer_id, product_id, currency, quantity, discount_multiplier,
       payment_frequency_count, payment_frequency_interval, recurring_pre_tax_minor, mrr_minor,
       round(mrr_minor / 10::numeric ^ currency_exponent(currency), currency_exponent(currency)) AS mrr
  FROM (SELECT s.*,
               s.recurring_pre_tax_minor * coalesce(s.quantity, 1) * s.discount_multiplier
               * CASE s.payment_frequency_interval WHEN 'Day' THEN 365 WHEN 'Week' THEN 52
                                                   WHEN 'Month' THEN 12 WHEN 'Year' THEN 1 END
               / (12 * greatest(coalesce(s.payment_frequency_count, 1), 1))::numeric AS mrr_minor
          FROM subscriptions s
         WHERE s.status = 'active') x;

CREATE VIEW mrr AS
SELECT currency, count(*) AS active_subscriptions, sum(mrr_minor) AS mrr_minor,
       round(sum(mrr_minor) / 10::numeric ^ currency_exponent(currency), currency_exponent(currency)) AS mrr
  FROM subscription_mrr
 GROUP BY currency;

CREATE VIEW arr AS
SELECT currency, active_subscriptions, 12 * mrr_minor AS arr_minor,
       round(12 * mrr_minor / 10::numeric ^ currency_exponent(currency), currency_exponent(currency)) AS arr
  FROM mrr;

CREATE VIEW subscription_days AS
WITH h AS (
    SELECT subscription_id, status, occurred_at, webhook_id, (occurred_at AT TIME ZONE 'UTC')::date AS day
      FROM subscription_status_history
), days AS (
    SELECT generate_series(min(day), greatest(max(day), (now() AT TIME ZONE 'UTC')::date), '1 day')::date AS day
      FROM h
), eod AS (   -- each subscription's status at the end of each day
    SELECT d.day, s.subscription_id, s.status
      FROM days d
     CROSS JOIN LATERAL (
        SELECT DISTINCT ON (subscription_id) subscription_id, status
          FROM h WHERE h.day <= d.day
         ORDER BY subscription_id, occurred_at DESC, webhook_id DESC) s
), first_active AS (
    SELECT subscription_id, min(day) AS day FROM h WHERE status = 'active' GROUP BY subscription_id
)
SELECT d.day,
       (SELECT count(*) FROM eod WHERE eod.day = d.day AND eod.status = 'active') AS active,
       (SELECT count(*) FROM first_active f WHERE f.day = d.day) AS new,
       (SELECT count(*) FROM eod cur JOIN eod before
               ON before.subscription_id = cur.subscription_id AND before.day = d.day - 1
         WHERE cur.day = d.day AND cur.status IN ('cancelled', 'expired', 'failed')
           AND before.status NOT IN ('cancelled', 'expired', 'failed')) AS churned
  FROM days d;

CREATE VIEW revenue_daily AS
WITH gross AS (
    SELECT (coalesce(created_at, event_at) AT TIME ZONE 'UTC')::date AS day, currency,
           count(*) AS payments, sum(total_minor) AS minor
      FROM payments WHERE status = 'succeeded' GROUP BY 1, 2
), refunded AS (
    SELECT (coalesce(r.created_at, r.event_at) AT TIME ZONE 'UTC')::date AS day,
           coalesce(r.currency, p.currency) AS currency, sum(r.amount_minor) AS minor
      FROM refunds r LEFT JOIN payments p USING (payment_id)
     WHERE r.status = 'succeeded' GROUP BY 1, 2
), lost AS (
    SELECT (d.event_at AT TIME ZONE 'UTC')::date AS day,
           coalesce(d.currency, p.currency) AS currency, sum(d.amount_minor) AS minor
      FROM disputes d LEFT JOIN payments p USING (payment_id)
     WHERE d.status = 'dispute_lost' GROUP BY 1, 2
), t AS (
    SELECT day, currency, coalesce(gross.payments, 0) AS payments,
           coalesce(gross.minor, 0) AS gross_minor, coalesce(refunded.minor, 0) AS refunds_minor,
           coalesce(lost.minor, 0) AS disputes_lost_minor
      FROM gross FULL JOIN refunded USING (day, currency) FULL JOIN lost USING (day, currency)
)
SELECT day, currency, payments, gross_minor, refunds_minor, disputes_lost_minor,
       gross_minor - refunds_minor - disputes_lost_minor AS net_minor,
       to_major(gross_minor, currency) AS gross, to_major(refunds_minor, currency) AS refunds,
       to_major(disputes_lost_minor, currency) AS disputes_lost,
       to_major(gross_minor - refunds_minor - disputes_lost_minor, currency) AS net
  FROM t;

CREATE VIEW customer_lifetime_value AS
WITH paid AS (
    SELECT customer_id, currency, count(*) AS payments, sum(total_minor) AS gross_minor,
           min(coalesce(created_at, event_at)) AS first_payment_at,
           max(coalesce(created_at, event_at)) AS last_payment_at
      FROM payments WHERE status = 'succeeded' AND customer_id IS NOT NULL GROUP BY 1, 2
), refunded AS (
    SELECT p.customer_id, coalesce(r.currency, p.currency) AS currency, sum(r.amount_minor) AS minor
      FROM refunds r JOIN payments p USING (payment_id)
     WHERE r.status = 'succeeded' GROUP BY 1, 2
), lost AS (
    SELECT p.customer_id, coalesce(d.currency, p.currency) AS currency, sum(d.amount_minor) AS minor
      FROM disputes d JOIN payments p USING (payment_id)
     WHERE d.status = 'dispute_lost' GROUP BY 1, 2
), t AS (
    SELECT paid.*, coalesce(refunded.minor, 0) AS refunds_minor, coalesce(lost.minor, 0) AS disputes_lost_minor
      FROM paid LEFT JOIN refunded USING (customer_id, currency) LEFT JOIN lost USING (customer_id, currency)
)
SELECT t.customer_id, c.email, c.name, t.currency, t.payments, t.gross_minor, t.refunds_minor,
       t.disputes_lost_minor, t.gross_minor - t.refunds_minor - t.disputes_lost_minor AS net_minor,
       to_major(t.gross_minor, t.currency) AS gross,
       to_major(t.gross_minor - t.refunds_minor - t.disputes_lost_minor, t.currency) AS lifetime_value,
       t.first_payment_at, t.last_payment_at
  FROM t LEFT JOIN customers c USING (customer_id);
"""
