"""A notification route's state document stays under Firestore's 1 MiB at its worst
(issue 20, section 7), and a route whose state cannot be written is not silent.

The worst case: MAX_SUBJECTS_PER_ROUTE subjects, each with a class told and a deadline
seen, and a full backlog of messages whose every event carries the longest title and
summary in 4-byte characters, each message with the longest error. It is built by the
decisions publish_status makes and written to Google's emulator, which refuses a
document over 1 MiB as production does."""

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.alerts import (
    MAX_BACKLOG,
    MAX_EVENTS_PER_MESSAGE,
    MAX_SUBJECTS_PER_ROUTE,
    MAX_SUMMARY,
    MAX_TITLE,
    DeadlineNews,
    Message,
    Observation,
    Reference,
    RouteSpec,
    RouteState,
    RouteType,
    decide_route,
    notice,
)
from freshet.core.catalog import Catalog
from freshet.core.deadlines import Judgement, Verdict
from freshet.core.docsize import MAX_DOC_BYTES, doc_size
from freshet.core.errors import ValidationError
from freshet.gcp.store import Store
from freshet.status.model import route_statuses
from freshet.status.routing import notify_routes
from tests.status.builders import model

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WIDE = "\U0001d509"  # four bytes in UTF-8, the worst a character costs
SPEC = RouteSpec("r" * 100, RouteType.WEBHOOK, Reference(env="URL"), Reference(env="KEY"))


def subject(i: int) -> str:
    """The longest subject: a 200-character dataset key (consumer ids are 100)."""
    return "dataset:" + f"{i:08d}".rjust(200, "k")


def worst_state() -> RouteState:
    n = MAX_SUBJECTS_PER_ROUTE
    seen = [Observation(subject(i), "t", "fresh", "") for i in range(n)]
    news = [DeadlineNews(subject(i), "t", (Judgement("d", NOW, Verdict.MET, ""),))
            for i in range(n)]
    state, _ = decide_route(SPEC, RouteState(SPEC.id), seen, news, NOW)  # baselines
    stale = [replace(o, state="stale_data") for o in seen]
    state, _ = decide_route(SPEC, state, stale, news, NOW + timedelta(minutes=1))
    event = notice("dataset_stale_data", subject(0), WIDE * (2 * MAX_TITLE),
                   WIDE * (2 * MAX_SUMMARY), "stale_data", "warning", NOW)
    message = Message(id="m" * 20, created_at=NOW, events=(event,) * MAX_EVENTS_PER_MESSAGE,
                      more=10**9, attempts=7, next_attempt_at=NOW, last_error=WIDE * 500)
    backlog = tuple(replace(message, id=f"{i:020d}") for i in range(MAX_BACKLOG))
    return replace(state, backlog=backlog, dropped=10**12, delivered=10**12,
                   last_error=WIDE * 500, last_status="failed", last_attempt_at=NOW,
                   last_delivered_at=NOW, last_message_at=NOW)


def test_a_route_at_its_worst_is_written_and_read_back_under_one_mebibyte(db):
    state = worst_state()
    assert len(state.notified) == len(state.deadlines_seen) == MAX_SUBJECTS_PER_ROUTE
    assert len(state.backlog) == MAX_BACKLOG
    size = doc_size(f"routes/{SPEC.id}", state.to_doc())
    assert 0.8 * MAX_DOC_BYTES < size < MAX_DOC_BYTES, size  # near the limit, under it
    store = Store(db)
    store.change_route(SPEC.id, lambda _: (state, None))
    assert store.route_states()[SPEC.id] == state


def test_apply_refuses_a_route_followed_by_more_subjects_than_its_document_holds():
    from freshet.core.catalog import DatasetSpec
    from freshet.ops.config import _check_route_subjects

    def catalog(n: int) -> Catalog:
        return Catalog(datasets={f"d{i}": DatasetSpec(f"d{i}", routes=("ops",))
                                 for i in range(n)},
                       routes=(RouteSpec("ops", RouteType.SLACK, Reference(env="U")),))

    _check_route_subjects(catalog(MAX_SUBJECTS_PER_ROUTE))
    with pytest.raises(ValidationError, match=f"followed by {MAX_SUBJECTS_PER_ROUTE + 1} ") \
            as caught:
        _check_route_subjects(catalog(MAX_SUBJECTS_PER_ROUTE + 1))
    assert caught.value.field == "routes[0]" and "split it" in caught.value.message


def test_a_route_whose_state_cannot_be_written_says_so_in_the_log_and_in_freshet_status(
        db, caplog):
    """A state an older version left near the limit: this round's message would take it
    over 1 MiB, the emulator refuses the write, and the route says so where operators
    look, instead of stopping in silence."""
    store = Store(db)
    event = {"id": "e" * 20, "at": "2026-11-28T12:00:00Z", "kind": "job_failed",
             "subject": "j", "title": "t", "summary": WIDE * 2500, "state": "failed",
             "previous": ""}
    old = Message("o" * 20, NOW, events=(event,) * 10, next_attempt_at=NOW + timedelta(days=1))
    near = RouteState("default", backlog=tuple(replace(old, id=f"{i:020d}") for i in range(9)))
    assert 0.85 * MAX_DOC_BYTES < doc_size("routes/default", near.to_doc()) < MAX_DOC_BYTES
    store.change_route("default", lambda _: (near, None))
    from freshet.status.changes import Event

    big = [Event.from_doc(dict(event, id=f"n{i:019d}")) for i in range(20)]

    with caplog.at_level(logging.ERROR, logger="freshet.status.routing"):
        result = notify_routes(store, model(), Catalog(), {}, big, {"default": near},
                               now=NOW, webhook_url="https://hooks.example/x", environ={},
                               send=lambda *a: None)
    assert result.routes == {"default": "failed"} and result.failed == 1
    assert "notification route default failed this round" in caplog.text
    (shown,) = route_statuses(Catalog(), store.route_states(), "https://hooks.example/x")
    assert shown.last_status == "failed"
    assert shown.last_error.startswith("this round could not be recorded (")
    assert len(store.route_states()["default"].backlog) == 9  # what waited still waits
