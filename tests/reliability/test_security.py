"""Nobody gets in, and nothing secret gets out.

1. With FRESHET_AUTH=oidc, every entry point (as functions-framework serves it)
   refuses a request with no token, an expired one, one for another audience, one
   signed by an unknown key (401), and a valid token of a caller who is not allowed
   or whose email is unverified (403) — and such a request changes nothing. A valid
   token of the invoker / an allowed operator gets through (so the refusals are real).
2. A job's secret params never reach the page, status.json, the badges, the feed or
   the logs, even when a sync's error quotes them; no page carries a stack trace and
   no log carries a bearer token.
"""

import json
import logging
from pathlib import Path

import pytest

from freshet.core.errors import PermanentError
from freshet.core.settings import load_settings
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import Store
from freshet.loop import registry
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops.deps import reset_process_deps
from freshet.status.publish import publish_once
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job
from tests.ops.helpers import AUDIENCE, INVOKER, OPERATOR, CertServer, SigningKey
from tests.reliability.harness import dump

ROOT = Path(__file__).resolve().parents[2]
SECRET = "tok_SuperSecret_9f8e7d"
JOB = {"id": "orders", "kind": "noop", "schedule": {"cron": "*/15 * * * *"},
       "produces": ["sales.orders"]}
ENDPOINTS = [
    ("scheduler_tick", "POST", "/", None),
    ("run_task", "POST", "/", {"run_id": "orders__20261128T120000Z", "attempt": 1}),
    ("recover_stuck_runs", "POST", "/", None),
    ("publish_status", "POST", "/", None),
    ("api", "GET", "/jobs", None),
    ("api", "POST", "/jobs", JOB),
    ("api", "POST", "/jobs/orders/run", {}),
    ("api", "POST", "/jobs/orders/pause", None),
    ("api", "GET", "/runs", None),
    ("api", "GET", "/datasets", None),
    ("api", "GET", "/status", None),
    ("api", "PUT", "/control", {"paused_all": True}),
]


def reset():
    reset_process_deps()


@pytest.fixture(scope="module")
def oidc(firestore_emulator, tasks_emulator, tmp_path_factory):
    """Every entry point with FRESHET_AUTH=oidc, verifying against our own test key."""
    from functions_framework import create_app

    good, rogue = SigningKey("rel-key"), SigningKey("rel-key")  # same kid, other key
    server = CertServer([good])
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "FRESHET_AUTH": "oidc", "FRESHET_OIDC_CERTS_URL": server.url,
            "FRESHET_INVOKER_EMAIL": INVOKER, "FRESHET_ALLOWED_CALLERS": OPERATOR,
            "FRESHET_AUDIENCE": AUDIENCE, "FRESHET_TASKS_EMULATOR_HOST": tasks_emulator.address,
            "FRESHET_QUEUE": "security-no-such-queue",
            "FRESHET_SITE_DIR": str(tmp_path_factory.mktemp("site")),
        }.items():
            mp.setenv(key, value)
        reset()
        apps = {t: create_app(target=t, source=str(ROOT / "functions" / "main.py"))
                for t in {e[0] for e in ENDPOINTS}}
        yield apps, good, rogue
        reset()
    server.close()


TOKENS = {
    "no token": (None, 401),
    "expired": (lambda good, rogue: good.token(expires_in=-3600), 401),
    "wrong audience": (lambda good, rogue: good.token(audience="https://evil.example/api"), 401),
    "unknown key": (lambda good, rogue: rogue.token(), 401),
    "wrong caller": (lambda good, rogue: good.token(email="stranger@example.com"), 403),
    "unverified email": (lambda good, rogue: good.token(email_verified=False), 403),
}


def call(app, method, path, body, token, caplog=None):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return app.test_client().open(path, method=method, headers=headers,
                                  data=None if body is None else json.dumps(body),
                                  content_type="application/json")


@pytest.mark.parametrize("kind", list(TOKENS))
def test_every_endpoint_refuses_a_bad_token(oidc, db, kind, caplog):
    apps, good, rogue = oidc
    make, expected = TOKENS[kind]
    token = None if make is None else make(good, rogue)
    add_job(Store(db), "orders", next_run_at=T0)
    before = dump(db)
    for target, method, path, body in ENDPOINTS:
        response = call(apps[target], method, path, body, token)
        text = response.get_data(as_text=True)
        assert response.status_code == expected, (target, method, path, text)
        assert "Traceback" not in text and json.loads(text)["error"]["message"]
    assert dump(db) == before, "a refused request changed Firestore"
    if token is not None:
        assert token not in caplog.text


def test_a_valid_token_of_an_allowed_caller_gets_through(oidc, db, caplog):
    apps, good, _ = oidc
    for target, method, path, body in ENDPOINTS:
        token = good.token(email=OPERATOR if target == "api" else INVOKER)
        response = call(apps[target], method, path, body, token)
        assert response.status_code not in (401, 403), (target, path, response.get_data())
        assert token not in caplog.text


# -- secrets ---------------------------------------------------------------------------


@pytest.fixture
def leaky_sync():
    """An upstream that quotes the request URL, secret included, in its errors."""
    def leaky(ctx):
        url = f"https://api.example/v1/ads?token={ctx.params['token']}"
        if ctx.attempt == 1:
            raise ConnectionError(f"GET {url} timed out")
        raise PermanentError(f"GET {url} answered 401 Unauthorized")

    registry.sync("sec_leaky")(leaky)
    yield
    registry.unregister("sec_leaky")


def failing_secret_job(db):
    store, settings = Store(db), load_settings({}, auth_mode="local")
    add_job(store, "ads", kind="sec_leaky", produces=("meta.ads",),
            params={"token": SECRET, "account": "acme"}, secret_params=["token"])
    queue = RecordingQueue(settings)
    (run_id,) = tick_once(store, queue, now=T0, settings=settings).created
    for attempt in (1, 2):
        handle_one(store, queue, run_id, attempt, now=T0 + attempt * MIN, settings=settings)
    # Redacted before it is stored, so no output (page, api, logs) can show it.
    assert SECRET not in store.run(run_id).error and "[redacted]" in store.run(run_id).error
    return store, settings


def test_secret_params_never_reach_the_page_json_feed_or_badges(db, tmp_path, leaky_sync):
    store, settings = failing_secret_job(db)
    publish_once(store, LocalSink(tmp_path), now=T0 + 5 * MIN, settings=settings)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "status.json", "feed.xml"}
    for path in files:
        text = path.read_text(errors="replace")
        assert SECRET not in text, path
        assert "Traceback" not in text and 'File "/' not in text, path
    assert "api.example" in (tmp_path / "status.json").read_text()  # the error is shown


def test_secret_params_never_reach_the_logs(db, leaky_sync, caplog):
    caplog.set_level(logging.DEBUG)
    failing_secret_job(db)
    assert "api.example" in caplog.text
    assert SECRET not in caplog.text


def test_the_api_masks_secret_params_in_errors_too(db, leaky_sync, monkeypatch):
    from functions_framework import create_app

    failing_secret_job(db)
    monkeypatch.setenv("FRESHET_AUTH", "local")
    reset()
    try:
        client = create_app(target="api", source=str(ROOT / "functions" / "main.py")
                            ).test_client()
        for path in ("/jobs/ads", "/runs?job_id=ads", "/jobs", "/datasets/meta.ads"):
            text = client.get(path).get_data(as_text=True)
            assert SECRET not in text, path
    finally:
        reset()

