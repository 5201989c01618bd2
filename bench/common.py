"""What every benchmark shares: import paths and an emulator (reused or started)."""

import contextlib
import os
import statistics
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "functions", ROOT / "infra", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

PROJECT = "demo-freshet"


@contextlib.contextmanager
def firestore():
    """(emulator, client) on an emptied database: $FIRESTORE_EMULATOR_HOST if it answers,
    else an emulator started for the benchmark and stopped after it."""
    from google.cloud import firestore as fs

    from freshet_local import emulators

    emu = emulators.firestore_from_env(project=PROJECT) or emulators.start_firestore(
        project=PROJECT)
    try:
        emu.wipe()
        with mock.patch.dict(os.environ, emu.env()):
            client = fs.Client(project=emu.project)
            yield emu, client
            client.close()
    finally:
        emu.stop()  # a no-op for a reused emulator


@contextlib.contextmanager
def tasks():
    from freshet_local import emulators

    emu = emulators.tasks_from_env() or emulators.start_tasks()
    try:
        with mock.patch.dict(os.environ, emu.env()):
            yield emu
    finally:
        emu.stop()


def median(values) -> float:
    return statistics.median(values)


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def put_datasets(store, jobs, datasets=()) -> None:
    """The jobs' datasets stored as the loop stores them, in bulk: each job's group
    (core.groups) with `datasets`' state (all of a job's, or none), and their pointers,
    as apply lays a job out; a dataset no job produces in a document of its own.
    `jobs`: (job id, produces)."""
    from freshet.gcp.grouped import seeded

    docs = seeded(list(jobs), datasets)
    for collection in dict.fromkeys(c for c, _, _ in docs):
        store.put_many(collection, ((i, d) for c, i, d in docs if c == collection))
