"""Settings documents whose lists grow with the pipeline, kept under Firestore's 1 MiB.

Past PAGE_BYTES such a document is written as a head plus pages
settings/<id>.<version>.p1, .p2, ... (freshet.core.docsize): the pages of a new version
first, then the head naming that version, so a reader sees the old document or the new
one, never a mix; the previous version's pages are deleted afterwards."""

import uuid
from collections.abc import Iterable
from typing import Any

from google.cloud import firestore

from freshet.core.docsize import PAGE_BYTES, doc_size, join_pages, paginate
from freshet.gcp.batch import Batch
from freshet.gcp.stats import Stats

SETTINGS = "settings"
BATCH_WRITES = 500  # Firestore's limit on writes in one commit
BATCH_PAGES = 4  # 10 MiB a request (4 MiB through the emulator): at most 4 pages a batch


def page_id(doc_id: str, version: str, index: int) -> str:
    return f"{doc_id}.{version}.p{index + 1}"


class PagedSettings:
    """Reads and writes paged settings documents; `lists` names, per document id, the
    lists that may be spread over pages."""

    def __init__(self, db: firestore.Client, stats: Stats, lists: dict[str, tuple[str, ...]]):
        self.db = db
        self.stats = stats
        self.lists = lists
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
            return head  # small enough to be written whole (or from before pages)
        refs = [self._ref(page_id(doc_id, version, i)) for i in range(count)]
        found = {snap.id: snap.to_dict() or {} for snap in self.db.get_all(refs)}
        self.stats.read(count)
        for name in self.lists[doc_id]:
            head[name] = []
        for name, items in join_pages(found.get(ref.id, {}) for ref in refs):
            head.setdefault(name, []).extend(items)
        return head

    def put(self, doc_id: str, doc: dict) -> None:
        """Write `doc` whole when it fits, else as pages of a new version, then the head."""
        names = self.lists[doc_id]
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
