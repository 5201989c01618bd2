"""What every log line of the current request is about: the run, its job, the attempt.

The labels live in a context variable, set by the entry point for the length of one
call; freshet.ops.logs writes them as `logging.googleapis.com/labels`, so that Logs
Explorer filters one run's lines with `labels.run_id="..."`.
"""

import contextlib
import contextvars
from collections.abc import Iterator

LABELS = ("run_id", "job_id", "attempt")

_labels: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "freshet_log_labels", default=())
_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "freshet_log_trace", default=None)


def current_labels() -> dict[str, str]:
    return dict(_labels.get())


def current_trace() -> str | None:
    return _trace.get()


@contextlib.contextmanager
def labels(**values: object) -> Iterator[None]:
    """Add labels (None values are left out) for the code inside the block."""
    merged = {**dict(_labels.get()),
              **{k: str(v) for k, v in values.items() if v is not None}}
    token = _labels.set(tuple(merged.items()))
    try:
        yield
    finally:
        _labels.reset(token)


@contextlib.contextmanager
def trace(value: str | None) -> Iterator[None]:
    """The request's trace (`projects/P/traces/T`): Logs Explorer groups lines by it."""
    token = _trace.set(value)
    try:
        yield
    finally:
        _trace.reset(token)


def trace_name(header: str | None, project: str) -> str | None:
    """`projects/P/traces/T` from an X-Cloud-Trace-Context header `T/SPAN;o=1`."""
    trace_id = (header or "").split("/", 1)[0].strip()
    if not trace_id or not trace_id.isalnum() or len(trace_id) > 64:
        return None
    return f"projects/{project}/traces/{trace_id}"
