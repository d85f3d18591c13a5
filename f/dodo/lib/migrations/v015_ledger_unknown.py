"""Delivery ledger status 'unknown': a send that may have reached the provider but whose
outcome was never confirmed (a Slack or Twilio POST that timed out or got a 5xx after
sending: they take no idempotency key). Never claimed again until released
(`ledger.release_unknown`, replay's `resend_unknown`). See f/dodo/lib/ledger.py.
"""

SQL = """
ALTER TABLE delivery_ledger DROP CONSTRAINT delivery_ledger_status_check;
ALTER TABLE delivery_ledger ADD CONSTRAINT delivery_ledger_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'unknown'));
"""
