"""Work that runs on an engine (a BigQuery job, a Cloud Run Jobs execution), as pure
decisions: what the external work is called, when to poll it next, what a poll says,
and when to cancel it.

    external_job_id   the BigQuery job id of run + attempt (a resubmit gets 409 and adopts)
    run_marker        the env override that marks a Cloud Run execution as the run's
    poll_delay        10 s, doubling, up to a cap (2 min by default)
    polls_for         how many polls work of a given length costs
    judge_bigquery    a jobs.get answer -> running | succeeded | failed | cancelled
    judge_cloud_run   an executions.get answer -> the same; success only when every task
                      succeeded (apache/airflow#57791: a cancelled execution is no success)
    judge_poll_error  a transient poll error means "poll again", never a failure
                      (prefect#22096: one 503 crashed a flow that was still running)
    decide_poll       the above together with the run's timeout: the next poll, or cancel

Nothing here does I/O; the adapters (freshet.gcp.bigquery, freshet.gcp.cloudrun)
translate Google's answers into EngineStatus and the run path acts on the PollDecision.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

FIRST_POLL = timedelta(seconds=10)
DEFAULT_POLL_CAP = timedelta(minutes=2)
# BigQuery job ids: letters, digits, '_' and '-', at most 1,024 characters
# (https://cloud.google.com/bigquery/docs/running-jobs#generate-jobid).
JOB_ID_MAX = 1024
_JOB_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")
# Label values: lowercase letters, digits, '_' and '-', at most 63 characters
# (https://cloud.google.com/resource-manager/docs/labels-overview#requirements).
LABEL_MAX = 63
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")
# The env overrides that mark an execution as a run's: jobs.run takes no labels, and an
# Execution's labels are its job's, so the marker travels in the container's env
# (which the container may read too).
RUN_ENV = "FRESHET_RUN_ID"
ATTEMPT_ENV = "FRESHET_RUN_ATTEMPT"


class EngineState(StrEnum):
    RUNNING = "running"  # pending or running: poll again
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a failure of the run too, said apart for the operator


class PollAction(StrEnum):
    WAIT = "wait"  # poll again at `next_poll_at`
    FINISH = "finish"  # the engine has an end: record it
    CANCEL = "cancel"  # the run's timeout passed (or it was cancelled): cancel on the engine


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """What a poll learnt, in Freshet's terms (the adapters build it)."""

    state: EngineState
    error: str = ""  # why it failed or was cancelled, for the run's last_error
    # BigQuery: totalBytesProcessed, rows; Cloud Run: task counts.
    stats: tuple[tuple[str, int], ...] = ()
    link: str = ""  # the execution's logs, the job's console page

    @property
    def finished(self) -> bool:
        return self.state != EngineState.RUNNING


@dataclass(frozen=True, slots=True)
class PollDecision:
    action: PollAction
    next_poll_at: datetime | None = None
    status: EngineStatus | None = None
    reason: str = ""


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def external_job_id(run_id: str, attempt: int, prefix: str = "freshet") -> str:
    """`freshet_<run>_<attempt>`, kept to BigQuery's job id rules.

    A run id holding characters BigQuery refuses (`.`, `:`) has them replaced by `_`
    and a digest of the original added, so that two runs never share a job id; a run
    id too long is cut and digested the same way. The same run and attempt always
    give the same id: that is what makes a resubmission adopt instead of duplicate."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")
    clean = _JOB_ID_BAD.sub("_", run_id)
    tail = f"_{attempt}"
    if clean != run_id or len(prefix) + 1 + len(clean) + len(tail) > JOB_ID_MAX:
        digest = _digest(run_id)
        room = JOB_ID_MAX - len(prefix) - 1 - len(tail) - len(digest) - 1
        clean = f"{clean[:room]}_{digest}"
    return f"{prefix}_{clean}{tail}"


def label_value(text: str) -> str:
    """`text` as a label value (lowercase, digits, '_', '-', at most 63), digested if
    anything had to change, so that distinct texts stay distinct."""
    clean = _LABEL_BAD.sub("_", text.lower())
    if clean == text and len(clean) <= LABEL_MAX:
        return clean
    digest = _digest(text)
    return f"{clean[:LABEL_MAX - len(digest) - 1]}_{digest}"


def run_labels(run_id: str, attempt: int, job_id: str) -> dict[str, str]:
    """Labels for the engine's resource (BigQuery jobs: billing breakdowns per job)."""
    return {"freshet-job": label_value(job_id), "freshet-run": label_value(run_id),
            "freshet-attempt": str(attempt)}


def run_marker(run_id: str, attempt: int) -> dict[str, str]:
    """The env that marks a Cloud Run execution as this run's attempt."""
    return {RUN_ENV: run_id, ATTEMPT_ENV: str(attempt)}


def is_marked(env: dict[str, str], run_id: str, attempt: int) -> bool:
    """Whether an execution whose containers had `env` was started for run + attempt."""
    return env.get(RUN_ENV) == run_id and env.get(ATTEMPT_ENV) == str(attempt)


def poll_delay(polls: int, cap: timedelta = DEFAULT_POLL_CAP,
               first: timedelta = FIRST_POLL) -> timedelta:
    """The wait before poll number `polls + 1`: 10 s, 20 s, 40 s ... up to `cap`."""
    if polls < 0:
        raise ValueError(f"polls must be >= 0, not {polls}")
    return min(first * 2 ** min(polls, 32), max(cap, first))  # 2**32 * 10 s > any cap


def polls_for(duration: timedelta, cap: timedelta = DEFAULT_POLL_CAP) -> int:
    """How many polls see work that lasts `duration` to its end (the last one sees it):
    what a waiting run costs (freshet cost, bench_engines)."""
    polls, waited = 0, timedelta(0)
    while True:
        waited += poll_delay(polls, cap)
        polls += 1
        if waited >= duration:
            return polls


def judge_bigquery(state: str, error_reason: str = "", error_message: str = "",
                   stats: tuple[tuple[str, int], ...] = (), link: str = "") -> EngineStatus:
    """A BigQuery job's `status`: PENDING and RUNNING wait; DONE is a success unless
    `status.errorResult` is set (then `reason` "stopped" means it was cancelled)."""
    if state in ("PENDING", "RUNNING"):
        return EngineStatus(EngineState.RUNNING, stats=stats, link=link)
    if state != "DONE":
        return EngineStatus(EngineState.FAILED, f"unknown BigQuery job state {state!r}",
                            stats, link)
    if not error_reason and not error_message:
        return EngineStatus(EngineState.SUCCEEDED, stats=stats, link=link)
    said = f"{error_reason}: {error_message}" if error_reason else error_message
    if error_reason == "stopped":
        return EngineStatus(EngineState.CANCELLED, f"cancelled: {error_message or 'stopped'}",
                            stats, link)
    if error_reason == "timeout":
        return EngineStatus(EngineState.FAILED, f"timed out on BigQuery: {said}", stats, link)
    return EngineStatus(EngineState.FAILED, said, stats, link)


def judge_cloud_run(*, task_count: int, succeeded: int, failed: int, cancelled: int,
                    running: int, completed: bool, error: str = "",
                    link: str = "") -> EngineStatus:
    """A Cloud Run execution. It is over once `completed` (completionTime is set) or its
    counts account for every task; it succeeded only when every task succeeded and none
    failed. A cancelled execution, or one that ended with tasks unaccounted for, is not
    a success (apache/airflow#57791)."""
    stats = (("task_count", task_count), ("succeeded", succeeded), ("failed", failed),
             ("cancelled", cancelled))
    accounted = succeeded + failed + cancelled
    if not completed and accounted < task_count:
        return EngineStatus(EngineState.RUNNING, stats=stats, link=link)
    counts = (f"{succeeded} of {task_count} tasks succeeded, {failed} failed, "
              f"{cancelled} cancelled")
    if succeeded == task_count and failed == 0 and cancelled == 0 and task_count > 0:
        return EngineStatus(EngineState.SUCCEEDED, stats=stats, link=link)
    why = f"{counts}{': ' + error if error else ''}"
    if cancelled:
        return EngineStatus(EngineState.CANCELLED, f"cancelled: {why}", stats, link)
    if running and not failed:
        # completed yet still counting running tasks: the counts lag; look again
        return EngineStatus(EngineState.RUNNING, stats=stats, link=link)
    return EngineStatus(EngineState.FAILED, why, stats, link)


def judge_poll_error(transient: bool, message: str) -> EngineStatus | None:
    """A poll that failed: None ("poll again") when it may pass (429, 5xx, a timeout),
    a failure only when the engine says the work cannot be read (403, 404)."""
    if transient:
        return None
    return EngineStatus(EngineState.FAILED, f"the engine refused the poll: {message}")


def deadline_of(started_at: datetime, timeout: timedelta | None) -> datetime | None:
    """When Freshet gives up on the work: its start + the job's timeout (None: never,
    the engine's own limits apply)."""
    return None if timeout is None else started_at + timeout


def decide_poll(status: EngineStatus | None, *, polls: int, now: datetime,
                deadline: datetime | None, cancel_requested: bool = False,
                cap: timedelta = DEFAULT_POLL_CAP) -> PollDecision:
    """After a poll (`status` None: it failed transiently): finish, cancel, or wait.

    The end the engine reports wins over a deadline that passed meanwhile (the work is
    done: record it). A deadline passed, or a cancel asked for (a cancelled run or
    backfill, a kill switch, a `skip` maintenance window), cancels on the engine; the
    run's verdict then comes from the next poll, which sees it cancelled. The next
    poll is never later than the deadline, so a timeout is noticed on time."""
    if status is not None and status.finished:
        return PollDecision(PollAction.FINISH, status=status,
                            reason=f"the engine says {status.state}")
    if cancel_requested:
        return PollDecision(PollAction.CANCEL, now + FIRST_POLL, status,
                            "cancel requested")
    if deadline is not None and now >= deadline:
        return PollDecision(PollAction.CANCEL, now + FIRST_POLL, status,
                            "the job's timeout passed")
    next_at = now + poll_delay(polls, cap)
    if deadline is not None:
        next_at = min(next_at, deadline)
    why = "still running" if status is not None else "the poll failed transiently"
    return PollDecision(PollAction.WAIT, next_at, status, why)
