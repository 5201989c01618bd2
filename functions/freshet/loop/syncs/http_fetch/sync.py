"""http_fetch's runtime: GET the URL under the pipeline's policy (ctx.egress), keep the
body as a snapshot, count its records, read its watermark.

Where it may fetch from is the pipeline's `http_fetch:` policy (freshet.core.egress),
applied to the control document and handed in by run_task: link-local and metadata
addresses are refused, redirects stay on the URL's host unless the target is listed in
`allowed_hosts`, and no Metadata-Flavor header is ever sent. While it waits it renews
the run's lease (ctx.heartbeat).

Client errors (4xx but 408/425/429), refusals, bodies too large or unparseable, and a
watermark that is not there or not a time are permanent; timeouts, connection errors
and 5xx are transient and retried. Error texts name the URL without its query and never
an address or a redirect's target.
"""

import csv
import io
import json
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import requests

from freshet.core.egress import EgressPolicy, shown_url
from freshet.core.errors import PermanentError, ValidationError
from freshet.core.timeutil import utcnow
from freshet.core.values import joined_within
from freshet.gcp import egress
from freshet.loop.syncs.base import SyncContext, SyncResult
from freshet.loop.syncs.http_fetch.params import WatermarkSpec, parse, watermark_spec

__all__ = ["run", "fetch", "read_watermark", "watermark_spec"]

RETRYABLE_CLIENT_ERRORS = (408, 425, 429)
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class FetchError(Exception):
    """Transient: the fetch did not complete (timeout, connection, 5xx); retried."""


class Refused(PermanentError):
    """The policy forbids this host, address or redirect."""


def run(ctx: SyncContext) -> SyncResult:
    try:
        params = parse(ctx.params)
    except ValidationError as exc:
        raise PermanentError(str(exc)) from None
    deadline = _deadline(ctx.deadline, params.timeout_s, utcnow())
    body, content_type, last_modified = fetch(
        params.url, params.headers, max_bytes=params.max_bytes, deadline_s=deadline,
        policy=ctx.egress, heartbeat=ctx.heartbeat)
    fmt = params.format if params.format != "auto" else (
        "csv" if "csv" in content_type else "json")
    count = _count(body, fmt, params.records_path)
    mark = params.watermark
    as_of = read_watermark(mark, body, fmt, last_modified) if mark else None
    if ctx.snapshot is not None:
        ctx.snapshot(f"{ctx.run_id}.{fmt}", body, "text/csv" if fmt == "csv"
                     else "application/json")
    ctx.logger.info("fetched %s: %d bytes, %d records, data as of %s", shown_url(params.url),
                    len(body), count, as_of.isoformat() if as_of else "-")
    return SyncResult(records={key: count for key in ctx.produces},
                      watermarks={key: as_of for key in ctx.produces} if as_of else {})


def _deadline(lease_end: datetime, timeout_s: float, now: datetime) -> float:
    """Seconds the download may take: `timeout_s`, and done a margin before the lease
    ends (a tenth of what is left, 5 s to 60 s) so the attempt can still record itself."""
    left = (lease_end - now).total_seconds()
    margin = min(max(left / 10, 5.0), 60.0)
    budget = min(timeout_s, left - margin)
    if budget <= 0:
        raise FetchError("no time left in the run's lease to fetch")
    return budget


# -- the download -------------------------------------------------------------------


def fetch(url: str, headers: dict[str, str], *, max_bytes: int, deadline_s: float,
          policy: EgressPolicy, heartbeat=lambda: None) -> tuple[bytes, str, str | None]:
    """GET `url` under `policy`, the whole exchange within `deadline_s` seconds, through
    the guarded client (freshet.gcp.egress)."""
    refusal = policy.host_refusal(urlsplit(url).hostname or "")
    if refusal:
        raise Refused(f"GET {shown_url(url)}: refused: {refusal}")
    try:
        return egress.within_deadline(
            policy, lambda session: _follow(session, url, headers, max_bytes, policy),
            deadline_s=deadline_s, heartbeat=heartbeat)
    except (PermanentError, FetchError):
        raise
    except Exception as exc:
        words = egress.describe(exc)
        if words is None:
            raise
        kind = Refused if isinstance(exc, egress.RefusedAddress) else FetchError
        raise kind(f"GET {shown_url(url)}: {words}") from None


def _follow(session: requests.Session, url: str, headers: dict[str, str], max_bytes: int,
            policy: EgressPolicy) -> tuple[bytes, str, str | None]:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        same_host = urlsplit(current).hostname == urlsplit(url).hostname
        with session.get(current, headers=headers if same_host else {}, stream=True,
                         allow_redirects=False, timeout=(30, 30)) as response:
            location = response.headers.get("Location")
            if response.status_code not in REDIRECTS or not location:
                return _body(response, url, max_bytes)
        target = urljoin(current, location)
        refusal = policy.redirect_refusal(current, target)
        if refusal:
            raise Refused(f"GET {shown_url(url)}: refused: {refusal}")
        current = target
    raise PermanentError(f"GET {shown_url(url)}: more than {MAX_REDIRECTS} redirects")


def _body(response: requests.Response, url: str, max_bytes: int
          ) -> tuple[bytes, str, str | None]:
    """The body, its Content-Type and its Last-Modified (a watermark may be read there)."""
    status = response.status_code
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        raise PermanentError(f"GET {shown_url(url)} answered {status}")
    if status >= 400:
        raise FetchError(f"GET {shown_url(url)} answered {status}")
    body = joined_within(response.iter_content(64 * 1024), max_bytes)
    if body is None:
        raise PermanentError(f"GET {shown_url(url)}: body larger than {max_bytes} bytes")
    return (body, response.headers.get("Content-Type", ""),
            response.headers.get("Last-Modified"))


# -- the body -----------------------------------------------------------------------


def _count(body: bytes, fmt: str, records_path) -> int:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PermanentError("body is not UTF-8 text") from None
    if fmt == "csv":
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise PermanentError(f"body is not valid CSV: {exc}") from None
        return max(len([r for r in rows if r]) - 1, 0)  # minus the header row
    try:
        data = json.loads(text)
    except RecursionError:
        raise PermanentError("body is JSON nested too deeply to read") from None
    except ValueError as exc:
        raise PermanentError(f"body is not valid JSON: {exc}") from None
    for part in (records_path or "").split(".") if records_path else ():
        if not isinstance(data, dict) or part not in data:
            raise PermanentError(f"records_path {records_path!r}: no key {part!r}")
        data = data[part]
    return len(data) if isinstance(data, list) else 1


# -- watermark ---------------------------------------------------------------

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
