"""What the store has cost: Firestore bills per document read and per document written,
and benchmarks and `freshet cost` report these counts per operation.

Every read and every write the store makes goes through one of these counts: the
batch (freshet.gcp.batch) and the transaction (freshet.gcp.store.Tx) count their writes
when they commit, and only then."""

from dataclasses import dataclass


@dataclass
class Stats:
    reads: int = 0
    commits: int = 0
    writes: int = 0  # documents written (created, set, updated or deleted)

    def reset(self) -> None:
        self.reads = self.commits = self.writes = 0

    def read(self, documents: int = 1) -> None:
        """`documents` read; a query that finds nothing is billed as one read."""
        self.reads += max(1, documents)

    def committed(self, writes: int) -> None:
        """One commit that wrote `writes` documents."""
        self.commits += 1
        self.writes += writes

    def refused(self) -> None:
        """A commit Firestore refused (a create that found its document, a precondition
        that failed): a round trip, no document written."""
        self.commits += 1
