"""Parsing a Cloud Tasks delivery to run_task."""

import re
from collections.abc import Mapping

from freshet.core.errors import ValidationError

RETRY_COUNT_HEADER = "X-CloudTasks-TaskRetryCount"
# <job id>__<slot or manual key> (freshet.core.runs); anything else is not a task Freshet sent.
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}__[A-Za-z0-9]{1,40}$")


def parse_delivery(headers: Mapping[str, str], body: dict) -> tuple[str, int]:
    """(run_id, attempt). The task's body names the attempt it was created for; each
    Cloud Tasks retry of that task adds one (X-CloudTasks-TaskRetryCount)."""
    run_id = body.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ValidationError("run_id", "must be a run id such as 'orders-sync__20261128T120000Z'")
    base = body.get("attempt", 1)
    if isinstance(base, bool) or not isinstance(base, int) or base < 1:
        raise ValidationError("attempt", "must be a positive integer")
    raw = headers.get(RETRY_COUNT_HEADER, "0") or "0"
    try:
        retries = int(raw)
    except ValueError:
        raise ValidationError(RETRY_COUNT_HEADER, f"must be an integer, got {raw!r}") from None
    if retries < 0:
        raise ValidationError(RETRY_COUNT_HEADER, "must not be negative")
    return run_id, base + retries
