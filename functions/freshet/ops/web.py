"""What every HTTP entry point shares: JSON in and out, auth, and mapping errors to codes.

Entry points only parse, authenticate, call one step and map its errors; nothing
here decides anything about jobs or runs. Every error answer is
`{"error": {"field": ..., "message": ...}}` and never carries a traceback.
"""

import functools
import json
import logging
import math
import traceback
from collections.abc import Callable

import flask

from freshet.core.errors import Conflict, Disabled, NotFound, ValidationError
from freshet.core.text import MAX_LOGGED_CHARS, clip
from freshet.core.values import parse_json

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# What is answered: an error message echoes at most this much of what came in, and no
# string is longer than anything stored (job params: freshet.core.models.MAX_PARAMS_BYTES).
MAX_ERROR_CHARS = 2000
MAX_ANSWER_CHARS = 32 * 1024
MAX_BODY_DEPTH = 32


class HttpError(Exception):
    """An answer decided while parsing: 404 route, 405 method, 413 body."""

    def __init__(self, status: int, field: str | None, message: str,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
        self.headers = headers or {}


def json_response(status: int, body: dict, headers: dict | None = None) -> flask.Response:
    """Always valid JSON, and sized by what Freshet stores, not by what came in."""
    response = flask.Response(json.dumps(answerable(body), default=str, allow_nan=False),
                              status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def answerable(value: object) -> object:
    """`value` with every string clipped to MAX_ANSWER_CHARS (longer than anything stored)
    and NaN/Infinity (which JSON cannot carry, from documents older than the checks) null."""
    if isinstance(value, str):
        return clip(value, MAX_ANSWER_CHARS)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {answerable(k): answerable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [answerable(v) for v in value]
    return value


def error_response(status: int, field: str | None, message: str,
                   headers: dict | None = None) -> flask.Response:
    error = {"field": field and clip(field, 200), "message": clip(message, MAX_ERROR_CHARS)}
    return json_response(status, {"error": error}, headers)


def error_for(exc: Exception, what: str) -> flask.Response:
    """The answer to an exception raised while handling `what` (for the log)."""
    from freshet.ops.auth import AuthError

    if isinstance(exc, HttpError):
        return error_response(exc.status, exc.field, exc.message, exc.headers)
    if isinstance(exc, AuthError):
        return error_response(exc.status, "Authorization", exc.message)
    if isinstance(exc, ValidationError):
        return error_response(400, exc.field, exc.message)
    if isinstance(exc, NotFound):
        field = {"job": "job_id", "run": "run_id"}.get(exc.what, exc.what)
        return error_response(404, field, str(exc))
    if isinstance(exc, Disabled):
        return error_response(403, "control", str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, "status", str(exc))
    # The traceback, clipped: an exception may carry a message of any size.
    log.error("%s failed: %s", what, clip(traceback.format_exc(), MAX_LOGGED_CHARS))
    return error_response(500, None, "internal error; see the function's logs")


def control_entry(fn: Callable[[flask.Request], flask.Response]):
    """Wrap an entry point: authenticate the caller, then map errors to status codes.

    A bug answers 500 with no detail (the log has it): Cloud Scheduler and Cloud
    Tasks retry 5xx, and no traceback ever leaves the process.
    """

    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        from freshet.ops.auth import authenticate

        try:
            authenticate(request)
            return fn(request)
        except Exception as exc:
            return error_for(exc, fn.__name__)

    return wrapper


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
    body = parse_json(raw, "body", max_depth=MAX_BODY_DEPTH)
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    if allowed is not None:
        for key in body:
            if key not in allowed:
                raise ValidationError(key, "unknown field")
    return body
