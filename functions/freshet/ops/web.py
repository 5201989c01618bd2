"""What every HTTP entry point shares: JSON in and out, auth, and mapping errors to codes.

Entry points only parse, authenticate, call one step and map its errors; nothing
here decides anything about jobs or runs. Every error answer is
`{"error": {"field": ..., "message": ...}}` and never carries a traceback.
"""

import json
import logging
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import flask

from freshet.core import logcontext
from freshet.core.errors import ValidationError
from freshet.core.text import MAX_LOGGED_CHARS, clip
from freshet.core.values import parse_json
from freshet.ops.answers import HttpError, answer_for
from freshet.ops.auth import authenticate
from freshet.ops.deps import Deps, process_deps

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# What is answered: an error message echoes at most this much of what came in, and no
# string is longer than anything stored (job params: freshet.core.models.MAX_PARAMS_BYTES).
MAX_ERROR_CHARS = 2000
MAX_ANSWER_CHARS = 32 * 1024
MAX_BODY_DEPTH = 32


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
    """The answer to an exception raised while handling `what`, from the one table
    (freshet.ops.answers); what the caller is not told is logged."""
    answer = answer_for(exc)
    if answer.log_level is not None:
        # The traceback, clipped: an exception may carry a message of any size.
        detail = traceback.format_exc() if answer.trace else answer.message
        log.log(answer.log_level, "%s failed: %s", what, clip(detail, MAX_LOGGED_CHARS))
    return error_response(answer.status, answer.field, answer.message, dict(answer.headers))


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
    name = getattr(step, "__name__", "entry point")
    try:
        deps = deps or process_deps()
    except Exception as exc:  # bad settings: say so in the log, answer 500
        return error_for(exc, name)
    # Logs Explorer groups a request's lines by the trace Cloud Run's front end sends.
    with logcontext.trace(logcontext.trace_name(request.headers.get("X-Cloud-Trace-Context"),
                                                deps.settings.project)):
        try:
            caller = authenticate(request, deps.settings, certs=deps.certs)
            status, body = step(Call(request, deps, deps.clock(), caller))
            return json_response(status, body)
        except Exception as exc:
            return error_for(exc, name)


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
