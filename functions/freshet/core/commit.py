"""What one transaction of the loop writes, whole: a `Commit`, built by one pure function.

Every loop transaction has one shape: read the facts, call one function here, persist
the Commit as it is (freshet.gcp.store.Tx.persist), and after it lands send the tasks
it asks for (freshet.loop.followups.send_tasks). The Commit holds the run, the job's
fields, the datasets after the change (only those it changes), the lanes, the runs to
create (a lane's next slot, triggered runs), other jobs' fields (their trigger state)
and the tasks to send.

A run's ending reads in at most three rounds, each asked of this module:
    1. its datasets and its lane             (dataset_keys, lane_key)
    2. the lane's candidate runs             (lane_need: deterministic ids, one by one,
                                              as the release looks through generations)
       and the downstream jobs               (trigger_jobs)
    3. for `all` triggers, their other upstream datasets (trigger_upstreams)
then `ending` decides all of it. tests/unit/test_commit.py tables every rule.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic

from freshet.core import backfill as bf
from freshet.core import triggers
from freshet.core.backfill import Backfill, BackfillStatus, Lane
from freshet.core.bookkeeping import apply_success
from freshet.core.lifecycle import Decision, Send, V
from freshet.core.models import Dataset, Job, Run, RunStatus, TriggerSource
from freshet.core.observe import Observation, apply_observation
from freshet.core.runs import cancelled, new_run
from freshet.core.settings import Settings


@dataclass(frozen=True)
class Task:
    """A task to create once the commit has landed."""

    run_id: str
    send: Send
    job_id: str | None = None  # the default pool's dispatch shard hashes it (None: none)
    what: str = "run"  # for the log line of a failed enqueue


def new_run_task(run: Run, *, at: datetime | None = None, job_id: str | None = None,
                 what: str = "new run") -> Task:
    """The first delivery of a run a commit created (a lane's next slot, a triggered
    run, the tick's or a manual run: those name their job for the dispatch shard)."""
    return Task(run.id, Send(1, 0, at, run.queue), job_id, what)


@dataclass(frozen=True)
class Facts:
    """What a run's ending read: its datasets as they are (missing: not in it), its
    lane, the lane's candidate runs (None: no such run), the downstream jobs and, for
    `all` triggers, their other upstream datasets."""

    datasets: Mapping[str, Dataset | None] = field(default_factory=dict)
    lane: Lane | None = None
    runs: Mapping[str, Run | None] = field(default_factory=dict)
    jobs: Mapping[str, Job | None] = field(default_factory=dict)
    upstreams: Mapping[str, Dataset | None] = field(default_factory=dict)
    # The number of jobs the trigger graph records (settings/trigger_graph), read with
    # the downstream jobs: a triggered run's depth bound (core.triggers.depth_limit).
    graph_jobs: int | None = None


@dataclass(frozen=True)
class Commit(Generic[V]):
    verdict: V | None  # None: a commit no lifecycle decision made (a lane's release)
    detail: str = ""
    run: Run | None = None  # the run document to write
    run_version: datetime | None = None  # write it only if still at this update time
    job_id: str | None = None
    job_fields: dict | None = None  # fields to update on the run's job
    datasets: tuple[Dataset, ...] = ()  # after the change: only those it changes
    lanes: tuple[Lane, ...] = ()
    backfills: tuple[Backfill, ...] = ()
    updated_runs: tuple[Run, ...] = ()  # other runs to write (a cancelled backfill's)
    runs: tuple[Run, ...] = ()  # to create
    jobs: Mapping[str, dict] = field(default_factory=dict)  # other jobs' fields
    tasks: tuple[Task, ...] = ()  # to send after the commit

    @property
    def created(self) -> list[str]:
        return [r.id for r in self.runs]


def differs(before: Dataset, after: Dataset) -> bool:
    """Whether writing `after` changes anything: `updated_at` is the commit time the
    store stamps, never what a decision set, so it does not count."""
    return replace(before, updated_at=None) != replace(after, updated_at=None)


# -- what to read --------------------------------------------------------------------


@dataclass(frozen=True)
class Reads:
    """One round of reads a run's ending asks for (next_reads)."""

    datasets: tuple[str, ...] = ()  # the run's own
    lane: tuple[str, int] | None = None  # (backfill, lane)
    runs: tuple[str, ...] = ()  # the lane's candidates, by their deterministic ids
    jobs: tuple[str, ...] = ()  # downstream jobs
    upstreams: tuple[str, ...] = ()  # for `all` triggers: their other upstream datasets
    graph: bool = False  # the trigger graph's number of jobs (with the downstream jobs)
    # (job id, produces) of the run whose datasets these are: the store finds their
    # group (core.groups) without reading where each one is.
    owner: tuple[str, tuple[str, ...]] | None = None
    observed: bool = False  # the datasets are observed: each in a document of its own


def next_reads(decision: Decision, job: Job | None, facts: Facts | None, now: datetime,
               settings: Settings, *, release_next: bool = True) -> Reads | None:
    """What to read next, given what was read (`facts`; None before the first round),
    or None: enough is known for `ending`."""
    if facts is None:
        keys, run = tuple(dataset_keys(decision)), decision.run
        owner = (run.job_id, tuple(run.produces)) if keys and run is not None else None
        return Reads(datasets=keys, lane=lane_key(decision), owner=owner)
    need = lane_need(decision, facts.lane, job, facts.runs, now, settings,
                     release_next=release_next)
    if need is not None:
        return Reads(runs=(need,))
    return _trigger_reads(*_advanced(decision, facts), facts)


def _ended(decision: Decision) -> Run | None:
    run = decision.run
    return run if run is not None and run.terminal else None


def dataset_keys(decision: Decision) -> list[str]:
    """The datasets the decision changes (the run's own)."""
    run = decision.run
    return list(run.produces) if decision.datasets is not None and run is not None else []


def lane_key(decision: Decision) -> tuple[str, int] | None:
    """(backfill, lane) whose run in flight this decision ends."""
    run = _ended(decision)
    if run is None or run.backfill_id is None or run.lane is None:
        return None
    return run.backfill_id, run.lane


def _settled(decision: Decision, lane: Lane | None, now: datetime) -> Lane | None:
    run = _ended(decision)
    if run is None or lane is None or lane.current_run_id != run.id:
        return None
    return bf.settled(lane, run, now)


def lane_need(decision: Decision, lane: Lane | None, job: Job | None,
              known: Mapping[str, Run | None], now: datetime, settings: Settings, *,
              release_next: bool = True) -> str | None:
    """The next run id the lane's release must read (None: it has read enough)."""
    settled = _settled(decision, lane, now)
    if settled is None or not release_next:
        return None
    return bf.release(settled, job, known, now, settings).need


def _before(decision: Decision, facts: Facts) -> dict[str, Dataset]:
    return {k: facts.datasets.get(k) or Dataset(key=k) for k in dataset_keys(decision)}


def _after(decision: Decision, before: Mapping[str, Dataset]) -> dict[str, Dataset]:
    change = decision.datasets
    return {k: change.apply(d) for k, d in before.items()} if change is not None else {}


def _advanced(decision: Decision, facts: Facts) -> tuple[dict[str, str], dict[str, Dataset]]:
    """The upstream versions this ending advanced (a success only), and the datasets
    after it."""
    run = _ended(decision)
    if run is None or run.status != RunStatus.SUCCEEDED or decision.datasets is None:
        return {}, {}
    before = _before(decision, facts)
    after = _after(decision, before)
    return triggers.advanced(before, after, run.id), after


def trigger_jobs(decision: Decision, facts: Facts) -> list[str]:
    """The downstream jobs to read: those the advanced datasets list."""
    return _downstream(*_advanced(decision, facts))


def trigger_upstreams(decision: Decision, facts: Facts) -> list[str]:
    """For `all` triggers: the other upstream datasets whose version must be read."""
    return _upstreams(*_advanced(decision, facts), facts)


def _downstream(new: Mapping[str, str], after: Mapping[str, Dataset]) -> list[str]:
    return triggers.downstream_of(after, new) if new else []


def _upstreams(new: Mapping[str, str], after: Mapping[str, Dataset],
               facts: Facts) -> list[str]:
    wanted: list[str] = []
    for job_id in _downstream(new, after):
        for key in triggers.upstreams_to_read(facts.jobs.get(job_id), [*after, *wanted]):
            wanted.append(key)
    return wanted


def _trigger_reads(new: Mapping[str, str], after: Mapping[str, Dataset],
                   facts: Facts) -> Reads | None:
    """The trigger rounds of reads: the downstream jobs, then their other upstreams."""
    jobs = tuple(j for j in _downstream(new, after) if j not in facts.jobs)
    if jobs:
        return Reads(jobs=jobs, graph=True)
    upstreams = tuple(k for k in _upstreams(new, after, facts) if k not in facts.upstreams)
    return Reads(upstreams=upstreams) if upstreams else None


# -- the commit ------------------------------------------------------------------------


def ending(decision: Decision[V], job_id: str, job: Job | None, facts: Facts,
           now: datetime, settings: Settings, *, release_next: bool = True,
           run_version: datetime | None = None, what: str = "run") -> Commit[V]:
    """The whole commit of a lifecycle decision: the run, the job's fields, the datasets
    it changes, the lane it frees and that lane's next run, the runs its success
    triggers, and the tasks to send. `release_next=False`: the lane is counted, its next
    slot waits (a switched-off kind's lane waits for the switch)."""
    before = _before(decision, facts)
    after = _after(decision, before)
    lane = _settled(decision, facts.lane, now)
    next_run = None
    if lane is not None and release_next:
        released = bf.release(lane, job, facts.runs, now, settings)
        lane, next_run = released.lane, released.run
    fired, fields = _triggered(decision, facts, now, settings)
    new = ([next_run] if next_run is not None else []) + fired
    own = () if decision.send is None or decision.run is None else (
        Task(decision.run.id, decision.send, decision.run.job_id, what),)
    return Commit(
        verdict=decision.verdict, detail=decision.detail, run=decision.run,
        run_version=run_version, job_id=job_id, job_fields=decision.job_fields,
        datasets=tuple(d for k, d in after.items() if differs(before[k], d)),
        lanes=(lane,) if lane is not None else (), runs=tuple(new), jobs=fields,
        tasks=own + tuple(new_run_task(r) for r in new))


def _triggered(decision: Decision, facts: Facts, now: datetime, settings: Settings
               ) -> tuple[list[Run], dict[str, dict]]:
    new, after = _advanced(decision, facts)
    run = decision.run
    return _fire(new, after, facts, now, settings,
                 depth=run.trigger_depth + 1 if run is not None else 1,
                 upstream=run.id if run is not None else None)


def _fire(new: Mapping[str, str], after: Mapping[str, Dataset], facts: Facts,
          now: datetime, settings: Settings, *, depth: int, upstream: str | None
          ) -> tuple[list[Run], dict[str, dict]]:
    """The runs the datasets that advanced (`new`: their new versions) trigger, and
    the downstream jobs' fields; `depth`: the new runs' chain depth."""
    if not new:
        return [], {}  # nothing got newer (an old slot's backfill): nothing downstream runs
    versions: dict[str, str | None] = {k: d.last_success_run_id for k, d in after.items()}
    for key, dataset in facts.upstreams.items():
        versions.setdefault(key, None if dataset is None else dataset.last_success_run_id)
    runs, fields = [], {}
    limit = triggers.depth_limit(facts.graph_jobs)
    for job_id in triggers.downstream_of(after, new):
        job = facts.jobs.get(job_id)
        fire = triggers.decide_trigger(job, new, versions, now, depth=depth,
                                       limit=limit, upstream_run_id=upstream)
        if fire is None:
            continue
        fields[job_id] = fire.job_fields
        if fire.refused is None:  # past the bound: recorded on the job, not created
            runs.append(new_run(job, fire.run_id, now, source=TriggerSource.UPSTREAM,
                                now=now, settings=settings, upstream_versions=fire.versions,
                                trigger_depth=fire.depth))
    return runs, fields


def released(lane: Lane, run: Run | None) -> Commit:
    """An idle lane given its next run (recovery's sweep, a new backfill's first
    release): the lane, the run and its task."""
    return Commit(verdict=None, lanes=(lane,),
                  runs=(run,) if run is not None else (),
                  tasks=(new_run_task(run),) if run is not None else ())


def cancelling(backfill: Backfill | None, lanes: list[Lane | None],
               current: Mapping[str, Run | None], now: datetime, who: str | None = None
               ) -> Commit:
    """A backfill cancelled: its queued runs end cancelled (counted on their lanes), and
    so do waiting ones (their next poll cancels the work on its engine); running ones
    finish, every lane stops, the backfill is marked. `current`: each
    lane's run in flight, by id, as read. A backfill no longer active is left as it is
    (`detail` says so)."""
    if backfill is None or backfill.status != BackfillStatus.ACTIVE:
        return Commit(verdict=None, detail="not active")
    reason = f"backfill {backfill.id} was cancelled" + (f" by {who}" if who else "")
    ended, stopped = [], []
    for lane in (x for x in lanes if x is not None):
        run = current.get(lane.current_run_id) if lane.current_run_id else None
        if run is not None and run.status in (RunStatus.QUEUED, RunStatus.RETRYING,
                                              RunStatus.WAITING):
            run = cancelled(run, now, reason)
            ended.append(run)
            lane = bf.settled(lane, run, now)
        stopped.append(bf.stopped(lane, now))
    done = replace(backfill, status=BackfillStatus.CANCELLED, cancelled_at=now,
                   updated_at=now)
    return Commit(verdict=None, detail="cancelled", updated_runs=tuple(ended),
                  lanes=tuple(stopped), backfills=(done,))


def finishing(backfill: Backfill | None, now: datetime) -> Commit:
    """An active backfill whose lanes all finished is done."""
    if backfill is None or backfill.status != BackfillStatus.ACTIVE:
        return Commit(verdict=None)
    return Commit(verdict=None, detail="done", backfills=(replace(
        backfill, status=BackfillStatus.DONE, finished_at=now, updated_at=now),))


def folding(dataset: Dataset | None, key: str, slot: datetime, run_id: str) -> Commit:
    """A backfill's newest succeeded slot recorded on one of its job's datasets, as of
    that slot (core.bookkeeping's rule for past slots: never fresher, never backwards);
    nothing when that changes nothing."""
    before = dataset or Dataset(key=key)
    after = apply_success(before, run_id, slot, slot=slot, past=True)
    return Commit(verdict=None, datasets=(after,) if differs(before, after) else ())


# -- an observed dataset's change (freshet.core.observe) ------------------------------


def _observed(key: str, observation: Observation, facts: Facts, now: datetime
              ) -> tuple[dict[str, str], dict[str, Dataset], Dataset]:
    """(the version the observation advanced, the dataset after it, before it)."""
    before = facts.datasets.get(key) or Dataset(key=key)
    after = apply_observation(before, observation, now)
    moved = (after.data_as_of is not None
             and after.last_success_run_id != before.last_success_run_id)
    return ({key: after.last_success_run_id} if moved else {}), {key: after}, before


def observed_reads(key: str, observation: Observation, facts: Facts | None,
                   now: datetime) -> Reads | None:
    """What an observation's commit reads next: the dataset, then (when its data time
    moved) the jobs it triggers and their other upstreams, as a run's ending does."""
    if facts is None:
        return Reads(datasets=(key,), observed=True)
    new, after, _ = _observed(key, observation, facts, now)
    return _trigger_reads(new, after, facts)


def observing(key: str, observation: Observation, facts: Facts, now: datetime,
              settings: Settings) -> Commit:
    """The whole commit of one observation: the dataset when it changes, and the runs
    its new data time triggers (the same decision as a produced dataset's success: an
    observation starts a chain, so its runs are at depth 1)."""
    new, after, before = _observed(key, observation, facts, now)
    fired, fields = _fire(new, after, facts, now, settings, depth=1, upstream=None)
    return Commit(verdict=None, detail="observed",
                  datasets=(after[key],) if differs(before, after[key]) else (),
                  runs=tuple(fired), jobs=fields,
                  tasks=tuple(new_run_task(r) for r in fired))
