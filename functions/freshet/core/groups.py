"""Where a produced dataset's state is stored: one document per job's chunk of datasets.

A run's finish writes the state of every dataset it produced. Kept one document per
dataset, a 5-dataset run's finish wrote 6 documents (its run, and 5 datasets); kept
together, the datasets one job produces are one write. A dataset has one producing job
(the config refuses a second: ops.config), so the group a dataset's state lives in is a
pure function of that job's id and the dataset's position in its `produces`: datasets
PER_GROUP at a time, so a group stays far under Firestore's 1 MiB at MAX_PRODUCES of the
largest datasets (tests/integration/test_document_bounds.py proves it).

A group document (`dataset_groups/{group id}`, freshet.gcp.store) is
{job_id, keys: [its datasets], datasets: {key: the dataset's document}}; observed
datasets, and datasets no job produces, keep a document of their own (`datasets/{key}`).
"""

from collections.abc import Iterable, Mapping, Sequence

PER_GROUP = 16  # datasets in one group document, at most
SEP = "~"  # never in a job id (core.models._ID_RE): a group id names its job and chunk


def group_id(job_id: str, chunk: int) -> str:
    return f"{job_id}{SEP}{chunk}"


def group_of(job_id: str, produces: Sequence[str], key: str) -> str | None:
    """The group of `key` among the datasets `job_id` produces (None: not among them)."""
    try:
        return group_id(job_id, list(dict.fromkeys(produces)).index(key) // PER_GROUP)
    except ValueError:
        return None


def chunks(job_id: str, produces: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """A job's groups: each group id and its datasets, in `produces` order."""
    keys = list(dict.fromkeys(produces))
    return {group_id(job_id, i // PER_GROUP): tuple(keys[i:i + PER_GROUP])
            for i in range(0, len(keys), PER_GROUP)}


def layout(jobs: Iterable[tuple[str, Sequence[str]]]) -> dict[str, str]:
    """Each produced dataset's group, given (job id, produces) of every job. A dataset
    two jobs name (only possible for jobs made outside the config) stays with the first."""
    found: dict[str, str] = {}
    for job_id, produces in jobs:
        for gid, keys in chunks(job_id, produces).items():
            for key in keys:
                found.setdefault(key, gid)
    return found


def relayout(jobs: Iterable[tuple[str, Sequence[str]]], pointers: Mapping[str, str],
             groups: Mapping[str, Sequence[str]], own: Iterable[str]
             ) -> dict[str, tuple[str, ...]]:
    """The groups apply must lay out again, and the keys each will hold: those whose
    keys differ from the layout of `jobs`, a key whose pointer names another group, or
    whose state is still in a document of its own (stored before groups); then those no
    job lays out any more, emptied (what they still hold moves to documents of their own).
    Nothing when all is laid out: apply is idempotent."""
    own, wanted = set(own), {}
    placed: set[str] = set()
    for job_id, produces in jobs:
        for gid, keys in chunks(job_id, produces).items():
            keys = tuple(k for k in keys if k not in placed)
            placed.update(keys)
            wanted[gid] = keys
    todo = {gid: keys for gid, keys in wanted.items()
            if tuple(groups.get(gid) or ()) != keys
            or any(pointers.get(k) != gid or k in own for k in keys)}
    todo.update({gid: () for gid, keys in groups.items() if gid not in wanted and keys})
    return todo
