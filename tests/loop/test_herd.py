"""The top-of-the-hour herd against the emulator: the tick fans the claiming out to
shard handlers, which claim ahead of the slot, once per run, whatever is delivered twice."""

import json
import threading
from collections import Counter
from datetime import timedelta

import flask
import pytest

from freshet.core import herd
from freshet.core.herd import CLAIM_SHARDS, ShardTask
from freshet.gcp.store import Store
from freshet.loop.tick import claim_shard_once, tick_once
from freshet.ops import entries
from freshet.ops.deps import Deps
from freshet.ops.web import serve
from tests.loop.helpers import MIN, T0, RecordingQueue, loop_settings

SLOT = T0 + MIN  # the herd's minute: due within the tick's lookahead


def herd_settings(**kw):
    return loop_settings(**{"claim_url": "http://claims.example/scheduler_tick",
                            "claim_fanout_above": 20, "lookahead_s": 60, **kw})


def add_herd(store: Store, count: int, prefix: str = "h") -> list[str]:
    ids = [f"{prefix}{i:04d}" for i in range(count)]
    store.put_many("jobs", ((j, _job(j).to_doc()) for j in ids))
    return ids


def _job(job_id):
    from freshet.core.models import new_job

    job = new_job(id=job_id, kind="noop", schedule={"cron": "* * * * *"},
                  produces=[f"ds.{job_id}"])
    job.next_run_at = SLOT
    return job


def claim_all(store, queue, settings, tasks, now=T0, threads=1):
    """Deliver shard tasks the way Cloud Tasks would: `threads` at once, and every
    continuation a handler sends, until none is left."""
    pending, lock = list(tasks), threading.Lock()

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                task = pending.pop()
            before = len(queue.claims)
            claim_shard_once(store, queue, task, now=now, settings=settings)
            with lock:
                pending.extend(queue.claims[before:])  # its continuation, if any

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_a_herd_is_fanned_out_not_claimed_by_the_tick(memory_store):
    store, settings = memory_store, herd_settings()
    add_herd(store, 120)
    queue = RecordingQueue(settings)
    store.stats.reset()
    result = tick_once(store, queue, now=T0, settings=settings)
    assert (result.due, result.created, result.shards_sent) == (21, [], CLAIM_SHARDS)
    assert [t.shard for t in queue.claims] == list(range(CLAIM_SHARDS))
    assert {t.until for t in queue.claims} == {T0 + 60 * timedelta(seconds=1)}
    # The tick read a sample, not the herd: kill switches, 21 due jobs, the archive query,
    # the query for pauses whose `until` came.
    assert store.stats.reads == 1 + 21 + 1 + 1


def test_the_shards_claim_every_job_once_ahead_of_its_slot(memory_store):
    store, settings = memory_store, herd_settings()
    ids = add_herd(store, 120)
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0, settings=settings)
    claim_all(store, queue, settings, list(queue.claims))
    runs = {r.job_id: r for r in store.recent_runs(limit=500)}
    assert sorted(runs) == ids
    assert {r.scheduled_for for r in runs.values()} == {SLOT}
    assert len(queue.sent) == 120 and {t.schedule_time for t in queue.sent} == {SLOT}
    assert {store.job(i).next_run_at for i in ids} == {SLOT + MIN}


def test_shards_delivered_twice_and_racing_each_other_create_each_run_once(db):
    store, settings = Store(db), herd_settings()
    ids = add_herd(store, 150)
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0, settings=settings)
    twice = list(queue.claims) * 2  # every shard delivered twice, 8 handlers at once
    claim_all(store, queue, settings, twice, threads=8)
    created = Counter(e.run_id for e in queue.sent)
    assert len(created) == 150 and set(created.values()) == {1}
    assert len(store.recent_runs(limit=500)) == 150
    assert sorted({r.job_id for r in store.recent_runs(limit=500)}) == ids


def test_a_shard_larger_than_a_handlers_batch_is_sent_on_until_done(memory_store):
    store, settings = memory_store, herd_settings(claim_batch=3)
    ids = add_herd(store, 60)
    shard = herd.claim_shard(ids[0])
    mine = [i for i in ids if herd.claim_shard(i) == shard]
    assert len(mine) > 3
    queue = RecordingQueue(settings)
    first = claim_shard_once(store, queue, ShardTask(shard, T0 + MIN), now=T0,
                             settings=settings)
    assert len(first.created) == 3 and first.continued
    assert queue.claims == [ShardTask(shard, T0 + MIN, 1)]
    claim_all(store, queue, settings, list(queue.claims))
    assert sorted(e.run_id.split("__")[0] for e in queue.sent) == sorted(mine)


def test_jobs_stored_before_shards_existed_are_claimed_by_the_tick_and_get_their_shard(db):
    store, settings = Store(db), herd_settings(claim_fanout_above=5)
    ids = add_herd(store, 10)
    for job_id in ids[:3]:
        db.collection("jobs").document(job_id).update({"claim_shard": None})
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=T0, settings=settings)
    assert result.shards_sent == CLAIM_SHARDS
    assert sorted(r.split("__")[0] for r in result.created) == ids[:3]
    assert [store.job(i).claim_shard for i in ids[:3]] == [herd.claim_shard(i)
                                                            for i in ids[:3]]


def test_without_a_claim_handler_the_tick_claims_the_herd_itself(memory_store):
    store, settings = memory_store, loop_settings(claim_fanout_above=5)  # no claim_url
    add_herd(store, 12)
    queue = RecordingQueue(settings)
    result = tick_once(store, queue, now=T0, settings=settings)
    assert (len(result.created), result.shards_sent, queue.claims) == (12, 0, [])


def test_runs_spread_over_the_pools_queues_by_job(memory_store):
    store, settings = memory_store, loop_settings(dispatch_shards=4)
    add_herd(store, 80)
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0, settings=settings)
    by_queue = Counter(e.queue for e in queue.sent)
    assert set(by_queue) == set(herd.queue_names(settings.queue, 4))
    for sent in queue.sent:
        assert sent.queue == herd.dispatch_queue(settings.queue, 4, sent.run_id.split("__")[0])


def _call(store, settings, body: str):
    deps = Deps(settings=settings, store=store, task_queue=RecordingQueue(settings),
                certs=None, clock=lambda: T0)
    app = flask.Flask(__name__)
    with app.test_request_context("/scheduler_tick", method="POST", data=body,
                                  content_type="application/json"):
        return serve(flask.request, entries.scheduler_tick, deps)


def test_the_claim_handler_is_scheduler_tick_called_with_a_shard(memory_store):
    store, settings = memory_store, herd_settings()
    ids = add_herd(store, 40)
    shard = herd.claim_shard(ids[0])
    answer = _call(store, settings, json.dumps(ShardTask(shard, T0 + MIN).to_json()))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["claim_shard"] == shard
    assert body["created"] == sum(herd.claim_shard(i) == shard for i in ids)


@pytest.mark.parametrize("body,field", [('{"claim_shard": 99, "until": "2026-11-28T12:01:00Z"}',
                                         "claim_shard"),
                                        ('{"claim_shard": 1}', "until")])
def test_a_bad_claim_shard_is_a_400_naming_the_field(memory_store, body, field):
    answer = _call(memory_store, herd_settings(), body)
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == field
