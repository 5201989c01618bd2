"""One checker for every fault-injection test, the soak and the bench.

It reads every job, run and dataset and asserts what Freshet promises users:
  - every due slot has exactly one run (and each expected slot has one);
  - nothing is queued forever: an unfinished run always has a lease (recovery's
    index), and once the test has driven time past the recovery window every run
    is terminal;
  - no sync attempt ran twice (when the test recorded executions);
  - each dataset's freshness agrees with its run history: last success = the newest
    succeeded run producing it, last failure = the newest failure event (a failed
    run or an attempt recovery marked stuck) unless a newer success superseded it,
    `failing` exactly when the newest outcome is a failure, `running` only while a
    run producing it is in progress, last start = the newest attempt start (both as
    shown: the loop marks a start on the job, core.bookkeeping.with_running). Runs for
    past slots (backfills, catch-up) count as of their slot, an outcome for a slot
    older than a slot that succeeded changes nothing, and they never mark a start; a
    backfill's failures are its own, and its successes reach the dataset when recovery's
    sweep folds them in (call it before checking);
  - each job's last_run_* fields describe a finished run of that job.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from freshet.core.bookkeeping import with_running
from freshet.core.models import Dataset, Job, Run
from freshet.gcp.grouped import listed
from freshet.gcp.store import DATASETS, JOBS, RUNS


@dataclass
class World:
    jobs: dict[str, Job]
    runs: dict[str, Run]
    datasets: dict[str, Dataset]


def load(db) -> World:
    """Every job, run and dataset document (plain streams: no index needed)."""
    def stream(name):
        return [snap.to_dict() for snap in db.collection(name).stream()]

    return World(
        jobs={d["id"]: Job.from_doc(d) for d in stream(JOBS)},
        runs={d["id"]: Run.from_doc(d) for d in stream(RUNS)},
        datasets={d.key: d for d in listed(stream(DATASETS))},
    )


class InvariantError(AssertionError):
    pass


def check(db, *, settled: bool = True,
          slots: Mapping[str, Iterable[datetime]] | None = None,
          executions: Iterable[tuple[str, int]] | None = None) -> World:
    """Assert every invariant; `settled` says time was driven past the recovery window.

    `slots`: {job_id: slots that were due} — each must have exactly one run.
    `executions`: (run_id, attempt) for every time a sync body started.
    Returns what it read, for further assertions. Raises InvariantError listing all
    violations at once."""
    world = load(db)
    problems: list[str] = []
    problems += _one_run_per_slot(world, slots)
    problems += _nothing_queued_forever(world, settled)
    if executions is not None:
        problems += _each_attempt_once(world, list(executions))
    problems += _datasets_agree(world, settled)
    problems += _jobs_agree(world)
    if problems:
        shown = "\n  ".join(problems[:40])
        raise InvariantError(f"{len(problems)} invariant violation(s):\n  {shown}")
    return world


def _one_run_per_slot(world: World, slots) -> list[str]:
    problems = []
    # the tick's runs and catch-up runs are the schedule's; a backfill may run a slot again
    per_slot = Counter((r.job_id, r.scheduled_for) for r in world.runs.values()
                       if r.trigger_source in ("schedule", "catchup"))
    problems += [f"slot {job} @ {slot:%H:%M:%S}: {n} runs" for (job, slot), n in per_slot.items()
                 if n > 1]
    for job_id, wanted in (slots or {}).items():
        for slot in wanted:
            if per_slot.get((job_id, slot), 0) != 1:
                problems.append(f"slot {job_id} @ {slot.isoformat()}: "
                                f"{per_slot.get((job_id, slot), 0)} runs, expected 1")
    return problems


def _nothing_queued_forever(world: World, settled: bool) -> list[str]:
    problems = []
    for run in world.runs.values():
        if run.terminal and run.lease_expires_at is not None:
            problems.append(f"run {run.id}: {run.status} but still leased")
        if not run.terminal and run.lease_expires_at is None:
            problems.append(f"run {run.id}: {run.status} with no lease (recovery never sees it)")
        if settled and not run.terminal:
            problems.append(f"run {run.id}: still {run.status} after the recovery window")
    return problems


def _each_attempt_once(world: World, executions: list[tuple[str, int]]) -> list[str]:
    counts = Counter(executions)
    problems = [f"run {run_id} attempt {attempt}: sync ran {n} times"
                for (run_id, attempt), n in counts.items() if n > 1]
    executed = {run_id for run_id, _ in counts}
    problems += [f"run {r.id}: succeeded without its sync running" for r in world.runs.values()
                 if r.status == "succeeded" and r.kind != "noop" and r.id not in executed]
    return problems


PAST = ("catchup", "backfill")  # runs for past slots


def _newest_success(runs: list[Run]) -> tuple[datetime, str] | None:
    """The success the dataset should show, folding successes in commit order: a past
    slot's counts as of its slot, and not at all when a newer slot succeeded first."""
    shown, newest_slot = None, None
    for run in sorted(runs, key=lambda r: r.finished_at):
        past = run.trigger_source in PAST
        if past and newest_slot is not None and run.scheduled_for < newest_slot:
            continue
        at = min(run.scheduled_for, run.finished_at) if past else run.finished_at
        if shown is None or at >= shown[0]:
            shown = (at, run.id)
        newest_slot = max(filter(None, (newest_slot, run.scheduled_for)))
    return shown


def _events(world: World):
    starts, successes, failures = defaultdict(list), defaultdict(list), defaultdict(list)
    running, succeeded = set(), defaultdict(list)
    for run in world.runs.values():
        for key in run.produces:
            if run.status == "succeeded":
                succeeded[key].append(run)
    newest_slot = {k: max(r.scheduled_for for r in v) for k, v in succeeded.items()}
    for run in world.runs.values():
        past = run.trigger_source in PAST
        for key in run.produces:
            if past and key in newest_slot and run.scheduled_for < newest_slot[key]:
                continue  # history: it changed nothing the dataset shows
            if run.trigger_source == "backfill":
                continue  # its outcome is on its backfill; successes are folded in later
            if not past:
                starts[key] += [a.started_at for a in run.attempts if a.started_at]
                if not run.terminal and run.attempts:
                    running.add(key)  # running, or retrying: a refresh is in progress
            if run.status == "failed":
                failures[key].append(run.finished_at)
            failures[key] += [a.finished_at for a in run.attempts
                              if a.outcome == "stuck" and a.finished_at]
    for key, runs in succeeded.items():
        shown = _newest_success(runs)
        if shown is not None:
            successes[key].append(shown)
    return starts, successes, failures, running


def _datasets_agree(world: World, settled: bool) -> list[str]:
    starts, successes, failures, running = _events(world)
    shown = {d.key: d for d in with_running(world.datasets.values(), world.jobs.values())}
    problems = []
    for key in set(shown) | set(starts):
        ds = shown.get(key) or Dataset(key=key)
        say = problems.append
        newest_success = max(successes[key], default=None)
        newest_failure = max(failures[key], default=None)
        if newest_success is None:
            if ds.last_success_at is not None:
                say(f"dataset {key}: success at {ds.last_success_at} but no run succeeded")
        elif ds.last_success_at != newest_success[0]:
            say(f"dataset {key}: last_success_at {ds.last_success_at}, newest succeeded run "
                f"{newest_success[1]} finished {newest_success[0]}")
        if ds.last_failure_at is not None and ds.last_failure_at not in failures[key]:
            say(f"dataset {key}: last_failure_at {ds.last_failure_at} matches no failure")
        newest_is_failure = newest_failure is not None and (
            newest_success is None or newest_failure > newest_success[0])
        if newest_is_failure and ds.last_failure_at != newest_failure:
            say(f"dataset {key}: last_failure_at {ds.last_failure_at}, newest failure "
                f"{newest_failure}")
        if ds.failing != newest_is_failure:
            say(f"dataset {key}: failing={ds.failing} but the newest outcome is "
                f"{'a failure' if newest_is_failure else 'a success'}")
        if (ds.consecutive_failures > 0) != ds.failing:
            say(f"dataset {key}: consecutive_failures={ds.consecutive_failures} "
                f"with failing={ds.failing}")
        if starts[key] and ds.last_started_at != max(starts[key]):
            say(f"dataset {key}: last_started_at {ds.last_started_at}, newest attempt start "
                f"{max(starts[key])}")
        if ds.running and key not in running:
            say(f"dataset {key}: says a sync is running, but no run producing it is "
                f"(last start {ds.last_started_at}, last finish "
                f"{max(t for t in (ds.last_success_at, ds.last_failure_at) if t)})")
    return problems


def _jobs_agree(world: World) -> list[str]:
    problems = []
    for job in world.jobs.values():
        if job.last_run_id is None or job.last_run_status == "skipped":
            continue
        run = world.runs.get(job.last_run_id)
        if run is None or run.job_id != job.id:
            problems.append(f"job {job.id}: last_run_id {job.last_run_id} is not its run")
        elif run.status != job.last_run_status:
            problems.append(f"job {job.id}: last_run_status {job.last_run_status}, "
                            f"its run {run.id} is {run.status}")
    return problems
