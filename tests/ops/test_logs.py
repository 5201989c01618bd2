"""The functions' logs: JSON lines Cloud Logging turns into structured entries, labelled
with the run, job and attempt of the call, capped, never more than one line each."""

import io
import json
import logging

import pytest

from freshet.core import logcontext
from freshet.core.links import logs_url
from freshet.ops import logs


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("freshet.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def entries(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_severity_message_and_the_calls_labels(json_log):
    logger, stream = json_log
    logger.info("outside any call")
    with logcontext.labels(run_id="orders__20261128T120000Z", job_id="orders", attempt=2):
        logger.warning("attempt failed:\nline two")
        with logcontext.trace("projects/p/traces/abc"):
            logger.error("with a trace")
    first, second, third = entries(stream)
    assert first["severity"] == "INFO" and "logging.googleapis.com/labels" not in first
    assert second["severity"] == "WARNING" and second["message"] == "attempt failed:\nline two"
    assert second["logging.googleapis.com/labels"] == {
        "run_id": "orders__20261128T120000Z", "job_id": "orders", "attempt": "2"}
    assert third["logging.googleapis.com/trace"] == "projects/p/traces/abc"
    assert "logging.googleapis.com/trace" not in second
    assert second["logging.googleapis.com/sourceLocation"]["function"] == \
        "test_each_record_is_one_json_line_with_severity_message_and_the_calls_labels"
    assert len(stream.getvalue().splitlines()) == 3


def test_labels_end_with_the_call(json_log):
    logger, stream = json_log
    with logcontext.labels(run_id="a__1"):
        pass
    logger.info("after")
    assert "logging.googleapis.com/labels" not in entries(stream)[0]


def test_huge_messages_and_tracebacks_are_cut(json_log):
    logger, stream = json_log
    try:
        raise ValueError("x" * 100_000)
    except ValueError:
        logger.exception("y" * 100_000)
    (entry,) = entries(stream)
    assert len(entry["message"]) < logs.MAX_MESSAGE_CHARS + logs.MAX_TRACEBACK_CHARS + 200
    assert "more characters cut" in entry["message"]
    assert entry["severity"] == "ERROR"


def test_setup_installs_the_json_handler_once_when_deployed():
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        handler = logs.setup_logging({"FRESHET_LOG_FORMAT": "json"})
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert logs.setup_logging({"FRESHET_LOG_FORMAT": "json"}) is None  # once
    finally:
        root.handlers[:] = before
    # Behind Cloud Run (K_SERVICE) the format is JSON whatever FRESHET_LOG_FORMAT says.
    try:
        assert isinstance(logs.setup_logging({"K_SERVICE": "api"}).formatter,
                          logs.JsonFormatter)
    finally:
        root.handlers[:] = before


def test_a_trace_header_becomes_the_entrys_trace():
    assert logcontext.trace_name("0af7651916cd43dd8448eb211c80319c/1;o=1", "p") == \
        "projects/p/traces/0af7651916cd43dd8448eb211c80319c"
    assert logcontext.trace_name(None, "p") is None
    assert logcontext.trace_name("../../x/1", "p") is None


def test_the_logs_explorer_link_filters_one_run():
    url = logs_url("my-project", "orders__20261128T120000Z")
    assert url == ("https://console.cloud.google.com/logs/query;query=labels.run_id%3D%22"
                   "orders__20261128T120000Z%22;storageScope=project;timeRange=P30D"
                   "?project=my-project")
