"""Sinks: a local folder, and a bucket on a real local Cloud Storage emulator server."""

import socket
import threading

import pytest
import requests

from freshet.core.errors import ValidationError
from freshet.core.settings import Settings
from freshet.gcp.storage import BucketSink, LocalSink, parse_bucket, sink_from_settings

BUCKET = "freshet-status-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def storage_emulator(monkeypatch_module):
    """gcp-storage-emulator in memory, in a thread; STORAGE_EMULATOR_HOST points at it."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    host = f"http://127.0.0.1:{port}"
    monkeypatch_module.setenv("STORAGE_EMULATOR_HOST", host)
    yield host
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture
def storage_client(storage_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="demo-freshet", credentials=AnonymousCredentials())


def test_bucket_sink_writes_objects_with_content_type_and_cache_control(storage_client):
    sink = BucketSink(BUCKET, prefix="status/", client=storage_client)
    sink.write("index.html", b"<h1>ok</h1>", "text/html; charset=utf-8")
    sink.write("badges/dataset/meta.ads.svg", b"<svg/>", "image/svg+xml")
    sink.write("index.html", b"<h1>again</h1>", "text/html; charset=utf-8")

    bucket = storage_client.bucket(BUCKET)
    page = bucket.get_blob("status/index.html")
    assert page.cache_control == "public, max-age=60"
    assert page.content_type.startswith("text/html")  # the emulator drops "; charset=..."
    assert page.download_as_bytes() == b"<h1>again</h1>"
    badge = bucket.get_blob("status/badges/dataset/meta.ads.svg")
    assert badge.content_type == "image/svg+xml"
    names = {b.name for b in storage_client.list_blobs(BUCKET, prefix="status/")}
    assert names == {"status/index.html", "status/badges/dataset/meta.ads.svg"}


def test_bucket_objects_are_served_by_the_emulator_over_http(storage_client, storage_emulator):
    BucketSink(BUCKET, client=storage_client).write("status.json", b'{"a":1}', "application/json")
    url = f"{storage_emulator}/storage/v1/b/{BUCKET}/o/status.json?alt=media"
    assert requests.get(url, timeout=5).json() == {"a": 1}


def test_bucket_sink_creates_its_client_from_the_environment(storage_emulator, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-freshet")
    sink = sink_from_settings(Settings(site_bucket=f"gs://{BUCKET}/env"))
    assert isinstance(sink, BucketSink)
    sink.write("feed.xml", b"<feed/>", "application/atom+xml")
    url = f"{storage_emulator}/storage/v1/b/{BUCKET}/o/env%2Ffeed.xml?alt=media"
    assert requests.get(url, timeout=5).content == b"<feed/>"


def test_local_sink_writes_nested_files(tmp_path):
    sink = LocalSink(tmp_path / "public")
    sink.write("badges/consumer/ads.svg", b"<svg/>", "image/svg+xml")
    sink.write("index.html", b"one", "text/html")
    sink.write("index.html", b"two", "text/html")
    assert (tmp_path / "public" / "badges" / "consumer" / "ads.svg").read_bytes() == b"<svg/>"
    assert (tmp_path / "public" / "index.html").read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "public").iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.parametrize("path", ["../x.html", "/etc/passwd", "a/../../x", "", "a\\b"])
def test_sinks_refuse_paths_outside_the_site(tmp_path, path):
    with pytest.raises(ValidationError) as exc:
        LocalSink(tmp_path).write(path, b"x", "text/plain")
    assert exc.value.field == "path"


def test_sink_from_settings_and_bucket_names():
    assert isinstance(sink_from_settings(Settings(site_dir="/tmp/x")), LocalSink)
    assert parse_bucket("gs://b/some/prefix") == ("b", "some/prefix")
    assert parse_bucket("b") == ("b", "")
    with pytest.raises(ValidationError):
        parse_bucket("gs://")
