"""Secret params: a job names params whose values must never be shown or logged.

Errors often quote a URL or a request, so every error text a sync produces is
redacted before it is stored or logged; outputs also mask the params themselves.
"""

from collections.abc import Iterable

from freshet.core.models import Job

REDACTED = "[redacted]"
SECRET_MASK = "[secret]"
MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


def secret_values(job: Job) -> tuple[str, ...]:
    """Every leaf value under the job's secret params (headers: {Authorization: ...})."""
    found: list[str] = []
    for name in job.secret_params:
        if name in job.params:
            _leaves(job.params[name], found)
    return tuple(sorted({v for v in found if len(v) >= MIN_SECRET_LEN}, key=len, reverse=True))


def _leaves(value: object, out: list[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _leaves(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _leaves(item, out)
    elif value is not None:
        out.append(value if isinstance(value, str) else str(value))


def redact(text: str | None, secrets: Iterable[str]) -> str | None:
    if text is None:
        return None
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
