"""The two ends of every loop transaction around core.commit's one decision.

`end` is a run's ending, inside its transaction: read the facts in at most three rounds
(core.commit says which: the run's datasets and lane; the lane's candidate runs and the
downstream jobs; for `all` triggers their other upstreams), call core.commit.ending,
persist the Commit as it is. `send_tasks` is what every step does after a commit lands:
create the tasks it asks for. A failed enqueue is logged, not raised: the run is queued
with a lease, so recovery sends it.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from freshet.core import commit as core
from freshet.core.commit import Commit, Facts, Task
from freshet.core.lifecycle import Decision, V
from freshet.core.models import Job, Run
from freshet.core.settings import Settings
from freshet.gcp.store import Tx
from freshet.gcp.tasks import TaskQueue

log = logging.getLogger(__name__)


def end(tx: Tx, decision: Decision[V], job_id: str | None, job: Job | None, now: datetime,
        settings: Settings, *, release_next: bool = True,
        run_version: datetime | None = None, what: str = "run") -> Commit[V]:
    """Read what the decision's commit depends on, build it (core), persist it."""
    facts = read_facts(tx, decision, job, now, settings, release_next=release_next)
    made = core.ending(decision, job_id, job, facts, now, settings,
                       release_next=release_next, run_version=run_version, what=what)
    tx.persist(made)
    return made


def read_facts(tx: Tx, decision: Decision, job: Job | None, now: datetime,
               settings: Settings, *, release_next: bool = True) -> Facts:
    datasets = tx.get_datasets(core.dataset_keys(decision))
    key = core.lane_key(decision)
    lane = tx.get_lane(*key) if key is not None else None
    runs = read_candidates(tx, lambda known: core.lane_need(
        decision, lane, job, known, now, settings, release_next=release_next))
    facts = Facts(datasets=datasets, lane=lane, runs=runs)
    facts = replace(facts, jobs=tx.get_jobs(core.trigger_jobs(decision, facts)))
    return replace(facts, upstreams=tx.get_datasets(core.trigger_upstreams(decision, facts)))


def read_candidates(tx: Tx, need: Callable[[dict[str, Run | None]], str | None]
                    ) -> dict[str, Run | None]:
    """The runs a lane's release asks for, each by its deterministic id, until it
    has what it needs (core.backfill.release)."""
    known: dict[str, Run | None] = {}
    while (run_id := need(known)) is not None:
        known[run_id] = tx.get_run(run_id)
    return known


def send_tasks(queue: TaskQueue, tasks: Iterable[Task]) -> list[str]:
    """Create the tasks a landed commit asks for; returns the run ids whose enqueue
    failed (logged: recovery sends them)."""
    failed = []
    for task in tasks:
        send = task.send
        try:
            queue.enqueue(task.run_id, send.attempt, dispatch=send.dispatch,
                          schedule_time=send.at, queue=send.queue, job_id=task.job_id)
        except Exception:
            log.exception("enqueue failed for %s %s; recovery will send it", task.what,
                          task.run_id)
            failed.append(task.run_id)
    return failed
