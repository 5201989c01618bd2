"""Property-based fuzzing of every HTTP entry point, as functions-framework serves them
(FRESHET_AUTH=local: the fuzzer is an authenticated caller, the worst case).

For any method, path, query, headers and body: no 5xx, no traceback in the answer,
an error is JSON naming what was wrong, and a rejected request changes nothing in
Firestore (every collection is compared before and after)."""

import json
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from freshet.core.models import new_job
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from freshet.ops.deps import reset_process_deps
from tests.reliability.harness import dump

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ("scheduler_tick", "run_task", "recover_stuck_runs", "publish_status", "api")
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HOSTILE = st.sampled_from([
    "", ".", "..", "__x__", "a/b", "%2F", "<script>alert(1)</script>", "' OR 1=1 --",
    "\x00", "\u202e", "{{7*7}}", "${jndi:ldap://x}", "a" * 2000, "-1", "1e999", "null",
    "true", "[]", "{}", "orders", "sales.orders", "orders__20261128T120000Z",
])
TEXT = st.one_of(HOSTILE, st.text(max_size=40))
# Issue 12's classes: what JSON cannot carry, what Firestore cannot store, what the model
# has no room for. Python's json reads all of these; each must be a 400 naming a field.
RAW = st.sampled_from([
    "NaN", "Infinity", "-Infinity", str(2**63), str(-(2**63) - 1), str(2**64), "1e400",
    '"\\ud800"', "[[1]]", '{"": 1}', '{"__name__": 1}', "[" * 40 + "1" + "]" * 40,
    "9" * 5000, "-0", "1.5e308", '"' + "x" * 60_000 + '"',
])
RETRY = st.sampled_from(["18446744073709551616", "9223372036854775808", "100001", "1_0",
                         "\u0663", "-1", " 7 ", "0x10", "1e3", ""])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12)


@pytest.fixture
def clients(db, tasks_emulator, monkeypatch, tmp_path):
    from functions_framework import create_app

    monkeypatch.setenv("FRESHET_AUTH", "local")
    monkeypatch.setenv("FRESHET_SITE_DIR", str(tmp_path / "public"))
    monkeypatch.setenv("FRESHET_TASKS_EMULATOR_HOST", tasks_emulator.address)
    monkeypatch.setenv("FRESHET_QUEUE", "fuzz-no-such-queue")  # nothing is ever delivered

    def reset():
        reset_process_deps()

    reset()
    store = Store(db)
    job = new_job(id="orders", kind="noop", schedule={"cron": "0 3 * * *"},
                  produces=["sales.orders"], params={"token": "tok_secret"},
                  secret_params=["token"])
    job.next_run_at = utcnow() + timedelta(days=1)  # nothing due: ticks change only heartbeats
    store.put_job(job)
    apps = {t: create_app(target=t, source=str(ROOT / "functions" / "main.py")).test_client()
            for t in ENTRY_POINTS}
    yield apps, db
    reset()


def request_strategy(target: str):
    api_paths = st.sampled_from([
        "/jobs", "/jobs/{}", "/jobs/{}/run", "/jobs/{}/pause", "/jobs/{}/resume",
        "/jobs/{}/archive", "/runs", "/runs/{}", "/datasets", "/datasets/{}", "/status",
        "/control", "/{}", "/jobs/{}/{}"])
    path = st.builds(lambda template, a, b: template.format(
        urllib.parse.quote(a, safe=""), urllib.parse.quote(b, safe="")), api_paths, TEXT, TEXT)
    delivery = st.fixed_dictionaries({"run_id": TEXT, "attempt": st.integers(-2, 60) | JSON})
    raw_job = st.builds(lambda k, v: '{"id": "fz", "kind": "noop", "schedule": {"cron": '
                        f'"* * * * *"}}, "params": {{{json.dumps(k)}: {v}}}}}', TEXT, RAW)
    raw_delivery = st.builds(lambda v: '{"run_id": "orders__20261128T120000Z", '
                             f'"attempt": {v}}}', RAW | st.sampled_from(
                                 [str(2**63), str(2**64 + 1), "52", "0", "1.0"]))
    raw_control = st.builds(lambda v: f'{{"disabled_kinds": {v}, "reason": {v}}}', RAW)
    body = st.one_of(st.none(), JSON.map(json.dumps), st.binary(max_size=64),
                     delivery.map(json.dumps), delivery.map(json.dumps),
                     raw_job, raw_delivery, raw_control,
                     st.fixed_dictionaries({}, optional={
                         "id": TEXT, "kind": TEXT, "schedule": JSON, "params": JSON,
                         "produces": JSON, "max_retries": JSON, "secret_params": JSON,
                         "disabled_kinds": JSON, "paused_all": JSON, "full": JSON,
                         "idempotency_key": JSON, "trigger": JSON, "max_lateness": JSON,
                         "eta": JSON, "from": JSON, "to": JSON}).map(json.dumps))
    return st.fixed_dictionaries({
        "target": st.just(target),
        "method": st.sampled_from(["POST", "GET"] * 3 + ["PUT", "DELETE", "PATCH"]),
        "path": path,
        "query": st.dictionaries(TEXT, TEXT, max_size=3),
        "retry": (TEXT | RETRY).map(lambda t: t.replace("\r", " ").replace("\n", " ")),
        "body": body,
    })


def state(db) -> dict:
    """Everything in Firestore, minus the heartbeat an accepted tick/sweep writes."""
    found = dump(db)
    found["settings"] = [(i, d) for i, d in found["settings"] if i != "heartbeat"]
    return found


@pytest.mark.parametrize("target", ENTRY_POINTS)
def test_no_request_gets_a_5xx_a_traceback_or_changes_state_when_rejected(clients, target):
    fuzz_one_entry_point(clients, target)


def fuzz_one_entry_point(clients, target):
    @FUZZ
    @given(req=request_strategy(target))
    def check(req):
        send(clients, req)

    check()


def send(clients, req):
    apps, db = clients
    before = state(db)
    client = apps[req["target"]]
    path = req["path"] if req["target"] == "api" else "/"
    response = client.open(
        path, method=req["method"], query_string=req["query"], data=req["body"],
        headers={"Content-Type": "application/json",
                 "X-CloudTasks-TaskRetryCount": req["retry"].encode("utf-8", "replace")
                 .decode("latin-1")})
    text = response.get_data(as_text=True)
    event(f"{req['target']} {response.status_code}")
    assert response.status_code < 500, (response.status_code, text[:500])
    assert "Traceback" not in text and 'File "' not in text
    if response.status_code >= 400:
        assert json.loads(text)["error"]["message"]
        assert state(db) == before, "a rejected request changed Firestore"
    return response


def test_run_task_rejects_a_run_id_that_is_not_a_document_id(clients):
    apps, _ = clients
    response = apps["run_task"].post("/", json={"run_id": "a/b", "attempt": 1})
    assert response.status_code == 400


# -- issue 20 §5: extreme and non-ASCII dates and durations, on every route that reads one --

EXTREME_VALUE = st.one_of(
    st.sampled_from([
        "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z", "2201-01-01T00:00:00Z", "２０２６-11-28T09:00:00Z",
        "2026-11-28T0٩:00:00Z", "999999999d", "1²h", "٣h", "99999999999999d", "99999999999d",
        "9" * 400 + "s", "-1h", "0s", "nan", "inf", "* * * * *", "0 0 31 2 *", "٣ * * * *",
        "", " "]),
    st.integers(-(10**20), 10**20), st.floats(allow_nan=False), st.booleans(), st.none(),
    st.from_regex(r"[0-9²³٠-٩０-９]{1,22}[smhdw]", fullmatch=True),
    st.builds(lambda y, rest: f"{y:04d}{rest}", st.integers(0, 9999),
              st.sampled_from(["-01-01T00:00:00Z", "-12-31T23:59:59-05:00",
                               "-06-15T12:00:00+14:00"])),
    st.text(max_size=20))
GOOD_FROM, GOOD_TO = "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"
DATED_BODIES = [
    ("/jobs", lambda v: {"id": "fz", "kind": "noop", "schedule": {"run_at": v}}),
    ("/jobs", lambda v: {"id": "fz", "kind": "noop", "schedule": {"cron": v}}),
    ("/jobs", lambda v: {"id": "fz", "kind": "noop", "schedule": {"cron": "0 3 * * *"},
                         "max_lateness": v}),
    ("/backfills", lambda v: {"job_id": "orders", "from": v, "to": GOOD_TO, "dry_run": True}),
    ("/backfills", lambda v: {"job_id": "orders", "from": GOOD_FROM, "to": v}),
    ("/backfills", lambda v: {"job_id": "orders", "from": GOOD_FROM, "to": GOOD_TO,
                              "max_parallel": v, "dry_run": True}),
    ("/incidents", lambda v: {"title": "Late load", "eta": v}),
    ("/incidents/{incident}/notes", lambda v: {"text": "still late", "eta": v}),
]


def test_extreme_dates_and_durations_get_a_4xx_naming_the_field_never_a_500(clients):
    apps, _ = clients
    opened = apps["api"].post("/incidents", json={"title": "Fuzzed"}).get_json()
    incident = opened["incident"]["id"]

    @FUZZ
    @given(which=st.integers(0, len(DATED_BODIES) - 1), value=EXTREME_VALUE)
    def check(which, value):
        path, body = DATED_BODIES[which]
        req = {"target": "api", "method": "POST", "path": path.format(incident=incident),
               "query": {}, "retry": "", "body": json.dumps(body(value))}
        answer = send(clients, req)
        if answer.status_code >= 400:
            assert answer.get_json()["error"]["field"]

    check()
