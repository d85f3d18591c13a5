from decimal import Decimal
from typing import get_args

import pytest
from dodopayments.types.currency import Currency

from f.dodo.lib.errors import EventError, MalformedField, MissingField
from f.dodo.lib.money import CURRENCIES, EXPONENTS, exponent, format_major, parse_minor, to_major, to_minor


def test_currency_list_is_exactly_the_sdks():
    assert set(CURRENCIES) == set(get_args(Currency))
    assert len(CURRENCIES) == 145 == len(EXPONENTS)


@pytest.mark.parametrize("code, exp", [
    ("USD", 2), ("EUR", 2), ("INR", 2), ("JPY", 0), ("KRW", 0), ("VND", 0), ("CLP", 0), ("PYG", 0),
    ("UGX", 0), ("XAF", 0), ("XOF", 0), ("XPF", 0), ("BIF", 0), ("RWF", 0), ("KWD", 3), ("BHD", 3),
    ("OMR", 3), ("JOD", 3), ("TND", 3), ("IQD", 3), ("LYD", 3), ("HUF", 2), ("TWD", 2), ("MGA", 2),
])
def test_iso_4217_exponents(code, exp):
    assert exponent(code) == exp
    assert exponent(code.lower()) == exp


def test_only_the_iso_exceptions_differ_from_two_decimals():
    assert sorted(c for c, e in EXPONENTS.items() if e == 3) == ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
    assert len([c for c, e in EXPONENTS.items() if e == 0]) == 15


@pytest.mark.parametrize("minor, currency, text", [
    (1234, "USD", "12.34"), ("1234", "USD", "12.34"), (1000, "USD", "10.00"), (5, "USD", "0.05"),
    (0, "USD", "0.00"), (-250, "EUR", "-2.50"), (1000, "JPY", "1000"), ("29000", "KRW", "29000"),
    (1234, "KWD", "1.234"), (7250, "BHD", "7.250"), (0, "JPY", "0"), (0, "KWD", "0.000"),
    (10**29, "USD", "1" + "0" * 27 + ".00"),
])
def test_format_major(minor, currency, text):
    assert format_major(minor, currency) == text
    assert to_major(minor, currency) == Decimal(text)
    assert isinstance(to_major(minor, currency), Decimal)
    assert to_minor(text, currency) == int(minor)


@pytest.mark.parametrize("major, currency, minor", [
    ("12.34", "USD", 1234), ("12", "USD", 1200), (Decimal("12.3"), "USD", 1230), (7, "JPY", 7),
    ("1.234", "KWD", 1234), (" 5.5 ", "BHD", 5500), ("-0.01", "USD", -1), (Decimal("1E+3"), "JPY", 1000),
])
def test_to_minor(major, currency, minor):
    assert to_minor(major, currency) == minor


@pytest.mark.parametrize("bad", [12.34, 12.0, float("nan"), True, None, "12.5", "1e3", "", "abc", "0x10", [], {},
                                 "1" * 31, 10**30])
def test_parse_minor_rejects_floats_and_garbage_naming_the_field(bad):
    with pytest.raises(EventError) as e:
        parse_minor(bad, "data.total_amount")
    assert e.value.field == "data.total_amount"
    assert str(e.value).startswith("data.total_amount: ")
    assert isinstance(e.value, MissingField if bad is None else MalformedField)


@pytest.mark.parametrize("bad", [1.5, "1.234", "12,34", "abc", Decimal("NaN"), Decimal("Infinity"), True, None])
def test_to_minor_rejects_floats_excess_decimals_and_garbage(bad):
    with pytest.raises(EventError) as e:
        to_minor(bad, "USD", "amount")
    assert e.value.field == "amount"


def test_to_minor_rejects_more_decimals_than_the_currency_has():
    with pytest.raises(MalformedField, match="0 decimals for JPY"):
        to_minor("10.5", "JPY")
    assert to_minor("10.500", "KWD") == 10500
    with pytest.raises(MalformedField):
        to_minor("10.5001", "KWD")


@pytest.mark.parametrize("bad", ["XYZ", "US", "", 840, None])
def test_unknown_currency_is_an_error_naming_currency(bad):
    with pytest.raises(EventError) as e:
        format_major(100, bad)
    assert e.value.field == "currency"


def test_no_float_in_results():
    for c in CURRENCIES:
        assert type(to_major(123456, c)) is Decimal
        assert type(to_minor(format_major(123456, c), c)) is int
