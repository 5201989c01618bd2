"""The engines a waiting run's work runs on, behind one object: the BigQuery and Cloud
Run Jobs adapters (freshet.gcp.bigquery, freshet.gcp.cloudrun), made on first use,
once per process. The engine kinds start work through it (SyncContext.engines); the
poll path (freshet.loop.poll) polls and cancels through it by the run's `External`.

Adoption across attempts: an attempt that recovery abandoned while running may have
started its engine work without recording it (a crash between the submit and its
commit). Its external id is known (run + attempt), so the next attempt looks for that
work first and adopts it if it is still running or succeeded: one run, one job.
"""

import threading

from freshet.core.errors import NotFound
from freshet.core.external import EngineState, EngineStatus, external_job_id
from freshet.core.models import External
from freshet.core.settings import Settings
from freshet.gcp.bigquery import BigQuery
from freshet.gcp.cloudrun import CloudRun, status_of

BIGQUERY = "bigquery"
CLOUD_RUN = "cloud_run"
_ADOPTABLE = (EngineState.RUNNING, EngineState.SUCCEEDED)


class Engines:
    def __init__(self, project: str, region: str, *, bigquery: BigQuery | None = None,
                 cloud_run: CloudRun | None = None):
        self.project, self.region = project, region
        self._bigquery, self._cloud_run = bigquery, cloud_run
        self._lock = threading.Lock()

    @property
    def bigquery(self) -> BigQuery:
        with self._lock:
            if self._bigquery is None:
                self._bigquery = BigQuery(self.project)
            return self._bigquery

    @property
    def cloud_run(self) -> CloudRun:
        with self._lock:
            if self._cloud_run is None:
                self._cloud_run = CloudRun(self.project, self.region)
            return self._cloud_run

    def poll(self, external: External) -> EngineStatus:
        """The work's state now; TransientError when the poll may pass next time."""
        if external.engine == BIGQUERY:
            return self.bigquery.poll(external.external_id, external.location)
        if external.engine == CLOUD_RUN:
            return self.cloud_run.poll(external.external_id)
        raise ValueError(f"unknown engine {external.engine!r}")

    def cancel(self, external: External) -> None:
        if external.engine == BIGQUERY:
            self.bigquery.cancel(external.external_id, external.location)
        elif external.engine == CLOUD_RUN:
            self.cloud_run.cancel(external.external_id)
        else:
            raise ValueError(f"unknown engine {external.engine!r}")

    def unrecorded_bigquery_job(self, run_id: str, attempts: tuple[int, ...],
                                location: str = "") -> tuple[str, EngineStatus] | None:
        """An earlier attempt's BigQuery job still running or succeeded, if any."""
        for attempt in attempts:
            job_id = external_job_id(run_id, attempt)
            try:
                status = self.bigquery.poll(job_id, location)
            except NotFound:
                continue
            if status.state in _ADOPTABLE:
                return job_id, status
        return None

    def unrecorded_execution(self, job: str, run_id: str, attempts: tuple[int, ...]):
        """An earlier attempt's Cloud Run execution still running or succeeded, if any."""
        for attempt in attempts:
            found = self.cloud_run.find(job, run_id, attempt)
            if found is not None and status_of(found).state in _ADOPTABLE:
                return found.name, status_of(found)
        return None


_process: dict[tuple[str, str], Engines] = {}
_process_lock = threading.Lock()


def process_engines(settings: Settings) -> Engines:
    """This process's engines for the settings' project and region (made once)."""
    key = (settings.project, settings.region)
    with _process_lock:
        if key not in _process:
            _process[key] = Engines(*key)
        return _process[key]
