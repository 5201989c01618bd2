"""One set of clients per process: `Deps` makes the status site's and the snapshots'
sinks once, sharing one Cloud Storage client, and run_task hands its snapshot sink to
the sync (no sink or client made per run)."""

import json

import flask

from freshet.core.settings import Settings
from freshet.gcp.storage import BucketSink, LocalSink, StorageClient
from freshet.gcp.store import Store
from freshet.loop.registry import SyncContext, SyncResult, sync
from freshet.loop.tick import tick_once
from freshet.ops import entries
from freshet.ops.deps import Deps
from freshet.ops.web import serve
from tests.loop.helpers import T0, RecordingQueue, add_job, loop_settings

KIND = "test_snapshot_probe"


@sync(KIND)
def _probe(ctx: SyncContext) -> SyncResult:
    ctx.snapshot(f"{ctx.run_id}.json", b'{"ok": true}', "application/json")
    return SyncResult(records={key: 1 for key in ctx.produces})


def test_the_sinks_are_made_with_the_deps_once_and_share_one_storage_client():
    settings = Settings(site_bucket="gs://site-bucket/status", snapshot_bucket="snaps")
    deps = Deps(settings=settings, store=None, task_queue=None, certs=None)
    site, snapshots = deps.site_sink, deps.snapshots
    assert isinstance(site, BucketSink) and isinstance(snapshots, BucketSink)
    assert (site.bucket_name, site.prefix, snapshots.bucket_name) == ("site-bucket", "status",
                                                                      "snaps")
    assert isinstance(site._client, StorageClient) and site._client is snapshots._client
    assert deps.site_sink is site  # made once, not per publish


def test_without_buckets_the_sinks_are_the_settings_folders(tmp_path):
    settings = Settings(site_dir=str(tmp_path / "site"), snapshot_dir=str(tmp_path / "s"))
    deps = Deps(settings=settings, store=None, task_queue=None, certs=None)
    assert isinstance(deps.site_sink, LocalSink) and isinstance(deps.snapshots, LocalSink)
    assert (deps.site_sink.folder, deps.snapshots.folder) == (tmp_path / "site", tmp_path / "s")


def test_run_task_writes_the_syncs_snapshot_to_the_deps_sink(db, tmp_path):
    settings = loop_settings(snapshot_dir=str(tmp_path / "from-settings"))
    store, queue = Store(db), RecordingQueue(settings)
    add_job(store, "probe", kind=KIND, produces=("probe.out",), next_run_at=T0)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    deps = Deps(settings=settings, store=store, task_queue=queue, certs=None,
                clock=lambda: T0, snapshots=LocalSink(tmp_path / "given"))
    with flask.Flask(__name__).test_request_context(
            "/run_task", method="POST", data=json.dumps({"run_id": run_id}),
            content_type="application/json", headers={"X-CloudTasks-TaskRetryCount": "0"}):
        response = serve(flask.request, entries.run_task, deps)
    assert response.status_code == 200, response.data
    assert json.loads((tmp_path / "given" / "probe" / f"{run_id}.json").read_text()) == {
        "ok": True}
    assert not (tmp_path / "from-settings").exists()
