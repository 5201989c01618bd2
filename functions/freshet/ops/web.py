"""What every HTTP entry point shares: JSON in and out, auth, and mapping errors to codes.

Entry points only parse, authenticate, call one step and map its errors; nothing
here decides anything about jobs or runs. Every error answer is
`{"error": {"field": ..., "message": ...}}` and never carries a traceback.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import flask

from freshet.core.errors import Conflict, Disabled, NotFound, ValidationError
from freshet.ops.auth import AuthError, authenticate
from freshet.ops.deps import Deps, process_deps

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class HttpError(Exception):
    """An answer decided while parsing: 404 route, 405 method, 413 body."""

    def __init__(self, status: int, field: str | None, message: str,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
        self.headers = headers or {}


def json_response(status: int, body: dict, headers: dict | None = None) -> flask.Response:
    response = flask.Response(json.dumps(body, default=str), status=status,
                              mimetype="application/json")
    response.headers.update(headers or {})
    return response


def error_response(status: int, field: str | None, message: str,
                   headers: dict | None = None) -> flask.Response:
    return json_response(status, {"error": {"field": field, "message": message}}, headers)


def error_for(exc: Exception, what: str) -> flask.Response:
    """The answer to an exception raised while handling `what` (for the log)."""
    if isinstance(exc, HttpError):
        return error_response(exc.status, exc.field, exc.message, exc.headers)
    if isinstance(exc, AuthError):
        return error_response(exc.status, "Authorization", exc.message)
    if isinstance(exc, ValidationError):
        return error_response(400, exc.field, exc.message)
    if isinstance(exc, NotFound):
        field = {"job": "job_id", "run": "run_id", "incident": "incident_id"}.get(exc.what,
                                                                                exc.what)
        return error_response(404, field, str(exc))
    if isinstance(exc, Disabled):
        return error_response(403, "control", str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, "status", str(exc))
    log.exception("%s failed", what)
    return error_response(500, None, "internal error; see the function's logs")


@dataclass
class Call:
    """One authenticated request, with the clock read once and what the route matched."""

    request: flask.Request
    deps: Deps
    now: datetime
    caller: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def store(self):
        return self.deps.store


Answer = tuple[int, dict]
Step = Callable[[Call], Answer]


def serve(request: flask.Request, step: Step, deps: Deps | None = None) -> flask.Response:
    """Every entry point: authenticate the caller first, read the clock once, call the
    step, and map its errors to status codes.

    A bug answers 500 with no detail (the log has it): Cloud Scheduler and Cloud
    Tasks retry 5xx, and no traceback ever leaves the process.
    """
    try:
        deps = deps or process_deps()
        caller = authenticate(request, deps.settings, certs=deps.certs)
        status, body = step(Call(request, deps, deps.clock(), caller))
        return json_response(status, body)
    except Exception as exc:
        return error_for(exc, getattr(step, "__name__", "entry point"))


def json_body(request: flask.Request, allowed: tuple[str, ...] | None = None) -> dict:
    """The request's JSON object (an empty body is {}); 413 past MAX_BODY_BYTES."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise HttpError(413, "body", f"body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise HttpError(413, "body", f"body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("body", f"is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    if allowed is not None:
        for key in body:
            if key not in allowed:
                raise ValidationError(key, "unknown field")
    return body
