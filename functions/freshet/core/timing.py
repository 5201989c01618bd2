"""How long a job usually takes, and how late after its slot it usually starts.

The job document keeps the latest successful runs' figures (bounded lists of seconds,
oldest first), written with the run's outcome: the status page judges a deadline's
early warnings ("has not started by its usual start time", "running longer than
usual") from them without reading any run.
"""

import math
from collections.abc import Sequence
from datetime import timedelta

from freshet.core.models import Job, Run, TriggerSource

MAX_SAMPLES = 20
# Before a job has a history, this is how late its start may be before it counts.
DEFAULT_START_LAG = timedelta(minutes=2)
MIN_START_LAG = timedelta(minutes=1)


def remember(samples: Sequence[float], value: float) -> list[float]:
    return [*samples, round(max(value, 0.0), 3)][-MAX_SAMPLES:]


def p95(samples: Sequence[float]) -> float | None:
    """The nearest-rank 95th percentile (None without samples)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def after_success(job: Job, run: Run) -> dict:
    """The job fields a successful run updates (run.finished_at set)."""
    fields = {}
    if run.duration_s is not None:
        fields["recent_durations_s"] = remember(job.recent_durations_s, run.duration_s)
    first = min((a for a in run.attempts if a.started_at), key=lambda a: a.number, default=None)
    if run.trigger_source == TriggerSource.SCHEDULE and first is not None:
        lag = (first.started_at - run.scheduled_for).total_seconds()
        fields["recent_start_lags_s"] = remember(job.recent_start_lags_s, lag)
    return fields


def usual_start_lag(job: Job) -> timedelta:
    """How late after its slot the job usually starts: the p95 of its recent starts."""
    lag = p95(job.recent_start_lags_s)
    return DEFAULT_START_LAG if lag is None else max(timedelta(seconds=lag), MIN_START_LAG)


def usual_duration(job: Job) -> timedelta | None:
    seconds = p95(job.recent_durations_s)
    return None if seconds is None else timedelta(seconds=seconds)
