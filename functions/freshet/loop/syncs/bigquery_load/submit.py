"""What a `bigquery_load` run submits: its URIs rendered for the run's slot
({slot:%Y-%m-%d}, {interval_start:...}), the job id of run + attempt, the LoadJob."""

from datetime import datetime

from freshet.core.errors import PermanentError
from freshet.core.external import external_job_id, run_labels
from freshet.gcp.bigquery import LoadJob
from freshet.loop.syncs.bigquery_load.params import LoadParams


def render_uri(uri: str, slot: datetime | None, interval_start: datetime | None) -> str:
    try:
        return uri.format(slot=slot, interval_start=interval_start)
    except (TypeError, ValueError, AttributeError) as exc:
        raise PermanentError(f"source URI {uri!r} cannot be rendered for this run "
                             f"(slot {slot}, interval_start {interval_start}): {exc}") from None


def load_job(params: LoadParams, *, job: str, run_id: str, attempt: int,
             slot: datetime | None, interval_start: datetime | None) -> tuple[str, LoadJob]:
    return external_job_id(run_id, attempt), LoadJob(
        source_uris=tuple(render_uri(u, slot, interval_start) for u in params.source_uris),
        destination=params.destination, format=params.format, schema=params.schema,
        autodetect=params.autodetect, write_disposition=params.write_disposition,
        labels=run_labels(run_id, attempt, job), timeout=params.timeout)
