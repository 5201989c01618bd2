"""The BigQuery calls Freshet makes (freshet.gcp.bigquery), against bqemulator as
freshet_local.emulators starts it, through the official google-cloud-bigquery client.

What Freshet sends is pinned to Google's REST reference, read off the wire by a small
recording proxy between the client and the emulator (nothing of the client is patched):
  jobs.insert   https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert
  Job resource  https://cloud.google.com/bigquery/docs/reference/rest/v2/Job
                (JobConfiguration.jobTimeoutMs, .labels; JobConfigurationQuery.query,
                useLegacySql, parameterMode, queryParameters, destinationTable,
                writeDisposition, maximumBytesBilled; JobReference.jobId)
  QueryParameter https://cloud.google.com/bigquery/docs/reference/rest/v2/QueryParameter
  jobs.get      https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/get
  jobs.cancel   https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel
  tables.get    https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get
                (Table.lastModifiedTime, Table.type)
  a job id taken answers 409 "duplicate":
                https://cloud.google.com/bigquery/docs/error-messages
bqemulator's gaps and what the local stack does about them: docs/engines.md.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.errors import NotFound, PermanentError, TransientError, ValidationError
from freshet.core.external import EngineState, external_job_id
from freshet.gcp.bigquery import BigQuery, LoadJob, Parameter, QueryJob, is_transient
from freshet_local import emulators

PROJECT = "demo-freshet"
SLOT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def proxy(bigquery_emulator, recording_proxy):
    return recording_proxy(bigquery_emulator.address)


@pytest.fixture
def bq(proxy):
    """The adapter, its client pointed at the emulator through the recording proxy."""
    proxy.requests.clear()
    return BigQuery(PROJECT, client=emulators.bigquery_client(proxy.address, PROJECT))


@pytest.fixture
def dataset(bigquery_emulator):
    """A fresh dataset with a source table `src` of two rows."""
    client = bigquery_emulator.client()
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    client.query(f"CREATE TABLE {name}.src AS SELECT 1 AS id, "
                 "TIMESTAMP '2026-12-07 05:30:00+00' AS loaded_at UNION ALL "
                 "SELECT 2, TIMESTAMP '2026-12-07 05:45:00+00'").result()
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)


def rows(emu, sql):
    return [tuple(r.values()) for r in emu.client().query(sql).result()]


def unique_id(run: str = "run", attempt: int = 1) -> str:
    return external_job_id(f"{run}.{uuid.uuid4().hex[:8]}", attempt)


# -- jobs.insert, as Google documents the request ------------------------------------


def test_a_query_job_is_inserted_with_its_fixed_id_parameters_cap_labels_and_timeout(
        bq, proxy, dataset):
    job_id = unique_id()
    handle = bq.submit_query(job_id, QueryJob(
        sql=f"SELECT id FROM {dataset}.src WHERE loaded_at <= @slot",
        maximum_bytes_billed=50_000_000,
        parameters=(Parameter("slot", "TIMESTAMP", SLOT),
                    Parameter("interval_start", "TIMESTAMP", SLOT - timedelta(hours=1))),
        destination=f"{PROJECT}.{dataset}.rollup", write_disposition="WRITE_TRUNCATE",
        labels={"freshet-run": "r1"}, timeout=timedelta(minutes=30)))
    assert handle.job_id == job_id and not handle.adopted
    [body] = proxy.inserts()
    assert body["jobReference"]["jobId"] == job_id
    assert body["jobReference"]["projectId"] == PROJECT
    config = body["configuration"]
    assert config["jobTimeoutMs"] == "1800000"  # int64 travels as a string
    assert config["labels"] == {"freshet-run": "r1"}
    query = config["query"]
    assert query["query"] == f"SELECT id FROM {dataset}.src WHERE loaded_at <= @slot"
    assert query["useLegacySql"] is False
    assert query["maximumBytesBilled"] == "50000000"
    assert query["parameterMode"] == "NAMED"
    slot = next(p for p in query["queryParameters"] if p["name"] == "slot")
    assert slot["parameterType"] == {"type": "TIMESTAMP"}
    assert slot["parameterValue"]["value"].startswith("2026-12-07 06:00:00")
    assert query["destinationTable"] == {"projectId": PROJECT, "datasetId": dataset,
                                         "tableId": "rollup"}
    assert query["writeDisposition"] == "WRITE_TRUNCATE"


def test_query_parameters_reach_the_query_as_values_never_as_text(bq, bigquery_emulator,
                                                                  dataset):
    hostile = "x'; DROP TABLE src; --"
    bq.submit_query(unique_id(), QueryJob(
        sql=f"CREATE OR REPLACE TABLE {dataset}.params AS SELECT @slot AS slot, "
            "@label AS label",
        maximum_bytes_billed=10_000_000,
        parameters=(Parameter("slot", "TIMESTAMP", SLOT),
                    Parameter("label", "STRING", hostile))))
    [(slot, label)] = rows(bigquery_emulator, f"SELECT slot, label FROM {dataset}.params")
    assert slot == SLOT and label == hostile
    assert len(rows(bigquery_emulator, f"SELECT id FROM {dataset}.src")) == 2


def drop(emu, uri: str, text: str) -> None:
    """An object at `uri` where the emulator's load jobs read gs:// from."""
    if emu.gcs_root is None:
        pytest.skip("a reused emulator: its gs:// folder is unknown")
    path = emu.gcs_root / uri[len("gs://"):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_load_job_is_inserted_with_uris_format_schema_and_disposition(
        bq, proxy, bigquery_emulator, dataset):
    drop(bigquery_emulator, "gs://vendor-drop/orders/2026-12-07/part-1.csv",
         "1,2026-12-07 05:00:00+00\n2,2026-12-07 05:10:00+00\n")
    job_id = unique_id()
    handle = bq.submit_load(job_id, LoadJob(
        source_uris=("gs://vendor-drop/orders/2026-12-07/*.csv",),
        destination=f"{dataset}.orders", format="csv",
        schema=(("id", "INT64", "REQUIRED"), ("loaded_at", "TIMESTAMP", "NULLABLE")),
        write_disposition="WRITE_TRUNCATE", timeout=timedelta(minutes=10)))
    [body] = proxy.inserts()
    load = body["configuration"]["load"]
    assert load["sourceUris"] == ["gs://vendor-drop/orders/2026-12-07/*.csv"]
    assert load["sourceFormat"] == "CSV"
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["destinationTable"] == {"projectId": PROJECT, "datasetId": dataset,
                                        "tableId": "orders"}
    assert [f["name"] for f in load["schema"]["fields"]] == ["id", "loaded_at"]
    assert load["schema"]["fields"][0]["mode"] == "REQUIRED"
    assert "autodetect" not in load or load["autodetect"] is False
    assert body["configuration"]["jobTimeoutMs"] == "600000"
    assert handle.status.state == EngineState.SUCCEEDED
    # bqemulator reads a CSV's first line as a header whatever the job says (a gap,
    # docs/engines.md): the table is there, with the rows after it.
    assert rows(bigquery_emulator, f"SELECT id FROM {dataset}.orders") == [(2,)]


def test_a_load_job_without_schema_asks_bigquery_to_autodetect(bq, proxy, bigquery_emulator,
                                                               dataset):
    drop(bigquery_emulator, "gs://bkt/x.json", '{"id": 1}\n')
    bq.submit_load(unique_id(), LoadJob(source_uris=("gs://bkt/x.json",),
                                        destination=f"{dataset}.auto", format="json"))
    [body] = proxy.inserts()
    assert body["configuration"]["load"]["autodetect"] is True
    assert body["configuration"]["load"]["sourceFormat"] == "NEWLINE_DELIMITED_JSON"


# -- idempotence: one id, one job --------------------------------------------------------


def test_a_repeated_submission_adopts_the_job_that_exists(bq, bigquery_emulator, dataset):
    bigquery_emulator.client().query(f"CREATE TABLE {dataset}.hits (n INT64)").result()
    job = QueryJob(sql=f"INSERT INTO {dataset}.hits (n) VALUES (1)",
                   maximum_bytes_billed=10_000_000)
    job_id = unique_id()
    first = bq.submit_query(job_id, job)
    again = bq.submit_query(job_id, job)
    assert (first.adopted, again.adopted) == (False, True)
    assert again.job_id == job_id and again.status.state == EngineState.SUCCEEDED
    assert rows(bigquery_emulator, f"SELECT n FROM {dataset}.hits") == [(1,)]


def test_twenty_duplicate_deliveries_of_one_start_create_exactly_one_job(
        bq, bigquery_emulator, dataset):
    bigquery_emulator.client().query(f"CREATE TABLE {dataset}.hits (n INT64)").result()
    job_id = unique_id("nightly__20261207T0600", 1)
    job = QueryJob(sql=f"INSERT INTO {dataset}.hits (n) VALUES (1)",
                   maximum_bytes_billed=10_000_000)
    with ThreadPoolExecutor(max_workers=20) as pool:
        handles = list(pool.map(lambda _: bq.submit_query(job_id, job), range(20)))
    assert {h.job_id for h in handles} == {job_id}
    assert sum(not h.adopted for h in handles) == 1
    assert rows(bigquery_emulator, f"SELECT n FROM {dataset}.hits") == [(1,)]
    listed = [j.job_id for j in bigquery_emulator.client().list_jobs() if j.job_id == job_id]
    assert listed == [job_id]


# -- jobs.get and jobs.cancel ----------------------------------------------------------


def test_a_poll_reads_the_end_and_the_bytes_processed(bq, dataset):
    job_id = unique_id()
    bq.submit_query(job_id, QueryJob(sql=f"SELECT id FROM {dataset}.src",
                                     maximum_bytes_billed=10_000_000))
    status = bq.poll(job_id)
    assert status.state == EngineState.SUCCEEDED
    assert "bytes_processed" in dict(status.stats)
    assert job_id in status.link


def test_a_failing_query_polls_as_failed_with_bigquerys_reason(bq):
    job_id = unique_id()
    handle = bq.submit_query(job_id, QueryJob(sql="SELECT FROM WHERE",
                                              maximum_bytes_billed=10_000_000))
    status = bq.poll(job_id)
    assert handle.status.state == status.state == EngineState.FAILED
    assert "invalidQuery" in status.error


def test_polling_a_job_that_does_not_exist_is_not_found(bq):
    with pytest.raises(NotFound):
        bq.poll("freshet_never_submitted_1")


def test_cancelling_a_finished_job_leaves_it_as_it_ended(bq, proxy, dataset):
    job_id = unique_id()
    bq.submit_query(job_id, QueryJob(sql=f"SELECT id FROM {dataset}.src",
                                     maximum_bytes_billed=10_000_000))
    bq.cancel(job_id)
    assert any(r["method"] == "POST" and r["path"].split("?")[0].endswith(
        f"/jobs/{job_id}/cancel") for r in proxy.requests)
    assert bq.poll(job_id).state == EngineState.SUCCEEDED


def test_cancelling_a_job_that_does_not_exist_is_not_found(bq):
    with pytest.raises(NotFound):
        bq.cancel("freshet_never_submitted_2")


# -- tables.get (observations) ---------------------------------------------------------


def test_table_facts_read_last_modified_time_and_follow_a_rebuild(bq, bigquery_emulator,
                                                                   dataset):
    first = bq.table_facts(f"{PROJECT}.{dataset}.src")
    assert first.table_type == "TABLE" and first.modified.tzinfo is not None
    assert abs(first.modified - datetime.now(UTC)) < timedelta(minutes=5)
    time.sleep(1.1)
    bigquery_emulator.client().query(
        f"CREATE OR REPLACE TABLE {dataset}.src AS SELECT 3 AS id").result()
    assert bq.table_facts(f"{dataset}.src").modified > first.modified


def test_a_view_is_refused_with_the_reason(bq, bigquery_emulator, dataset):
    bigquery_emulator.client().query(
        f"CREATE VIEW {dataset}.recent AS SELECT * FROM {dataset}.src").result()
    with pytest.raises(PermanentError, match="view's lastModifiedTime is when its "
                                             "definition changed"):
        bq.table_facts(f"{dataset}.recent")


def test_a_wildcard_table_is_refused_before_any_call(bq, proxy):
    with pytest.raises(ValidationError, match="wildcard"):
        bq.table_facts(f"{PROJECT}.sales.events_*")
    assert proxy.requests == []


def test_a_missing_table_is_not_found(bq, dataset):
    with pytest.raises(NotFound):
        bq.table_facts(f"{dataset}.nope")


# -- opt-in SQL -------------------------------------------------------------------------


def test_observation_sql_returns_the_time_and_carries_its_cap(bq, proxy, dataset):
    when = bq.query_time(f"SELECT MAX(loaded_at) FROM {dataset}.src", 20_000_000)
    assert when == datetime(2026, 12, 7, 5, 45, tzinfo=UTC)
    [body] = proxy.inserts()
    assert body["configuration"]["query"]["maximumBytesBilled"] == "20000000"


def test_observation_sql_returning_null_is_no_time(bq, dataset):
    assert bq.query_time(f"SELECT MAX(loaded_at) FROM {dataset}.src WHERE id > 99",
                         20_000_000) is None


def test_observation_sql_returning_no_time_is_refused(bq, dataset):
    with pytest.raises(PermanentError, match="must return one TIMESTAMP"):
        bq.query_time(f"SELECT COUNT(*) FROM {dataset}.src", 20_000_000)


# -- errors: transient or permanent ------------------------------------------------------


def test_an_unreachable_bigquery_is_transient():
    dead = BigQuery(PROJECT, client=emulators.bigquery_client("127.0.0.1:9", PROJECT),
                    deadline_s=2)
    with pytest.raises(TransientError):
        dead.poll("freshet_x_1")


@pytest.mark.parametrize(("code", "reason", "transient"), [
    (429, "rateLimitExceeded", True), (500, "backendError", True), (503, "", True),
    (403, "rateLimitExceeded", True), (403, "accessDenied", False),
    (400, "invalidQuery", False), (404, "notFound", False)])
def test_googles_errors_are_told_apart_by_code_and_reason(code, reason, transient):
    from google.api_core import exceptions as gexc

    exc = gexc.from_http_status(code, "x", errors=[{"reason": reason}] if reason else [])
    assert is_transient(exc) is transient
