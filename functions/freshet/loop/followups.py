"""What else the commit that ends a run writes: its lane's next run (backfills and
catch-up chains) and the runs its success triggers downstream.

Called inside the ending transaction after the decision and before any write: it only
reads (the lane and the candidate slot's runs, the downstream jobs the produced
datasets list, for `all` their other upstream datasets) and returns core.lifecycle's
Followups for the caller to write with the decision. The new runs' tasks are sent
after the commit (freshet.loop.backfill.send_new).
"""

from datetime import datetime

from freshet.core import triggers
from freshet.core.lifecycle import Decision, Followups
from freshet.core.models import Dataset, Job, Run, RunStatus, TriggerSource
from freshet.core.runs import new_run
from freshet.core.settings import Settings
from freshet.gcp.store import Tx
from freshet.loop.backfill import settle_lane


def after_end(tx: Tx, decision: Decision, job: Job | None, before: dict[str, Dataset],
              now: datetime, settings: Settings, *, release_next: bool = True
              ) -> Followups:
    """`before`: the run's datasets as read (Tx.read_datasets) for this decision."""
    run, found = decision.run, Followups()
    if run is None or not run.terminal:
        return found
    lane, next_run = settle_lane(tx, run, job, now, settings, release_next=release_next)
    if lane is not None:
        found.lanes.append(lane)
    if next_run is not None:
        found.runs.append(next_run)
    if run.status == RunStatus.SUCCEEDED and decision.datasets is not None:
        after = {k: decision.datasets.apply(d) for k, d in before.items()}
        _triggered(tx, run, before, after, now, settings, found)
    return found


def _triggered(tx: Tx, run: Run, before: dict[str, Dataset], after: dict[str, Dataset],
               now: datetime, settings: Settings, found: Followups) -> None:
    new = triggers.advanced(before, after, run.id)
    if not new:
        return  # nothing got newer (an old slot's backfill): nothing downstream runs
    versions: dict[str, str | None] = {k: d.last_success_run_id for k, d in after.items()}
    downstream = triggers.downstream_of(after, new)
    limit = triggers.depth_limit(tx.trigger_graph().get("jobs")) if downstream else 0
    for job_id in downstream:
        job = tx.get_job(job_id)
        for key in triggers.upstreams_to_read(job, versions):
            dataset = tx.get_dataset(key)
            versions[key] = None if dataset is None else dataset.last_success_run_id
        fire = triggers.decide_trigger(job, new, versions, now, depth=run.trigger_depth + 1,
                                       limit=limit, upstream_run_id=run.id)
        if fire is None:
            continue
        found.jobs[job_id] = fire.job_fields
        if fire.refused is None:
            found.runs.append(new_run(job, fire.run_id, now, source=TriggerSource.UPSTREAM,
                                      now=now, settings=settings,
                                      upstream_versions=fire.versions, trigger_depth=fire.depth))
