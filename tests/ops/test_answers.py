"""One table maps exceptions to answers (freshet.ops.answers), looked up by class along
the MRO; the HTTP layer and the CLI both use it, and Google's exceptions reach it only
as Freshet's own, translated at the adapters (freshet.gcp.errors)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from freshet.core.errors import (
    Conflict,
    Disabled,
    Forbidden,
    FreshetError,
    NoCredentials,
    NotFound,
    PermanentError,
    Rejected,
    ServiceError,
    Unavailable,
    ValidationError,
)
from freshet.gcp.errors import translate, translated, translates
from freshet.ops.answers import HttpError, UserError, answer_for, answers
from freshet.ops.auth import AuthError
from freshet.ops.cli import describe_error
from freshet.ops.config import ConfigError
from freshet.ops.web import error_for

ROOT = Path(__file__).resolve().parents[2]

# exception -> (HTTP status, HTTP field, CLI exit code, text the CLI line contains)
TABLE = [
    (HttpError(405, "method", "method PUT is not allowed"), 405, "method", 2, "PUT"),
    (AuthError(401, "no token"), 401, "Authorization", 2, "no token"),
    (AuthError(500, "FRESHET_AUDIENCE is not set"), 500, "Authorization", 2, "AUDIENCE"),
    (UserError("backfill JOB needs --from"), 400, None, 2, "backfill JOB needs --from"),
    (ValidationError("schedule.cron", "invalid cron"), 400, "schedule.cron", 2,
     "schedule.cron: invalid cron"),
    (NotFound("job", "ghost"), 404, "job_id", 2, "job 'ghost' not found"),
    (NotFound("run", "r1"), 404, "run_id", 2, "run 'r1' not found"),
    (NotFound("dataset", "d"), 404, "dataset", 2, "dataset 'd' not found"),
    (Disabled("manual actions are off"), 403, "control", 2, "manual actions are off"),
    (Conflict("job is archived"), 409, "status", 2, "job is archived"),
    (PermanentError("bad params"), 500, None, 2, "bad params"),
    (Unavailable("503 connect failed"), 503, None, 2, "cannot reach Google Cloud: 503"),
    (Forbidden("403 denied"), 500, None, 2, "not allowed by Google Cloud: 403 denied"),
    (NoCredentials("no Google Cloud credentials: run"), 500, None, 2,
     "no Google Cloud credentials"),
    (Rejected("400 bad"), 500, None, 2, "Google Cloud refused the request: 400 bad"),
    (KeyError("boom"), 500, None, 1, "internal error (KeyError"),
]


@pytest.mark.parametrize(("exc", "status", "field", "code", "line"), TABLE,
                         ids=[type(row[0]).__name__ for row in TABLE])
def test_each_exception_class_has_its_answer_for_http_and_cli(exc, status, field, code, line):
    answer = answer_for(exc)
    assert (answer.status, answer.field, answer.exit_code) == (status, field, code)
    assert line in answer.line and "\n" not in answer.line
    assert describe_error(exc) == (answer.line, code)


def test_a_subclass_gets_its_nearest_ancestors_answer():
    class LaneBusy(Conflict):
        pass

    class Quota(Unavailable):
        pass

    class Odd(FreshetError):
        pass

    assert answer_for(LaneBusy("busy")).status == 409
    assert answer_for(Quota("quota")).status == 503
    assert answer_for(Odd("odd")).status == 500 and answer_for(Odd("odd")).exit_code == 2
    # ConfigError is a ValidationError: 400 naming the field, its file:line on the CLI.
    config = ConfigError("p.yaml", 14, "jobs[1].schedule.cron", "invalid cron")
    assert (answer_for(config).status, answer_for(config).field) == (400,
                                                                      "jobs[1].schedule.cron")
    assert answer_for(config).line == "p.yaml:14: jobs[1].schedule.cron: invalid cron"


def test_every_class_in_the_table_is_an_exception_and_google_is_not_in_it():
    for cls in answers():
        assert issubclass(cls, BaseException)
        assert not cls.__module__.startswith("google")


def test_http_answers_the_status_and_names_the_field_without_detail_for_bugs():
    response = error_for(ValidationError("max_retries", "must be an integer"), "api")
    assert response.status_code == 400
    assert json.loads(response.data) == {"error": {"field": "max_retries",
                                                   "message": "must be an integer"}}
    response = error_for(NotFound("backfill", "b1"), "api")
    assert response.status_code == 404
    assert json.loads(response.data)["error"]["field"] == "backfill_id"
    response = error_for(HttpError(413, "body", "too big", {"X-Why": "size"}), "api")
    assert response.status_code == 413 and response.headers["X-Why"] == "size"
    for bug in (RuntimeError("secret detail"), Rejected("project p secret detail")):
        response = error_for(bug, "api")
        body = json.loads(response.data)
        assert response.status_code == 500 and "secret" not in response.get_data(True)
        assert body["error"] == {"field": None,
                                 "message": "internal error; see the function's logs"}
    assert error_for(Unavailable("down"), "run_task").status_code == 503


@pytest.mark.parametrize(("google", "ours"), [
    (gexc.ServiceUnavailable("down"), Unavailable),
    (gexc.DeadlineExceeded("slow"), Unavailable),
    (gexc.RetryError("gave up", cause=None), Unavailable),
    (gexc.TooManyRequests("429"), Unavailable),
    (gexc.PermissionDenied("no"), Forbidden),
    (gexc.Unauthenticated("who"), Forbidden),
    (auth_exc.RefreshError("expired"), Forbidden),
    (auth_exc.DefaultCredentialsError("none"), NoCredentials),
    (gexc.NotFound("queue"), Rejected),
    (gexc.InvalidArgument("too big"), Rejected),
])
def test_google_exceptions_are_translated_to_freshets(google, ours):
    assert type(translate(google)) is ours
    assert translate(ValueError("not google")) is None


class Adapter:
    """An adapter shaped like Store: a public method that calls another, and one that
    catches Google's class on purpose (like a compare-and-set that lost)."""

    def __init__(self, error: Exception):
        self.error = error

    def read(self):
        raise self.error

    def read_or_none(self):
        try:
            return self.read()
        except gexc.FailedPrecondition:
            return None

    def ours(self):
        raise NotFound("job", "j")


def test_only_the_outermost_adapter_call_translates():
    adapter = translates(Adapter)(gexc.FailedPrecondition("changed"))
    assert adapter.read_or_none() is None  # the inner call still saw Google's class
    with pytest.raises(Rejected) as caught:
        adapter.read()
    assert isinstance(caught.value.__cause__, gexc.FailedPrecondition)
    with pytest.raises(NotFound):  # Freshet's own errors pass as they are
        adapter.ours()
    assert translated(lambda: 7)() == 7
    with pytest.raises(ServiceError):
        translated(adapter.read)()
    assert adapter.read_or_none() is None  # the depth was reset after each call


def test_no_credentials_is_one_cli_line_never_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FIRESTORE_", "GOOGLE_", "CLOUDSDK_", "FRESHET_"))}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
               NO_GCE_CHECK="True", GCE_METADATA_HOST="127.0.0.1:9",
               GCE_METADATA_IP="127.0.0.1:9",
               PYTHONPATH=f"{ROOT / 'functions'}:{ROOT / 'infra'}")
    result = subprocess.run([sys.executable, "-m", "freshet.ops.cli", "jobs", "list"],
                            env=env, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == [lines[0]] and lines[0].startswith("freshet: error: no Google Cloud "
                                                       "credentials: run `gcloud auth")
