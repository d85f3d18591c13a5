"""Exact money: integer minor units <-> decimal major units, per ISO 4217 exponent.

Never a float: amounts are ints or strings of digits at the edges and Decimal inside.
"""

import re
from decimal import Context, Decimal, InvalidOperation

from f.dodo.lib.errors import MalformedField, MissingField

# Exponents that differ from 2, per ISO 4217, among the 145 codes Dodo sends.
_ZERO = "BIF CLP DJF GNF JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
# The dodopayments SDK's `Currency` Literal (types/currency.py), 145 codes.
CURRENCIES = tuple(
    """AED ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD
    BWP BYN BZD CAD CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD JMD JOD JPY KES
    KGS KHR KMF KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SZL THB TND TOP
    TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW""".split()
)
EXPONENTS: dict[str, int] = {
    c: 0 if c in _ZERO.split() else 3 if c in _THREE.split() else 2 for c in CURRENCIES
}

_MAX_DIGITS = 30  # far beyond any real amount; bounds the work on hostile input
_INT = re.compile(r"-?[0-9]{1,%d}" % _MAX_DIGITS)
_DEC = re.compile(r"-?[0-9]{1,%d}(\.[0-9]{1,%d})?" % (_MAX_DIGITS, _MAX_DIGITS))
_EXACT = Context(prec=2 * _MAX_DIGITS + 4)


def exponent(currency: str, field: str = "currency") -> int:
    """The number of decimals of `currency` (ISO 4217 code, any case)."""
    if currency is None:
        raise MissingField(field)
    if not isinstance(currency, str):
        raise MalformedField(field, "must be a currency code string")
    exp = EXPONENTS.get(currency.upper())
    if exp is None:
        raise MalformedField(field, "unknown currency code")
    return exp


def parse_minor(minor: int | str, field: str = "amount") -> int:
    """Integer minor units from an int or a string of digits; floats and bools rejected."""
    if minor is None:
        raise MissingField(field)
    if isinstance(minor, bool) or not isinstance(minor, (int, str)):
        raise MalformedField(field, "must be integer minor units (int or digit string), not %s" % type(minor).__name__)
    if isinstance(minor, str):
        if not _INT.fullmatch(minor.strip()):
            raise MalformedField(field, "must be integer minor units")
        return int(minor.strip())
    if abs(minor) >= 10**_MAX_DIGITS:
        raise MalformedField(field, "too large")
    return minor


def to_major(minor: int | str, currency: str, field: str = "amount") -> Decimal:
    """Exact major units: 1234 USD -> Decimal("12.34"), 1000 JPY -> Decimal("1000")."""
    exp = exponent(currency)
    return Decimal(parse_minor(minor, field)).scaleb(-exp, _EXACT)


def format_major(minor: int | str, currency: str, field: str = "amount") -> str:
    """`to_major` as a plain string: "12.34", "1000", "1.234" (never exponent notation)."""
    return f"{to_major(minor, currency, field):f}"


def to_minor(major: str | Decimal | int, currency: str, field: str = "amount") -> int:
    """Integer minor units from exact major units; more decimals than the currency has is an error."""
    exp = exponent(currency)
    if isinstance(major, bool) or not isinstance(major, (str, Decimal, int)):
        raise MalformedField(field, "must be a decimal string, not %s" % type(major).__name__)
    if isinstance(major, str):
        if not _DEC.fullmatch(major.strip()):
            raise MalformedField(field, "must be a decimal string")
        major = Decimal(major.strip())
    elif isinstance(major, Decimal) and not major.is_finite():
        raise MalformedField(field, "must be finite")
    try:
        scaled = Decimal(major).scaleb(exp, _EXACT)
    except InvalidOperation:
        raise MalformedField(field, "out of range") from None
    if scaled != scaled.to_integral_value(context=_EXACT):
        raise MalformedField(field, f"more than {exp} decimals for {currency.upper()}")
    if abs(scaled) >= Decimal(10) ** _MAX_DIGITS:
        raise MalformedField(field, "too large")
    return int(scaled)
