"""The observe pass (freshet.loop.observe) over 1,000 observed BigQuery tables.

    python bench/run_all.py bench_observe

- observe_reads_per_pass_1k_tables: Firestore reads of one pass when all 1,000 are due
  and none changed (the steady state): the ledger and the catalog, whatever the count.
- observe_reads_per_pass_1k_tables_10_changed: the same with 10 tables changed (each
  changed one is a transaction that reads its dataset document).
- observe_reads_per_tick_idle: a tick with no pass due reads the ledger only.
- observe_pass_s_1k_tables: one pass's wall time, tables.get answered by the local
  BigQuery emulator (bqemulator, through the official client and Freshet's adapter,
  16 calls at a time), store in memory.
- observe_pass_s_1k_tables_store_only: the same pass with the reads answered in process:
  the plan, the verdicts, the ledger and the store, without the engine.
The store is the in-memory one (freshet.gcp.memory), which counts reads as Firestore
bills them; the ledger and catalog stay single documents up to their page size
(freshet.core.docsize: 1,000 tables' entries are ~100 KB).
"""

import time
from datetime import UTC, datetime, timedelta

import common  # noqa: F401  (import paths)

from freshet.core.catalog import Catalog, DatasetSpec
from freshet.core.observe import ObserveKind, ObserveSpec
from freshet.core.settings import load_settings
from freshet.gcp.memory import MemoryStore
from freshet.loop.observe import EngineReader, observe_once
from freshet_local.recording_queue import RecordingQueue

TABLES = 1_000
ROUNDS = 3
M = timedelta(minutes=1)


class Fixed:
    """Reads answered in process: {table: lastModifiedTime}."""

    def __init__(self, times):
        self.times = times

    def table_time(self, table):
        return self.times[table]


def _store(tables: list[str]) -> MemoryStore:
    store = MemoryStore()
    store.put_catalog_doc(Catalog(datasets={
        f"vendor.t{i:04d}": DatasetSpec(f"vendor.t{i:04d}", observe=ObserveSpec(
            ObserveKind.BIGQUERY_TABLE, t)) for i, t in enumerate(tables)}).to_doc())
    return store


def _pass(store, reader, now, settings):
    """(reads, seconds) of one observe pass at `now`."""
    reads = store.stats.reads
    started = time.perf_counter()
    result = observe_once(store, RecordingQueue(settings), now=now, settings=settings,
                          reader=reader, budget_s=600)
    return store.stats.reads - reads, time.perf_counter() - started, result


def _steady(tables, reader, start, settings, changed=None):
    """A first pass (every dataset new), then steady passes 5 minutes apart; returns
    [(reads, seconds)] of the steady ones."""
    store = _store(tables)
    _pass(store, reader, start, settings)
    found = []
    for i in range(1, ROUNDS + 1):
        if changed is not None:
            changed(i)
        reads, seconds, result = _pass(store, reader, start + 5 * i * M, settings)
        assert result.read == len(tables), result
        found.append((reads, seconds))
    return found


def _emulator_tables(project: str) -> tuple[list[str], object]:
    from freshet_local import emulators

    emu = emulators.start_bigquery(project=project)
    client = emu.client()
    client.create_dataset("vendor")
    names = [f"{project}.vendor.t{i:04d}" for i in range(TABLES)]
    for name in names:  # one DDL each: bqemulator moves lastModifiedTime on DDL
        client.query(f"CREATE TABLE `{name}` AS SELECT 1 AS x").result()
    return names, emu


def run() -> dict:
    settings = load_settings({}, auth_mode="local")
    start = datetime.now(UTC) + M
    names = [f"{common.PROJECT}.vendor.t{i:04d}" for i in range(TABLES)]
    times = {n: start - M for n in names}
    fixed = Fixed(times)
    steady = _steady(names, fixed, start, settings)

    def ten(i):
        for n in names[i * 10:(i + 1) * 10]:
            times[n] = start + 5 * i * M - M

    changed = _steady(names, fixed, start, settings, ten)
    idle = _store(names)
    _pass(idle, fixed, start, settings)
    idle_reads, _, idle_result = _pass(idle, fixed, start + M, settings)
    assert not idle_result.ran

    from freshet.gcp.bigquery import BigQuery

    tables, emu = _emulator_tables(common.PROJECT)
    try:
        reader = EngineReader(common.PROJECT,
                              bigquery=BigQuery(common.PROJECT, client=emu.client()))
        on_emulator = _steady(tables, reader, datetime.now(UTC) + M, settings)
    finally:
        emu.stop()
    return {
        "observe_reads_per_pass_1k_tables": max(r for r, _ in steady),
        "observe_reads_per_pass_1k_tables_10_changed": max(r for r, _ in changed),
        "observe_reads_per_tick_idle": idle_reads,
        "observe_pass_s_1k_tables": round(common.median([s for _, s in on_emulator]), 2),
        "observe_pass_s_1k_tables_store_only": round(
            common.median([s for _, s in steady]), 3),
    }


if __name__ == "__main__":
    print(run())
