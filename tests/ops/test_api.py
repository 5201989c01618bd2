"""The management API end to end: Flask around freshet.ops.api, the Firestore emulator,
real RS256 tokens, and every response checked against openapi.yaml."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import flask
import jsonschema
import pytest
import yaml

from freshet.core.catalog import Catalog, DatasetSpec
from freshet.core.settings import Settings
from freshet.gcp.certs import CertCache
from freshet.gcp.store import Store
from freshet.loop.datasets import record_success
from freshet.ops import api as api_module
from freshet.ops import entries, web
from freshet.ops.deps import Deps, reset_process_deps
from freshet.ops.web import serve
from tests.loop.helpers import RecordingQueue
from tests.ops.helpers import AUDIENCE, INVOKER, OPERATOR, T0, CertServer, SigningKey

SPEC = yaml.safe_load((Path(api_module.__file__).parent / "openapi.yaml").read_text())
SETTINGS = Settings(auth_mode="oidc", invoker_email=INVOKER, audience=AUDIENCE,
                    allowed_callers=OPERATOR)
JOB = {"id": "orders", "kind": "noop", "schedule": {"cron": "*/15 * * * *",
                                                    "timezone": "Europe/London"},
       "produces": ["sales.orders"], "max_retries": 2}


@pytest.fixture(scope="module")
def signing():
    key = SigningKey("api-key")
    server = CertServer([key])
    yield key, CertCache(server.url)
    server.close()


class Api:
    """Calls the api through Flask's test client; checks each answer against the spec."""

    def __init__(self, db, signing, monkeypatch):
        self.key, certs = signing
        self.store = Store(db)
        self.queue = RecordingQueue(SETTINGS)
        self.now = T0
        deps = Deps(store=self.store, task_queue=self.queue, settings=SETTINGS,
                    certs=certs, clock=lambda: self.now)
        app = flask.Flask("freshet-api-test")
        app.add_url_rule("/", "api", lambda: serve(flask.request, entries.api, deps),
                         methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        app.add_url_rule("/<path:path>", "api_path",
                         lambda path: serve(flask.request, entries.api, deps),
                         methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        self.app = app
        self.token = self.key.token(email=OPERATOR)

    def raw(self, method: str, path: str, *, token: str | None = "default", **kwargs):
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        client = self.app.test_client()
        return client.open(path, method=method, headers=headers, **kwargs)

    def call(self, method: str, template: str, params: dict | None = None, **kwargs):
        path = template.format(**(params or {}))
        response = self.raw(method, path, **kwargs)
        body = response.get_json()
        check_against_spec(method, template, response.status_code, body)
        return response.status_code, body


def check_against_spec(method: str, template: str, status: int, body) -> None:
    operation = SPEC["paths"][template][method.lower()]
    assert str(status) in operation["responses"], (method, template, status, body)
    response = operation["responses"][str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": SPEC["components"]},
                        cls=jsonschema.Draft202012Validator)


@pytest.fixture()
def api(db, signing, monkeypatch):
    return Api(db, signing, monkeypatch)


def test_spec_and_implementation_list_the_same_routes():
    in_spec = {(m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops
               if m in ("get", "post", "put", "delete", "patch")}
    implemented = {(r.method, r.pattern) for r in api_module.ROUTES}
    assert in_spec == implemented


def test_every_route_in_the_spec_answers(api):
    api.call("POST", "/jobs", json=JOB)
    params = {"job_id": "orders", "run_id": "none", "key": "sales.orders",
              "backfill_id": "none", "incident_id": "none", "window_id": "none"}
    for template, ops in SPEC["paths"].items():
        for method in ops:
            if method in ("get", "post", "put"):
                status, _ = api.call(method.upper(), template, params,
                                     json={} if method != "get" else None)
                assert status < 500 and status not in (405,), (method, template)


def test_create_list_show_pause_resume_archive_a_job(api):
    status, body = api.call("POST", "/jobs", json=JOB)
    assert status == 201 and body["job"]["status"] == "active"
    assert body["job"]["next_run_at"] == "2026-11-28T12:15:00Z"
    assert api.call("GET", "/jobs")[1]["jobs"][0]["id"] == "orders"
    status, body = api.call("GET", "/jobs/{job_id}", {"job_id": "orders"})
    assert body["job"]["schedule"]["cron"] == "*/15 * * * *" and body["recent_runs"] == []
    assert api.call("POST", "/jobs/{job_id}/pause", {"job_id": "orders"},
                    json={"reason": "vendor outage"})[1]["job"]["status"] == "paused"
    assert api.call("GET", "/jobs", query_string={"status": "paused"})[1]["jobs"]
    api.now = T0 + timedelta(hours=1, minutes=1)
    status, body = api.call("POST", "/jobs/{job_id}/resume", {"job_id": "orders"})
    assert body["job"]["status"] == "active"
    assert body["job"]["next_run_at"] == "2026-11-28T13:15:00Z"  # from now, not the past
    status, body = api.call("POST", "/jobs/{job_id}/archive", {"job_id": "orders"})
    assert body["job"]["status"] == "archived" and body["job"]["archived_at"]
    assert api.store.job("orders").status == "archived"


def test_secret_params_are_masked(api):
    api.call("POST", "/jobs", json={**JOB, "params": {"token": "s3cret", "page": 2},
                                    "secret_params": ["token"]})
    job = api.call("GET", "/jobs/{job_id}", {"job_id": "orders"})[1]["job"]
    assert job["params"] == {"token": "[secret]", "page": 2}


def test_run_now_creates_one_run_and_a_repeat_with_the_key_returns_it(api):
    api.call("POST", "/jobs", json=JOB)
    status, first = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"},
                             json={"idempotency_key": "deploy-42"})
    assert status == 201 and first["created"] is True
    assert first["run"]["trigger_source"] == "api" and first["run"]["status"] == "queued"
    status, again = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"},
                             json={"idempotency_key": "deploy-42"})
    assert status == 200 and again["created"] is False
    assert again["run"]["id"] == first["run"]["id"]
    assert [e.run_id for e in api.queue.sent] == [first["run"]["id"]]
    runs = api.call("GET", "/runs", query_string={"job_id": "orders"})[1]["runs"]
    assert [r["id"] for r in runs] == [first["run"]["id"]]
    run = api.call("GET", "/runs/{run_id}", {"run_id": first["run"]["id"]})[1]["run"]
    assert run["idempotency_key"] == "deploy-42"


def test_run_now_without_a_key_dedupes_within_the_minute(api):
    api.call("POST", "/jobs", json=JOB)
    a = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})[1]
    b = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})[1]
    assert a["run"]["id"] == b["run"]["id"] and not b["created"]


def test_twenty_concurrent_run_requests_with_one_key_make_one_run(api, db):
    api.call("POST", "/jobs", json=JOB)
    statuses, barrier = [], threading.Barrier(20)

    def one():
        barrier.wait()
        response = api.raw("POST", "/jobs/orders/run", json={"idempotency_key": "k-20"})
        statuses.append((response.status_code, response.get_json()["run"]["id"]))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 20
    assert sorted(s for s, _ in statuses) == [200] * 19 + [201]
    assert len({run_id for _, run_id in statuses}) == 1
    assert len(list(db.collection("runs").stream())) == 1
    assert len(api.queue.sent) == 1


def test_kill_switch_turns_manual_runs_off_with_403(api):
    api.call("POST", "/jobs", json=JOB)
    api.call("PUT", "/control", json={"manual_actions_enabled": False, "reason": "outage"})
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})
    assert status == 403 and "kill switch" in body["error"]["message"]
    assert "outage" in body["error"]["message"] and body["error"]["field"] == "control"
    assert api.queue.sent == []


def test_an_archived_job_cannot_run_409(api):
    api.call("POST", "/jobs", json=JOB)
    api.call("POST", "/jobs/{job_id}/archive", {"job_id": "orders"})
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})
    assert status == 409 and "archived" in body["error"]["message"]


def test_control_round_trip_and_invalid_control_changes_nothing(api):
    status, body = api.call("PUT", "/control", json={"disabled_kinds": ["http_fetch"],
                                                     "paused_all": False})
    assert status == 200 and body["control"]["disabled_kinds"] == ["http_fetch"]
    assert api.call("GET", "/control")[1]["control"]["disabled_kinds"] == ["http_fetch"]
    assert api.store.control_doc()["updated_by"] == OPERATOR
    status, body = api.call("PUT", "/control", json={"paused_all": "yes"})
    assert status == 400 and body["error"]["field"] == "paused_all"
    status, body = api.call("PUT", "/control", json={"colour": "red"})
    assert status == 400 and body["error"]["field"] == "colour"
    assert api.store.control().disabled_kinds == {"http_fetch"}


def test_datasets_and_status_show_freshness(api):
    api.store.put_catalog_doc(Catalog(datasets={
        "sales.orders": DatasetSpec("sales.orders", title="Orders"),
        "finance.rates": DatasetSpec("finance.rates")}).to_doc())
    record_success(api.store, "sales.orders", "r1", T0 - timedelta(hours=1), records=10)
    status, body = api.call("GET", "/datasets")
    states = {d["key"]: d["state"] for d in body["datasets"]}
    assert states == {"sales.orders": "fresh", "finance.rates": "unknown"}
    status, body = api.call("GET", "/datasets/{key}", {"key": "sales.orders"})
    assert body["dataset"]["title"] == "Orders" and body["dataset"]["age_s"] == 3600
    api.now = T0 + timedelta(hours=30)
    assert api.call("GET", "/datasets/{key}", {"key": "sales.orders"})[1]["dataset"][
        "state"] == "warn"
    status, body = api.call("GET", "/status")
    assert body["datasets"]["warn"] == 1 and body["worst"] == "warn"
    assert api.call("GET", "/datasets/{key}", {"key": "no.such"})[0] == 404


def test_malformed_json_is_400_naming_the_body(api):
    status, body = api.call("POST", "/jobs", data="{not json", content_type="application/json")
    assert status == 400 and body["error"]["field"] == "body"
    status, body = api.call("POST", "/jobs", json=["a", "list"])
    assert status == 400 and body["error"]["field"] == "body"


def test_wrong_types_are_400_naming_the_field(api):
    for change, field in (({"max_retries": "three"}, "max_retries"),
                          ({"id": 42}, "id"), ({"produces": "sales.orders"}, "produces"),
                          ({"schedule": "hourly"}, "schedule"),
                          ({"colour": "red"}, "colour")):
        status, body = api.call("POST", "/jobs", json={**JOB, **change})
        assert (status, body["error"]["field"]) == (400, field), body
        assert field.split(".")[0] in body["error"]["message"] or body["error"]["field"]
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"},
                            json={"idempotency_key": 7})
    assert (status, body["error"]["field"]) == (400, "idempotency_key")
    status, body = api.call("GET", "/runs", query_string={"limit": "many"})
    assert (status, body["error"]["field"]) == (400, "limit")
    assert api.store.list_jobs() == []


def test_invalid_cron_is_400_naming_schedule_cron(api):
    status, body = api.call("POST", "/jobs", json={**JOB, "schedule": {"cron": "61 * * * *"}})
    assert status == 400 and body["error"]["field"] == "schedule.cron"
    assert "61 * * * *" in body["error"]["message"]
    assert api.store.list_jobs() == []


def test_unknown_kind_and_duplicate_ids_are_refused(api):
    status, body = api.call("POST", "/jobs", json={**JOB, "kind": "teleport"})
    assert (status, body["error"]["field"]) == (400, "kind")
    api.call("POST", "/jobs", json=JOB)
    assert api.call("POST", "/jobs", json=JOB)[0] == 409


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "http_fetch", "params": {"url": "http://169.254.169.254/computeMetadata/v1/"}},
     "params.url"),
    ({"kind": "http_fetch", "params": {"url": "https://x.example/", "format": "xml"}},
     "params.format"),
])
def test_a_jobs_params_are_checked_by_its_kind_as_apply_checks_them(api, change, field):
    status, body = api.call("POST", "/jobs", json={**JOB, **change})
    assert (status, body["error"]["field"]) == (400, field)
    assert api.store.list_jobs() == []


def test_unknown_job_is_404(api):
    for method, template, sent in (("GET", "/jobs/{job_id}", None),
                                   ("POST", "/jobs/{job_id}/pause", {"reason": "x"}),
                                   ("POST", "/jobs/{job_id}/run", None)):
        status, body = api.call(method, template, {"job_id": "ghost"}, json=sent)
        assert status == 404 and body["error"]["field"] == "job_id"
        assert "ghost" in body["error"]["message"]
    assert api.call("GET", "/runs/{run_id}", {"run_id": "ghost__x"})[0] == 404


def test_oversize_body_is_413(api):
    big = {"id": "orders", "kind": "noop", "schedule": {"cron": "* * * * *"},
           "description": "x" * (web.MAX_BODY_BYTES + 10)}
    status, body = api.call("POST", "/jobs", json=big)
    assert status == 413 and body["error"]["field"] == "body"
    assert api.store.list_jobs() == []


def test_unknown_route_is_404_and_wrong_method_is_405(api):
    response = api.raw("GET", "/nowhere")
    assert response.status_code == 404 and response.get_json()["error"]["field"] == "path"
    response = api.raw("DELETE", "/jobs/orders")
    assert response.status_code == 405 and response.get_json()["error"]["field"] == "method"
    assert response.headers["Allow"] == "GET"
    assert api.raw("GET", "/api/jobs").status_code == 200  # reached under /api too


@pytest.mark.parametrize("make_token, status", [
    (lambda key: None, 401),
    (lambda key: key.token(email=OPERATOR, expires_in=-120), 401),
    (lambda key: key.token(email=OPERATOR, audience="https://other.example/api"), 401),
    (lambda key: key.token(email="stranger@example.com"), 403),
    (lambda key: SigningKey("api-key").token(email=OPERATOR), 401),
])
def test_bad_tokens_are_refused_and_change_nothing(api, make_token, status):
    token = make_token(api.key)
    response = api.raw("POST", "/jobs", token=token, json=JOB)
    body = response.get_json()
    assert response.status_code == status and body["error"]["field"] == "Authorization"
    check_against_spec("POST", "/jobs", response.status_code, body)
    assert api.store.list_jobs() == []


def test_a_bug_answers_500_without_a_traceback(api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.store, "list_jobs", broken)
    response = api.raw("GET", "/jobs")
    text = response.get_data(as_text=True)
    assert response.status_code == 500 and "secret internals" not in text
    assert "Traceback" not in text and json.loads(text)["error"]["message"]


@pytest.fixture()
def entry_point(db, monkeypatch):
    """functions/main.py's `api`, served by functions-framework as in the cloud."""
    from functions_framework import create_app

    reset_process_deps()
    yield lambda: create_app(target="api", source=str(Path(api_module.__file__).parents[2]
                                                      / "main.py")).test_client()
    reset_process_deps()


def test_the_deployed_entry_point_refuses_a_caller_without_a_token(entry_point, monkeypatch):
    monkeypatch.setenv("FRESHET_AUTH", "oidc")
    response = entry_point().get("/jobs")
    assert response.status_code == 401
    assert response.get_json()["error"]["field"] == "Authorization"


def test_the_deployed_entry_point_serves_the_api_in_explicit_local_mode(entry_point,
                                                                        monkeypatch):
    monkeypatch.setenv("FRESHET_AUTH", "local")
    client = entry_point()
    assert client.post("/jobs", json=JOB).status_code == 201
    assert client.get("/jobs").get_json()["jobs"][0]["id"] == "orders"
    assert client.post("/jobs/ghost/run").status_code == 404


def test_a_job_that_cannot_fit_one_cloud_tasks_delivery_is_refused(api):
    status, body = api.call("POST", "/jobs", json={**JOB, "stuck_threshold_minutes": 90})
    assert status == 400 and body["error"]["field"] == "stuck_threshold_minutes"
    assert "30-minute dispatch limit" in body["error"]["message"]
    status, body = api.call("POST", "/jobs", json={**JOB, "expected_runtime_minutes": 11})
    assert status == 400 and body["error"]["field"] == "expected_runtime_minutes"
    assert "dispatch_deadline (10m" in body["error"]["message"]
    status, body = api.call("POST", "/jobs", json={**JOB, "stuck_threshold_minutes": 30,
                                                   "expected_runtime_minutes": 10})
    assert status == 201 and body["job"]["expected_runtime_minutes"] == 10


def test_each_run_links_to_its_logs_explorer_query(api):
    api.call("POST", "/jobs", json=JOB)
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"}, json={})
    run = body["run"]
    assert run["logs_url"].startswith("https://console.cloud.google.com/logs/query;query="
                                      "labels.run_id%3D%22orders__")
    assert run["logs_url"].endswith("?project=demo-freshet")
# -- numbers and shapes JSON or Firestore cannot carry ---------------------------------------


def job_body(params: str) -> str:
    return ('{"id": "orders", "kind": "noop", "schedule": {"cron": "*/15 * * * *"}, '
            f'"params": {params}}}')


@pytest.mark.parametrize(("params", "field"), [
    ('{"x": NaN}', "params.x"),
    ('{"x": Infinity}', "params.x"),
    ('{"x": [-Infinity]}', "params.x[0]"),
    ('{"x": 9223372036854775808}', "params.x"),
    ('{"x": -9223372036854775809}', "params.x"),
    ('{"": 1}', "params"),
    ('{"x": [[1]]}', "params.x[0]"),
    ('{"x": "\\ud800"}', "params.x"),
    ('{"d": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "params.d.a"),
])
def test_params_outside_json_and_firestore_are_400_naming_the_field(api, params, field):
    status, body = api.call("POST", "/jobs", data=job_body(params),
                            content_type="application/json")
    assert status == 400, body
    assert body["error"]["field"].startswith(field), body
    assert api.store.list_jobs() == []


def test_a_body_nested_past_the_stack_is_400_not_500(api):
    status, body = api.call("POST", "/jobs", data="[" * 30_000 + "]" * 30_000,
                            content_type="application/json")
    assert (status, body["error"]["field"]) == (400, "body")


def test_an_idempotency_key_that_cannot_be_encoded_is_400(api):
    api.call("POST", "/jobs", json=JOB)
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"},
                            data='{"idempotency_key": "\\udc00"}',
                            content_type="application/json")
    assert (status, body["error"]["field"]) == (400, "idempotency_key")


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "1" * 5000, " 5"])
def test_a_limit_in_other_digits_or_too_long_is_400(api, limit):
    status, body = api.call("GET", "/runs", query_string={"limit": limit})
    assert (status, body["error"]["field"]) == (400, "limit")


def test_a_stored_nan_from_before_the_checks_still_lists_as_valid_json(api):
    from freshet.core.models import new_job

    legacy = new_job(**{**JOB, "params": {"x": 1}})
    legacy.params = {"x": float("nan"), "y": float("inf")}
    api.store.put_job(legacy)
    response = api.raw("GET", "/jobs")
    body = json.loads(response.get_data(as_text=True))  # strict: NaN is not JSON
    assert response.status_code == 200 and body["jobs"][0]["params"] == {"x": None, "y": None}


# -- one-time jobs: none stays active with nothing to run ----------------------------------

def one_time(run_at: str) -> dict:
    return {"id": "once", "kind": "noop", "schedule": {"run_at": run_at}}


def test_a_one_time_job_in_the_distant_past_is_400_naming_run_at(api):
    status, body = api.call("POST", "/jobs", json=one_time("1971-01-01T00:00:00Z"))
    assert (status, body["error"]["field"]) == (400, "schedule.run_at")
    assert "would never run" in body["error"]["message"]
    assert api.store.list_jobs() == []


def test_a_one_time_job_just_missed_runs_once_at_once(api):
    from freshet.loop.tick import tick_once
    from tests.loop.helpers import loop_settings

    run_at = T0 - timedelta(hours=2)
    status, body = api.call("POST", "/jobs", json=one_time(run_at.isoformat()))
    assert status == 201 and body["job"]["next_run_at"] == "2026-11-28T10:00:00Z"
    settings = loop_settings()
    created = tick_once(api.store, RecordingQueue(settings), now=T0, settings=settings).created
    assert created == ["once__20261128T100000Z"]
    assert tick_once(api.store, RecordingQueue(settings), now=T0 + timedelta(minutes=1),
                     settings=settings).created == []


def test_a_paused_one_time_job_whose_moment_passed_runs_when_resumed(api):
    api.call("POST", "/jobs", json=one_time((T0 + timedelta(hours=1)).isoformat()))
    api.call("POST", "/jobs/{job_id}/pause", {"job_id": "once"}, json={"reason": "hold"})
    api.now = T0 + timedelta(days=3)
    status, body = api.call("POST", "/jobs/{job_id}/resume", {"job_id": "once"})
    assert status == 200 and body["job"]["status"] == "active"
    assert body["job"]["next_run_at"] == "2026-11-28T13:00:00Z"  # due: the next tick runs it


def test_a_paused_one_time_job_that_already_ran_completes_when_resumed(api):
    api.call("POST", "/jobs", json=one_time((T0 + timedelta(hours=1)).isoformat()))
    api.call("POST", "/jobs/{job_id}/pause", {"job_id": "once"}, json={"reason": "hold"})
    api.store.update_job("once", {"last_run_id": "once__20261128T130000Z",
                                  "next_run_at": None})
    status, body = api.call("POST", "/jobs/{job_id}/resume", {"job_id": "once"})
    assert (status, body["job"]["status"], body["job"]["next_run_at"]) == (
        200, "completed", None)


# -- backfills, triggers, pools through the API ----------------------------------------

HOURLY = {**JOB, "schedule": {"cron": "0 * * * *", "timezone": "UTC"}}


def test_backfill_dry_run_start_repeat_status_and_cancel(api):
    api.call("POST", "/jobs", json=HOURLY)
    body = {"job_id": "orders", "from": "2026-11-28T00:00:00Z", "to": "2026-11-28T23:00:00Z",
            "max_parallel": 3}
    status, dry = api.call("POST", "/backfills", json={**body, "dry_run": True})
    assert status == 200 and dry["slots"] == 13 and dry["todo_count"] == 13  # up to 12:00
    assert api.queue.sent == []
    status, made = api.call("POST", "/backfills", json=body)
    assert status == 201 and made["created"] is True
    backfill = made["backfill"]
    assert (backfill["status"], backfill["progress"]["planned"], backfill["max_parallel"]) == (
        "active", 13, 3)
    assert backfill["progress"]["running"] == 3 and len(api.queue.sent) == 3
    assert backfill["requested_by"] == OPERATOR
    status, again = api.call("POST", "/backfills", json=body)
    assert status == 200 and again["backfill"]["id"] == backfill["id"]
    listed = api.call("GET", "/backfills", query_string={"job_id": "orders"})[1]["backfills"]
    assert [b["id"] for b in listed] == [backfill["id"]]
    shown = api.call("GET", "/backfills/{backfill_id}", {"backfill_id": backfill["id"]})[1]
    assert shown["backfill"]["progress"]["bar"].endswith("0/13")
    status, cancelled = api.call("POST", "/backfills/{backfill_id}/cancel",
                                 {"backfill_id": backfill["id"]})
    assert status == 200 and cancelled["backfill"]["status"] == "cancelled"
    assert cancelled["backfill"]["progress"]["cancelled"] == 13
    run = api.call("GET", "/runs/{run_id}", {"run_id": api.queue.sent[0].run_id})[1]["run"]
    assert run["status"] == "cancelled" and run["backfill_id"] == backfill["id"]
    assert run["slot"] == "2026-11-28T00:00:00Z"
    assert run["data_interval"] == {"start": "2026-11-27T23:00:00Z",
                                    "end": "2026-11-28T00:00:00Z"}


@pytest.mark.parametrize("body,field,code", [
    ({"from": "2026-11-28T00:00:00Z", "to": "2026-11-28T01:00:00Z"}, "job_id", 400),
    ({"job_id": "orders", "from": "yesterday", "to": "2026-11-28T01:00:00Z"}, "from", 400),
    ({"job_id": "orders", "from": "2026-11-28T00:00:00", "to": "2026-11-28T01:00:00Z"}, "from",
     400),
    ({"job_id": "orders", "from": "2026-11-28T02:00:00Z", "to": "2026-11-28T01:00:00Z"}, "from",
     400),
    ({"job_id": "orders", "from": "2026-11-28T00:00:00Z", "to": "2026-11-28T01:00:00Z",
      "max_parallel": 0}, "max_parallel", 400),
    ({"job_id": "orders", "from": "2026-11-28T00:00:00Z", "to": "2026-11-28T01:00:00Z",
      "rerun": "yes"}, "rerun", 400),
    ({"job_id": "orders", "from": "2026-11-28T00:00:00Z", "to": "2026-11-28T01:00:00Z",
      "speed": 2}, "speed", 400),
    ({"job_id": "nope", "from": "2026-11-28T00:00:00Z", "to": "2026-11-28T01:00:00Z"}, "job_id",
     404),
])
def test_a_bad_backfill_request_names_the_field_and_changes_nothing(api, body, field, code):
    api.call("POST", "/jobs", json=HOURLY)
    status, answer = api.call("POST", "/backfills", json=body)
    assert (status, answer["error"]["field"]) == (code, field)
    assert api.queue.sent == [] and api.call("GET", "/backfills")[1]["backfills"] == []


def test_an_unknown_backfill_is_404(api):
    status, body = api.call("GET", "/backfills/{backfill_id}", {"backfill_id": "nope"})
    assert status == 404 and body["error"]["field"] == "backfill_id"


def test_a_triggered_job_made_through_the_api_is_listed_on_its_upstreams(api):
    api.call("POST", "/jobs", json=JOB)
    status, body = api.call("POST", "/jobs", json={
        "id": "rollup", "kind": "noop", "produces": ["sales.revenue"],
        "trigger": {"after": ["sales.orders"], "when": "any"}, "catchup": "skip"})
    assert status == 201
    job = body["job"]
    assert job["trigger"] == {"after": ["sales.orders"], "when": "any",
                              "description": "after sales.orders is fresh"}
    assert job["next_run_at"] is None and job["schedule"]["cron"] is None
    assert api.store.get_dataset("sales.orders").triggers == ["rollup"]
    status, body = api.call("POST", "/jobs", json={
        "id": "loop", "kind": "noop", "produces": ["sales.orders.copy"],
        "trigger": {"after": ["sales.revenue"]}})
    assert status == 201  # no cycle: nothing consumes sales.orders.copy
    status, body = api.call("POST", "/jobs", json={
        "id": "back", "kind": "noop", "produces": ["sales.orders"],
        "trigger": {"after": ["sales.revenue"]}})
    # A loop back to sales.orders needs a second producer of it, refused first (the
    # cycle check: test_two_creates_at_once_cannot_close_a_trigger_loop)
    assert status == 400 and body["error"]["field"] == "produces[0]"
    assert "produced by job 'orders'" in body["error"]["message"]


def test_two_creates_at_once_cannot_close_a_trigger_loop(api, db):
    """Issue 20: a after y producing x, b after x producing y, released together: the
    cycle check commits with each create (the trigger graph's version), so one is refused."""
    bodies = [{"id": "a", "kind": "noop", "produces": ["x"], "trigger": {"after": ["y"]}},
              {"id": "b", "kind": "noop", "produces": ["y"], "trigger": {"after": ["x"]}}]
    answers, barrier = [], threading.Barrier(2)

    def create(body):
        barrier.wait()
        response = api.raw("POST", "/jobs", json=body)
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=create, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(status for status, _ in answers) == [201, 400]
    (refused,) = [body for status, body in answers if status == 400]
    assert refused["error"]["field"] == "trigger"
    assert "trigger cycle:" in refused["error"]["message"]
    assert len(list(db.collection("jobs").stream())) == 1  # the refused one wrote nothing
    (made,) = [body["job"]["id"] for status, body in answers if status == 201]
    listed = {d.id: d.to_dict().get("triggers") for d in db.collection("datasets").stream()
              if "~" not in d.id}  # not the made job's datasets' group (core.groups)
    assert listed == {"y" if made == "a" else "x": [made]}
    graph = db.collection("settings").document("trigger_graph").get().to_dict()
    assert graph["version"] == 1 and graph["jobs"] == 1


def test_a_job_naming_an_unknown_pool_is_refused(api):
    status, body = api.call("POST", "/jobs", json={**JOB, "pool": "lake"})
    assert status == 400 and body["error"]["field"] == "pool"
    api.store.put_catalog_doc({"pools": [{"name": "lake", "queue": "freshet-runs-lake",
                                          "max_concurrent": 2}]})
    status, body = api.call("POST", "/jobs", json={**JOB, "pool": "lake"})
    assert status == 201 and body["job"]["pool"] == "lake"
def test_a_job_producing_a_dataset_another_job_produces_is_refused(api):
    status, _ = api.call("POST", "/jobs", json={**JOB, "id": "first", "produces": ["x.y"]})
    assert status == 201
    status, body = api.call("POST", "/jobs", json={**JOB, "produces": ["a.b", "x.y"]})
    assert status == 400 and body["error"]["field"] == "produces[1]"
    assert "'first'" in body["error"]["message"]
    assert api.store.get_job(JOB["id"]) is None


def test_a_job_producing_an_observed_dataset_is_refused(api):
    from freshet.core.observe import ObserveKind, ObserveSpec

    spec = ObserveSpec(ObserveKind.BIGQUERY_TABLE, "vendor-proj.sales.orders")
    api.store.put_catalog_doc(Catalog(datasets={
        "vendor.orders": DatasetSpec("vendor.orders", observe=spec)}).to_doc())
    status, body = api.call("POST", "/jobs", json={**JOB, "produces": ["x.y", "vendor.orders"]})
    assert status == 400 and body["error"]["field"] == "produces[1]"
    assert "is observed" in body["error"]["message"]
    assert api.store.get_job(JOB["id"]) is None
    status, body = api.call("GET", "/datasets/{key}", {"key": "vendor.orders"})
    assert status == 200 and body["dataset"]["observe"] == {
        "bigquery_table": "vendor-proj.sales.orders", "every": "5m"}


# -- incidents --------------------------------------------------------------------------


def catalog_with_orders(api):
    api.store.put_catalog_doc(Catalog(datasets={
        "sales.orders": DatasetSpec("sales.orders", "Orders")}).to_doc())


def test_open_note_and_resolve_an_incident(api):
    catalog_with_orders(api)
    status, body = api.call("POST", "/incidents", json={
        "title": "Warehouse load delayed", "note": "The vendor's export is late.",
        "scope": {"datasets": ["sales.orders"]}, "eta": "2h"})
    assert status == 201 and body["created"] is True
    incident = body["incident"]
    assert incident["status"] == "open" and incident["eta"] == "2026-11-28T14:00:00Z"
    assert incident["opened_by"] == OPERATOR
    assert incident["scope"] == {"everything": False, "jobs": [], "datasets": ["sales.orders"],
                                 "consumers": []}
    ident = {"incident_id": incident["id"]}
    again = api.call("POST", "/incidents", json={"title": "Warehouse load delayed"})
    assert again[0] == 200 and again[1]["incident"]["id"] == incident["id"]  # the same open
    api.now = T0 + timedelta(minutes=20)
    status, body = api.call("POST", "/incidents/{incident_id}/notes", ident,
                            json={"text": "Vendor says 30 more minutes.", "eta": "30m"})
    assert [n["kind"] for n in body["incident"]["notes"]] == ["opened", "update"]
    assert body["incident"]["eta"] == "2026-11-28T12:50:00Z"
    api.now = T0 + timedelta(minutes=45)
    status, body = api.call("POST", "/incidents/{incident_id}/resolve", ident,
                            json={"text": "Loaded."})
    assert body["incident"]["status"] == "resolved" and body["incident"]["eta"] is None
    assert body["incident"]["resolved_at"] == "2026-11-28T12:45:00Z"
    status, body = api.call("POST", "/incidents/{incident_id}/notes", ident,
                            json={"text": "too late"})
    assert status == 409 and "resolved" in body["error"]["message"]
    listed = api.call("GET", "/incidents")[1]["incidents"]
    assert [i["id"] for i in listed] == [incident["id"]]
    assert api.call("GET", "/incidents/{incident_id}", ident)[1]["incident"]["notes"][-1][
        "text"] == "Loaded."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x", "scope": {"datasets": ["ghost.table"]}}, "scope.datasets[0]"),
        ({"title": "x", "scope": {"jobs": ["ghost"]}}, "scope.jobs[0]"),
        ({"title": "x", "scope": {"teams": ["a"]}}, "scope.teams"),
        ({"title": "x", "eta": "2026-11-28T11:00:00Z"}, "eta"),
        ({"title": "x", "eta": "tomorrow"}, "eta"),
        ({"title": "x" * 201}, "title"),
        ({"title": "x", "severity": "high"}, "severity"),
    ],
)
def test_a_bad_incident_is_refused_naming_the_field_and_nothing_is_stored(api, body, field):
    catalog_with_orders(api)
    status, answer = api.call("POST", "/incidents", json=body)
    assert status == 400 and answer["error"]["field"] == field
    assert api.call("GET", "/incidents")[1]["incidents"] == []


def test_an_unknown_incident_is_404_naming_the_id(api):
    status, body = api.call("POST", "/incidents/{incident_id}/notes",
                            {"incident_id": "20261128-1200-nope-abcdef"}, json={"text": "x"})
    assert status == 404 and body["error"]["field"] == "incident_id"


def test_status_lists_open_incidents_maintenance_and_routes(api):
    from freshet.core.windows import Maintenance, make_window

    window = make_window({"id": "vacuum", "start": "2026-11-28T11:00:00Z",
                          "end": "2026-11-28T13:00:00Z", "note": "VACUUM"}, "m")
    api.store.set_control({"maintenance": Maintenance((window,)).to_doc()})
    api.call("POST", "/incidents", json={"title": "Everything is slow"})
    body = api.call("GET", "/status")[1]
    assert body["maintenance"][0]["id"] == "vacuum" and body["maintenance"][0]["note"] == "VACUUM"
    assert body["incidents"][0]["title"] == "Everything is slow"
    assert body["routes"] == []


def test_one_dataset_and_the_list_agree_during_a_window_on_its_producing_job(api):
    from freshet.core.windows import Maintenance, make_window

    api.call("POST", "/jobs", json=JOB)
    producer = api.call("GET", "/jobs")[1]["jobs"][0]
    (key,) = producer["produces"]
    record_success(api.store, key, "r1", T0 - timedelta(hours=40), records=1)
    window = make_window({"id": "vacuum", "start": "2026-11-28T11:00:00Z",
                          "end": "2026-11-28T13:00:00Z",
                          "scope": {"jobs": [producer["id"]]}}, "m")
    api.store.set_control({"maintenance": Maintenance((window,)).to_doc()})
    listed = {d["key"]: d for d in api.call("GET", "/datasets")[1]["datasets"]}[key]
    one = api.call("GET", "/datasets/{key}", {"key": key})[1]["dataset"]
    assert listed["state"] == one["state"] == "maintenance"
    assert "excused: maintenance 'vacuum'" in one["reason"]


def test_a_manual_run_during_a_maintenance_window_is_refused_409(api):
    from freshet.core.windows import Maintenance, make_window

    api.call("POST", "/jobs", json=JOB)
    window = make_window({"id": "vacuum", "start": "2026-11-28T11:00:00Z",
                          "end": "2026-11-28T13:00:00Z"}, "m")
    api.store.set_control({"maintenance": Maintenance((window,)).to_doc()})
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})
    assert status == 409 and "maintenance 'vacuum'" in body["error"]["message"]
    assert api.queue.sent == []
