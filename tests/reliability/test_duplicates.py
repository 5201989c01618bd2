"""Duplicates from the platform, through the real HTTP entry points: Cloud Scheduler
delivering one tick twice (at once, and one after the other), and Cloud Tasks
delivering one task twice at once. Ticks enqueue into gcloud-tasks-emulator, which
delivers to run_task served by functions-framework."""

import time
from datetime import timedelta

import pytest
import requests

from freshet.core.settings import load_settings
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from freshet.gcp.tasks import QueueSpec, TaskQueue
from freshet.loop.tick import tick_once
from freshet_local.functions_host import serve
from tests.loop.helpers import add_job
from tests.reliability import syncs
from tests.reliability.conftest import served_env
from tests.reliability.harness import concurrently, unfinished
from tests.reliability.invariants import check

JOBS = 12


@pytest.fixture(scope="module")
def stack(firestore_emulator, tasks_emulator, tmp_path_factory):
    """run_task (4 threads: concurrent deliveries really overlap) and scheduler_tick
    (lookahead 0, so a repeated tick has nothing new to claim)."""
    logs = tmp_path_factory.mktemp("dup")
    queue_name = "reliability-dup"
    run_task = serve("run_task", env=served_env(firestore_emulator, THREADS="4"),
                     log_path=logs / "run_task.log")
    env = served_env(firestore_emulator, FRESHET_TASKS_EMULATOR_HOST=tasks_emulator.address,
                     FRESHET_QUEUE=queue_name, FRESHET_RUN_TASK_URL=run_task.url,
                     FRESHET_LOOKAHEAD_S="0")
    settings = load_settings(env)
    TaskQueue(settings).create_or_update_queue(QueueSpec(queue_name))
    tick = serve("scheduler_tick", env=env, log_path=logs / "tick.log")
    yield tick, run_task, settings
    tick.stop()
    run_task.stop()


def seed(store, tmp_path, now, **params):
    log = tmp_path / "exec.log"
    slot = now.replace(second=0, microsecond=0)
    for i in range(JOBS):
        add_job(store, f"j{i:02d}", kind="rel_probe", cron="* * * * *", next_run_at=slot,
                produces=(f"ds.j{i:02d}",), params={"log": str(log), **params})
    return log


def wait_settled(store, timeout=60.0):
    deadline = time.monotonic() + timeout
    while unfinished(store):
        assert time.monotonic() < deadline, f"unfinished: {unfinished(store)}"
        time.sleep(0.2)


def post(served, **kw):
    return requests.post(served.url, json=kw.pop("json", {}), timeout=60, **kw)


def test_a_tick_delivered_twice_at_once_creates_each_run_once(db, stack, tmp_path):
    tick, _, _ = stack
    store = Store(db)
    log = seed(store, tmp_path, utcnow())
    answers = concurrently(lambda: post(tick), lambda: post(tick))
    assert [a.status_code for a in answers] == [200, 200]
    assert sum(a.json()["created"] for a in answers) == JOBS
    wait_settled(store)
    world = check(db, executions=syncs.executions(log))
    assert len(world.runs) == JOBS and all(r.status == "succeeded" for r in world.runs.values())


def test_a_tick_delivered_twice_in_a_row_creates_nothing_the_second_time(db, stack, tmp_path):
    tick, _, _ = stack
    store = Store(db)
    log = seed(store, tmp_path, utcnow())
    first, second = post(tick), post(tick)
    assert (first.json()["created"], second.json()["created"]) == (JOBS, 0)
    wait_settled(store)
    world = check(db, executions=syncs.executions(log))
    assert len(world.runs) == JOBS


def test_the_same_task_delivered_twice_at_once_runs_the_sync_once(db, stack, tmp_path):
    _, run_task, settings = stack
    store = Store(db)
    now = utcnow()
    log = tmp_path / "exec.log"
    add_job(store, "twice", kind="rel_probe", cron="* * * * *", next_run_at=now,
            produces=("ds.twice",), params={"log": str(log), "sleep": 1.0})
    from tests.reliability.harness import CloudTasks

    (run_id,) = tick_once(store, CloudTasks(settings), now=now, settings=settings).created
    body = {"run_id": run_id, "attempt": 1}
    answers = concurrently(lambda: post(run_task, json=body), lambda: post(run_task, json=body))
    states = sorted(a.json()["state"] for a in answers)
    assert [a.status_code for a in answers] == [200, 200]
    assert states == ["noop", "succeeded"]
    assert syncs.executions(log) == [(run_id, 1)]
    world = check(db, executions=syncs.executions(log))
    assert world.datasets["ds.twice"].last_success_at > now - timedelta(seconds=1)
