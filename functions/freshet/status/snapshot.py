"""The previous publish's inputs, kept so the next publish reads only what changed.

A publish needs every job, every dataset, the newest runs and every consumer's deadline
record. Reading them all costs
one Firestore read per document (≈ 6,200 at 5,000 datasets, every 5 minutes). Instead
the publish keeps those documents, as it last saw them, in a few compressed chunks
(`Inputs`), asks each collection for what changed since (`updated_at` > the newest
`updated_at` it has seen) and merges the answer in. The model is then built from the
merged inputs exactly as from a full read, so the page is the same byte for byte:
what is kept is the documents, never anything derived from them or from `now`.

Why the merge equals a full read:
  - jobs and datasets: every document written since the mark is read again, and
    Freshet never deletes one (jobs are archived); a periodic full rebuild also
    catches documents changed or deleted behind Freshet's back;
  - runs: the page shows the RECENT newest by `created_at`, which never changes once
    set. A run that is among the newest now either changed since the mark (and is
    read) or was among the newest last time (and is kept): the newest of
    (kept ∪ changed) are the newest of all.

Pure: no I/O. Chunks are JSON (datetimes and bytes tagged; a dataset's 90 days and 48
data points one tagged text each), zlib-compressed, each well under Firestore's 1 MiB
document limit whatever the number of documents.
"""

import base64
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from json.decoder import scanstring

from freshet.core.compact import days_from_text, days_text, points_from_text, points_text
from freshet.core.deadlines import DeadlineRecord
from freshet.core.models import Dataset, Job, Run

SECTIONS = ("jobs", "datasets", "runs", "deadlines")
FORMAT = 2  # bump when the chunk layout changes (2: datasets' days and data points compact)
MAX_CHUNK_BYTES = 700_000  # compressed; a document may hold 1 MiB (1,048,576 bytes)
TARGET_CHUNK_BYTES = 300_000  # room to grow before a section needs more chunks
MAX_CHUNKS = 256
_EPOCH = datetime.min.replace(tzinfo=UTC)


def schema(recent_runs: int) -> str:
    """Changes whenever what a chunk holds would mean something else: the chunk format,
    a field added to or removed from Job, Dataset or Run, or how many runs are kept.
    A stored model with another schema is not used (the next publish rebuilds)."""
    names = [f"{cls.__name__}:{','.join(f.name for f in fields(cls))}"
             for cls in (Job, Dataset, Run, DeadlineRecord)]
    text = f"{FORMAT}|{recent_runs}|{'|'.join(names)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the inputs and their merge -------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    jobs: Mapping[str, Job] = field(default_factory=dict)
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    runs: Mapping[str, Run] = field(default_factory=dict)  # the newest `recent` runs
    # Per section, the newest `updated_at` seen (Firestore's commit time): changes
    # are asked for after it.
    marks: Mapping[str, datetime | None] = field(default_factory=dict)
    # consumer id -> its deadline record (judged once per passing by publish)
    deadlines: Mapping[str, DeadlineRecord] = field(default_factory=dict)

    def job_list(self) -> list[Job]:
        return [self.jobs[k] for k in sorted(self.jobs)]

    def dataset_list(self) -> list[Dataset]:
        return [self.datasets[k] for k in sorted(self.datasets)]

    def run_list(self) -> list[Run]:
        return sorted(self.runs.values(), key=run_order, reverse=True)

    @property
    def size(self) -> int:
        return len(self.jobs) + len(self.datasets) + len(self.runs) + len(self.deadlines)


def run_order(run: Run) -> tuple:
    """Firestore's order of `order_by("created_at", DESCENDING)`, reversed: a timestamp
    sorts above null, and equal timestamps by document id (descending as well)."""
    return (run.created_at is not None, run.created_at or _EPOCH, run.id)


def newest_runs(runs: Iterable[Run], limit: int) -> dict[str, Run]:
    ordered = sorted(runs, key=run_order, reverse=True)[:limit]
    return {r.id: r for r in ordered}


def with_jobs(inputs: Inputs, changed: Iterable[Job], mark: datetime | None) -> Inputs:
    return replace(inputs, jobs={**inputs.jobs, **{j.id: j for j in changed}},
                   marks={**inputs.marks, "jobs": mark})


def with_datasets(inputs: Inputs, changed: Iterable[Dataset], mark: datetime | None) -> Inputs:
    return replace(inputs, datasets={**inputs.datasets, **{d.key: d for d in changed}},
                   marks={**inputs.marks, "datasets": mark})


def with_deadlines(inputs: Inputs, changed: Iterable[DeadlineRecord],
                   mark: datetime | None) -> Inputs:
    return replace(inputs, deadlines={**inputs.deadlines, **{r.consumer: r for r in changed}},
                   marks={**inputs.marks, "deadlines": mark})


def with_runs(inputs: Inputs, changed: Iterable[Run], mark: datetime | None,
              limit: int) -> Inputs:
    """The newest `limit` of the kept runs and the changed ones (a changed run replaces
    its older copy)."""
    merged = {**inputs.runs, **{r.id: r for r in changed}}
    return replace(inputs, runs=newest_runs(merged.values(), limit),
                   marks={**inputs.marks, "runs": mark})


# -- encoding ---------------------------------------------------------------------


def encode(value: object) -> object:
    """A Firestore value as JSON. Datetimes and bytes become {"$": type, "v": ...}; a map
    that has a "$" key of its own is wrapped too, so decoding is never ambiguous."""
    if isinstance(value, datetime):
        return {"$": "dt", "v": value.astimezone(UTC).isoformat()}
    if isinstance(value, bytes):
        return {"$": "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, dict):  # other scalars are kept without a call each
        items = {k: encode(v) if isinstance(v, _ENCODED) else v for k, v in value.items()}
        return {"$": "map", "v": items} if "$" in value else items
    if isinstance(value, list | tuple):
        return [encode(v) if isinstance(v, _ENCODED) else v for v in value]
    return value


_ENCODED = (datetime, bytes, dict, list, tuple)
# How a wrapped map starts in a chunk's text (its keys sorted, compact): a text without
# it holds no map with a "$" key of its own, so every {"$": ...} in it is a tag.
_WRAPPED = '{"$":"map",'



_NESTED = (dict, list)


def decode(value: object) -> object:
    # Scalars are kept without a call each: a publish decodes every stored document
    # (at 5,000 datasets, millions of values).
    if isinstance(value, dict):
        tag = value.get("$")
        if tag in _TAGS:
            return _TAGS[tag](value["v"])
        items = value["v"] if tag == "map" else value
        return {k: decode(v) if isinstance(v, _NESTED) else v for k, v in items.items()}
    if isinstance(value, list):
        return [decode(v) if isinstance(v, _NESTED) else v for v in value]
    return value


_FROM_DOC = {"jobs": Job.from_doc, "datasets": Dataset.from_doc, "runs": Run.from_doc,
             "deadlines": DeadlineRecord.from_doc}


def section_docs(inputs: Inputs, section: str) -> dict[str, dict]:
    items = getattr(inputs, section)
    return {key: items[key].to_doc() for key in sorted(items)}


def chunk_of(key: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


def _chunk_json(section: str, docs: Mapping[str, dict]) -> bytes:
    return json.dumps({k: _encoded(section, docs[k]) for k in sorted(docs)}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def _item_json(section: str, doc: dict) -> str:
    """One item's text in its chunk's JSON (_chunk_json writes the same)."""
    return json.dumps(_encoded(section, doc), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def _encoded(section: str, doc: dict) -> object:
    """encode(doc); a dataset's days and data points (most of its text: 90 maps and 48
    pairs of times) each as one tagged string when they have their usual shape, so that
    a publish parses a third of the text and makes no object per day or point."""
    if section != "datasets":
        return encode(doc)
    compact = {}
    days = days_text(doc.get("daily"))
    if days is not None:
        compact["daily"] = {"$": "days", "v": days}
    points = points_text(doc.get("data_points"))
    if points is not None:
        compact["data_points"] = {"$": "points", "v": points}
    return {**encode({k: v for k, v in doc.items() if k not in compact}), **compact}


# What a tagged value ({"$": tag, "v": text}) stands for ("map": a map of its own)
_TAGS: dict[str, Callable[[str], object]] = {
    "dt": datetime.fromisoformat, "bytes": base64.b64decode, "days": days_from_text,
    "points": points_from_text}


def _joined(texts: Mapping[str, str]) -> bytes:
    """_chunk_json of the items whose texts these are, byte for byte."""
    return ("{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + texts[k]
                           for k in sorted(texts)) + "}").encode()


@dataclass(frozen=True)
class Chunk:
    """One stored piece of a section: the items whose key hashes to `index` of `count`."""

    section: str
    index: int
    count: int
    text: bytes  # the JSON, uncompressed
    data: bytes  # zlib-compressed JSON (what is stored)

    @property
    def doc_id(self) -> str:
        return chunk_id(self.section, self.index)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text).hexdigest()[:32]


def chunk_id(section: str, index: int) -> str:
    return f"{section}-{index:03d}"


def _chunk(section: str, index: int, count: int, docs: Mapping[str, dict]) -> Chunk:
    text = _chunk_json(section, docs)
    return Chunk(section, index, count, text, zlib.compress(text, 6))


def split(section: str, docs: Mapping[str, dict], count: int) -> list[Chunk]:
    parts: list[dict[str, dict]] = [{} for _ in range(count)]
    for key, doc in docs.items():
        parts[chunk_of(key, count)][key] = doc
    return [_chunk(section, index, count, part) for index, part in enumerate(parts)]


def pack(section: str, docs: Mapping[str, dict], count: int = 1) -> list[Chunk] | None:
    """The section in `count` chunks or more (doubling) until each fits; None if even
    MAX_CHUNKS chunks cannot hold it (one document alone too large to keep)."""
    count = max(1, count)
    if count == 1 and docs:  # first sizing: aim at TARGET_CHUNK_BYTES a chunk
        whole = split(section, docs, 1)
        if len(whole[0].data) <= TARGET_CHUNK_BYTES:
            return whole
        count = 1 << max(0, (len(whole[0].data) // TARGET_CHUNK_BYTES)).bit_length()
    while count <= MAX_CHUNKS:
        chunks = split(section, docs, count)
        if max(len(c.data) for c in chunks) <= MAX_CHUNK_BYTES:
            return chunks
        count *= 2
    return None


def repack(section: str, inputs: Inputs, stored: list[Chunk], touched: Iterable[str],
           spans: Mapping[str, str]) -> list[Chunk] | None:
    """What pack(section_docs(inputs, section), len(stored)) returns, when `stored` holds
    the section as it was, `spans` each stored item's text in it, and only the items
    `touched` (changed, added) differ since: only the chunks they fall in are written
    again, and only the touched items encoded (a steady publish changes hundreds of
    thousands of items; encoding all of them cost most of its time)."""
    count, touched = len(stored), set(touched)
    dirty = {chunk_of(key, count) for key in touched}
    if not dirty:
        return stored
    items = getattr(inputs, section)
    parts: dict[int, dict[str, str]] = {i: {} for i in dirty}
    for key, item in items.items():
        part = parts.get(chunk_of(key, count))
        if part is not None:
            span = spans.get(key) if key not in touched else None
            part[key] = span if span is not None else _item_json(section, item.to_doc())
    chunks = list(stored)
    for index, part in parts.items():
        text = _joined(part)
        chunks[index] = Chunk(section, index, count, text, zlib.compress(text, 6))
    if count == 1 and len(chunks[0].data) > TARGET_CHUNK_BYTES:
        return pack(section, section_docs(inputs, section), 1)  # pack's first sizing
    if max(len(c.data) for c in chunks) <= MAX_CHUNK_BYTES:
        return chunks
    return pack(section, section_docs(inputs, section), count * 2)


def chunk_doc(chunk: Chunk, schema_id: str) -> dict:
    return {"schema": schema_id, "section": chunk.section, "index": chunk.index,
            "count": chunk.count, "data": chunk.data}


def read_chunk(doc: dict | None, section: str, index: int, manifest: "Manifest") -> Chunk | None:
    """The chunk in a stored document, or None if it is missing or is not the one the
    manifest names (another schema, another count, other content)."""
    count = manifest.count(section)
    if (not doc or doc.get("schema") != manifest.schema or doc.get("section") != section
            or doc.get("index") != index or doc.get("count") != count
            or not isinstance(doc.get("data"), bytes)):
        return None
    try:
        chunk = Chunk(section, index, count, zlib.decompress(doc["data"]), doc["data"])
    except zlib.error:
        return None
    return chunk if chunk.digest == manifest.digests[section][index] else None


def items_of(chunks: Iterable[Chunk]) -> dict:
    """The typed documents held by a section's chunks."""
    return items_and_spans(chunks)[0]


_DECODER = json.JSONDecoder()


def _untagged(value: dict) -> object:
    """decode() of a map whose values are decoded already, when no map is wrapped."""
    tag = value.get("$")
    if tag is None:
        return value
    return _TAGS[tag](value["v"]) if tag in _TAGS else value


# Decodes as it parses (one call per map, none per value): a publish reads every
# stored document.
_UNTAGGING = json.JSONDecoder(object_hook=_untagged)


def _as_is(value: object) -> object:
    return value


def items_and_spans(chunks: Iterable[Chunk]) -> tuple[dict, dict[str, str]]:
    """The typed documents held by a section's chunks, and each one's text in its chunk
    (what repack keeps of the items that did not change)."""
    found, spans = {}, {}
    for chunk in chunks:
        convert = _FROM_DOC[chunk.section]
        text = chunk.text.decode()
        decoder, untag = ((_DECODER, decode) if _WRAPPED in text else (_UNTAGGING, _as_is))
        at, end = 1, len(text) - 1  # inside the chunk's {...}: "key":value,...
        while at < end:
            key, at = scanstring(text, at + 1)
            value, after = decoder.raw_decode(text, at + 1)
            spans[key] = text[at + 1:after]
            found[key] = convert(untag(value))
            at = after + 1
    return found, spans


# -- the manifest -----------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """status_model/manifest: the chunks that make up the model and what it has seen.

    It names each chunk by the digest of its content, and a chunk whose content does
    not match is not used: a publish that stopped between writing chunks and writing
    the manifest, or two publishes at once writing chunks in turn, cannot leave a
    model whose marks claim more than its chunks hold (the next publish rebuilds)."""

    schema: str
    digests: Mapping[str, tuple[str, ...]]  # per section, one digest per chunk
    marks: Mapping[str, datetime | None]
    rebuilt_at: datetime  # the last full read (a rebuild is forced after a while)
    # What the publish that wrote it leaves for the next: until when nothing it showed
    # changes by time alone (freshet.status.quiet: an idle publish rebuilds nothing)
    quiet: dict | None = None

    def count(self, section: str) -> int:
        return len(self.digests.get(section, ()))

    def to_doc(self) -> dict:
        return {"schema": self.schema, "digests": {s: list(d) for s, d in self.digests.items()},
                "marks": dict(self.marks), "rebuilt_at": self.rebuilt_at,
                "quiet": self.quiet}

    @classmethod
    def from_doc(cls, doc: dict | None) -> "Manifest | None":
        if not doc:
            return None
        digests, marks = doc.get("digests"), doc.get("marks")
        if not isinstance(digests, dict) or not isinstance(marks, dict) \
                or not isinstance(doc.get("rebuilt_at"), datetime) \
                or any(not isinstance(digests.get(s), list) or not digests[s]
                       for s in SECTIONS):
            return None
        return cls(schema=str(doc.get("schema")),
                   digests={s: tuple(digests[s]) for s in SECTIONS},
                   marks={s: marks.get(s) for s in SECTIONS}, rebuilt_at=doc["rebuilt_at"],
                   quiet=doc.get("quiet") if isinstance(doc.get("quiet"), dict) else None)
