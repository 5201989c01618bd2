"""Issue 20 section 2, against the emulator: the runs that catch-up records as skipped
(`catchup: skip` and `all`) reach the next incremental publish, which then builds what a
full rebuild builds. The incremental publish asks each collection for `updated_at` past
its mark, so this holds only if every write the store makes carries the commit time."""

from datetime import timedelta

import pytest

from freshet.core.models import RunStatus, TriggerSource
from freshet.core.runs import new_run
from freshet.core.settings import Settings
from freshet.gcp.store import Store
from freshet.loop.tick import tick_once
from freshet.status import incremental
from freshet.status.publish import read_model
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings

H = timedelta(hours=1)
NOW = T0 + 7 * MIN  # back at 12:07 after three days down: 73 hourly slots are due
RECENT = 200  # enough for every run of the outage to be on the page


def cfg() -> Settings:
    return Settings(site_url="https://status.example/")


@pytest.mark.parametrize(("policy", "skipped"), [("skip", 73), ("all", 49)])
def test_an_incremental_publish_after_catchup_skips_shows_them_like_a_full_one(
        db, policy, skipped):
    store, settings = Store(db), loop_settings()
    job = add_job(store, "hourly", cron="0 * * * *", produces=("ds.hourly",),
            next_run_at=T0 - timedelta(days=3), catchup=policy)
    # a run the page already shows, then a publish that stores the model and its marks
    before = T0 - timedelta(days=4)
    store.create_run(new_run(job, "hourly__before", before, source=TriggerSource.MANUAL,
                             now=before, settings=settings))
    incremental.save(store, incremental.load(store, now=NOW, settings=cfg(), recent=RECENT))

    result = tick_once(store, RecordingQueue(settings), now=NOW, settings=settings)
    assert result.skipped_slots == skipped

    inc, _, loaded = read_model(store, now=NOW + MIN, settings=cfg(), recent=RECENT)
    full, _, _ = read_model(store, now=NOW + MIN, settings=cfg(), full=True, recent=RECENT)
    assert loaded.mode == "incremental"
    assert sum(r.status == RunStatus.SKIPPED for r in inc.runs) == skipped
    assert inc == full
