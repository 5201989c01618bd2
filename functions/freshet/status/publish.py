"""publish_status: read what changed, judge the deadlines that passed, build the model,
write what changed, notify the routes.

Cost per publish in the steady state (freshet.status.incremental): the stored model
(a manifest and a few chunks), one `updated_at` query per collection returning only
the documents written since the previous publish (jobs, datasets, runs, deadline
records), four single documents (catalog, control, heartbeat, status memory), one
stream of route states (one per route), one bounded query of incidents and two count
aggregations per pool: O(changes + routes + incidents) reads, not O(jobs + datasets).
The model is built from the merged documents exactly as from a full read (`full` asks
for one). A file is written only when its bytes differ from the last published (their
digests are kept in the status memory), except those that show the moment they were
built (the page, status.json, heartbeat.json: the build time and the datasets' ages),
written at every publish that builds; the consumers' pages and JSON are written when
what they say changes (their ages are counted on by the page's script). Writes: the
stored model's changed chunks and its manifest, the status memory, each only when it
changed; a consumer's deadline record when one of its deadlines has passed (a
transaction: each judged once); a route's document when it has something to queue or
to record.

An idle publish reads 5 documents and writes none (`idle`): the previous publish left
a quiet mark in the manifest (freshet.status.quiet: until when nothing it showed turns
by time alone), and nothing was written since in jobs, datasets, runs or settings
(incidents stamp settings/incidents; deadline records and routes are written by
publishes only, and one that wrote any leaves no mark). It writes heartbeat.json only.

Order matters: the site is written before the memory and the stored model, so a
publish that fails to write the site changes nothing and the next one reports the
same changes again. Notifications are tried after the site is written and never fail
the publish. The stored model (with its quiet mark) is written last, after the memory:
the mark must be newer than the memory's own commit time.
"""

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from freshet.core.bookkeeping import with_running
from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.deadlines import (
    DeadlineRecord,
    Judgement,
    Verdict,
    decide_deadlines,
    judge,
    needs_judging,
)
from freshet.core.incidents import Incident
from freshet.core.models import Dataset, Job, Run
from freshet.core.settings import Settings
from freshet.core.timeutil import isoformat
from freshet.gcp.ports import DATASETS, JOBS, RUNS
from freshet.gcp.storage import Sink
from freshet.gcp.store import SETTINGS, STATUS_DOC, Store
from freshet.status import incremental, snapshot
from freshet.status.changes import Event, Memory, deadline_event, detect_changes, remember
from freshet.status.incremental import UNREAD
from freshet.status.model import (
    StatusModel,
    build_model,
    collector_paused,
    covers,
    deadline_items,
    producers_of,
)
from freshet.status.quiet import Quiet, next_change
from freshet.status.render import HEARTBEAT, Output, heartbeat_file, render_site, site_digest
from freshet.status.routing import Sender, notify_routes
from freshet.status.snapshot import Manifest

log = logging.getLogger(__name__)

RECENT_RUNS = 200
INCIDENT_HISTORY = timedelta(days=90)
# Written last, so that a reader who sees the new page also finds its json, feed, badges.
LAST = ("status.json", "feed.xml", "index.html", HEARTBEAT)


@dataclass(frozen=True)
class PublishResult:
    built_at: datetime
    state: str
    files_written: int
    bytes_written: int
    badges_unchanged: int
    changes: int
    notifications_sent: int
    notifications_pending: int
    reads: int
    deadlines_judged: int = 0
    routes: dict[str, str] = field(default_factory=dict)
    mode: str = "full"  # incremental | full
    rebuild_reason: str = ""
    changed_documents: int = 0  # read because they changed (all of them in full)
    writes: int = 0  # Firestore documents written (stored model, memory)
    files_unchanged: int = 0  # site files not written again (badges included)

    def to_json(self) -> dict:
        return {
            "built_at": isoformat(self.built_at), "state": self.state,
            "files_written": self.files_written, "bytes_written": self.bytes_written,
            "badges_unchanged": self.badges_unchanged, "changes": self.changes,
            "notifications_sent": self.notifications_sent,
            "notifications_pending": self.notifications_pending, "reads": self.reads,
            "deadlines_judged": self.deadlines_judged, "routes": dict(self.routes),
            "mode": self.mode, "rebuild_reason": self.rebuild_reason,
            "changed_documents": self.changed_documents, "writes": self.writes,
            "files_unchanged": self.files_unchanged,
        }


@dataclass
class Inputs:
    """Everything a publish reads, once."""

    jobs: list[Job]
    datasets: list[Dataset]
    runs: list[Run]
    catalog: Catalog
    control: Control
    memory_doc: dict
    heartbeats: dict
    records: dict[str, DeadlineRecord]
    incidents: list[Incident]
    routes: dict
    loaded: incremental.Loaded | None = None  # the stored model to save back


def read_inputs(store: Store, *, now: datetime, settings: Settings, full: bool = False,
                recent: int = RECENT_RUNS, manifest: Manifest | None | object = UNREAD
                ) -> Inputs:
    """Jobs, datasets, runs and deadline records from the stored model and what changed
    since (or a full read); the small collections (incidents, routes) read whole.
    `manifest`: the stored model's, when the caller has read it already."""
    loaded = incremental.load(store, now=now, settings=settings, recent=recent, full=full,
                              manifest=manifest)
    got = loaded.inputs
    jobs = got.job_list()
    return Inputs(  # the datasets as shown: running from their jobs
        jobs=jobs, datasets=with_running(got.dataset_list(), jobs), runs=got.run_list(),
        catalog=store.catalog(), control=store.control(),
        memory_doc=store.status_state(), heartbeats=store.heartbeats(),
        records=dict(got.deadlines), incidents=store.incidents(now - INCIDENT_HISTORY),
        routes=store.route_states(), loaded=loaded,
    )


def judge_deadlines(store: Store, inputs: Inputs, now: datetime
                    ) -> list[tuple[str, Judgement]]:
    """Judge every deadline that has passed since the last publish, once (updates
    `inputs.records`); (consumer id, verdict) for each judged now."""
    docs = {d.key: d for d in inputs.datasets}
    producers = producers_of(inputs.jobs)
    windows = inputs.control.maintenance
    due = {c.id: c for c in inputs.catalog.consumers
           if (c.deadlines or c.id in inputs.records)
           and needs_judging(inputs.records.get(c.id), c.deadlines, now)}

    def decide(consumer_id: str, current: DeadlineRecord | None
               ) -> tuple[DeadlineRecord, list[Judgement]]:
        consumer = due[consumer_id]

        def judge_one(deadline, at):
            items = deadline_items(consumer, deadline, docs, inputs.catalog, producers)
            return judge(deadline, at, items, windows, covers(consumer))

        return decide_deadlines(current, consumer_id, consumer.deadlines, now, judge_one)

    judged_now: list[tuple[str, Judgement]] = []
    for consumer_id, (record, judged) in store.judge_deadlines(due, decide).items():
        inputs.records[consumer_id] = record
        judged_now += [(consumer_id, j) for j in judged]
    return judged_now


def pool_counts(store: Store, catalog: Catalog) -> dict[str, tuple[int, int]]:
    """{pool: (running, queued)}: two count aggregations per pool, on its queue."""
    return {p.name: (store.count_runs(queue=p.queue, statuses=("running",)),
                     store.count_runs(queue=p.queue, statuses=("queued", "retrying")))
            for p in catalog.pools}


def model_of(store: Store, inputs: Inputs, *, now: datetime,
             settings: Settings) -> StatusModel:
    """The status model of what was read (the pools' counts are asked for here)."""
    return build_model(jobs=inputs.jobs, datasets=inputs.datasets, runs=inputs.runs,
                       catalog=inputs.catalog, control=inputs.control, now=now,
                       settings=settings, heartbeats=inputs.heartbeats,
                       pool_counts=pool_counts(store, inputs.catalog),
                       deadlines=inputs.records, incidents=inputs.incidents,
                       routes=inputs.routes)


def read_model(store: Store, *, now: datetime, settings: Settings, full: bool = False,
               recent: int = RECENT_RUNS) -> tuple[StatusModel, dict, incremental.Loaded]:
    """The model from the stored one and what changed (or a full read), without judging
    deadlines; the status memory document; and what was loaded (to store it back)."""
    inputs = read_inputs(store, now=now, settings=settings, full=full, recent=recent)
    return model_of(store, inputs, now=now, settings=settings), inputs.memory_doc, \
        inputs.loaded


def keyed_memory(out: Output, now: datetime) -> str:
    """What the memory keeps of a keyed file (render.Output.key): its key, and when it
    was written (epoch seconds)."""
    return f"{out.key}@{int(now.timestamp())}"


def keyed_current(seen: str | None, out: Output) -> bool:
    """Whether the keyed file written earlier (`seen`: keyed_memory's) still says what
    `out` says."""
    return (seen or "").partition("@")[0] == out.key


@collector_paused  # reads thousands of documents and builds from them
def publish_once(store: Store, sink: Sink, *, now: datetime, settings: Settings,
                 full: bool = False, recent: int = RECENT_RUNS,
                 environ: Mapping[str, str] = os.environ,
                 send: Sender | None = None) -> PublishResult:
    """One publish. `full` reads everything and rewrites every file, changed or not;
    `recent` is how many of the newest runs the page shows. `environ` resolves the
    routes' URL and secret references; `send` replaces the HTTP sender (tests)."""
    reads_before, writes_before = store.stats.reads, store.stats.writes
    manifest = incremental.read_manifest(store)
    if not full and idle(store, manifest, now=now, settings=settings, recent=recent):
        beat = heartbeat_file(now)
        sink.write(HEARTBEAT, beat.data, beat.content_type)
        quiet = Quiet.from_doc(manifest.quiet)
        return PublishResult(
            built_at=now, state=quiet.state, files_written=1, bytes_written=len(beat.data),
            badges_unchanged=0, changes=0, notifications_sent=0, notifications_pending=0,
            reads=store.stats.reads - reads_before, mode="idle",
            writes=store.stats.writes - writes_before)
    seen = store.settings_newest()  # what the quiet mark is taken after (quiet_after)
    inputs = read_inputs(store, now=now, settings=settings, full=full, recent=recent,
                         manifest=manifest)
    judged_before = store.stats.writes
    judged = judge_deadlines(store, inputs, now)
    records_written = store.stats.writes - judged_before
    model = model_of(store, inputs, now=now, settings=settings)
    memory = Memory.from_doc(inputs.memory_doc)
    events = detect_changes(model, memory) + _deadline_events(judged, model, now)
    after = remember(model, memory, events)
    files = render_site(model, after.events, current=None if full else (
        lambda path, out: keyed_current(memory.files.get(path), out)))

    written = size = badges_unchanged = unchanged = 0
    for path in sorted(files, key=lambda p: (p in LAST, LAST.index(p) if p in LAST else 0, p)):
        out = files[path]
        known = memory.badges if path.startswith("badges/") else memory.files
        if out.kept or not full and not out.dated and (
                known.get(path) == out.digest if out.key is None
                else keyed_current(known.get(path), out)):
            unchanged += 1
            badges_unchanged += path.startswith("badges/")
            continue
        if not out.dated:
            (after.badges if path.startswith("badges/") else after.files)[path] = (
                out.digest if out.key is None else keyed_memory(out, now))
        sink.write(path, out.data, out.content_type)
        written, size = written + 1, size + len(out.data)

    routes_before = store.stats.writes
    routing = notify_routes(store, model, inputs.catalog, inputs.records, events,
                            inputs.routes, now=now, webhook_url=settings.webhook_url,
                            environ=environ, send=send)
    routes_written = store.stats.writes - routes_before
    for path in [p for p in after.files if p in files and files[p].dated]:
        del after.files[path]  # kept by earlier publishes
    if after != memory:  # else the stored memory is already this one
        store.put_status_state(after.to_doc(now))
    settled = not (records_written or routes_written or routing.waiting)
    quiet = quiet_after(store, inputs, model, seen, now=now, settings=settings,
                        recent=recent) if settled else None
    incremental.save(store, inputs.loaded, quiet.to_doc() if quiet else None)
    loaded = inputs.loaded
    return PublishResult(
        built_at=now, state=model.state, files_written=written, bytes_written=size,
        badges_unchanged=badges_unchanged, changes=len(events),
        notifications_sent=routing.sent, notifications_pending=routing.waiting,
        reads=store.stats.reads - reads_before, deadlines_judged=len(judged),
        routes=routing.routes, mode=loaded.mode, rebuild_reason=loaded.reason,
        changed_documents=loaded.changed, writes=store.stats.writes - writes_before,
        files_unchanged=unchanged,
    )


# -- the idle publish --------------------------------------------------------------


def build_id(settings: Settings, recent: int) -> str:
    """What the page is made of besides the documents: the settings it shows, how many
    runs, the stored model's schema, the site's templates and assets. A publish after a
    change of any of them rebuilds (a code change elsewhere waits at most for the quiet
    period's cap, QUIET_SHARE of the page's staleness limit)."""
    shown = (settings.page_stale_after_s, settings.site_url, settings.project,
             bool(settings.webhook_url), recent, snapshot.schema(recent), site_digest())
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:16]


def idle(store: Store, manifest: Manifest | None, *, now: datetime, settings: Settings,
         recent: int) -> bool:
    """Whether nothing the last publish showed can have changed: it left a quiet mark
    that has not run out, the page is made of the same, and no job, dataset, run, setting
    (catalog, kill switches, windows, heartbeat) or incident was written since. At most
    4 reads after the manifest, one document each; deadline records and routes are
    written by publishes only, and a publish that wrote any leaves no quiet mark."""
    quiet = Quiet.from_doc(manifest.quiet) if manifest else None
    if (quiet is None or now >= quiet.until or quiet.build != build_id(settings, recent)
            or incremental.rebuild_reason(manifest, snapshot.schema(recent), now, settings,
                                          False)):
        return False
    marks = manifest.marks
    return not (store.changed_since(DATASETS, marks.get("datasets"))
                or store.changed_since(RUNS, marks.get("runs"))
                or store.changed_since(JOBS, marks.get("jobs"))
                or store.changed_since(SETTINGS, quiet.settings))


# The longest a page may stand unrebuilt when nothing changes, as a share of the page's
# staleness limit: its build time and status.json's `generated_at` stay well within that
# limit while Freshet publishes (every 5 minutes), so no reader takes a quiet page for a
# stopped one, and an age in words on it is at most that old.
QUIET_SHARE = 0.5


def quiet_after(store: Store, inputs: Inputs, model: StatusModel, seen: datetime | None, *,
                now: datetime, settings: Settings, recent: int) -> Quiet | None:
    """The quiet mark this publish leaves: until when nothing it showed changes by time
    alone, and the settings collection's newest commit time, its own status memory
    included. None when a setting was written since `seen` (the newest commit time
    before it read them) by someone else: it may not have seen that write."""
    written = store.settings_written_since(seen)
    if len(written) >= SETTINGS_LISTED or any(not _own(doc_id) for doc_id, _ in written):
        return None
    mark = max([t for _, t in written] + ([seen] if seen else []), default=None)
    cap = now + timedelta(seconds=settings.page_stale_after_s * QUIET_SHARE)
    until = next_change(jobs=inputs.jobs, datasets=inputs.datasets, catalog=inputs.catalog,
                        control=inputs.control, heartbeats=inputs.heartbeats,
                        incidents=inputs.incidents, now=now, until=cap)
    return Quiet(until, mark, build_id(settings, recent), model.state)


SETTINGS_LISTED = 50


def _own(doc_id: str) -> bool:
    """The status memory and its pages: written by the publish itself."""
    return doc_id == STATUS_DOC or doc_id.startswith(STATUS_DOC + ".")


def _deadline_events(judged: list[tuple[str, Judgement]], model: StatusModel,
                     now: datetime) -> list[Event]:
    """A missed deadline is a change of the feed (and of the unrouted webhook)."""
    titles = {c.id: c.title for c in model.consumers}
    return [deadline_event(cid, titles.get(cid, cid), j, now)
            for cid, j in judged if j.verdict == Verdict.MISSED]
