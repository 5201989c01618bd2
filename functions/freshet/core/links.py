"""Links into the Cloud console: pure functions of ids.

Every function logs with the labels run_id, job_id and attempt
(freshet.ops.logs), so one run's lines, across tick, run_task's attempts and
recovery, are one Logs Explorer query away.
"""

from urllib.parse import quote

CONSOLE = "https://console.cloud.google.com"
LOG_RETENTION = "P30D"  # Cloud Logging's default retention for _Default


def logs_query(run_id: str) -> str:
    return f'labels.run_id="{run_id}"'


def logs_url(project: str, run_id: str) -> str:
    """The run's log entries in Logs Explorer."""
    query = quote(logs_query(run_id), safe="")
    return (f"{CONSOLE}/logs/query;query={query};storageScope=project;"
            f"timeRange={LOG_RETENTION}?project={quote(project, safe='')}")
