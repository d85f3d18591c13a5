"""The daily revenue report, from the revenue views of migration v003.

For one UTC day, per currency (never converted): gross, refunds, lost disputes and net
revenue (`revenue_daily`), MRR at the end of the day and its change from the day
before, new and churned subscriptions (`subscription_days`), the day's succeeded
refunds, the disputes open now, and 30 days of daily gross for the chart.

MRR at an instant uses the `subscription_mrr` formula over the subscriptions whose
status, in the status history, was `active` at that instant (amounts are the
subscription's current ones).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from f.dodo.lib import channels, ledger, render
from f.dodo.lib.svgchart import png, revenue_chart
from f.dodo.lib.money import EXPONENTS

OPEN_DISPUTES = ("dispute_opened", "dispute_challenged")
CHART_DAYS = 30
SINK = "revenue_report"
IN_PROGRESS = "in progress in another worker (its lease is live); retry later"

_MRR_AT = """
WITH st AS (
    SELECT DISTINCT ON (subscription_id) subscription_id, status
      FROM subscription_status_history
     WHERE occurred_at < %(at)s
     ORDER BY subscription_id, occurred_at DESC, webhook_id DESC)
SELECT s.currency, count(*),
       sum(s.recurring_pre_tax_minor * coalesce(s.quantity, 1) * s.discount_multiplier
           * CASE s.payment_frequency_interval WHEN 'Day' THEN 365 WHEN 'Week' THEN 52
                                               WHEN 'Month' THEN 12 WHEN 'Year' THEN 1 END
           / (12 * greatest(coalesce(s.payment_frequency_count, 1), 1))::numeric)
  FROM subscriptions s JOIN st USING (subscription_id)
 WHERE st.status = 'active' AND s.currency IS NOT NULL
 GROUP BY s.currency"""


@dataclass
class Report:
    day: date
    revenue: dict[str, dict[str, int]]  # currency -> payments, gross, refunds, disputes_lost, net (minor)
    mrr: dict[str, Decimal]  # currency -> MRR at the end of `day` (minor units, exact)
    mrr_before: dict[str, Decimal]  # ... at the end of the day before
    new_subscriptions: int
    churned_subscriptions: int
    refunds: dict[str, dict[str, int]]  # currency -> count, amount (minor) of the day's succeeded refunds
    open_disputes: dict[str, dict[str, int]]  # currency -> count, amount (minor), now
    series: dict[str, list[int]] = field(default_factory=dict)  # currency -> daily gross, oldest first

    @property
    def currencies(self) -> list[str]:
        return sorted(set(self.revenue) | set(self.mrr) | set(self.mrr_before) | set(self.refunds)
                      | set(self.open_disputes))

    def mrr_change(self, currency: str) -> Decimal:
        return self.mrr.get(currency, Decimal(0)) - self.mrr_before.get(currency, Decimal(0))


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def mrr_at(conn, at: datetime) -> dict[str, Decimal]:
    return {cur: Decimal(total) for cur, _, total in conn.execute(_MRR_AT, {"at": at}).fetchall()}


def build(conn, day: date) -> Report:
    """Every figure of the report for `day` (conn: search_path = the bundle's schema)."""
    revenue = {
        cur: {"payments": n, "gross": int(g), "refunds": int(r), "disputes_lost": int(d), "net": int(net)}
        for cur, n, g, r, d, net in conn.execute(
            """SELECT currency, payments, gross_minor, refunds_minor, disputes_lost_minor, net_minor
                 FROM revenue_daily WHERE day = %s AND currency IS NOT NULL""", [day])
    }
    subs = conn.execute("SELECT new, churned FROM subscription_days WHERE day = %s", [day]).fetchone() or (0, 0)
    refunds = {
        cur: {"count": n, "amount": int(a)}
        for cur, n, a in conn.execute(
            """SELECT coalesce(r.currency, p.currency), count(*), coalesce(sum(r.amount_minor), 0)
                 FROM refunds r LEFT JOIN payments p USING (payment_id)
                WHERE r.status = 'succeeded' AND coalesce(r.created_at, r.event_at) >= %s
                  AND coalesce(r.created_at, r.event_at) < %s
                GROUP BY 1""", [_start(day), _start(day + timedelta(days=1))])
        if cur
    }
    disputes = {
        cur: {"count": n, "amount": int(a)}
        for cur, n, a in conn.execute(
            """SELECT coalesce(d.currency, p.currency), count(*), coalesce(sum(d.amount_minor), 0)
                 FROM disputes d LEFT JOIN payments p USING (payment_id)
                WHERE d.status = ANY(%s) GROUP BY 1""", [list(OPEN_DISPUTES)])
        if cur
    }
    first = day - timedelta(days=CHART_DAYS - 1)
    series: dict[str, list[int]] = {}
    for d, cur, gross in conn.execute(
            """SELECT day, currency, gross_minor FROM revenue_daily
                WHERE day BETWEEN %s AND %s AND currency IS NOT NULL""", [first, day]):
        series.setdefault(cur, [0] * CHART_DAYS)[(d - first).days] = int(gross)
    return Report(day, revenue, mrr_at(conn, _start(day + timedelta(days=1))), mrr_at(conn, _start(day)),
                  int(subs[0]), int(subs[1]), refunds, disputes, series)


# --- presentation ------------------------------------------------------------------------


def major(minor: int | Decimal, currency: str) -> str:
    """Major units at the currency's decimals, exact ("12.34", "1000", "1.234")."""
    exp = EXPONENTS.get(currency, 2)
    return f"{(Decimal(minor).scaleb(-exp)).quantize(Decimal(1).scaleb(-exp)):f}"


def _signed(minor: Decimal, currency: str) -> str:
    return ("+" if minor > 0 else "") + major(minor, currency)


def rows(r: Report) -> list[dict]:
    """One row per currency: every figure as an exact decimal string."""
    out = []
    for cur in r.currencies:
        rev = r.revenue.get(cur, {})
        out.append({
            "currency": cur,
            "payments": rev.get("payments", 0),
            "gross": major(rev.get("gross", 0), cur),
            "refunds": major(rev.get("refunds", 0), cur),
            "disputes_lost": major(rev.get("disputes_lost", 0), cur),
            "net": major(rev.get("net", 0), cur),
            "mrr": major(r.mrr.get(cur, Decimal(0)), cur),
            "mrr_change": _signed(r.mrr_change(cur), cur),
            "refunds_count": r.refunds.get(cur, {}).get("count", 0),
            "open_disputes": r.open_disputes.get(cur, {}).get("count", 0),
            "open_disputes_amount": major(r.open_disputes.get(cur, {}).get("amount", 0), cur),
        })
    return out


COLUMNS = [("currency", "Currency"), ("gross", "Gross"), ("refunds", "Refunds"), ("disputes_lost", "Disputes lost"),
           ("net", "Net"), ("mrr", "MRR"), ("mrr_change", "MRR change"), ("refunds_count", "Refunds #"),
           ("open_disputes", "Open disputes"), ("open_disputes_amount", "Open disputes amount")]


def title(r: Report) -> str:
    return f"Revenue report for {r.day.isoformat()} (UTC)"


def markdown(r: Report) -> str:
    lines = [f"### {title(r)}", "",
             f"New subscriptions: **{r.new_subscriptions}** · churned: **{r.churned_subscriptions}**", ""]
    table = rows(r)
    if not table:
        return "\n".join(lines + ["No revenue, subscriptions, refunds or disputes recorded."])
    lines.append("| " + " | ".join(h for _, h in COLUMNS) + " |")
    lines.append("|" + "|".join("---" if k == "currency" else "---:" for k, _ in COLUMNS) + "|")
    lines += ["| " + " | ".join(str(row[k]) for k, _ in COLUMNS) + " |" for row in table]
    lines += ["", "Net = gross − refunds − lost disputes. Amounts per currency, never converted."]
    return "\n".join(lines)


def chart_svg(r: Report) -> str:
    """The 30-day gross revenue chart as SVG (f/dodo/lib/svgchart.py)."""
    return revenue_chart(r.series, r.day, f"Gross revenue per day, last {CHART_DAYS} days (UTC)")


def rich_result(r: Report, skipped: list[str] = ()) -> dict:
    """The Windmill rich result: markdown table, SVG chart of 30 days, the rows, and
    the channels skipped because no integration is configured for them."""
    parts = [
        {"markdown": markdown(r)},
        {"svg": chart_svg(r)},
        {"table-row-object": rows(r)},
    ]
    if skipped:
        parts.append({"markdown": "Skipped (not configured): " + "; ".join(skipped)})
    return {"render_all": parts}


def slack_message(r: Report) -> dict:
    """Plain text in code blocks: Slack's mrkdwn has no tables. One section holds at most
    3,000 characters (render.SECTION_MAX), so the table is split by rows over as many
    sections as the currencies need, each a code block of its own."""
    table = rows(r)
    keys = [k for k, _ in COLUMNS[:7]]
    grid = [[h for k, h in COLUMNS[:7]]] + [[str(row[k]) for k in keys] for row in table]
    widths = [max(len(line[i]) for line in grid) for i in range(len(keys))]
    lines = [render.slack_escape("  ".join(c.rjust(w) for c, w in zip(line, widths))) for line in grid]
    head = f"*{title(r)}*\nNew subscriptions: {r.new_subscriptions} · churned: {r.churned_subscriptions}"
    fence = len("```\n\n```")
    bodies = [f"```\n{t}\n```" for t in render.slack_sections(lines, render.SECTION_MAX - fence)] \
        if table else ["No activity recorded."]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in [head] + bodies]
    if len(blocks) > render.MESSAGE_BLOCKS:  # about 1,500 currencies: never with Dodo's 145
        raise ValueError(f"the revenue report needs {len(blocks)} Slack blocks, more than {render.MESSAGE_BLOCKS}")
    return {"text": render.slack_cut(f"{head}\n{bodies[0]}"), "blocks": blocks}


def email_message(r: Report) -> dict:
    table = rows(r)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row[k]))}</td>" for k, _ in COLUMNS) + "</tr>"
                   for row in table)
    page = (f"<h3>{html.escape(title(r))}</h3><p>New subscriptions: {r.new_subscriptions} · churned: "
            f"{r.churned_subscriptions}</p><table border=\"1\" cellpadding=\"4\"><tr>{head}</tr>{body}</table>"
            f"<div>{chart_svg(r)}</div>")  # inline SVG: mail clients that strip it still show the table
    return {"subject": title(r), "text": markdown(r), "html": page}


def send(conn, r: Report, *, slack: dict | None = None, slack_webhook_url: str | None = None,
         slack_channel: str = "#payments", smtp: dict | None = None, email_from: str | None = None,
         email_to: list[str] | None = None, slack_api: str = channels.SLACK_API) -> dict:
    """Send to Slack and email, once per day and channel (the delivery ledger): a rerun
    retries only a channel that failed. Unconfigured channels go to the local outbox.
    Raises DeliveryError when a channel failed or another worker is still sending it."""
    key = f"revenue_report:{r.day.isoformat()}"
    results = {}
    msg = slack_message(r)

    token = (slack or {}).get("token")

    def send_slack():
        if token:  # its external_id "CHANNEL_ID/ts" places the chart (files need the channel's ID)
            posted = channels.post_slack(msg, token=token, channel=slack_channel, api_url=slack_api)
            return {"status": "sent", "external_id": f"{posted.get('channel')}/{posted.get('ts')}"}
        if slack_webhook_url:
            return channels.send_slack(msg, webhook_url=slack_webhook_url, api_url=slack_api)
        return _outbox("slack", key, {"channel": slack_channel, **msg})

    results["slack"] = ledger.deliver_once(conn, key, SINK, "slack", send_slack)
    channel_id, _, ts = (results["slack"].get("external_id") or "").partition("/")
    if token and results["slack"]["status"] == "sent" and channel_id and ts:
        # The chart as a file in the report's thread; an incoming webhook cannot upload files.
        # Its own ledger row: a rerun after a failed upload does not post the report again.
        results["slack_chart"] = ledger.deliver_once(conn, key, SINK, "slack_chart", lambda: channels.upload_slack_file(
            png(chart_svg(r)), filename=f"revenue-{r.day.isoformat()}.png", title=title(r), token=token,
            channel_id=channel_id, thread_ts=ts, api_url=slack_api))
    if email_to:
        mail = email_message(r)
        sender = email_from or (smtp or {}).get("user") or "dodo-bundle@localhost"

        def send_mail():
            if (smtp or {}).get("host"):
                return channels.send_email(smtp, sender=sender, to=email_to,
                                           message_id=channels.message_id(key), **mail)
            return _outbox("email", key, {"to": email_to, "from": sender, **mail})

        results["email"] = ledger.deliver_once(conn, key, SINK, "email", send_mail)
    # Failed, or still being sent by another worker: the job fails (Windmill retries and
    # alerts); a rerun resends only what is not done.
    problems = {ch: res["error"] if res["status"] == "failed" else IN_PROGRESS
                for ch, res in results.items() if res["status"] in ("failed", "in_progress")}
    if problems:
        raise channels.DeliveryError("; ".join(f"{ch}: {why}" for ch, why in problems.items()))
    ledger.report_unknown(key, results)  # a Slack post of unknown outcome is not resent: say so
    return results


def _outbox(kind: str, key: str, record: dict) -> dict:
    path = ledger.to_outbox(kind, {"delivery": key, **record})
    return {"status": "skipped", "external_id": f"outbox:{path}"}
