"""Small builders for status tests: a seeded pipeline as plain models (no Firestore)."""

from datetime import UTC, datetime, timedelta

from freshet.core.catalog import Catalog, Consumer, DatasetSpec
from freshet.core.control import Control
from freshet.core.freshness import Requirement
from freshet.core.models import Dataset, Job, Run, new_job
from freshet.core.settings import Settings
from freshet.status.model import StatusModel, build_model

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
SECRET = "tok_SuperSecret_9f8e7d"


def requirement(key: str, warn_h: float = 24, error_h: float = 26) -> Requirement:
    return Requirement(key, timedelta(hours=warn_h), timedelta(hours=error_h))


def catalog(specs: dict[str, tuple[str, ...]] | None = None,
            consumers: list[Consumer] | None = None) -> Catalog:
    specs = specs or {}
    return Catalog(
        datasets={k: DatasetSpec(key=k, title=k.replace(".", " ").title(), upstream=up)
                  for k, up in specs.items()},
        consumers=tuple(consumers or ()),
    )


def consumer(cid: str, title: str, *reqs: Requirement) -> Consumer:
    return Consumer(id=cid, title=title, requires=tuple(reqs))


def synced(key: str, ago: timedelta, **fields) -> Dataset:
    return Dataset(key=key, last_started_at=NOW - ago - MIN, last_success_at=NOW - ago, **fields)


def job(job_id: str = "meta_sync", **fields) -> Job:
    base = dict(id=job_id, kind="noop", schedule={"cron": "0 6 * * *", "timezone": "Europe/London"},
                params={"account": "acme", "token": SECRET}, secret_params=["token"],
                produces=["meta.ads"])
    overrides = {k: fields.pop(k) for k in list(fields) if k in base or k == "description"}
    made = new_job(**{**base, **overrides})
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def run(run_id: str, job_id: str = "meta_sync", *, ago: timedelta = H, status: str = "succeeded",
        seconds: float = 42.0, **fields) -> Run:
    started = NOW - ago
    return Run(id=run_id, job_id=job_id, kind="noop", scheduled_for=started, created_at=started,
               started_at=started, finished_at=started + timedelta(seconds=seconds),
               status=status, **fields)


def model(*, jobs=(), datasets=(), runs=(), cat: Catalog | None = None,
          control: Control | None = None, now: datetime = NOW, deadlines=None, incidents=(),
          routes=None, **settings) -> StatusModel:
    return build_model(jobs=list(jobs), datasets=list(datasets), runs=list(runs),
                       catalog=cat or catalog(), control=control or Control(), now=now,
                       settings=Settings(**settings), deadlines=deadlines,
                       incidents=incidents, routes=routes)
