"""Text from outside (sync errors, job descriptions, config values) made safe to print,
embed or link.

Control characters are illegal in XML 1.0 (the feed, the badges) and, in a terminal,
escape sequences can retitle the window or clear the screen. Bidirectional controls
(U+202E RIGHT-TO-LEFT OVERRIDE and kin) make text read differently from what it is
("exe.txt" shown as "txt.exe"), a byte-order mark hides inside a word, and a lone
surrogate cannot be encoded at all: each becomes U+FFFD, visibly.
"""

import json
import re
from collections.abc import Callable

# C0 controls but tab, newline and carriage return; DEL; C1 controls (0x9b is a CSI);
# bidi marks, embeddings, overrides and isolates; the BOM / zero-width no-break space;
# lone surrogates; and the two non-characters XML 1.0 forbids.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
    "\ud800-\udfff\ufffe\uffff]"
)
# Line and paragraph separators and NEL end a line in some readers but not others.
_LINE_BREAKS = re.compile("[\t\r\n\u2028\u2029]")
_SEPARATORS = re.compile("[\u2028\u2029]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# What a browser removes from a URL before it reads the scheme (WHATWG URL parsing).
_URL_EDGES = "".join(chr(c) for c in range(0x21))
_URL_TABS = re.compile("[\t\n\r]")
LINK_SCHEMES = ("http", "https")
# A log entry's text (a traceback) at most: Cloud Logging bills by the byte, and a sync's
# 10 MB error must not be logged again on every retry.
MAX_LOGGED_CHARS = 16 * 1024


def printable(text: str) -> str:
    """Unsafe characters (controls, bidi overrides, BOM, surrogates) become U+FFFD;
    tab and line breaks stay."""
    if text.isascii() and (text.isprintable() or _UNSAFE.search(text) is None):
        return text  # most text, and ASCII with line breaks (a page's CSS): unchanged
    return _SEPARATORS.sub("\n", _UNSAFE.sub("\ufffd", text))


def printable_all(value: object) -> object:
    """`printable` applied to every string in a JSON-like value (keys included)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_all(k): printable_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_all(v) for v in value]
    return value


# What `printable` changes in JSON text written with ensure_ascii=False: an unsafe
# character or a line separator as it is (all but DEL beyond ASCII), or a control that
# JSON escapes (\u00XX, \b, \f; the escaped tab and line breaks stay). A backslash of
# the text itself may look like one too: that only costs the slow path.
_RAW_UNSAFE = re.compile(_UNSAFE.pattern[:-1] + "\u2028\u2029]")
_ESCAPED_CONTROLS = ("\\u00", "\\b", "\\f")


def printable_json(value: object) -> str:
    """json.dumps(printable_all(value)), compact, not ASCII-escaped; walking the value
    only when its JSON text shows a character that `printable` would replace (most
    documents have none, and walking a large one costs more than writing it)."""
    text = _compact(value)
    # The escapes all start with a backslash, which most texts lack: one scan, not three.
    if ("\\" in text and any(s in text for s in _ESCAPED_CONTROLS)) or "\x7f" in text or (
            not text.isascii() and _RAW_UNSAFE.search(text) is not None):
        return _compact(printable_all(value))
    return text


def json_encoder(**options: object) -> Callable[[object], str]:
    """`json.JSONEncoder(**options).encode` without its circular check (Freshet's
    documents are trees: a cycle is a RecursionError instead), its C encoder made once.
    JSONEncoder.encode makes one per call (and a closure), which costs as much as
    encoding a small document: a page build encodes ~11,000 of them."""
    encoder = json.JSONEncoder(check_circular=False, **options)  # type: ignore[arg-type]
    make = json.encoder.c_make_encoder  # None where the C accelerator is missing
    if make is None or encoder.indent is not None:
        return encoder.encode
    encode = make(None, encoder.default,
                  json.encoder.encode_basestring_ascii if encoder.ensure_ascii
                  else json.encoder.encode_basestring, None, encoder.key_separator,
                  encoder.item_separator, encoder.sort_keys, encoder.skipkeys,
                  encoder.allow_nan)
    return lambda value: "".join(encode(value, 0))


# json.dumps(ensure_ascii=False, separators=(",", ":")), its encoder made once.
_compact = json_encoder(ensure_ascii=False, separators=(",", ":"))


def one_line(text: str) -> str:
    """printable, and every tab or line break a space: for a table cell."""
    return _LINE_BREAKS.sub(" ", printable(text))


# What Freshet keeps of an error text (runs, attempts, jobs, datasets): enough to act
# on, and a bound on every document that stores one.
MAX_ERROR_CHARS = 2000


def shorten(text: str | None, limit: int) -> str | None:
    """At most `limit` characters, '…' marking a cut (None stays None)."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def clip(text: str, limit: int) -> str:
    """At most about `limit` characters: the head and the tail, with what was cut counted.

    For logs and answers: a traceback's first frames say where it started, its last
    lines what went wrong, and a 10 MB message must not be copied on every retry."""
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n… [{cut} characters cut] …\n{text[-half:]}"


def link_scheme(url: str) -> str | None:
    """The scheme a browser would see in `url` ('' for a relative link), lower-cased.

    Browsers strip leading and trailing spaces and controls and drop tabs and line
    breaks anywhere, so ' JaVa\\tScript:x' is a javascript: URL: read it the same way."""
    cleaned = _URL_TABS.sub("", url.strip(_URL_EDGES))
    found = _SCHEME.match(cleaned)
    return found.group(1).lower() if found else ""


def safe_link(url: object) -> str | None:
    """`url` if it may be an href (http, https or relative), else None."""
    if not isinstance(url, str) or not url or url != printable(url):
        return None
    if url != url.strip(_URL_EDGES) or _URL_TABS.search(url):
        return None
    return url if link_scheme(url) in ("", *LINK_SCHEMES) else None
