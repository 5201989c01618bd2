"""`http_fetch`: GET a URL, keep the JSON or CSV body as a snapshot, count its records.

params:
  url          required, http(s)
  format       "json" | "csv" | "auto" (default: from the Content-Type)
  records_path for JSON, a dotted path to the list of records ("data.items");
               default: the body itself if it is a list, else 1 record
  timeout_s    default 30
  max_bytes    default 10 MiB; a larger body fails the run permanently
  headers      extra request headers (mark them secret: secret_params: [headers])

Client errors (4xx but 408/429), bodies too large or unparseable are permanent;
timeouts, connection errors and 5xx are transient and retried.
"""

import csv
import io
import json
from urllib.parse import urlparse

import requests

from freshet.core.errors import PermanentError
from freshet.loop.registry import SyncContext, SyncResult, sync

DEFAULT_TIMEOUT_S = 30
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
RETRYABLE_CLIENT_ERRORS = (408, 425, 429)


@sync("http_fetch")
def http_fetch(ctx: SyncContext) -> SyncResult:
    url, fmt, timeout, max_bytes, headers = _params(ctx.params)
    body, content_type = _download(url, timeout, max_bytes, headers, ctx)
    fmt = fmt if fmt != "auto" else ("csv" if "csv" in content_type else "json")
    count = _count(body, fmt, ctx.params.get("records_path"))
    if ctx.snapshot is not None:
        ctx.snapshot(f"{ctx.run_id}.{fmt}", body, "text/csv" if fmt == "csv"
                     else "application/json")
    ctx.logger.info("fetched %s: %d bytes, %d records", url, len(body), count)
    return SyncResult(records={key: count for key in ctx.produces})


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
        return b"".join(chunks), response.headers.get("Content-Type", "")


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
