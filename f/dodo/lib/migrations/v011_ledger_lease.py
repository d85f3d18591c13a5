"""Delivery ledger leases: a claimed delivery is 'sending' until `lease_until`.

The ledger claims a row in its own committed transaction (status 'sending', `claim` a
random token, `lease_until` = now + lease), calls the provider with no transaction open,
then records the outcome where `claim` still matches. A live lease keeps other workers
from sending; an expired one (the sender died) can be claimed again. See
f/dodo/lib/ledger.py.
"""

SQL = """
ALTER TABLE delivery_ledger DROP CONSTRAINT delivery_ledger_status_check;
ALTER TABLE delivery_ledger ADD CONSTRAINT delivery_ledger_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped'));
ALTER TABLE delivery_ledger
    ADD COLUMN claim       text,
    ADD COLUMN claimed_at  timestamptz,
    ADD COLUMN lease_until timestamptz;
"""
