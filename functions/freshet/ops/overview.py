"""The console's first screen (GET /overview): one row per job, failures first, filtered
and paginated, from a bounded number of reads whatever the page asks for.

Jobs and datasets come the way the status page's publish reads them
(freshet.status.incremental): the compressed chunks the last publish stored, and the
documents written since (queries on `updated_at` after the chunks' marks), so a
pipeline of 1,000 jobs and 2,000 datasets costs a few dozen reads, not 3,000, and is
as current as a full read. Without a stored model (no publish yet, or a new chunk
format) it reads both collections whole. The chunks, once decoded, are kept by their
digest, and the catalog for a minute (it changes only with apply). Then the kill
switches (one document) and the open and recent incidents (two
bounded queries): no read per job, no run read. What a row says about the last run is
on its job document (last_run_*, last_error, the latest successful durations); runs
are the Job screen's, a page at a time.
"""

import time
from dataclasses import dataclass
from datetime import datetime

from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.errors import ValidationError
from freshet.core.freshness import worst
from freshet.core.models import Dataset, Job, JobStatus, LastRun
from freshet.core.text import shorten
from freshet.core.timeutil import isoformat
from freshet.gcp.store import MODEL_MANIFEST, Store
from freshet.ops.views import all_datasets
from freshet.status import snapshot
from freshet.status.snapshot import Inputs, Manifest

STATES = ("active", "paused", "archived", "completed", "failing", "kill_switched",
          "maintenance")
MAX_PAGE = 200
BAD = ("error", "failing")


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    pool: str | None = None
    owner: str | None = None
    kind: str | None = None
    q: str | None = None

    def check(self) -> "Filters":
        if self.state is not None and self.state not in STATES:
            raise ValidationError("state", f"must be one of {', '.join(STATES)}")
        if self.q is not None and len(self.q) > 200:
            raise ValidationError("q", "must be at most 200 characters")
        return self


def first_line(text: str | None) -> str | None:
    """An error's first line, at most 300 characters (None for no error or a blank one)."""
    if not text or not text.strip():
        return None
    return shorten(text.strip().splitlines()[0], 300)


def job_row(job: Job, datasets: dict[str, dict], owners: dict[str, str], control: Control,
            now: datetime) -> dict:
    """Pure: what the overview says about one job."""
    produced = [datasets[k] for k in job.produces if k in datasets]
    window = control.maintenance.blocking_job(job.id, job.produces, now)
    switched = not control.kind_enabled(job.kind)
    freshness = worst(d["state"] for d in produced) if produced else None
    failing = job.last_run_status == LastRun.FAILED or freshness in BAD
    took = job.recent_durations_s[-1] if job.last_run_status == LastRun.SUCCEEDED \
        and job.recent_durations_s else None
    return {
        "id": job.id, "kind": job.kind, "status": str(job.status), "pool": job.pool or "default",
        "owners": sorted({owners[k] for k in job.produces if owners.get(k)}),
        "description": job.description,
        "paused": None if job.status != JobStatus.PAUSED else {
            "reason": job.paused_reason, "by": job.paused_by,
            "at": isoformat(job.paused_at), "until": isoformat(job.paused_until)},
        "kill_switched": switched, "kill_switch_reason": control.reason if switched else "",
        "maintenance": None if window is None else window.describe(),
        "last_run": {"id": job.last_run_id, "status": job.last_run_status,
                     "at": isoformat(job.last_run_at), "duration_s": took},
        "next_run_at": isoformat(job.next_run_at) if job.status == JobStatus.ACTIVE else None,
        "freshness": freshness,
        "datasets": [{"key": d["key"], "state": d["state"], "reason": d["reason"]}
                     for d in produced],
        "last_error": first_line(job.last_error),
        "failing": failing,
    }


def matches(row: dict, f: Filters) -> bool:
    special = {None: True, "failing": row["failing"], "kill_switched": row["kill_switched"],
               "maintenance": row["maintenance"] is not None}
    state_ok = special.get(f.state, row["status"] == f.state)
    text = " ".join([row["id"], row["kind"], row["description"],
                     *(d["key"] for d in row["datasets"])]).lower()
    return (state_ok and (f.pool is None or row["pool"] == f.pool)
            and (f.owner is None or f.owner in row["owners"])
            and (f.kind is None or row["kind"] == f.kind)
            and (not f.q or f.q.lower() in text))


def rank(row: dict) -> tuple:
    """Failures first, then what needs a look (warn, paused, switched off), then the rest."""
    needs_look = row["freshness"] == "warn" or row["status"] == "paused" \
        or row["kill_switched"] or row["maintenance"] is not None
    return (0 if row["failing"] else 1 if needs_look else 2, row["id"])


def current_jobs_and_datasets(store: Store) -> tuple[list[Job], list[Dataset]]:
    """Every job and dataset as they are now: the publish's stored chunks and what changed
    since, else (no usable stored model) a full read of both collections."""
    manifest = Manifest.from_doc(store.status_model_docs([MODEL_MANIFEST]).get(MODEL_MANIFEST))
    chunks = _stored(store, manifest) if manifest is not None else None
    if chunks is None:
        return store.list_jobs(), store.list_datasets()
    inputs = Inputs(jobs=chunks["jobs"], datasets=chunks["datasets"], marks=dict(manifest.marks))
    jobs = store.jobs_changed_since(inputs.marks.get("jobs"))
    datasets = store.datasets_changed_since(inputs.marks.get("datasets"))
    inputs = snapshot.with_datasets(snapshot.with_jobs(inputs, jobs.items, jobs.mark),
                                    datasets.items, datasets.mark)
    return inputs.job_list(), inputs.dataset_list()


# The catalog (declared datasets and consumers) changes only when apply runs; at 2,000
# datasets it is the overview's largest read. Kept a minute per process.
CATALOG_TTL_S = 60.0
_catalog_cache: list = []  # [(monotonic time, the store it came from, Catalog)]


def forget() -> None:
    """Drop what this process keeps (the catalog, decoded chunks): the next overview
    reads them again."""
    _catalog_cache.clear()
    _DECODED.clear()


def _catalog(store: Store) -> Catalog:
    now = time.monotonic()
    if _catalog_cache:
        at, source, catalog = _catalog_cache[0]
        if source is store and now - at < CATALOG_TTL_S:
            return catalog
    catalog = store.catalog()
    _catalog_cache[:] = [(now, store, catalog)]
    return catalog


# A console process lives for hours: the chunks' decoded documents, by the digest the
# manifest names, are not read nor decoded again until a publish changes them.
_DECODED: dict[str, dict] = {}
_MAX_DECODED = 64


def _stored(store: Store, manifest: Manifest) -> dict[str, dict] | None:
    """Each section's documents from its chunks (None if any is missing or stale)."""
    sections = ("jobs", "datasets")
    wanted = {(s, i): manifest.digests[s][i] for s in sections for i in range(manifest.count(s))}
    missing = [k for k, digest in wanted.items() if digest not in _DECODED]
    docs = store.status_model_docs([snapshot.chunk_id(s, i) for s, i in missing]) \
        if missing else {}
    for s, i in missing:
        chunk = snapshot.read_chunk(docs.get(snapshot.chunk_id(s, i)), s, i, manifest)
        if chunk is None:
            return None
        if len(_DECODED) >= _MAX_DECODED:
            _DECODED.clear()
        _DECODED[wanted[(s, i)]] = snapshot.items_of([chunk])
    return {s: {k: v for (sec, _), digest in wanted.items() if sec == s
                for k, v in _DECODED[digest].items()} for s in sections}


def parse_offset(cursor: str | None) -> int:
    if cursor in (None, ""):
        return 0
    if not cursor.isdigit() or len(cursor) > 7:
        raise ValidationError("cursor", "is not a cursor this API gave")
    return int(cursor)


def overview(store: Store, now: datetime, filters: Filters = Filters(), *,
             cursor: str | None = None, limit: int = 50) -> dict:
    filters.check()
    offset = parse_offset(cursor)
    jobs, stored = current_jobs_and_datasets(store)
    control = store.control()
    catalog = _catalog(store)
    datasets = {d["key"]: d for d in all_datasets(store, now, jobs, control,
                                                  catalog=catalog, stored=stored)}
    owners = {k: spec.owner for k, spec in catalog.datasets.items()}
    rows = sorted((job_row(j, datasets, owners, control, now) for j in jobs), key=rank)
    chosen = [r for r in rows if matches(r, filters)]
    page = chosen[offset:offset + limit]
    more = offset + limit < len(chosen)
    return {
        "now": isoformat(now),
        "counts": {"jobs": len(rows), "matching": len(chosen),
                   "failing": sum(r["failing"] for r in rows),
                   **{s: sum(r["status"] == s for r in rows)
                      for s in ("active", "paused", "archived", "completed")}},
        "facets": {"pools": sorted({r["pool"] for r in rows}),
                   "kinds": sorted({r["kind"] for r in rows}),
                   "owners": sorted({o for r in rows for o in r["owners"]})},
        "control": control.to_doc(),
        "maintenance": [{"id": o.window.id, "note": o.window.note, "end": isoformat(o.end),
                         "description": o.describe()} for o in control.maintenance.active(now)],
        "incidents": [{"id": i.id, "title": i.title} for i in store.incidents(now) if i.open],
        "jobs": page,
        "next_cursor": str(offset + limit) if more else None,
    }
