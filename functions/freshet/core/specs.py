"""What Freshet asks of Google, declared: its entry points, queues and control schedules.

Plain values read from the pipeline config (freshet.ops.config) and turned into
Google's request objects by the adapters (freshet.gcp.tasks, freshet.gcp.scheduler).
"""

from dataclasses import dataclass
from datetime import timedelta

ENTRY_POINTS = ("scheduler_tick", "run_task", "recover_stuck_runs", "publish_status", "api")
SCHEDULE_TARGETS = ("scheduler_tick", "recover_stuck_runs", "publish_status")


@dataclass(frozen=True)
class QueueSpec:
    """A queue's retry and rate-limit configuration, as declared in the pipeline config."""

    name: str
    max_attempts: int = 100  # Freshet decides when to stop (max_retries); this is a ceiling
    min_backoff_s: float = 10.0
    max_backoff_s: float = 600.0
    max_doublings: int = 5
    max_dispatches_per_second: float = 50.0
    max_concurrent_dispatches: int = 100


@dataclass(frozen=True)
class ControlSchedule:
    """A Cloud Scheduler job that calls one control function on a cron."""

    name: str
    cron: str
    target: str
    timezone: str = "UTC"
    method: str = "POST"
    deadline: timedelta = timedelta(minutes=3)
    description: str = ""


DEFAULT_CONTROL_SCHEDULES = (
    ControlSchedule("freshet-tick", "* * * * *", "scheduler_tick",
                    deadline=timedelta(minutes=1), description="Start the runs that are due"),
    ControlSchedule("freshet-recover", "*/5 * * * *", "recover_stuck_runs",
                    description="Fail and retry runs whose lease expired"),
    ControlSchedule("freshet-publish", "*/5 * * * *", "publish_status",
                    description="Publish the status page"),
)


