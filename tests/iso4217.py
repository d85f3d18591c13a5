"""Minor -> major units for test expectations, written out independently of
f/dodo/lib/money.py: a test that formatted its expected amounts with the bundle's own
table would pass with that table wrong (JPY with 2 decimals). Literal spot checks
("1000" for 1000 JPY, "1.234" for 1234 KWD) pin this helper too (test_iso4217_reference).
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

# ISO 4217 minor-unit digits of the currencies the tests' streams use.
DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "INR": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3}


def major(minor: int | Fraction, currency: str) -> str:
    """Plain decimal text in the currency's decimals: 1000 JPY -> "1000", 1234 KWD ->
    "1.234", -5 USD -> "-0.05"; a fraction of a minor unit rounds half to even."""
    digits = DECIMALS[currency]
    whole = int((Decimal(Fraction(minor).numerator) / Decimal(Fraction(minor).denominator))
                .quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    sign, units = ("-" if whole < 0 else ""), str(abs(whole)).rjust(digits + 1, "0")
    return sign + (units[:-digits] + "." + units[-digits:] if digits else units)
