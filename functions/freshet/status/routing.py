"""publish_status's notification round: per route, decide (freshet.core.alerts), queue,
deliver, record.

For each route — those the catalog declares, and `default` when FRESHET_WEBHOOK_URL
is set (every change of the feed, as before routes existed) — one transaction reads
the route's document, decides what to queue and writes it back; the due messages
are then sent outside any transaction, within a time budget, and a second transaction
records how each went. A route with nothing to queue and nothing due is neither
written nor sent to. Two publishes at once queue each message once (the second
transaction sees the first's baseline); a message may be sent twice (at least once:
receivers dedupe on X-Freshet-Message or the events' ids).

Nothing here raises into the publish: the page matters more than the message. A
route whose round fails (its state cannot be read or written) is not silent: the log
says so with the route's id, and the route's stored status becomes `failed` with
that reason, which the page and `freshet status` show.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from freshet.core.alerts import (
    DEFAULT_ROUTE,
    Attempted,
    DeadlineNews,
    Observation,
    RouteSpec,
    RouteState,
    after_delivery,
    decide_feed_route,
    decide_route,
    due_messages,
    route_specs,
)
from freshet.core.catalog import Catalog
from freshet.core.deadlines import DeadlineRecord
from freshet.core.freshness import State
from freshet.core.text import shorten
from freshet.gcp.store import Store
from freshet.status.changes import Event
from freshet.status.model import StatusModel
from freshet.status.notify import DeliveryError, send_message

log = logging.getLogger(__name__)

BUDGET_S = 15.0  # of one publish, for all the routes' sending

Sender = Callable[[RouteSpec, object, StatusModel], None]


@dataclass
class RoutingResult:
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    routes: dict[str, str] = field(default_factory=dict)  # id -> last status


def observations_for(route_id: str, model: StatusModel, catalog: Catalog
                     ) -> list[Observation]:
    """The consumers and datasets that name the route, as this publish sees them."""
    found = []
    for spec in catalog.consumers:
        if route_id in spec.routes:
            c = model.consumer(spec.id)
            found.append(Observation(f"consumer:{c.id}", c.title, c.state, c.detail,
                                     muted=c.excused_by is not None
                                     or c.state == State.MAINTENANCE))
    for key, spec in catalog.datasets.items():
        if route_id in spec.routes:
            d = model.dataset(key)
            found.append(Observation(f"dataset:{key}", d.title, d.state, d.reason,
                                     muted=d.excused_by is not None
                                     or d.state == State.MAINTENANCE))
    return found


def deadline_news_for(route_id: str, model: StatusModel, catalog: Catalog,
                      records: Mapping[str, DeadlineRecord]) -> list[DeadlineNews]:
    found = []
    for spec in catalog.consumers:
        if route_id not in spec.routes or not spec.deadlines:
            continue
        record = records.get(spec.id)
        c = model.consumer(spec.id)
        found.append(DeadlineNews(
            f"consumer:{spec.id}", spec.title, tuple(record.recent) if record else (),
            {d.key: d.description for d in c.deadlines}, muted=c.excused_by is not None))
    return found


def muted(event: Event, model: StatusModel) -> bool:
    """A change of the feed about something a maintenance window covers now."""
    keys = {d.key: d for d in model.datasets}
    if event.kind.startswith("dataset_") and event.subject in keys:
        return keys[event.subject].excused_by is not None
    job_id = event.subject
    if event.kind == "run_stuck":
        job_id = next((r.job_id for r in model.runs if r.id == event.subject), "")
    job = next((j for j in model.jobs if j.id == job_id), None)
    if job is None:
        return False
    windows = model.control.maintenance
    return windows.blocking_job(job.id, job.produces, model.built_at) is not None


def notify_routes(store: Store, model: StatusModel, catalog: Catalog,
                  records: Mapping[str, DeadlineRecord], events: Iterable[Event],
                  states: Mapping[str, RouteState], *, now: datetime, webhook_url: str | None,
                  environ: Mapping[str, str], send: Sender | None = None,
                  budget_s: float = BUDGET_S) -> RoutingResult:
    result = RoutingResult()
    events = [e.to_doc() for e in events if not muted(e, model)]
    deadline = time.monotonic() + budget_s
    for spec in route_specs(catalog.routes, webhook_url):
        try:
            _one_route(store, spec, model, catalog, records, events, states, now, environ,
                       send, deadline, result)
        except Exception as exc:  # one route's trouble (or Firestore's) must not stop the others
            log.exception("notification route %s failed this round: its state was not "
                          "recorded and its messages wait", spec.id)
            result.failed += 1
            result.routes[spec.id] = "failed"
            _record_failure(store, spec.id, exc, now)
    return result


def _record_failure(store: Store, route_id: str, exc: Exception, now: datetime) -> None:
    """Say on the route itself (the page, `freshet status`) that this round failed: two
    small fields changed on the document as stored, which fits wherever it did."""
    reason = f"this round could not be recorded ({type(exc).__name__}); its messages wait"
    try:
        store.change_route(route_id, lambda s: (replace(
            s, last_status="failed", last_error=reason, last_attempt_at=now), None))
    except Exception:
        log.exception("notification route %s: its failure could not be recorded either",
                      route_id)


def _one_route(store: Store, spec: RouteSpec, model: StatusModel, catalog: Catalog,
               records: Mapping[str, DeadlineRecord], events: list[dict],
               states: Mapping[str, RouteState], now: datetime, environ: Mapping[str, str],
               send: Sender | None, deadline: float, result: RoutingResult) -> None:
    if spec.id == DEFAULT_ROUTE:
        def decide(state: RouteState):
            return decide_feed_route(state, events, now)
    else:
        observed = observations_for(spec.id, model, catalog)
        news = deadline_news_for(spec.id, model, catalog, records)

        def decide(state: RouteState):
            return decide_route(spec, state, observed, news, now)

    read = states.get(spec.id) or RouteState(spec.id)
    changed, message = decide(read)
    state = read
    if changed != read or message is not None:
        state, _ = store.change_route(spec.id, decide)
    attempts = _send_due(spec, state, model, now, environ, send, deadline)
    if attempts:
        state, _ = store.change_route(spec.id, lambda s: (after_delivery(s, attempts), None))
    result.sent += sum(a.error is None for a in attempts)
    result.failed += sum(a.error is not None for a in attempts)
    result.waiting += len(state.backlog)
    result.routes[spec.id] = state.last_status


def _send_due(spec: RouteSpec, state: RouteState, model: StatusModel, now: datetime,
              environ: Mapping[str, str], send: Sender | None, deadline: float
              ) -> list[Attempted]:
    attempts = []
    for message in due_messages(state, now):
        if time.monotonic() > deadline:
            break  # the rest waits for the next publish
        try:
            if send is not None:
                send(spec, message, model)
            else:
                send_message(spec, message, model, environ, model.control.egress)
            attempts.append(Attempted(message.id, now))
        except DeliveryError as exc:
            attempts.append(Attempted(message.id, now, shorten(str(exc), 500)))
        except Exception as exc:  # our bug (a custom sender's): recorded in our words
            attempts.append(Attempted(message.id, now, f"failed ({type(exc).__name__})"))
        if attempts[-1].error:
            log.warning("route %s: message %s not delivered: %s", spec.id, message.id,
                        attempts[-1].error)
    return attempts
