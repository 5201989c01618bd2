"""gcloud-tasks-emulator, as started by freshet_local.emulators, really delivers HTTP tasks."""

from __future__ import annotations

import os
import queue
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.cloud import tasks_v2

from freshet_local import emulators

PARENT = "projects/demo-freshet/locations/europe-west1"


class Receiver:
    """A tiny HTTP server recording the requests it gets; fails the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: queue.Queue[dict] = queue.Queue()
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # urllib (the emulator's client) re-capitalises names: compare lower-case.
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.put({"path": self.path, "headers": headers, "body": body})
                fail = receiver.fail_first > 0
                receiver.fail_first -= 1
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 10.0) -> dict:
        return self.requests.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_queue(client: tasks_v2.CloudTasksClient) -> str:
    name = f"{PARENT}/queues/q-{uuid.uuid4().hex[:8]}"
    client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    return name


def http_task(url: str, body: bytes = b"{}") -> tasks_v2.Task:
    return tasks_v2.Task(http_request=tasks_v2.HttpRequest(
        http_method=tasks_v2.HttpMethod.POST, url=url, body=body,
        headers={"Content-Type": "application/json"}))


def test_http_task_is_delivered_with_cloud_tasks_headers(tasks_emulator, receiver):
    client = emulators.tasks_client(tasks_emulator.address)
    queue_name = make_queue(client)
    assert queue_name in [q.name for q in client.list_queues(parent=PARENT)]
    task = client.create_task(parent=queue_name,
                              task=http_task(f"{receiver.url}/run_task", b'{"run": 1}'))
    got = receiver.next()
    assert got["path"] == "/run_task" and got["body"] == b'{"run": 1}'
    headers = got["headers"]
    assert headers["x-cloudtasks-taskname"] == task.name.rsplit("/", 1)[-1]
    assert headers["x-cloudtasks-taskretrycount"] == "0"
    assert headers["x-cloudtasks-queuename"].endswith(queue_name.rsplit("/", 1)[-1])
    assert headers["content-type"] == "application/json"


def test_failed_task_is_retried_with_an_increasing_retry_count(tasks_emulator):
    r = Receiver(fail_first=2)
    try:
        client = emulators.tasks_client(tasks_emulator.address)
        client.create_task(parent=make_queue(client), task=http_task(f"{r.url}/x"))
        counts = [r.next()["headers"]["x-cloudtasks-taskretrycount"] for _ in range(3)]
        assert counts == ["0", "1", "2"]
    finally:
        r.close()


def test_max_retries_and_precreated_queues():
    queue_name = f"{PARENT}/queues/pre"
    with emulators.start_tasks(max_retries=1, queues=[queue_name]) as emu:
        r = Receiver(fail_first=100)
        try:
            client = emulators.tasks_client(emu.address)
            assert [q.name for q in client.list_queues(parent=PARENT)] == [queue_name]
            client.create_task(parent=queue_name, task=http_task(f"{r.url}/x"))
            r.next()
            r.next()  # the one retry
            with pytest.raises(queue.Empty):
                r.next(timeout=1.0)
        finally:
            r.close()


def test_listens_only_on_the_requested_host_and_leaves_no_process():
    with emulators.start_tasks(host="127.0.0.1") as emu:
        assert emu.host == "127.0.0.1" and emu.port > 0
        pid = emu.pid
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_from_env_reuses_a_running_emulator(tasks_emulator, monkeypatch):
    monkeypatch.setenv(emulators.TASKS_ENV, tasks_emulator.address)
    reused = emulators.tasks_from_env()
    assert reused is not None and not reused.owned and reused.address == tasks_emulator.address
    reused.stop()  # must not stop the real one
    client = emulators.tasks_client(tasks_emulator.address)
    list(client.list_queues(parent=PARENT))
