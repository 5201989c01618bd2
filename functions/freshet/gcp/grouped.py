"""Produced datasets' state stored in groups (freshet.core.groups): what both stores share.

Documents:
- `datasets/{group id}`: {job_id, keys: [its datasets, in order], datasets: {key: the
  dataset's document, its days and data points as texts (core.compact)}}; a key listed
  without an entry has no state yet. A group id
  holds `~` (core.groups), which no dataset key may: groups share the `datasets`
  collection with the documents of their own (below), so the publish's one query on
  `updated_at`, and one listing, read both.
- `dataset_keys/{key}`: {key, group}: where a produced dataset's state is, so that
  get_dataset(key) outside a run, a trigger's other upstream, and a transaction that
  meets a dataset apply moved since its run began find it (apply writes it when it lays
  a job out: regroup; so does the api's create; a finish writes one only for a dataset
  nothing laid out, a job written directly).
- `datasets/{key}`: the state of an observed dataset, or of one no job produces (and,
  until apply or their job's next finish moves it, of a dataset stored before groups).

A transaction locates each dataset it reads (`get_datasets`): given the run's owner
(job id, produces) it reads the owner's group(s) and nothing else; a dataset missing from
the group it should be in (laid out again since the run began, or never laid out) is
looked up through its pointer, then its own document. Every set_dataset of the
transaction to one group is one write of that group, at the transaction's end (`flush`).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from freshet.core.compact import compacted, expanded
from freshet.core.groups import SEP, chunks, group_of
from freshet.core.models import Dataset

DATASETS, KEYS = "datasets", "dataset_keys"
GROUPS = DATASETS  # a group's id tells it apart (core.groups.SEP)


def entries(doc: dict | None) -> dict[str, Dataset]:
    """The datasets a group document holds state for, stamped with its commit time."""
    if not doc:
        return {}
    held, stamp = doc.get("datasets") or {}, doc.get("updated_at")
    return {k: Dataset.from_doc({**expanded(held[k]), "key": k, "updated_at": stamp})
            for k in doc.get("keys") or () if k in held}


def is_group(doc: dict) -> bool:
    return "keys" in doc and "key" not in doc


def listed(docs: Iterable[dict]) -> list[Dataset]:
    """Every dataset with state in `docs` (of the datasets collection): the groups'
    entries and the documents of their own, by key."""
    docs = list(docs)
    found = {d["key"]: Dataset.from_doc(d) for d in docs if not is_group(d) and d.get("key")}
    for doc in docs:
        if is_group(doc):
            found.update(entries(doc))
    return [found[k] for k in sorted(found)]


def layout_of(docs: Iterable[dict]) -> tuple[dict[str, list[str]], list[str]]:
    """(each group's keys, the datasets not observed with a document of their own)."""
    groups, own = {}, []
    for d in docs:
        if is_group(d):
            groups[_gid(d)] = list(d["keys"])
        elif d.get("key") and d.get("freshness_basis") != "observed":
            own.append(d["key"])
    return groups, own


def _gid(doc: dict) -> str:
    return doc["group"]


def _entry(dataset: Dataset) -> dict:
    """Its document, its days and data points one text each (core.compact): a group is
    read by every publish that finds it changed, and at a run's finish."""
    doc = dataset.to_doc()
    doc.pop("updated_at", None)  # the group's commit time stands for it
    return compacted(doc)


def _new_group(gid: str) -> dict:
    return {"group": gid, "job_id": gid.rsplit(SEP, 1)[0], "keys": [], "datasets": {}}


@dataclass
class Located:
    """What one transaction learnt of where its datasets are, and what it will write."""

    where: dict[str, str | None] = field(default_factory=dict)  # key -> group, None: own doc
    groups: dict[str, dict | None] = field(default_factory=dict)  # as read, then changed
    pointers: dict[str, str | None] = field(default_factory=dict)  # key -> group it names
    plain: dict[str, dict | None] = field(default_factory=dict)  # datasets/{key} as read
    dirty: set[str] = field(default_factory=set)  # groups to write
    point: dict[str, str | None] = field(default_factory=dict)  # pointers to write (None: drop)
    drop: set[str] = field(default_factory=set)  # datasets/{key} to delete


class GroupedTx:
    """A transaction's dataset reads and writes, on its store's `_get_all`, `_put` and
    `_remove`."""

    _loc: Located

    def _get_all(self, collection: str, ids: list[str]) -> dict[str, dict | None]:
        raise NotImplementedError

    def _put(self, collection: str, doc_id: str, doc: dict) -> None:
        raise NotImplementedError

    def _remove(self, collection: str, doc_id: str) -> None:
        raise NotImplementedError

    def _read_groups(self, gids: set[str]) -> None:
        todo = sorted(g for g in gids if g not in self._loc.groups)
        self._loc.groups.update(self._get_all(GROUPS, todo))

    def _listed_in(self, key: str, gid: str | None) -> bool:
        doc = self._loc.groups.get(gid) if gid is not None else None
        return doc is not None and key in (doc.get("keys") or ())

    def get_dataset(self, key: str) -> Dataset | None:
        return self.get_datasets([key])[key]

    def get_datasets(self, keys: list[str], owner: tuple[str, tuple[str, ...]] | None = None,
                     *, observed: bool = False) -> dict[str, Dataset | None]:
        """The datasets as they are (None: no state). `owner`: (job id, produces) of the
        run they belong to, whose groups hold them unless laid out otherwise; `observed`:
        observed datasets, each in a document of its own (no job produces one)."""
        loc, keys = self._loc, list(dict.fromkeys(keys))
        if observed:
            for k, doc in self._get_all(DATASETS, [k for k in keys if k not in loc.where]
                                        ).items():
                loc.plain[k], loc.where[k] = doc, None
        want = {k: group_of(owner[0], owner[1], k) for k in keys} if owner else {}
        self._read_groups({g for g in want.values() if g is not None})
        for k in keys:
            if k not in loc.where and self._listed_in(k, want.get(k)):
                loc.where[k] = want[k]
        self._locate([k for k in keys if k not in loc.where], want)
        return {k: self._state(k) for k in keys}

    def _locate(self, keys: list[str], want: dict[str, str | None]) -> None:
        """Through their pointers, then their own documents."""
        if not keys:
            return
        loc = self._loc
        for k, doc in self._get_all(KEYS, keys).items():
            loc.pointers[k] = doc.get("group") if doc else None
        self._read_groups({loc.pointers[k] for k in keys if loc.pointers[k]})
        rest = []
        for k in keys:
            if self._listed_in(k, loc.pointers[k]):
                loc.where[k] = loc.pointers[k]
            else:
                rest.append(k)
        for k, doc in self._get_all(DATASETS, rest).items():
            loc.plain[k] = doc
            observed = doc is not None and doc.get("freshness_basis") == "observed"
            # Produced, but not laid out: its state moves into its group when written.
            loc.where[k] = None if observed else want.get(k)
            if loc.where[k] is not None:
                self._read_groups({loc.where[k]})

    def _state(self, key: str) -> Dataset | None:
        gid = self._loc.where.get(key)
        if gid is not None and self._listed_in(key, gid):
            held = (self._loc.groups[gid] or {}).get("datasets") or {}
            return Dataset.from_doc({**expanded(held[key]), "key": key}) if key in held \
                else None
        doc = self._loc.plain.get(key)
        return None if doc is None else Dataset.from_doc(doc)

    def _group(self, gid: str) -> dict:
        loc = self._loc
        if loc.groups.get(gid) is None:
            loc.groups[gid] = _new_group(gid)
        loc.dirty.add(gid)
        return loc.groups[gid]

    def _adopt(self, key: str, gid: str) -> dict:
        """The group document `key` is written into; listing it there for the first time
        (a dataset no apply laid out) also points its pointer there and drops its own old
        document (stored before groups)."""
        loc, doc = self._loc, self._group(gid)
        if key not in doc["keys"]:
            doc["keys"].append(key)
            if loc.pointers.get(key) != gid:
                loc.point[key] = gid
            if loc.plain.get(key) is not None:
                loc.drop.add(key)
        return doc

    def set_dataset(self, dataset: Dataset) -> None:
        gid = self._loc.where.get(dataset.key)
        if gid is None:  # its own document (observed, produced by no job, or never read)
            self._put(DATASETS, dataset.key, dataset.to_doc())
            return
        self._adopt(dataset.key, gid)["datasets"][dataset.key] = _entry(dataset)

    def set_triggers(self, key: str, job_ids: list[str]) -> None:
        """The dataset's `triggers` list, nothing else of it (read it first: get_datasets)."""
        gid, state = self._loc.where.get(key), self._state(key) or Dataset(key=key)
        if list(state.triggers) == list(job_ids) and (gid is None or self._listed_in(key, gid)):
            return
        state.triggers = list(job_ids)
        self.set_dataset(state)

    def add_dataset_trigger(self, key: str, job_id: str) -> None:
        """List `job_id` on the dataset's triggers (read it first)."""
        listed = list((self._state(key) or Dataset(key=key)).triggers)
        if job_id not in listed:
            self.set_triggers(key, [*listed, job_id])

    def regroup(self, gid: str, keys: list[str]) -> None:
        """Lay out one group: exactly `keys`, in order, each moved in with its state from
        where it is (read them first: get_datasets); a key it listed and no longer does
        moves out to a document of its own. Writes nothing when it is laid out already."""
        loc = self._loc
        self._read_groups({gid})
        if (list((loc.groups.get(gid) or {}).get("keys") or []) == keys
                and all(loc.pointers.get(k) == gid for k in keys)):
            return
        for k in keys:
            was, state = loc.where.get(k), self._state(k)
            if was is not None and was != gid and self._listed_in(k, was):
                self._leave(k, was)
            doc = self._adopt(k, gid)
            if state is not None:
                doc["datasets"][k] = _entry(state)
            if loc.pointers.get(k) != gid:
                loc.point[k] = gid
        doc = self._group(gid)
        for k in [k for k in doc["keys"] if k not in keys]:
            held = (doc.get("datasets") or {}).get(k)
            self._leave(k, gid)
            if held is not None:
                self._put(DATASETS, k, {**expanded(held), "key": k})
            loc.point[k] = None
        doc["keys"] = list(keys)

    def read_layout(self, job_id: str, produces: Sequence[str]) -> None:
        """What lay_out needs read: the datasets and the job's groups (reads come first)."""
        self.get_datasets(list(produces))
        self._read_groups(set(chunks(job_id, produces)))

    def lay_out(self, job_id: str, produces: Sequence[str]) -> None:
        """The job's groups laid out (after read_layout)."""
        for gid, keys in chunks(job_id, produces).items():
            self.regroup(gid, list(keys))

    def _leave(self, key: str, gid: str) -> None:
        doc = self._group(gid)
        doc["keys"] = [k for k in doc["keys"] if k != key]
        (doc.get("datasets") or {}).pop(key, None)

    def flush(self) -> None:
        """The groups, pointers and deletes this transaction's changes make: once each."""
        loc = self._loc
        for gid in sorted(loc.dirty):
            self._put(GROUPS, gid, loc.groups[gid])
        for key, gid in sorted(loc.point.items()):
            if gid is None:
                self._remove(KEYS, key)
            else:
                self._put(KEYS, key, {"key": key, "group": gid})
        for key in sorted(loc.drop):
            self._remove(DATASETS, key)
        self._loc = Located()


class GroupedReads:
    """A store's plain dataset reads and trigger writes, on its `_get` and `transact`."""

    def _get(self, collection: str, doc_id: str) -> dict | None:
        raise NotImplementedError

    def transact(self, fn: Any, max_attempts: int = 10) -> Any:
        raise NotImplementedError

    def get_dataset(self, key: str) -> Dataset | None:
        pointer = self._get(KEYS, key)
        if pointer is not None and pointer.get("group"):
            doc = self._get(GROUPS, pointer["group"])
            if doc is not None and key in (doc.get("keys") or ()):
                return entries(doc).get(key)
        doc = self._get(DATASETS, key)
        return None if doc is None else Dataset.from_doc(doc)

    def add_dataset_trigger(self, key: str, job_id: str) -> None:
        def body(tx: GroupedTx) -> None:
            tx.get_datasets([key])
            tx.add_dataset_trigger(key, job_id)

        self.transact(body)

    def set_dataset_triggers(self, key: str, job_ids: list[str]) -> None:
        """Only the `triggers` field: the run-time fields belong to bookkeeping."""
        def body(tx: GroupedTx) -> None:
            tx.get_datasets([key])
            tx.set_triggers(key, job_ids)

        self.transact(body)

    def lay_out(self, job_id: str, produces: Sequence[str]) -> None:
        """A job's groups laid out as apply does (for a job written directly)."""
        for gid, keys in chunks(job_id, produces).items():
            self.regroup(gid, list(keys))

    def regroup(self, gid: str, keys: list[str]) -> None:
        """Lay out one group (apply): see GroupedTx.regroup."""
        def body(tx: GroupedTx) -> None:
            tx.get_datasets(list(keys))
            tx.regroup(gid, list(keys))

        self.transact(body)


def seeded(jobs: Iterable[tuple[str, Sequence[str]]], datasets: Iterable[Dataset]
           ) -> list[tuple[str, str, dict]]:
    """(collection, id, document) of `datasets` stored as the loop stores them: a group
    for those the jobs produce (each group whole: pass all of a job's datasets), their
    pointers, a document of its own for the rest. For bulk loads (benchmarks, seeds)."""
    by_key = {d.key: d for d in datasets}
    found = []
    for job_id, produces in jobs:
        for gid, keys in chunks(job_id, produces).items():
            doc = {**_new_group(gid), "keys": list(keys),
                   "datasets": {k: _entry(by_key.pop(k)) for k in keys if k in by_key}}
            found.append((GROUPS, gid, doc))
            found += [(KEYS, k, {"key": k, "group": gid}) for k in keys]
    return found + [(DATASETS, k, d.to_doc()) for k, d in by_key.items()]
