"""Trigger rules as tables: all/any, repeated commits, paused jobs, cycles. No emulator."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from freshet.core.errors import ValidationError
from freshet.core.models import Dataset, new_job
from freshet.core.triggers import (
    FALLBACK_DEPTH_LIMIT,
    advanced,
    decide_trigger,
    depth_limit,
    describe_cycle,
    describe_trigger,
    downstream_of,
    trigger_cycle,
    trigger_map,
    triggered_run_id,
    upstreams_to_read,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def rollup(when="all", seen=None, status="active", after=("sales.orders", "fx.rates")):
    job = new_job(id="rollup", kind="noop", trigger={"after": list(after), "when": when},
                  produces=["sales.revenue"], status=status)
    return replace(job, trigger_versions=dict(seen or {}))


CASES = [
    # (case, job, versions that just advanced, every current version, fires with)
    ("all: both upstreams fresh", rollup(), {"sales.orders": "o2"},
     {"sales.orders": "o2", "fx.rates": "r1"}, {"sales.orders": "o2", "fx.rates": "r1"}),
    ("all: the other upstream was already used", rollup(seen={"fx.rates": "r1"}),
     {"sales.orders": "o2"}, {"sales.orders": "o2", "fx.rates": "r1"}, None),
    ("all: the other upstream never succeeded", rollup(), {"sales.orders": "o2"},
     {"sales.orders": "o2", "fx.rates": None}, None),
    ("all: the second upstream completes the pair", rollup(seen={"sales.orders": "o1",
                                                                 "fx.rates": "r1"}),
     {"fx.rates": "r2"}, {"sales.orders": "o2", "fx.rates": "r2"},
     {"sales.orders": "o2", "fx.rates": "r2"}),
    ("all: a repeated commit of the same versions", rollup(seen={"sales.orders": "o2",
                                                                 "fx.rates": "r2"}),
     {"fx.rates": "r2"}, {"sales.orders": "o2", "fx.rates": "r2"}, None),
    ("all: one run producing both upstreams", rollup(), {"sales.orders": "x", "fx.rates": "x"},
     {"sales.orders": "x", "fx.rates": "x"}, {"sales.orders": "x", "fx.rates": "x"}),
    ("any: each new version runs", rollup("any", seen={"fx.rates": "r1"}),
     {"sales.orders": "o2"}, {}, {"sales.orders": "o2"}),
    ("any: a repeated commit", rollup("any", seen={"sales.orders": "o2"}),
     {"sales.orders": "o2"}, {}, None),
    ("not an upstream of this job", rollup(), {"other.ds": "z"}, {}, None),
    ("a paused job is not triggered", rollup(status="paused"), {"sales.orders": "o2"},
     {"sales.orders": "o2", "fx.rates": "r1"}, None),
]


@pytest.mark.parametrize("case,job,new,versions,fires", CASES, ids=[c[0] for c in CASES])
def test_trigger_table(case, job, new, versions, fires):
    fire = decide_trigger(job, new, versions, T0)
    if fires is None:
        assert fire is None
        return
    assert fire.versions == fires
    assert fire.run_id == triggered_run_id("rollup", fires)
    assert fire.job_fields["last_triggered_at"] == T0
    remembered = fire.job_fields["trigger_versions"]
    assert all(remembered[k] == v for k, v in fires.items())


def test_the_run_id_depends_only_on_the_versions():
    a = triggered_run_id("rollup", {"a": "1", "b": "2"})
    assert a == triggered_run_id("rollup", {"b": "2", "a": "1"})
    assert a != triggered_run_id("rollup", {"a": "1", "b": "3"})
    from freshet.loop.delivery import RUN_ID

    assert RUN_ID.match(triggered_run_id("x" * 100, {"a": "1"}))


def test_after_the_all_run_the_next_needs_both_again():
    first = decide_trigger(rollup(), {"sales.orders": "o2"},
                           {"sales.orders": "o2", "fx.rates": "r1"}, T0)
    job = replace(rollup(), trigger_versions=first.job_fields["trigger_versions"])
    assert decide_trigger(job, {"sales.orders": "o3"},
                          {"sales.orders": "o3", "fx.rates": "r1"}, T0) is None
    assert decide_trigger(job, {"fx.rates": "r2"},
                          {"sales.orders": "o3", "fx.rates": "r2"}, T0) is not None


def test_only_a_success_that_makes_the_dataset_newer_is_a_new_version():
    before = {"a": Dataset("a", last_success_run_id="old"), "b": Dataset("b")}
    after = {"a": Dataset("a", last_success_run_id="run1"),
             "b": Dataset("b", last_success_run_id="older-run")}  # a backfill of an old slot
    assert advanced(before, after, "run1") == {"a": "run1"}
    listed = {"a": Dataset("a", triggers=["j2", "j1"]), "b": Dataset("b", triggers=["j1"])}
    assert downstream_of(listed, ["a", "b"]) == ["j1", "j2"]


def test_all_mode_reads_only_the_upstreams_the_commit_has_not():
    assert upstreams_to_read(rollup(), {"sales.orders": "o"}) == ["fx.rates"]
    assert upstreams_to_read(rollup("any"), {}) == []


# -- definitions, cycles --------------------------------------------------------------------

def job(job_id, produces, after=None):
    return new_job(id=job_id, kind="noop", produces=produces,
                   **({"trigger": {"after": after}} if after else
                      {"schedule": {"cron": "0 * * * *"}}))


def test_a_chain_has_no_cycle_and_maps_datasets_to_jobs():
    jobs = [job("a", ["x"]), job("b", ["y"], ["x"]), job("c", ["z"], ["y", "x"])]
    assert trigger_cycle(jobs) is None
    assert trigger_map(jobs) == {"x": ["b", "c"], "y": ["c"]}


def test_a_cycle_is_named_with_the_datasets_that_close_it():
    jobs = [job("a", ["x"], ["z"]), job("b", ["y"], ["x"]), job("c", ["z"], ["y"])]
    cycle = trigger_cycle(jobs)
    assert describe_cycle(cycle) == "a -[x]-> b -[y]-> c -[z]-> a"


def test_a_cycle_through_a_dataset_named_like_a_job():
    jobs = [job("a", ["b"], ["y"]), job("b", ["y"], ["b"])]
    assert describe_cycle(trigger_cycle(jobs)) == "a -[b]-> b -[y]-> a"


def test_a_job_may_not_be_triggered_by_its_own_output():
    with pytest.raises(ValidationError) as err:
        job("a", ["x"], ["x"])
    assert err.value.field == "trigger.after"


@pytest.mark.parametrize("trigger,field", [
    ({"after": []}, "trigger.after"),
    ({"after": ["a", "a"]}, "trigger.after"),
    ({"after": ["Bad Key"]}, "trigger.after[0]"),
    ({"after": ["a"], "when": "most"}, "trigger.when"),
    ({"after": ["a"], "every": 1}, "trigger.every"),
    ("a", "trigger"),
])
def test_trigger_definitions_are_validated(trigger, field):
    with pytest.raises(ValidationError) as err:
        new_job(id="j", kind="noop", trigger=trigger)
    assert err.value.field == field


def test_a_job_needs_a_schedule_or_a_trigger():
    with pytest.raises(ValidationError) as err:
        new_job(id="j", kind="noop")
    assert err.value.field == "schedule"
    triggered = new_job(id="j", kind="noop", trigger={"after": ["a", "b"], "when": "any"})
    assert triggered.schedule.none and describe_trigger(triggered) == "after any of a, b is fresh"


def test_a_dataset_may_trigger_a_bounded_number_of_jobs():
    from freshet.core.triggers import MAX_DOWNSTREAM, check_triggers

    jobs = [job(f"j{i}", [f"out{i}"], ["x"]) for i in range(MAX_DOWNSTREAM)]
    assert len(check_triggers(jobs)["x"]) == MAX_DOWNSTREAM
    with pytest.raises(ValidationError) as err:
        check_triggers([*jobs, job("one-more", ["out"], ["x"])])
    assert "would trigger 101 jobs" in err.value.message


# -- the run-time depth bound (defense in depth against a trigger loop) -------------------

@pytest.mark.parametrize("jobs, limit", [(None, FALLBACK_DEPTH_LIMIT), (0, FALLBACK_DEPTH_LIMIT),
                                         (1, 1), (2, 2), (500, 500)])
def test_the_depth_bound_is_the_number_of_jobs(jobs, limit):
    assert depth_limit(jobs) == limit


@pytest.mark.parametrize("depth, limit, created", [
    (1, 2, True), (2, 2, True), (3, 2, False), (1, 1, True), (2, 1, False),
    (FALLBACK_DEPTH_LIMIT + 1, FALLBACK_DEPTH_LIMIT, False)])
def test_a_triggered_run_deeper_than_the_bound_is_refused_and_recorded(depth, limit, created):
    fire = decide_trigger(rollup(when="any"), {"sales.orders": "o2"}, {"sales.orders": "o2"},
                          T0, depth=depth, limit=limit, upstream_run_id="orders__x")
    assert fire is not None and fire.depth == depth
    assert (fire.refused is None) == created
    # the versions are remembered either way: a repeated commit refuses (or fires) nothing new
    assert fire.job_fields["trigger_versions"] == {"sales.orders": "o2"}
    if created:
        assert "trigger_refused" not in fire.job_fields
        assert fire.job_fields["last_triggered_at"] == T0
    else:
        refused = fire.job_fields["trigger_refused"]
        assert refused["depth"] == depth and refused["limit"] == limit
        assert refused["at"] == T0 and refused["upstream_run_id"] == "orders__x"
        assert f"depth {depth} exceeds {limit}" in refused["reason"]
        assert "last_triggered_at" not in fire.job_fields
