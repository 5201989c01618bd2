"""`http_fetch`: GET a URL, keep the JSON or CSV body as a snapshot, count its records.

params:
  url          required, http(s)
  format       "json" | "csv" | "auto" (default: from the Content-Type)
  records_path for JSON, a dotted path to the list of records ("data.items");
               default: the body itself if it is a list, else 1 record
  timeout_s    default 60: the whole download, from connecting to the last byte (and
               never past the run's lease: the attempt ends before recovery could
               think it stuck)
  max_bytes    default 10 MiB; a larger body fails the run permanently
  headers      extra request headers (mark them secret: secret_params: [headers]); sent
               to the URL's host only, never after a redirect to another host
  watermark    where to read the time the data is current to (the datasets' data_as_of):
                 {json_path: "meta.generated_at"}  a dotted path; lists on the way are
                                                   walked and the latest time wins
                 {csv_column: "updated_at"}        the latest value in that column
                 {last_modified: true}             the Last-Modified response header
               plus `timezone` (IANA, default UTC) for values written without a zone.
               A value is ISO 8601 ("2026-11-28T23:00:00+01:00"), a date (its
               midnight), or Unix seconds. A body without any value reports none.

Where it may fetch from is the pipeline's `http_fetch:` policy (freshet.core.egress):
link-local and metadata addresses are refused, redirects stay on the URL's host unless
the target is listed in `allowed_hosts`, and no Metadata-Flavor header is ever sent.
While it waits it renews the run's lease (ctx.heartbeat).

Client errors (4xx but 408/425/429), refusals, bodies too large or unparseable, and a
watermark that is not there or not a time are permanent; timeouts, connection errors
and 5xx are transient and retried. Error texts name the URL without its query and never
an address or a redirect's target.
"""

import contextlib
import csv
import io
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from freshet.core.egress import EgressPolicy, shown_url
from freshet.core.errors import PermanentError
from freshet.core.settings import egress_policy, load_settings
from freshet.core.timeutil import utcnow
from freshet.core.values import joined_within
from freshet.loop.registry import SyncContext, SyncResult, sync

DEFAULT_TIMEOUT_S = 60
MAX_TIMEOUT_S = 3600
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
RETRYABLE_CLIENT_ERRORS = (408, 425, 429)
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
HEARTBEAT_EVERY_S = 5.0
# Headers a job may not set: the metadata server's passwords, and Host (which would aim
# an allowed address at another virtual host).
FORBIDDEN_HEADERS = ("metadata-flavor", "x-google-metadata-request", "host")


class FetchError(Exception):
    """Transient: the fetch did not complete (timeout, connection, 5xx); retried."""


class Refused(PermanentError):
    """The policy forbids this host, address or redirect."""


@sync("http_fetch")
def http_fetch(ctx: SyncContext) -> SyncResult:
    url, fmt, timeout, max_bytes, headers = _params(ctx.params)
    mark = watermark_spec(ctx.params.get("watermark"))
    deadline = _deadline(ctx.deadline, timeout, utcnow())
    body, content_type, last_modified = fetch(
        url, headers, max_bytes=max_bytes, deadline_s=deadline,
        policy=egress_policy(load_settings(os.environ)), heartbeat=ctx.heartbeat)
    fmt = fmt if fmt != "auto" else ("csv" if "csv" in content_type else "json")
    count = _count(body, fmt, ctx.params.get("records_path"))
    as_of = read_watermark(mark, body, fmt, last_modified) if mark else None
    if ctx.snapshot is not None:
        ctx.snapshot(f"{ctx.run_id}.{fmt}", body, "text/csv" if fmt == "csv"
                     else "application/json")
    ctx.logger.info("fetched %s: %d bytes, %d records, data as of %s", shown_url(url),
                    len(body), count, as_of.isoformat() if as_of else "-")
    return SyncResult(records={key: count for key in ctx.produces},
                      watermarks={key: as_of for key in ctx.produces} if as_of else {})


def _params(params: dict):
    url = params.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") \
            or not urlsplit(url).hostname:
        raise PermanentError("params.url must be an http(s) URL")
    try:
        urlsplit(url).port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        raise PermanentError("params.url has an invalid port") from None
    fmt = params.get("format", "auto")
    if fmt not in ("json", "csv", "auto"):
        raise PermanentError("params.format must be json, csv or auto")
    timeout = params.get("timeout_s", DEFAULT_TIMEOUT_S)
    max_bytes = params.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not 0 < timeout <= MAX_TIMEOUT_S:
        raise PermanentError(f"params.timeout_s must be a number of seconds up to "
                             f"{MAX_TIMEOUT_S}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise PermanentError("params.max_bytes must be a positive integer")
    return url, fmt, float(timeout), max_bytes, _headers(params.get("headers"))


def _headers(value: object) -> dict[str, str]:
    headers = value or {}
    if not isinstance(headers, dict):
        raise PermanentError("params.headers must be an object")
    out = {}
    for name, raw in headers.items():
        text = str(raw)
        if name.lower() in FORBIDDEN_HEADERS:
            raise PermanentError(f"params.headers: {name} is never sent")
        if any(c in f"{name}{text}" for c in "\r\n\x00"):
            raise PermanentError(f"params.headers: {name} contains a line break")
        out[str(name)] = text
    return out


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
    """GET `url` under `policy`, the whole exchange within `deadline_s` seconds.

    The download runs in a worker thread; this one renews the lease while it waits and,
    at the deadline, shuts the worker's sockets, so a server that trickles bytes (or
    a name that never resolves) cannot hold the attempt past it."""
    refusal = policy.host_refusal(urlsplit(url).hostname or "")
    if refusal:
        raise Refused(f"GET {shown_url(url)}: refused: {refusal}")
    exchange = _Exchange(url, headers, max_bytes, policy)
    worker = threading.Thread(target=exchange.run, name="http_fetch", daemon=True)
    started = time.monotonic()
    worker.start()
    while True:
        left = deadline_s - (time.monotonic() - started)
        worker.join(min(HEARTBEAT_EVERY_S, max(left, 0)))
        if not worker.is_alive():
            return exchange.result()
        if left <= 0:
            exchange.abort()
            raise FetchError(f"GET {shown_url(url)}: no complete answer within "
                             f"{deadline_s:.0f} s")
        try:
            heartbeat()
        except BaseException:
            exchange.abort()
            raise


@dataclass
class _Exchange:
    url: str
    headers: dict[str, str]
    max_bytes: int
    policy: EgressPolicy
    sockets: list = field(default_factory=list)
    aborted: bool = False
    outcome: tuple | None = None
    error: BaseException | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        try:
            with guarded_session(self.policy, self._opened) as session:
                self.outcome = self._follow(session)
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc

    def result(self) -> tuple[bytes, str, str | None]:
        if self.error is not None:
            raise _described(self.error, self.url)
        return self.outcome

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.aborted:
                _shut(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            for sock in self.sockets:
                _shut(sock)

    def _follow(self, session: requests.Session) -> tuple[bytes, str, str | None]:
        current = self.url
        for _ in range(MAX_REDIRECTS + 1):
            same_host = urlsplit(current).hostname == urlsplit(self.url).hostname
            with session.get(current, headers=self.headers if same_host else {},
                             stream=True, allow_redirects=False,
                             timeout=(30, 30)) as response:
                location = response.headers.get("Location")
                if response.status_code not in REDIRECTS or not location:
                    return _body(response, self.url, self.max_bytes)
            target = urljoin(current, location)
            refusal = self.policy.redirect_refusal(current, target)
            if refusal:
                raise Refused(f"GET {shown_url(self.url)}: refused: {refusal}")
            current = target
        raise PermanentError(f"GET {shown_url(self.url)}: more than {MAX_REDIRECTS} redirects")


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


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv; close() alone may not


def _described(exc: BaseException, url: str) -> BaseException:
    """Errors as the operator needs them: what failed, not the library's internals (which
    name resolved addresses and pool settings)."""
    if isinstance(exc, PermanentError | FetchError):
        return exc
    where = f"GET {shown_url(url)}"
    if isinstance(exc, _RefusedAddress):
        return Refused(f"{where}: refused: {exc}")
    if isinstance(exc, requests.exceptions.SSLError):
        return FetchError(f"{where}: TLS handshake failed")
    if isinstance(exc, requests.exceptions.Timeout):
        return FetchError(f"{where}: timed out")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return FetchError(f"{where}: cannot connect")
    if isinstance(exc, requests.RequestException | OSError):
        return FetchError(f"{where}: request failed ({type(exc).__name__})")
    return exc


# -- connections that check where they lead -----------------------------------------


class _RefusedAddress(Exception):
    """The connection's peer is an address the policy refuses. Not an OSError, so that
    neither urllib3 nor requests retries or rewraps it."""


def guarded_session(policy: EgressPolicy, on_open=lambda sock: None) -> requests.Session:
    """A requests session whose every connection (every redirect hop, every retry) is
    checked against `policy` once connected, before a byte is sent. No proxy and no
    .netrc from the environment: the peer checked is the server itself."""
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter(policy, on_open)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: EgressPolicy, on_open):
        self._pools = _pool_classes(policy, on_open)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def _pool_classes(policy: EgressPolicy, on_open) -> dict:
    def checked(sock: socket.socket) -> socket.socket:
        on_open(sock)
        refusal = policy.address_refusal(sock.getpeername()[0])
        if refusal:
            _shut(sock)
            sock.close()
            raise _RefusedAddress(refusal)
        return sock

    class Connection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn())

    class SecureConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn())

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    return {"http": Pool, "https": SecurePool}


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
