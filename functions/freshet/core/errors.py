"""Error classes shared by every layer.

The class of an error decides what happens next: a ValidationError is the caller's
fault (HTTP 400, CLI exit 2), a PermanentError ends a run without retry, anything
else raised by a sync is transient and retried.
"""


class FreshetError(Exception):
    """Base class for errors Freshet raises on purpose."""


class ValidationError(FreshetError, ValueError):
    """Bad input. `field` names what was wrong, e.g. "schedule.cron"."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(FreshetError, LookupError):
    """A job, run or dataset that does not exist."""

    def __init__(self, what: str, ident: str):
        super().__init__(f"{what} {ident!r} not found")
        self.what = what
        self.ident = ident


class Conflict(FreshetError):
    """The request is valid but clashes with the current state."""


class PermanentError(FreshetError):
    """Raised by a sync when retrying cannot help (bad params, 404 upstream, ...)."""


class Disabled(FreshetError):
    """A kill switch turned this action or job kind off."""


class ServiceError(FreshetError):
    """A Google service failed the call. The adapters (freshet.gcp) translate Google's
    exceptions into these, so nothing above them knows Google's classes; the original
    stays the `__cause__`."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unavailable(ServiceError):
    """The service could not be reached or did not answer in time: transient."""


class Forbidden(ServiceError):
    """The service refused this process's identity (permission, authentication)."""


class NoCredentials(Forbidden):
    """No Google credentials could be found for this process."""


class Rejected(ServiceError):
    """The service answered the call with any other error."""


def check_keys(value: object, where: str, allowed: tuple[str, ...], shape: str) -> dict:
    """`value` as a mapping whose keys are all `allowed`; else the error names the field
    (`shape` says what a good one looks like)."""
    if not isinstance(value, dict):
        raise ValidationError(where, f"must be a mapping {shape}")
    for key in value:
        if key not in allowed:
            raise ValidationError(f"{where}.{key}",
                                  f"unknown key (expected one of: {', '.join(allowed)})")
    return value
