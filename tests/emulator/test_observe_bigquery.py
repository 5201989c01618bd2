"""An observed BigQuery table through the real tables.get (bqemulator, the official
client, Freshet's adapter), judged by the observe pass on the in-memory store with a
fake clock: a table that stops changing turns its consumer stale, a new version of it
makes it fresh again, and a view is refused saying why."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.freshness import State, make_requirement
from freshet.core.observe import ObserveKind, ObserveSpec
from freshet.gcp.bigquery import BigQuery
from freshet.gcp.memory import MemoryStore
from freshet.loop.datasets import get_freshness
from freshet.loop.observe import EngineReader, observe_once
from freshet_local.recording_queue import RecordingQueue
from tests.loop.helpers import loop_settings

PROJECT = "demo-freshet"
M = timedelta(minutes=1)


@pytest.fixture
def vendor(bigquery_emulator):
    """A fresh dataset holding the vendor's `orders` table (written by DDL: bqemulator
    moves lastModifiedTime on CREATE OR REPLACE, not on DML)."""
    client = bigquery_emulator.client()
    name = f"vendor_{uuid.uuid4().hex[:8]}"
    client.create_dataset(name)
    client.query(f"CREATE TABLE {name}.orders AS SELECT 1 AS id").result()
    yield client, name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)


def pipeline(store, table):
    spec = ObserveSpec(ObserveKind.BIGQUERY_TABLE, table)
    store.put_catalog_doc(Catalog(
        datasets={"vendor.orders": DatasetSpec(key="vendor.orders", observe=spec)},
        consumers=(Consumer("finance", "Finance", requires=(
            make_requirement("vendor.orders", "30m", "1h"),)),)).to_doc())


def test_an_observed_table_that_stops_changing_turns_its_consumer_stale(
        bigquery_emulator, vendor):
    client, name = vendor
    store, settings = MemoryStore(), loop_settings()
    pipeline(store, f"{PROJECT}.{name}.orders")
    reader = EngineReader(PROJECT, bigquery=BigQuery(PROJECT, client=client))
    requirement = store.catalog().requirement_for("vendor.orders")

    def observe(now):
        observe_once(store, RecordingQueue(settings), now=now, settings=settings,
                     reader=reader)
        return get_freshness(store, requirement, now)

    modified = client.get_table(f"{name}.orders").modified.astimezone(UTC)
    start = datetime.now(UTC)
    first = observe(start)
    assert (first.state, first.basis, first.data_as_of) == (State.FRESH, "observed", modified)
    # The vendor stops loading; the fake clock runs on, a pass every 5 minutes.
    states = {m: observe(start + m * M).state for m in range(5, 66, 5)}
    assert states[25] == State.FRESH
    assert states[35] == State.WARN
    assert states[65] == State.STALE_DATA
    assert store.get_dataset("vendor.orders").data_as_of == modified  # written once
    # The vendor loads again: the next pass sees the new lastModifiedTime.
    client.query(f"CREATE OR REPLACE TABLE {name}.orders AS SELECT 2 AS id").result()
    reloaded = client.get_table(f"{name}.orders").modified.astimezone(UTC)
    assert reloaded > modified
    healed = observe(max(start + 70 * M, reloaded + M))
    assert healed.data_as_of == reloaded


def test_a_view_is_refused_saying_its_time_is_not_its_datas(bigquery_emulator, vendor):
    client, name = vendor
    client.query(f"CREATE VIEW {name}.orders_v AS SELECT id FROM {name}.orders").result()
    if client.get_table(f"{name}.orders_v").table_type != "VIEW":
        pytest.skip("this bqemulator does not report views as VIEW")
    store, settings = MemoryStore(), loop_settings()
    pipeline(store, f"{PROJECT}.{name}.orders_v")
    reader = EngineReader(PROJECT, bigquery=BigQuery(PROJECT, client=client))
    result = observe_once(store, RecordingQueue(settings), now=datetime.now(UTC),
                          settings=settings, reader=reader)
    assert result.failed == 1
    error = store.get_dataset("vendor.orders").last_error
    assert "is a view" in error and "not its data" in error


def test_an_observation_sql_gives_the_data_time_it_selects(bigquery_emulator, vendor):
    client, name = vendor
    client.query(f"CREATE OR REPLACE TABLE {name}.events AS SELECT "
                 "TIMESTAMP '2026-12-07 05:45:00+00' AS loaded_at").result()
    store, settings = MemoryStore(), loop_settings()
    spec = ObserveSpec(ObserveKind.BIGQUERY_SQL, f"SELECT MAX(loaded_at) FROM {name}.events",
                       maximum_bytes_billed=20_000_000)
    store.put_catalog_doc(Catalog(datasets={
        "vendor.events": DatasetSpec("vendor.events", observe=spec)}).to_doc())
    reader = EngineReader(PROJECT, bigquery=BigQuery(PROJECT, client=client))
    observe_once(store, RecordingQueue(settings), now=datetime(2026, 12, 7, 6, 0, tzinfo=UTC),
                 settings=settings, reader=reader)
    assert store.get_dataset("vendor.events").data_as_of == datetime(2026, 12, 7, 5, 45,
                                                                      tzinfo=UTC)
