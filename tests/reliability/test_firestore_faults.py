"""The Firestore emulator paused or killed while the loop works.

Each test starts its OWN emulator (the session one is shared by every other test).

- Paused (SIGSTOP/SIGCONT): an outage without data loss. Calls in flight simply wait;
  the loop carries on when Firestore answers again.
- Killed and restarted on the same port: the emulator keeps data in memory only, so
  a restart would lose everything real Firestore keeps. We stand in for durable
  storage by dumping the database at the moment of the kill (everything committed
  so far) and loading it back into the new emulator. What this can show: the
  process's client reconnects to the restarted server by itself; work in flight
  commits afterwards; nothing runs twice and nothing is lost. What it cannot show:
  a write that was in flight at the instant of the kill (the dump is taken between
  two calls), or the error path of a long outage — Google's client retries
  UNAVAILABLE for up to 300 s (measured: a get against a dead emulator raised
  RetryError after 279 s), so an outage shorter than that is absorbed and a longer
  one surfaces as an exception, which control_entry maps to a 500 (tested with a
  failing step in test_fuzz_http) and Cloud Scheduler / Cloud Tasks retry.
"""

import threading

import pytest
from google.cloud import firestore

from freshet.gcp.store import Store
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet_local.emulators import start_firestore
from freshet_local.functions_host import free_port
from tests.loop.helpers import T0, add_job
from tests.reliability import syncs
from tests.reliability.harness import CloudTasks, dump, in_process, restore, settle
from tests.reliability.invariants import check

pytestmark = pytest.mark.slow  # each test restarts or pauses its own emulator

PAUSE_S = 2.0


class OwnFirestore:
    def __init__(self, monkeypatch):
        self.port = free_port()
        self.emu = start_firestore(port=self.port)
        for key, value in self.emu.env().items():
            monkeypatch.setenv(key, value)
        self.db = firestore.Client(project=self.emu.project)
        self.restarts = 0

    def pause(self, seconds: float = PAUSE_S) -> None:
        """SIGSTOP the emulator's Java process now, SIGCONT it in `seconds` (from a timer:
        the caller goes on)."""
        self.emu.pause()
        threading.Timer(seconds, self.emu.resume).start()

    def kill_and_restart(self) -> None:
        """SIGKILL, start again on the same port, load back what had been committed."""
        committed = dump(firestore.Client(project=self.emu.project))
        self.emu.kill()
        self.emu = start_firestore(port=self.port)
        restore(firestore.Client(project=self.emu.project), committed)
        self.restarts += 1

    def stop(self) -> None:
        self.emu.stop()


@pytest.fixture
def own(monkeypatch):
    fs = OwnFirestore(monkeypatch)
    yield fs
    fs.stop()


class FaultAfterFirstEnqueue(CloudTasks):
    def __init__(self, settings, fault):
        super().__init__(settings)
        self.fault = fault

    def enqueue(self, run_id, attempt, **kw):
        name = super().enqueue(run_id, attempt, **kw)
        if self.fault is not None:
            fault, self.fault = self.fault, None
            fault()
        return name


def seed(store, tmp_path, count=8, **params):
    log = tmp_path / "exec.log"
    for i in range(count):
        add_job(store, f"j{i}", kind="rel_probe", cron="* * * * *", next_run_at=T0,
                produces=(f"ds.j{i}",), params={"log": str(log), **params})
    return log


def test_a_pause_mid_tick_with_a_second_tick_waiting_creates_each_run_once(
        own, settings, tmp_path):
    store = Store(own.db)
    log = seed(store, tmp_path)
    second = []

    def pause_and_retick():
        own.pause()
        # Cloud Scheduler's retry of the slow tick arrives during the outage.
        thread = threading.Thread(target=lambda: second.append(
            tick_once(Store(own.db), queue, now=T0, settings=settings)))
        thread.start()
        second.append(thread)

    queue = FaultAfterFirstEnqueue(settings, pause_and_retick)
    first = tick_once(store, queue, now=T0, settings=settings)
    second[0].join(60)
    created = len(first.created) + len(second[1].created)
    assert created == 8
    settle(store, queue, settings, in_process(store, queue, settings), T0)
    check(own.db, slots={f"j{i}": [T0] for i in range(8)}, executions=syncs.executions(log))


def test_a_pause_mid_run_delays_the_finish_without_losing_it(own, settings, tmp_path):
    store = Store(own.db)
    syncs.HOOKS["pause"] = lambda ctx: own.pause()
    log = seed(store, tmp_path, count=1, hook="pause")
    queue = CloudTasks(settings)
    (run_id,) = tick_once(store, queue, now=T0, settings=settings).created
    outcome = handle_one(store, queue, run_id, 1, now=T0, settings=settings)
    assert outcome.state == "succeeded"
    check(own.db, executions=syncs.executions(log))


def test_a_kill_between_claim_and_finish_then_restart_finishes_the_run_once(
        own, settings, tmp_path):
    store = Store(own.db)
    syncs.HOOKS["kill"] = lambda ctx: own.kill_and_restart()
    log = seed(store, tmp_path, count=1, hook="kill")
    queue = CloudTasks(settings)
    (run_id,) = tick_once(store, queue, now=T0, settings=settings).created
    # The same client object, across the restart: it reconnects by itself.
    outcome = handle_one(store, queue, run_id, 1, now=T0, settings=settings)
    assert (outcome.state, own.restarts) == ("succeeded", 1)
    settle(store, queue, settings, in_process(store, queue, settings), T0)
    check(own.db, slots={"j0": [T0]}, executions=syncs.executions(log))
    assert syncs.executions(log) == [(run_id, 1)]


def test_a_kill_mid_tick_then_restart_leaves_the_rest_to_the_next_tick(
        own, settings, tmp_path):
    store = Store(own.db)
    log = seed(store, tmp_path)
    queue = FaultAfterFirstEnqueue(settings, own.kill_and_restart)
    first = tick_once(store, queue, now=T0, settings=settings)
    # Reloaded documents have new update times, so the rest of this tick's
    # compare-and-sets are refused; each job is read again and, its next_run_at being
    # unchanged (no other tick claimed the slot), claimed again.
    assert len(first.created) == 8 and first.lost_race == 0
    second = tick_once(store, queue, now=T0, settings=settings)
    assert len(second.created) == 0
    settle(store, queue, settings, in_process(store, queue, settings), T0)
    check(own.db, slots={f"j{i}": [T0] for i in range(8)}, executions=syncs.executions(log))
