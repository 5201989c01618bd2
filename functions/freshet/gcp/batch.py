"""One batched commit whose every write carries the commit time and is counted.

Every document Freshet writes carries `updated_at` = Firestore's commit time
(SERVER_TIMESTAMP), whatever the caller put there: the status page asks each collection
for what changed since the newest `updated_at` it has seen, which is only sound if that
field is the moment the change became visible. So every write path, batches included,
stamps through `stamped` here.

An incident's `updated_at` is its own story's time (when a note was added or it was
resolved, decided with the caller's `now`, shown on the page and queried for "recent"),
so its commit time goes to `committed_at` instead: a document of that collection is
never read by the commit-time mark."""

from typing import Any

from google.cloud import firestore

from freshet.gcp.stats import Stats

# Collections whose documents keep a time of their own in `updated_at`.
OWN_UPDATED_AT = frozenset({"incidents"})


def stamped(fields: dict[str, Any], ref=None) -> dict[str, Any]:
    """`fields` with the commit time: in `updated_at`, or `committed_at` for a document
    of a collection in OWN_UPDATED_AT (`ref`: the document written)."""
    own = ref is not None and ref.parent.id in OWN_UPDATED_AT
    return {**fields, "committed_at" if own else "updated_at": firestore.SERVER_TIMESTAMP}


class Batch:
    """A Firestore WriteBatch that stamps each write it is given and counts the batch as
    one commit of that many documents when (and only when) it commits."""

    def __init__(self, db: firestore.Client, stats: Stats):
        self._batch = db.batch()
        self._stats = stats
        self.size = 0

    def create(self, ref, doc: dict) -> None:
        self._batch.create(ref, stamped(doc, ref))
        self.size += 1

    def set(self, ref, doc: dict, *, merge: bool = False) -> None:
        self._batch.set(ref, stamped(doc, ref), merge=merge)
        self.size += 1

    def update(self, ref, fields: dict, option=None) -> None:
        self._batch.update(ref, stamped(fields, ref), option=option)
        self.size += 1

    def delete(self, ref) -> None:
        self._batch.delete(ref)
        self.size += 1

    def commit(self) -> None:
        """Commit; a refused commit (it raises) is counted as a round trip only."""
        try:
            self._batch.commit()
        except Exception:
            self._stats.refused()
            raise
        self._stats.committed(self.size)
