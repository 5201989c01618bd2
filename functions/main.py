"""Cloud Functions entry points, and nothing else: each one hands its request to
freshet.ops.web.serve (authenticate, read the clock once, call the step, map errors)
with the step it stands for (freshet.ops.entries)."""

import functions_framework

from freshet.loop import plugins
from freshet.ops import entries
from freshet.ops.logs import setup_logging
from freshet.ops.web import serve

setup_logging()  # JSON lines for Cloud Logging, before anything logs
plugins.import_sync_modules(plugins.env_modules())


@functions_framework.http
def scheduler_tick(request):
    return serve(request, entries.scheduler_tick)


@functions_framework.http
def run_task(request):
    return serve(request, entries.run_task)


@functions_framework.http
def recover_stuck_runs(request):
    return serve(request, entries.recover_stuck_runs)


@functions_framework.http
def publish_status(request):
    return serve(request, entries.publish_status)


@functions_framework.http
def api(request):
    return serve(request, entries.api)
