"""A seeded pipeline in Firestore: two consumers, an upstream chain, jobs and runs."""

from datetime import datetime, timedelta

from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.models import Dataset
from freshet.gcp.store import Store

from .builders import HOSTILE, MIN, NOW, SECRET, H, job, requirement, run

__all__ = ["seed_pipeline", "seed_trust"]


def seed_pipeline(store: Store, now: datetime = NOW, *, meta_age: timedelta = 27 * H) -> None:
    cat = Catalog(
        datasets={
            "meta.ads": DatasetSpec("meta.ads", "Meta ads", owner="growth"),
            "ads.daily": DatasetSpec("ads.daily", "Ads daily rollup", upstream=("meta.ads",)),
            "crm.accounts": DatasetSpec("crm.accounts", "CRM accounts"),
        },
        consumers=(
            Consumer("ad-performance", "Ad Performance", url="https://bi.example/ads",
                     requires=(requirement("meta.ads", 24, 26),)),
            Consumer("weekly-report", "Weekly report",
                     requires=(requirement("ads.daily", 24, 48),)),
            Consumer("sales", "Sales dashboard", requires=(requirement("crm.accounts", 2, 6),)),
        ),
    )
    store.put_catalog_doc(cat.to_doc())
    daily = {(now.date() - timedelta(days=i)).isoformat():
             {"ok": 0 if i in (0, 1) else 4, "fail": 2 if i in (0, 1, 9) else 0}
             for i in range(75)}
    datasets = [
        Dataset("meta.ads", last_started_at=now - H, last_success_at=now - meta_age,
                last_failure_at=now - H + MIN, consecutive_failures=3,
                last_error=f"{HOSTILE} Meta API 401 for token={SECRET}", daily=daily),
        Dataset("ads.daily", last_started_at=now - 2 * H, last_success_at=now - 2 * H + MIN,
                daily={k: {"ok": 1, "fail": 0} for k in daily}),
        Dataset("crm.accounts", last_started_at=now - 30 * MIN,
                last_success_at=now - 30 * MIN + 20 * timedelta(seconds=1),
                daily={k: {"ok": 12, "fail": 0} for k in daily}),
    ]
    store.put_many("datasets", [(d.key, d.to_doc()) for d in datasets])
    jobs = [
        job("meta_sync", description=HOSTILE, last_run_status="failed",
            last_error=f"Meta API 401 for token={SECRET}", last_run_id="meta-3",
            last_run_at=now - H, next_run_at=now + 5 * H),
        job("daily_rollup", produces=["ads.daily"], params={}, secret_params=[],
            schedule={"cron": "15 2 * * *", "timezone": "America/New_York"},
            last_run_status="succeeded", last_run_id="roll-1", last_run_at=now - 2 * H,
            next_run_at=now + 20 * H),
        job("crm_sync", produces=["crm.accounts"], params={"region": "eu"}, secret_params=[],
            schedule={"cron": "*/30 * * * *", "timezone": "UTC"}, last_run_status="succeeded",
            last_run_at=now - 30 * MIN, next_run_at=now),
        job("old_backfill", produces=[], status="archived"),
    ]
    for j in jobs:
        store.put_job(j)
    runs = [
        run("meta-3", "meta_sync", ago=H, status="failed", attempt_number=4, max_attempts=4,
            error=f"Meta API 401 for token={SECRET}"),
        run("meta-2", "meta_sync", ago=6 * H, status="failed", stuck=True, seconds=1800,
            error="stuck: no heartbeat for 30 min"),
        run("roll-1", "daily_rollup", ago=2 * H, seconds=312.5),
        run("crm-9", "crm_sync", ago=30 * MIN, seconds=19.2),
    ]
    store.put_many("runs", [(r.id, r.to_doc()) for r in runs])


# -- trust: data time, deadlines, maintenance, incidents, routes --------------------------

def seed_trust(store: Store, now: datetime = NOW) -> None:
    """seed_pipeline, plus: a dataset whose syncs succeed but whose data lags (stale data),
    a consumer with a deadline and 90 days of verdicts, a maintenance window under way,
    an open incident with notes and a resolved one, two routes that have delivered, a
    kill switch with its reason."""
    from freshet.core.alerts import Reference, RouteSpec, RouteState, RouteType
    from freshet.core.deadlines import Deadline, DeadlineRecord, Judgement, Verdict
    from freshet.core.incidents import add_note, open_incident, resolve
    from freshet.core.windows import Maintenance, Scope, make_window

    seed_pipeline(store, now)
    cat = store.catalog()
    events = DatasetSpec("web.events", "Web events", owner="web", routes=("ops-hook",))
    deadline = Deadline(by="0 7 * * *", timezone="Europe/Paris", as_of="midnight")
    trust = Catalog(
        datasets={**cat.datasets, "web.events": events},
        consumers=(*cat.consumers,
                   Consumer("events-team", "Events team", requires=(
                       requirement("web.events", 6, 8),), routes=("growth-slack",)),
                   Consumer("revenue", "Revenue dashboard", owner="finance",
                            requires=(requirement("crm.accounts", 2, 6),),
                            deadlines=(deadline,), routes=("growth-slack", "ops-hook"))),
        routes=(RouteSpec("growth-slack", RouteType.SLACK, Reference(env="GROWTH_SLACK_URL"),
                          min_interval=10 * MIN),
                RouteSpec("ops-hook", RouteType.WEBHOOK, Reference(env="OPS_HOOK_URL"),
                          Reference(env="OPS_HOOK_SECRET"))),
    )
    store.put_catalog_doc(trust.to_doc())
    store.put_many("datasets", [
        ("web.events", Dataset("web.events", last_started_at=now - 3 * MIN,
                               last_success_at=now - 2 * MIN, data_as_of=now - 13 * H).to_doc()),
        # 7 h old (needs < 6 h), but a maintenance window holds its job: excused
        ("crm.accounts", Dataset("crm.accounts", last_started_at=now - 7 * H - MIN,
                                 last_success_at=now - 7 * H).to_doc()),
    ])
    record = DeadlineRecord("revenue", cursors={deadline.key: now - 5 * H},
                            days={(now.date() - timedelta(days=i)).isoformat():
                                  {"met": 1 if i % 10 else 0, "missed": 0 if i % 10 else 1,
                                   "excused": 0} for i in range(90)},
                            recent=[Judgement(deadline.key, now - 5 * H, Verdict.MET,
                                              "the data on time")])
    store.put_many("deadlines", [("revenue", record.to_doc())])
    window = make_window({"id": "crm-upgrade", "note": "CRM vendor upgrade",
                          "start": (now - H).isoformat(), "end": (now + H).isoformat(),
                          "scope": {"datasets": ["crm.accounts"]}}, "maintenance[0]")
    store.set_control({"maintenance": Maintenance((window,)).to_doc(),
                       "disabled_kinds": ["http_fetch"], "reason": "vendor API rate limits"})
    incident = open_incident(title="Meta ads API outage", note="Meta's API answers 401.",
                             scope=Scope(datasets=("meta.ads",)), eta=now + 2 * H,
                             author="alice@example.com", now=now - 50 * MIN)
    incident = add_note(incident, text="Meta confirmed the outage; token refresh pending.",
                        author="bob@example.com", now=now - 10 * MIN)
    old = resolve(open_incident(title="CRM export duplicated rows", author="alice@example.com",
                                now=now - 5 * 24 * H),
                  text="Deduplicated and reloaded.", now=now - 4 * 24 * H)
    store.create_incident(incident)
    store.create_incident(old)
    store.put_many("routes", [
        ("growth-slack", RouteState("growth-slack", last_status="delivered", delivered=4,
                                    last_attempt_at=now - 20 * MIN,
                                    last_delivered_at=now - 20 * MIN).to_doc()),
        ("ops-hook", RouteState("ops-hook", last_status="failed", delivered=2,
                                last_attempt_at=now - 5 * MIN,
                                last_delivered_at=now - 2 * H,
                                last_error="HTTP 503: try later").to_doc()),
    ])
