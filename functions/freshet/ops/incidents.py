"""Incident operations shared by the api and the CLI: open, note, resolve, list.

The rules (ids, bounds, what a resolved incident refuses) are freshet.core.incidents';
this module checks that what an incident is about exists, and stores it: opening is a
create() (a repeated open finds the first), a note or a resolution one transaction.
"""

from datetime import datetime, timedelta

from freshet.core import incidents
from freshet.core.created import Created
from freshet.core.errors import ValidationError
from freshet.core.incidents import Incident
from freshet.core.windows import Scope
from freshet.gcp.store import Store

HISTORY = timedelta(days=90)


def check_scope(store: Store, scope: Scope, field: str = "scope") -> None:
    """Every id an incident names must exist: a typo would put the banner nowhere."""
    catalog = store.catalog()
    consumers = {c.id for c in catalog.consumers}
    for i, key in enumerate(scope.datasets):
        if key not in catalog.datasets and store.get_dataset(key) is None:
            raise ValidationError(f"{field}.datasets[{i}]", f"unknown dataset {key!r}")
    for i, cid in enumerate(scope.consumers):
        if cid not in consumers:
            raise ValidationError(f"{field}.consumers[{i}]", f"unknown consumer {cid!r}")
    for i, job_id in enumerate(scope.jobs):
        if store.get_job(job_id) is None:
            raise ValidationError(f"{field}.jobs[{i}]", f"unknown job {job_id!r}")


def open_incident(store: Store, *, title: object, note: object = None,
                  scope: Scope = incidents.EVERYTHING, eta: object = None, author: str = "",
                  now: datetime) -> tuple[Incident, bool]:
    """(the incident, whether this call opened it)."""
    incident = incidents.open_incident(title=title, note=note, scope=scope,
                                       eta=incidents.parse_eta(eta, now), author=author,
                                       now=now)
    check_scope(store, scope)
    if store.create_incident(incident) is Created.NEW:
        return incident, True
    return store.get_incident(incident.id), False


def add_note(store: Store, incident_id: str, *, text: object, eta: object = None,
             author: str = "", now: datetime) -> Incident:
    eta = incidents.parse_eta(eta, now)
    return store.change_incident(incident_id, lambda i: incidents.add_note(
        i, text=text, author=author, now=now, eta=eta))


def resolve(store: Store, incident_id: str, *, text: object = None, author: str = "",
            now: datetime) -> Incident:
    return store.change_incident(incident_id, lambda i: incidents.resolve(
        i, text=text, author=author, now=now))


def recent(store: Store, now: datetime) -> list[Incident]:
    """Open ones first, then those updated within 90 days, newest first."""
    return store.incidents(now - HISTORY)
