"""The one module that talks to Cloud Storage: the status site and sync snapshots go to
a bucket, or locally to a folder that stands in for one.

Both sinks take `write(path, data, content_type)` with a relative, slash-separated
path. The bucket's client is created on first use (STORAGE_EMULATOR_HOST points it at
a local emulator).
"""

import os
import posixpath
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from freshet.core.errors import ValidationError
from freshet.core.settings import Settings
from freshet.gcp.errors import translated, translates

# Short for the page and the feed (readers should see a rebuild soon), longer for badges.
CACHE_CONTROL = {"image/svg+xml": "public, max-age=300"}
DEFAULT_CACHE_CONTROL = "public, max-age=60"


class Sink(Protocol):
    def write(self, path: str, data: bytes, content_type: str) -> None: ...


def clean_path(path: str) -> str:
    """A relative path inside the site; refuses anything that could climb out of it."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise ValidationError("path", f"must be a relative path inside the site, got {path!r}")
    normal = posixpath.normpath(path)
    if normal.startswith("..") or normal == "." or "\x00" in normal:
        raise ValidationError("path", f"must stay inside the site, got {path!r}")
    return normal


class LocalSink:
    """Files in a folder; each write is atomic (a reader never sees half a page)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def write(self, path: str, data: bytes, content_type: str) -> None:
        target = self.folder / clean_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        return f"LocalSink({str(self.folder)!r})"


class StorageClient:
    """One Cloud Storage client for the sinks that share it, created on first use."""

    def __init__(self, client=None):
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            return self._client

    def bucket(self, name: str):
        return self.client.bucket(name)


@translates
class BucketSink:
    """Objects in a Cloud Storage bucket, under an optional prefix. `client`: a
    StorageClient (or Google's) shared with other sinks; else one of its own."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        if not bucket:
            raise ValidationError("bucket", "must not be empty")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self._client = client
        self._bucket = None
        self._lock = threading.Lock()

    def _get_bucket(self):
        with self._lock:
            if self._bucket is None:
                if self._client is None:
                    from google.cloud import storage

                    self._client = storage.Client()
                self._bucket = self._client.bucket(self.bucket_name)
            return self._bucket

    def object_name(self, path: str) -> str:
        path = clean_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def write(self, path: str, data: bytes, content_type: str) -> None:
        blob = self._get_bucket().blob(self.object_name(path))
        blob.cache_control = CACHE_CONTROL.get(content_type, DEFAULT_CACHE_CONTROL)
        blob.upload_from_string(data, content_type=content_type)

    def __repr__(self) -> str:
        return f"BucketSink({self.bucket_name!r}, prefix={self.prefix!r})"


def parse_bucket(value: str, field: str = "FRESHET_SITE_BUCKET") -> tuple[str, str]:
    """'my-bucket', 'gs://my-bucket' or 'gs://my-bucket/status' -> (bucket, prefix)."""
    text = value.strip()
    if text.startswith("gs://"):
        text = text[len("gs://"):]
    bucket, _, prefix = text.partition("/")
    if not bucket:
        raise ValidationError(field, f"not a bucket name: {value!r}")
    return bucket, prefix


def sink_from_settings(settings: Settings, client: StorageClient | None = None) -> Sink:
    """The status site's sink: the bucket when FRESHET_SITE_BUCKET is set, else the
    folder FRESHET_SITE_DIR."""
    if settings.site_bucket:
        return BucketSink(*parse_bucket(settings.site_bucket), client=client)
    return LocalSink(settings.site_dir)


def snapshot_sink(settings: Settings, client: StorageClient | None = None) -> Sink:
    """Where syncs keep what they fetched: the bucket when FRESHET_SNAPSHOT_BUCKET is
    set, else the folder FRESHET_SNAPSHOT_DIR."""
    if settings.snapshot_bucket:
        return BucketSink(*parse_bucket(settings.snapshot_bucket, "FRESHET_SNAPSHOT_BUCKET"),
                          client=client)
    return LocalSink(settings.snapshot_dir)


@translated
def bucket_facts(bucket: str, name: str, client=None) -> dict:
    """For `freshet doctor`: when the object was last written, and who may read the bucket
    (IAM members holding roles/storage.objectViewer)."""
    from google.cloud import storage

    client = client or storage.Client()
    handle = client.bucket(bucket)
    blob = handle.get_blob(name)
    policy = handle.get_iam_policy(requested_policy_version=3)
    members = {m for b in policy.bindings if b["role"] == "roles/storage.objectViewer"
               for m in b["members"]}
    return {"updated": blob.updated if blob else None, "members": members}


@translated
def local_page_facts(settings: Settings) -> dict:
    """For `freshet doctor` locally: where the page is and when it was last written."""
    if settings.site_bucket:
        from google.cloud import storage

        bucket, prefix = parse_bucket(settings.site_bucket)
        blob = storage.Client().bucket(bucket).get_blob(
            f"{prefix}/index.html" if prefix else "index.html")
        return {"where": f"gs://{bucket}/{prefix}", "updated": blob.updated if blob else None}
    page = Path(settings.site_dir) / "index.html"
    from datetime import UTC, datetime

    updated = datetime.fromtimestamp(page.stat().st_mtime, UTC) if page.exists() else None
    return {"where": str(page), "updated": updated}


# Objects read at most by one observation of a prefix: a prefix holding more should
# be narrowed (a dated sub-folder) rather than listed whole every few minutes.
MAX_OBSERVED_OBJECTS = 100_000


def newest_update(bucket: str, prefix: str, client=None):
    """For an observed dataset (`observe: {gcs_prefix: ...}`): the newest `updated` of
    the objects under `prefix` (timezone-aware), or None when there are none. Reads only
    names and times, page by page. Google's errors come out as Freshet's (429/5xx:
    TransientError)."""
    from google.cloud import storage

    from freshet.core.errors import PermanentError
    from freshet.gcp.calls import calling

    client = client or storage.Client()
    newest, seen = None, 0
    with calling(f"listing gs://{bucket}/{prefix}"):
        for blob in client.list_blobs(bucket, prefix=prefix,
                                      fields="items(name,updated),nextPageToken"):
            seen += 1
            if seen > MAX_OBSERVED_OBJECTS:
                raise PermanentError(f"gs://{bucket}/{prefix} holds more than "
                                     f"{MAX_OBSERVED_OBJECTS:,} objects: observe a narrower "
                                     "prefix")
            if blob.name.endswith("/") and not blob.size:
                continue  # a folder placeholder says nothing about the data
            if blob.updated is not None and (newest is None or blob.updated > newest):
                newest = blob.updated
    return newest
