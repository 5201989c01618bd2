"""The newest object's `updated` under a Cloud Storage prefix (observed datasets),
against gcp-storage-emulator, through the official google-cloud-storage client.
objects.list: https://cloud.google.com/storage/docs/json_api/v1/objects/list
(`prefix`, `fields`; Object.updated is RFC 3339)."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from freshet.core.errors import NotFound
from freshet.gcp.storage import newest_update
from freshet_local import emulators


@pytest.fixture(scope="module")
def client():
    emu = emulators.start_storage(buckets=("vendor-drop",))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in emu.env().items():
            mp.setenv(key, value)
        yield storage.Client(project="demo-freshet", credentials=AnonymousCredentials())
    emu.stop()


def put(client, name: str) -> None:
    client.bucket("vendor-drop").blob(name).upload_from_string(b"id\n1\n")


def test_an_empty_prefix_has_no_time(client):
    assert newest_update("vendor-drop", "nothing/here/", client) is None


def test_the_newest_object_under_the_prefix_wins_and_others_are_ignored(client):
    put(client, "orders/2026-12-06/part-1.csv")
    first = newest_update("vendor-drop", "orders/", client)
    assert first is not None and first.tzinfo is not None
    assert abs(first - datetime.now(UTC)) < timedelta(minutes=5)
    time.sleep(1.1)
    put(client, "orders/2026-12-07/part-1.csv")
    put(client, "other/late.csv")  # not under the prefix
    second = newest_update("vendor-drop", "orders/", client)
    assert second > first
    assert newest_update("vendor-drop", "orders/2026-12-06/", client) == first


def test_a_missing_bucket_is_not_found(client):
    with pytest.raises(NotFound):
        newest_update("no-such-bucket", "x/", client)


def test_the_observe_pass_reads_a_prefix_through_the_shared_storage_client(client):
    from freshet.core.catalog import Catalog, DatasetSpec
    from freshet.core.observe import ObserveKind, ObserveSpec
    from freshet.gcp.memory import MemoryStore
    from freshet.gcp.storage import StorageClient
    from freshet.loop.observe import EngineReader, observe_once
    from freshet_local.recording_queue import RecordingQueue
    from tests.loop.helpers import loop_settings

    put(client, "drop/2026-12-07/part-1.csv")
    store, settings = MemoryStore(), loop_settings()
    spec = ObserveSpec(ObserveKind.GCS_PREFIX, "gs://vendor-drop/drop/")
    store.put_catalog_doc(Catalog(datasets={
        "vendor.files": DatasetSpec("vendor.files", observe=spec)}).to_doc())
    reader = EngineReader("demo-freshet", storage=StorageClient(client))
    observe_once(store, RecordingQueue(settings), now=datetime.now(UTC) + timedelta(seconds=5),
                 settings=settings, reader=reader)
    seen = store.get_dataset("vendor.files")
    assert seen.data_as_of == newest_update("vendor-drop", "drop/", client)
    assert seen.freshness_basis == "observed"
