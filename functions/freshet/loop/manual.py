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
from freshet.core.models import JobStatus, Run
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
    if not control.manual_actions_enabled:
        raise Disabled("manual actions are switched off by a kill switch"
                       + (f" ({control.reason})" if control.reason else ""))
    existing = store.get_run(run_id)
    if existing is not None:
        return existing, False
    job = store.get_job(job_id)
    if job is None:
        raise NotFound("job", job_id)
    if job.status == JobStatus.ARCHIVED:
        raise Conflict(f"job {job_id!r} is archived; restore it before running it")
    if not control.kind_enabled(job.kind):
        raise Disabled(f"kind {job.kind!r} is switched off by a kill switch")
    window = control.maintenance.blocking_job(job.id, job.produces, now)
    if window is not None:
        raise Conflict(f"job {job_id!r} does not start during {window.describe()}")
    run = new_run(job, run_id, now, source=source, now=now, settings=settings,
                  idempotency_key=idempotency_key)
    # No transaction: creating the run document is the dedup, so concurrent requests
    # never wait on each other's locks; the losers read the winner's run.
    if store.create_run(run) is Created.EXISTS:
        return store.run(run_id), False
    send_tasks(queue, [new_run_task(run, job_id=job.id, what="run")])
    return run, True
