"""The `cloud_run_job` kind: params.py (its schema), submit.py (the overrides), sync.py
(run the existing job, and read its end); the run waits on the execution meanwhile."""

from freshet.loop.syncs.base import Kind
from freshet.loop.syncs.cloud_run_job.params import check
from freshet.loop.syncs.cloud_run_job.sync import finish, run

KIND = Kind("cloud_run_job", run=run, check=lambda params, context: check(params),
            finish=finish)
