"""What every benchmark shares: import paths and an emulator (reused or started)."""

import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for sub in ("functions", "infra"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

PROJECT = "demo-freshet"


def firestore():
    """(emulator handle, client): $FIRESTORE_EMULATOR_HOST if it answers, else a new one."""
    from google.cloud import firestore as fs

    from freshet_local import emulators

    emu = emulators.firestore_from_env(project=PROJECT) or emulators.start_firestore(
        project=PROJECT)
    os.environ.update(emu.env())
    emu.wipe()
    return emu, fs.Client(project=emu.project)


def tasks():
    from freshet_local import emulators

    emu = emulators.tasks_from_env() or emulators.start_tasks()
    os.environ.update(emu.env())
    return emu


def median(values) -> float:
    return statistics.median(values)


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
