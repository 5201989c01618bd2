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
