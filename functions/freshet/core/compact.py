"""A dataset's days and data points as one text each: most of a dataset's document (90
maps of counts, 48 pairs of times), which every store and every publish otherwise reads
as hundreds of objects. Pure.

    days_text({"2026-11-27": {"fail": 0, "ok": 3}, "2026-11-29": {"fail": 1, "ok": 1}})
        == "2026-11-27|3.0 _ 1.1"      (from the first day: "ok.fail", "_" for none)
    points_text([{"at": t1, "as_of": None}, {"at": t2, "as_of": t3}])
        == "<t1 ISO>/- <t2 ISO>/<t3 ISO>"

Each gives None for a value not of that shape, which is then stored as it is; reading
back gives exactly what was written. A dataset group's entries (freshet.gcp.grouped)
and the stored model's chunks (freshet.status.snapshot) hold them this way.
"""

import functools
from datetime import UTC, date, datetime, timedelta

MAX_DAYS_SPAN = 400  # a dataset's days kept compact span at most this many (90 in use)


def days_text(daily: object) -> str | None:
    """A dataset's `daily` ({"2026-11-28": {"fail": 0, "ok": 3}, ...}) as its first day
    and one "ok.fail" (or "_": no entry) per day from it: "2026-11-27|3.0 _ 1.1".
    None when it is not of that shape (it is then kept as it is)."""
    if not isinstance(daily, dict) or not daily:
        return None
    try:
        keys = sorted(daily)  # ISO dates sort as the days they name
        first, last = date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])
    except (TypeError, ValueError):
        return None
    span = (last - first).days + 1
    if not 0 < span <= MAX_DAYS_SPAN:
        return None
    tokens, found = [], 0
    for day in _days(first.isoformat(), span):
        counts = daily.get(day)
        if counts is None:
            tokens.append("_")
            continue
        if (not isinstance(counts, dict) or counts.keys() != {"ok", "fail"}
                or type(counts["ok"]) is not int or type(counts["fail"]) is not int
                or counts["ok"] < 0 or counts["fail"] < 0):
            return None
        tokens.append(f"{counts['ok']}.{counts['fail']}")
        found += 1
    if found != len(daily):
        return None  # a key that is not one of those days as date.isoformat writes it
    return f"{first.isoformat()}|{' '.join(tokens)}"


def days_from_text(text: str) -> dict[str, dict[str, int]]:
    start, _, rest = text.partition("|")
    tokens = rest.split(" ")
    counts = [_COUNTS.get(t) or _counted(t) for t in tokens]
    return {day: {"fail": c[1], "ok": c[0]}
            for day, c in zip(_days(start, len(tokens)), counts, strict=True) if c is not _NONE}


_NONE = (-1, -1)  # "_": no entry that day
_COUNTS: dict[str, tuple[int, int]] = {"_": _NONE}  # "ok.fail" -> (ok, fail), as read


def _counted(token: str) -> tuple[int, int]:
    ok, _, fail = token.partition(".")
    counts = (int(ok), int(fail))
    if len(_COUNTS) < 4096:  # a few dozen in practice: counts per day are small
        _COUNTS[token] = counts
    return counts


@functools.lru_cache(maxsize=64)
def _days(start: str, count: int) -> tuple[str, ...]:
    first = date.fromisoformat(start)
    return tuple((first + timedelta(days=i)).isoformat() for i in range(count))


def points_text(points: object) -> str | None:
    """A dataset's `data_points` ([{"at": t, "as_of": t or None}, ...]) as "at/as_of"
    ISO times ("-": None) separated by spaces; None when not of that shape."""
    if not isinstance(points, list) or not points:
        return None
    tokens = []
    for p in points:
        if not isinstance(p, dict) or p.keys() != {"at", "as_of"}:
            return None
        at, as_of = p["at"], p["as_of"]
        if not _aware(at) or not (as_of is None or _aware(as_of)):
            return None
        tokens.append(f"{at.astimezone(UTC).isoformat()}/"
                      f"{'-' if as_of is None else as_of.astimezone(UTC).isoformat()}")
    return " ".join(tokens)


def _aware(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def points_from_text(text: str) -> list[dict]:
    parse = datetime.fromisoformat
    return [{"as_of": None if as_of == "-" else parse(as_of), "at": parse(at)}
            for at, _, as_of in (t.partition("/") for t in text.split(" "))]


# A group entry's fields holding the texts (the dataset's own names hold the values when
# they are not of the usual shape, or in an entry written before)
DAYS_FIELD, POINTS_FIELD = "daily_text", "data_points_text"


def compacted(doc: dict) -> dict:
    """A dataset's document with its days and data points as texts, when they are of
    the usual shape."""
    days, points = days_text(doc.get("daily")), points_text(doc.get("data_points"))
    if days is None and points is None:
        return doc
    doc = dict(doc)
    if days is not None:
        del doc["daily"]
        doc[DAYS_FIELD] = days
    if points is not None:
        del doc["data_points"]
        doc[POINTS_FIELD] = points
    return doc


def expanded(doc: dict) -> dict:
    """compacted's inverse (a document without the texts is returned as it is)."""
    if DAYS_FIELD not in doc and POINTS_FIELD not in doc:
        return doc
    doc = dict(doc)
    days, points = doc.pop(DAYS_FIELD, None), doc.pop(POINTS_FIELD, None)
    if isinstance(days, str):
        doc["daily"] = days_from_text(days)
    if isinstance(points, str):
        doc["data_points"] = points_from_text(points)
    return doc
