"""Deploy artefacts: indexes cover the queries the code makes, rules deny clients,
infra/deploy.mk is what the config generates, and make -n shows the commands."""

import inspect
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.types import StructuredQuery

from freshet.gcp import store as store_module
from freshet.gcp.ports import COMPOSITE_INDEXES, UNINDEXED
from freshet.gcp.store import Store, Tx
from freshet.ops.config import load_config
from freshet_local import deploy
from tests.ops.helpers import ROOT, write_config

T = datetime(2026, 11, 28, tzinfo=UTC)
EQUALITY = {"EQUAL", "ARRAY_CONTAINS", "IN", "ARRAY_CONTAINS_ANY"}


class RecordingStore(Store):
    """Builds every query against a real client (no network) and records its shape."""

    def __init__(self):
        super().__init__(firestore.Client(project="demo-freshet",
                                          credentials=AnonymousCredentials()))
        self.queries: list = []

    def _stream(self, query):
        if not isinstance(query, _NoResults):  # recorded by _due_query already
            self.queries.append(query)
        return iter(())

    def _due_query(self, until, limit):
        self.queries.append(super()._due_query(until, limit))
        return _NoResults()

    def _count(self, query):
        self.queries.append(query)
        return 0

    def _stream_versioned(self, query):
        self.queries.append(query)
        return []

    def _stream_snapshots(self, query):
        self.queries.append(query)
        return []


class _NoResults:
    def stream(self):
        return iter(())


class RecordingTransaction:
    def __init__(self, store: RecordingStore):
        self.store = store

    def get(self, query):
        self.store.queries.append(query)
        return iter(())


def shape(query) -> tuple[str, frozenset, tuple]:
    """(collection, equality fields, ordered (field, direction) of range/order)."""
    (one,) = shapes(query)
    return one


def shapes(query) -> list[tuple[str, frozenset, tuple]]:
    """shape() of each disjunct of the query's filters (Firestore serves an OR query as
    one query per disjunct, each needing its index)."""
    if isinstance(query, CollectionReference):
        return [(query.id, frozenset(), ())]
    orders = [(o.field.field_path, StructuredQuery.Direction(o.direction).name)
              for o in query._orders]
    out = []
    for filters in _disjuncts(list(query._field_filters)):
        eq, ranged = set(), []
        for f in filters:
            name = f.field.field_path
            op = StructuredQuery.FieldFilter.Operator(f.op).name
            (eq.add(name) if op in EQUALITY else ranged.append(name))
        # Firestore orders by the range field first
        out.append((query._parent.id, frozenset(eq),
                    tuple(orders or ([(ranged[0], "ASCENDING")] if ranged else []))))
    return out


def _disjuncts(filters: list) -> list[list]:
    """The filters (an implicit AND) as a list of conjunctions of field filters."""
    result: list[list] = [[]]
    for f in filters:
        if isinstance(f, StructuredQuery.CompositeFilter):
            parts = [p.field_filter if "field_filter" in p else p.composite_filter
                     for p in f.filters]
            if f.op == StructuredQuery.CompositeFilter.Operator.OR:
                options = [d for p in parts for d in _disjuncts([p])]
            else:
                options = _disjuncts(parts)
            result = [r + o for r in result for o in options]
        else:
            result = [r + [f] for r in result]
    return result


def covered(q, indexes) -> bool:
    collection, eq, orders = q
    if len(eq) + len(orders) < 2:
        return True  # single-field indexes serve it
    for index in indexes:
        if index["collectionGroup"] != collection:
            continue
        fields = [(f["fieldPath"], f["order"]) for f in index["fields"]]
        head, tail = fields[:len(eq)], fields[len(eq):]
        if {f for f, _ in head} == eq and tuple(tail) == orders:
            return True
    return False


QUERY_CALLS = {
    "list_jobs": [lambda s: s.list_jobs(), lambda s: s.list_jobs("active")],
    "list_datasets": [lambda s: s.list_datasets()],
    "dataset_layout": [lambda s: s.dataset_layout()],
    "due_jobs": [lambda s: s.due_jobs(T, 10)],
    "due_jobs_versioned": [lambda s: s.due_jobs_versioned(T, 10)],
    "due_jobs_in_shard_versioned": [lambda s: s.due_jobs_in_shard_versioned(3, T, 10)],
    "expired_runs": [lambda s: s.expired_runs(T)],
    "expired_runs_versioned": [lambda s: s.expired_runs_versioned(T)],
    "_expired_query": [],  # expired_runs's and expired_runs_versioned's
    "completed_jobs_before": [lambda s: s.completed_jobs_before(T)],
    "recent_runs": [lambda s: s.recent_runs(), lambda s: s.recent_runs(job_id="j")],
    "count_runs": [lambda s: s.count_runs(queue="q", statuses=("queued", "retrying"))],
    "active_backfills": [lambda s: s.active_backfills()],
    "recent_backfills": [lambda s: s.recent_backfills(),
                         lambda s: s.recent_backfills(job_id="j")],
    "lanes": [lambda s: s.lanes("b")],
    "deadline_records": [lambda s: s.deadline_records()],
    "incidents": [lambda s: s.incidents(T)],
    "route_states": [lambda s: s.route_states()],
    "changed_since": [lambda s: s.changed_since("jobs", T)],
    "settings_newest": [lambda s: s.settings_newest()],
    "settings_written_since": [lambda s: s.settings_written_since(T),
                               lambda s: s.settings_written_since(None)],
    "recent_runs_marked": [lambda s: s.recent_runs_marked(10)],
    "jobs_changed_since": [lambda s: s.jobs_changed_since(T), lambda s: s.jobs_changed_since(None)],
    "datasets_changed_since": [lambda s: s.datasets_changed_since(T)],
    "deadlines_changed_since": [lambda s: s.deadlines_changed_since(T)],
    "runs_changed_since": [lambda s: s.runs_changed_since(T, 10)],
    "_changes": [],  # the building block of the three above
    "_since": [],  # _changes's, and datasets_changed_since's
    "_recent_query": [],  # recent_runs's and recent_runs_marked's
    "paused_until_due": [lambda s: s.paused_until_due(T)],
    "runs_page": [lambda s: s.runs_page(), lambda s: s.runs_page(job_id="j"),
                  lambda s: s.runs_page(statuses=("failed",)),
                  lambda s: s.runs_page(job_id="j", statuses=("queued", "running")),
                  lambda s: s.runs_page(job_id="j", statuses=("failed",), since=T, until=T),
                  lambda s: s.runs_page(since=T), lambda s: s.runs_page(until=T)],
}


def test_every_query_method_of_the_store_is_exercised_here():
    markers = ("_stream(", ".stream(", "_due_query(", "_count(", ".where(", ".order_by(")
    source_methods = {name for name, fn in inspect.getmembers(Store, inspect.isfunction)
                      if any(m in inspect.getsource(fn) for m in markers)}
    # _stream, _stream_versioned, _due_query and _count are the recorded building blocks
    assert source_methods - {"_stream", "_stream_versioned", "_stream_snapshots",
                                     "_due_query", "_count"} <= set(
        QUERY_CALLS), source_methods
    # No query inside a transaction: the emulator (and Firestore) lock what a query
    # scans, so a query in the claim made every claim wait on every other one.
    tx_methods = {name for name, fn in inspect.getmembers(Tx, inspect.isfunction)
                  if "self._t.get(query" in inspect.getsource(fn)}
    assert tx_methods == set()


def test_indexes_cover_every_query_the_store_makes():
    indexes = json.loads((ROOT / "infra/firestore.indexes.json").read_text())["indexes"]
    store = RecordingStore()
    for calls in QUERY_CALLS.values():
        for call in calls:
            call(store)
    shapes_ = {s for q in store.queries for s in shapes(q)}
    needing = {s for s in shapes_ if len(s[1]) + len(s[2]) >= 2}
    assert ("jobs", frozenset({"status"}), (("next_run_at", "ASCENDING"),)) in needing
    missing = [s for s in needing if not covered(s, indexes)]
    assert not missing, f"queries without a composite index: {missing}"


def test_the_indexes_doctor_checks_are_the_ones_deploy_creates():
    indexes = json.loads((ROOT / "infra/firestore.indexes.json").read_text())["indexes"]
    declared = [(i["collectionGroup"], tuple((f["fieldPath"], f["order"]) for f in i["fields"]))
                for i in indexes if i["queryScope"] == "COLLECTION"]
    assert sorted(declared) == sorted(COMPOSITE_INDEXES) and len(declared) == len(indexes)


def test_the_fields_exempt_from_indexes_are_the_ones_no_query_uses():
    """Exempt fields store no index entries (a run's storage, freshet cost); a query on
    one would fail in Firestore (not in the emulator, which needs no index)."""
    overrides = json.loads((ROOT / "infra/firestore.indexes.json").read_text())[
        "fieldOverrides"]
    assert {(o["collectionGroup"], o["fieldPath"]) for o in overrides if not o["indexes"]} \
        == {(c, f) for c, fields in UNINDEXED.items() for f in fields}
    store = RecordingStore()
    for calls in QUERY_CALLS.values():
        for call in calls:
            call(store)
    used = {(c, f) for q in store.queries for c, eq, orders in shapes(q)
            for f in (*eq, *(name for name, _ in orders))}
    assert ("runs", "lease_expires_at") in used
    assert not used & {(c, f) for c, fields in UNINDEXED.items() for f in fields}


def test_no_module_but_the_store_builds_queries():
    for path in (ROOT / "functions").rglob("*.py"):
        if path.name != "store.py":
            text = path.read_text()
            assert not re.search(r"\.where\(|\.order_by\(", text), path


def test_the_rules_deny_every_client_read_and_write():
    """The npm Firestore emulator does not evaluate rules, so this checks the file: one
    catch-all match whose only rule is `allow read, write: if false`. (Server SDKs with
    IAM credentials, which Freshet uses everywhere, are not subject to rules.)"""
    text = (ROOT / "infra/firestore.rules").read_text()
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    assert "rules_version = '2'" in code
    assert re.search(r"match\s+/databases/\{database\}/documents", code)
    assert re.search(r"match\s+/\{document=\*\*\}", code)
    allows = re.findall(r"allow\s+([^;]+);", code)
    assert allows == ["read, write: if false"]
    assert store_module.SETTINGS == "settings"  # no public collection is special-cased
    firebase = json.loads((ROOT / "infra/firebase.firestore.json").read_text())["firestore"]
    assert (firebase["rules"], firebase["indexes"]) == ("firestore.rules",
                                                        "firestore.indexes.json")


PROJECT = "freshet-acme-prod"


def cloud_config():
    return load_config(ROOT / deploy.CONFIG, env={}, project=PROJECT)


def steps_of(config) -> list[deploy.Step]:
    return [step for t in deploy.all_targets(config) for step in t.all_steps()]


def argvs(config) -> list[tuple[str, ...]]:
    return [step.run for step in steps_of(config) if step.run]


def test_deploy_mk_and_firebase_json_are_what_the_config_generates():
    assert deploy.stale() == [], "run `make deploy-config` (python -m freshet_local.deploy)"


def test_firestore_is_created_in_the_configured_location_with_delete_protection():
    config = cloud_config()
    create = next(a for a in argvs(config) if a[:4] == ("gcloud", "firestore", "databases",
                                                         "create"))
    assert f"--location={config.firestore_location}" in create
    assert {"--delete-protection", "--type=firestore-native"} <= set(create)
    firebase = json.loads(deploy.firebase_json(config))["firestore"]
    # Were firebase-tools to create the database itself, it would default to nam5.
    assert firebase["location"] == config.firestore_location == "europe-west1"


def test_each_function_is_deployed_private_gen2_with_its_limits_account_and_full_env():
    config = cloud_config()
    deploys = [a for a in argvs(config) if a[:3] == ("gcloud", "functions", "deploy")]
    assert [a[3] for a in deploys] == ["scheduler_tick", "run_task", "recover_stuck_runs",
                                       "publish_status", "api"]
    for argv in deploys:
        name, limits = argv[3], config.functions.limits_for(argv[3])
        for flag in ("--gen2", "--trigger-http", "--no-allow-unauthenticated",
                     "--runtime=python311", f"--region={config.region}", "--source=functions",
                     f"--entry-point={name}",
                     f"--service-account=freshet-runtime@{PROJECT}.iam.gserviceaccount.com",
                     f"--build-service-account=projects/{PROJECT}/serviceAccounts/"
                     f"freshet-build@{PROJECT}.iam.gserviceaccount.com",
                     f"--timeout={limits.timeout_s}s", f"--memory={limits.memory}",
                     f"--max-instances={limits.max_instances}",
                     f"--concurrency={limits.concurrency}"):
            assert flag in argv, (name, flag)
        env = dict(pair.split("=", 1) for pair in
                   next(a for a in argv if a.startswith("--set-env-vars="))
                   .removeprefix("--set-env-vars=^|^").split("|"))
        assert env == dict(deploy.function_env(config, name))  # one source for both
        assert env["FRESHET_AUDIENCE"] == f"https://europe-west1-{PROJECT}.cloudfunctions.net/" \
                                          f"{name}"
        assert env["FRESHET_SITE_BUCKET"] == f"{PROJECT}-freshet-site"
        assert env["FRESHET_SNAPSHOT_BUCKET"] == f"{PROJECT}-freshet-snapshots"
        assert env["FRESHET_AUTH"] == "oidc"
    timeouts = {a[3]: next(f for f in a if f.startswith("--timeout=")) for a in deploys}
    assert timeouts["run_task"] == "--timeout=900s"  # >= the queue's 10m dispatch deadline
    assert timeouts["recover_stuck_runs"] == timeouts["publish_status"] == "--timeout=300s"


def test_run_tasks_timeout_covers_the_dispatch_deadline_which_covers_every_job():
    config = cloud_config()
    env = dict(deploy.function_env(config, "scheduler_tick"))
    deadline = int(env["FRESHET_DISPATCH_DEADLINE_S"])
    assert config.functions.limits_for("run_task").timeout_s >= deadline
    assert all((job.expected_runtime_minutes or 0) * 60 <= deadline for job in config.jobs)
    for schedule in config.control_schedules:
        assert schedule.deadline <= config.functions.limits_for(schedule.target).timeout


def test_every_account_role_and_binding_the_functions_need_is_granted():
    config, runtime = cloud_config(), f"serviceAccount:freshet-runtime@{PROJECT}.iam." \
                                      "gserviceaccount.com"
    invoker = f"freshet-invoker@{PROJECT}.iam.gserviceaccount.com"
    runs = [" ".join(a) for a in argvs(config)]

    def granted(*parts):
        return [r for r in runs if all(p in r for p in parts)]

    for name in ("freshet-runtime", "freshet-invoker", "freshet-build"):
        assert granted("iam service-accounts create", name)
    assert granted("projects add-iam-policy-binding", runtime, "--role=roles/datastore.user",
                   "--condition=None")
    assert granted("tasks queues add-iam-policy-binding freshet-runs", runtime,
                   "--role=roles/cloudtasks.enqueuer")
    assert granted(f"iam service-accounts add-iam-policy-binding {invoker}", runtime,
                   "--role=roles/iam.serviceAccountUser")
    assert granted("projects add-iam-policy-binding", "freshet-build@",
                   "--role=roles/cloudbuild.builds.builder")
    for bucket in (config.site.bucket, config.site.snapshot_bucket):
        assert granted(f"buckets add-iam-policy-binding gs://{bucket}", runtime,
                       "--role=roles/storage.objectUser")
    for name in ("scheduler_tick", "run_task", "recover_stuck_runs", "publish_status", "api"):
        assert granted(f"functions add-invoker-policy-binding {name}",
                       f"--member=serviceAccount:{invoker}")
    assert not [r for r in runs if "allUsers" in r or "allAuthenticatedUsers" in r]
    assert granted("services enable", "cloudfunctions.googleapis.com", "run.googleapis.com",
                   "cloudtasks.googleapis.com", "cloudscheduler.googleapis.com",
                   "firestore.googleapis.com", "firebaserules.googleapis.com")


def test_the_runtime_gets_exactly_the_roles_it_needs_on_each_named_cloud_run_job():
    from freshet.core.models import Job, Schedule

    config = cloud_config()
    runtime = f"serviceAccount:{config.functions.service_account}"
    hourly = Schedule(cron="0 * * * *")
    plain = [" ".join(a) for a in argvs(config)]
    assert not [r for r in plain if "run jobs" in r or "bigquery.jobUser" in r]
    config = replace(config, jobs=config.jobs + (
        Job("report", "cloud_run_job", hourly, params={"job": "nightly-report"}),
        Job("again", "cloud_run_job", hourly, params={"job": "nightly-report"}),
        Job("other", "cloud_run_job", hourly,
            params={"job": "projects/data-prod/locations/us-central1/jobs/export"}),
        Job("rollup", "bigquery_query", hourly, params={})))
    runs = [" ".join(a) for a in argvs(config)]
    grants = [r for r in runs if r.startswith("gcloud run jobs add-iam-policy-binding")]
    # One binding per role per job (two Freshet jobs running one Cloud Run job: once),
    # on the job alone, never the project; in the job's own project and region.
    assert grants == [
        f"gcloud run jobs add-iam-policy-binding {job} --region={region} --project={project} "
        f"--member={runtime} --role={role} --format=none"
        for job, region, project in (("nightly-report", config.region, PROJECT),
                                     ("export", "us-central1", "data-prod"))
        for role in ("roles/run.jobsExecutorWithOverrides", "roles/run.viewer")]
    assert not [r for r in runs if "projects add-iam-policy-binding" in r and "roles/run." in r]
    # BigQuery jobs are created in the project: jobUser is granted there, only when used.
    assert [r for r in runs if "projects add-iam-policy-binding" in r
            and "--role=roles/bigquery.jobUser" in r and runtime in r]


def test_operators_are_invokers_of_the_api_only_and_viewers_read_the_page(tmp_path):
    text = (ROOT / deploy.CONFIG).read_text().replace(
        "allowed_callers: []", "allowed_callers: [ops@acme-prod.iam.gserviceaccount.com]"
    ).replace("viewers: []", "viewers: [group:data@example.com]")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    config = load_config(path, env={}, project=PROJECT)
    runs = [" ".join(a) for a in argvs(config)]
    ops = [r for r in runs if "ops@acme-prod" in r and "add-invoker-policy-binding" in r]
    assert len(ops) == 1 and "add-invoker-policy-binding api " in ops[0]
    assert dict(deploy.function_env(config, "api"))["FRESHET_ALLOWED_CALLERS"] == \
        "ops@acme-prod.iam.gserviceaccount.com"
    assert "FRESHET_ALLOWED_CALLERS" not in dict(deploy.function_env(config, "run_task"))
    assert [r for r in runs if "--member=group:data@example.com" in r
            and "--role=roles/storage.objectViewer" in r and config.site.bucket in r]
    public = load_config(path, env={}, project=PROJECT)
    object.__setattr__(public, "site", replace(public.site, public=True))
    runs = [" ".join(a) for a in argvs(public)]
    assert [r for r in runs if "--member=allUsers" in r and config.site.bucket in r]
    assert not [r for r in runs if "allUsers" in r and "functions" in r]


def test_creating_steps_check_first_so_a_second_deploy_changes_nothing():
    creates = [step for step in steps_of(cloud_config())
               if step.run[:1] == ("gcloud",) and step.run[-1:] != ("--quiet",)
               and any(verb in step.run for verb in ("create",))]
    assert creates and all(step.mode == "ensure" and step.check for step in creates), [
        s.run[:4] for s in creates if s.mode != "ensure"]
    deploys = [s for s in steps_of(cloud_config()) if s.run[2:3] == ("deploy",)]
    assert deploys and all(s.mode == "deploy" and s.via[3] == "function"
                           and "--format=value(labels.freshet-digest,state)" in s.check
                           for s in deploys)


def test_a_functions_digest_changes_with_its_source_or_flags_and_only_then(tmp_path):
    source = tmp_path / "functions"
    source.mkdir()
    (source / "main.py").write_text("x = 1\n")
    (source / "__pycache__").mkdir()
    config = cloud_config()
    first = deploy.digest(config, "api", tmp_path)
    (source / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"noise")
    # lint-imports, run in functions/, leaves its cache there: never a reason to redeploy
    (source / ".import_linter_cache").mkdir()
    (source / ".import_linter_cache" / "freshet.meta.json").write_text("{}")
    assert deploy.digest(config, "api", tmp_path) == first
    assert deploy.digest(config, "run_task", tmp_path) != first
    (source / "main.py").write_text("x = 2\n")
    assert deploy.digest(config, "api", tmp_path) != first


@pytest.mark.parametrize("project, needle", [
    ("your-project-id", "is the placeholder the config ships with"),
    ("demo-freshet", "a prefix Google reserves for emulator-only projects"),
    ("Not_A_Project", "is not a Google Cloud project id"),
])
def test_deploy_refuses_placeholder_and_demo_ids_in_one_line(project, needle):
    message = deploy.project_refusal(project)
    assert needle in message and "\n" not in message
    assert "make deploy PROJECT=" in message
    assert deploy.project_refusal(PROJECT) is None


def _make_env() -> dict[str, str]:
    # Run as a top-level make even when the suite itself runs under `make test`.
    return {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_deploy_stops_on_the_placeholder_with_one_line_saying_what_to_set():
    out = subprocess.run(["make", "--no-print-directory", "-o", "setup", "deploy"],
                         capture_output=True, text=True, cwd=ROOT, env=_make_env())
    assert out.returncode != 0
    ours = [line for line in out.stderr.splitlines() if line.startswith("deploy:")]
    assert len(ours) == 1 and "your-project-id" in ours[0] and "PROJECT=" in ours[0]
    assert "gcloud" not in out.stdout.replace(".venv/bin/python -m freshet_local.deploy", "")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_n_deploy_shows_every_step_in_an_order_make_j_keeps():
    out = subprocess.run(["make", "--no-print-directory", "-n", "-j8", "-o", "setup", "deploy",
                          f"PROJECT={PROJECT}"], capture_output=True, text=True, check=True,
                         cwd=ROOT, env=_make_env()).stdout.splitlines()
    config = cloud_config()
    expected = [deploy.render_step(step, f"make deploy PROJECT={PROJECT}").removeprefix("@")
                for t in deploy.deploy_targets(config) for step in t.steps]
    assert sorted(out) == sorted(expected)

    def first(needle: str) -> int:
        return next(i for i, line in enumerate(out) if needle in line)

    def last(needle: str) -> int:
        return max(i for i, line in enumerate(out) if needle in line)

    order = ["freshet_local.deploy preflight", "gcloud services enable",
             "gcloud iam service-accounts create", "gcloud projects add-iam-policy-binding",
             "gcloud functions deploy", "bin/freshet apply", "gcloud scheduler jobs run"]
    for before, after in zip(order, order[1:], strict=False):
        assert last(before) < first(after), (before, after)
    for prerequisite in ("firestore databases create", "firebase", "buckets create",
                         "tasks queues create", "cp -R site/templates"):
        assert last(prerequisite) < first("gcloud functions deploy"), prerequisite
    assert last("gcloud functions add-invoker-policy-binding") < first("bin/freshet apply")
    assert "Status page: https://storage.cloud.google.com/" in out[-3]


def test_make_deploy_depends_on_setup():
    assert "deploy-check: setup" in (ROOT / deploy.OUTPUT).read_text()
    assert "-include infra/deploy.mk" in (ROOT / "Makefile").read_text()


def test_secret_manager_references_reach_publish_status_and_gcloud_accepts_them(tmp_path):
    from tests.ops.helpers import PIPELINE

    text = PIPELINE + """\
routes:
  - id: ops-hook
    type: webhook
    url: {secret_manager: projects/demo-freshet/secrets/ops-hook-url/versions/2}
    secret: {secret_manager: projects/demo-freshet/secrets/ops-hook-key/versions/latest}
"""
    config = load_config(write_config(tmp_path, text), env={})
    runs = [step.run for target in deploy.deploy_targets(config) for step in target.steps
            if step.run]
    deploys = {r[3]: r for r in runs if r[:3] == ("gcloud", "functions", "deploy")}
    flag = ("--set-secrets=FRESHET_ROUTE_OPS_HOOK_URL=projects/demo-freshet/secrets/"
            "ops-hook-url:2,FRESHET_ROUTE_OPS_HOOK_SECRET=projects/demo-freshet/secrets/"
            "ops-hook-key:latest")
    assert flag in deploys["publish_status"]
    assert not any(a.startswith("--set-secrets") for a in deploys["run_task"])
    grants = [r for r in runs if r[:3] == ("gcloud", "secrets", "add-iam-policy-binding")]
    assert [g[3] for g in grants] == ["ops-hook-key", "ops-hook-url"]
    enable = next(r for r in runs if r[:3] == ("gcloud", "services", "enable"))
    assert "secretmanager.googleapis.com" in enable
    plain = [s.run for t in deploy.deploy_targets(load_config(write_config(tmp_path), env={}))
             for s in t.steps if s.run[:3] == ("gcloud", "services", "enable")]
    assert "secretmanager.googleapis.com" not in plain[0]  # only when a route needs it
    if shutil.which("gcloud") is None:
        pytest.skip("needs the Cloud SDK")
    for argv in (deploys["publish_status"], grants[0]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")})
        # parsed: it stops for want of an account (1); a usage error would exit 2
        assert done.returncode == 1, done.stderr[-2000:]
        assert "active account" in done.stderr


def test_runs_expire_through_a_ttl_policy_set_only_when_missing():
    ttl = next(s for s in steps_of(cloud_config())
               if s.run[:5] == ("gcloud", "firestore", "fields", "ttls", "update"))
    assert ttl.mode == "ensure-if" and ttl.check[:5] == ("gcloud", "firestore", "fields",
                                                          "ttls", "list")
    assert {"expire_at", "--collection-group=runs", "--enable-ttl"} <= set(ttl.run)


def test_deploy_bounds_the_image_repository_and_purge_leaves_nothing_that_costs():
    config = cloud_config()
    runs = [" ".join(a) for a in argvs(config)]
    assert [r for r in runs if r.startswith("gcloud artifacts repositories set-cleanup-policies "
                                            f"gcf-artifacts --location={config.region}")]
    policy = json.loads((ROOT / deploy.CLEANUP_POLICY).read_text())
    assert {p["action"]["type"] for p in policy} == {"Keep", "Delete"}
    undeploy = deploy.undeploy_target(config)
    purged = [" ".join(argv) for step in undeploy.purge for argv in step.commands()]
    number = deploy.SAMPLE_PROJECT_NUMBER
    for needle in ("tasks queues delete freshet-runs", f"storage rm --recursive gs://{PROJECT}"
                   "-freshet-site", "firestore databases delete",
                   "artifacts repositories delete gcf-artifacts",
                   f"storage rm --recursive gs://gcf-v2-sources-{number}-europe-west1",
                   f"storage rm --recursive gs://gcf-v2-uploads-{number}-europe-west1"):
        assert [p for p in purged if needle in p], needle
    kept = [" ".join(argv) for step in undeploy.steps for argv in step.commands()]
    assert not [k for k in kept if " delete gcf-artifacts" in k or "firestore databases delete"
                in k]
    said = " ".join(s.what for s in undeploy.steps if s.mode == "say")
    assert "APIs left enabled" in said and "gcloud services disable" in said
    assert not [r for r in purged + kept if "services disable" in r]


def test_the_operators_impersonation_api_is_enabled():
    enable = next(a for a in argvs(cloud_config()) if a[:3] == ("gcloud", "services", "enable"))
    assert "iamcredentials.googleapis.com" in enable
