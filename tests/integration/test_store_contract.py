"""One contract for both stores: the Firestore adapter on Google's emulator and the
in-memory store (freshet.gcp.memory), so loop tests that do not test Firestore's own
semantics can use the fast one. Each test runs against both."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import backfill as bf
from freshet.core import runs
from freshet.core.created import Created
from freshet.core.errors import NotFound
from freshet.core.models import Dataset, Job, RunStatus, TriggerSource, new_job
from freshet.core.runs import SlotClaim
from freshet.core.settings import load_settings
from freshet.gcp.memory import MemoryStore
from freshet.gcp.ports import RunStore, Transaction
from freshet.gcp.store import Store

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
SETTINGS = load_settings({}, auth_mode="local")


@pytest.fixture(params=["memory", "firestore"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    return Store(request.getfixturevalue("db"))


def job(job_id="orders", next_run_at=T0, **kw) -> Job:
    made = new_job(id=job_id, kind="noop", schedule={"cron": "0 * * * *", "timezone": "UTC"},
                   produces=["sales.orders"], **kw)
    made.next_run_at = next_run_at
    return made


def a_run(slot=T0, j=None):
    j = j or job()
    return runs.new_run(j, runs.scheduled_run_id(j.id, slot), slot,
                        source=TriggerSource.SCHEDULE, now=slot, settings=SETTINGS)


def test_both_stores_keep_the_protocols(store):
    assert isinstance(store, RunStore)
    assert store.transact(lambda tx: isinstance(tx, Transaction))


def test_a_create_answers_new_then_exists_and_keeps_the_first(store):
    run = a_run()
    assert store.create_run(run) is Created.NEW
    assert store.create_run(replace(run, kind="other")) is Created.EXISTS
    assert store.run(run.id).kind == "noop"
    assert store.create_job(job()) is Created.NEW
    assert store.create_job(job()) is Created.EXISTS


def test_many_creates_answer_each_run_and_keep_the_ones_there(store):
    first, second, third = (a_run(T0 + i * H) for i in range(3))
    assert store.create_runs([first]) == {first.id: Created.NEW}
    assert store.create_runs([first, second, third]) == {
        first.id: Created.EXISTS, second.id: Created.NEW, third.id: Created.NEW}
    assert store.create_runs([]) == {}


def test_an_update_of_a_missing_document_is_not_found(store):
    with pytest.raises(NotFound):
        store.update_run("nope", {"status": "failed"})
    with pytest.raises(NotFound):
        store.update_job("nope", {"status": "paused"})


def test_every_write_is_stamped_with_a_later_commit_time(store):
    """Whatever the caller put in updated_at, and whatever path writes: a batch of
    creates (catch-up's skipped runs), a claim, a transaction, a lane."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put_job(replace(job(), updated_at=datetime(2000, 1, 1, tzinfo=UTC)))
    stamped = store.job("orders").updated_at
    assert stamped > before
    skipped = [runs.skipped(a_run(T0 - i * H), T0, "catch-up") for i in range(1, 3)]
    store.create_runs(skipped)
    assert all(store.run(r.id).updated_at > stamped for r in skipped)
    store.update_job("orders", {"last_error": "x"})
    assert store.job("orders").updated_at > stamped
    backfill = bf.Backfill(id="bf1", job_id="orders", start=T0 - 2 * H, end=T0,
                           max_parallel=1, created_at=T0, updated_at=T0)
    lane = bf.Lane(backfill_id="bf1", index=0, job_id="orders", slots=[T0 - H],
                   updated_at=T0)
    assert store.create_backfill(backfill, [lane]) is Created.NEW
    assert store.create_backfill(backfill, [lane]) is Created.EXISTS
    assert store.lanes("bf1")[0].updated_at > stamped
    assert store.backfill("bf1").updated_at > stamped


def test_a_claim_is_a_compare_and_set_on_the_job_and_a_create_of_the_run(store):
    store.put_job(job())
    [(found, version)] = store.due_jobs_versioned(T0, 10)
    run = a_run()
    assert store.claim_slot(found.id, version, {"next_run_at": T0 + H}, run) == \
        SlotClaim.CLAIMED
    assert store.job("orders").next_run_at == T0 + H
    # the same version again: someone (this claim) moved the job meanwhile
    assert store.claim_slot(found.id, version, {"next_run_at": T0 + 2 * H}, None) == \
        SlotClaim.LOST
    [(again, current)] = store.due_jobs_versioned(T0 + H, 10)
    assert store.claim_slot(again.id, current, {"next_run_at": T0 + 2 * H}, run) == \
        SlotClaim.EXISTS
    assert store.job("orders").next_run_at == T0 + H  # nothing of a refused commit lands


def test_a_compare_and_set_in_a_transaction_is_refused_once_the_run_moved(store):
    run = a_run()
    store.create_run(run)
    [(found, version)] = [(r, v) for r, v in store.expired_runs_versioned(T0 + 2 * H)]
    store.update_run(run.id, {"status": RunStatus.RUNNING})
    written = store.transact_if_current(
        lambda tx: tx.set_run_if_unchanged(replace(found, status=RunStatus.FAILED), version))
    assert written is None
    assert store.run(run.id).status == RunStatus.RUNNING


def test_due_jobs_are_the_active_ones_up_to_the_limit_oldest_slot_first(store):
    store.put_job(job("late", next_run_at=T0 - H))
    store.put_job(job("now", next_run_at=T0))
    store.put_job(job("later", next_run_at=T0 + H))
    store.put_job(job("paused", next_run_at=T0 - 2 * H, status="paused"))
    assert [j.id for j in store.due_jobs(T0, 10)] == ["late", "now"]
    assert [j.id for j in store.due_jobs(T0, 1)] == ["late"]


def test_paused_jobs_whose_until_came_are_found_soonest_first(store):
    for job_id, until in (("later", T0 + H), ("at", T0), ("before", T0 - H), ("open", None)):
        store.put_job(replace(job(job_id), status="paused", paused_reason="x",
                              paused_until=until))
    store.put_job(replace(job("active"), paused_until=T0 - H))  # not paused: not found
    assert [j.id for j in store.paused_until_due(T0)] == ["before", "at"]
    assert [j.id for j in store.paused_until_due(T0, limit=1)] == ["before"]


def test_a_transaction_whose_create_finds_the_document_decides_again(store):
    """A run another writer created first: the body runs again and reads it."""
    run = a_run()
    store.create_run(run)
    calls = []

    def body(tx):
        calls.append(1)
        if len(calls) == 1:
            tx.create_run(replace(run, kind="mine"))  # decided on a read made before it
            return None
        return tx.get_run(run.id)

    assert store.transact(body).kind == "noop" and len(calls) == 2


def test_reads_commits_and_writes_are_counted_alike(store):
    store.put_job(job())
    store.stats.reset()
    store.transact(lambda tx: (tx.get_job("orders"), tx.get_run("nope"),
                               tx.update_job("orders", {"last_error": None})))
    assert (store.stats.reads, store.stats.commits, store.stats.writes) == (2, 1, 1)
    store.stats.reset()
    store.create_runs([a_run(T0 + i * H) for i in range(3)])
    assert (store.stats.commits, store.stats.writes) == (1, 3)
    store.stats.reset()
    assert store.expired_runs(T0) == [] and store.stats.reads == 1  # empty: billed as one
    store.stats.reset()
    datasets = store.transact(lambda tx: tx.get_datasets(["a", "b"]))  # no owner named:
    assert datasets == {"a": None, "b": None} and store.stats.reads == 4  # pointer, own doc
    store.stats.reset()
    datasets = store.transact(lambda tx: tx.get_datasets(["a", "b"], observed=True))
    assert datasets == {"a": None, "b": None} and store.stats.reads == 2  # their own docs
    store.regroup("j~0", ["a", "b"])  # as apply lays out job j's datasets
    store.stats.reset()
    datasets = store.transact(lambda tx: tx.get_datasets(["a", "b"], ("j", ("a", "b"))))
    assert datasets == {"a": None, "b": None} and store.stats.reads == 1  # their group


def test_both_task_queues_keep_the_queue_protocol():
    """The Cloud Tasks adapter and the recording one the loop tests use (the adapter
    with Google's call replaced by a record) answer the same calls."""
    from freshet.gcp.ports import RunQueue
    from freshet.gcp.tasks import TaskQueue
    from freshet_local.recording_queue import RecordingQueue

    assert isinstance(TaskQueue(SETTINGS), RunQueue)
    recording = RecordingQueue(SETTINGS)
    assert isinstance(recording, RunQueue)
    recording.enqueue("orders__20261128T120000Z", 1, queue="freshet-runs")
    assert [(t.run_id, t.attempt, t.queue) for t in recording.sent] == [
        ("orders__20261128T120000Z", 1, "freshet-runs")]


def test_a_datasets_trigger_list_grows_once_per_job_and_keeps_its_run_fields(store):
    store.transact(lambda tx: tx.set_dataset(Dataset("x", last_success_run_id="r1")))
    store.add_dataset_trigger("x", "rollup")
    store.add_dataset_trigger("x", "rollup")
    store.add_dataset_trigger("x", "report")
    found = store.get_dataset("x")
    assert found.triggers == ["rollup", "report"] and found.last_success_run_id == "r1"
    store.set_dataset_triggers("x", ["report"])
    assert store.get_dataset("x").triggers == ["report"]


def test_the_observe_ledger_round_trips_whole_even_past_one_documents_size(store):
    from freshet.core.observe import Ledger, Seen

    # 3,000 datasets with a long error each: over one 1 MiB document (Firestore pages it)
    seen = {f"vendor.table_{i:05d}": Seen(T0, T0 - H, "x" * 300) for i in range(3_000)}
    ledger = Ledger(seen, T0 + H)
    store.put_observations_doc(ledger.to_doc())
    assert Ledger.from_doc(store.observations_doc()) == ledger
    store.put_observations_doc(Ledger({"a": Seen(T0, None)}, None).to_doc())
    assert Ledger.from_doc(store.observations_doc()).seen == {"a": Seen(T0, None)}
def test_a_waiting_run_keeps_its_engine_handle_and_is_found_when_its_lease_runs_out(store):
    from freshet.core.models import External

    started = runs.started(a_run(), 1, T0, timedelta(minutes=30))
    handle = External("cloud_run", "projects/p/locations/r/jobs/j/executions/e-1",
                      location="europe-west1", submitted_at=T0,
                      next_poll_at=T0 + timedelta(seconds=10), polls=3,
                      deadline=T0 + H, timeout_s=3600)
    waiting = runs.waiting(started, handle, timedelta(minutes=10))
    store.create_run(waiting)
    back = store.run(waiting.id)
    assert back.status == RunStatus.WAITING and back.external == handle
    assert back.external.deadline.tzinfo is not None
    late = T0 + timedelta(minutes=11)
    assert [r.id for r in store.expired_runs(late)] == [waiting.id]


# -- produced datasets, stored in their job's group (core.groups) ------------------------

FIVE = [f"sales.d{i}" for i in range(5)]


def five_run(store, job_id="five", produces=FIVE, slot=T0, lay_out=True):
    """A job of `produces`, laid out as apply does, and one scheduled run of it
    delivered and succeeded: (the run id, the store's counts over tick, claim, finish)."""
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once
    from freshet_local.recording_queue import RecordingQueue

    store.put_job(replace(job(job_id, next_run_at=slot), produces=list(produces)))
    if lay_out:
        store.lay_out(job_id, list(produces))
    queue = RecordingQueue(SETTINGS)
    store.stats.reset()
    (run_id,) = tick_once(store, queue, now=slot, settings=SETTINGS).created
    outcome = handle_one(store, queue, run_id, 1, now=slot, settings=SETTINGS)
    assert outcome.state == "succeeded", outcome
    return run_id, replace(store.stats)


def test_a_five_dataset_run_writes_seven_documents_its_datasets_one(store):
    """The tick: the run and the job's schedule; the claim: the run and the job's hold;
    the finish: the run, the job's last run and the five datasets' group."""
    run_id, counted = five_run(store)
    assert counted.writes == 7 and counted.commits == 3
    for key in FIVE:
        found = store.get_dataset(key)
        assert found.last_success_run_id == run_id and found.last_success_at is not None
    assert [d.key for d in store.list_datasets()] == sorted(FIVE)


def test_a_finish_reads_its_group_not_each_dataset(store):
    _, first = five_run(store)
    store.stats.reset()
    found = store.transact(lambda tx: tx.get_datasets(FIVE, ("five", tuple(FIVE))))
    assert all(d is not None for d in found.values()) and store.stats.reads == 1


def test_a_job_no_apply_laid_out_gets_its_group_and_pointers_at_its_first_finish(store):
    run_id, counted = five_run(store, lay_out=False)
    assert counted.writes == 7 + 5  # and a pointer per dataset, once
    assert store.get_dataset(FIVE[3]).last_success_run_id == run_id
    _, again = five_run(store, slot=T0 + H, lay_out=False)
    assert again.writes == 7


def test_state_stored_before_groups_moves_into_its_group_and_nothing_is_lost(store):
    """An existing deployment: datasets/{key} documents; apply lays the job out (moving
    each one's state, triggers too) and a second lay-out writes nothing."""
    old = [Dataset(k, last_success_run_id="old", triggers=["rollup"] if k == FIVE[0] else [])
           for k in FIVE]
    store.put_many("datasets", [(d.key, d.to_doc()) for d in old])
    store.put_job(replace(job("five"), produces=FIVE))
    pointers, groups, own = store.dataset_layout()
    assert (pointers, groups, sorted(own)) == ({}, {}, sorted(FIVE))
    store.lay_out("five", FIVE)
    assert store.dataset_layout() == ({k: "five~0" for k in FIVE}, {"five~0": FIVE}, [])
    assert [(d.key, d.last_success_run_id, d.triggers) for d in store.list_datasets()] == [
        (d.key, "old", d.triggers) for d in old]
    store.stats.reset()
    store.lay_out("five", FIVE)
    assert store.stats.writes == 0


def test_a_finish_before_apply_takes_the_old_state_with_it(store):
    store.put_many("datasets", [(k, Dataset(k, last_success_run_id="old",
                                            consecutive_failures=0).to_doc()) for k in FIVE])
    run_id, _ = five_run(store, lay_out=False)
    assert store.dataset_layout()[2] == []  # no document of their own left
    assert {d.last_success_run_id for d in store.list_datasets()} == {run_id}


def test_a_dataset_moved_to_another_group_during_a_run_is_written_where_it_is(store):
    """Apply gave the dataset another producer while a run of the old one was under way:
    the finish finds it through its pointer, and no group holds it twice."""
    from freshet.loop.run import handle_one
    from freshet.loop.tick import tick_once
    from freshet_local.recording_queue import RecordingQueue

    store.put_job(replace(job("old"), produces=["x"]))
    store.lay_out("old", ["x"])
    queue = RecordingQueue(SETTINGS)
    (run_id,) = tick_once(store, queue, now=T0, settings=SETTINGS).created
    store.regroup("new~0", ["x"])
    store.regroup("old~0", [])
    assert handle_one(store, queue, run_id, 1, now=T0, settings=SETTINGS).state == "succeeded"
    assert store.dataset_layout()[:2] == ({"x": "new~0"}, {"new~0": ["x"], "old~0": []})
    assert store.get_dataset("x").last_success_run_id == run_id


def test_a_dataset_its_job_no_longer_produces_keeps_its_state_in_a_document_of_its_own(
        store):
    run_id, _ = five_run(store)
    store.regroup("five~0", FIVE[:3])  # apply, once the job produces only three
    assert store.dataset_layout() == ({k: "five~0" for k in FIVE[:3]},
                                      {"five~0": FIVE[:3]}, FIVE[3:])
    assert {d.key: d.last_success_run_id for d in store.list_datasets()} == {
        k: run_id for k in FIVE}
    assert store.get_dataset(FIVE[4]).last_success_run_id == run_id


def test_a_produced_datasets_triggers_live_in_its_group_beside_its_state(store):
    five_run(store)
    store.add_dataset_trigger(FIVE[1], "rollup")
    store.set_dataset_triggers(FIVE[2], ["report", "rollup"])
    assert store.dataset_layout()[2] == []  # in the group, not a document of their own
    found = store.transact(lambda tx: tx.get_datasets(FIVE, ("five", tuple(FIVE))))
    assert found[FIVE[1]].triggers == ["rollup"] and found[FIVE[1]].last_success_at
    assert found[FIVE[2]].triggers == ["report", "rollup"]


def stored_group(store, gid: str) -> dict:
    if isinstance(store, MemoryStore):
        return store._doc("datasets", gid)
    return store.db.collection("datasets").document(gid).get().to_dict()


def test_a_groups_entries_keep_days_and_data_points_as_texts_and_old_maps_still_read(
        store):
    """core.compact: a run's finish writes its datasets' days and data points as one
    text each; an entry written before, as maps, reads as it did until rewritten."""
    from freshet.core.bookkeeping import apply_success

    old = apply_success(Dataset(FIVE[0], daily={"2026-11-27": {"ok": 2, "fail": 1}}),
                        "old", T0 - H, watermark=T0 - 2 * H)
    store.put_job(replace(job("five"), produces=FIVE))
    store.lay_out("five", FIVE)
    entry = old.to_doc()
    del entry["updated_at"]
    store.put_many("datasets", [("five~0", {**stored_group(store, "five~0"),
                                            "datasets": {FIVE[0]: entry}})])
    assert "daily" in stored_group(store, "five~0")["datasets"][FIVE[0]]  # as maps
    found = store.get_dataset(FIVE[0])
    assert (found.daily, found.data_points) == (old.daily, old.data_points)
    assert [d.daily for d in store.list_datasets()] == [old.daily]
    five_run(store, lay_out=False)  # its finish rewrites the group
    held = stored_group(store, "five~0")["datasets"][FIVE[0]]
    assert "daily" not in held and "data_points" not in held
    assert held["daily_text"].startswith("2026-11-27|2.1 1.0 ")  # then the finish's day
    assert held["data_points_text"].count("/") == 2  # two points: at/as_of each
    found = store.get_dataset(FIVE[0])
    assert found.daily["2026-11-27"] == {"ok": 2, "fail": 1} and len(found.daily) >= 2
    assert found.data_points[0] == old.data_points[0] and len(found.data_points) == 2


def test_a_group_holds_its_chunk_of_a_jobs_datasets():
    from freshet.core.groups import PER_GROUP, chunks

    keys = [f"k{i}" for i in range(PER_GROUP + 1)]
    assert chunks("big", keys) == {"big~0": tuple(keys[:PER_GROUP]), "big~1": (keys[-1],)}
