"""The status page's inputs, read from the stored model and what changed since it, or
in full; and the stored model written back (freshet.status.snapshot holds the why).

Steady state, per publish: the manifest (1 read), the model's chunks (a few reads:
each holds up to ~700 KB compressed), one `updated_at` query per collection (the
changed documents, 1 read when none). A full read is used when asked, when there is
no usable stored model (none, another schema, a chunk missing or not the one the
manifest names) and once the last full read is older than
`settings.publish_rebuild_after_s` (which also catches documents edited or deleted
behind Freshet's back).
"""

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from freshet.core.settings import Settings
from freshet.gcp.store import MODEL_MANIFEST, Store
from freshet.status import snapshot
from freshet.status.snapshot import SECTIONS, Chunk, Inputs, Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    inputs: Inputs
    mode: str  # incremental | full
    reason: str  # why a full read ("" when incremental)
    changed: int  # documents read because they changed (or all of them, in full)
    schema: str
    rebuilt_at: datetime
    previous: Manifest | None = None
    stored: dict[str, list[Chunk]] = field(default_factory=dict)  # chunks as stored now
    # per section, the keys read because they changed (the stored chunks hold the others
    # as they are); a section not named here is encoded whole
    touched: dict[str, frozenset[str]] = field(default_factory=dict)
    spans: dict[str, dict[str, str]] = field(default_factory=dict)  # snapshot.repack's


def read_manifest(store: Store) -> Manifest | None:
    return Manifest.from_doc(store.status_model_docs([MODEL_MANIFEST]).get(MODEL_MANIFEST))


UNREAD = object()


def load(store: Store, *, now: datetime, settings: Settings, recent: int,
         full: bool = False, manifest: Manifest | None | object = UNREAD) -> Loaded:
    """`manifest`: the stored one, when the caller has read it already."""
    schema_id = snapshot.schema(recent)
    if manifest is UNREAD:
        manifest = read_manifest(store)
    reason = rebuild_reason(manifest, schema_id, now, settings, full)
    stored = None if reason else _stored_chunks(store, manifest)
    if not reason and stored is None:
        reason = "the stored model is incomplete"
    if reason:
        return _full(store, recent, schema_id, now, reason, manifest)
    kept = {s: snapshot.items_and_spans(stored[s]) for s in SECTIONS}
    inputs = Inputs(jobs=kept["jobs"][0], datasets=kept["datasets"][0],
                    runs=kept["runs"][0], marks=dict(manifest.marks),
                    deadlines=kept["deadlines"][0])
    inputs, changed, touched = _merge_changes(store, inputs, recent)
    return Loaded(inputs, "incremental", "", changed, schema_id, manifest.rebuilt_at,
                  manifest, stored, touched, {s: kept[s][1] for s in SECTIONS})


def rebuild_reason(manifest: Manifest | None, schema_id: str, now: datetime,
                   settings: Settings, full: bool) -> str:
    if full:
        return "asked for"
    if manifest is None:
        return "no stored model"
    if manifest.schema != schema_id:
        return "the model's schema changed"
    if now - manifest.rebuilt_at >= timedelta(seconds=settings.publish_rebuild_after_s):
        return f"the last full read is over {settings.publish_rebuild_after_s} s old"
    return ""


def _stored_chunks(store: Store, manifest: Manifest) -> dict[str, list[Chunk]] | None:
    ids = [snapshot.chunk_id(s, i) for s in SECTIONS for i in range(manifest.count(s))]
    docs = store.status_model_docs(ids)
    stored: dict[str, list[Chunk]] = {}
    for section in SECTIONS:
        chunks = [snapshot.read_chunk(docs.get(snapshot.chunk_id(section, i)), section, i,
                                      manifest)
                  for i in range(manifest.count(section))]
        if any(c is None for c in chunks):
            return None
        stored[section] = chunks
    return stored


def _merge_changes(store: Store, inputs: Inputs, recent: int
                   ) -> tuple[Inputs, int, dict[str, frozenset[str]]]:
    jobs = store.jobs_changed_since(inputs.marks.get("jobs"))
    datasets = store.datasets_changed_since(inputs.marks.get("datasets"))
    inputs = snapshot.with_jobs(inputs, jobs.items, jobs.mark)
    inputs = snapshot.with_datasets(inputs, datasets.items, datasets.mark)
    records = store.deadlines_changed_since(inputs.marks.get("deadlines"))
    inputs = snapshot.with_deadlines(inputs, records.items, records.mark)
    changed = len(jobs.items) + len(datasets.items) + len(records.items)
    touched = {"jobs": frozenset(j.id for j in jobs.items),
               "datasets": frozenset(d.key for d in datasets.items),
               "deadlines": frozenset(r.consumer for r in records.items)}
    since = inputs.marks.get("runs")
    runs = store.runs_changed_since(since, recent) if since is not None else None
    if runs is not None and runs.complete:
        return snapshot.with_runs(inputs, runs.items, runs.mark, recent), \
            changed + len(runs.items), touched
    # More runs changed than the page shows (or none were ever seen): reading the
    # newest ones is cheaper, and as complete.
    newest = store.recent_runs_marked(recent)
    marks = [m for m in (newest.mark, runs.mark if runs else None) if m is not None]
    inputs = snapshot.with_runs(replace(inputs, runs={}), newest.items,
                                max(marks, default=None), recent)
    return inputs, changed + len(newest.items) + (len(runs.items) if runs else 0), touched


def _full(store: Store, recent: int, schema_id: str, now: datetime, reason: str,
          manifest: Manifest | None) -> Loaded:
    jobs = store.jobs_changed_since(None)
    datasets = store.datasets_changed_since(None)
    runs = store.recent_runs_marked(recent)
    records = store.deadlines_changed_since(None)
    inputs = Inputs(
        jobs={j.id: j for j in jobs.items}, datasets={d.key: d for d in datasets.items},
        runs=snapshot.newest_runs(runs.items, recent),
        marks={"jobs": jobs.mark, "datasets": datasets.mark, "runs": runs.mark,
               "deadlines": records.mark},
        deadlines={r.consumer: r for r in records.items},
    )
    return Loaded(inputs, "full", reason, inputs.size, schema_id, now, manifest)


def save(store: Store, loaded: Loaded, quiet: dict | None = None) -> int:
    """Write the chunks whose content changed, then the manifest (when it changed) with
    `quiet` (freshet.status.quiet.Quiet's document, or None).
    Returns the chunks written. A section too large to keep (not expected: a chunk holds
    thousands of documents) leaves no usable model, so the next publish reads everything."""
    digests: dict[str, tuple[str, ...]] = {}
    written = 0
    for section in SECTIONS:
        before = loaded.previous.count(section) if loaded.previous else 1
        stored = loaded.stored.get(section) or []
        if stored and section in loaded.touched:
            chunks = snapshot.repack(section, loaded.inputs, stored, loaded.touched[section],
                                     loaded.spans.get(section, {}))
        else:
            chunks = snapshot.pack(section, snapshot.section_docs(loaded.inputs, section),
                                   before)
        if chunks is None:
            log.error("status model: section %s is too large to keep; publishing in full",
                      section)
            store.put_status_model_doc(MODEL_MANIFEST, {"schema": "unusable"})
            return written
        for chunk in chunks:
            old = stored[chunk.index] if chunk.index < len(stored) else None
            if old is None or old.count != chunk.count or old.text != chunk.text:
                store.put_status_model_doc(chunk.doc_id,
                                           snapshot.chunk_doc(chunk, loaded.schema))
                written += 1
        digests[section] = tuple(c.digest for c in chunks)
    manifest = Manifest(loaded.schema, digests, dict(loaded.inputs.marks), loaded.rebuilt_at,
                        quiet)
    if written or manifest != loaded.previous:  # nothing changed: nothing to write
        store.put_status_model_doc(MODEL_MANIFEST, manifest.to_doc())
    return written
