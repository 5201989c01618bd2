"""The Cloud Scheduler requests apply builds (no emulator exists: the typed objects)."""

import json
from datetime import timedelta

from google.cloud import scheduler_v1

from freshet.gcp.scheduler import (
    MANAGED_MARK,
    SchedulerDiff,
    diff_jobs,
    requests_for,
)
from freshet.ops.apply import control_jobs
from freshet.ops.config import load_config
from tests.ops.helpers import ROOT

BASE = "https://europe-west1-demo-freshet.cloudfunctions.net"
INVOKER = "freshet-invoker@demo-freshet.iam.gserviceaccount.com"
PARENT = "projects/demo-freshet/locations/europe-west1"


def config():
    return load_config(ROOT / "infra/pipeline.yaml", env={}, project="demo-freshet")


def test_each_control_schedule_becomes_a_complete_signed_http_job():
    jobs = control_jobs(config(), base_url=BASE, invoker_email=INVOKER)
    assert [j.name for j in jobs] == [f"{PARENT}/jobs/freshet-tick",
                                      f"{PARENT}/jobs/freshet-recover",
                                      f"{PARENT}/jobs/freshet-publish"]
    tick = jobs[0]
    assert isinstance(tick, scheduler_v1.Job)
    assert (tick.schedule, tick.time_zone) == ("* * * * *", "UTC")
    target = tick.http_target
    assert target.uri == f"{BASE}/scheduler_tick"
    assert target.http_method == scheduler_v1.HttpMethod.POST
    assert target.headers["Content-Type"] == "application/json"
    assert json.loads(target.body) == {"schedule": "freshet-tick", "target": "scheduler_tick"}
    assert target.oidc_token == scheduler_v1.OidcToken(service_account_email=INVOKER,
                                                       audience=f"{BASE}/scheduler_tick")
    assert tick.attempt_deadline == timedelta(minutes=1)
    assert MANAGED_MARK in tick.description
    assert jobs[1].schedule == "*/5 * * * *"
    assert jobs[2].http_target.uri == f"{BASE}/publish_status"


def test_local_base_url_and_no_invoker_give_unsigned_local_calls():
    jobs = control_jobs(config(), base_url="http://127.0.0.1:8080/", invoker_email="")
    assert jobs[0].http_target.uri == "http://127.0.0.1:8080/scheduler_tick"
    assert "oidc_token" not in jobs[0].http_target


def test_requests_create_missing_update_changed_and_delete_only_managed_jobs():
    wanted = control_jobs(config(), base_url=BASE, invoker_email=INVOKER)
    changed = scheduler_v1.Job(wanted[1])
    changed.schedule = "*/10 * * * *"
    changed.state = scheduler_v1.Job.State.ENABLED  # Cloud Scheduler's own state: ignored
    retired = scheduler_v1.Job(name=f"{PARENT}/jobs/freshet-old",
                               description=f"old {MANAGED_MARK}")
    foreign = scheduler_v1.Job(name=f"{PARENT}/jobs/someone-elses", description="hand made")
    current = {j.name: j for j in (changed, wanted[2], retired, foreign)}
    diff = diff_jobs(wanted, current)
    reqs = requests_for(diff, PARENT)
    assert reqs[0] == scheduler_v1.CreateJobRequest(parent=PARENT, job=wanted[0])
    assert isinstance(reqs[1], scheduler_v1.UpdateJobRequest)
    assert reqs[1].job == wanted[1]
    assert list(reqs[1].update_mask.paths) == ["schedule"]
    assert reqs[2] == scheduler_v1.DeleteJobRequest(name=f"{PARENT}/jobs/freshet-old")
    assert len(reqs) == 3


def test_matching_jobs_need_no_request():
    wanted = control_jobs(config(), base_url=BASE, invoker_email=INVOKER)
    diff = diff_jobs(wanted, {j.name: scheduler_v1.Job(j) for j in wanted})
    assert diff.empty and requests_for(diff, PARENT) == [] and SchedulerDiff().empty


def as_google_returns_it(job: scheduler_v1.Job) -> scheduler_v1.Job:
    """A job as a read from Cloud Scheduler answers it: with its own state and defaults,
    and a User-Agent header it adds to the target."""
    echoed = scheduler_v1.Job(job)
    echoed.state = scheduler_v1.Job.State.ENABLED
    echoed.user_update_time = {"seconds": 1764330000}
    echoed.retry_config = scheduler_v1.RetryConfig(max_retry_duration={"seconds": 0},
                                                   min_backoff_duration={"seconds": 5},
                                                   max_backoff_duration={"seconds": 3600},
                                                   max_doublings=5)
    echoed.http_target.headers["User-Agent"] = "Google-Cloud-Scheduler"
    echoed.schedule_time = {"seconds": 1764330060}
    echoed.last_attempt_time = {"seconds": 1764330000}
    return echoed


def test_what_cloud_scheduler_adds_on_its_own_is_no_change():
    """The second apply says "no changes": output-only fields, retry defaults and the
    User-Agent header Cloud Scheduler sets are not Freshet's to compare."""
    wanted = control_jobs(config(), base_url=BASE, invoker_email=INVOKER)
    diff = diff_jobs(wanted, {j.name: as_google_returns_it(j) for j in wanted})
    assert diff.empty, diff


def test_a_header_freshet_sets_still_counts_when_changed():
    wanted = control_jobs(config(), base_url=BASE, invoker_email=INVOKER)
    echoed = as_google_returns_it(wanted[0])
    echoed.http_target.headers["X-Freshet-Schedule"] = "someone-else"
    echoed.http_target.oidc_token.audience = f"{BASE}/api"
    diff = diff_jobs(wanted[:1], {echoed.name: echoed})
    assert [changes for _, changes in diff.update] == [["http_target"]]
