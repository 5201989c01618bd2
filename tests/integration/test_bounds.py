"""The largest documents this issue's features write fit Firestore's 1 MiB (the emulator
enforces it): a route with a full backlog of the largest messages, an incident with
every note it may keep, a consumer's 90 days of verdicts, a dataset's data points."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import alerts
from freshet.core.alerts import Message, RouteState, notice, subject_key
from freshet.core.bookkeeping import MAX_DATA_POINTS, apply_success
from freshet.core.commit import differs
from freshet.core.created import Created
from freshet.core.deadlines import (
    ATTAINMENT_DAYS,
    RECENT_VERDICTS,
    DeadlineRecord,
    Judgement,
    Verdict,
)
from freshet.core.errors import Conflict
from freshet.core.incidents import (
    MAX_NOTE_CHARS,
    MAX_NOTES,
    MAX_TITLE_CHARS,
    add_note,
    open_incident,
    resolve,
)
from freshet.core.models import Dataset
from freshet.gcp.store import Store

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WIDE = "\u00e9" * 10_000  # two bytes each in UTF-8
LIMIT = 1024 * 1024


def size(doc: dict) -> int:
    return len(json.dumps(doc, default=str, ensure_ascii=False).encode())


def test_a_route_with_a_full_backlog_of_the_largest_messages_fits(db):
    big = [notice("consumer_error", f"consumer:{'c' * 100}{i}", WIDE, WIDE, "error", "ok", T0)
           for i in range(alerts.MAX_EVENTS_PER_MESSAGE)]
    backlog = tuple(Message(f"m{i}", T0, tuple(big), more=500, attempts=7,
                            next_attempt_at=T0, last_error=WIDE[:500])
                    for i in range(alerts.MAX_BACKLOG))
    state = RouteState("r", notified={subject_key(f"dataset:{i}"): "stale_data"
                                      for i in range(5000)},
                       deadlines_seen={subject_key(f"consumer:{i}"): T0 for i in range(1000)},
                       backlog=backlog, last_error=WIDE[:500])
    assert size(state.to_doc()) < LIMIT * 0.8
    store = Store(db)
    store.change_route("r", lambda _: (state, None))
    assert store.route_states()["r"] == state


def test_an_incident_with_every_note_it_may_keep_fits_and_refuses_one_more(db):
    incident = open_incident(title="t" * MAX_TITLE_CHARS, note=WIDE[:MAX_NOTE_CHARS],
                             author="a" * 200, now=T0)
    for i in range(MAX_NOTES - 1):
        incident = add_note(incident, text=WIDE[:MAX_NOTE_CHARS], author="a" * 200,
                            now=T0 + timedelta(minutes=i), eta=T0 + timedelta(hours=i))
    with pytest.raises(Conflict, match="100 notes"):
        add_note(incident, text="one more", now=T0 + timedelta(days=1))
    incident = resolve(incident, text=WIDE[:MAX_NOTE_CHARS], now=T0 + timedelta(days=1))
    store = Store(db)
    assert store.create_incident(incident) is Created.NEW
    assert store.get_incident(incident.id) == incident
    assert size(incident.to_doc()) < LIMIT * 0.5


def worst_record(consumer: str = "c" * 100) -> DeadlineRecord:
    return DeadlineRecord(
        consumer, cursors={f"{i:012x}": T0 for i in range(50)},
        days={(T0.date() - timedelta(days=i)).isoformat(): {"met": 1440, "missed": 1440,
                                                            "excused": 1440}
              for i in range(ATTAINMENT_DAYS)},
        recent=[Judgement(f"{i:012x}", T0, Verdict.MISSED, WIDE[:300])
                for i in range(RECENT_VERDICTS)], updated_at=T0)


def test_a_consumers_deadline_record_stays_small(db):
    record = worst_record()
    store = Store(db)
    store.judge_deadlines([record.consumer], lambda _c, _r: (record, []))
    stored = store.deadline_records()[record.consumer]
    assert replace(stored, updated_at=T0) == record  # updated_at: the commit time
    assert size(record.to_doc()) < 64 * 1024


def test_a_dataset_keeps_a_bounded_history_of_data_points(db):
    ds = Dataset(key="d")
    for i in range(MAX_DATA_POINTS * 3):
        ds = apply_success(ds, f"r{i}", T0 + timedelta(minutes=i),
                           watermark=T0 + timedelta(minutes=i - 60))
    assert len(ds.data_points) == MAX_DATA_POINTS
    store = Store(db)
    store.put_many("datasets", [("d", ds.to_doc())])
    assert not differs(store.get_dataset("d"), ds)  # read back whole (updated_at: commit time)


def test_a_bulk_load_larger_than_one_emulator_message_is_split_and_lands_whole(db):
    """500 dataset groups are ~15 MB: one batch of them exceeded the emulator's 4 MiB
    gRPC message (and a request's 10 MiB). put_many splits by bytes as well as count."""
    from freshet.gcp.store import BULK_BYTES

    store = Store(db)
    doc = {"blob": "x" * 200_000}
    count = BULK_BYTES // 200_000 * 3  # three batches' worth, each under the limit
    assert store.put_many("bulk", ((f"d{i}", doc) for i in range(count))) == count
    assert len(list(db.collection("bulk").list_documents())) == count


def test_a_transactions_worth_of_the_largest_deadline_records_commits(db):
    """gcp.store.JUDGED_PER_COMMIT consumers judged in one transaction, each record at its
    worst: one commit, under Firestore's 10 MiB and the emulator's 4 MiB message."""
    from freshet.gcp.store import JUDGED_PER_COMMIT

    ids = [f"{i:03d}" + "c" * 97 for i in range(JUDGED_PER_COMMIT)]
    store = Store(db)
    commits = store.stats.commits
    store.judge_deadlines(ids, lambda c, _current: (worst_record(c), []))
    assert store.stats.commits - commits == 1
    assert sorted(store.deadline_records()) == ids
