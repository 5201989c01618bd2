"""Incidents: what operators say while something is wrong, kept as history.

An operator opens an incident on jobs, datasets or consumers (or on everything), adds
timestamped notes (each may set a new ETA) and resolves it. Open incidents are
banners on the status page; every note is an entry of the Atom feed; status.json
lists them under `incidents[]`. One document per incident (`incidents/{id}`), bounded:
at most MAX_NOTES notes (and the one resolving it) of at most MAX_NOTE_CHARS
characters: about 200 KB.

The id is derived from the minute, the title and the author, so a repeated `open`
(a retried request, a double click) finds the incident the first one opened.
Everything here is pure; freshet.ops.incidents stores it.
"""

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from freshet.core.errors import Conflict, ValidationError
from freshet.core.timeutil import isoformat, parse_datetime, parse_duration, to_utc
from freshet.core.windows import Scope

MAX_TITLE_CHARS = 200
MAX_NOTE_CHARS = 2000
MAX_NOTES = 100
MAX_AUTHOR_CHARS = 200
MAX_SCOPE_IDS = 50


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class NoteKind(StrEnum):
    OPENED = "opened"
    UPDATE = "update"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Note:
    at: datetime
    text: str
    author: str = ""
    kind: NoteKind = NoteKind.UPDATE
    eta: datetime | None = None  # set by this note

    def to_doc(self) -> dict:
        return {"at": self.at, "text": self.text, "author": self.author, "kind": str(self.kind),
                "eta": self.eta}

    @classmethod
    def from_doc(cls, doc: dict) -> "Note":
        return cls(at=to_utc(doc["at"]), text=doc.get("text") or "",
                   author=doc.get("author") or "", kind=NoteKind(doc.get("kind") or "update"),
                   eta=to_utc(doc.get("eta")))


@dataclass(frozen=True)
class Incident:
    id: str
    title: str
    status: IncidentStatus
    scope: Scope
    opened_at: datetime
    opened_by: str = ""
    eta: datetime | None = None
    resolved_at: datetime | None = None
    notes: tuple[Note, ...] = field(default_factory=tuple)  # oldest first
    updated_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status == IncidentStatus.OPEN

    def to_json(self) -> dict:
        """status.json `incidents[]` and the API: times as ISO 8601 strings."""
        return {
            "id": self.id, "title": self.title, "status": str(self.status),
            "scope": self.scope.to_json(), "opened_at": isoformat(self.opened_at),
            "opened_by": self.opened_by, "eta": isoformat(self.eta),
            "resolved_at": isoformat(self.resolved_at), "updated_at": isoformat(self.updated_at),
            "notes": [{"at": isoformat(n.at), "text": n.text, "author": n.author,
                       "kind": str(n.kind), "eta": isoformat(n.eta)} for n in self.notes],
        }

    def to_doc(self) -> dict:
        return {"id": self.id, "title": self.title, "status": str(self.status),
                "scope": self.scope.to_doc(), "opened_at": self.opened_at,
                "opened_by": self.opened_by, "eta": self.eta, "resolved_at": self.resolved_at,
                "notes": [n.to_doc() for n in self.notes], "updated_at": self.updated_at}

    @classmethod
    def from_doc(cls, doc: dict) -> "Incident":
        scope = doc.get("scope") or {}
        return cls(
            id=doc["id"], title=doc.get("title") or doc["id"],
            status=IncidentStatus(doc.get("status") or "open"),
            scope=Scope(tuple(scope.get("jobs") or ()), tuple(scope.get("datasets") or ()),
                        tuple(scope.get("consumers") or ())),
            opened_at=to_utc(doc["opened_at"]), opened_by=doc.get("opened_by") or "",
            eta=to_utc(doc.get("eta")), resolved_at=to_utc(doc.get("resolved_at")),
            notes=tuple(Note.from_doc(n) for n in doc.get("notes") or ()),
            updated_at=to_utc(doc.get("updated_at")),
        )


_SLUG = re.compile(r"[^a-z0-9]+")


def incident_id(title: str, author: str, now: datetime) -> str:
    """`20261128-1200-warehouse-outage-3f9a1c`: readable, and the same for a repeat."""
    slug = _SLUG.sub("-", title.lower()).strip("-")[:40].strip("-") or "incident"
    digest = hashlib.sha256(f"{title}|{author}|{now:%Y%m%d%H%M}".encode()).hexdigest()[:6]
    return f"{now:%Y%m%d-%H%M}-{slug}-{digest}"


def _text(value: object, field_name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field_name, "must be a non-empty string")
    if len(value) > limit:
        raise ValidationError(field_name, f"must be at most {limit} characters")
    return value.strip()


def parse_eta(value: object, now: datetime, field_name: str = "eta") -> datetime | None:
    """An ISO 8601 time with a zone, or a duration from now ('2h', '90m')."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip() and value.strip()[-1] in "smhdw" \
            and value.strip()[0] in "0123456789":  # not isdigit(): '²h' is no duration
        return now + parse_duration(value, field_name)
    eta = parse_datetime(value, field_name)
    if eta <= now:
        raise ValidationError(field_name, "must lie in the future")
    return eta


def parse_scope(value: object, field_name: str = "scope") -> Scope:
    """{jobs: [...], datasets: [...], consumers: [...]} (none: everything)."""
    if value is None or value == "all":
        return Scope()
    if not isinstance(value, dict):
        raise ValidationError(field_name, "must be an object with jobs, datasets, consumers")
    lists = {}
    for key, items in value.items():
        if key not in ("jobs", "datasets", "consumers"):
            raise ValidationError(f"{field_name}.{key}", "unknown field")
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items) \
                or len(items) > MAX_SCOPE_IDS:
            raise ValidationError(f"{field_name}.{key}",
                                  f"must be a list of at most {MAX_SCOPE_IDS} ids")
        lists[key] = tuple(items)
    return Scope(**lists)


EVERYTHING = Scope()


def open_incident(*, title: object, note: object = None, scope: Scope = EVERYTHING,
                  eta: datetime | None = None, author: str = "", now: datetime) -> Incident:
    title = _text(title, "title", MAX_TITLE_CHARS)
    author = (author or "")[:MAX_AUTHOR_CHARS]
    text = _text(note, "note", MAX_NOTE_CHARS) if note is not None else title
    return Incident(id=incident_id(title, author, now), title=title,
                    status=IncidentStatus.OPEN, scope=scope, opened_at=now, opened_by=author,
                    eta=eta, notes=(Note(now, text, author, NoteKind.OPENED, eta),),
                    updated_at=now)


def add_note(incident: Incident, *, text: object, author: str = "", now: datetime,
             eta: datetime | None = None) -> Incident:
    if not incident.open:
        raise Conflict(f"incident {incident.id!r} is resolved; open a new one")
    _room_for_a_note(incident)
    note = Note(now, _text(text, "text", MAX_NOTE_CHARS), (author or "")[:MAX_AUTHOR_CHARS],
                NoteKind.UPDATE, eta)
    return replace(incident, notes=(*incident.notes, note), eta=eta or incident.eta,
                   updated_at=now)


def resolve(incident: Incident, *, text: object = None, author: str = "",
            now: datetime) -> Incident:
    """Resolved with a closing note (allowed beyond MAX_NOTES: an incident can always be
    resolved); resolving twice changes nothing."""
    if not incident.open:
        return incident
    note = Note(now, _text(text, "text", MAX_NOTE_CHARS) if text is not None else "Resolved.",
                (author or "")[:MAX_AUTHOR_CHARS], NoteKind.RESOLVED)
    return replace(incident, status=IncidentStatus.RESOLVED, resolved_at=now, eta=None,
                   notes=(*incident.notes, note), updated_at=now)


def _room_for_a_note(incident: Incident) -> None:
    if len(incident.notes) >= MAX_NOTES:
        raise Conflict(f"incident {incident.id!r} has {MAX_NOTES} notes, the most one keeps; "
                       "resolve it and open a new one")
