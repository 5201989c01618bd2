"""The `bigquery_query` kind: params.py (its schema), submit.py (the job it submits),
sync.py (start it, and read its end); the run waits on the job meanwhile."""

from freshet.loop.syncs.base import Kind
from freshet.loop.syncs.bigquery_query.params import check
from freshet.loop.syncs.bigquery_query.sync import finish, run

KIND = Kind("bigquery_query", run=run, check=lambda params, context: check(params),
            finish=finish)
