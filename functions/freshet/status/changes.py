"""State changes between publishes: pure functions over the model and a memory document.

The memory (Firestore `settings/status_state`, read once and written once per publish)
keeps what the previous publish saw: each dataset's state, the jobs that were failing,
the stuck runs already reported and the recent change events (the Atom feed).
Notifications are the routes' business (freshet.status.routing, one document per
route). A change is reported once, when it happens:

  dataset_stale      a dataset's level got worse or moved between warn and error
                     (levels: fresh/running = ok; warn/at_risk/unknown = warn;
                     failing/error = error);
  dataset_recovered  a dataset's level went back to ok;
  job_failed         a job's last run failed and it had not been failing;
  job_recovered      a failing job's last run succeeded;
  run_stuck          recovery marked a run as stuck (once per run);
  deadline_missed    a consumer's deadline passed without its data (freshet.status.publish).

The first publish (no memory yet) and datasets seen for the first time only set a
baseline; they report nothing. A dataset a maintenance window excuses reports
nothing either, and its remembered state stays what it was before the window: once
the window ends, what changed meanwhile is reported.
"""

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime

from freshet.core.deadlines import Judgement
from freshet.core.freshness import State
from freshet.core.text import shorten
from freshet.core.timeutil import isoformat, to_utc
from freshet.status.model import LABELS, LEVELS, StatusModel, badge_path

MAX_EVENTS = 100
MAX_STUCK_REMEMBERED = 500
MAX_SUMMARY = 500
MAX_TITLE = 300


@dataclass(frozen=True)
class Event:
    id: str
    at: str  # ISO 8601, UTC
    kind: str
    subject: str  # dataset key, job id or run id
    title: str
    summary: str
    state: str = ""
    previous: str = ""

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict) -> "Event":
        at = doc.get("at")
        if isinstance(at, datetime):
            at = isoformat(to_utc(at))
        return cls(**{**{k: doc.get(k, "") for k in cls.__dataclass_fields__}, "at": at or ""})


@dataclass
class Memory:
    exists: bool = False
    datasets: dict[str, str] = field(default_factory=dict)  # key -> state
    consumers: dict[str, str] = field(default_factory=dict)  # id -> state
    badges: dict[str, str] = field(default_factory=dict)  # badge path -> content hash
    files: dict[str, str] = field(default_factory=dict)  # other site files -> content hash
    failed_jobs: set[str] = field(default_factory=set)
    stuck_runs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # newest first

    @classmethod
    def from_doc(cls, doc: dict | None) -> "Memory":
        if not doc:
            return cls()
        badges = {}
        for group, kind, ident in (("datasets", "dataset", "key"), ("consumers", "consumer", "id")):
            for item in doc.get(group) or []:
                if item.get("badge"):
                    badges[badge_path(kind, item[ident])] = item["badge"]
        return cls(
            exists=True,
            datasets={d["key"]: d["state"] for d in doc.get("datasets") or []},
            consumers={c["id"]: c["state"] for c in doc.get("consumers") or []},
            badges=badges,
            files={k: v for k, v in (doc.get("files") or {}).items() if isinstance(v, str)},
            failed_jobs=set(doc.get("failed_jobs") or ()),
            stuck_runs=list(doc.get("stuck_runs") or ()),
            events=[Event.from_doc(e) for e in doc.get("events") or []],
        )

    def to_doc(self, now: datetime) -> dict:
        def entry(name: str, ident: str, state: str) -> dict:
            return {"key" if name == "dataset" else "id": ident, "state": state,
                    "badge": self.badges.get(badge_path(name, ident), "")}

        return {
            "version": 1,
            "updated_at": now,
            "datasets": [entry("dataset", k, s) for k, s in sorted(self.datasets.items())],
            "consumers": [entry("consumer", c, s) for c, s in sorted(self.consumers.items())],
            "files": dict(sorted(self.files.items())),
            "failed_jobs": sorted(self.failed_jobs),
            "stuck_runs": self.stuck_runs[:MAX_STUCK_REMEMBERED],
            "events": [e.to_doc() for e in self.events[:MAX_EVENTS]],
        }


def _event(kind: str, subject: str, now: datetime, title: str, summary: str,
           state: str = "", previous: str = "") -> Event:
    at = isoformat(now)
    digest = hashlib.sha256(f"{kind}|{subject}|{at}|{state}".encode()).hexdigest()[:20]
    return Event(id=digest, at=at, kind=kind, subject=subject, title=shorten(title, MAX_TITLE),
                 summary=shorten(summary, MAX_SUMMARY) or "", state=state, previous=previous)


def detect_changes(model: StatusModel, memory: Memory) -> list[Event]:
    """The changes since the previous publish, in a stable order (datasets, jobs, runs)."""
    if not memory.exists:
        return []
    now = model.built_at
    events = []
    for d in model.datasets:
        before = memory.datasets.get(d.key)
        if d.state == State.MAINTENANCE:
            continue
        if before is None or before not in LEVELS or LEVELS[before] == LEVELS[d.state]:
            continue
        was, is_ = LABELS[before], LABELS[d.state]
        if LEVELS[d.state] == "ok":
            events.append(_event("dataset_recovered", d.key, now,
                                 f"{d.title} recovered: {is_} (was {was})", d.reason,
                                 d.state, before))
        else:
            events.append(_event("dataset_stale", d.key, now,
                                 f"{d.title} is {is_} (was {was})", d.reason, d.state, before))
    for j in model.jobs:
        failed, was_failed = j.health == "failed", j.id in memory.failed_jobs
        if failed and not was_failed:
            events.append(_event("job_failed", j.id, now, f"Job {j.id} failed",
                                 j.last_error or "the last run failed", "failed"))
        elif was_failed and j.health == "ok":
            events.append(_event("job_recovered", j.id, now, f"Job {j.id} succeeded again",
                                 "the last run succeeded", "ok", "failed"))
    seen = set(memory.stuck_runs)
    for r in model.runs:
        if r.stuck and r.id not in seen:
            events.append(_event("run_stuck", r.id, now,
                                 f"Run {r.id} of job {r.job_id} was stuck",
                                 r.error or "no heartbeat before its lease expired", "stuck"))
    return events


def remember(model: StatusModel, memory: Memory, events: list[Event]) -> Memory:
    """The memory for the next publish (badge hashes are updated by the caller)."""
    stuck_now = [r.id for r in model.runs if r.stuck]
    kept = [r for r in memory.stuck_runs if r not in set(stuck_now)]
    return Memory(
        exists=True,
        datasets={d.key: memory.datasets.get(d.key, d.state)
                  if d.state == State.MAINTENANCE else d.state for d in model.datasets},
        consumers={c.id: c.state for c in model.consumers},
        badges=dict(memory.badges),
        files=dict(memory.files),
        failed_jobs={j.id for j in model.jobs if j.health == "failed"},
        stuck_runs=(stuck_now + kept)[:MAX_STUCK_REMEMBERED],
        events=(list(reversed(events)) + memory.events)[:MAX_EVENTS],
    )


def deadline_event(consumer_id: str, title: str, judgement: Judgement, now: datetime) -> Event:
    return _event("deadline_missed", consumer_id, now,
                  f"{title} missed its deadline of {judgement.due:%Y-%m-%d %H:%M} UTC",
                  judgement.detail, "missed")
