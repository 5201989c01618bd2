"""Deploy artefacts: indexes cover the queries the code makes, rules deny clients,
infra/deploy.mk is what the config generates, and make -n shows the commands."""

import inspect
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.types import StructuredQuery

from freshet.gcp import store as store_module
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
    if isinstance(query, CollectionReference):
        return query.id, frozenset(), ()
    eq, ranged = set(), []
    for f in query._field_filters:
        name = f.field.field_path
        op = StructuredQuery.FieldFilter.Operator(f.op).name
        (eq.add(name) if op in EQUALITY else ranged.append(name))
    orders = [(o.field.field_path, StructuredQuery.Direction(o.direction).name)
              for o in query._orders]
    if ranged and not orders:
        orders = [(ranged[0], "ASCENDING")]  # Firestore orders by the range field first
    return query._parent.id, frozenset(eq), tuple(orders)


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
    "due_jobs": [lambda s: s.due_jobs(T, 10)],
    "due_jobs_versioned": [lambda s: s.due_jobs_versioned(T, 10)],
    "expired_runs": [lambda s: s.expired_runs(T)],
    "completed_jobs_before": [lambda s: s.completed_jobs_before(T)],
    "recent_runs": [lambda s: s.recent_runs(), lambda s: s.recent_runs(job_id="j")],
    "deadline_records": [lambda s: s.deadline_records()],
    "incidents": [lambda s: s.incidents(T)],
    "route_states": [lambda s: s.route_states()],
}


def test_every_query_method_of_the_store_is_exercised_here():
    markers = ("_stream(", ".stream(", "_due_query(", ".where(", ".order_by(")
    source_methods = {name for name, fn in inspect.getmembers(Store, inspect.isfunction)
                      if any(m in inspect.getsource(fn) for m in markers)}
    # _stream and _due_query are the recorded building blocks themselves
    assert source_methods - {"_stream", "_due_query"} <= set(QUERY_CALLS), source_methods
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
    shapes = {shape(q) for q in store.queries}
    needing = {s for s in shapes if len(s[1]) + len(s[2]) >= 2}
    assert ("jobs", frozenset({"status"}), (("next_run_at", "ASCENDING"),)) in needing
    missing = [s for s in needing if not covered(s, indexes)]
    assert not missing, f"queries without a composite index: {missing}"


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
    assert firebase == {"rules": "firestore.rules", "indexes": "firestore.indexes.json"}


def test_deploy_mk_is_what_the_config_generates():
    config = load_config(ROOT / deploy.CONFIG, env={})
    assert (ROOT / deploy.OUTPUT).read_text() == deploy.render(config), (
        "infra/deploy.mk is out of date: run python -m freshet_local.deploy")


def test_each_function_is_deployed_private_gen2_with_its_own_account_and_region():
    config = load_config(ROOT / deploy.CONFIG, env={})
    cmds = deploy.commands(config)
    deploys = [c for c in cmds["deploy-functions"] if c[:3] == ["gcloud", "functions", "deploy"]]
    assert [c[3] for c in deploys] == ["scheduler_tick", "run_task", "recover_stuck_runs",
                                       "publish_status", "api"]
    for argv in deploys:
        for flag in ("--gen2", "--trigger-http", "--no-allow-unauthenticated",
                     "--runtime=python311", f"--region={config.region}", "--source=functions",
                     f"--entry-point={argv[3]}",
                     f"--service-account={config.functions.service_account}"):
            assert flag in argv, (argv[3], flag)
        env = next(a for a in argv if a.startswith("--set-env-vars="))
        assert f"FRESHET_AUDIENCE={config.functions.url(argv[3])}" in env
        assert "FRESHET_AUTH=oidc" in env
    assert cmds["deploy-apply"][0][-2:] == ["apply", "--config=infra/pipeline.yaml"]
    assert "firestore:indexes,firestore:rules" in cmds["deploy-firestore"][0]
    assert cmds["deploy-publish"][0][:4] == ["gcloud", "scheduler", "jobs", "run"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_n_deploy_shows_the_exact_commands():
    # Run as a top-level make even when the suite itself runs under `make test`.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "-f", deploy.OUTPUT, "deploy"],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env=env).stdout.splitlines()
    config = load_config(ROOT / deploy.CONFIG, env={})
    expected = [deploy._make_line(a)[1:].replace("$$", "$")
                for target in deploy.TARGETS for a in deploy.commands(config)[target]]
    assert out == expected


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
    cmds = deploy.commands(config)
    deploys = {c[3]: c for c in cmds["deploy-functions"] if c[:3] == ["gcloud", "functions",
                                                                        "deploy"]}
    flag = ("--set-secrets=FRESHET_ROUTE_OPS_HOOK_URL=projects/demo-freshet/secrets/"
            "ops-hook-url:2,FRESHET_ROUTE_OPS_HOOK_SECRET=projects/demo-freshet/secrets/"
            "ops-hook-key:latest")
    assert flag in deploys["publish_status"]
    assert not any(a.startswith("--set-secrets") for a in deploys["run_task"])
    grants = [c for c in cmds["deploy-functions"] if c[:3] == ["gcloud", "secrets",
                                                              "add-iam-policy-binding"]]
    assert [g[3] for g in grants] == ["ops-hook-key", "ops-hook-url"]
    if shutil.which("gcloud") is None:
        pytest.skip("needs the Cloud SDK")
    for argv in (deploys["publish_status"], grants[0]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")})
        # parsed: it stops for want of an account (1); a usage error would exit 2
        assert done.returncode == 1, done.stderr[-2000:]
        assert "active account" in done.stderr
