"""Herd planning as pure functions: claim shards, dispatch shards, shard tasks."""

from collections import Counter
from datetime import UTC, datetime

import pytest

from freshet.core import herd
from freshet.core.errors import ValidationError
from freshet.core.herd import CLAIM_SHARDS, ShardTask
from freshet.core.models import new_job
from freshet.core.settings import load_settings
from freshet.core.specs import QueueSpec

UNTIL = datetime(2026, 11, 28, 12, 0, 40, tzinfo=UTC)


def test_every_job_has_one_stable_claim_shard_and_the_herd_spreads_over_them():
    ids = [f"export-{i:05d}" for i in range(10_000)]
    counts = Counter(herd.claim_shard(i) for i in ids)
    assert set(counts) == set(range(CLAIM_SHARDS))
    mean = len(ids) / CLAIM_SHARDS
    assert max(counts.values()) < 1.2 * mean and min(counts.values()) > 0.8 * mean
    assert herd.claim_shard("export-00042") == herd.claim_shard("export-00042")
    job = new_job(id="export-00042", kind="noop", schedule={"cron": "0 * * * *"})
    assert job.claim_shard == job.shard == herd.claim_shard("export-00042")


def test_a_pool_of_one_is_its_queue_and_a_sharded_pool_hashes_each_job_to_one_queue():
    assert herd.dispatch_queue("runs", 1, "any") == "runs"
    names = herd.queue_names("runs", 4)
    assert names == ["runs", "runs-1", "runs-2", "runs-3"]
    spread = Counter(herd.dispatch_queue("runs", 4, f"job-{i}") for i in range(4000))
    assert set(spread) == set(names) and min(spread.values()) > 800
    assert len({herd.dispatch_queue("runs", 4, "job-7") for _ in range(5)}) == 1


def test_a_sharded_pool_splits_its_limits_between_its_queues():
    pool = QueueSpec("runs", max_dispatches_per_second=1500, max_concurrent_dispatches=1000,
                     dispatch_shards=4)
    queues = pool.queues()
    assert [q.name for q in queues] == ["runs", "runs-1", "runs-2", "runs-3"]
    assert {(q.max_dispatches_per_second, q.max_concurrent_dispatches, q.dispatch_shards)
            for q in queues} == {(375, 250, 1)}
    assert pool.claims().name == "runs-claims"
    assert pool.claims().max_concurrent_dispatches == CLAIM_SHARDS


@pytest.mark.parametrize("due,above,fans_out", [(100, 100, False), (101, 100, True),
                                                (5000, 100, True), (5000, 0, False)])
def test_the_tick_fans_out_past_its_threshold_only(due, above, fans_out):
    assert herd.fan_out(due, above) is fans_out


def test_a_shard_task_round_trips_and_is_named_by_its_minute_shard_and_sequence():
    task = ShardTask(7, UNTIL, 2)
    assert ShardTask.from_json(task.to_json()) == task
    same_minute = ShardTask(7, UNTIL.replace(second=59), 2)
    assert task.task_id() == same_minute.task_id()  # a retried tick: Cloud Tasks dedupes
    others = {ShardTask(s, UNTIL, q).task_id() for s in range(CLAIM_SHARDS) for q in range(3)}
    assert len(others) == CLAIM_SHARDS * 3
    assert task.next() == ShardTask(7, UNTIL, 3)
    assert len(herd.shard_tasks(UNTIL)) == CLAIM_SHARDS


@pytest.mark.parametrize("body,field", [
    ({"claim_shard": CLAIM_SHARDS, "until": "2026-11-28T12:00:00Z"}, "claim_shard"),
    ({"claim_shard": -1, "until": "2026-11-28T12:00:00Z"}, "claim_shard"),
    ({"claim_shard": True, "until": "2026-11-28T12:00:00Z"}, "claim_shard"),
    ({"claim_shard": 1, "until": "tomorrow"}, "until"),
    ({"claim_shard": 1, "until": "2026-11-28T12:00:00"}, "until"),  # no zone
    ({"claim_shard": 1}, "until"),
    ({"claim_shard": 1, "until": "2026-11-28T12:00:00Z", "seq": "1"}, "seq"),
    ({"claim_shard": 1, "until": "2026-11-28T12:00:00Z", "extra": 1}, "extra"),
])
def test_a_bad_shard_task_is_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as caught:
        ShardTask.from_json(body)
    assert caught.value.field == field


@pytest.mark.parametrize("value", ["0", "101"])
def test_dispatch_shards_out_of_range_fail_loudly(value):
    with pytest.raises(ValidationError) as caught:
        load_settings({"FRESHET_DISPATCH_SHARDS": value})
    assert caught.value.field == "FRESHET_DISPATCH_SHARDS"


# -- the herd's modelled start ------------------------------------------------------

def _start(jobs, **kw):
    args = dict(queue_rates=[500.0], queue_concurrency=200, instances=200, concurrency=1,
                call_s=1.0, lookahead_s=60.0, cold_start_s=3.0)
    return herd.herd_start(jobs, **{**args, **kw})


@pytest.mark.parametrize("kw, bound, rate", [
    ({"queue_rates": [50.0]}, "the queues' dispatch rate", 50.0),
    ({}, "calls in flight (queue concurrency, run_task instances)", 200.0),
    ({"instances": 100}, "calls in flight (queue concurrency, run_task instances)", 100.0),
    ({"instances": 10, "concurrency": 80}, "calls in flight (queue concurrency, "
                                           "run_task instances)", 200.0),
    ({"queue_rates": [500.0] * 4, "queue_concurrency": 4000, "instances": 1000,
      "call_s": 0.1}, "Firestore's ~500 writes/s on the runs", 500.0),
    ({"queue_rates": [900.0]}, "calls in flight (queue concurrency, run_task instances)",
     200.0),
])
def test_the_tightest_limit_sets_the_herds_start_rate(kw, bound, rate):
    start = _start(10_000, **kw)
    assert (start.bound, start.rate) == (bound, pytest.approx(rate))
    assert start.start_s == pytest.approx(3.0 + 10_000 / rate)


def test_the_shipped_defaults_start_10k_one_second_runs_within_a_minute():
    from freshet.core.specs import DEFAULT_FUNCTION_LIMITS, QueueSpec

    q, run_task = QueueSpec(name="runs"), DEFAULT_FUNCTION_LIMITS["run_task"]
    start = herd.herd_start(10_000, queue_rates=[q.max_dispatches_per_second],
                            queue_concurrency=q.max_concurrent_dispatches,
                            instances=run_task.max_instances,
                            concurrency=run_task.concurrency, call_s=1.123, lookahead_s=60)
    assert start.fits and start.start_s <= 60


def test_one_queue_caps_at_500_a_second_and_a_cold_target_ramps_500_50_5():
    assert herd.dispatch_rates([2000.0], 10**6, 0.01)["the queues' dispatch rate"] == 500
    # 300,000 runs at a wanted 2,000/s: 5 minutes at 500/s (150k), then 750/s.
    assert herd.ramped_seconds(300_000, 2000.0) == pytest.approx(300 + 150_000 / 750)
    assert herd.ramped_seconds(1_000, 2000.0) == pytest.approx(2.0)


def test_a_herd_that_cannot_be_claimed_within_the_lookahead_starts_late():
    start = _start(100_000, lookahead_s=60.0)
    assert start.claim_s == pytest.approx(200.0)  # the runs' 500 writes/s
    assert start.late_s == pytest.approx(140.0) and not start.fits
    assert _start(100, lookahead_s=60.0).late_s == 0
