"""A seeded pipeline in Firestore: two consumers, an upstream chain, jobs and runs."""

from datetime import datetime, timedelta

from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.models import Dataset
from freshet.gcp.store import Store

from .builders import HOSTILE, MIN, NOW, SECRET, H, job, requirement, run


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
