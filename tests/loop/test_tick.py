import threading
from datetime import timedelta

from google.cloud.firestore_v1.base_query import FieldFilter

from freshet.core.control import Control
from freshet.core.models import LastRun
from freshet.gcp.store import Store
from freshet.loop.tick import tick_once
from freshet.status.model import JobHealth, job_health
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings


def runs_of(db, job_id):
    query = db.collection("runs").where(filter=FieldFilter("job_id", "==", job_id))
    return [d.to_dict() for d in query.stream()]


def test_due_job_gets_one_run_and_its_schedule_advances(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "a", next_run_at=T0)
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=T0 + timedelta(seconds=5), settings=settings)
    assert result.created == ["a__20261128T120000Z"]
    assert [e.run_id for e in queue.sent] == ["a__20261128T120000Z"]
    job = store.job("a")
    assert job.next_run_at == T0 + 5 * MIN
    run = store.run("a__20261128T120000Z")
    assert run.status == "queued" and run.scheduled_for == T0 and run.attempt_number == 1


def test_two_ticks_at_once_create_each_run_exactly_once(db):
    store, settings = Store(db), loop_settings()
    for i in range(15):
        add_job(store, f"job{i}", next_run_at=T0)
    queue = RecordingQueue(settings)
    barrier = threading.Barrier(2)

    def tick():
        barrier.wait()
        tick_once(Store(db), queue, now=T0 + timedelta(seconds=1), settings=settings)

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(db.collection("runs").stream())) == 15
    assert sorted(e.run_id for e in queue.sent) == sorted(
        f"job{i}__20261128T120000Z" for i in range(15))


def test_retried_tick_creates_nothing_new(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "a", next_run_at=T0)
    queue = RecordingQueue(settings)
    now = T0 + timedelta(seconds=2)
    tick_once(store, queue, now=now, settings=settings)
    again = tick_once(store, queue, now=now, settings=settings)
    assert again.created == [] and len(queue.sent) == 1


def test_job_three_days_behind_runs_once_for_the_latest_slot(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "late", cron="*/5 * * * *", next_run_at=T0 - timedelta(days=3))
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=T0 + timedelta(minutes=7), settings=settings)
    assert result.created == ["late__20261128T120500Z"]
    assert store.job("late").next_run_at == T0 + 10 * MIN
    second = tick_once(store, queue, now=T0 + timedelta(minutes=8), settings=settings)
    assert second.created == []


def test_job_due_within_lookahead_is_enqueued_for_its_slot(memory_store):
    store, settings = memory_store, loop_settings(lookahead_s=60)
    add_job(store, "soon", next_run_at=T0 + timedelta(seconds=40))
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0, settings=settings)
    assert queue.sent[0].schedule_time == T0 + timedelta(seconds=40)
    assert store.run("soon__20261128T120040Z").scheduled_for == T0 + timedelta(seconds=40)


def test_job_outside_lookahead_waits(memory_store):
    store, settings = memory_store, loop_settings(lookahead_s=60)
    add_job(store, "later", next_run_at=T0 + timedelta(seconds=61))
    assert tick_once(store, RecordingQueue(settings), now=T0, settings=settings).created == []


def test_paused_and_archived_jobs_are_skipped(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "p", status="paused")
    add_job(store, "z", status="archived")
    result = tick_once(store, RecordingQueue(settings), now=T0 + MIN, settings=settings)
    assert result.due == 0 and result.created == []


def test_kind_switched_off_is_skipped_and_advanced(db):
    store, settings = Store(db), loop_settings()
    add_job(store, "k", next_run_at=T0)
    store.set_control({"disabled_kinds": ["noop"]})
    result = tick_once(store, RecordingQueue(settings), now=T0 + MIN, settings=settings)
    assert result.skipped_disabled == ["k"] and result.created == []
    assert store.job("k").next_run_at == T0 + 5 * MIN
    assert runs_of(db, "k") == []


def test_a_job_skipped_by_a_kill_switch_shows_as_skipped_not_running(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "k", next_run_at=T0)
    store.set_control({"disabled_kinds": ["noop"]})
    tick_once(store, RecordingQueue(settings), now=T0 + MIN, settings=settings)
    store.set_control({"disabled_kinds": []})  # switched back on before its next slot
    job = store.job("k")
    assert job.last_run_status == LastRun.SKIPPED
    assert job_health(job, Control()) == JobHealth.SKIPPED


def test_failed_task_creation_leaves_the_run_queued_with_a_lease(memory_store):
    store, settings = memory_store, loop_settings(queued_grace_s=300)
    add_job(store, "a", next_run_at=T0)
    result = tick_once(store, RecordingQueue(settings, fail=True), now=T0, settings=settings)
    assert result.enqueue_failed == ["a__20261128T120000Z"]
    run = store.run("a__20261128T120000Z")
    assert run.status == "queued" and run.lease_expires_at == T0 + timedelta(seconds=300)


def test_tick_stops_at_its_time_budget_and_leaves_the_rest(memory_store):
    store, settings = memory_store, loop_settings()
    for i in range(3):
        add_job(store, f"j{i}", next_run_at=T0)
    result = tick_once(store, RecordingQueue(settings), now=T0, settings=settings, budget_s=0)
    assert result.deferred == 3 and result.created == []
    later = tick_once(store, RecordingQueue(settings), now=T0, settings=settings)
    assert len(later.created) == 3


def test_one_time_job_runs_once(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "once", schedule={"run_at": T0}, next_run_at=T0)
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0, settings=settings)
    tick_once(store, queue, now=T0 + timedelta(hours=1), settings=settings)
    assert len(queue.sent) == 1
    assert store.job("once").next_run_at is None


def test_completed_one_time_job_is_archived_after_retention(memory_store):
    store, settings = memory_store, loop_settings(completed_retention_days=7)
    add_job(store, "done", schedule={"run_at": T0}, status="completed", next_run_at=None)
    store.update_job("done", {"completed_at": T0})
    queue = RecordingQueue(settings)
    just_before = T0 + timedelta(days=7) - MIN
    assert tick_once(store, queue, now=just_before, settings=settings).archived == []
    assert tick_once(store, queue, now=T0 + timedelta(days=7), settings=settings).archived == [
        "done"]
    assert store.job("done").status == "archived"


def test_the_run_records_the_name_of_its_task(memory_store):
    from freshet.gcp.tasks import task_id

    store, settings = memory_store, loop_settings()
    add_job(store, "a", next_run_at=T0)
    tick_once(store, RecordingQueue(settings), now=T0, settings=settings)
    assert store.run("a__20261128T120000Z").task_name == task_id("a__20261128T120000Z", 1)


def maintenance_window(store, **scope):
    from freshet.core.windows import Maintenance, make_window

    window = make_window({"id": "vacuum", "cron": "0 12 * * *", "duration": "12m",
                          "scope": scope or "all"}, "maintenance[0]")
    store.set_control({"maintenance": Maintenance((window,)).to_doc()})


def test_a_slot_inside_a_maintenance_window_passes_unrun_and_the_next_one_runs(db):
    store, settings = Store(db), loop_settings()
    add_job(store, "a", next_run_at=T0)  # every 5 minutes; the window is 12:00-12:12
    add_job(store, "b", next_run_at=T0)
    maintenance_window(store, jobs=["a"])
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=T0, settings=settings)
    assert result.skipped_maintenance == ["a"] and result.created == ["b__20261128T120000Z"]
    assert store.job("a").next_run_at == T0 + 5 * MIN
    assert store.job("a").last_run_status == LastRun.SKIPPED
    tick_once(store, queue, now=T0 + 5 * MIN, settings=settings)  # 12:05: still inside
    assert runs_of(db, "a") == []
    later = tick_once(store, queue, now=T0 + 15 * MIN, settings=settings)  # 12:15: after
    assert "a__20261128T121500Z" in later.created


def test_a_one_time_job_inside_a_window_runs_when_it_ends(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "once", schedule={"run_at": T0 + 2 * MIN}, next_run_at=T0 + 2 * MIN)
    maintenance_window(store)
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0 + 2 * MIN, settings=settings)
    assert store.job("once").next_run_at == T0 + 12 * MIN
    result = tick_once(store, queue, now=T0 + 12 * MIN, settings=settings)
    assert len(result.created) == 1


def test_maintenance_windows_survive_a_kill_switch_change(memory_store):
    store = memory_store
    maintenance_window(store)
    store.set_control({**Control(paused_all=True, reason="x").to_doc()})
    control = store.control()
    assert control.paused_all and [w.id for w in control.maintenance.windows] == ["vacuum"]
    assert "maintenance" not in control.to_doc()
