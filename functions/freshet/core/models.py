"""Typed documents: jobs, runs and datasets, and their Firestore (de)serialisation.

Documents map one-to-one to dataclass fields; datetimes are stored as Firestore
timestamps and always come back as UTC-aware datetimes.
"""

import functools
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from freshet.core import herd
from freshet.core.errors import ValidationError
from freshet.core.schedules import Schedule, make_schedule
from freshet.core.settings import DEFAULT_RUN_RETENTION_DAYS
from freshet.core.timeutil import parse_duration, to_utc
from freshet.core.values import check_bool, check_int, check_value, is_int, json_size


class JobStatus(StrEnum):
    """A finished one-time job becomes completed, then archived after a retention period."""

    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"
    COMPLETED = "completed"


class RunStatus(StrEnum):
    """queued -> running -> succeeded | failed, with retrying between attempts.

    A run whose sync started work on an engine (a BigQuery job, a Cloud Run execution)
    is `waiting` until a poll sees the end: no function holds it meanwhile.
    A slot the catch-up policy or `max_lateness` passed over ends `skipped` without
    running; a queued run of a cancelled backfill ends `cancelled`."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def under_way(self) -> bool:
        """An attempt is in progress: in a function (running) or on an engine (waiting)."""
        return self in (RunStatus.RUNNING, RunStatus.WAITING)


_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED,
                       RunStatus.CANCELLED})


class LastRun(StrEnum):
    """A job's `last_run_status`: how its latest slot ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The slot passed unrun: a kill switch had the job's kind off, a maintenance window
    # held it, or the catch-up policy or max_lateness skipped it.
    SKIPPED = "skipped"


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"  # failed, and another attempt follows
    STUCK = "stuck"  # recovery took it over: no heartbeat before its lease ran out


class TriggerSource(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    API = "api"
    RETRY = "retry"
    RECOVERY = "recovery"
    CATCHUP = "catchup"  # a missed slot run late, oldest first (catchup: all)
    BACKFILL = "backfill"  # a past slot asked for by `freshet backfill`
    UPSTREAM = "upstream"  # created by the success of the datasets it is triggered by

    @property
    def past_slot(self) -> bool:
        """Runs for a past slot: their data is as of the slot, not of when they finished."""
        return self in (TriggerSource.CATCHUP, TriggerSource.BACKFILL)


class Catchup(StrEnum):
    """What the tick does with slots it finds in the past (the scheduler was down)."""

    LATEST = "latest"  # run the latest one; older ones are coalesced into it
    ALL = "all"  # run each, oldest first, at most max_catchup; older ones are skipped
    SKIP = "skip"  # record them as skipped; the next slot runs on time


class TriggerWhen(StrEnum):
    ALL = "all"  # run once every upstream has a version this job has not run with
    ANY = "any"  # run for each new version of any upstream


@dataclass(frozen=True)
class Trigger:
    """`trigger: {after: [dataset keys], when: all|any}`: run when upstreams are fresh."""

    after: tuple[str, ...]
    when: TriggerWhen = TriggerWhen.ALL

    def to_dict(self) -> dict:
        return {"after": list(self.after), "when": str(self.when)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Trigger | None":
        if not data:
            return None
        return cls(after=tuple(data.get("after") or ()),
                   when=TriggerWhen(data.get("when", TriggerWhen.ALL)))


JOB_STATUSES = tuple(JobStatus)
TRIGGER_SOURCES = tuple(TriggerSource)
RUN_STATUSES = tuple(RunStatus)
DEFAULT_MAX_RETRIES = 3
MAX_MAX_RETRIES = 50
MAX_ATTEMPTS = MAX_MAX_RETRIES + 1
# Job params are stored in the job document and shown on the page: JSON, bounded.
MAX_PARAMS_BYTES = 32 * 1024
MAX_PARAMS_DEPTH = 16
MAX_PRODUCES = 100  # datasets a job produces (and secret params it names), at most
DEFAULT_MAX_CATCHUP = 24
MAX_MAX_CATCHUP = 1000
MAX_TRIGGER_AFTER = 20

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_POOL_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,199}$")


def check_id(value: object, field_name: str = "id") -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValidationError(
            field_name, "must be 1-100 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return value


def check_dataset_key(value: object, field_name: str = "dataset") -> str:
    if not isinstance(value, str) or not _DATASET_RE.match(value):
        raise ValidationError(
            field_name, "must be 1-200 lowercase letters, digits, '.', ':', '_' or '-'"
        )
    return value


def _datetimes_to_utc(data: dict[str, Any], names) -> dict[str, Any]:
    for name in names:
        if isinstance(data.get(name), datetime):
            data[name] = to_utc(data[name])
    return data


def _known(cls, data: dict) -> dict:
    names = _field_names(cls)
    return {k: v for k, v in data.items() if k in names}


@functools.cache
def _field_names(cls) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _copied(value: Any) -> Any:
    """What asdict makes of a document's value (dicts, lists and tuples of scalars and
    datetimes): the containers copied, the rest shared (immutable), without asdict's
    deepcopy of every leaf (a dataset's 90 days and 48 data points: milliseconds)."""
    if isinstance(value, dict):
        return {k: _copied(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(v) if isinstance(v, _CONTAINERS) else v for v in value)
    return value


_CONTAINERS = (dict, list, tuple)


@dataclass
class Job:
    id: str
    kind: str
    schedule: Schedule
    params: dict = field(default_factory=dict)
    secret_params: list[str] = field(default_factory=list)
    status: JobStatus = JobStatus.ACTIVE
    trigger_source: TriggerSource = TriggerSource.SCHEDULE
    max_retries: int = DEFAULT_MAX_RETRIES
    stuck_threshold_minutes: int | None = None
    # How long a run usually takes: checked against the queue's dispatch deadline.
    expected_runtime_minutes: int | None = None
    produces: list[str] = field(default_factory=list)
    allow_overlap: bool = False
    description: str = ""
    catchup: Catchup = Catchup.LATEST
    max_catchup: int = DEFAULT_MAX_CATCHUP
    max_lateness_s: int | None = None  # a slot not started within this is skipped
    trigger: Trigger | None = None
    pool: str | None = None  # None: the default queue
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_run_id: str | None = None
    last_run_status: LastRun | None = None
    last_error: str | None = None
    # The run holding the job while it runs (no overlap): the claim reads this one
    # document instead of querying runs, and the finish clears it.
    running_run_id: str | None = None
    # The running mark its datasets show: the run refreshing them and when it started,
    # set by its claim; `refresh_ended_run_id` names the last run whose end was recorded,
    # written blind (recovery does not read the job). A run's start thus writes this one
    # document, not one per dataset (core.bookkeeping.with_running shows it on them).
    refresh_run_id: str | None = None
    refresh_started_at: datetime | None = None
    refresh_ended_run_id: str | None = None
    # Triggered runs: the upstream versions (dataset -> the run that made it) the last
    # triggered run was created for, and when (its data interval starts there).
    trigger_versions: dict[str, str] = field(default_factory=dict)
    last_triggered_at: datetime | None = None
    # The last triggered run refused because its chain was too deep (core.triggers):
    # {at, depth, limit, upstream_run_id, reason}; None: none refused.
    trigger_refused: dict | None = None
    # The latest successful runs' durations and how long after their slot they started
    # (seconds, oldest first, core.timing bounds them): the deadlines' early warnings.
    recent_durations_s: list[float] = field(default_factory=list)
    recent_start_lags_s: list[float] = field(default_factory=list)
    # Which claim shard finds this job when a herd is claimed in parallel
    # (freshet.core.herd); None on jobs stored before shards existed, until the
    # tick's next claim of the job writes it.
    claim_shard: int | None = None
    # An operator's pause (freshet.core.interventions): why, by whom, since when, and
    # when it ends by itself (None: when someone resumes it). Runtime state, like status.
    paused_reason: str = ""
    paused_by: str = ""
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    archived_at: datetime | None = None

    _TIMES = ("next_run_at", "last_run_at", "last_triggered_at", "created_at", "updated_at",
              "completed_at", "archived_at", "paused_at", "paused_until")

    @property
    def refreshing(self) -> bool:
        """A run of this job is refreshing its datasets right now."""
        return self.refresh_run_id is not None and \
            self.refresh_run_id != self.refresh_ended_run_id

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    @property
    def max_lateness(self) -> timedelta | None:
        return None if self.max_lateness_s is None else timedelta(seconds=self.max_lateness_s)

    @property
    def shard(self) -> int:
        return herd.claim_shard(self.id) if self.claim_shard is None else self.claim_shard

    def to_doc(self) -> dict:
        doc = asdict(self)
        doc["schedule"] = self.schedule.to_dict()
        doc["trigger"] = None if self.trigger is None else self.trigger.to_dict()
        return doc

    @classmethod
    def from_doc(cls, data: dict) -> "Job":
        data = _datetimes_to_utc(_known(cls, dict(data)), (*cls._TIMES, "refresh_started_at"))
        sched = dict(data.get("schedule") or {})
        if isinstance(sched.get("run_at"), datetime):
            sched["run_at"] = to_utc(sched["run_at"])
        data["schedule"] = Schedule.from_dict(sched)
        data["status"] = JobStatus(data.get("status", JobStatus.ACTIVE))
        data["trigger_source"] = TriggerSource(data.get("trigger_source", TriggerSource.SCHEDULE))
        data["catchup"] = Catchup(data.get("catchup") or Catchup.LATEST)
        data["trigger"] = Trigger.from_dict(data.get("trigger"))
        if data.get("last_run_status") is not None:
            data["last_run_status"] = LastRun(data["last_run_status"])
        return cls(**data)


def new_job(
    *,
    id: object,
    kind: object,
    schedule: dict | Schedule | None = None,
    params: object = None,
    secret_params: object = None,
    max_retries: object = DEFAULT_MAX_RETRIES,
    stuck_threshold_minutes: object = None,
    expected_runtime_minutes: object = None,
    produces: object = None,
    allow_overlap: object = False,
    description: object = "",
    status: object = "active",
    trigger_source: object = "schedule",
    catchup: object = "latest",
    max_catchup: object = DEFAULT_MAX_CATCHUP,
    max_lateness: object = None,
    trigger: object = None,
    pool: object = None,
) -> Job:
    """Validate a job definition. Every error names the field it is about."""
    trigger = _trigger(trigger)
    if schedule is None and trigger is not None:
        schedule = Schedule()  # runs only when triggered
    elif not isinstance(schedule, Schedule):
        if not isinstance(schedule, dict):
            raise ValidationError("schedule", "must be an object with cron/timezone or run_at "
                                              "(or give the job a trigger)")
        unknown = set(schedule) - {"cron", "timezone", "run_at"}
        if unknown:
            raise ValidationError(f"schedule.{sorted(unknown)[0]}", "unknown field")
        schedule = make_schedule(**schedule)
    if not isinstance(kind, str) or not kind.strip():
        raise ValidationError("kind", "must not be empty")
    if not _KIND_RE.match(kind):
        raise ValidationError("kind", "must be lowercase letters, digits and '_'")
    params = {} if params is None else params
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ValidationError("params", "must be an object with string keys")
    check_value(params, "params", max_depth=MAX_PARAMS_DEPTH)
    if json_size(params) > MAX_PARAMS_BYTES:
        raise ValidationError("params", f"must be at most {MAX_PARAMS_BYTES:,} bytes as JSON")
    secret_params = _string_list(secret_params, "secret_params")
    if len(secret_params) > MAX_PRODUCES:
        raise ValidationError("secret_params", f"may list at most {MAX_PRODUCES} params")
    if not is_int(max_retries):
        raise ValidationError("max_retries", "must be an integer")
    if not 0 <= max_retries <= MAX_MAX_RETRIES:
        raise ValidationError("max_retries", f"must be between 0 and {MAX_MAX_RETRIES}")
    if stuck_threshold_minutes is not None:
        check_int(stuck_threshold_minutes, "stuck_threshold_minutes", 1, 7 * 24 * 60)
    if expected_runtime_minutes is not None:
        check_int(expected_runtime_minutes, "expected_runtime_minutes", 1, 60)
    produces = [check_dataset_key(k, f"produces[{i}]")
                for i, k in enumerate(_string_list(produces, "produces"))]
    if len(set(produces)) != len(produces):
        raise ValidationError("produces", "lists a dataset twice")
    if len(produces) > MAX_PRODUCES:
        raise ValidationError("produces", f"may list at most {MAX_PRODUCES} datasets")
    if trigger is not None and set(trigger.after) & set(produces):
        raise ValidationError("trigger.after", "names a dataset the job produces itself: "
                              f"{sorted(set(trigger.after) & set(produces))[0]!r}")
    check_bool(allow_overlap, "allow_overlap")
    if not isinstance(description, str) or len(description) > 2000:
        raise ValidationError("description", "must be a string of at most 2000 characters")
    check_value(description, "description", max_depth=0)
    if status not in JOB_STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(JOB_STATUSES)}")
    if trigger_source not in TRIGGER_SOURCES:
        raise ValidationError("trigger_source", f"must be one of {', '.join(TRIGGER_SOURCES)}")
    status, trigger_source = JobStatus(status), TriggerSource(trigger_source)
    if catchup not in tuple(Catchup):
        raise ValidationError("catchup", f"must be one of {', '.join(Catchup)}")
    check_int(max_catchup, "max_catchup", 1, MAX_MAX_CATCHUP)
    lateness = None if max_lateness is None else parse_duration(max_lateness, "max_lateness")
    pool = None if pool is None else check_pool(pool)
    job_id = check_id(id, "id")
    return Job(
        id=job_id, kind=kind, schedule=schedule, params=params,
        secret_params=secret_params, max_retries=max_retries,
        stuck_threshold_minutes=stuck_threshold_minutes,
        expected_runtime_minutes=expected_runtime_minutes, produces=produces,
        allow_overlap=allow_overlap, description=description, status=status,
        trigger_source=trigger_source, catchup=Catchup(catchup), max_catchup=max_catchup,
        max_lateness_s=None if lateness is None else int(lateness.total_seconds()),
        trigger=trigger, pool=pool, claim_shard=herd.claim_shard(job_id),
    )


def check_pool(value: object, field_name: str = "pool") -> str:
    if not isinstance(value, str) or not _POOL_RE.match(value):
        raise ValidationError(field_name, "must be a pool name: 1-40 lowercase letters, digits "
                                          "or '-', starting with a letter")
    return value


def _trigger(value: object) -> Trigger | None:
    """`{after: [dataset keys], when: all|any}`, validated; None for no trigger."""
    if value is None or isinstance(value, Trigger):
        return value
    if not isinstance(value, dict):
        raise ValidationError("trigger", "must be an object: {after: [dataset keys], "
                                         "when: all|any}")
    unknown = set(value) - {"after", "when"}
    if unknown:
        raise ValidationError(f"trigger.{sorted(unknown)[0]}", "unknown field")
    after = _string_list(value.get("after"), "trigger.after")
    if not after:
        raise ValidationError("trigger.after", "must name at least one dataset")
    if len(after) > MAX_TRIGGER_AFTER:
        raise ValidationError("trigger.after", f"names more than {MAX_TRIGGER_AFTER} datasets")
    keys = [check_dataset_key(k, f"trigger.after[{i}]") for i, k in enumerate(after)]
    if len(set(keys)) != len(keys):
        raise ValidationError("trigger.after", "lists a dataset twice")
    when = value.get("when", TriggerWhen.ALL)
    if when not in tuple(TriggerWhen):
        raise ValidationError("trigger.when", f"must be one of {', '.join(TriggerWhen)}")
    return Trigger(after=tuple(keys), when=TriggerWhen(when))


def _string_list(value: object, field_name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError(field_name, "must be a list of strings")
    check_value(list(value), field_name, max_depth=1)
    return list(value)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a run, kept in the run's history (`Run.attempts`)."""

    number: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: AttemptOutcome | None = None  # None while it runs
    error: str | None = None

    @classmethod
    def from_doc(cls, data: dict) -> "Attempt":
        data = _datetimes_to_utc(_known(cls, dict(data)), ("started_at", "finished_at"))
        if data.get("outcome") is not None:
            data["outcome"] = AttemptOutcome(data["outcome"])
        return cls(**data)


@dataclass(frozen=True)
class External:
    """The work a waiting run started on an engine: what to poll, when, and since when.

    `engine` is "bigquery" (`external_id` the job id) or "cloud_run" (the execution's
    full name); `polls` counts the polls made (each poll task's name carries the next
    number, so a duplicate of it dedupes); `deadline` is the job's timeout from the
    submission (None: the engine's own limits); `cancel_reason` is set once Freshet has
    asked the engine to cancel (a timeout, a kill switch, a `skip` window, an operator)."""

    engine: str
    external_id: str
    location: str = ""
    submitted_at: datetime | None = None
    next_poll_at: datetime | None = None
    polls: int = 0
    deadline: datetime | None = None
    timeout_s: int | None = None  # the job's timeout, which sets `deadline`
    link: str = ""
    adopted: bool = False  # an earlier delivery's job was found and adopted
    cancel_reason: str = ""
    cancelled_at: datetime | None = None  # when the engine was asked to cancel

    _TIMES = ("submitted_at", "next_poll_at", "deadline", "cancelled_at")

    @classmethod
    def from_doc(cls, data: dict | None) -> "External | None":
        if not data:
            return None
        return cls(**_datetimes_to_utc(_known(cls, dict(data)), cls._TIMES))


@dataclass
class Run:
    id: str
    job_id: str
    kind: str
    scheduled_for: datetime
    trigger_source: TriggerSource = TriggerSource.SCHEDULE
    status: RunStatus = RunStatus.QUEUED
    attempt_number: int = 1
    max_attempts: int = DEFAULT_MAX_RETRIES + 1
    produces: list[str] = field(default_factory=list)
    task_name: str | None = None
    dispatches: int = 0  # tasks recovery created again; part of each task's name
    idempotency_key: str | None = None
    stuck: bool = False
    # The Cloud Tasks queue its tasks go to (its job's pool), so that retries,
    # deferrals and recovery need no job read. None: the default queue.
    queue: str | None = None
    # Where the data interval (interval_start, scheduled_for] starts: the previous slot.
    interval_start: datetime | None = None
    # Set on a backfill's (or catch-up's) runs: which backfill, which of its lanes.
    backfill_id: str | None = None
    lane: int | None = None
    # A triggered run: the upstream versions it was created for (dataset -> run id).
    upstream_versions: dict[str, str] = field(default_factory=dict)
    # Hops from its chain's first run that was not triggered (0: not triggered).
    trigger_depth: int = 0
    created_at: datetime | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    records: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, datetime] = field(default_factory=dict)  # as the sync reported
    attempts: list[Attempt] = field(default_factory=list)
    # What recovery needs from the job, kept on the run so that recovering it does not
    # read the job: the stuck threshold its attempts run under (set when one starts)
    # and whether the job is one-time (its completion depends on the job's status).
    stuck_threshold_minutes: int | None = None
    one_time: bool = False
    # A waiting run's work on its engine (and, once it ended, the record of it).
    external: External | None = None
    # How long the run is kept once it ends (set when it is created), and so when:
    # `expire_at`, set as it ends, is what the Firestore TTL policy deletes it by.
    keep_days: int = DEFAULT_RUN_RETENTION_DAYS
    expire_at: datetime | None = None
    updated_at: datetime | None = None  # Firestore's commit time (freshet.gcp.store)

    _TIMES = ("scheduled_for", "interval_start", "created_at", "enqueued_at", "started_at",
              "heartbeat_at", "lease_expires_at", "finished_at", "updated_at")

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def slot(self) -> datetime:
        """The time this run stands for: its schedule slot, or when it was asked for."""
        return self.scheduled_for

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, data: dict) -> "Run":
        data = _datetimes_to_utc(_known(cls, dict(data)), (*cls._TIMES, "expire_at"))
        data["attempts"] = [Attempt.from_doc(a) for a in data.get("attempts") or []]
        data["external"] = External.from_doc(data.get("external"))
        data["watermarks"] = {k: to_utc(v) for k, v in (data.get("watermarks") or {}).items()}
        data["status"] = RunStatus(data.get("status", RunStatus.QUEUED))
        data["trigger_source"] = TriggerSource(data.get("trigger_source", TriggerSource.SCHEDULE))
        return cls(**data)


@dataclass
class Dataset:
    key: str
    last_started_at: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    last_run_id: str | None = None
    last_started_run_id: str | None = None
    # The run syncing right now, cleared when that run finishes whatever its
    # timestamps say (clocks of different instances disagree).
    running_run_id: str | None = None
    last_success_run_id: str | None = None
    # The newest slot a run succeeded for: a success for an older slot (a backfill)
    # never makes the dataset look fresher.
    last_success_slot: datetime | None = None
    last_failure_run_id: str | None = None
    last_record_count: int | None = None
    # {"2026-11-28": {"ok": 3, "fail": 1}}: the last 90 days, for the status page's bar.
    daily: dict[str, dict[str, int]] = field(default_factory=dict)
    # The jobs whose trigger names this dataset (written by apply), so the commit that
    # records a success finds its downstream jobs without a query.
    triggers: list[str] = field(default_factory=list)
    # The time the data is current to, as the syncs report it (their watermark), once
    # trusted: never backwards, never in the future (core.bookkeeping).
    data_as_of: datetime | None = None
    # The last watermark that was not trusted, and why ("backwards" | "future"):
    # recorded and shown until a trustworthy one arrives.
    watermark_issue: str | None = None
    rejected_watermark: datetime | None = None
    # The data time after each of the latest successes, oldest first, [{at, as_of}]
    # (as_of None: no watermark, the data is as of the success), and the newest point
    # dropped from it: deadlines are judged from what the data was at the deadline.
    data_points: list[dict] = field(default_factory=list)
    data_floor: dict | None = None
    # "observed" for a dataset Freshet observes rather than loads (core.observe): its
    # freshness is judged on the data time the observer read. None: produced by jobs.
    freshness_basis: str | None = None
    updated_at: datetime | None = None

    _TIMES = ("last_started_at", "last_success_at", "last_success_slot", "last_failure_at",
              "data_as_of", "rejected_watermark", "updated_at")

    @property
    def running(self) -> bool:
        """A sync of this dataset is in progress right now."""
        return self.running_run_id is not None

    @property
    def failing(self) -> bool:
        """The newest outcome is a failure."""
        return self.last_failure_at is not None and (
            self.last_success_at is None or self.last_failure_at > self.last_success_at
        )

    def to_doc(self) -> dict:  # asdict(self), faster: no field holds a dataclass
        return {f.name: _copied(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_doc(cls, data: dict) -> "Dataset":
        data = _datetimes_to_utc(_known(cls, dict(data)), cls._TIMES)
        data["data_points"] = [  # _point's, inline: a publish reads 48 of each dataset's
            {"at": to_utc(p.get("at")), "as_of": to_utc(p.get("as_of"))}
            for p in data.get("data_points") or []]
        if data.get("data_floor"):
            data["data_floor"] = _point(data["data_floor"])
        return cls(**data)


def _point(doc: dict) -> dict:
    return {"at": to_utc(doc.get("at")), "as_of": to_utc(doc.get("as_of"))}
