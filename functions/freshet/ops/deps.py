"""The process's dependencies: settings, the Firestore store, the task queue, the token
certificates, the status site's and the snapshots' sinks (one Cloud Storage client for
both) and the clock. Built once, on first use, from the environment read once here,
and shared by every entry point; tests build their own `Deps` and pass it in."""

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from freshet.core.settings import Settings, load_settings
from freshet.core.timeutil import utcnow
from freshet.gcp.certs import CertCache, certs_url
from freshet.gcp.storage import Sink, StorageClient, sink_from_settings, snapshot_sink
from freshet.gcp.store import Store, firestore_client
from freshet.gcp.tasks import TaskQueue
from freshet.loop.engines import Engines
from freshet.loop.observe import EngineReader, Reader


@dataclass
class Deps:
    settings: Settings
    store: Store
    task_queue: TaskQueue
    certs: CertCache
    clock: Callable[[], datetime] = field(default=utcnow)
    # Unset: the settings' sinks, made once with this Deps and sharing one client.
    site_sink: Sink | None = None
    snapshots: Sink | None = None
    # What the observe pass reads through (BigQuery, Cloud Storage); unset: the engines'
    # adapters for the settings' project, their clients made on first use.
    observer: Reader | None = None
    # The engines' adapters (BigQuery, Cloud Run) for waiting runs; unset: the process's,
    # made on first use (freshet.loop.engines.process_engines).
    engines: Engines | None = None

    def __post_init__(self) -> None:
        storage = StorageClient()
        if self.site_sink is None:
            self.site_sink = sink_from_settings(self.settings, storage)
        if self.snapshots is None:
            self.snapshots = snapshot_sink(self.settings, storage)
        if self.observer is None:
            self.observer = EngineReader(self.settings.project, storage=storage)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Deps":
        settings = load_settings(env)
        return cls(settings=settings, store=Store(firestore_client(settings.project)),
                   task_queue=TaskQueue(settings), certs=CertCache(certs_url(settings)))


_lock = threading.Lock()
_process: Deps | None = None


def process_deps() -> Deps:
    """This process's dependencies (cold starts stay cheap: clients connect lazily)."""
    global _process
    with _lock:
        if _process is None:
            _process = Deps.from_env(os.environ)  # the one read of this process's env
        return _process


def reset_process_deps() -> None:
    """For tests that change the environment between requests."""
    global _process
    with _lock:
        _process = None
