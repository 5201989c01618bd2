"""Google's exceptions become Freshet's at the adapters' edge (freshet.core.errors), so
that nothing above freshet.gcp imports google.api_core or google.auth to tell an outage
from a refusal.

`translated` wraps a function; `translates` wraps every public method of an adapter
class. Only the outermost adapter call translates: a method that calls another (or a
transaction body that reads through the store) still sees Google's classes, which the
adapters catch on purpose (a lost compare-and-set, a create that found the document).
"""

import functools
import inspect
import threading
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from freshet.core.errors import (
    Forbidden,
    NoCredentials,
    Rejected,
    ServiceError,
    Unavailable,
)

F = TypeVar("F", bound=Callable)
C = TypeVar("C", bound=type)

NO_CREDENTIALS = ("no Google Cloud credentials: run `gcloud auth application-default login`, "
                  "or set FIRESTORE_EMULATOR_HOST for the emulator")
# Transient: the call did not get an answer (Google's client already retried it).
UNAVAILABLE = (gexc.RetryError, gexc.ServiceUnavailable, gexc.DeadlineExceeded,
               gexc.TooManyRequests, gexc.ResourceExhausted, gexc.InternalServerError,
               gexc.BadGateway, gexc.GatewayTimeout, gexc.Aborted, auth_exc.TransportError)
FORBIDDEN = (gexc.PermissionDenied, gexc.Unauthenticated, gexc.Forbidden,
             gexc.Unauthorized, auth_exc.GoogleAuthError)

_depth = threading.local()


def translate(exc: BaseException) -> ServiceError | None:
    """Freshet's error for one of Google's, or None when `exc` is not Google's."""
    text = str(exc)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return NoCredentials(NO_CREDENTIALS)
    if isinstance(exc, UNAVAILABLE):
        return Unavailable(text)
    if isinstance(exc, FORBIDDEN):
        return Forbidden(text)
    if isinstance(exc, gexc.GoogleAPIError):
        return Rejected(text)
    return None


def translated(fn: F) -> F:
    """`fn`, raising Freshet's error (with Google's as its cause) instead of Google's."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        outer = getattr(_depth, "n", 0) == 0
        _depth.n = getattr(_depth, "n", 0) + 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            ours = translate(exc) if outer else None
            if ours is None:
                raise
            raise ours from exc
        finally:
            _depth.n -= 1

    return call  # type: ignore[return-value]


def translates(cls: C) -> C:
    """Every public method of the adapter class `cls`, its bases' included (the
    Firestore store inherits its typed reads), translated."""
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            setattr(cls, name, translated(member))
    return cls
