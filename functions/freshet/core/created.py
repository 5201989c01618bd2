"""The one answer to "create this document": it is new, or one with its id was there.

Freshet's ids are deterministic (a run: job + slot; a backfill: its request; an
incident: its title and day), so creating is the dedup and finding the document
already there is an answer, not an error. Every create of the store answers this."""

from enum import StrEnum


class Created(StrEnum):
    NEW = "new"  # this call created it
    EXISTS = "exists"  # one with its id was there; nothing was written

    @property
    def new(self) -> bool:
        return self is Created.NEW

    def __bool__(self) -> bool:
        """Truthy only when new, so `if store.create_run(run):` still means "this call
        created it" (the creates answered a bool before; a non-empty string would
        otherwise always be true)."""
        return self is Created.NEW
