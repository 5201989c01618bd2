"""A local stand-in for Cloud Scheduler (there is no emulator).

It fires the very `scheduler_v1.Job` objects that deploy gives Cloud Scheduler (built
by freshet.gcp.scheduler from the pipeline config) on their cron, in their time
zone, with the same URI, method, headers and body, waiting at most the job's attempt
deadline. A job whose target names an OIDC token is called with one, minted by
`token_source(email, audience)` (freshet_local.local_google stands in for Google).
Cloud Scheduler retries a failed call; so does this loop, once, like a job with
retry_count=1.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import requests
from cronsim import CronSim
from google.cloud import scheduler_v1

log = logging.getLogger("freshet.local_scheduler")


def fires_between(job: scheduler_v1.Job, start: datetime, end: datetime) -> list[datetime]:
    """The job's fire times in (start, end], UTC. Pure."""
    local = start.astimezone(ZoneInfo(job.time_zone or "UTC"))
    found = []
    for moment in CronSim(job.schedule, local):
        moment = moment.astimezone(UTC)
        if moment > end:
            break
        found.append(moment)
    return found


TokenSource = Callable[[str, str], str]  # (service account email, audience) -> ID token


def call(job: scheduler_v1.Job, token_source: TokenSource | None = None) -> int:
    """One HTTP call exactly as Cloud Scheduler would make it."""
    target = job.http_target
    headers = {**dict(target.headers), "User-Agent": "Google-Cloud-Scheduler"}
    oidc = target.oidc_token
    if oidc.service_account_email:
        if token_source is None:
            raise ValueError(f"{job.name} calls with an OIDC token: give a token_source")
        token = token_source(oidc.service_account_email, oidc.audience or target.uri)
        headers["Authorization"] = f"Bearer {token}"
    deadline = job.attempt_deadline.total_seconds() if job.attempt_deadline else 180.0
    response = requests.request(
        scheduler_v1.HttpMethod(target.http_method).name, target.uri, headers=headers,
        data=bytes(target.body) or None, timeout=deadline,
    )
    return response.status_code


class LocalScheduler(threading.Thread):
    """Fires each job when its cron says so; each call in its own thread, like the cloud."""

    def __init__(self, jobs: Iterable[scheduler_v1.Job], *,
                 on_call: Callable[[str, int | str], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 token_source: TokenSource | None = None):
        super().__init__(name="local-scheduler", daemon=True)
        self.jobs = list(jobs)
        self._token_source = token_source
        self._clock = clock
        self._on_call = on_call or (lambda name, status: None)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def fire_now(self, job: scheduler_v1.Job, *, wait: bool = False) -> None:
        """Calls the job's target now, in its own thread (`wait`: and returns when done)."""
        thread = threading.Thread(target=self._fire, args=(job,), daemon=True)
        thread.start()
        if wait:
            thread.join()

    def job(self, name: str) -> scheduler_v1.Job:
        return next(j for j in self.jobs if j.name.rsplit("/", 1)[-1] == name)

    def run(self) -> None:
        last = self._clock()
        while not self._stop.wait(0.5):
            now = self._clock()
            for job in self.jobs:
                if fires_between(job, last, now):
                    self.fire_now(job)
            last = now

    def _fire(self, job: scheduler_v1.Job) -> None:
        name = job.name.rsplit("/", 1)[-1]
        for attempt in (1, 2):
            try:
                status = call(job, self._token_source)
            except requests.RequestException as exc:
                status = f"error: {exc.__class__.__name__}"
            self._on_call(name, status)
            if isinstance(status, int) and status < 500:
                return
            if attempt == 1:
                time.sleep(5)
