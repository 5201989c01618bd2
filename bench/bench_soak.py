"""Soak: many one-minute jobs, syncs failing and hanging at random, time compressed.

    python bench/bench_soak.py [--jobs 500] [--minutes 10]

How it runs. The Firestore emulator is real (our own, or $FIRESTORE_EMULATOR_HOST,
which is wiped). Time is simulated: the driver calls tick_once and sweep_once with
`now` = each simulated minute, and delivers the tasks they create in-process with
handle_one at that `now` — gcloud-tasks-emulator delivers one task at a time per
queue and ignores its retry config, which would make 5,000 runs over HTTP take many
minutes; the HTTP path is covered by tests/loop/test_e2e.py and the reliability tests.
The delivery side behaves like Cloud Tasks: at least once (2 % of tasks are delivered
twice at the same moment), a 5xx is retried with the retry count + 1, and a task
scheduled in the future waits for its time. Six deliveries run at once.

Syncs are freshet_local.demo_syncs' `demo_chaos`: 10 % fail (transient), 1 % hang.
The soak draws each attempt's fate itself (seeded, so a run is reproducible) and
passes it to demo_chaos as a rate of 0 or 1; a hanging attempt sleeps for an hour in
a daemon thread, as a function the platform has not killed yet, and recovery must
take the run over once its lease has expired in simulated time.

After the last minute, simulated time jumps past every lease and every scheduled
retry, with a recovery sweep each time, until every run has finished.

Reported: soak_started (runs), soak_succeeded, soak_failed, soak_retried (runs that
needed more than one attempt), soak_recovered (runs recovery took over from a hung
attempt), soak_duplicated (a slot with two runs, or one attempt's sync run twice:
must be 0; split into soak_duplicate_slots and soak_attempts_run_twice), soak_lost
(a due slot without a run, or a run never finished: must be 0),
soak_invariant_violations (tests/reliability/invariants.py on every job, run and
dataset, attempts aside: must be 0), soak_wall_s.
"""

import logging
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when
# imported as bench.<module> (the tests do)
import common  # noqa: E402  (import paths, emulators)

from freshet.core.models import Run, new_job  # noqa: E402
from freshet.core.settings import Settings, load_settings  # noqa: E402
from freshet.gcp.store import RUNS, Store  # noqa: E402
from freshet.gcp.tasks import TaskQueue  # noqa: E402
from freshet.loop import registry  # noqa: E402
from freshet.loop.recover import sweep_once  # noqa: E402
from freshet.loop.run import handle_one  # noqa: E402
from freshet.loop.tick import tick_once  # noqa: E402
from freshet_local import demo_syncs  # noqa: E402

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
KIND = "soak_chaos"


@dataclass
class Task:
    run_id: str
    attempt: int
    retries: int
    at: datetime | None  # schedule_time


class SoakQueue(TaskQueue):
    """Freshet's queue adapter with Cloud Tasks replaced by an in-memory list."""

    def __init__(self, settings: Settings):
        super().__init__(settings, client=object())
        self.cv = threading.Condition()
        self.pending: list[Task] = []

    def enqueue(self, run_id, attempt, *, dispatch=0, schedule_time=None, queue=None,
                job_id=None):
        self.put(Task(run_id, attempt, 0, schedule_time))
        return run_id

    def put(self, task: Task) -> None:
        with self.cv:
            self.pending.append(task)
            self.cv.notify_all()

    def take_due(self, now: datetime) -> list[Task]:
        due = [t for t in self.pending if t.at is None or t.at <= now]
        self.pending = [t for t in self.pending if not (t.at is None or t.at <= now)]
        return due

    def next_time(self) -> datetime | None:
        with self.cv:
            return min((t.at for t in self.pending if t.at is not None), default=None)


class Chaos:
    """The soak's sync: records each execution, draws its fate, runs demo_chaos."""

    def __init__(self, seed: int, hang_s: float):
        self.rng = random.Random(seed)
        self.hang_s = hang_s
        self.lock = threading.Lock()
        self.executions: list[tuple[str, int]] = []
        self.hangs = 0
        self.local = threading.local()

    def __call__(self, ctx: registry.SyncContext):
        fail, hang = float(ctx.params["fail_rate"]), float(ctx.params["hang_rate"])
        with self.lock:
            self.executions.append((ctx.run_id, ctx.attempt))
            roll = self.rng.random()
        fate = {"fail_rate": 0.0, "hang_rate": 0.0}
        if roll < hang:
            fate.update(hang_rate=1.0, hang_seconds=self.hang_s)
            with self.lock:
                self.hangs += 1
            self.local.on_hang()  # this delivery no longer counts as in flight
        elif roll < hang + fail:
            fate.update(fail_rate=1.0)
        return demo_syncs.chaos(replace(ctx, params={**ctx.params, **fate}))


class Driver:
    def __init__(self, store: Store, settings: Settings, chaos: Chaos, *, workers: int,
                 dup_rate: float, seed: int):
        self.store, self.settings, self.chaos = store, settings, chaos
        self.queue = SoakQueue(settings)
        self.slots = threading.Semaphore(workers)
        self.inflight = 0
        self.dup_rate = dup_rate
        self.rng = random.Random(seed + 1)
        self.outcomes: Counter = Counter()

    def pump(self, now: datetime) -> None:
        """Deliver every task due at `now` (and their retries) until none is in flight."""
        while True:
            with self.queue.cv:
                due = self.queue.take_due(now)
                if not due and self.inflight == 0:
                    return
                if not due:
                    self.queue.cv.wait(0.5)
                    continue
                copies = [t for t in due if self.rng.random() < self.dup_rate]
                self.inflight += len(due) + len(copies)
            for task in due + copies:
                self.slots.acquire()
                threading.Thread(target=self._deliver, args=(task, now), daemon=True).start()

    def _deliver(self, task: Task, now: datetime) -> None:
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                self.slots.release()
                with self.queue.cv:
                    self.inflight -= 1
                    self.queue.cv.notify_all()

        self.chaos.local.on_hang = release
        try:
            outcome = handle_one(self.store, self.queue, task.run_id, task.attempt + task.retries,
                                 now=now, settings=self.settings, clock=lambda: now)
            self.outcomes[outcome.state] += 1
            if outcome.status >= 500:  # Cloud Tasks retries the same task
                self.queue.put(replace(task, retries=task.retries + 1, at=None))
        finally:
            release()


def seed_jobs(store: Store, jobs: int, fail_rate: float, hang_rate: float) -> list[str]:
    ids = [f"soak-{i:04d}" for i in range(jobs)]

    def docs():
        for job_id in ids:
            job = new_job(id=job_id, kind=KIND, schedule={"cron": "* * * * *"},
                          produces=[f"soak.{job_id}"],
                          params={"fail_rate": fail_rate, "hang_rate": hang_rate})
            job.next_run_at, job.created_at, job.updated_at = T0, T0 - MIN, T0 - MIN
            yield job_id, job.to_doc()

    store.put_many("jobs", docs())
    return ids


def unfinished(store: Store) -> list[Run]:
    return [Run.from_doc(s.to_dict()) for s in store.db.collection(RUNS).stream()
            if s.get("status") not in ("succeeded", "failed")]


def soak(db, *, jobs: int = 500, minutes: int = 10, fail_rate: float = 0.10,
         hang_rate: float = 0.01, workers: int = 6, dup_rate: float = 0.02, seed: int = 7,
         hang_s: float = 3600.0, max_rounds: int = 200) -> dict:
    from tests.reliability.invariants import InvariantError, check

    started = time.perf_counter()
    quiet = logging.getLogger("freshet")
    level, quiet.level = quiet.level, logging.CRITICAL  # expected failures, by the thousand
    store = Store(db)
    settings = load_settings({}, auth_mode="local", lookahead_s=0)
    chaos = Chaos(seed, hang_s)
    registry.unregister(KIND)
    registry.sync(KIND)(chaos)
    try:
        ids = seed_jobs(store, jobs, fail_rate, hang_rate)
        driver = Driver(store, settings, chaos, workers=workers, dup_rate=dup_rate, seed=seed)
        now = T0
        for minute in range(minutes):
            now = T0 + minute * MIN
            tick_once(store, driver.queue, now=now, settings=settings, budget_s=1e9)
            driver.pump(now)
            sweep_once(store, driver.queue, now=now, settings=settings)
            driver.pump(now)
        phase_s = time.perf_counter() - started
        # Stop ticking; let time run until every run has finished.
        rounds = 0
        while rounds < max_rounds:
            rounds += 1
            open_runs = unfinished(store)
            if not open_runs:
                break
            # Jump to the next moment something can happen: a hung attempt's lease
            # running out (runs waiting behind it only defer until then), else the
            # next scheduled task or lease.
            hung = [r.lease_expires_at for r in open_runs if r.status == "running"]
            leases = [r.lease_expires_at for r in open_runs if r.lease_expires_at]
            candidates = hung or [t for t in (driver.queue.next_time(),
                                              min(leases, default=None)) if t is not None]
            now = max(now, min(candidates)) + timedelta(seconds=1)
            sweep_once(store, driver.queue, now=now, settings=settings)
            driver.pump(now)
        runs = [Run.from_doc(s.to_dict()) for s in store.db.collection(RUNS).stream()]
        try:
            # Attempts run twice are counted below (soak_attempts_run_twice), not here.
            check(db)
            violations = 0
        except InvariantError as exc:
            print(exc, file=sys.stderr)
            violations = int(str(exc).split(" ", 1)[0])
    finally:
        registry.unregister(KIND)
        quiet.setLevel(level)
    due = {(job_id, T0 + m * MIN) for job_id in ids for m in range(minutes)}
    per_slot = Counter((r.job_id, r.scheduled_for) for r in runs)
    twice = sum(1 for n in Counter(chaos.executions).values() if n > 1)
    return {
        "soak_jobs": jobs,
        "soak_minutes": minutes,
        "soak_started": len(runs),
        "soak_succeeded": sum(r.status == "succeeded" for r in runs),
        "soak_failed": sum(r.status == "failed" for r in runs),
        "soak_retried": sum(r.attempt_number > 1 for r in runs),
        "soak_recovered": sum(r.stuck for r in runs),
        "soak_hung_attempts": chaos.hangs,
        "soak_duplicate_deliveries": driver.outcomes["noop"],
        "soak_overlap_deferrals": driver.outcomes["deferred"],
        "soak_duplicated": sum(n - 1 for n in per_slot.values() if n > 1) + twice,
        "soak_duplicate_slots": sum(n - 1 for n in per_slot.values() if n > 1),
        "soak_attempts_run_twice": twice,
        "soak_lost": len(due - set(per_slot)) + sum(not r.terminal for r in runs),
        "soak_invariant_violations": violations,
        "soak_final_rounds": rounds,
        "soak_minutes_phase_s": round(phase_s, 1),
        "soak_wall_s": round(time.perf_counter() - started, 1),
    }


def run(jobs: int = 500, minutes: int = 10) -> dict:
    with common.firestore() as (_emu, db):
        return soak(db, jobs=jobs, minutes=minutes)


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--minutes", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(run(args.jobs, args.minutes), indent=2))
