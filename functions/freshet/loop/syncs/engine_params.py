"""What the engine kinds' params have in common, and the one table `apply` asks:
CHECKS[kind](params, where) -> the typed params, or ValidationError naming
`<where>.<field>` (ops.config adds the file and line).

The kinds themselves (bigquery_query, bigquery_load, cloud_run_job) each keep their
schema in their own package's params.py; their runtime (start, poll, finish) joins them
with the waiting run state.
"""

import re
from collections.abc import Callable
from datetime import timedelta

from freshet.core.errors import ValidationError, check_keys
from freshet.core.observe import parse_table
from freshet.core.timeutil import parse_duration

WRITE_DISPOSITIONS = ("WRITE_TRUNCATE", "WRITE_APPEND", "WRITE_EMPTY")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_LOCATION = re.compile(r"^[A-Za-z]+(-[a-z]+[0-9]*)?$")
MAX_LABELS = 64


def params_of(value: object, where: str, allowed: tuple[str, ...],
              required: tuple[str, ...]) -> dict:
    doc = check_keys(value, where, allowed, f"with {', '.join(required)}")
    for key in required:
        if key not in doc:
            raise ValidationError(f"{where}.{key}", "is required")
    return doc


def text(doc: dict, key: str, where: str, limit: int = 1_000_000) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"{where}.{key}", f"must be a non-empty string of at most "
                              f"{limit:,} characters")
    return value


def table(doc: dict, key: str, where: str) -> str:
    return str(parse_table(doc.get(key), f"{where}.{key}"))


def timeout(doc: dict, where: str, limit: timedelta) -> timedelta | None:
    if "timeout" not in doc:
        return None
    value = parse_duration(doc["timeout"], f"{where}.timeout")
    if value > limit:
        raise ValidationError(f"{where}.timeout", f"must be at most {limit}")
    return value


def disposition(doc: dict, where: str, default: str) -> str:
    value = doc.get("write_disposition", default)
    if value not in WRITE_DISPOSITIONS:
        raise ValidationError(f"{where}.write_disposition",
                              f"must be one of {', '.join(WRITE_DISPOSITIONS)}")
    return value


def labels(doc: dict, where: str) -> dict[str, str]:
    found = doc.get("labels") or {}
    if not isinstance(found, dict) or len(found) > MAX_LABELS:
        raise ValidationError(f"{where}.labels", f"must be a mapping of at most {MAX_LABELS}")
    for key, value in found.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise ValidationError(f"{where}.labels.{key}", "a label key is 1-63 lowercase "
                                  "letters, digits, '_' or '-', starting with a letter")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValidationError(f"{where}.labels.{key}", "a label value is 0-63 lowercase "
                                  "letters, digits, '_' or '-'")
    return dict(found)


def location(doc: dict, where: str) -> str:
    value = doc.get("location", "")
    if value and (not isinstance(value, str) or not _LOCATION.match(value)):
        raise ValidationError(f"{where}.location", "must be a location such as EU, US or "
                              "europe-west1")
    return value


def _checks() -> dict[str, Callable]:
    from freshet.loop.syncs.bigquery_load.params import check as load
    from freshet.loop.syncs.bigquery_query.params import check as query
    from freshet.loop.syncs.cloud_run_job.params import check as cloud_run

    return {"bigquery_query": query, "bigquery_load": load, "cloud_run_job": cloud_run}


def check_engine_params(kind: str, params: object, where: str):
    """The typed params of an engine kind, or None for another kind."""
    check = _checks().get(kind)
    return None if check is None else check(params, where)
