"""When the page may change by time alone (freshet.status.quiet.next_change): pure tables
checked against the model itself (what it shows just before the answer is what it shows
now; just after, it differs), and an idle publish on the emulator that rebuilds once
the clock turns a state."""

import json
from datetime import timedelta

import pytest

from freshet.core.control import Control
from freshet.core.deadlines import Deadline
from freshet.core.settings import Settings
from freshet.core.windows import Maintenance, make_window
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import Store
from freshet.status.quiet import JUST_AFTER, next_change
from freshet.status.render import consumer_key, status_json

from .builders import MIN, NOW, H, catalog, consumer, job, model, requirement, synced
from .seed import seed_pipeline

CAP = NOW + 24 * H


def shown(**kw) -> str:
    """What the page says, its ages and times in words left out (render.consumer_key)."""
    return consumer_key(status_json(model(**kw), []))


def change(**kw) -> object:
    jobs, datasets = list(kw.get("jobs", ())), list(kw.get("datasets", ()))
    return next_change(jobs=jobs, datasets=datasets, catalog=kw.get("cat") or catalog(),
                       control=kw.get("control") or Control(), heartbeats=kw.get("heartbeats", {}),
                       incidents=kw.get("incidents", ()), now=kw.get("now", NOW),
                       until=kw.get("until", CAP))


def turns_at(at, **kw) -> None:
    """The page says the same from now until a minute before `at`, and something else a
    minute after it."""
    before = shown(**kw, now=NOW)
    assert shown(**kw, now=at - MIN) == before
    assert shown(**kw, now=at + MIN) != before


SALES = catalog({"crm.accounts": ()},
                [consumer("sales", "Sales", requirement("crm.accounts", 2, 6))])


@pytest.mark.parametrize("ago,turns", [
    (2 * H - MIN, NOW + MIN),  # fresh, warn at 2 h: a minute from now
    (2 * H + MIN, NOW + 4 * H - MIN),  # warn, error at 6 h
])
def test_a_dataset_crossing_its_threshold_is_the_next_change(ago, turns):
    data = [synced("crm.accounts", ago)]
    assert change(datasets=data, cat=SALES) == turns
    turns_at(turns, datasets=data, cat=SALES)


def test_the_strictest_requirement_of_several_consumers_counts_each_consumers_own_too():
    cat = catalog({"crm.accounts": ()}, [
        consumer("sales", "Sales", requirement("crm.accounts", 2, 6)),
        consumer("board", "Board", requirement("crm.accounts", 3, 4))])
    data = [synced("crm.accounts", 150 * MIN)]  # warn for sales; board warns at 3 h
    assert change(datasets=data, cat=cat) == NOW + 30 * MIN
    turns_at(NOW + 30 * MIN, datasets=data, cat=cat)


def test_a_deadline_passing_is_a_change():
    deadline = Deadline(by="30 12 * * *", timezone="UTC")
    cat = catalog({"crm.accounts": ()}, [consumer("sales", "Sales",
                                                   requirement("crm.accounts", 2, 6))])
    cat = type(cat)(datasets=cat.datasets, consumers=(
        type(cat.consumers[0])("sales", "Sales", requires=cat.consumers[0].requires,
                               deadlines=(deadline,)),))
    data = [synced("crm.accounts", 10 * MIN)]
    assert change(datasets=data, cat=cat) == NOW + 30 * MIN  # judged then; next_due moves

    def next_due(at):
        return model(datasets=data, cat=cat, now=at).consumer("sales").deadlines[0].next_due

    assert next_due(NOW) == next_due(NOW + 29 * MIN) != next_due(NOW + 31 * MIN)


def test_a_late_producer_turns_a_deadline_at_risk_when_its_usual_start_passes():
    # due at 13:00 with data as of 12:00: the data (11:00) is short of its target, and
    # crm_sync's 12:00 slot has not started: at risk once its usual 2 minutes pass
    deadline = Deadline(by="0 13 * * *", timezone="UTC", as_of="1h")
    base = catalog({"crm.accounts": ()})
    cat = type(base)(datasets=base.datasets, consumers=(type(SALES.consumers[0])(
        "sales", "Sales", requires=(requirement("crm.accounts", 2, 6),),
        deadlines=(deadline,)),))
    producer = job("crm_sync", produces=["crm.accounts"],
                   schedule={"cron": "0 * * * *", "timezone": "UTC"})
    data = [synced("crm.accounts", 61 * MIN)]
    kw = dict(jobs=[producer], datasets=data, cat=cat)
    assert change(**kw) == NOW + 2 * MIN + JUST_AFTER
    turns_at(NOW + 2 * MIN, **kw)


def test_a_maintenance_window_starting_or_coming_within_the_listed_week_is_a_change():
    soon = Maintenance((make_window({"id": "vacuum", "start": (NOW + 5 * MIN).isoformat(),
                                     "end": (NOW + H).isoformat(),
                                     "scope": {"datasets": ["crm.accounts"]}}, "m"),))
    data = [synced("crm.accounts", 3 * H)]  # warn: the window will excuse it
    assert change(datasets=data, cat=SALES, control=Control(maintenance=soon)) == NOW + 5 * MIN
    turns_at(NOW + 5 * MIN, datasets=data, cat=SALES, control=Control(maintenance=soon))
    later = Maintenance((make_window({"id": "vacuum",
                                      "start": (NOW + 7 * 24 * H + 3 * MIN).isoformat(),
                                      "end": (NOW + 7 * 24 * H + H).isoformat()}, "m"),))
    # listed from just after then
    assert change(control=Control(maintenance=later)) == NOW + 3 * MIN + JUST_AFTER
    turns_at(NOW + 3 * MIN, control=Control(maintenance=later))


def test_the_control_loop_growing_late_is_a_change():
    beats = {"tick": {"at": NOW - 2 * MIN}, "recover": {"at": NOW - MIN}}
    assert change(heartbeats=beats) == NOW + MIN + JUST_AFTER  # 3 minutes without a tick
    before = consumer_key(status_json(model_with_beats(beats, NOW), []))
    assert consumer_key(status_json(model_with_beats(beats, NOW + MIN / 2), [])) == before
    assert consumer_key(status_json(model_with_beats(beats, NOW + 2 * MIN), [])) != before


def model_with_beats(beats, now):
    from freshet.core.settings import Settings
    from freshet.status.model import build_model

    return build_model(jobs=[], datasets=[], runs=[], catalog=catalog(), control=Control(),
                       now=now, settings=Settings(), heartbeats=beats)


def test_with_nothing_on_the_clock_the_cap_and_the_next_utc_day_bound_it():
    assert change(until=NOW + 10 * MIN) == NOW + 10 * MIN
    assert change() == NOW + 12 * H  # midnight UTC: the day bars move


# -- the publish ------------------------------------------------------------------------


def test_an_idle_publish_rebuilds_once_time_alone_turns_a_state(db, tmp_path):
    """crm.accounts (29 min 40 s old) warns at 2 h: publishes before then are idle (5
    reads, no write, only heartbeat.json), the first after it rebuilds and says warn."""
    store = Store(db)
    seed_pipeline(store)
    sink, cfg = LocalSink(tmp_path), Settings(page_stale_after_s=86_400)  # a 12 h cap
    turn = NOW + 90 * MIN + 20 * timedelta(seconds=1)

    def publish(at):
        store.stats.reset()
        from freshet.status.publish import publish_once

        result = publish_once(store, sink, now=at, settings=cfg, environ={})
        sales = {c["id"]: c for c in json.loads((tmp_path / "status.json").read_text())[
            "consumers"]}["sales"]
        return result, sales["state"]

    assert publish(NOW)[0].mode == "full"
    idle, state = publish(turn - MIN)
    assert (idle.mode, idle.reads, idle.writes, idle.files_written) == ("idle", 5, 0, 1)
    assert state == "fresh"  # status.json as the last build wrote it
    beat = json.loads((tmp_path / "heartbeat.json").read_text())
    assert beat["generated_at"] == (turn - MIN).isoformat().replace("+00:00", "Z")
    rebuilt, state = publish(turn + MIN)
    assert rebuilt.mode == "incremental" and state == "warn"


def test_an_idle_publish_is_not_taken_when_a_setting_or_an_incident_was_written(db, tmp_path):
    from freshet.core.incidents import open_incident
    from freshet.status.publish import publish_once

    store = Store(db)
    seed_pipeline(store)
    sink, cfg = LocalSink(tmp_path), Settings(page_stale_after_s=86_400)
    publish_once(store, sink, now=NOW, settings=cfg, environ={})
    assert publish_once(store, sink, now=NOW + MIN, settings=cfg, environ={}).mode == "idle"
    store.create_incident(open_incident(title="Warehouse down", now=NOW + MIN))
    after = publish_once(store, sink, now=NOW + 2 * MIN, settings=cfg, environ={})
    assert after.mode == "incremental"
    assert "Warehouse down" in (tmp_path / "index.html").read_text()
    assert publish_once(store, sink, now=NOW + 3 * MIN, settings=cfg, environ={}).mode == "idle"
    store.put_heartbeat("tick", {"at": NOW + 3 * MIN})
    assert publish_once(store, sink, now=NOW + 4 * MIN, settings=cfg,
                        environ={}).mode == "incremental"
    # another site build (a template, a setting the page shows) rebuilds too
    other = Settings(page_stale_after_s=86_400, site_url="https://elsewhere.example/")
    assert publish_once(store, sink, now=NOW + 5 * MIN, settings=other,
                        environ={}).mode == "incremental"


@pytest.mark.parametrize("seed", range(60))
def test_nothing_the_page_says_changes_before_the_answer_in_random_pipelines(seed):
    """Random ages, requirements, upstream chains, producers on hourly slots, a deadline
    and a maintenance window: the page at any moment before next_change says what it
    says now (its ages in words aside)."""
    import random

    rng = random.Random(seed)
    keys = [f"src.t{i}" for i in range(8)]
    cat = catalog({k: ((keys[i - 1],) if i and rng.random() < 0.5 else ())
                   for i, k in enumerate(keys)})
    deadline = Deadline(by=f"{rng.randrange(60)} * * * *", timezone="UTC",
                        as_of=rng.choice([None, "1h", "midnight"]))
    people = tuple(type(SALES.consumers[0])(
        f"c{c}", f"C{c}", requires=tuple(requirement(k, w, w + rng.choice([1, 2, 24]))
                                         for k in rng.sample(keys, 3)
                                         for w in [rng.choice([1, 2, 6, 24])]),
        deadlines=(deadline,) if c == 0 else ()) for c in range(3))
    cat = type(cat)(datasets=cat.datasets, consumers=people)
    data = [synced(k, rng.randrange(1, 30 * 60) * MIN) for k in keys if rng.random() < 0.9]
    for d in data:
        if rng.random() < 0.3:  # a sync under way (overrunning once past its usual 10 min)
            d.last_started_at = NOW - rng.randrange(0, 20) * MIN
        elif rng.random() < 0.2:
            d.last_failure_at, d.consecutive_failures = NOW - MIN, 1
    jobs = [job(f"j{i}", produces=[k], schedule={"cron": f"{rng.randrange(60)} * * * *",
                                                   "timezone": "UTC"},
                recent_durations_s=[600.0] * 5)
            for i, k in enumerate(keys)]
    start = NOW + rng.randrange(0, 120) * MIN
    windows = Maintenance((make_window({
        "id": "w", "start": start.isoformat(), "end": (start + H).isoformat(),
        "scope": {"datasets": rng.sample(keys, 2)}}, "m"),))
    kw = dict(jobs=jobs, datasets=data, cat=cat, control=Control(maintenance=windows))
    until = change(**kw, until=NOW + 6 * H)
    now_says = shown(**kw, now=NOW)
    moments = [until - timedelta(seconds=1)] + [NOW + (until - NOW) * rng.random()
                                                for _ in range(4)]
    for at in [max(NOW, min(m, until - JUST_AFTER)) for m in moments]:
        assert shown(**kw, now=at) == now_says, (seed, at, until)
