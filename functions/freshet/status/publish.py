"""publish_status: read what changed, build the model, write what changed, notify.

Cost per publish in the steady state (freshet.status.incremental): the stored model
(a manifest and a few chunks), one `updated_at` query per collection returning only
the documents written since the previous publish, and four single documents
(catalog, control, heartbeat, status memory): O(changes) reads, not O(jobs +
datasets). The model is built from the merged documents exactly as from a full read
(`full` asks for one). Files whose content did not change are not written again
(badges, the schema); the page, status.json and the feed say when they were built,
so they change every time.

Order matters: the site is written before the memory and the stored model, so a
publish that fails to write the site changes nothing and the next one reports the
same changes again. Webhooks are tried after the site is written and never fail the
publish.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.settings import Settings
from freshet.core.timeutil import isoformat
from freshet.gcp.storage import Sink
from freshet.gcp.store import Store
from freshet.status import incremental
from freshet.status.changes import Memory, detect_changes, remember
from freshet.status.model import StatusModel, build_model
from freshet.status.notify import (
    WebhookNotifier,
    deliver,
    notifier_from_settings,
    payload_for,
    queue,
)
from freshet.status.render import render_site

log = logging.getLogger(__name__)

RECENT_RUNS = 200
# Written last, so that a reader who sees the new page also finds its json, feed, badges.
LAST = ("status.json", "feed.xml", "index.html")


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
            "mode": self.mode, "rebuild_reason": self.rebuild_reason,
            "changed_documents": self.changed_documents, "writes": self.writes,
            "files_unchanged": self.files_unchanged,
        }


def read_model(store: Store, *, now: datetime, settings: Settings, full: bool = False,
               recent: int = RECENT_RUNS) -> tuple[StatusModel, dict, incremental.Loaded]:
    """The model from the stored one and what changed (or a full read), the status
    memory document beside it, and what was loaded (to store it back)."""
    loaded = incremental.load(store, now=now, settings=settings, recent=recent, full=full)
    catalog = Catalog.from_doc(store.catalog_doc())
    control = Control.from_doc(store.control())
    memory_doc = store.status_state()
    inputs = loaded.inputs
    model = build_model(jobs=inputs.job_list(), datasets=inputs.dataset_list(),
                        runs=inputs.run_list(), catalog=catalog, control=control, now=now,
                        settings=settings, heartbeats=store.heartbeats())
    return model, memory_doc, loaded


def publish_once(store: Store, sink: Sink, *, now: datetime, settings: Settings,
                 notifier: WebhookNotifier | None = None, full: bool = False,
                 recent: int = RECENT_RUNS) -> PublishResult:
    """One publish. `full` reads everything and rewrites every file, changed or not;
    `recent` is how many of the newest runs the page shows."""
    reads_before, writes_before = store.stats.reads, store.stats.writes
    model, memory_doc, loaded = read_model(store, now=now, settings=settings, full=full,
                                           recent=recent)
    memory = Memory.from_doc(memory_doc)
    events = detect_changes(model, memory)
    after = remember(model, memory, events)
    files = render_site(model, after.events)

    written = size = badges_unchanged = unchanged = 0
    for path in sorted(files, key=lambda p: (p in LAST, LAST.index(p) if p in LAST else 0, p)):
        out = files[path]
        known = memory.badges if path.startswith("badges/") else memory.files
        if not full and known.get(path) == out.digest:
            unchanged += 1
            badges_unchanged += path.startswith("badges/")
            continue
        (after.badges if path.startswith("badges/") else after.files)[path] = out.digest
        sink.write(path, out.data, out.content_type)
        written, size = written + 1, size + len(out.data)

    notifier = notifier if notifier is not None else notifier_from_settings(settings)
    if notifier is not None and events:
        after.pending = queue(after.pending, payload_for(events, model), now)
    delivery = deliver(after.pending, notifier, now)
    after.pending = delivery.pending
    incremental.save(store, loaded)
    store.put_status_state(after.to_doc(now))
    return PublishResult(
        built_at=now, state=model.state, files_written=written, bytes_written=size,
        badges_unchanged=badges_unchanged, changes=len(events),
        notifications_sent=delivery.sent, notifications_pending=len(delivery.pending),
        reads=store.stats.reads - reads_before, mode=loaded.mode,
        rebuild_reason=loaded.reason, changed_documents=loaded.changed,
        writes=store.stats.writes - writes_before, files_unchanged=unchanged,
    )
