from dataclasses import asdict
from datetime import UTC, datetime

import pytest

from freshet.core.errors import ValidationError
from freshet.core.models import Dataset, Job, Run, new_job
from freshet.core.runs import manual_run_id, scheduled_run_id
from freshet.core.settings import load_settings
from freshet.gcp.tasks import task_id
from freshet.loop.delivery import parse_delivery

GOOD = {"id": "ads-sync", "kind": "noop", "schedule": {"cron": "0 * * * *", "timezone": "UTC"}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": ""}, "kind"),
        ({"kind": "   "}, "kind"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "3"}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"schedule": {"cron": "99 * * * *"}}, "schedule.cron"),
        ({"schedule": {"cron": "* * * * *", "timezone": "Nowhere/City"}}, "schedule.timezone"),
        ({"schedule": {"run_at": "2026-12-01T09:00:00"}}, "schedule.run_at"),
        ({"schedule": {"cron": "* * * * *", "every": 5}}, "schedule.every"),
        ({"id": "Has Spaces"}, "id"),
        ({"id": "a/b"}, "id"),
        ({"stuck_threshold_minutes": 0}, "stuck_threshold_minutes"),
        ({"produces": ["ok", "Bad Key"]}, "produces[1]"),
        ({"produces": ["a", "a"]}, "produces"),
        ({"params": ["not", "a", "dict"]}, "params"),
    ],
)
def test_invalid_job_definitions_are_refused_naming_the_field(change, field):
    with pytest.raises(ValidationError) as caught:
        new_job(**{**GOOD, **change})
    assert caught.value.field == field


def test_job_round_trips_through_its_document():
    job = new_job(**GOOD, produces=["ads.performance"], params={"url": "https://x"})
    job.next_run_at = datetime(2026, 11, 28, 12, tzinfo=UTC)
    again = Job.from_doc(job.to_doc())
    assert again == job


def test_run_round_trips_and_ignores_unknown_fields():
    run = Run(id="r", job_id="j", kind="noop", scheduled_for=datetime(2026, 1, 1, tzinfo=UTC))
    assert Run.from_doc({**run.to_doc(), "future_field": 1}) == run


def test_run_ids_are_deterministic():
    slot = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
    assert scheduled_run_id("j", slot) == "j__20261128T123000Z"
    now = datetime(2026, 11, 28, 12, 30, 59, tzinfo=UTC)
    assert manual_run_id("j", now, None) == manual_run_id("j", now.replace(second=1), None)
    assert manual_run_id("j", now, "k1") == manual_run_id("j", now.replace(hour=3), "k1")
    assert manual_run_id("j", now, "k1") != manual_run_id("j", now, "k2")


def test_task_names_are_hashed_and_unique_per_dispatch():
    a, b = task_id("j__20261128T123000Z", 1), task_id("j__20261128T123000Z", 1, dispatch=1)
    assert a != b and len(a.split("-")[0]) == 16
    assert all(c.isalnum() or c in "-_" for c in a)


def test_delivery_attempt_is_body_attempt_plus_retry_count():
    run = "j__20261128T120000Z"
    assert parse_delivery({"X-CloudTasks-TaskRetryCount": "2"}, {"run_id": run}) == (run, 3)
    assert parse_delivery({}, {"run_id": run, "attempt": 2}) == (run, 2)


@pytest.mark.parametrize(
    ("headers", "body", "field"),
    [
        ({}, {}, "run_id"),
        ({}, {"run_id": 5}, "run_id"),
        ({}, {"run_id": "a/b"}, "run_id"),
        ({}, {"run_id": ".."}, "run_id"),
        ({}, {"run_id": "j__x" * 200}, "run_id"),
        ({}, {"run_id": "j__1", "attempt": 0}, "attempt"),
        ({"X-CloudTasks-TaskRetryCount": "x"}, {"run_id": "j__1"}, "X-CloudTasks-TaskRetryCount"),
    ],
)
def test_bad_deliveries_name_the_field(headers, body, field):
    with pytest.raises(ValidationError) as caught:
        parse_delivery(headers, body)
    assert caught.value.field == field


def test_settings_fail_loudly_on_bad_values():
    with pytest.raises(ValidationError, match="FRESHET_LOOKAHEAD_S"):
        load_settings({"FRESHET_LOOKAHEAD_S": "soon"})
    with pytest.raises(ValidationError, match="FRESHET_AUTH"):
        load_settings({"FRESHET_AUTH": "none"})
    assert load_settings({"FRESHET_LOOKAHEAD_S": "30"}).lookahead_s == 30


# -- params JSON and Firestore can hold -------------------------------------------------

def nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(("params", "field"), [
    ({"x": float("nan")}, "params.x"),
    ({"x": float("inf")}, "params.x"),
    ({"x": [1, float("-inf")]}, "params.x[1]"),
    ({"x": 2**63}, "params.x"),
    ({"x": -(2**63) - 1}, "params.x"),
    ({"x": {"y": 10**30}}, "params.x.y"),
    ({"": 1}, "params"),
    ({"x": {"": 1}}, "params.x"),
    ({"__name__": 1}, "params.__name__"),
    ({"x": [[1, 2]]}, "params.x[0]"),
    ({"x": "\ud800"}, "params.x"),
    ({"\udfff": 1}, "params.\udfff"),
    ({"when": __import__("datetime").date(2026, 1, 1)}, "params.when"),
    ({"x": "y" * 40_000}, "params"),
])
def test_params_json_or_firestore_cannot_hold_are_refused_naming_the_field(params, field):
    with pytest.raises(ValidationError) as caught:
        new_job(**GOOD, params=params)
    assert caught.value.field == field


def test_forty_levels_of_nesting_are_refused_and_sixteen_are_kept():
    with pytest.raises(ValidationError) as caught:
        new_job(**GOOD, params={"deep": nested(40)})
    assert caught.value.field.startswith("params.deep.a") and "nested" in caught.value.message
    assert new_job(**GOOD, params=nested(15)).params == nested(15)


def test_the_extremes_of_int64_and_lists_of_objects_are_kept():
    params = {"big": 2**63 - 1, "small": -(2**63), "rows": [{"ids": [1, 2]}], "f": 1.5e308}
    assert new_job(**GOOD, params=params).params == params


@pytest.mark.parametrize(("body", "retries", "field"), [
    ({"run_id": "a__b", "attempt": 2**63}, "0", "attempt"),
    ({"run_id": "a__b", "attempt": 2**64 + 1}, "0", "attempt"),
    ({"run_id": "a__b", "attempt": 52}, "0", "attempt"),
    ({"run_id": "a__b", "attempt": 0}, "0", "attempt"),
    ({"run_id": "a__b", "attempt": 1.0}, "0", "attempt"),
    ({"run_id": "a__b"}, str(2**64), "X-CloudTasks-TaskRetryCount"),
    ({"run_id": "a__b"}, "100001", "X-CloudTasks-TaskRetryCount"),
    ({"run_id": "a__b"}, "1_0", "X-CloudTasks-TaskRetryCount"),
    ({"run_id": "a__b"}, "\u0661", "X-CloudTasks-TaskRetryCount"),  # an Arabic-Indic one
    ({"run_id": "a__b"}, "-1", "X-CloudTasks-TaskRetryCount"),
    ({"run_id": "a__b\n"}, "0", "run_id"),
])
def test_deliveries_outside_the_models_range_are_refused_naming_the_field(body, retries, field):
    with pytest.raises(ValidationError) as caught:
        parse_delivery({"X-CloudTasks-TaskRetryCount": retries}, body)
    assert caught.value.field == field


def test_the_largest_delivery_in_range_is_accepted():
    assert parse_delivery({"X-CloudTasks-TaskRetryCount": " 100000 "},
                          {"run_id": "a__b", "attempt": 51}) == ("a__b", 100051)


def test_lists_a_job_document_holds_are_capped():
    with pytest.raises(ValidationError) as caught:
        new_job(**GOOD, produces=[f"d{i}" for i in range(101)])
    assert caught.value.field == "produces"
    with pytest.raises(ValidationError) as caught:
        new_job(**GOOD, secret_params=[f"s{i}" for i in range(101)])
    assert caught.value.field == "secret_params"


def test_kill_switches_name_at_most_two_hundred_real_kinds():
    from freshet.core.control import parse_control

    for kinds in ([f"k{i}" for i in range(201)], ["Not A Kind"], ["x" * 65]):
        with pytest.raises(ValidationError) as caught:
            parse_control({"disabled_kinds": kinds})
        assert caught.value.field == "disabled_kinds"


def test_a_datasets_document_is_asdicts_and_shares_no_container_with_it():
    at = datetime(2026, 11, 28, 12, tzinfo=UTC)
    ds = Dataset("a", last_success_at=at, daily={"2026-11-28": {"ok": 2, "fail": 1}},
                 triggers=["j"], data_points=[{"at": at, "as_of": None}],
                 data_floor={"at": at, "as_of": at})
    doc = ds.to_doc()
    assert doc == asdict(ds) and list(doc) == list(asdict(ds))
    doc["daily"]["2026-11-28"]["ok"] = 9
    doc["data_points"][0]["as_of"] = at
    doc["triggers"].append("k")
    assert ds.daily == {"2026-11-28": {"ok": 2, "fail": 1}} and ds.triggers == ["j"]
    assert ds.data_points == [{"at": at, "as_of": None}]
