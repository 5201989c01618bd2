"""publish_status: read everything once, build the model, write the site, notify.

Cost per publish: one stream each of jobs and datasets, one bounded query of recent
runs, three single documents (catalog, control, status memory) and two count
aggregations per pool (its running and queued runs): O(jobs + datasets) reads, never
a query per requirement. One write of the status memory.

Order matters: the site is written before the memory, so a publish that fails to
write the site changes nothing and the next one reports the same changes again.
Webhooks are tried after the site is written and never fail the publish.
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

    def to_json(self) -> dict:
        return {
            "built_at": isoformat(self.built_at), "state": self.state,
            "files_written": self.files_written, "bytes_written": self.bytes_written,
            "badges_unchanged": self.badges_unchanged, "changes": self.changes,
            "notifications_sent": self.notifications_sent,
            "notifications_pending": self.notifications_pending, "reads": self.reads,
        }


def read_model(store: Store, *, now: datetime, settings: Settings) -> tuple[StatusModel, dict]:
    """The one read of everything (and the status memory document beside the model)."""
    jobs = store.list_jobs()
    datasets = store.list_datasets()
    runs = store.recent_runs(limit=RECENT_RUNS)
    catalog = Catalog.from_doc(store.catalog_doc())
    control = Control.from_doc(store.control())
    memory_doc = store.status_state()
    model = build_model(jobs=jobs, datasets=datasets, runs=runs, catalog=catalog,
                        control=control, now=now, settings=settings,
                        heartbeats=store.heartbeats(), pool_counts=pool_counts(store, catalog))
    return model, memory_doc


def pool_counts(store: Store, catalog: Catalog) -> dict[str, tuple[int, int]]:
    """{pool: (running, queued)}: two count aggregations per pool, on its queue."""
    return {p.name: (store.count_runs(queue=p.queue, statuses=("running",)),
                     store.count_runs(queue=p.queue, statuses=("queued", "retrying")))
            for p in catalog.pools}


def publish_once(store: Store, sink: Sink, *, now: datetime, settings: Settings,
                 notifier: WebhookNotifier | None = None, full: bool = False) -> PublishResult:
    """One publish. `full` rewrites every badge, even those whose content is unchanged."""
    reads_before = store.stats.reads
    model, memory_doc = read_model(store, now=now, settings=settings)
    memory = Memory.from_doc(memory_doc)
    events = detect_changes(model, memory)
    after = remember(model, memory, events)
    files = render_site(model, after.events)

    written = size = unchanged = 0
    for path in sorted(files, key=lambda p: (p in LAST, LAST.index(p) if p in LAST else 0, p)):
        out = files[path]
        if path.startswith("badges/"):
            if not full and memory.badges.get(path) == out.digest:
                unchanged += 1
                continue
            after.badges[path] = out.digest
        sink.write(path, out.data, out.content_type)
        written, size = written + 1, size + len(out.data)

    notifier = notifier if notifier is not None else notifier_from_settings(settings)
    if notifier is not None and events:
        after.pending = queue(after.pending, payload_for(events, model), now)
    delivery = deliver(after.pending, notifier, now)
    after.pending = delivery.pending
    store.put_status_state(after.to_doc(now))
    return PublishResult(
        built_at=now, state=model.state, files_written=written, bytes_written=size,
        badges_unchanged=unchanged, changes=len(events), notifications_sent=delivery.sent,
        notifications_pending=len(delivery.pending), reads=store.stats.reads - reads_before,
    )
