"""Settings documents whose lists grow with the pipeline, kept under Firestore's 1 MiB.

Past PAGE_BYTES such a document is written as a head plus pages
settings/<id>.<version>.p1, .p2, ... (freshet.core.docsize): the pages of a new version
first, then the head naming that version, so a reader sees the old document or the new
one, never a mix; the previous version's pages are deleted afterwards."""

import json
import uuid
import zlib
from collections.abc import Iterable
from typing import Any

from google.cloud import firestore

from freshet.core.docsize import PAGE_BYTES, doc_size, join_pages, paginate
from freshet.gcp.batch import Batch
from freshet.gcp.stats import Stats

SETTINGS = "settings"
BATCH_WRITES = 500  # Firestore's limit on writes in one commit
BATCH_PAGES = 4  # 10 MiB a request (4 MiB through the emulator): at most 4 pages a batch
PACKED = "packed"  # a packed document's one list: its JSON, zlib-compressed, in parts
PACKED_PART = 256_000  # bytes of a part (a page holds 900 KB of them)


def page_id(doc_id: str, version: str, index: int) -> str:
    return f"{doc_id}.{version}.p{index + 1}"


class PagedSettings:
    """Reads and writes paged settings documents; `lists` names, per document id, the
    lists that may be spread over pages."""

    def __init__(self, db: firestore.Client, stats: Stats, lists: dict[str, tuple[str, ...]],
                 packed: Iterable[str] = ()):
        self.db = db
        self.stats = stats
        # a document written packed is read back whatever its lists, even the documents
        # named here written before they were packed (as lists, paged)
        self.lists = {k: (PACKED, *names) for k, names in lists.items()}
        self.packed = frozenset(packed)
        # (version, pages) of each paged document as last read or written here
        self._versions: dict[str, tuple[str, int]] = {}

    def _ref(self, doc_id: str):
        return self.db.collection(SETTINGS).document(doc_id)

    def _head(self, doc_id: str) -> dict:
        snap = self._ref(doc_id).get()
        self.stats.read()
        return (snap.to_dict() or {}) if snap.exists else {}

    def get(self, doc_id: str) -> dict:
        """The document with its pages' lists put back in order ({} if there is none),
        without the commit-time stamp."""
        head = self._head(doc_id)
        head.pop("updated_at", None)
        count, version = head.pop("pages", 0), head.pop("version", "")
        self._versions[doc_id] = (version, count)
        if not count:
            return unpacked(head)  # small enough to be written whole (or before pages)
        refs = [self._ref(page_id(doc_id, version, i)) for i in range(count)]
        found = {snap.id: snap.to_dict() or {} for snap in self.db.get_all(refs)}
        self.stats.read(count)
        for name in self.lists[doc_id]:
            head[name] = []
        for name, items in join_pages(found.get(ref.id, {}) for ref in refs):
            head.setdefault(name, []).extend(items)
        return unpacked(head)

    def put(self, doc_id: str, doc: dict) -> None:
        """Write `doc` whole when it fits, else as pages of a new version, then the head;
        a document named `packed` as its JSON compressed (packed())."""
        names = self.lists[doc_id]
        if doc_id in self.packed:
            doc = packed(doc)
        if doc_size(f"{SETTINGS}/{doc_id}", doc) <= PAGE_BYTES:
            head, pages = dict(doc), []
        else:
            head = {k: v for k, v in doc.items() if k not in names}
            pages = paginate({k: list(doc.get(k) or []) for k in names})
        if doc_id not in self._versions:
            found = self._head(doc_id)
            self._versions[doc_id] = (found.get("version", ""), found.get("pages", 0))
        old_version, old_count = self._versions[doc_id]
        version = uuid.uuid4().hex[:12] if pages else ""
        self._write_all((self._ref(page_id(doc_id, version, i)), page)
                        for i, page in enumerate(pages))
        batch = Batch(self.db, self.stats)
        batch.set(self._ref(doc_id), {**head, "pages": len(pages), "version": version})
        batch.commit()
        self._versions[doc_id] = (version, len(pages))
        self._write_all((self._ref(page_id(doc_id, old_version, i)), None)
                        for i in range(old_count))

    def _write_all(self, writes: Iterable[tuple[Any, dict | None]]) -> None:
        """Sets (or, for None, deletes) in batches within Firestore's limits."""
        batch, pages = Batch(self.db, self.stats), 0
        for ref, data in writes:
            if batch.size == BATCH_WRITES or (data is not None and pages == BATCH_PAGES):
                batch.commit()
                batch, pages = Batch(self.db, self.stats), 0
            if data is None:
                batch.delete(ref)
            else:
                batch.set(ref, data)
                pages += 1
        if batch.size:
            batch.commit()


def packed(doc: dict) -> dict:
    """A document as its compact JSON, compressed, in parts of PACKED_PART bytes: a
    document of thousands of small entries (the status memory's states and digests, the
    catalog's datasets) costs a Firestore client a second to write and half one to read
    as maps and lists, and each of its pages a document write. Its values are JSON's,
    but `updated_at` (the commit time stands for it); a document that holds another
    value (a time) is kept as it is."""
    try:
        text = json.dumps({k: v for k, v in doc.items() if k != "updated_at"},
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        data = zlib.compress(text.encode(), 6)
    except (TypeError, ValueError):  # ValueError: NaN, a lone surrogate
        return doc
    return {PACKED: [data[i:i + PACKED_PART] for i in range(0, len(data), PACKED_PART)]}


def unpacked(head: dict) -> dict:
    """packed()'s inverse; a document written otherwise is returned as it is."""
    parts = head.pop(PACKED, None)
    if not parts:
        return head
    return json.loads(zlib.decompress(b"".join(parts)))
