"""The tick through a three-day outage, per catch-up policy, against the emulator: what
runs (and in which order), what is recorded as skipped, where the schedule resumes."""

from datetime import timedelta

from freshet.core.models import LastRun, RunStatus, TriggerSource
from freshet.gcp.store import Store
from freshet.loop.recover import sweep_once
from freshet.loop.tick import tick_once
from tests.loop.helpers import (
    MIN,
    T0,
    RecordingQueue,
    add_job,
    deliver_all,
    loop_settings,
)
from tests.reliability.invariants import check

H = timedelta(hours=1)
NOW = T0 + 7 * MIN  # back at 12:07 after three days down; 73 hourly slots are due
DUE = [T0 - timedelta(days=3) + i * H for i in range(73)]


def runs_of(store, job_id):
    """The job's runs as documents, oldest slot first (either store)."""
    return sorted((r.to_doc() for r in store.recent_runs(job_id=job_id, limit=1000)),
                  key=lambda r: r["scheduled_for"])


def outage(store, **policy):
    add_job(store, "hourly", kind="slot_probe", cron="0 * * * *", produces=("ds.hourly",),
            next_run_at=DUE[0], **policy)


def test_latest_runs_the_latest_slot_once_and_records_nothing(memory_store, probe):
    store, settings = memory_store, loop_settings()
    outage(store)
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=NOW, settings=settings)
    assert result.created == ["hourly__20261128T120000Z"] and result.skipped_slots == 0
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    assert probe.slots == [T0]
    assert probe.seen[0].interval == (T0 - H, T0)  # the hour ending at 12:00
    assert len(runs_of(store, "hourly")) == 1
    assert store.job("hourly").next_run_at == T0 + H


def test_all_runs_the_newest_24_oldest_first_and_records_the_rest_as_skipped(db, probe):
    store, settings = Store(db), loop_settings()
    outage(store, catchup="all")
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=NOW, settings=settings)
    assert result.skipped_slots == 49 and len(result.chains) == 1
    assert result.created == ["hourly__20261127T130000Z"]  # the oldest of the newest 24
    # each finishing run starts the next one: one at a time, oldest first
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    assert probe.slots == DUE[-24:]
    assert probe.peak == 1
    assert all(c.trigger_source == TriggerSource.CATCHUP for c in probe.seen)
    assert [c.interval for c in probe.seen[:2]] == [(DUE[-25], DUE[-24]), (DUE[-24], DUE[-23])]
    docs = runs_of(store, "hourly")
    assert len(docs) == 73  # every due slot has exactly one run document
    skipped = [d for d in docs if d["status"] == RunStatus.SKIPPED]
    assert [d["scheduled_for"] for d in skipped] == DUE[:49]
    assert "max_catchup (24)" in skipped[0]["error"]
    assert sum(d["status"] == RunStatus.SUCCEEDED for d in docs) == 24
    # freshness follows the slots: the newest succeeded slot is the latest due one
    ds = store.get_dataset("ds.hourly")
    assert ds.last_success_slot == T0 and ds.last_success_at == T0
    check(db, slots={"hourly": DUE})  # one run per due slot; freshness agrees with them
    # the chain is done once recovery's sweep notices every lane finished
    sweep_once(store, queue, now=NOW + 2 * MIN, settings=settings)
    assert store.backfill(result.chains[0]).status == "done"
    assert store.job("hourly").next_run_at == T0 + H


def test_all_after_a_short_outage_runs_each_missed_slot(memory_store, probe):
    store, settings = memory_store, loop_settings()
    add_job(store, "hourly", kind="slot_probe", cron="0 * * * *", produces=("ds.hourly",),
            next_run_at=T0 - 2 * H, catchup="all")
    queue = RecordingQueue(settings)
    assert tick_once(store, queue, now=NOW, settings=settings).skipped_slots == 0
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    assert probe.slots == [T0 - 2 * H, T0 - H, T0]


def test_skip_records_every_missed_slot_and_the_next_slot_runs_on_time(memory_store, probe):
    store, settings = memory_store, loop_settings()
    outage(store, catchup="skip")
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=NOW, settings=settings)
    assert result.created == [] and result.skipped_slots == 73 and queue.sent == []
    job = store.job("hourly")
    assert job.next_run_at == T0 + H and job.last_run_status == LastRun.SKIPPED
    assert {d["status"] for d in runs_of(store, "hourly")} == {RunStatus.SKIPPED}
    # the next slot, claimed ahead as usual, runs
    ahead = tick_once(store, queue, now=T0 + H - MIN, settings=settings)
    assert ahead.created == ["hourly__20261128T130000Z"]


def test_max_lateness_skips_a_run_that_could_not_start_in_time(memory_store, probe):
    store, settings = memory_store, loop_settings()
    add_job(store, "hourly", kind="slot_probe", cron="0 * * * *", produces=("ds.hourly",),
            next_run_at=T0, max_lateness="10m")
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0 - timedelta(seconds=30), settings=settings)  # ahead
    (outcome,) = deliver_all(store, queue, settings, lambda: T0 + 11 * MIN)  # queue backed up
    assert outcome.state == "skipped" and probe.seen == []
    run = store.run("hourly__20261128T120000Z")
    assert run.status == RunStatus.SKIPPED and "max_lateness (10m)" in run.error
    assert store.job("hourly").last_run_status == LastRun.SKIPPED
    assert store.get_dataset("ds.hourly") is None  # nothing ran: nothing to record


def test_max_lateness_at_the_tick_skips_without_creating_a_run_to_skip_later(memory_store, probe):
    store, settings = memory_store, loop_settings()
    outage(store, max_lateness="5m")
    result = tick_once(store, RecordingQueue(settings), now=NOW, settings=settings)
    assert result.created == [] and result.skipped_slots == 1
    (record,) = runs_of(store, "hourly")
    assert record["scheduled_for"] == T0 and record["status"] == RunStatus.SKIPPED


def test_a_skipped_slot_a_backfill_already_ran_keeps_its_run(memory_store, probe):
    store, settings = memory_store, loop_settings()
    outage(store, catchup="skip")
    from freshet.core.runs import new_run, scheduled_run_id

    job = store.job("hourly")
    store.create_run(new_run(job, scheduled_run_id("hourly", DUE[5]), DUE[5],
                             source=TriggerSource.BACKFILL, now=NOW, settings=settings))
    result = tick_once(store, RecordingQueue(settings), now=NOW, settings=settings)
    assert result.skipped_slots == 72  # 73 due, one taken by the backfill's run
    assert store.run(scheduled_run_id("hourly", DUE[5])).status == RunStatus.QUEUED
