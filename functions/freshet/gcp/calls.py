"""Google's exceptions as Freshet's, for the engine adapters (BigQuery, Cloud Run).

429, 5xx, deadlines and connection errors may pass if the call is made again: they
become TransientError (retry, poll again; never a run's failure). A 403 whose reason
is a rate or quota limit is one of those too. 404 is NotFound; the rest PermanentError.
"""

import contextlib

import requests
from google.api_core import exceptions as gexc

from freshet.core.errors import NotFound, PermanentError, TransientError


def is_transient(exc: BaseException, slow_down_reasons: frozenset[str] = frozenset()) -> bool:
    """Whether a call that raised `exc` may pass if made again."""
    if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.DeadlineExceeded
                  | gexc.RetryError | ConnectionError | TimeoutError
                  | requests.ConnectionError | requests.Timeout):
        return True
    reasons = {e.get("reason") for e in getattr(exc, "errors", None) or ()
               if isinstance(e, dict)}
    return isinstance(exc, gexc.Forbidden) and bool(reasons & slow_down_reasons)


def translate(exc: BaseException, what: str,
              slow_down_reasons: frozenset[str] = frozenset(), hint: str = "") -> Exception:
    """Google's exception as Freshet's, saying what was being done."""
    message = getattr(exc, "message", None) or str(exc)
    if is_transient(exc, slow_down_reasons):
        return TransientError(f"{what}: {message}")
    if isinstance(exc, gexc.NotFound):
        return NotFound("Google resource", f"{what}: {message}")
    if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied) and hint:
        message = f"{message} ({hint})"
    return PermanentError(f"{what}: {message}")


@contextlib.contextmanager
def calling(what: str, slow_down_reasons: frozenset[str] = frozenset(), hint: str = ""):
    """Translates what a call to Google raises into Freshet's errors, saying `what`."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, gexc.GoogleAPICallError) or is_transient(exc, slow_down_reasons):
            raise translate(exc, what, slow_down_reasons, hint) from exc
        raise
