"""Defusing (f/dodo/lib/inert.py) checked against Windmill's own rules, with the marker
written out here: nothing is taken from the code under test.

A worker resolves a job argument's string when it starts with `$var:`, `$res:`,
`$encrypted:` or, for a reserved variable such as `$WM_TOKEN`, with `$`
(windmill-labs/windmill backend/windmill-worker/src/common.rs@20db3a33dda0578e3c41ca934370ea6b157ea529,
`transform_json_value`: `y.starts_with("$var:")` ... `y.starts_with("$")`); the
unanchored `RE_RES_VAR` (`\\$(?:var|res|encrypted)\\:`) of `transform_json` only decides
whether an argument is walked at all.
"""
import re

import pytest

from f.dodo.lib import inert
from f.dodo.lib.inert import defuse

WORD_JOINER = "\u2060"  # invisible, zero width, not `$`: the text reads the same
RE_RES_VAR = re.compile(r"\$(?:var|res|encrypted)\:")  # Windmill's pattern, verbatim
RESERVED = re.compile(r"\$[A-Z_][A-Z0-9_]*")  # `$WM_TOKEN`, `$WM_WORKSPACE`, ...

ATTACKS = ["$var:f/dodo/webhook_secret", "$res:f/dodo/postgres", "$encrypted:c2VjcmV0", "$WM_TOKEN",
           "$WM_WORKSPACE", "$jsonvar:f/dodo/x", "$var:", "$", "$$var:x"]


def resolved_by_windmill(text: str) -> bool:
    """Whether transform_json_value would replace this string (its match arms, in order)."""
    return bool(RE_RES_VAR.match(text)) or bool(RESERVED.fullmatch(text)) or text.startswith("$")


def strings_and_keys(value) -> list[str]:
    out, stack = [], [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            out += list(node)
            stack += list(node.values())
        elif isinstance(node, list):
            stack += node
    return out


def test_the_marker_is_the_word_joiner():
    assert inert.JOINER == "\u2060" == WORD_JOINER
    assert defuse("$var:x") == "\u2060$var:x"


@pytest.mark.parametrize("text", ATTACKS)
def test_a_defused_string_is_no_longer_resolved_and_reads_the_same(text):
    assert resolved_by_windmill(text)  # the attack as sent would be resolved
    out = defuse(text)
    assert out == "\u2060" + text
    assert not RE_RES_VAR.match(out) and not RESERVED.fullmatch(out) and not out.startswith("$")
    assert not resolved_by_windmill(out)
    assert out.replace("\u2060", "") == text


@pytest.mark.parametrize("text", ["price $5", "plain", "", "a$var:x", "US$ 10", " $var:x"])
def test_text_windmill_leaves_alone_is_left_alone(text):
    assert not resolved_by_windmill(text)
    assert defuse(text) == text


def test_nothing_in_a_nested_delivery_is_resolved_after_defusing():
    delivery = {
        "type": "payment.succeeded",
        "data": {"customer": {"name": "$var:f/dodo/webhook_secret", "email": "$WM_TOKEN"},
                 "metadata": {"$res:f/dodo/postgres": "$encrypted:abc", "note": "price $5"},
                 "items": [["$var:a", {"$interpolate": ["$var:b"]}], "$res:u/x/y", 3, None, True]},
    }
    before = strings_and_keys(delivery)
    assert sum(map(resolved_by_windmill, before)) == 8
    after = strings_and_keys(defuse(delivery))
    assert sorted(s.replace("\u2060", "") for s in after) == sorted(before)
    assert [s for s in after if resolved_by_windmill(s)] == []
    assert sum(s.startswith("\u2060$") for s in after) == 8
    assert defuse(delivery)["data"]["metadata"]["note"] == "price $5"
    assert delivery["data"]["customer"]["name"] == "$var:f/dodo/webhook_secret"  # the input is not changed


def test_defusing_is_idempotent():
    once = defuse({"$k": ["$var:x"]})
    assert defuse(once) == once == {"\u2060$k": ["\u2060$var:x"]}


def test_html_escape_is_the_standard_librarys_html_escape():
    import html  # the oracle; the steps do not import it (its entity table: tests/test_step_imports.py)

    text = "<script>alert('x')</script> & \"Tom\" &amp; <!channel> ünï\u2060$var:x"
    assert inert.html_escape(text) == html.escape(text)
    assert inert.html_escape("&lt;") == "&amp;lt;"  # & first: an entity in the input stays text
