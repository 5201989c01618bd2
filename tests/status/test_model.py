"""The pure status model: states at every boundary, at-risk upstreams, banners, bars, secrets."""

from datetime import timedelta

import pytest

from freshet.core.catalog import Catalog, Pool
from freshet.core.control import Control
from freshet.core.models import Attempt, AttemptOutcome, Dataset, new_job
from freshet.core.settings import Settings
from freshet.status.model import build_model, day_history

from .builders import (
    MIN,
    NOW,
    SECRET,
    H,
    catalog,
    consumer,
    job,
    model,
    requirement,
    run,
    synced,
)


def one(dataset: Dataset, warn_h=24, error_h=26):
    cat = catalog({dataset.key: ()}, [consumer("c", "Ad Performance",
                                               requirement(dataset.key, warn_h, error_h))])
    return model(datasets=[dataset], cat=cat)


@pytest.mark.parametrize(("age", "state"), [
    (24 * H - MIN, "fresh"),
    (24 * H, "warn"),
    (24 * H + MIN, "warn"),
    (26 * H - MIN, "warn"),
    (26 * H, "error"),
    (26 * H + MIN, "error"),
])
def test_state_changes_exactly_at_warn_after_and_error_after(age, state):
    m = one(synced("meta.ads", age))
    assert m.dataset("meta.ads").state == state
    assert m.consumer("c").state == state


def test_a_refresh_in_progress_past_warn_after_is_running():
    ds = synced("meta.ads", 25 * H)
    ds.last_started_at, ds.running_run_id = NOW - MIN, "r2"
    assert one(ds).dataset("meta.ads").state == "running"


def test_a_refresh_in_progress_past_error_after_is_still_an_error():
    ds = synced("meta.ads", 26 * H + MIN)
    ds.last_started_at, ds.running_run_id = NOW - MIN, "r2"
    assert one(ds).dataset("meta.ads").state == "error"


def test_first_sync_in_progress_is_running_and_never_synced_is_unknown():
    started = Dataset(key="meta.ads", last_started_at=NOW - MIN, running_run_id="r1")
    assert one(started).dataset("meta.ads").state == "running"
    assert one(Dataset(key="meta.ads")).dataset("meta.ads").state == "unknown"


def test_newest_failure_within_sla_is_failing_and_the_banner_quotes_the_error():
    ds = synced("meta.ads", 3 * H, last_failure_at=NOW - H, last_error="HTTP 500 from Meta",
                consecutive_failures=2)
    m = one(ds)
    assert m.dataset("meta.ads").state == "failing"
    assert m.consumer("c").message == (
        "Ad Performance — data is 3 h old (needs < 26 h); "
        "the last 2 syncs failed: HTTP 500 from Meta")


def test_banner_reads_like_the_issue_example():
    ds = synced("meta.ads", 27 * H, last_failure_at=NOW - H, last_error="token expired",
                consecutive_failures=1)
    assert one(ds).consumer("c").message == (
        "Ad Performance — data is 27 h old (needs < 26 h); the last sync failed: token expired")


def test_fresh_banner_says_how_old_and_what_is_needed():
    assert one(synced("meta.ads", 2 * H)).consumer("c").message == (
        "Ad Performance — data is fresh (2 h old, needs < 26 h)")


def test_downstream_of_a_stale_upstream_is_at_risk_even_though_its_sync_succeeded():
    cat = catalog({"raw": (), "clean": ("raw",), "report": ("clean",)},
                  [consumer("weekly", "Weekly report", requirement("report", 24, 48))])
    m = model(cat=cat, datasets=[synced("raw", 50 * H), synced("clean", H),
                                 synced("report", H)])
    assert m.dataset("raw").state == "error"
    assert m.dataset("clean").state == "at_risk"
    assert m.dataset("clean").own_state == "fresh"
    assert m.dataset("report").state == "at_risk"  # transitively, through clean
    assert m.dataset("report").at_risk_from == ("clean", "raw")
    banner = m.consumer("weekly")
    assert banner.state == "at_risk"
    assert "built from stale upstream data: clean, raw" in banner.message


@pytest.mark.parametrize("upstream", [
    synced("raw", 25 * H),  # warn
    Dataset(key="raw"),  # unknown: never synced
    synced("raw", H, last_failure_at=NOW - MIN, last_error="x", consecutive_failures=1),
])
def test_any_stale_upstream_state_puts_downstream_at_risk(upstream):
    m = model(cat=catalog({"raw": (), "clean": ("raw",)}),
              datasets=[upstream, synced("clean", H)])
    assert m.dataset("clean").state == "at_risk"


def test_fresh_or_running_upstream_leaves_downstream_fresh():
    refreshing = synced("raw", 25 * H)
    refreshing.last_started_at, refreshing.running_run_id = NOW - MIN, "r2"
    for upstream in (synced("raw", H), refreshing):
        m = model(cat=catalog({"raw": (), "clean": ("raw",)}),
                  datasets=[upstream, synced("clean", H)])
        assert m.dataset("clean").state == "fresh"


def test_a_worse_own_state_is_not_hidden_by_at_risk():
    m = model(cat=catalog({"raw": (), "clean": ("raw",)}),
              datasets=[synced("raw", 50 * H), synced("clean", 50 * H)])
    assert m.dataset("clean").state == "error"
    assert m.dataset("clean").at_risk_from == ("raw",)


def test_an_upstream_cycle_does_not_hang():
    m = model(cat=catalog({"a": ("b",), "b": ("a",)}),
              datasets=[synced("a", H), synced("b", 30 * H)])
    assert m.dataset("a").state == "at_risk"


def test_each_consumer_is_judged_by_its_own_requirement():
    cat = catalog({"meta.ads": ()}, [consumer("strict", "Strict", requirement("meta.ads", 1, 2)),
                                     consumer("lax", "Lax", requirement("meta.ads", 24, 48))])
    m = model(cat=cat, datasets=[synced("meta.ads", 3 * H)])
    assert m.consumer("strict").state == "error"
    assert m.consumer("lax").state == "fresh"
    assert m.dataset("meta.ads").state == "error"  # the dataset row uses the strictest


def test_banner_names_the_worst_dataset_and_lists_the_others():
    cat = catalog({"a": (), "b": (), "c": ()},
                  [consumer("p", "Page", requirement("a"), requirement("b"), requirement("c"))])
    m = model(cat=cat, datasets=[synced("a", 30 * H), synced("b", 25 * H), synced("c", H)])
    assert m.consumer("p").state == "error"
    assert m.consumer("p").message == "Page — A is 30 h old (needs < 26 h). Also: B (warning)"


def test_datasets_missing_from_the_catalog_are_shown_with_the_default_requirement():
    m = model(datasets=[synced("orphan.table", 30 * H)])
    d = m.dataset("orphan.table")
    assert not d.declared
    assert d.state == "warn"  # default: warn after 24 h, error after 48 h
    assert d.requirement.error_after == timedelta(hours=48)


def test_required_but_never_written_datasets_are_unknown():
    cat = catalog({}, [consumer("p", "Page", requirement("ghost"))])
    m = model(cat=cat)
    assert m.dataset("ghost").state == "unknown"
    assert m.consumer("p").message == "Page — data has never been synced"


def test_overall_follows_the_consumers_and_datasets_are_worst_first():
    cat = catalog({"a": (), "b": ()}, [consumer("p", "Page", requirement("a"))])
    m = model(cat=cat, datasets=[synced("a", H), synced("b", 60 * H)])
    assert m.state == "ok"  # b is bad, but no consumer needs it
    assert [d.key for d in m.datasets] == ["b", "a"]
    assert model(datasets=[synced("b", 60 * H)]).state == "error"
    assert model(datasets=[synced("b", 30 * H)]).state == "warn"


def test_day_history_has_one_letter_per_day_with_documented_meaning():
    daily = {"2026-11-28": {"ok": 2, "fail": 0}, "2026-11-27": {"ok": 1, "fail": 1},
             "2026-11-26": {"ok": 0, "fail": 3}, "2026-08-01": {"ok": 5}}
    start, days = day_history(daily, NOW)
    assert len(days) == 90
    assert start == "2026-08-31"
    assert days.endswith("-fpo")
    assert set(days[:-3]) == {"-"}  # 2026-08-01 is older than 90 days


def test_a_day_stored_without_one_of_its_counts_reads_the_missing_one_as_none():
    daily = {"2026-11-25": {}, "2026-11-26": {"fail": 2}, "2026-11-27": {"ok": 1},
             "2026-11-28": {"ok": 1, "fail": 1}}
    assert day_history(daily, NOW)[1].endswith("-fop")


def test_jobs_show_schedule_in_words_attempts_and_stuck_recoveries():
    j = job(last_run_id="r1", last_run_status="failed", last_error="boom",
            next_run_at=NOW + H, last_run_at=NOW - H)
    runs = [run("r1", status="failed", attempt_number=2, max_attempts=4, error="boom"),
            run("r2", status="failed", stuck=True, ago=2 * H),
            run("r3", ago=3 * H, attempts=[Attempt(number=1, outcome=AttemptOutcome.STUCK)])]
    m = model(jobs=[j], runs=runs)
    js = m.job("meta_sync")
    assert js.health == "failed"
    assert js.schedule == "At 06:00 every day (Europe/London)"
    assert js.timezone == "Europe/London"
    assert (js.attempt, js.max_attempts) == (2, 4)
    assert js.stuck_recoveries == 2
    assert [r.id for r in m.runs] == ["r1", "r2", "r3"]
    assert m.runs[0].duration_s == 42.0


@pytest.mark.parametrize(("fields", "control", "health"), [
    ({"status": "paused"}, Control(), "paused"),
    ({"status": "archived"}, Control(), "archived"),
    ({"status": "completed"}, Control(), "completed"),
    ({}, Control(disabled_kinds=frozenset({"noop"})), "disabled"),
    ({}, Control(), "never"),
    ({"running_run_id": "meta_sync__m20261128T1200Z"}, Control(), "running"),
    ({"last_run_status": "succeeded"}, Control(), "ok"),
    ({"last_run_status": "failed"}, Control(), "failed"),
    # The tick records a slot passed while the kind was switched off as skipped; the page
    # used to show such a job as running until its next run.
    ({"last_run_status": "skipped"}, Control(), "skipped"),
])
def test_job_health(fields, control, health):
    assert model(jobs=[job(**fields)], control=control).job("meta_sync").health == health


def test_secret_param_values_never_reach_the_model():
    j = job(last_error=f"401 for https://api/x?token={SECRET}", last_run_status="failed")
    ds = synced("meta.ads", H, last_failure_at=NOW - MIN, last_error=f"bad {SECRET}",
                consecutive_failures=1)
    cat = catalog({"meta.ads": ()}, [consumer("c", "C", requirement("meta.ads"))])
    m = model(jobs=[j], datasets=[ds], runs=[run("r1", status="failed", error=SECRET)], cat=cat)
    assert SECRET not in repr(m)
    assert dict(m.job("meta_sync").params) == {"account": "acme", "token": "[secret]"}
    assert "[redacted]" in m.consumer("c").message


def test_loop_health_boundaries():
    from datetime import UTC, datetime, timedelta

    from freshet.status.loop_health import loop_health

    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    fresh = {"tick": {"at": now - 3 * minute + minute / 60}, "recover": {"at": now - minute}}
    assert loop_health(fresh, now).ok
    late = {"tick": {"at": now - 3 * minute - minute / 60}}
    assert not loop_health(late, now).ok
    assert "last ticked 3 min ago" in loop_health(late, now).message
    assert "never ticked" in loop_health({}, now).message
    overdue = {"tick": {"at": now}, "recover": {"at": now, "not_ticking": ["a", "b"]}}
    result = loop_health(overdue, now)
    assert not result.ok and "2 job(s) are overdue: a, b" in result.message
    slow_sweep = {"tick": {"at": now}, "recover": {"at": now - 12 * minute}}
    assert "recovery last ran 12 min ago" in loop_health(slow_sweep, now).message


def test_banner_of_never_synced_dataset_at_risk_never_says_none():
    from datetime import UTC, datetime, timedelta

    from freshet.core.catalog import Catalog, Consumer, DatasetSpec
    from freshet.core.control import Control
    from freshet.core.freshness import Requirement
    from freshet.core.settings import Settings
    from freshet.status.model import build_model

    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    catalog = Catalog(
        datasets={"up": DatasetSpec("up"), "down": DatasetSpec("down", upstream=("up",))},
        consumers=(Consumer("page", "Page", requires=(
            Requirement("down", timedelta(minutes=5), timedelta(minutes=15)),)),))
    model = build_model(jobs=[], datasets=[], runs=[], catalog=catalog, control=Control(),
                        now=now, settings=Settings())
    message = model.consumer("page").message
    assert "None" not in message


# -- lineage, triggers, pools, slots ----------------------------------------------------

def test_lineage_joins_declared_upstreams_and_triggers_both_ways():
    rollup = new_job(id="rollup", kind="noop", produces=["sales.revenue"],
                     trigger={"after": ["sales.orders", "fx.rates"]})
    report = new_job(id="report", kind="noop", produces=["sales.report"],
                     trigger={"after": ["sales.revenue"]}, status="archived")
    m = model(jobs=[rollup, report, job()], datasets=[
        synced("sales.orders", H, triggers=["rollup"]), synced("fx.rates", 30 * H),
        synced("sales.revenue", H)],
        cat=catalog({"sales.orders": (), "fx.rates": (), "sales.revenue": ("sales.orders",),
                     "sales.report": ()}))
    revenue = m.dataset("sales.revenue")
    assert revenue.upstream == ("fx.rates", "sales.orders")  # declared + triggered
    assert revenue.state == "at_risk" and revenue.at_risk_from == ("fx.rates",)
    assert m.dataset("sales.orders").downstream == ("sales.revenue",)
    assert m.dataset("sales.orders").triggers == ("rollup",)
    assert m.dataset("sales.report").upstream == ()  # its only trigger job is archived
    assert m.job("rollup").trigger == "after all of sales.orders, fx.rates is fresh"
    assert m.job("rollup").schedule == "No schedule: runs when triggered"


def test_pools_show_their_limit_and_the_counted_runs():
    cat = Catalog(pools=(Pool("default", "freshet-runs", 100),
                         Pool("warehouse", "freshet-runs-warehouse", 2)))
    m = build_model(jobs=[], datasets=[], runs=[], catalog=cat, control=Control(), now=NOW,
                    settings=Settings(), pool_counts={"warehouse": (2, 7)})
    assert [(p.name, p.running, p.queued, p.max_concurrent) for p in m.pools] == [
        ("default", 0, 0, 100), ("warehouse", 2, 7, 2)]
# -- trust: data time, maintenance, deadlines, incidents ---------------------------------


def windows(**doc):
    from freshet.core.windows import Maintenance, make_window

    base = {"id": "vacuum", "start": (NOW - H).isoformat(), "end": (NOW + H).isoformat()}
    return Control(maintenance=Maintenance((make_window({**base, **doc}, "m"),)))


def test_stale_data_banner_for_one_and_for_several_datasets():
    lagging = synced("web.events", 2 * MIN, data_as_of=NOW - 13 * H)
    m = one(lagging, 6, 8)
    assert m.dataset("web.events").freshness_basis == "data"
    assert m.consumer("c").detail == ("synced 2 min ago, but the data is as of yesterday "
                                      "23:00 UTC (needs < 8 h)")
    cat = catalog({"web.events": (), "crm": ()},
                  [consumer("c", "C", requirement("web.events", 6, 8), requirement("crm"))])
    m = model(datasets=[lagging, synced("crm", H)], cat=cat)
    assert m.consumer("c").detail == ("Web Events synced 2 min ago, but its data is as of "
                                      "yesterday 23:00 UTC (needs < 8 h)")


def test_a_window_excuses_a_bad_dataset_and_says_so():
    stale = synced("meta.ads", 30 * H)
    cat = catalog({"meta.ads": ()}, [consumer("c", "Ads", requirement("meta.ads"))])
    m = model(datasets=[stale], cat=cat, jobs=[job()],
              control=windows(scope={"jobs": ["meta_sync"]}, note="API migration"))
    d, c = m.dataset("meta.ads"), m.consumer("c")
    assert (d.state, d.excused_by) == ("maintenance", "vacuum")
    assert c.state == "maintenance" and m.state == "ok"
    assert m.headline == "Maintenance in progress"
    assert c.detail == ("data is 30 h old (needs < 26 h); excused: maintenance 'vacuum' until "
                        "2026-11-28 13:00 UTC (API migration)")
    assert [o.window.id for o in m.active_maintenance] == ["vacuum"]


def test_a_window_on_the_consumer_excuses_it_but_not_the_dataset_row():
    stale = synced("meta.ads", 30 * H)
    cat = catalog({"meta.ads": ()}, [consumer("c", "Ads", requirement("meta.ads"))])
    m = model(datasets=[stale], cat=cat, control=windows(scope={"consumers": ["c"]}))
    assert m.consumer("c").state == "maintenance" and m.consumer("c").excused_by == "vacuum"
    assert m.dataset("meta.ads").state == "error"


def test_maintenance_days_draw_grey_where_syncs_did_not_all_succeed():
    from freshet.core.windows import Maintenance, make_window

    nightly = make_window({"id": "n", "cron": "0 2 * * *", "duration": "1h"}, "m")
    daily = {(NOW.date() - timedelta(days=i)).isoformat():
             {"ok": 1, "fail": 1 if i in (3, 5) else 0} for i in range(1, 10)}
    ds = synced("meta.ads", H, daily=daily)
    m = model(datasets=[ds], cat=catalog({"meta.ads": ()}),
              control=Control(maintenance=Maintenance((nightly,))))
    bar = m.dataset("meta.ads").history
    assert bar[-4] == "m" and bar[-6] == "m" and bar[-2] == "o"  # partial days are excused
    assert bar[-1] == "m"  # today: no sync yet, a window at 02:00
    assert bar[-11] == "-"  # before its first recorded day: no history to excuse


def test_a_deadline_at_risk_makes_the_consumer_at_risk_and_says_why():
    from dataclasses import replace

    from freshet.core.catalog import Consumer
    from freshet.core.deadlines import Deadline

    deadline = Deadline(by="0 14 * * *", as_of="2h")  # 14:00, data as of 12:00
    c = Consumer("rev", "Revenue", requires=(requirement("meta.ads"),), deadlines=(deadline,))
    daily_at_noon = job(schedule={"cron": "0 12 * * *", "timezone": "UTC"})
    m = model(datasets=[synced("meta.ads", 20 * H)], jobs=[daily_at_noon],
              cat=replace(catalog({"meta.ads": ()}), consumers=(c,)), now=NOW + 10 * MIN)
    status = m.consumer("rev")
    assert status.state == "at_risk"
    assert status.detail == ("at risk of missing its deadline (Sat 14:00 UTC): meta_sync has "
                             "not started (due 12:00 UTC, usually within 2 min)")
    assert status.deadlines[0].risks[0].signal == "not_started"
    assert status.attainment_90d is None  # no verdict yet


def test_open_incidents_reach_the_datasets_and_consumers_they_are_about():
    from freshet.core.incidents import open_incident, resolve
    from freshet.core.windows import Scope

    on_job = open_incident(title="Meta outage", scope=Scope(jobs=("meta_sync",)), now=NOW)
    everywhere = open_incident(title="Cloud outage", now=NOW)
    closed = resolve(open_incident(title="old", scope=Scope(datasets=("meta.ads",)),
                                   now=NOW - H), now=NOW)
    cat = catalog({"meta.ads": (), "crm": ()}, [consumer("c", "C", requirement("meta.ads")),
                                                 consumer("d", "D", requirement("crm"))])
    m = model(datasets=[synced("meta.ads", H), synced("crm", H)], cat=cat, jobs=[job()],
              incidents=[on_job, everywhere, closed])
    assert set(m.dataset("meta.ads").incidents) == {on_job.id, everywhere.id}
    assert set(m.consumer("c").incidents) == {on_job.id, everywhere.id}
    assert m.consumer("d").incidents == (everywhere.id,)
    assert [i.id for i in m.open_incidents] == [on_job.id, everywhere.id]


def test_an_incident_on_an_upstream_reaches_the_consumers_of_what_is_built_from_it():
    from freshet.core.incidents import open_incident
    from freshet.core.windows import Scope

    on_orders = open_incident(title="Orders export late", scope=Scope(jobs=("orders-sync",)),
                              now=NOW)
    cat = catalog({"sales.orders": (), "sales.revenue": ("sales.orders",),
                   "sales.forecast": ("sales.revenue",), "crm": ()},
                  [consumer("revenue", "Revenue dashboard", requirement("sales.forecast")),
                   consumer("crm-team", "CRM team", requirement("crm"))])
    m = model(datasets=[synced(k, H) for k in ("sales.orders", "sales.revenue",
                                               "sales.forecast", "crm")], cat=cat,
              jobs=[job("orders-sync", produces=["sales.orders"])], incidents=[on_orders])
    assert m.consumer("revenue").incidents == (on_orders.id,)  # two hops downstream
    assert m.consumer("crm-team").incidents == ()


def test_a_dataset_whose_jobs_are_all_paused_or_archived_says_so():
    from freshet.core.models import JobStatus

    paused = job("marketing-sync", produces=["marketing.audiences"], status=JobStatus.PAUSED)
    archived = job("old-export", produces=["ledger"], status=JobStatus.ARCHIVED)
    one_left = [job("a", produces=["both"], status=JobStatus.PAUSED),
                job("b", produces=["both"])]
    m = model(jobs=[paused, archived, *one_left],
              cat=catalog({"marketing.audiences": (), "ledger": (), "both": ()}))
    assert m.dataset("marketing.audiences").reason == \
        "never synced; its job marketing-sync is paused"
    assert m.dataset("ledger").reason.endswith("; its job old-export is archived")
    assert "paused" not in m.dataset("both").reason


# -- observed datasets (freshet.core.observe) ---------------------------------------------


def observed(key: str, data_age: timedelta) -> Dataset:
    from freshet.core.observe import Observation, apply_observation

    return apply_observation(Dataset(key), Observation(key, NOW - data_age), NOW - data_age)


def test_an_observed_upstream_gone_stale_puts_what_is_built_from_it_at_risk():
    cat = catalog({"vendor.orders": (), "sales.rollup": ("vendor.orders",)},
                  [consumer("c", "Rollup", requirement("sales.rollup", 24, 26),
                            requirement("vendor.orders", 2, 3))])
    m = model(datasets=[observed("vendor.orders", 4 * H), synced("sales.rollup", H)], cat=cat)
    vendor, rollup = m.dataset("vendor.orders"), m.dataset("sales.rollup")
    assert (vendor.state, vendor.freshness_basis) == ("stale_data", "observed")
    assert (rollup.state, rollup.at_risk_from) == ("at_risk", ("vendor.orders",))
    assert m.consumer("c").state == "stale_data"


def test_a_window_on_an_observed_dataset_excuses_it():
    cat = catalog({"vendor.orders": ()}, [consumer("c", "C", requirement("vendor.orders", 2, 3))])
    m = model(datasets=[observed("vendor.orders", 4 * H)], cat=cat,
              control=windows(scope={"datasets": ["vendor.orders"]}, note="vendor late"))
    assert m.dataset("vendor.orders").state == "maintenance"
    assert m.consumer("c").state == "maintenance"


def test_the_cycle_collector_is_paused_while_a_build_runs_and_restored_after():
    import gc

    from freshet.status.model import collector_paused

    seen = []

    @collector_paused
    def body(fail: bool = False):
        seen.append(gc.isenabled())
        if fail:
            raise ValueError("the build failed")

    assert gc.isenabled()
    body()
    with pytest.raises(ValueError):
        body(fail=True)
    assert seen == [False, False] and gc.isenabled()
    gc.disable()  # paused by a caller: left paused
    try:
        body()
        assert not gc.isenabled()
    finally:
        gc.enable()
