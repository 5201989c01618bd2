"""The `bigquery_load` kind: params.py (its schema), submit.py (the load job), sync.py
(start it, and read its end); the run waits on the job meanwhile."""

from freshet.loop.syncs.base import Kind
from freshet.loop.syncs.bigquery_load.params import check
from freshet.loop.syncs.bigquery_load.sync import finish, run

KIND = Kind("bigquery_load", run=run, check=lambda params, context: check(params),
            finish=finish)
