"""Values that JSON can carry and Firestore can store: checked where they come in.

JSON has no NaN or Infinity (Python's json writes them anyway, and the answer is then
invalid JSON for every client); Firestore stores 64-bit integers, no list directly
inside a list, no empty field name and no field name like `__name__`, at most 20 levels
of nesting; UTF-8 cannot encode a lone surrogate. A value outside these ranges is the
caller's error, named by its field, not a 500 at the write.
"""

import json
import math
import re
from collections.abc import Iterable

from freshet.core.errors import ValidationError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_RESERVED_KEY = re.compile(r"^__.*__$")
BOOLEAN = "must be true or false"


def is_int(value: object) -> bool:
    """An integer, and not a bool: Python's True is the int 1, JSON's and YAML's true
    are no number."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or a float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(value: object, field: str, low: int, high: int, message: str | None = None
              ) -> int:
    """`value` when it is an integer (not a bool) from `low` to `high`; else a
    ValidationError naming `field`."""
    if not is_int(value) or not low <= value <= high:  # type: ignore[operator]
        raise ValidationError(field, message or f"must be an integer from {low} to {high}")
    return value  # type: ignore[return-value]


def check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, BOOLEAN)
    return value


def check_value(value: object, field: str, *, max_depth: int) -> None:
    """Raise ValidationError naming the first part of `value` that cannot be stored."""
    _check(value, field, max_depth, in_list=False)


def _check(value: object, field: str, depth: int, *, in_list: bool) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValidationError(field or "body", "must be an integer from -2^63 to 2^63-1")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field or "body", "NaN and Infinity are not numbers JSON "
                                  "or Firestore can hold")
    elif isinstance(value, str):
        _check_text(value, field)
    elif isinstance(value, list | tuple | dict):
        if depth <= 0:
            raise ValidationError(field or "body", "is nested too deeply")
        if isinstance(value, dict):
            _check_mapping(value, field, depth)
        else:
            if in_list:
                raise ValidationError(field, "a list directly inside a list cannot be stored "
                                      "(wrap the inner list in an object)")
            for i, item in enumerate(value):
                _check(item, f"{field}[{i}]", depth - 1, in_list=True)
    else:
        raise ValidationError(field or "body", f"must be JSON (a string, number, boolean, "
                              f"null, list or object), not {type(value).__name__}")


def _check_mapping(value: dict, field: str, depth: int) -> None:
    for key, item in value.items():
        name = f"{field}.{key}" if field else str(key)
        if not isinstance(key, str) or not key:
            raise ValidationError(field or "body", "keys must be non-empty strings")
        if _RESERVED_KEY.match(key):
            raise ValidationError(name, "keys of the form __name__ are reserved by Firestore")
        _check_text(key, name)
        _check(item, name, depth - 1, in_list=False)


def _check_text(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field or "body", "is not valid Unicode text "
                              "(a lone surrogate)") from None


def parse_json(raw: bytes | str, field: str = "body", *, max_depth: int = 32) -> object:
    """JSON that can be stored: NaN, Infinity, huge integers, deep nesting, empty keys and
    lone surrogates are refused naming where they are (Python's json reads them all)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValidationError(field, "is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(field, f"is not valid JSON ({exc})") from None
    check_value(value, "" if isinstance(value, dict) else field, max_depth=max_depth)
    return value


def json_size(value: object) -> int:
    """Bytes of `value` as compact JSON (for size caps on stored values)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode("utf-8", "replace"))


def joined_within(chunks: Iterable[bytes], limit: int) -> bytes | None:
    """The chunks joined, or None as soon as they pass `limit` bytes (the rest unread):
    a download sized by its sender is never held in memory whole."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)
