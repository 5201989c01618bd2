"""The one module that talks to Cloud Tasks (or, locally, gcloud-tasks-emulator).

Task names are deterministic and start with a hash (Google's advice: sequential
prefixes make hot spots), so a retried enqueue of the same dispatch is refused
with ALREADY_EXISTS by Cloud Tasks. The emulator does not dedupe names; Freshet's
exactly-once rests on the run document, not on the task name.

Two kinds of task: run deliveries for run_task, on the pool's queue that the run's
job hashes to (`dispatch_shards` queues per pool, freshet.core.herd), and claim
shards for the claim handler (scheduler_tick with a ShardTask body), on the pool's
claims queue.
"""

import contextlib
import json
import threading
from datetime import datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, timestamp_pb2

from freshet.core import herd
from freshet.core.herd import ShardTask
from freshet.core.runs import job_of_run, poll_task_id, task_id
from freshet.core.settings import Settings
from freshet.core.specs import QueueSpec
from freshet.gcp.errors import translates

RUN_TASK_CONTENT_TYPE = "application/json"


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


@translates
class TaskQueue:
    """Enqueues run deliveries for run_task, and manages queues for `apply`."""

    def __init__(self, settings: Settings, client: tasks_v2.CloudTasksClient | None = None):
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()
        self.created = 0

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def location_path(self) -> str:
        return f"projects/{self.settings.project}/locations/{self.settings.region}"

    def queue_path(self, name: str | None = None) -> str:
        return f"{self.location_path()}/queues/{name or self.settings.queue}"

    def run_queue(self, job_id: str | None, queue: str | None = None) -> str:
        """The queue a run goes to: its pool's own queue (issue 15's pools), or, for the
        default pool, the one of its `dispatch_shards` queues the job hashes to."""
        if queue and queue != self.settings.queue:
            return queue
        return herd.dispatch_queue(self.settings.queue, self.settings.dispatch_shards,
                                   job_id or "")

    @property
    def fans_out(self) -> bool:
        """Claim shards need the claim handler's URL (deploy sets FRESHET_CLAIM_URL)."""
        return bool(self.settings.claim_url)

    def _http_task(self, queue: str, name: str, url: str, body: dict, deadline_s: float,
                   schedule_time: datetime | None = None) -> tasks_v2.Task:
        """`deadline_s`: how long Cloud Tasks waits for the function (its timeout covers it)."""
        request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST, url=url,
            headers={"Content-Type": RUN_TASK_CONTENT_TYPE}, body=json.dumps(body).encode(),
        )
        if self.settings.invoker_email:
            request.oidc_token = tasks_v2.OidcToken(
                service_account_email=self.settings.invoker_email,
                audience=url,  # each function checks its own URL
            )
        task = tasks_v2.Task(name=f"{self.queue_path(queue)}/tasks/{name}", http_request=request,
                             dispatch_deadline=_duration(deadline_s))
        if schedule_time is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime(schedule_time)
            task.schedule_time = ts
        return task

    def build_task(self, run_id: str, attempt: int, *, dispatch: int = 0,
                   schedule_time: datetime | None = None, queue: str | None = None,
                   job_id: str | None = None) -> tasks_v2.Task:
        return self._http_task(self.run_queue(job_id or job_of_run(run_id), queue),
                               task_id(run_id, attempt, dispatch), self.settings.run_task_url,
                               {"run_id": run_id, "attempt": attempt},
                               self.settings.dispatch_deadline_s, schedule_time)

    def build_poll(self, run_id: str, attempt: int, poll: int, *,
                   schedule_time: datetime | None = None, queue: str | None = None,
                   job_id: str | None = None) -> tasks_v2.Task:
        """A poll of a waiting run's engine, to run_task (its body names the poll)."""
        return self._http_task(self.run_queue(job_id or job_of_run(run_id), queue),
                               poll_task_id(run_id, attempt, poll), self.settings.run_task_url,
                               {"run_id": run_id, "attempt": attempt, "poll": poll},
                               self.settings.dispatch_deadline_s, schedule_time)

    def build_claim(self, shard: ShardTask) -> tasks_v2.Task:
        # A handler stops claiming after the tick's budget (within the tick's timeout).
        deadline = min(max(self.settings.tick_budget_s + 10, 15), 1800)
        return self._http_task(herd.claims_queue(self.settings.queue), shard.task_id(),
                               self.settings.claim_url or "", shard.to_json(), deadline)

    def _create(self, task: tasks_v2.Task) -> str:
        """Create the task; an ALREADY_EXISTS answer means it was created before: fine."""
        parent = task.name.rsplit("/tasks/", 1)[0]
        with contextlib.suppress(gexc.AlreadyExists):
            self.client.create_task(parent=parent, task=task)
        self.created += 1
        return task.name

    def enqueue(self, run_id: str, attempt: int, *, dispatch: int = 0,
                schedule_time: datetime | None = None, queue: str | None = None,
                job_id: str | None = None) -> str:
        """A run delivery, on its pool's queue (`queue`, the run's; None: the default
        pool, on the dispatch shard its job hashes to)."""
        return self._create(self.build_task(run_id, attempt, dispatch=dispatch,
                                            schedule_time=schedule_time, queue=queue,
                                            job_id=job_id))

    def enqueue_poll(self, run_id: str, attempt: int, poll: int, *,
                     schedule_time: datetime | None = None, queue: str | None = None,
                     job_id: str | None = None) -> str:
        """A poll of a waiting run, on the queue its deliveries take."""
        return self._create(self.build_poll(run_id, attempt, poll, schedule_time=schedule_time,
                                            queue=queue, job_id=job_id))

    def enqueue_claim(self, shard: ShardTask) -> str:
        """A claim shard for the claim handler."""
        return self._create(self.build_claim(shard))

    # -- queue management (apply) --------------------------------------------

    def build_queue(self, spec: QueueSpec) -> tasks_v2.Queue:
        return tasks_v2.Queue(
            name=self.queue_path(spec.name),
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=spec.max_dispatches_per_second,
                max_concurrent_dispatches=spec.max_concurrent_dispatches,
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=spec.max_attempts,
                min_backoff=_duration(spec.min_backoff_s),
                max_backoff=_duration(spec.max_backoff_s),
                max_doublings=spec.max_doublings,
            ),
        )

    def queues(self) -> dict[str, tasks_v2.Queue]:
        """The location's queues by short name. Listing rather than get_queue:
        gcloud-tasks-emulator answers UNKNOWN, not NOT_FOUND, for a queue it lacks."""
        found = self.client.list_queues(parent=self.location_path())
        return {q.name.rsplit("/", 1)[-1]: q for q in found}

    def queue_changes(self, spec: QueueSpec, current: tasks_v2.Queue) -> list[str]:
        """The configured parts of `current` that differ from `spec`."""
        return changed_queue_fields(current, self.build_queue(spec))

    def create_queue(self, spec: QueueSpec) -> None:
        self.client.create_queue(parent=self.location_path(), queue=self.build_queue(spec))

    def update_queue(self, spec: QueueSpec) -> None:
        self.client.update_queue(queue=self.build_queue(spec))

    def queue_names(self) -> set[str]:
        return set(self.queues())

    def queue_facts(self, name: str) -> dict | None:
        """For `freshet doctor`: the queue's state and who may add tasks (None: missing)."""
        queue = self.queues().get(name)
        if queue is None:
            return None
        policy = self.client.get_iam_policy(resource=self.queue_path(name))
        enqueuers = {m for b in policy.bindings if b.role == "roles/cloudtasks.enqueuer"
                     for m in b.members}
        return {"state": tasks_v2.Queue.State(queue.state).name, "enqueuers": enqueuers}

    def create_or_update_queue(self, spec: QueueSpec) -> str:
        """Returns 'created', 'updated' or 'unchanged'."""
        current = self.queues().get(spec.name)
        if current is None:
            self.create_queue(spec)
            return "created"
        if not self.queue_changes(spec, current):
            return "unchanged"
        self.update_queue(spec)
        return "updated"


# The queue fields Freshet sets. Cloud Tasks answers with more: rate_limits.max_burst_size
# is output-only, retry_config.max_retry_duration has a server default, and `state`,
# `purge_time` are its own. Comparing whole messages would never find "no changes".
MANAGED_QUEUE_FIELDS = (
    ("rate_limits", "max_dispatches_per_second"),
    ("rate_limits", "max_concurrent_dispatches"),
    ("retry_config", "max_attempts"),
    ("retry_config", "min_backoff"),
    ("retry_config", "max_backoff"),
    ("retry_config", "max_doublings"),
)


def changed_queue_fields(current: tasks_v2.Queue, wanted: tasks_v2.Queue) -> list[str]:
    """Pure: the managed fields (`rate_limits.max_burst_size` style) that differ."""
    changed = []
    for group, name in MANAGED_QUEUE_FIELDS:
        have = getattr(getattr(current, group), name)
        want = getattr(getattr(wanted, group), name)
        if not (abs(have - want) < 1e-9 if isinstance(want, float) else have == want):
            changed.append(f"{group}.{name}")
    return changed


def make_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (
            CloudTasksGrpcTransport,
        )

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()
