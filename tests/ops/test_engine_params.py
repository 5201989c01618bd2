"""The engine kinds' params (bigquery_query, bigquery_load, cloud_run_job) and observed
datasets, as apply checks them: typed when good, refused at file:line: field when bad,
and a config refused changes nothing (it never gets past load_config)."""

from datetime import timedelta

import pytest

from freshet.core.errors import ValidationError
from freshet.core.observe import ObserveKind
from freshet.loop.syncs.bigquery_load.params import check as check_load
from freshet.loop.syncs.bigquery_query.params import check as check_query
from freshet.loop.syncs.cloud_run_job.params import check as check_cloud_run
from freshet.loop.syncs.engine_params import check_engine_params
from freshet.ops.config import ConfigError, load_config
from tests.ops.helpers import PIPELINE, write_config

QUERY = {"query": "select * from s.o where ts <= @slot", "maximum_bytes_billed": 10**9}


# -- bigquery_query ---------------------------------------------------------------------


def test_a_good_query_is_typed_with_its_defaults():
    params = check_query({**QUERY, "destination": "my-proj.mart.rollup", "timeout": "2h",
                          "labels": {"team": "sales"}, "location": "EU",
                          "watermark_sql": "select max(ts) from mart.rollup"})
    assert params.write_disposition == "WRITE_TRUNCATE"
    assert params.timeout == timedelta(hours=2)
    assert (params.destination, params.labels, params.location) == (
        "my-proj.mart.rollup", {"team": "sales"}, "EU")


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"query": "select 1"}, "params.maximum_bytes_billed", "is required"),
    ({**QUERY, "maximum_bytes_billed": 1}, "params.maximum_bytes_billed", "10 MB"),
    ({"maximum_bytes_billed": 10**9}, "params.query", "is required"),
    ({**QUERY, "query": " "}, "params.query", "non-empty"),
    ({**QUERY, "destination": "mart rollup"}, "params.destination", "not a table name"),
    ({**QUERY, "destination": "p-roj1.d.t_*"}, "params.destination", "wildcard"),
    ({**QUERY, "write_disposition": "WRITE_TRUNCATE"}, "params.write_disposition",
     "needs a destination"),
    ({**QUERY, "destination": "p-roj1.d.t", "write_disposition": "OVERWRITE"},
     "params.write_disposition", "WRITE_TRUNCATE"),
    ({**QUERY, "labels": {"Team": "x"}}, "params.labels.Team", "label key"),
    ({**QUERY, "timeout": "8d"}, "params.timeout", "at most"),
    ({**QUERY, "sql": "x"}, "params.sql", "unknown key"),
])
def test_a_bad_query_is_refused_naming_the_field(params, field, words):
    with pytest.raises(ValidationError) as exc:
        check_query(params)
    assert exc.value.field == field and words in exc.value.message


# -- bigquery_load ----------------------------------------------------------------------

LOAD = {"source_uris": ["gs://vendor-drop/orders/{slot:%Y-%m-%d}/*.csv"],
        "destination": "my-proj.raw.orders", "autodetect": True}


def test_a_good_load_is_typed():
    params = check_load({**LOAD, "format": "csv", "timeout": "30m"})
    assert params.write_disposition == "WRITE_APPEND" and params.autodetect
    assert params.source_uris == ("gs://vendor-drop/orders/{slot:%Y-%m-%d}/*.csv",)
    typed = check_load({"source_uris": "gs://b-1/x.parquet", "destination": "p-roj1.d.t",
                        "format": "parquet", "schema": [{"name": "id", "type": "int64"}]})
    assert typed.schema == (("id", "INT64", "NULLABLE"),)


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"source_uris": ["s3://x/y"]}, "params.source_uris[0]", "gs://"),
    ({"source_uris": ["gs://b-1/{day}/x"]}, "params.source_uris[0]", "template field"),
    ({"source_uris": []}, "params.source_uris", "1 to"),
    ({"format": "xlsx"}, "params.format", "csv"),
    ({"autodetect": False}, "params.schema", "one of the two"),
    ({"schema": [{"name": "id", "type": "INT64"}]}, "params.schema", "one of the two"),
    ({"autodetect": None, "schema": [{"name": "1d", "type": "INT64"}]},
     "params.schema[0].name", "letters"),
    ({"autodetect": None, "schema": [{"name": "id", "type": "INTEGRAL"}]},
     "params.schema[0].type", "INT64"),
])
def test_a_bad_load_is_refused_naming_the_field(change, field, words):
    params = {k: v for k, v in {**LOAD, **change}.items() if v is not None}
    with pytest.raises(ValidationError) as exc:
        check_load(params)
    assert exc.value.field == field and words in exc.value.message


# -- cloud_run_job ----------------------------------------------------------------------


def test_a_good_cloud_run_job_is_typed():
    params = check_cloud_run({"job": "nightly-export", "region": "europe-west1",
                              "args": ["--day", "today"], "env": {"MODE": "full"},
                              "task_count": 4, "timeout": "48h"})
    assert (params.job, params.task_count, params.timeout) == ("nightly-export", 4,
                                                               timedelta(hours=48))
    full = check_cloud_run({"job": "projects/my-proj/locations/us-east1/jobs/export"})
    assert full.region == "us-east1" and full.args is None


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"job": "Nightly_Export"}, "params.job", "existing Cloud Run job"),
    ({"job": "x", "region": "mars"}, "params.region", "region"),
    ({"job": "x", "args": "--day today"}, "params.args", "list"),
    ({"job": "x", "env": {"FRESHET_RUN_ID": "x"}}, "params.env.FRESHET_RUN_ID", "reserved"),
    ({"job": "x", "task_count": 0}, "params.task_count", "between 1"),
    ({"job": "x", "timeout": "169h"}, "params.timeout", "at most"),
    ({"region": "europe-west1"}, "params.job", "is required"),
])
def test_a_bad_cloud_run_job_is_refused_naming_the_field(params, field, words):
    with pytest.raises(ValidationError) as exc:
        check_cloud_run(params)
    assert exc.value.field == field and words in exc.value.message


def test_other_kinds_params_are_not_the_engines_business():
    assert check_engine_params("http_fetch", {"url": "https://x"}, "params") is None


# -- in the pipeline file: file:line: field ------------------------------------------


def error_for(tmp_path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text), env={})
    return caught.value


def test_a_missing_maximum_bytes_billed_is_refused_at_its_jobs_line(tmp_path):
    text = PIPELINE.replace("  - id: rates\n    kind: noop\n",
                            "  - id: rates\n    kind: bigquery_query\n"
                            "    params: {query: select 1}\n")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].params.maximum_bytes_billed"
    assert str(err).startswith(f"{tmp_path}/pipeline.yaml:")
    assert err.line == next(i for i, line in enumerate(text.splitlines(), 1)
                            if "params: {query" in line)


def test_a_badly_named_cloud_run_job_is_refused_in_the_file(tmp_path):
    text = PIPELINE.replace("  - id: rates\n    kind: noop\n",
                            "  - id: rates\n    kind: cloud_run_job\n"
                            "    params:\n      job: Bad_Name\n")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].params.job"
    assert err.line == next(i for i, line in enumerate(text.splitlines(), 1)
                            if "job: Bad_Name" in line)


OBSERVED = PIPELINE.replace(
    "  - key: finance.rates\n",
    "  - key: finance.rates\n  - key: vendor.orders\n"
    "    observe: {bigquery_table: vendor-proj.sales.orders}\n    observe_every: 10m\n")


def test_an_observed_dataset_is_read_from_the_file(tmp_path):
    config = load_config(write_config(tmp_path, OBSERVED), env={})
    [(key, spec)] = config.observed
    assert key == "vendor.orders" and spec.kind == ObserveKind.BIGQUERY_TABLE
    assert spec.every == timedelta(minutes=10)


def test_an_observed_dataset_that_a_job_produces_is_refused(tmp_path):
    text = OBSERVED.replace("    produces: [finance.rates]",
                            "    produces: [finance.rates, vendor.orders]")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].produces[1]" and "is observed" in err.message


@pytest.mark.parametrize(("old", "new", "field", "words"), [
    ("{bigquery_table: vendor-proj.sales.orders}", "{bigquery_table: vendor-proj.sales.o_*}",
     "datasets[2].observe.bigquery_table", "wildcard"),
    ("{bigquery_table: vendor-proj.sales.orders}", '{bigquery_sql: "select max(t) from x"}',
     "datasets[2].observe.maximum_bytes_billed", "is required"),
    ("observe_every: 10m", "observe_every: 5s", "datasets[2].observe_every", "between"),
])
def test_a_bad_observe_block_is_refused_at_its_line(tmp_path, old, new, field, words):
    err = error_for(tmp_path, OBSERVED.replace(old, new))
    assert err.field == field and words in err.message
    assert err.line is not None
