"""The Cloud Tasks emulator is down while the tick enqueues: the runs stay queued with a
lease, nothing is lost, and recovery sends them once the queue is back."""

import time
from datetime import timedelta

from freshet.core.settings import load_settings
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from freshet.gcp.tasks import TaskQueue
from freshet.loop.recover import sweep_once
from freshet.loop.tick import tick_once
from freshet_local.emulators import start_tasks
from freshet_local.functions_host import free_port
from tests.loop.helpers import add_job
from tests.reliability import syncs
from tests.reliability.harness import unfinished
from tests.reliability.invariants import check

QUEUE = "reliability-down"


def test_runs_enqueued_while_the_task_emulator_is_down_are_sent_by_recovery(
        db, served_run_task, tmp_path):
    port = free_port()
    settings = load_settings({}, auth_mode="local", lookahead_s=0, queue=QUEUE,
                             tasks_emulator_host=f"127.0.0.1:{port}",
                             run_task_url=served_run_task.url, queued_grace_s=600)
    store = Store(db)
    now = utcnow().replace(microsecond=0)
    log = tmp_path / "exec.log"
    for i in range(5):
        add_job(store, f"d{i}", kind="rel_probe", cron="* * * * *", next_run_at=now,
                produces=(f"ds.d{i}",), params={"log": str(log)})
    queue = TaskQueue(settings)  # nothing listens on `port` yet
    started = time.monotonic()
    result = tick_once(store, queue, now=now, settings=settings)
    print(f"tick with the queue down took {time.monotonic() - started:.1f} s")
    assert len(result.created) == 5 and sorted(result.enqueue_failed) == sorted(result.created)
    assert time.monotonic() - started < 30  # a dead queue fails fast, it does not stall
    assert {r["status"] for r in unfinished(store)} == {"queued"}
    check(db, settled=False, slots={f"d{i}": [now] for i in range(5)})

    tasks = start_tasks(port=port, queues=[TaskQueue(settings).queue_path()])
    try:
        early = sweep_once(store, queue, now=now + timedelta(seconds=599), settings=settings)
        assert early.redispatched == []  # the grace period is not over: no double send
        at, sent = now, set()
        # gRPC keeps the dead address in its reconnect backoff for a few seconds; a
        # sweep whose enqueue fails renewed the lease, so a later sweep sends again.
        for _ in range(20):
            at += timedelta(seconds=601)
            late = sweep_once(store, queue, now=at, settings=settings)
            sent |= set(late.redispatched) - set(late.enqueue_failed)
            if sent == set(result.created):
                break
            time.sleep(1)
        assert sent == set(result.created)
        deadline = time.monotonic() + 30
        while unfinished(store):
            assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in unfinished(store)]
            time.sleep(0.2)
    finally:
        tasks.stop()
    check(db, slots={f"d{i}": [now] for i in range(5)}, executions=syncs.executions(log))
