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
