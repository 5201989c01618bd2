"""`http_fetch`: GET a URL, keep the JSON or CSV body as a snapshot, count its records.

params:
  url          required, http(s)
  format       "json" | "csv" | "auto" (default: from the Content-Type)
  records_path for JSON, a dotted path to the list of records ("data.items");
               default: the body itself if it is a list, else 1 record
  timeout_s    default 30
  max_bytes    default 10 MiB; a larger body fails the run permanently
  headers      extra request headers (mark them secret: secret_params: [headers])
  watermark    where to read the time the data is current to (the datasets' data_as_of):
                 {json_path: "meta.generated_at"}  a dotted path; lists on the way are
                                                   walked and the latest time wins
                 {csv_column: "updated_at"}        the latest value in that column
                 {last_modified: true}             the Last-Modified response header
               plus `timezone` (IANA, default UTC) for values written without a zone.
               A value is ISO 8601 ("2026-11-28T23:00:00+01:00"), a date (its
               midnight), or Unix seconds. A body without any value reports none.

Client errors (4xx but 408/429), bodies too large or unparseable, and a watermark
that is not there or not a time are permanent; timeouts, connection errors and 5xx
are transient and retried.
"""

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from freshet.core.errors import PermanentError
from freshet.loop.registry import SyncContext, SyncResult, sync

DEFAULT_TIMEOUT_S = 30
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
RETRYABLE_CLIENT_ERRORS = (408, 425, 429)


@sync("http_fetch")
def http_fetch(ctx: SyncContext) -> SyncResult:
    url, fmt, timeout, max_bytes, headers = _params(ctx.params)
    mark = watermark_spec(ctx.params.get("watermark"))
    body, content_type, last_modified = _download(url, timeout, max_bytes, headers, ctx)
    fmt = fmt if fmt != "auto" else ("csv" if "csv" in content_type else "json")
    count = _count(body, fmt, ctx.params.get("records_path"))
    as_of = read_watermark(mark, body, fmt, last_modified) if mark else None
    if ctx.snapshot is not None:
        ctx.snapshot(f"{ctx.run_id}.{fmt}", body, "text/csv" if fmt == "csv"
                     else "application/json")
    ctx.logger.info("fetched %s: %d bytes, %d records, data as of %s", url, len(body), count,
                    as_of.isoformat() if as_of else "-")
    return SyncResult(records={key: count for key in ctx.produces},
                      watermarks={key: as_of for key in ctx.produces} if as_of else {})


def _params(params: dict):
    url = params.get("url")
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        raise PermanentError("params.url must be an http(s) URL")
    fmt = params.get("format", "auto")
    if fmt not in ("json", "csv", "auto"):
        raise PermanentError("params.format must be json, csv or auto")
    timeout = params.get("timeout_s", DEFAULT_TIMEOUT_S)
    max_bytes = params.get("max_bytes", DEFAULT_MAX_BYTES)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise PermanentError("params.timeout_s must be a positive number")
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise PermanentError("params.max_bytes must be a positive integer")
    headers = params.get("headers") or {}
    if not isinstance(headers, dict):
        raise PermanentError("params.headers must be an object")
    return url, fmt, timeout, max_bytes, {str(k): str(v) for k, v in headers.items()}


def _download(url, timeout, max_bytes, headers, ctx: SyncContext) -> tuple[bytes, str]:
    with requests.get(url, timeout=timeout, headers=headers, stream=True) as response:
        status = response.status_code
        if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
            raise PermanentError(f"GET {url} answered {status}")
        response.raise_for_status()  # 5xx, 408, 429: transient
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise PermanentError(f"GET {url}: body larger than {max_bytes} bytes")
            chunks.append(chunk)
            ctx.heartbeat()
        return (b"".join(chunks), response.headers.get("Content-Type", ""),
                response.headers.get("Last-Modified"))


def _count(body: bytes, fmt: str, records_path) -> int:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PermanentError("body is not UTF-8 text") from None
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        return max(len([r for r in rows if r]) - 1, 0)  # minus the header row
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PermanentError(f"body is not valid JSON: {exc}") from None
    for part in (records_path or "").split(".") if records_path else ():
        if not isinstance(data, dict) or part not in data:
            raise PermanentError(f"records_path {records_path!r}: no key {part!r}")
        data = data[part]
    return len(data) if isinstance(data, list) else 1


# -- watermark -------------------------------------------------------------------

@dataclass(frozen=True)
class WatermarkSpec:
    source: str  # json_path | csv_column | last_modified
    where: str  # the path or the column ("" for last_modified)
    zone: tzinfo  # for values written without a zone


_SOURCES = ("json_path", "csv_column", "last_modified")


def watermark_spec(value: object) -> WatermarkSpec | None:
    """params.watermark, checked before anything is fetched."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PermanentError("params.watermark must be an object: {json_path: ...}, "
                             "{csv_column: ...} or {last_modified: true}")
    unknown = set(value) - {*_SOURCES, "timezone"}
    if unknown:
        raise PermanentError(f"params.watermark.{sorted(unknown)[0]}: unknown key")
    given = [s for s in _SOURCES if s in value]
    if len(given) != 1:
        raise PermanentError("params.watermark needs exactly one of json_path, csv_column, "
                             "last_modified")
    source, where = given[0], value[given[0]]
    if source == "last_modified" and where is not True:
        raise PermanentError("params.watermark.last_modified must be true")
    if source != "last_modified" and (not isinstance(where, str) or not where.strip()):
        raise PermanentError(f"params.watermark.{source} must be a non-empty string")
    return WatermarkSpec(source, "" if where is True else where, _zone(value.get("timezone")))


def _zone(name: object) -> tzinfo:
    if name is None:
        return UTC
    try:
        if isinstance(name, str):
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise PermanentError(f"params.watermark.timezone: unknown timezone {name!r}")


def read_watermark(spec: WatermarkSpec, body: bytes, fmt: str,
                   last_modified: str | None) -> datetime | None:
    """The latest time the spec points at (None: the body holds no value at all)."""
    field = f"params.watermark.{spec.source}"
    if spec.source == "last_modified":
        if not last_modified:
            raise PermanentError(f"{field}: the response has no Last-Modified header")
        return _time(last_modified, spec.zone, field, http_date=True)
    text = body.decode("utf-8-sig", errors="replace")
    values = (_csv_values(text, spec.where, field) if spec.source == "csv_column"
              else _json_values(text, spec.where, field))
    times = [_time(v, spec.zone, field) for v in values if v not in (None, "")]
    return max(times, default=None)


def _csv_values(text: str, column: str, field: str) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    if column not in (reader.fieldnames or ()):
        raise PermanentError(f"{field} {column!r}: no such column")
    return [row.get(column) for row in reader]


def _json_values(text: str, path: str, field: str) -> list:
    try:
        found = [json.loads(text)]
    except ValueError as exc:
        raise PermanentError(f"body is not valid JSON: {exc}") from None
    for part in path.split("."):
        found = _walk(found)
        if not all(isinstance(d, dict) and part in d for d in found):
            raise PermanentError(f"{field} {path!r}: no key {part!r}")
        found = [d[part] for d in found]
    return _walk(found)


def _walk(values: list) -> list:
    """Lists met on the way stand for each of their items."""
    out = []
    for value in values:
        out.extend(_walk(value) if isinstance(value, list) else [value])
    return out


def _time(value: object, zone: tzinfo, field: str, *, http_date: bool = False) -> datetime:
    try:
        if http_date:
            parsed = parsedate_to_datetime(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            parsed = datetime.fromtimestamp(float(value), UTC)
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
        else:
            raise ValueError
    except (ValueError, TypeError, OverflowError, OSError):
        raise PermanentError(f"{field}: {str(value)[:100]!r} is not a time") from None
    return (parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=zone)
            ).astimezone(UTC)
