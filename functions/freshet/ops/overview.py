"""The console's first screen (GET /overview): one row per job, failures first, filtered
and paginated, from a bounded number of reads whatever the page asks for.

Reads: the jobs (one query), the datasets (one query), the catalog and the kill
switches (one document each, the catalog perhaps in a few pages) and the open and
recent incidents (one bounded query): no read per job, no run read. What a row says
about the last run is on its job document (last_run_*, last_error, the latest
successful durations); runs are the Job screen's, a page at a time.
"""

from dataclasses import dataclass
from datetime import datetime

from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.errors import ValidationError
from freshet.core.freshness import worst
from freshet.core.models import Job, JobStatus, LastRun
from freshet.core.timeutil import isoformat
from freshet.gcp.store import Store
from freshet.ops.views import all_datasets

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
    if not text:
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:300]


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
    jobs = store.list_jobs()
    control = Control.from_doc(store.control())
    catalog = Catalog.from_doc(store.catalog_doc())
    datasets = {d["key"]: d for d in all_datasets(store, now, jobs, control,
                                                  catalog=catalog)}
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
