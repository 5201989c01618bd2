"""Parsing a Cloud Tasks delivery to run_task: a run's attempt, or a poll of a waiting
run (its body names the poll)."""

import re
from collections.abc import Mapping

from freshet.core.errors import ValidationError
from freshet.core.models import MAX_ATTEMPTS
from freshet.core.values import check_int

RETRY_COUNT_HEADER = "X-CloudTasks-TaskRetryCount"
# <job id>__<slot or manual key> (freshet.core.runs); anything else is not a task Freshet sent.
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}__[A-Za-z0-9]{1,40}$")
# Cloud Tasks counts a task's retries; a queue may allow unlimited ones, but a count past
# this is not a delivery Freshet can make sense of. (An attempt beyond the run's own
# allowance is a valid delivery, and a no-op: the claim decides that.)
MAX_RETRY_COUNT = 100_000
_COUNT = re.compile(r"^[0-9]{1,6}$")


def parse_delivery(headers: Mapping[str, str], body: dict) -> tuple[str, int]:
    """(run_id, attempt). The task's body names the attempt it was created for; each
    Cloud Tasks retry of that task adds one (X-CloudTasks-TaskRetryCount)."""
    run_id = body.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ValidationError("run_id", "must be a run id such as 'orders-sync__20261128T120000Z'")
    base = body.get("attempt", 1)
    # Freshet sends a task per attempt, and a run has at most MAX_ATTEMPTS of them.
    check_int(base, "attempt", 1, MAX_ATTEMPTS)
    raw = (headers.get(RETRY_COUNT_HEADER, "0") or "0").strip()
    if not _COUNT.match(raw) or int(raw) > MAX_RETRY_COUNT:
        raise ValidationError(RETRY_COUNT_HEADER, f"must be an integer from 0 to "
                              f"{MAX_RETRY_COUNT}, got {raw[:20]!r}")
    return run_id, base + int(raw)


MAX_POLLS = 1_000_000  # 168 h of 2-minute polls is ~5,000


def parse_poll(body: dict) -> tuple[str, int, int]:
    """(run_id, attempt, poll) of a poll task. Its retries (a timeout) poll again under
    the same number: the count does not add to the attempt."""
    run_id, attempt = parse_delivery({}, body)
    check_int(body.get("poll"), "poll", 1, MAX_POLLS)
    return run_id, attempt, body["poll"]
