"""What every HTTP entry point shares: JSON responses, auth, and mapping errors to codes.

Entry points only parse, authenticate, call one step and map its errors; nothing
here decides anything about jobs or runs.
"""

import functools
import json
import logging
from collections.abc import Callable

import flask

from freshet.errors import Conflict, Disabled, NotFound, ValidationError

log = logging.getLogger(__name__)


def json_response(status: int, body: dict) -> flask.Response:
    return flask.Response(json.dumps(body, default=str), status=status,
                          mimetype="application/json")


def error_response(status: int, message: str, field: str | None = None) -> flask.Response:
    error = {"message": message}
    if field is not None:
        error["field"] = field
    return json_response(status, {"error": error})


def control_entry(fn: Callable[[flask.Request], flask.Response]):
    """Wrap an entry point: authenticate the caller, then map errors to status codes.

    A bug answers 500 with no detail (the log has it): Cloud Scheduler and Cloud
    Tasks retry 5xx, and no traceback ever leaves the process.
    """

    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        from freshet.auth import AuthError, authenticate

        try:
            authenticate(request)
            return fn(request)
        except AuthError as exc:
            return error_response(exc.status, str(exc))
        except ValidationError as exc:
            return error_response(400, exc.message, exc.field)
        except NotFound as exc:
            return error_response(404, str(exc))
        except Disabled as exc:
            return error_response(403, str(exc))
        except Conflict as exc:
            return error_response(409, str(exc))
        except Exception:
            log.exception("%s failed", fn.__name__)
            return error_response(500, "internal error; see the function's logs")

    return wrapper


def json_body(request: flask.Request, max_bytes: int = 64 * 1024) -> dict:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ValidationError("body", f"is larger than {max_bytes} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise ValidationError("body", f"is larger than {max_bytes} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    return body
