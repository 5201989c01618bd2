"""One table from exception classes to answers, shared by the HTTP entry points
(freshet.ops.web) and the `freshet` command (freshet.ops.cli).

An exception is looked up by its class, walking its MRO, so a subclass gets its nearest
ancestor's answer unless it has its own (the way Starlette looks up exception handlers).
Google's exceptions never get here as such: the adapters (freshet.gcp) translate them
into Freshet's (freshet.core.errors). What is not in the table is a bug: HTTP answers 500
without detail (the log has the traceback), the CLI says so in one line and exits 1.
"""

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from freshet.core.errors import (
    Conflict,
    Disabled,
    Forbidden,
    FreshetError,
    NoCredentials,
    NotFound,
    Rejected,
    Unavailable,
    ValidationError,
)
from freshet.core.text import shorten

EXIT_USER_ERROR = 2
EXIT_BUG = 1
INTERNAL = "internal error; see the function's logs"
# What the HTTP field of a NotFound is, by what was not found.
NOT_FOUND_FIELDS = {"job": "job_id", "run": "run_id", "backfill": "backfill_id",
                    "incident": "incident_id"}


class HttpError(Exception):
    """An answer decided while parsing a request: 404 route, 405 method, 413 body."""

    def __init__(self, status: int, field: str | None, message: str,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
        self.headers = headers or {}


class UserError(Exception):
    """Something the user can fix, said in one line (the CLI's own checks)."""


@dataclass(frozen=True)
class ErrorAnswer:
    """What an exception becomes. `status`, `field` and `message` make the HTTP answer;
    `line` and `exit_code` are the CLI's. `log_level` set: the HTTP layer logs the
    exception (with its traceback when `trace`), because the caller is not told why."""

    status: int
    field: str | None
    message: str
    line: str
    exit_code: int = EXIT_USER_ERROR
    headers: Mapping[str, str] = field(default_factory=dict)
    log_level: int | None = None
    trace: bool = False


Handler = Callable[[BaseException], ErrorAnswer]


def one_line(text: str, limit: int = 400) -> str:
    return shorten(" ".join(text.split()), limit)


def _said(status: int, field: str | None = None) -> Handler:
    """The caller's fault, said as it is: the message, and `field: message` on the CLI."""
    def answer(exc: BaseException) -> ErrorAnswer:
        return ErrorAnswer(status, field, str(exc), one_line(str(exc)))

    return answer


def _http_error(exc: HttpError) -> ErrorAnswer:
    return ErrorAnswer(exc.status, exc.field, exc.message, one_line(exc.message),
                       headers=exc.headers)


def _auth_error(exc) -> ErrorAnswer:  # freshet.ops.auth.AuthError
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    return ErrorAnswer(exc.status, "Authorization", exc.message, one_line(exc.message),
                       log_level=level)


def _validation_error(exc: ValidationError) -> ErrorAnswer:
    # str(): "field: message", or the config's "file:line: field: message".
    return ErrorAnswer(400, exc.field, exc.message, one_line(str(exc)))


def _not_found(exc: NotFound) -> ErrorAnswer:
    return ErrorAnswer(404, NOT_FOUND_FIELDS.get(exc.what, exc.what), str(exc),
                       one_line(str(exc)))


def _freshet_error(exc: FreshetError) -> ErrorAnswer:
    """Raised on purpose but not meant for a caller (a PermanentError escaping a step):
    the operator reads it on the CLI; over HTTP it is a bug of the step."""
    return ErrorAnswer(500, None, INTERNAL, one_line(str(exc)), log_level=logging.ERROR,
                       trace=True)


def _google(prefix: str, status: int, message: str) -> Handler:
    """A Google service failed the call: not the caller's fault. The CLI names it; an
    HTTP caller (Cloud Tasks, Cloud Scheduler, an operator) gets no detail, and a 5xx
    so that the schedulers retry."""
    def answer(exc: BaseException) -> ErrorAnswer:
        return ErrorAnswer(status, None, message, one_line(prefix + str(exc)),
                           log_level=logging.ERROR, trace=True)

    return answer


def _bug(exc: BaseException) -> ErrorAnswer:
    return ErrorAnswer(500, None, INTERNAL,
                       f"internal error ({type(exc).__name__}: {one_line(str(exc))}); "
                       "rerun with FRESHET_DEBUG=1 for details",
                       exit_code=EXIT_BUG, log_level=logging.ERROR, trace=True)


@functools.cache
def answers() -> dict[type[BaseException], Handler]:
    """The table. Built on first use, so the CLI starts without loading the HTTP auth
    (Flask, token checks) it does not need."""
    from freshet.ops.auth import AuthError

    return {
        HttpError: _http_error,
        AuthError: _auth_error,
        UserError: _said(400),
        ValidationError: _validation_error,
        NotFound: _not_found,
        Disabled: _said(403, "control"),
        Conflict: _said(409, "status"),
        FreshetError: _freshet_error,
        Unavailable: _google("cannot reach Google Cloud: ", 503,
                             "a Google Cloud service is unavailable; see the function's logs"),
        Forbidden: _google("not allowed by Google Cloud: ", 500, INTERNAL),
        NoCredentials: _google("", 500, INTERNAL),
        Rejected: _google("Google Cloud refused the request: ", 500, INTERNAL),
        Exception: _bug,
    }


def answer_for(exc: BaseException) -> ErrorAnswer:
    """The answer of the nearest class in `exc`'s MRO that the table has."""
    table = answers()
    for cls in type(exc).__mro__:
        handler = table.get(cls)
        if handler is not None:
            return handler(exc)
    return _bug(exc)
