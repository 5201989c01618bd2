"""Typed documents: jobs, runs and datasets, and their Firestore (de)serialisation.

Documents map one-to-one to dataclass fields; datetimes are stored as Firestore
timestamps and always come back as UTC-aware datetimes.
"""

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from freshet.core import herd
from freshet.core.errors import ValidationError
from freshet.core.schedules import Schedule, make_schedule
from freshet.core.timeutil import to_utc


class JobStatus(StrEnum):
    """A finished one-time job becomes completed, then archived after a retention period."""

    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"
    COMPLETED = "completed"


class RunStatus(StrEnum):
    """queued -> running -> succeeded | failed, with retrying between attempts."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED)


class LastRun(StrEnum):
    """A job's `last_run_status`: how its latest slot ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the slot passed while a kill switch had the job's kind off


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


JOB_STATUSES = tuple(JobStatus)
TRIGGER_SOURCES = tuple(TriggerSource)
RUN_STATUSES = tuple(RunStatus)
DEFAULT_MAX_RETRIES = 3
MAX_MAX_RETRIES = 50

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
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
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


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
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_run_id: str | None = None
    last_run_status: LastRun | None = None
    last_error: str | None = None
    # The run holding the job while it runs (no overlap): the claim reads this one
    # document instead of querying runs, and the finish clears it.
    running_run_id: str | None = None
    # Which claim shard finds this job when a herd is claimed in parallel
    # (freshet.core.herd); None on jobs stored before shards existed, until the
    # tick's next claim of the job writes it.
    claim_shard: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    archived_at: datetime | None = None

    _TIMES = ("next_run_at", "last_run_at", "created_at", "updated_at", "completed_at",
              "archived_at")

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    @property
    def shard(self) -> int:
        return herd.claim_shard(self.id) if self.claim_shard is None else self.claim_shard

    def to_doc(self) -> dict:
        doc = asdict(self)
        doc["schedule"] = self.schedule.to_dict()
        return doc

    @classmethod
    def from_doc(cls, data: dict) -> "Job":
        data = _datetimes_to_utc(_known(cls, dict(data)), cls._TIMES)
        sched = dict(data.get("schedule") or {})
        if isinstance(sched.get("run_at"), datetime):
            sched["run_at"] = to_utc(sched["run_at"])
        data["schedule"] = Schedule.from_dict(sched)
        data["status"] = JobStatus(data.get("status", JobStatus.ACTIVE))
        data["trigger_source"] = TriggerSource(data.get("trigger_source", TriggerSource.SCHEDULE))
        if data.get("last_run_status") is not None:
            data["last_run_status"] = LastRun(data["last_run_status"])
        return cls(**data)


def new_job(
    *,
    id: object,
    kind: object,
    schedule: dict | Schedule,
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
) -> Job:
    """Validate a job definition. Every error names the field it is about."""
    if not isinstance(schedule, Schedule):
        if not isinstance(schedule, dict):
            raise ValidationError("schedule", "must be an object with cron/timezone or run_at")
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
    secret_params = _string_list(secret_params, "secret_params")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise ValidationError("max_retries", "must be an integer")
    if not 0 <= max_retries <= MAX_MAX_RETRIES:
        raise ValidationError("max_retries", f"must be between 0 and {MAX_MAX_RETRIES}")
    if stuck_threshold_minutes is not None and (
        isinstance(stuck_threshold_minutes, bool)
        or not isinstance(stuck_threshold_minutes, int)
        or not 1 <= stuck_threshold_minutes <= 7 * 24 * 60
    ):
        raise ValidationError("stuck_threshold_minutes", "must be an integer from 1 to 10080")
    if expected_runtime_minutes is not None and (
        isinstance(expected_runtime_minutes, bool)
        or not isinstance(expected_runtime_minutes, int)
        or not 1 <= expected_runtime_minutes <= 60
    ):
        raise ValidationError("expected_runtime_minutes", "must be an integer from 1 to 60")
    produces = [check_dataset_key(k, f"produces[{i}]")
                for i, k in enumerate(_string_list(produces, "produces"))]
    if len(set(produces)) != len(produces):
        raise ValidationError("produces", "lists a dataset twice")
    if not isinstance(allow_overlap, bool):
        raise ValidationError("allow_overlap", "must be true or false")
    if not isinstance(description, str) or len(description) > 2000:
        raise ValidationError("description", "must be a string of at most 2000 characters")
    if status not in JOB_STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(JOB_STATUSES)}")
    if trigger_source not in TRIGGER_SOURCES:
        raise ValidationError("trigger_source", f"must be one of {', '.join(TRIGGER_SOURCES)}")
    status, trigger_source = JobStatus(status), TriggerSource(trigger_source)
    job_id = check_id(id, "id")
    return Job(
        id=job_id, kind=kind, schedule=schedule, params=params,
        secret_params=secret_params, max_retries=max_retries,
        stuck_threshold_minutes=stuck_threshold_minutes,
        expected_runtime_minutes=expected_runtime_minutes, produces=produces,
        allow_overlap=allow_overlap, description=description, status=status,
        trigger_source=trigger_source, claim_shard=herd.claim_shard(job_id),
    )


def _string_list(value: object, field_name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError(field_name, "must be a list of strings")
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
    created_at: datetime | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    records: dict[str, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    # What recovery needs from the job, kept on the run so that recovering it does not
    # read the job: the stuck threshold its attempts run under (set when one starts)
    # and whether the job is one-time (its completion depends on the job's status).
    stuck_threshold_minutes: int | None = None
    one_time: bool = False
    updated_at: datetime | None = None  # Firestore's commit time (freshet.gcp.store)

    _TIMES = ("scheduled_for", "created_at", "enqueued_at", "started_at", "heartbeat_at",
              "lease_expires_at", "finished_at", "updated_at")

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, data: dict) -> "Run":
        data = _datetimes_to_utc(_known(cls, dict(data)), cls._TIMES)
        data["attempts"] = [Attempt.from_doc(a) for a in data.get("attempts") or []]
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
    last_failure_run_id: str | None = None
    last_record_count: int | None = None
    # {"2026-11-28": {"ok": 3, "fail": 1}}: the last 90 days, for the status page's bar.
    daily: dict[str, dict[str, int]] = field(default_factory=dict)
    updated_at: datetime | None = None

    _TIMES = ("last_started_at", "last_success_at", "last_failure_at", "updated_at")

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

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, data: dict) -> "Dataset":
        return cls(**_datetimes_to_utc(_known(cls, dict(data)), cls._TIMES))
