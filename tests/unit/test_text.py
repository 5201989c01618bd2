"""Text from outside: what may be printed, what may become a link, how long a log line gets."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.core.text import (
    clip,
    link_scheme,
    one_line,
    printable,
    printable_all,
    printable_json,
    safe_link,
)

BIDI_AND_BOM = ["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u2066", "\u2067",
                "\u2068", "\u2069", "\u200e", "\u200f", "\u061c", "\ufeff"]


@pytest.mark.parametrize("char", BIDI_AND_BOM)
def test_bidi_controls_and_the_bom_are_made_visible(char):
    shown = printable(f"invoice{char}txt.exe")
    assert char not in shown and shown == "invoice\ufffdtxt.exe"


def test_controls_surrogates_and_xml_non_characters_are_replaced():
    shown = printable("a\x1b[2Jb\x00c\x9bd\ud800e\ufffff")
    assert shown == "a\ufffd[2Jb\ufffdc\ufffdd\ufffde\ufffdf"
    printable("x\udfff").encode("utf-8")  # encodable after the replacement


def test_line_and_paragraph_separators_are_line_breaks_and_one_line_flattens_them():
    assert printable("a\u2028b\u2029c") == "a\nb\nc"
    assert one_line("a\u2028b\tc\r\nd") == "a b c  d"


def test_ordinary_text_in_any_script_is_untouched():
    text = "Umsatz für März — 売上 — مبيعات — 👩‍💻\tok\n"
    assert printable(text) == text


def test_clip_keeps_head_and_tail_and_says_how_much_was_cut():
    text = "HEAD" + "x" * 10_000_000 + "TAIL"
    clipped = clip(text, 1000)
    assert len(clipped) < 1100
    assert clipped.startswith("HEAD") and clipped.endswith("TAIL")
    assert f"[{len(text) - 1000} characters cut]" in clipped
    assert clip("short", 1000) == "short"


@pytest.mark.parametrize("url", [
    "https://bi.example/ads", "http://bi.example", "HTTPS://BI.EXAMPLE/x", "/reports/ads",
    "reports/ads.html", "#d-sales.orders", "?q=1", "//cdn.example/x",
])
def test_http_https_and_relative_links_are_safe(url):
    assert safe_link(url) == url


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
    "\tjavascript:alert(1)", "\x01javascript:alert(1)", "java\tscript:alert(1)",
    "java\nscript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)", "file:///etc/passwd", "mailto:x@example.com",
    "https://ok.example\u202e", "https://ok.example ", "", None, 42,
])
def test_every_other_scheme_and_every_disguise_is_not_a_link(url):
    assert safe_link(url) is None


def test_the_scheme_is_read_the_way_a_browser_reads_it():
    assert link_scheme("  JAVA\tSCRIPT:x") == "javascript"
    assert link_scheme("\x00\x1f https://x") == "https"
    assert link_scheme("/a:b") == ""


_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12) | \
    st.sampled_from(["\\", "\\u0001", "a\\bc", "\x7f", "\x08\x0c", "\u2028", "\ud800", "ok"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_printable_json_is_the_json_of_printable_all_whatever_the_text(value):
    slow = json.dumps(printable_all(value), ensure_ascii=False, separators=(",", ":"))
    assert printable_json(value) == slow
