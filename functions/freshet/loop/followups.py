"""The two ends of every loop transaction around core.commit's one decision.

`end` is a run's ending, inside its transaction: read the facts core.commit.next_reads
asks for, round by round (the run's datasets and lane; each of the lane's candidate
runs; the downstream jobs; for `all` triggers their other upstreams), call
core.commit.ending, persist the Commit as it is. `send_tasks` is what every step does
after a commit lands: create the tasks it asks for. A failed enqueue is logged, not
raised: the run is queued with a lease, so recovery sends it.
"""

import logging
from collections.abc import Iterable
from datetime import datetime

from freshet.core import commit as core
from freshet.core.commit import Commit, Facts, Task
from freshet.core.lifecycle import Decision, V
from freshet.core.models import Job
from freshet.core.settings import Settings
from freshet.gcp.store import Tx
from freshet.gcp.tasks import TaskQueue

log = logging.getLogger(__name__)


def end(tx: Tx, decision: Decision[V], job_id: str | None, job: Job | None, now: datetime,
        settings: Settings, *, release_next: bool = True,
        run_version: datetime | None = None, what: str = "run") -> Commit[V]:
    """Read what core.commit asks for, round by round; build the commit; persist it."""
    facts = None
    while (reads := core.next_reads(decision, job, facts, now, settings,
                                    release_next=release_next)) is not None:
        facts = tx.read(reads, facts or Facts())
    made = core.ending(decision, job_id, job, facts or Facts(), now, settings,
                       release_next=release_next, run_version=run_version, what=what)
    tx.persist(made)
    return made


def send_tasks(queue: TaskQueue, tasks: Iterable[Task]) -> list[str]:
    """Create the tasks a landed commit asks for; returns the run ids whose enqueue
    failed (logged: recovery sends them)."""
    failed = []
    for task in tasks:
        send = task.send
        try:
            if send.poll is not None:
                queue.enqueue_poll(task.run_id, send.attempt, send.poll, schedule_time=send.at,
                                   queue=send.queue, job_id=task.job_id)
                continue
            queue.enqueue(task.run_id, send.attempt, dispatch=send.dispatch,
                          schedule_time=send.at, queue=send.queue, job_id=task.job_id)
        except Exception:
            log.exception("enqueue failed for %s %s; recovery will send it", task.what,
                          task.run_id)
            failed.append(task.run_id)
    return failed
