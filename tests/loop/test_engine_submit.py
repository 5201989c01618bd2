"""What the engine kinds submit for a run: the fixed job id, the slot as a query
parameter (never in the text), URIs rendered for the slot, labels and overrides."""

from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.errors import PermanentError
from freshet.core.external import ATTEMPT_ENV, external_job_id
from freshet.gcp.bigquery import Parameter
from freshet.loop.syncs.bigquery_load.params import check as load_params
from freshet.loop.syncs.bigquery_load.submit import load_job
from freshet.loop.syncs.bigquery_query.params import check as query_params
from freshet.loop.syncs.bigquery_query.submit import query_job
from freshet.loop.syncs.cloud_run_job.params import check as cloud_run_params
from freshet.loop.syncs.cloud_run_job.submit import start_arguments

SLOT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
START = SLOT - timedelta(hours=1)
RUN = "rollup__20261207T0600"


def test_a_query_run_sends_its_slot_as_parameters_and_carries_its_run_labels():
    params = query_params({"query": "select * from s.o where ts > @interval_start and "
                                    "ts <= @slot and note != '@slot'",
                           "maximum_bytes_billed": 10**9, "labels": {"team": "sales"},
                           "timeout": "1h", "destination": "p-roj1.mart.rollup"})
    job_id, job = query_job(params, job="rollup", run_id=RUN, attempt=2, slot=SLOT,
                            interval_start=START)
    assert job_id == external_job_id(RUN, 2)
    assert set(job.parameters) == {Parameter("interval_start", "TIMESTAMP", START),
                                   Parameter("slot", "TIMESTAMP", SLOT)}
    assert "2026" not in job.sql  # nothing formatted into the text
    assert job.labels["team"] == "sales" and job.labels["freshet-attempt"] == "2"
    assert (job.timeout, job.write_disposition) == (timedelta(hours=1), "WRITE_TRUNCATE")


def test_a_query_that_names_no_parameter_is_sent_none():
    params = query_params({"query": "create or replace table m.t as select 1",
                           "maximum_bytes_billed": 10**9})
    _, job = query_job(params, job="j", run_id=RUN, attempt=1, slot=SLOT,
                       interval_start=None)
    assert job.parameters == ()


def test_a_load_run_renders_its_uris_for_the_slot():
    params = load_params({"source_uris": ["gs://drop/{slot:%Y-%m-%d}/*.csv",
                                          "gs://drop/h{interval_start:%H}.csv"],
                          "destination": "p-roj1.raw.orders", "autodetect": True})
    job_id, job = load_job(params, job="orders", run_id=RUN, attempt=1, slot=SLOT,
                           interval_start=START)
    assert job.source_uris == ("gs://drop/2026-12-07/*.csv", "gs://drop/h05.csv")
    assert job_id == external_job_id(RUN, 1)


def test_a_uri_naming_an_interval_the_run_lacks_fails_the_run_permanently():
    params = load_params({"source_uris": ["gs://drop/{interval_start:%H}.csv"],
                          "destination": "p-roj1.raw.orders", "autodetect": True})
    with pytest.raises(PermanentError, match="cannot be rendered"):
        load_job(params, job="o", run_id=RUN, attempt=1, slot=SLOT, interval_start=None)


def test_a_cloud_run_job_run_starts_with_its_overrides_and_region():
    params = cloud_run_params({"job": "export", "args": ["--full"], "env": {"N": 3},
                               "task_count": 2, "timeout": "2h"})
    kwargs = start_arguments(params, run_id=RUN, attempt=3, default_region="europe-west1")
    assert kwargs == {"run_id": RUN, "attempt": 3, "args": ("--full",), "env": {"N": "3"},
                      "task_count": 2, "timeout": timedelta(hours=2),
                      "region": "europe-west1"}
    assert ATTEMPT_ENV not in kwargs["env"]  # the adapter adds the marker itself
