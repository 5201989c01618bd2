"""Run a job now, once however often it is asked.

A repeated request with the same idempotency key, or for the same job within the
same minute when no key is given, returns the run the first request created. The
run's id is derived from the key, so `create()` of its document is the dedup: no
transaction, and no lock for concurrent requests to wait on.
"""

import logging
from datetime import datetime

from freshet.core.commit import new_run_task
from freshet.core.control import Control
from freshet.core.created import Created
from freshet.core.errors import Conflict, Disabled, NotFound
from freshet.core.interventions import retry_of, retry_run_id
from freshet.core.models import Job, JobStatus, Run
from freshet.core.runs import manual_run_id, new_run
from freshet.core.settings import Settings
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.loop.followups import send_tasks

log = logging.getLogger(__name__)


def run_now(store: Store, queue: TaskQueue, job_id: str, *, now: datetime,
            settings: Settings, idempotency_key: str | None = None, source: str = "api",
            control: Control | None = None) -> tuple[Run, bool]:
    """Returns (the run, whether this call created it). Raises NotFound, Conflict, Disabled."""
    run_id = manual_run_id(job_id, now, idempotency_key)
    control = control or store.control()
    check_manual_actions(control)
    existing = store.get_run(run_id)
    if existing is not None:
        return existing, False
    job = store.get_job(job_id)
    if job is None:
        raise NotFound("job", job_id)
    if job.status == JobStatus.ARCHIVED:
        raise Conflict(f"job {job_id!r} is archived; restore it before running it")
    check_may_start(control, job, now)
    run = new_run(job, run_id, now, source=source, now=now, settings=settings,
                  idempotency_key=idempotency_key)
    return send_new(store, queue, run)


def check_manual_actions(control: Control) -> None:
    if not control.manual_actions_enabled:
        raise Disabled("manual actions are switched off by a kill switch"
                       + (f" ({control.reason})" if control.reason else ""))


def check_may_start(control: Control, job: Job, now: datetime) -> None:
    """A run asked for by hand starts now, or is refused now: not queued to fail."""
    if not control.kind_enabled(job.kind):
        raise Disabled(f"kind {job.kind!r} is switched off by a kill switch")
    window = control.maintenance.blocking_job(job.id, job.produces, now)
    if window is not None:
        raise Conflict(f"job {job.id!r} does not start during {window.describe()}")


def send_new(store: Store, queue: TaskQueue, run: Run) -> tuple[Run, bool]:
    """Create the run and send its first task: (the run, whether this call created it)."""
    # No transaction: creating the run document is the dedup, so concurrent requests
    # never wait on each other's locks; the losers read the winner's run.
    if store.create_run(run) is Created.EXISTS:
        return store.run(run.id), False
    send_tasks(queue, [new_run_task(run, job_id=run.job_id, what="run")])
    return run, True


def retry_run(store: Store, queue: TaskQueue, run_id: str, *, now: datetime,
              settings: Settings, control: Control | None = None) -> tuple[Run, bool]:
    """Run a failed (or cancelled) run's slot again, as one new run whatever how often
    it is asked (freshet.core.interventions.retry_of): (the retry, whether this call
    created it)."""
    control = control or store.control()
    check_manual_actions(control)
    failed = store.run(run_id)
    existing = store.get_run(retry_run_id(failed))
    if existing is not None:
        return existing, False
    job = store.get_job(failed.job_id)
    if job is None:
        raise NotFound("job", failed.job_id)
    check_may_start(control, job, now)
    return send_new(store, queue, retry_of(failed, job, now=now, settings=settings))
