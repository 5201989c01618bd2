"""Logging for the functions: one JSON object per line on stdout, as Cloud Logging
reads them (severity, message, and `logging.googleapis.com/labels` with the run, job
and attempt of the current call), or plain text locally.

Without this, a Cloud Function's Python logs below WARNING go nowhere (the root logger
has no handler) and every line Logs Explorer shows is unlabelled text.
"""

import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime

from freshet.core.logcontext import current_labels, current_trace

# Cloud Logging takes entries up to 256 KB; a line this long is already unreadable.
MAX_MESSAGE_CHARS = 16 * 1024
MAX_TRACEBACK_CHARS = 16 * 1024
LABELS_KEY = "logging.googleapis.com/labels"
TRACE_KEY = "logging.googleapis.com/trace"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"
_MARK = "_freshet_handler"


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters cut]"


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON that Cloud Logging turns into a structured entry."""

    def format(self, record: logging.LogRecord) -> str:
        message = _cap(record.getMessage(), MAX_MESSAGE_CHARS)
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            message += "\n" + _cap(text, MAX_TRACEBACK_CHARS)
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
            SOURCE_KEY: {"file": record.pathname, "line": str(record.lineno),
                         "function": record.funcName},
        }
        labels = current_labels()
        if labels:
            entry[LABELS_KEY] = labels
        trace = current_trace()
        if trace:
            entry[TRACE_KEY] = trace
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Local runs: a readable line, the labels at the end."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = _cap(super().format(record), MAX_MESSAGE_CHARS + MAX_TRACEBACK_CHARS)
        labels = current_labels()
        return line + (" [" + " ".join(f"{k}={v}" for k, v in labels.items()) + "]"
                       if labels else "")


def setup_logging(env: Mapping[str, str] = os.environ) -> logging.Handler | None:
    """Install the handler on the root logger, once: JSON when FRESHET_LOG_FORMAT=json
    (deploy sets it) or behind Cloud Run (K_SERVICE), else text. In text mode a process
    that already has handlers (a test run) keeps them. Reads the environment itself, so
    that a bad setting elsewhere cannot stop the logs that would report it."""
    root = logging.getLogger()
    if any(getattr(h, _MARK, False) for h in root.handlers):
        return None
    json_mode = env.get("FRESHET_LOG_FORMAT") == "json" or bool(env.get("K_SERVICE"))
    if not json_mode and root.handlers:
        return None
    handler = logging.StreamHandler(sys.stdout if json_mode else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_mode else TextFormatter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler
