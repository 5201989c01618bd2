"""The console's first screen with 1,000 jobs (2,000 datasets, 100 consumers, a tenth of
the jobs failing, some paused) in the emulator.

    python bench/bench_console.py        # prints and returns the figures

console_overview_reads_1k_jobs   Firestore document reads of GET /overview (any page, any
                                 filter) once the status page has been published and 10
                                 jobs have changed since: the publish's stored chunks, the
                                 10 changed jobs, the catalog, the kill switches, the
                                 incidents; no read per job, no run read
console_overview_reads_1k_cold   the same before any publish (no stored model): every job
                                 and dataset is read
console_overview_first_s_1k_jobs GET /overview's first call in a process (it reads and
                                 decodes the stored chunks and the catalog)
console_overview_s_1k_jobs       GET / of the console end to end (the reads, the rows,
                                 the first page rendered), median of 5 (the chunks
                                 decoded once, the catalog kept a minute); target < 1 s
console_render_s_1k_rows         rendering all 1,000 rows on one page (no reads), median
                                 of 5; target < 1 s
console_overview_html_bytes_1k   that page's size
"""

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (import paths, emulators)
from common import ROOT  # noqa: E402

os.environ.setdefault("FRESHET_SITE_SRC", str(ROOT / "site"))

JOBS = 1000
ROUNDS = 5


def run() -> dict:
    with common.firestore() as (_emu, db):
        return _measure(db)


def _seed(store, now) -> None:
    from freshet.core.catalog import Catalog, Consumer, DatasetSpec
    from freshet.core.freshness import Requirement
    from freshet.core.models import Dataset, new_job

    jobs, datasets = [], []
    for i in range(JOBS):
        keys = [f"team{i % 20}.table{i}.a", f"team{i % 20}.table{i}.b"]
        job = new_job(id=f"job-{i:04}", kind="noop", schedule={"cron": "0 * * * *"},
                      produces=keys, pool=None, description=f"sync number {i}")
        job.next_run_at = now + timedelta(minutes=60 - i % 60)
        job.last_run_at = now - timedelta(minutes=i % 60)
        job.last_run_status = "failed" if i % 10 == 0 else "succeeded"
        job.last_error = "HTTP 503 from upstream\ntraceback ..." if i % 10 == 0 else None
        job.recent_durations_s = [12.5, 14.0]
        if i % 50 == 1:
            job.status, job.paused_reason, job.paused_by = "paused", "vendor outage", "ana"
        jobs.append((job.id, job.to_doc()))
        for k in keys:
            d = Dataset(key=k, last_success_at=now - timedelta(minutes=30 + i % 300),
                        last_started_at=now - timedelta(minutes=31))
            datasets.append((k, d.to_doc()))
    store.put_many("jobs", jobs)
    store.put_many("datasets", datasets)
    specs = tuple(DatasetSpec(key=k, title=k, owner=f"team{i % 20}")
                  for i, (k, _) in enumerate(datasets))
    consumers = tuple(Consumer(id=f"c{i}", title=f"Dashboard {i}", requires=tuple(
        Requirement(k, timedelta(hours=2), timedelta(hours=4))
        for k, _ in datasets[i * 20:(i + 1) * 20])) for i in range(100))
    store.put_catalog_doc(Catalog(datasets={s.key: s for s in specs},
                                  consumers=consumers).to_doc())


def _measure(db) -> dict:
    from freshet.core.settings import Settings
    from freshet.core.timeutil import utcnow
    from freshet.gcp.certs import CertCache
    from freshet.gcp.storage import LocalSink
    from freshet.gcp.store import Store
    from freshet.ops.console import InProcessApi, create_app, make_env
    from freshet.ops.deps import Deps
    from freshet.ops.overview import Filters, forget, overview
    from freshet.status.publish import publish_once
    from freshet_local.recording_queue import RecordingQueue

    store, now = Store(db), utcnow()
    _seed(store, now)
    settings = Settings(auth_mode="local")
    deps = Deps(settings=settings, store=store, task_queue=RecordingQueue(settings),
                certs=CertCache("http://127.0.0.1:9/unused"))
    client = create_app(InProcessApi(deps, "bench"), port=8765).test_client()
    store.stats.reset()
    overview(store, now, Filters(), limit=25)
    cold = store.stats.reads
    publish_once(store, LocalSink(Path(tempfile.mkdtemp())), now=now, settings=settings,
                 environ={})
    for i in range(10):  # changed since the publish: read one by one
        store.update_job(f"job-{i * 7:04}", {"description": "edited after the publish"})
    forget()  # what a console started now reads
    store.stats.reset()
    started = time.perf_counter()
    whole = overview(store, now, Filters(), limit=JOBS)
    first = time.perf_counter() - started
    reads = store.stats.reads
    assert len(whole["jobs"]) == JOBS and whole["jobs"][0]["failing"]
    assert sum(j["description"] == "edited after the publish" for j in whole["jobs"]) == 10
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        response = client.get("/", headers={"Host": "127.0.0.1:8765"})
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    env = make_env()
    renders, html = [], ""
    for _ in range(ROUNDS):
        started = time.perf_counter()
        html = env.get_template("overview.html").render(
            title="Overview", nav="overview", csrf="x", notice=None, now=now,
            rel=lambda v: v or "—", url=lambda p, **k: p, q=lambda s: s, o=whole,
            filters={k: "" for k in ("state", "pool", "owner", "kind", "q")},
            states=(), cursor="")
        renders.append(time.perf_counter() - started)
    assert html.count('<tr id="j-') == JOBS
    return {
        "console_overview_reads_1k_jobs": reads,
        "console_overview_reads_1k_cold": cold,
        "console_overview_s_1k_jobs": round(common.median(timings), 3),
        "console_overview_first_s_1k_jobs": round(first, 3),
        "console_render_s_1k_rows": round(common.median(renders), 3),
        "console_overview_html_bytes_1k": len(html.encode()),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:36} {value}")
