"""freshet doctor: the judging is a pure decision table over the facts it reads; locally
it reads the emulators; without credentials it says so on each line, no traceback."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.gcp.ports import COMPOSITE_INDEXES
from freshet.ops import cli, doctor
from freshet.ops.config import load_config, parse_config
from freshet.ops.doctor import CloudFacts, Unknown
from tests.ops.helpers import PIPELINE, ROOT, write_config

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PROJECT = "freshet-acme-prod"


def config():
    return load_config(ROOT / "infra/pipeline.yaml", env={}, project=PROJECT)


def healthy(cfg) -> CloudFacts:
    """What a good `make deploy` leaves, as the doctor reads it."""
    fn = cfg.functions
    facts = CloudFacts(apis=set(doctor.REQUIRED_APIS) | {"logging.googleapis.com"})
    for name in ("scheduler_tick", "run_task", "recover_stuck_runs", "publish_status", "api"):
        facts.functions[name] = {"state": "ACTIVE", "serviceConfig": {
            "timeoutSeconds": fn.limits_for(name).timeout_s, "availableMemory": "256Mi",
            "maxInstanceCount": 3, "serviceAccountEmail": fn.service_account,
            "environmentVariables": {"FRESHET_AUDIENCE": fn.url(name)},
            "service": f"projects/{PROJECT}/locations/europe-west1/services/{name}"}}
        facts.invokers[name] = {f"serviceAccount:{fn.invoker_email}"}
    facts.accounts = {e: {"email": e} for e in (fn.service_account, fn.invoker_email,
                                                fn.build_service_account)}
    facts.project_roles = {f"serviceAccount:{fn.service_account}": {"roles/datastore.user"},
                           f"serviceAccount:{fn.build_service_account}":
                               {"roles/cloudbuild.builds.builder"}}
    facts.act_as = {f"serviceAccount:{fn.service_account}"}
    facts.caller_act_as = True
    facts.database = {"locationId": "europe-west1",
                      "deleteProtectionState": "DELETE_PROTECTION_ENABLED"}
    facts.indexes = [  # as the Admin API lists them: __name__ last
        {"name": f"projects/{PROJECT}/databases/(default)/collectionGroups/{c}/indexes/i{n}",
         "queryScope": "COLLECTION", "state": "READY",
         "fields": [{"fieldPath": f, "order": o} for f, o in fields]
         + [{"fieldPath": "__name__", "order": fields[-1][1]}]}
        for n, (c, fields) in enumerate(COMPOSITE_INDEXES)]
    facts.queues = {q.name: {"state": "RUNNING",  # the run queue and each pool's
                             "enqueuers": {f"serviceAccount:{fn.service_account}"}}
                    for q in cfg.all_queues}
    facts.jobs = {s.name: {"state": "ENABLED", "last_attempt_time": NOW - timedelta(minutes=1),
                           "code": 0, "message": ""} for s in cfg.control_schedules}
    facts.heartbeats = {"tick": {"at": NOW - timedelta(seconds=40)},
                        "recover": {"at": NOW - timedelta(minutes=2)}}
    facts.site = {"updated": NOW - timedelta(minutes=3), "members": set()}
    facts.page_answer = 200
    facts.storage_audit = False
    return facts


def failing(checks) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks if not c.ok}


def test_a_healthy_deployment_passes_every_check_one_line_each():
    checks = doctor.cloud_checks(config(), healthy(config()), NOW)
    assert failing(checks) == {}
    lines = [c.line() for c in checks]
    assert all(line.startswith("✓ ") and "\n" not in line for line in lines)
    names = {c.name for c in checks}
    assert {"APIs", "function run_task", "invokers of api", "queue freshet-runs",
            "scheduler job freshet-tick", "tick heartbeat",
            f"status page gs://{PROJECT}-freshet-site"} <= names


def test_an_all_users_invoker_is_a_failure_with_the_command_that_removes_it():
    facts = healthy(config())
    facts.invokers["run_task"] = facts.invokers["run_task"] | {"allUsers"}
    bad = failing(doctor.cloud_checks(config(), facts, NOW))
    assert list(bad) == ["invokers of run_task"]
    line = bad["invokers of run_task"].line()
    assert line.startswith("✗ ") and "allUsers may call it" in line
    assert "gcloud functions remove-invoker-policy-binding run_task" in line
    assert "--member=allUsers" in line


@pytest.mark.parametrize("breaks, name, needle", [
    (lambda f, c: f.apis.discard("cloudtasks.googleapis.com"), "APIs",
     "gcloud services enable cloudtasks.googleapis.com"),
    (lambda f, c: f.functions["run_task"]["serviceConfig"].update(timeoutSeconds=60),
     "function run_task", "timeout 60s, the config says 900s"),
    (lambda f, c: f.functions.update(api=Unknown("not found")), "function api", "missing"),
    (lambda f, c: f.functions["run_task"].update(state="FAILED"), "function run_task",
     "state FAILED (make deploy deploys it again) — fix: make deploy PROJECT="),
    (lambda f, c: f.invokers.update(api=set()), "invokers of api", "missing serviceAccount:"),
    (lambda f, c: f.act_as.clear(), f"freshet-runtime@{PROJECT}.iam.gserviceaccount.com may "
     f"act as freshet-invoker@{PROJECT}.iam.gserviceaccount.com", "is refused"),
    (lambda f, c: setattr(f, "caller_act_as", False),
     "you may act as the invoker (freshet apply)", "--role=roles/iam.serviceAccountUser"),
    (lambda f, c: f.database.update(locationId="nam5"), "Firestore database (default)",
     "in nam5, the config says europe-west1 (a location is permanent)"),
    (lambda f, c: f.indexes.pop(), "Firestore composite indexes",
     "1 of 10 missing: incidents (status, updated_at desc) — fix: make deploy"),
    (lambda f, c: f.indexes[0].update(state="CREATING"), "Firestore composite indexes",
     "1 of 10 not ready: jobs (status, next_run_at) CREATING — fix: wait"),
    (lambda f, c: f.queues.update({"freshet-runs": None}), "queue freshet-runs", "missing"),
    (lambda f, c: f.queues.update({"freshet-runs-warehouse": None}),
     "queue freshet-runs-warehouse", "missing"),
    (lambda f, c: f.jobs["freshet-publish"].update(code=7, message="PERMISSION_DENIED"),
     "scheduler job freshet-publish", "failed: PERMISSION_DENIED"),
    (lambda f, c: f.jobs["freshet-tick"].update(state="PAUSED"), "scheduler job freshet-tick",
     "gcloud scheduler jobs resume freshet-tick"),
    (lambda f, c: f.heartbeats.update(tick={"at": NOW - timedelta(minutes=20)}),
     "tick heartbeat", "the scheduler last ticked 20 min ago"),
    (lambda f, c: f.site.update(updated=NOW - timedelta(hours=2)),
     f"status page gs://{PROJECT}-freshet-site", "index.html is 2 h old"),
    (lambda f, c: f.site["members"].add("allUsers"), f"status page gs://{PROJECT}-freshet-site",
     "but the config keeps it private"),
    (lambda f, c: setattr(f, "page_answer", 403), "status page opens for you",
     f"HTTP 403: you may not read gs://{PROJECT}-freshet-site — fix: add yourself "
     "(user:EMAIL) or your group to site.viewers"),
    (lambda f, c: setattr(f, "storage_audit", True), "status page opens for you",
     "storage.cloud.google.com refuses logged-in downloads — fix: exempt the page's readers"),
    (lambda f, c: setattr(f, "page_answer", Unknown("HTTP 500")), "status page opens for you",
     "cannot tell (HTTP 500)"),
])
def test_each_broken_fact_is_one_failed_line_with_its_fix(breaks, name, needle):
    cfg = config()
    facts = healthy(cfg)
    breaks(facts, cfg)
    bad = failing(doctor.cloud_checks(cfg, facts, NOW))
    assert list(bad) == [name], [c.line() for c in bad.values()]
    assert needle in bad[name].line()
    assert " — fix: " in bad[name].line()


def test_what_could_not_be_read_is_a_failure_that_says_why():
    facts = CloudFacts(apis=Unknown("no Application Default Credentials"))
    checks = doctor.cloud_checks(config(), facts, NOW)
    assert all(not c.ok for c in checks)
    assert "no Application Default Credentials" in checks[0].line()


def test_doctor_without_credentials_says_so_in_one_line_and_exits_1(tmp_path, monkeypatch,
                                                                    capsys):
    for var in ("FIRESTORE_EMULATOR_HOST", "FRESHET_TASKS_EMULATOR_HOST",
                "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file there
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server to wait for
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    code = cli.main(["doctor", f"--config={ROOT / 'infra/pipeline.yaml'}",
                     f"--project={PROJECT}"])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"Checking {PROJECT} (europe-west1) against " \
                       f"{ROOT / 'infra/pipeline.yaml'}:"
    assert lines[1:] == ["✗ credentials: no Application Default Credentials — fix: gcloud auth "
                         "application-default login", "1 checks, 1 failed."]


def test_doctor_against_the_local_stack(db, tasks_emulator, tmp_path, monkeypatch, capsys):
    """Before apply the local checks fail with their fix; after apply, a tick and a
    publish they pass."""
    import uuid

    from freshet.core.timeutil import utcnow
    from freshet.gcp.store import Store

    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path, PIPELINE.replace("name: freshet-runs", f"name: {queue}"))
    monkeypatch.setenv("FRESHET_TASKS_EMULATOR_HOST", tasks_emulator.address)
    monkeypatch.setenv("FRESHET_SITE_DIR", str(tmp_path / "site"))
    monkeypatch.delenv("FRESHET_SITE_BUCKET", raising=False)
    assert cli.main(["doctor", f"--config={path}"]) == 1
    out = capsys.readouterr().out
    assert (f"✗ queues: missing: {queue}, {queue}-claims — fix: freshet apply "
            f"--config={path}") in out
    assert "✗ status page: not published yet — fix: freshet site build" in out
    assert cli.main(["apply", f"--config={path}"]) == 0
    Store(db).put_heartbeat("tick", {"at": utcnow()})
    assert cli.main(["site", "build"]) == 0
    capsys.readouterr()
    assert cli.main(["doctor", f"--config={path}"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "✓ Firestore emulator: at " in out and "✓ pipeline applied: 2 job(s)" in out
    assert out.splitlines()[-1] == "All 6 checks passed."
    monkeypatch.delenv("FRESHET_CONFIG", raising=False)
    assert cli.main(["doctor"]) == 0  # no --config: the file the stack was applied from
    captured = capsys.readouterr()
    assert f"Config: {path} (the one the local stack was applied from)." in captured.err
    assert f"for {path} (FIRESTORE_EMULATOR_HOST is set)" in captured.out


def test_a_stopped_stack_is_not_checked_and_its_old_page_is_not_passed():
    cfg = parse_config(PIPELINE, "p.yaml", env={})
    facts = doctor.LocalFacts(page={"where": "site/public/index.html",
                                    "updated": NOW - timedelta(seconds=53)})
    lines = [c.line() for c in doctor.local_checks(cfg, facts, NOW)]
    assert "✗ queues: not checked: the Cloud Tasks emulator is not reachable — fix: start " \
        "the stack (freshet demo)" in lines
    assert "✗ pipeline applied: not checked: the Firestore emulator is not reachable — " \
        "fix: start the stack (freshet demo)" in lines
    assert lines[-1].startswith("✗ status page: site/public/index.html was published 53 s "
                                "ago, but nothing publishes it now")


def test_the_local_judging_names_what_is_missing():
    cfg = parse_config(PIPELINE, "p.yaml", env={})
    checks = doctor.local_checks(cfg, doctor.LocalFacts(), NOW)
    assert [c.ok for c in checks] == [False] * 6
    assert checks[0].line() == "✗ Firestore emulator: unreachable (not set) — fix: " \
                               "make emulators"


def test_a_public_page_opens_whatever_the_audit_logs_record():
    cfg = config()
    object.__setattr__(cfg, "site", replace(cfg.site, public=True))
    facts = healthy(cfg)
    facts.storage_audit = True
    facts.site["members"].add("allUsers")
    assert failing(doctor.cloud_checks(cfg, facts, NOW)) == {}


# -- the engines' roles (freshet.ops.engine_access) ---------------------------------------

def with_engine_jobs(cfg):
    from freshet.core.models import Job, Schedule

    jobs = (Job("report", "cloud_run_job", Schedule(cron="0 * * * *"),
                params={"job": "nightly-report"}),
            Job("report-eu", "cloud_run_job", Schedule(cron="0 * * * *"),
                params={"job": "nightly-report", "region": "europe-west1"}),
            Job("rollup", "bigquery_query", Schedule(cron="0 * * * *"), params={}))
    return replace(cfg, jobs=cfg.jobs + jobs)


def test_a_cloud_run_job_the_runtime_may_run_and_follow_passes():
    cfg = with_engine_jobs(config())
    runtime = f"serviceAccount:{cfg.functions.service_account}"
    facts = healthy(cfg)
    facts.engine_jobs = {f"projects/{PROJECT}/locations/europe-west1/jobs/nightly-report": {
        "roles/run.jobsExecutorWithOverrides": {runtime}, "roles/run.viewer": {runtime}}}
    facts.project_roles[runtime] |= {"roles/bigquery.jobUser"}
    checks = doctor.cloud_checks(cfg, facts, NOW)
    assert failing(checks) == {}
    # One line per Cloud Run job, naming every Freshet job that runs it.
    [line] = [c for c in checks if c.name.startswith("Cloud Run job")]
    assert line.name == "Cloud Run job nightly-report (europe-west1), run by report, report-eu"


def test_a_missing_role_on_the_job_is_named_with_what_it_is_for_and_the_grant():
    cfg = with_engine_jobs(config())
    runtime = f"serviceAccount:{cfg.functions.service_account}"
    facts = healthy(cfg)
    facts.engine_jobs = {f"projects/{PROJECT}/locations/europe-west1/jobs/nightly-report": {
        "roles/run.invoker": {runtime}, "roles/run.viewer": {runtime}}}
    [bad] = [c for c in failing(doctor.cloud_checks(cfg, facts, NOW)).values()
             if c.name.startswith("Cloud Run job")]
    assert "lacks roles/run.jobsExecutorWithOverrides (to start it with this run's" in bad.detail
    assert "roles/run.viewer" not in bad.detail
    assert bad.fix == (f"gcloud run jobs add-iam-policy-binding nightly-report "
                       f"--region=europe-west1 --project={PROJECT} --member={runtime} "
                       "--role=roles/run.jobsExecutorWithOverrides")
    # ...and BigQuery jobs without roles/bigquery.jobUser are refused: said too.
    assert f"roles/bigquery.jobUser for {cfg.functions.service_account}" in failing(
        doctor.cloud_checks(cfg, facts, NOW))


def test_a_job_that_cannot_be_read_says_why_and_that_freshet_never_creates_one():
    cfg = with_engine_jobs(config())
    facts = healthy(cfg)
    facts.engine_jobs = {f"projects/{PROJECT}/locations/europe-west1/jobs/nightly-report":
                         Unknown("Job nightly-report not found.")}
    [bad] = [c for c in failing(doctor.cloud_checks(cfg, facts, NOW)).values()
             if c.name.startswith("Cloud Run job")]
    assert "not found" in bad.detail and "never creates one" in bad.detail


def test_without_engine_kinds_no_engine_line_is_added():
    names = {c.name for c in doctor.cloud_checks(config(), healthy(config()), NOW)}
    assert not any(n.startswith("Cloud Run job") or "bigquery" in n for n in names)


def test_each_observed_table_is_checked_and_a_view_is_a_failure_saying_why():
    from freshet.gcp.bigquery import TableFacts

    text = PIPELINE.replace(
        "  - key: finance.rates\n",
        "  - key: finance.rates\n  - key: vendor.orders\n"
        "    observe: {bigquery_table: vendor-proj.sales.orders}\n"
        "  - key: vendor.returns\n    observe: {bigquery_table: vendor-proj.sales.returns_v}\n")
    cfg = parse_config(text, "pipeline.yaml", env={})
    observed = {"vendor.orders": TableFacts("vendor-proj.sales.orders",
                                            NOW - timedelta(hours=2), "TABLE", 10),
                "vendor.returns": Unknown("vendor-proj.sales.returns_v is a view: a view's "
                                          "lastModifiedTime is when its definition changed, "
                                          "not its data")}
    checks = {c.name: c for c in doctor.observed_checks(cfg, observed, NOW)}
    good = checks["observed table vendor-proj.sales.orders (vendor.orders)"]
    assert good.ok and "last modified 2 h ago" in good.detail
    view = checks["observed table vendor-proj.sales.returns_v (vendor.returns)"]
    assert not view.ok and "not its data" in view.detail
    assert "roles/bigquery.metadataViewer" in view.fix
    healthy_cfg = config()
    assert doctor.observed_checks(healthy_cfg, {}, NOW) == []  # nothing observed
def with_cloud_run_job():
    text = PIPELINE.replace("""datasets:
""", """  - id: nightly-export
    kind: cloud_run_job
    schedule: {cron: "0 2 * * *"}
    params: {job: exporter, timeout: 2h}
    produces: [sales.export]
datasets:
  - key: sales.export
""", 1)
    return parse_config(text, "p.yaml", env={}, project=PROJECT)


EXPORTER = f"projects/{PROJECT}/locations/europe-west1/jobs/exporter"


@pytest.mark.parametrize(("on_job", "on_project", "missing"), [
    ({"roles/run.jobsExecutorWithOverrides", "roles/run.viewer"}, set(), []),
    ({"roles/run.developer"}, set(), []),
    ({"roles/run.jobsExecutorWithOverrides"}, {"roles/run.viewer"}, []),
    (set(), set(), ["roles/run.jobsExecutorWithOverrides", "roles/run.viewer"]),
    ({"roles/run.invoker", "roles/run.viewer"}, set(),  # no overrides allowed
     ["roles/run.jobsExecutorWithOverrides"]),
    ({"roles/run.jobsExecutorWithOverrides"}, set(), ["roles/run.viewer"]),
])
def test_doctor_says_which_role_the_runtime_account_lacks_on_a_cloud_run_job(
        on_job, on_project, missing):
    cfg = with_cloud_run_job()
    account = f"serviceAccount:{cfg.functions.service_account}"
    facts = healthy(cfg)
    facts.project_roles[account] |= on_project
    facts.engine_jobs = {EXPORTER: {role: {account} for role in on_job}
                         | {"roles/run.admin": {"user:someone@example.com"}}}
    checks = {c.name: c for c in doctor.cloud_checks(cfg, facts, NOW)}
    check = checks["Cloud Run job exporter (europe-west1), run by nightly-export"]
    assert check.ok is (not missing), check.line()
    for role in missing:
        assert role in check.detail and f"--role={role}" in check.fix
        assert "gcloud run jobs add-iam-policy-binding exporter --region=europe-west1" in \
            check.fix


def test_a_cloud_run_jobs_policy_that_cannot_be_read_says_why():
    cfg = with_cloud_run_job()
    facts = healthy(cfg)
    facts.engine_jobs = {EXPORTER: Unknown("403 run.jobs.getIamPolicy denied")}
    check = failing(doctor.cloud_checks(cfg, facts, NOW))[
        "Cloud Run job exporter (europe-west1), run by nightly-export"]
    assert "403 run.jobs.getIamPolicy denied" in check.detail
