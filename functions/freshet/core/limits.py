"""Time and size limits that must agree with each other, and with Google's.

Pure checks over plain values, shared by the pipeline config (file:line errors for
`freshet apply` and `make deploy`) and the api (jobs created over HTTP):

    job expected runtime  <=  queue dispatch_deadline  <=  run_task timeout
    job stuck threshold   <=  Cloud Tasks' 30-minute dispatch limit
    Scheduler attempt deadline  <=  the target function's timeout

Past its dispatch deadline Cloud Tasks stops waiting and retries a delivery that may
still be running; past its timeout Cloud Run answers 504 and the work is lost. A
limit that cannot hold is refused before anything is deployed.
"""

import re
from dataclasses import dataclass
from datetime import timedelta

from freshet.core.errors import ValidationError

# Google's bounds (Cloud Tasks HTTP targets; Cloud Run functions, 2nd gen).
MIN_DISPATCH_DEADLINE = timedelta(seconds=15)
MAX_DISPATCH_DEADLINE = timedelta(minutes=30)
MAX_FUNCTION_TIMEOUT = timedelta(minutes=60)
MAX_STUCK_MINUTES = 30
MAX_CONCURRENCY = 1000
MAX_INSTANCES = 1000
MEMORY_RE = re.compile(r"^([1-9][0-9]*)(Mi|Gi|M|G)$")
MIN_MEMORY_MIB, MAX_MEMORY_MIB = 128, 32 * 1024


@dataclass(frozen=True)
class FunctionLimits:
    """What one function is deployed with (gcloud functions deploy's flags)."""

    timeout: timedelta = timedelta(seconds=60)
    memory: str = "256Mi"
    cpu: str | None = None  # None: Google derives it from the memory
    max_instances: int = 10
    concurrency: int = 1

    @property
    def timeout_s(self) -> int:
        return int(self.timeout.total_seconds())


def memory_mib(value: str) -> int:
    match = MEMORY_RE.match(value)
    if not match:
        raise ValueError(value)
    number, unit = int(match.group(1)), match.group(2)
    factor = {"Mi": 1, "M": 1000 * 1000 / 1024 / 1024, "Gi": 1024, "G": 1e9 / 1024 / 1024}[unit]
    return int(number * factor)


def check_function(limits: FunctionLimits, where: str) -> None:
    """One function's flags, each within what Cloud Run functions accept."""
    if not timedelta(seconds=1) <= limits.timeout <= MAX_FUNCTION_TIMEOUT:
        raise ValidationError(f"{where}.timeout", "must be between 1s and 60m (Cloud Run "
                                                  "functions' limit)")
    try:
        mib = memory_mib(limits.memory)
    except ValueError:
        raise ValidationError(f"{where}.memory",
                              f"{limits.memory!r} is not a size such as 256Mi or 1Gi") from None
    if not MIN_MEMORY_MIB <= mib <= MAX_MEMORY_MIB:
        raise ValidationError(f"{where}.memory", "must be between 128Mi and 32Gi")
    if not 1 <= limits.max_instances <= MAX_INSTANCES:
        raise ValidationError(f"{where}.max_instances", f"must be between 1 and {MAX_INSTANCES}")
    if not 1 <= limits.concurrency <= MAX_CONCURRENCY:
        raise ValidationError(f"{where}.concurrency", f"must be between 1 and {MAX_CONCURRENCY}")
    cpus = _cpus(limits.cpu, f"{where}.cpu")
    if limits.concurrency > 1 and (cpus is None or cpus < 1):
        raise ValidationError(f"{where}.concurrency",
                              "above 1 needs at least one CPU: set cpu: 1 (and memory: 512Mi "
                              "or more)")


def _cpus(value: str | None, where: str) -> float | None:
    if value is None:
        return None
    text = value[:-1] if value.endswith("m") else value
    try:
        cpus = float(text) / (1000 if value.endswith("m") else 1)
    except ValueError:
        raise ValidationError(where, f"{value!r} is not a CPU count such as 1 or 0.5") from None
    if not 0.08 <= cpus <= 8:
        raise ValidationError(where, "must be between 0.083 and 8")
    return cpus


def check_dispatch_deadline(deadline: timedelta, where: str) -> None:
    if not MIN_DISPATCH_DEADLINE <= deadline <= MAX_DISPATCH_DEADLINE:
        raise ValidationError(where, "must be between 15s and 30m (Cloud Tasks' limits for "
                                     "HTTP tasks)")


def check_deadline_fits(deadline: timedelta, run_task_timeout: timedelta, where: str) -> None:
    """Cloud Tasks must not give up on a delivery that run_task is still allowed to finish."""
    if deadline > run_task_timeout:
        raise ValidationError(where, f"{_text(deadline)} is longer than run_task's timeout "
                                     f"({_text(run_task_timeout)}): raise "
                                     "functions.run_task.timeout or lower the deadline")


def check_job(*, stuck_threshold_minutes: int | None, expected_runtime_minutes: int | None,
              default_stuck_minutes: int, dispatch_deadline: timedelta,
              where: str = "") -> None:
    """A job must fit in one Cloud Tasks delivery: its lease and its expected runtime."""
    prefix = f"{where}." if where else ""
    stuck = stuck_threshold_minutes or default_stuck_minutes
    if stuck > MAX_STUCK_MINUTES:
        name = "stuck_threshold_minutes" if stuck_threshold_minutes else \
            "stuck_threshold_minutes (the default)"
        raise ValidationError(f"{prefix}{name}",
                              f"{stuck} minutes cannot fit Cloud Tasks' 30-minute dispatch "
                              "limit: a run is never attempted longer than that, so use at "
                              f"most {MAX_STUCK_MINUTES} (heartbeats keep a longer sync alive)")
    if expected_runtime_minutes is None:
        return
    runtime = timedelta(minutes=expected_runtime_minutes)
    if runtime > dispatch_deadline:
        raise ValidationError(f"{prefix}expected_runtime_minutes",
                              f"{expected_runtime_minutes} minutes is longer than the queue's "
                              f"dispatch_deadline ({_text(dispatch_deadline)}, at most 30m): "
                              "Cloud Tasks would stop waiting and retry it while it runs")


def check_schedule_deadline(deadline: timedelta, target_timeout: timedelta, target: str,
                            where: str) -> None:
    """Cloud Scheduler should not wait longer than the function is allowed to run."""
    if deadline > target_timeout:
        raise ValidationError(where, f"{_text(deadline)} is longer than {target}'s timeout "
                                     f"({_text(target_timeout)}): raise "
                                     f"functions.{target}.timeout or lower the deadline")


def _text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
