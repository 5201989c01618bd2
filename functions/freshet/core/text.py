"""Text from outside (sync errors, job descriptions) made safe to print or embed.

Control characters are illegal in XML 1.0 (the feed, the badges) and, in a terminal,
escape sequences can retitle the window or clear the screen.
"""

import re

# C0 controls but tab, newline and carriage return; DEL; C1 controls (0x9b is a CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile(r"[\t\r\n]")


def printable(text: str) -> str:
    """Drop control characters, keep tab and line breaks."""
    return _CONTROL.sub("\ufffd", text)


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
