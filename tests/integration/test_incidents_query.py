"""The status page's incidents: one query on the emulator (open ones, and resolved ones
updated within the history), each incident read once."""

from datetime import UTC, datetime, timedelta

from freshet.core.incidents import open_incident, resolve
from freshet.gcp.store import Store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_open_and_recently_resolved_incidents_come_from_one_query_each_read_once(db):
    store = Store(db)
    old_open = open_incident(title="Old but open", note="n", now=NOW - 200 * DAY)
    fresh_open = open_incident(title="Open", note="n", now=NOW - DAY)
    recent = resolve(open_incident(title="Resolved lately", note="n", now=NOW - 5 * DAY),
                     text="fixed", now=NOW - 4 * DAY)
    gone = resolve(open_incident(title="Resolved long ago", note="n", now=NOW - 200 * DAY),
                   text="fixed", now=NOW - 199 * DAY)
    for incident in (old_open, fresh_open, recent, gone):
        store.create_incident(incident)
    store.stats.reset()
    listed = store.incidents(NOW - 90 * DAY)
    assert [i.title for i in listed] == ["Open", "Old but open", "Resolved lately"]
    assert store.stats.reads == 3  # one query, each incident once


def test_no_incident_costs_one_read(db):
    store = Store(db)
    store.stats.reset()
    assert store.incidents(NOW - 90 * DAY) == []
    assert store.stats.reads == 1


def test_the_listing_keeps_at_most_limit_open_and_limit_resolved_newest_first(db):
    store = Store(db)
    for n in range(4):
        store.create_incident(open_incident(title=f"open {n}", note="n", now=NOW - n * DAY))
        opened = open_incident(title=f"resolved {n}", note="n", now=NOW - (n + 1) * DAY)
        store.create_incident(resolve(opened, text="ok", now=NOW - n * DAY))
    listed = store.incidents(NOW - 90 * DAY, limit=2)
    assert [i.title for i in listed] == ["open 0", "open 1", "resolved 0", "resolved 1"]
