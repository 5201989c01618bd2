"""http_fetch's params: their schema, and the check `apply` runs before a job is stored.

  url          required, http(s)
  format       "json" | "csv" | "auto" (default: from the Content-Type)
  records_path for JSON, a dotted path to the list of records ("data.items");
               default: the body itself if it is a list, else 1 record
  timeout_s    default 60, at most 3600: the whole download, from connecting to the
               last byte (and never past the run's lease)
  max_bytes    default 10 MiB; a larger body fails the run permanently
  headers      extra request headers (mark them secret: secret_params: [headers]); sent
               to the URL's host only, never after a redirect to another host
  watermark    where to read the time the data is current to (the datasets' data_as_of):
                 {json_path: "meta.generated_at"}  a dotted path; lists on the way are
                                                   walked and the latest time wins
                 {csv_column: "updated_at"}        the latest value in that column
                 {last_modified: true}             the Last-Modified response header
               plus `timezone` (IANA, default UTC) for values written without a zone.

Every error is a ValidationError naming the field (`params.url`): at apply it becomes
`file:line: jobs[i].params.url: ...`; at run time a PermanentError (retrying cannot
fix a param).
"""

from dataclasses import dataclass
from datetime import UTC, tzinfo
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from freshet.core.errors import ValidationError
from freshet.loop.syncs.base import CheckContext

KEYS = ("url", "format", "records_path", "timeout_s", "max_bytes", "headers", "watermark")
FORMATS = ("json", "csv", "auto")
DEFAULT_TIMEOUT_S = 60
MAX_TIMEOUT_S = 3600
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# Headers a job may not set: the metadata server's passwords, and Host (which would aim
# an allowed address at another virtual host).
FORBIDDEN_HEADERS = ("metadata-flavor", "x-google-metadata-request", "host")
_SOURCES = ("json_path", "csv_column", "last_modified")


@dataclass(frozen=True)
class WatermarkSpec:
    source: str  # json_path | csv_column | last_modified
    where: str  # the path or the column ("" for last_modified)
    zone: tzinfo  # for values written without a zone


@dataclass(frozen=True)
class FetchParams:
    url: str
    format: str
    records_path: str | None
    timeout_s: float
    max_bytes: int
    headers: dict[str, str]
    watermark: WatermarkSpec | None


def check(params: dict, context: CheckContext) -> None:
    """apply's check: the params parse, and the pipeline's policy lets the URL's host be
    fetched (the run still checks every address it connects to, and every redirect)."""
    parsed = parse(params, strict=True)
    refusal = context.egress.host_refusal(urlsplit(parsed.url).hostname or "")
    if refusal:
        raise ValidationError("params.url", refusal)


def parse(params: dict, *, strict: bool = False) -> FetchParams:
    """`strict` (apply, POST /jobs) refuses keys the kind does not know; a run ignores
    them (a job stored before the check keeps running)."""
    if not isinstance(params, dict):
        raise ValidationError("params", "must be a mapping")
    for key in params if strict else ():
        if key not in KEYS:
            raise ValidationError(f"params.{key}",
                                  f"unknown key (expected one of: {', '.join(KEYS)})")
    fmt = params.get("format", "auto")
    if fmt not in FORMATS:
        raise ValidationError("params.format", "must be json, csv or auto")
    records_path = params.get("records_path")
    if records_path is not None and not isinstance(records_path, str):
        raise ValidationError("params.records_path", "must be a dotted path such as data.items")
    return FetchParams(url=_url(params.get("url")), format=fmt, records_path=records_path,
                       timeout_s=_timeout(params.get("timeout_s", DEFAULT_TIMEOUT_S)),
                       max_bytes=_max_bytes(params.get("max_bytes", DEFAULT_MAX_BYTES)),
                       headers=_headers(params.get("headers")),
                       watermark=watermark_spec(params.get("watermark")))


def _url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") \
            or not urlsplit(url).hostname:
        raise ValidationError("params.url", "must be an http(s) URL")
    try:
        urlsplit(url).port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        raise ValidationError("params.url", "has an invalid port") from None
    return url


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value <= MAX_TIMEOUT_S:
        raise ValidationError("params.timeout_s", f"must be a number of seconds up to "
                              f"{MAX_TIMEOUT_S}")
    return float(value)


def _max_bytes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError("params.max_bytes", "must be a positive integer")
    return value


def _headers(value: object) -> dict[str, str]:
    headers = value or {}
    if not isinstance(headers, dict):
        raise ValidationError("params.headers", "must be an object")
    out = {}
    for name, raw in headers.items():
        text = str(raw)
        if str(name).lower() in FORBIDDEN_HEADERS:
            raise ValidationError(f"params.headers.{name}", f"{name} is never sent")
        if any(c in f"{name}{text}" for c in "\r\n\x00"):
            raise ValidationError(f"params.headers.{name}", "contains a line break")
        out[str(name)] = text
    return out


def watermark_spec(value: object) -> WatermarkSpec | None:
    """params.watermark, checked before anything is fetched."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("params.watermark", "must be an object: {json_path: ...}, "
                              "{csv_column: ...} or {last_modified: true}")
    unknown = set(value) - {*_SOURCES, "timezone"}
    if unknown:
        raise ValidationError(f"params.watermark.{sorted(unknown)[0]}", "unknown key")
    given = [s for s in _SOURCES if s in value]
    if len(given) != 1:
        raise ValidationError("params.watermark", "needs exactly one of json_path, "
                              "csv_column, last_modified")
    source, where = given[0], value[given[0]]
    if source == "last_modified" and where is not True:
        raise ValidationError("params.watermark.last_modified", "must be true")
    if source != "last_modified" and (not isinstance(where, str) or not where.strip()):
        raise ValidationError(f"params.watermark.{source}", "must be a non-empty string")
    return WatermarkSpec(source, "" if where is True else where, _zone(value.get("timezone")))


def _zone(name: object) -> tzinfo:
    if name is None:
        return UTC
    try:
        if isinstance(name, str):
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise ValidationError("params.watermark.timezone", f"unknown timezone {name!r}")
