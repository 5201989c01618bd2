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
