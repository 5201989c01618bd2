"""Observed datasets, pure: the observe: block's checks, when a read is due, and what an
observation does to the dataset (and so to its consumers' freshness)."""

from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.errors import ValidationError
from freshet.core.freshness import State, evaluate, make_requirement
from freshet.core.models import Dataset
from freshet.core.observe import (
    DEFAULT_OBSERVE_EVERY,
    OBSERVED,
    Ledger,
    Observation,
    ObserveKind,
    ObserveSpec,
    Seen,
    apply_observation,
    freshness_basis,
    make_observe,
    observation_due,
    observed_version,
    parse_table,
    recorded,
)

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
M = timedelta(minutes=1)


# -- the observe: block -----------------------------------------------------------


def test_a_table_observation_defaults_to_every_five_minutes():
    spec = make_observe({"bigquery_table": "vendor-proj.sales.orders"}, "datasets[0].observe")
    assert spec == ObserveSpec(ObserveKind.BIGQUERY_TABLE, "vendor-proj.sales.orders",
                               DEFAULT_OBSERVE_EVERY)
    assert ObserveSpec.from_dict(spec.to_dict()) == spec


def test_a_dataset_table_name_takes_the_default_project():
    spec = make_observe({"bigquery_table": "sales.orders"}, "o", default_project="my-proj")
    assert spec.target == "my-proj.sales.orders"


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"bigquery_table": "vendor-proj.sales.events_*"}, "o.bigquery_table", "wildcard"),
    ({"bigquery_table": "not a table"}, "o.bigquery_table", "not a table name"),
    ({"bigquery_table": "Proj.sales.orders"}, "o.bigquery_table", "not a table name"),
    ({"gcs_prefix": "s3://bucket/x/"}, "o.gcs_prefix", "gs://"),
    ({"gcs_prefix": "gs://B/x/"}, "o.gcs_prefix", "bucket name"),
    ({"gcs_prefix": "gs://bucket/x/*.csv"}, "o.gcs_prefix", "not a pattern"),
    ({"bigquery_sql": "select max(loaded_at) from t"}, "o.maximum_bytes_billed",
     "is required"),
    ({"bigquery_sql": "select 1", "maximum_bytes_billed": 5}, "o.maximum_bytes_billed",
     "10 MB"),
    ({"bigquery_sql": "select 1", "maximum_bytes_billed": "lots"},
     "o.maximum_bytes_billed", "whole number"),
    ({"bigquery_table": "p-roj1.d.t", "maximum_bytes_billed": 10**8},
     "o.maximum_bytes_billed", "free metadata"),
    ({"bigquery_table": "p-roj1.d.t", "gcs_prefix": "gs://bkt/x/"}, "o", "exactly one"),
    ({}, "o", "exactly one"),
    ({"table": "p-roj1.d.t"}, "o.table", "unknown key"),
    ("p-roj1.d.t", "o", "mapping"),
])
def test_a_bad_observe_block_is_refused_naming_the_field(raw, field, words):
    with pytest.raises(ValidationError) as exc:
        make_observe(raw, "o")
    assert exc.value.field == field
    assert words in exc.value.message


def test_observe_every_is_checked_at_its_own_field():
    with pytest.raises(ValidationError) as exc:
        make_observe({"gcs_prefix": "gs://bkt/x/"}, "datasets[1].observe", "10s",
                     every_field="datasets[1].observe_every")
    assert exc.value.field == "datasets[1].observe_every"
    spec = make_observe({"gcs_prefix": "gs://bkt/x/"}, "o", "15m")
    assert spec.every == timedelta(minutes=15)


def test_an_sql_observation_keeps_its_cap():
    spec = make_observe({"bigquery_sql": " select max(loaded_at) from v.o ",
                         "maximum_bytes_billed": 100_000_000}, "o")
    assert spec.target == "select max(loaded_at) from v.o"
    assert spec.maximum_bytes_billed == 100_000_000


def test_a_quoted_table_name_is_read_without_its_backticks():
    assert str(parse_table("`p-roj1.d.t`", "x")) == "p-roj1.d.t"


# -- when a read is due ---------------------------------------------------------------


@pytest.mark.parametrize(("last", "due"), [
    (None, True),
    (T0 - 5 * M, True),
    (T0 - 5 * M + timedelta(seconds=9), True),  # due within the pass's slack
    (T0 - 5 * M + timedelta(seconds=11), False),
    (T0 - M, False),
])
def test_a_dataset_is_read_once_per_observe_every(last, due):
    assert observation_due(last, 5 * M, T0) is due


# -- the observation's verdict ----------------------------------------------------------


def test_a_first_observation_makes_the_dataset_known_with_the_tables_time():
    ds = apply_observation(Dataset(key="vendor.orders"), Observation("vendor.orders", T0 - M), T0)
    assert ds.data_as_of == T0 - M
    assert ds.last_success_at == T0
    assert freshness_basis(True, ds) == OBSERVED


def test_new_data_moves_data_as_of_and_records_a_point():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    later = apply_observation(ds, Observation("v", T0 + 4 * M), T0 + 5 * M)
    assert later.data_as_of == T0 + 4 * M
    assert later.data_points[-1] == {"at": T0 + 5 * M, "as_of": T0 + 4 * M}


def test_the_same_data_again_changes_nothing_to_write():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    assert apply_observation(ds, Observation("v", T0 - M), T0 + 5 * M) == ds


def test_the_version_follows_the_data_time():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    assert ds.last_success_run_id == observed_version(T0 - M)
    later = apply_observation(ds, Observation("v", T0 + 4 * M), T0 + 5 * M)
    assert later.last_success_run_id == observed_version(T0 + 4 * M) != observed_version(T0 - M)


def test_the_same_permanent_error_is_recorded_once():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    failed = apply_observation(ds, Observation("v", error="gone"), T0 + 5 * M)
    assert apply_observation(failed, Observation("v", error="gone"), T0 + 10 * M) == failed
    other = apply_observation(failed, Observation("v", error="denied"), T0 + 10 * M)
    assert other.last_error == "denied" and other.consecutive_failures == 2


def test_an_observed_dataset_with_no_data_yet_is_unknown():
    ds = apply_observation(Dataset(key="v"), Observation("v", None), T0)
    judged = evaluate(ds, make_requirement("v", "1h", "2h"), T0)
    assert (judged.state, judged.basis) == (State.UNKNOWN, "observed")


def test_the_ledger_asks_for_a_commit_only_when_the_data_time_or_the_error_changes():
    first, commit = recorded(None, Observation("v", T0 - M), T0)
    assert commit and first == Seen(T0, T0 - M)
    same, commit = recorded(first, Observation("v", T0 - M), T0 + 5 * M)
    assert not commit and same == Seen(T0 + 5 * M, T0 - M)
    assert recorded(same, Observation("v", error="503", transient=True), T0 + 10 * M) == (
        same, False)
    broken, commit = recorded(same, Observation("v", error="gone"), T0 + 10 * M)
    assert commit and broken == Seen(T0 + 10 * M, T0 - M, "gone")
    assert recorded(broken, Observation("v", error="gone"), T0 + 15 * M)[1] is False
    assert recorded(broken, Observation("v", T0 - M), T0 + 20 * M)[1] is True


def test_the_ledger_round_trips_its_document():
    ledger = Ledger({"v": Seen(T0, T0 - M, "x"), "w": Seen(T0, None)}, T0 + 5 * M)
    assert Ledger.from_doc(ledger.to_doc()) == ledger
    assert Ledger.from_doc({}).due(T0)


def test_an_older_time_is_not_trusted_and_is_shown():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    back = apply_observation(ds, Observation("v", T0 - 60 * M), T0 + 5 * M)
    assert back.data_as_of == T0 - M
    assert back.watermark_issue == "backwards" and back.rejected_watermark == T0 - 60 * M


def test_a_time_in_the_future_is_not_trusted():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 + 60 * M), T0)
    assert ds.data_as_of is None and ds.watermark_issue == "future"


def test_a_transient_read_error_changes_nothing():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    assert apply_observation(ds, Observation("v", error="503", transient=True), T0 + M) == ds


def test_a_permanent_read_error_is_a_failure_that_keeps_the_last_success():
    ds = apply_observation(Dataset(key="v"), Observation("v", T0 - M), T0)
    failed = apply_observation(ds, Observation("v", error="table is a view"), T0 + 5 * M)
    assert failed.failing and failed.last_error == "table is a view"
    assert failed.last_success_at == T0
    healed = apply_observation(failed, Observation("v", T0 - M), T0 + 10 * M)
    assert not healed.failing


def test_an_observed_table_that_stops_changing_turns_its_consumer_stale():
    requirement = make_requirement("v", "1h", "2h")
    ds = apply_observation(Dataset(key="v"), Observation("v", T0), T0)
    now = T0
    states = []
    for _ in range(30):  # read every 5 minutes for 2.5 hours; the table never changes
        now += 5 * M
        ds = apply_observation(ds, Observation("v", T0), now)
        states.append((now - T0, evaluate(ds, requirement, now).state))
    assert dict(states)[timedelta(minutes=55)] == State.FRESH
    assert dict(states)[timedelta(hours=1)] == State.WARN
    assert dict(states)[timedelta(hours=2)] == State.STALE_DATA


def test_an_empty_prefix_is_observed_but_has_no_data_time():
    ds = apply_observation(Dataset(key="v"), Observation("v", None), T0)
    assert ds.data_as_of is None and ds.last_success_at == T0


# -- the pass's plan ----------------------------------------------------------------------


def specs_of(**targets) -> dict[str, ObserveSpec]:
    kinds = {"t": ObserveKind.BIGQUERY_TABLE, "g": ObserveKind.GCS_PREFIX,
             "s": ObserveKind.BIGQUERY_SQL}
    return {key: ObserveSpec(kinds[key[0]], target, 5 * M,
                             10**8 if key[0] == "s" else None)
            for key, target in targets.items()}


def test_a_pass_plans_only_the_due_reads_grouped_by_kind():
    from freshet.core.observe import plan_observations

    specs = specs_of(t1="p-roj1.d.b", t2="p-roj1.d.a", g1="gs://bkt/x/", s1="select 1")
    plan = plan_observations(specs, {"t1": Seen(T0 - M, T0 - M)}, T0)
    assert plan.tables == (("t2", "p-roj1.d.a"),)  # t1 was read a minute ago
    assert plan.prefixes == (("g1", "gs://bkt/x/"),)
    assert [k for k, _ in plan.sql] == ["s1"]
    assert plan.reads == 3


def test_a_pass_over_its_limit_reads_the_longest_unread_first():
    from freshet.core.observe import plan_observations

    specs = specs_of(t1="p-roj1.d.t1", t2="p-roj1.d.t2", t3="p-roj1.d.t3")
    old, newer = Seen(T0 - 60 * M, T0 - 60 * M), Seen(T0 - 9 * M, T0 - 9 * M)
    plan = plan_observations(specs, {"t2": old, "t3": newer}, T0, limit=2)
    assert [k for k, _ in plan.tables] == ["t1", "t2"]  # never read, then the oldest
