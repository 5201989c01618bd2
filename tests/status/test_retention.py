"""Runs expire (their `expire_at`, which the TTL policy deploy creates acts on), and the
page does not miss them: its 90-day bars live on the datasets, and it lists only the
newest runs. Against the emulator: the runs are deleted as Firestore's TTL would."""

from datetime import timedelta

from freshet.core import runs
from freshet.core.control import Control
from freshet.core.lifecycle import SyncOutcome, decide_claim, decide_finish
from freshet.core.models import Dataset
from freshet.core.settings import Settings
from freshet.gcp.store import RUNS, Store
from freshet.status.publish import read_model
from freshet.status.render import render_site

from .builders import MIN, NOW, job
from .seed import seed_pipeline

DAYS = 120  # a daily sync's runs, the oldest older than the 90 days runs are kept
SHOWN = 20  # the page lists the newest runs only


def _daily_runs(store: Store, settings: Settings) -> None:
    """One run a day for DAYS days, through the lifecycle's own decisions, and the
    dataset as their endings left it."""
    daily = job("daily_sync", produces=["daily.table"], params={}, secret_params=[])
    store.put_job(daily)
    dataset, made = Dataset("daily.table"), []
    for day in range(DAYS, 0, -1):
        slot = NOW - timedelta(days=day)
        queued = runs.new_run(daily, f"daily_sync__{slot:%Y%m%d}", slot, source="schedule",
                              now=slot, settings=settings)
        claim = decide_claim(queued, daily, None, 1, Control(), slot, settings)
        finish = decide_finish(claim.run, 1, daily, SyncOutcome(records={}), slot + MIN,
                               settings)
        dataset = finish.datasets.apply(dataset)
        made.append(finish.run)
    store.put_many(RUNS, [(r.id, r.to_doc()) for r in made])
    store.put_many("datasets", [(dataset.key, dataset.to_doc())])


def _page(store: Store, settings: Settings) -> dict[str, bytes]:
    model, _, _ = read_model(store, now=NOW, settings=settings, full=True, recent=SHOWN)
    return {path: out.data for path, out in render_site(model, []).items()}


def test_runs_past_their_retention_can_go_without_changing_what_the_page_shows(db):
    store, settings = Store(db), Settings(site_url="https://status.example/")
    seed_pipeline(store)
    _daily_runs(store, settings)
    before = _page(store, settings)

    expired = [snap.reference for snap in db.collection(RUNS).stream()
               if snap.get("expire_at") is not None and snap.get("expire_at") <= NOW]
    assert len(expired) == DAYS - settings.run_retention_days  # ended over 90 days ago
    for ref in expired:  # what the TTL policy does, within a day of expire_at
        ref.delete()

    assert _page(store, settings) == before
    bar = read_model(store, now=NOW, settings=settings, full=True,
                     recent=SHOWN)[0].dataset("daily.table").history
    assert bar.count("o") == 89  # every day of the bar but today: a success each
