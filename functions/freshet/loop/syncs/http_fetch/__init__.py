"""`http_fetch`: GET a URL, keep the JSON or CSV body as a snapshot, count its records,
and read the time its data is current to. Params: params.py; runtime: sync.py; the
connection rules (the pipeline's `http_fetch:` policy, shared with notification
routes): freshet.core.egress and freshet.gcp.egress."""

from freshet.loop.syncs.base import Kind
from freshet.loop.syncs.http_fetch.params import check
from freshet.loop.syncs.http_fetch.sync import run

KIND = Kind("http_fetch", run=run, check=check)
