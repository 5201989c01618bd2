"""The console without a browser: it binds loopback only, and a refusal from the API
(a real 403 from the deployed api's OIDC check) reads as a sentence."""

import threading

import flask
import pytest
from werkzeug.serving import make_server

from freshet.core.errors import ValidationError
from freshet.gcp.certs import CertCache
from freshet.gcp.store import Store
from freshet.ops import entries
from freshet.ops.cli import main
from freshet.ops.console import Answer, HttpApi, check_loopback, create_app, sentence
from freshet.ops.deps import Deps
from freshet.ops.web import serve
from tests.loop.helpers import RecordingQueue
from tests.ops.helpers import AUDIENCE, INVOKER, OPERATOR, CertServer, SigningKey
from tests.ops.test_api import JOB, SETTINGS


@pytest.mark.parametrize("host, bound", [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"),
                                         ("::1", "::1"), ("[::1]", "::1"),
                                         ("127.0.0.2", "127.0.0.2")])
def test_the_console_binds_a_loopback_address(host, bound):
    assert check_loopback(host) == bound


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com",
                                  "", "127.0.0.1 "])
def test_the_console_refuses_any_other_address(host):
    with pytest.raises(ValidationError) as exc:
        check_loopback(host)
    assert exc.value.field == "--host"


def test_freshet_console_refuses_a_public_bind_in_one_line_before_serving(capsys):
    code = main(["console", "--host", "0.0.0.0", "--port", "0"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == ("freshet: error: --host: 0.0.0.0 is not a loopback address; the "
                           "console acts with your credentials, so it serves on 127.0.0.1 "
                           "(or ::1) only. To share it, host it behind IAP: docs/console.md")


@pytest.mark.parametrize("answer, doing, expected", [
    (Answer(403, {"error": {"field": "Authorization", "message": "caller x is not allowed"}}),
     "run jobs", "You may view but not run jobs: ask for the operator role (docs/console.md, "
                 "“Who may do what”) (Google Cloud said: caller x is not allowed)."),
    (Answer(403, {"error": {"field": "iam", "message": "Missing or insufficient permissions."}}),
     "view this pipeline", "You may not view this pipeline: ask for the viewer role on this "
                           "pipeline's project (docs/console.md, “Who may do what”) (Google "
                           "Cloud said: Missing or insufficient permissions.)."),
    (Answer(403, {"error": {"field": "control", "message": "manual actions are off"}}),
     "run jobs", "Not done: a kill switch is on (manual actions are off). Nothing was changed."),
    (Answer(400, {"error": {"field": "reason", "message": "is required"}}), "pause jobs",
     "Not done: reason: is required"),
    (Answer(409, {"error": {"field": "status", "message": "job 'x' is archived"}}), "run jobs",
     "Not done: job 'x' is archived"),
    (Answer(404, {"error": {"field": "job_id", "message": "job 'x' not found"}}), "view this job",
     "Not found: job 'x' not found"),
])
def test_a_refusal_is_a_sentence(answer, doing, expected):
    assert sentence(answer, doing) == expected


@pytest.fixture()
def deployed_api(db, monkeypatch):
    """The api function with real OIDC checks, served over HTTP on a free port; the
    operator may call it, a viewer (a valid token, not in the allowed callers) may not."""
    monkeypatch.setenv("FRESHET_ALLOWED_CALLERS", OPERATOR)
    key = SigningKey("console-key")
    certs = CertServer([key])
    deps = Deps(store=Store(db), task_queue=RecordingQueue(SETTINGS), settings=SETTINGS,
                certs=CertCache(certs.url))
    app = flask.Flask("api")
    app.add_url_rule("/<path:path>", "api", lambda path: serve(flask.request, entries.api, deps),
                     methods=["GET", "POST", "PUT"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", key, deps
    server.shutdown()
    server.server_close()
    certs.close()


def test_a_viewer_who_presses_run_now_reads_why_not(deployed_api):
    url, key, deps = deployed_api
    operator = HttpApi(url, lambda: key.token(email=OPERATOR, audience=AUDIENCE))
    assert operator.call("POST", "/jobs", body=JOB).status == 201
    viewer = HttpApi(url, lambda: key.token(email="viewer@example.com", audience=AUDIENCE))
    app = create_app(viewer, port=8765, csrf_token="t")
    response = app.test_client().post("/jobs/orders/run", data={"csrf": "t", "key": "k"},
                                      headers={"Host": "127.0.0.1:8765",
                                               "Origin": "http://127.0.0.1:8765"})
    assert response.status_code == 303
    page = app.test_client().get(response.headers["Location"],
                                 headers={"Host": "127.0.0.1:8765"})
    text = page.get_data(as_text=True)
    assert "You may view but not run jobs: ask for the operator role" in text
    # this api lets no one but its operators read either, and the job page says so
    assert "You may not view this job: ask for the viewer role" in text
    assert deps.store.recent_runs(job_id="orders") == []
    assert INVOKER  # the invoker is allowed too; the viewer is neither


@pytest.mark.parametrize("back, location", [
    ("/jobs/orders", "/jobs/orders?msg="), ("//evil.example/x", "/runs?msg="),
    ("/\\evil.example", "/runs?msg="), ("https://evil.example", "/runs?msg="),
    ("/jobs/orders?x=1", "/runs?msg=")])
def test_a_cancel_goes_back_only_to_a_console_path(back, location):
    class Refusing:  # every call refused: only where the answer goes back matters here
        caller = "t"

        def call(self, method, path, query=None, body=None):
            return Answer(404, {"error": {"field": "run_id", "message": "not found"}})

    app = create_app(Refusing(), port=8765, csrf_token="t")
    response = app.test_client().post("/runs/x/cancel", data={"csrf": "t", "back": back},
                                      headers={"Host": "127.0.0.1:8765",
                                               "Origin": "http://127.0.0.1:8765"})
    assert response.status_code == 303 and response.headers["Location"].startswith(location)


def test_the_console_builds_its_in_process_api_from_the_environment(firestore_emulator,
                                                                      tasks_emulator):
    """`freshet console` without --api (and the demo's console) acts in-process through
    Deps made from the environment, as every CLI command does."""
    from freshet.ops.console import InProcessApi, build_api

    assert isinstance(build_api(None), InProcessApi)
