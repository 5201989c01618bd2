"""What Freshet asks of Google, declared: its entry points, queues and control schedules.

Plain values read from the pipeline config (freshet.ops.config) and turned into
Google's request objects by the adapters (freshet.gcp.tasks, freshet.gcp.scheduler).
"""

from dataclasses import dataclass, replace
from datetime import timedelta

from freshet.core import herd
from freshet.core.limits import FunctionLimits

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
    max_dispatches_per_second: float = 500.0  # one queue's most: herds start sooner
    max_concurrent_dispatches: int = 200
    # How long Cloud Tasks waits for run_task before it retries (Google's default: 10m).
    dispatch_deadline_s: float = 600.0
    # Queues the pool is spread over, runs hashed by job (freshet.core.herd): one Cloud
    # Tasks queue dispatches at most 500 tasks/s.
    dispatch_shards: int = 1

    def queues(self) -> tuple["QueueSpec", ...]:
        """The Cloud Tasks queues this pool is: its rate and concurrency split evenly."""
        names = herd.queue_names(self.name, self.dispatch_shards)
        return tuple(replace(
            self, name=name, dispatch_shards=1,
            max_dispatches_per_second=herd.shard_share(self.max_dispatches_per_second,
                                                       self.dispatch_shards),
            max_concurrent_dispatches=max(1, round(herd.shard_share(
                self.max_concurrent_dispatches, self.dispatch_shards))),
        ) for name in names)

    def claims(self) -> "QueueSpec":
        """The queue the pool's claim shards travel on (one handler per shard at once)."""
        return QueueSpec(name=herd.claims_queue(self.name), max_attempts=self.max_attempts,
                         min_backoff_s=1.0, max_backoff_s=10.0, max_doublings=3,
                         max_dispatches_per_second=500.0,
                         max_concurrent_dispatches=herd.CLAIM_SHARDS)


DEFAULT_POOL = "default"


@dataclass(frozen=True)
class PoolSpec:
    """`pools: {warehouse: {max_concurrent: 4}}`: at most this many of the pool's runs at
    once. Each pool is its own Cloud Tasks queue, so Google enforces the limit
    (max_concurrent_dispatches); the default pool is the default queue."""

    name: str
    max_concurrent: int

    def queue(self, default_queue: str) -> str:
        return pool_queue(default_queue, self.name)


def pool_queue(default_queue: str, pool: str | None) -> str:
    """The queue a pool's runs go to: `<default queue>-<pool>` (the default pool: itself)."""
    return default_queue if pool in (None, DEFAULT_POOL) else f"{default_queue}-{pool}"


def pool_queue_spec(default: QueueSpec, pool: PoolSpec) -> QueueSpec:
    """A pool's queue: the default queue's retry and rate settings, the pool's limit."""
    return replace(default, name=pool.queue(default.name), dispatch_shards=1,
                   max_concurrent_dispatches=pool.max_concurrent)


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


# What each function is deployed with unless pipeline.yaml says otherwise. Each timeout
# covers what calls it: Cloud Scheduler's attempt deadline (tick 1m, the others 3m)
# and, for run_task, the queue's dispatch deadline (10m).
DEFAULT_FUNCTION_LIMITS = {
    # Also the claim handler: one instance per claim shard while a herd is claimed.
    "scheduler_tick": FunctionLimits(timeout=timedelta(minutes=2),
                                     max_instances=herd.CLAIM_SHARDS + 2),
    # 200 calls in flight start a 10,000-run herd of 1 s syncs within a minute of its
    # slot (docs/scale.md, `freshet cost`); instances exist only while calls do.
    "run_task": FunctionLimits(timeout=timedelta(minutes=15), memory="512Mi",
                               max_instances=200),
    "recover_stuck_runs": FunctionLimits(timeout=timedelta(minutes=5), max_instances=2),
    "publish_status": FunctionLimits(timeout=timedelta(minutes=5), memory="512Mi",
                                     max_instances=2),
    "api": FunctionLimits(timeout=timedelta(seconds=60), max_instances=5),
}
