"""The Firestore behaviours Freshet's correctness stands on, checked on Google's emulator.

Each one is a promise the loop relies on:
- an update with an `update_time` precondition fails once the document changed (the
  tick's compare-and-set on a job);
- `create` of an existing id fails (the run document is the dedup);
- transactions that contend on one document lose no update (run_task's claim/finish,
  bookkeeping of a dataset shared by several jobs);
- the tick's, recovery's and publish's queries come back ordered and limited;
- count aggregation;
- the production limits are enforced (a document over 1 MiB is refused), so a test
  that passes here cannot hide a document real Firestore would refuse.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from freshet_local import emulators

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_the_session_emulator_is_googles_jar_run_by_java(firestore_emulator):
    if firestore_emulator.java_pid is None:
        pytest.skip("reusing an emulator started elsewhere ($FIRESTORE_EMULATOR_HOST)")
    args = Path(f"/proc/{firestore_emulator.java_pid}/cmdline").read_bytes().split(b"\0")
    assert os.path.basename(args[0]) == b"java"
    assert any(a.endswith(b"cloud-firestore-emulator.jar") for a in args)


def test_an_update_with_a_stale_update_time_precondition_is_refused(db):
    ref = db.collection("jobs").document("j")
    ref.set({"next_run_at": T0})
    version = ref.get().update_time
    ref.update({"next_run_at": T0 + timedelta(minutes=1)})  # another tick won
    batch = db.batch()
    batch.update(ref, {"next_run_at": T0 + timedelta(minutes=2)},
                 option=db.write_option(last_update_time=version))
    with pytest.raises(gexc.FailedPrecondition):
        batch.commit()
    assert ref.get().get("next_run_at") == T0 + timedelta(minutes=1)


def test_a_precondition_and_a_create_commit_together_or_not_at_all(db):
    job, run = db.collection("jobs").document("j"), db.collection("runs").document("r")
    job.set({"n": 0})
    run.create({"by": "first"})
    batch = db.batch()
    batch.update(job, {"n": 1}, option=db.write_option(last_update_time=job.get().update_time))
    batch.create(run, {"by": "second"})
    with pytest.raises((gexc.AlreadyExists, gexc.Conflict)):
        batch.commit()
    assert job.get().get("n") == 0 and run.get().get("by") == "first"


def test_creating_an_existing_document_is_refused(db):
    ref = db.collection("runs").document("job__20261128T120000Z")
    ref.create({"status": "queued"})
    with pytest.raises((gexc.AlreadyExists, gexc.Conflict)):
        ref.create({"status": "queued", "dup": True})
    assert "dup" not in ref.get().to_dict()


def test_contending_transactions_lose_no_update(db):
    """Two threads x 3 read-modify-write increments of one document. The emulator
    resolves the conflicts by making one side wait, so this is kept small."""
    ref = db.collection("datasets").document("shared")
    ref.set({"count": 0})

    def bump(times: int) -> None:
        client = firestore.Client(project=db.project)
        for _ in range(times):
            @firestore.transactional
            def body(tx):
                snap = ref.get(transaction=tx)
                tx.update(client.collection("datasets").document("shared"),
                          {"count": snap.get("count") + 1})

            body(client.transaction(max_attempts=20))
        client.close()

    threads = [threading.Thread(target=bump, args=(3,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert ref.get().get("count") == 6


def test_the_loops_queries_come_back_ordered_and_limited(db):
    runs, jobs = db.collection("runs"), db.collection("jobs")
    for i in range(6):
        runs.document(f"r{i}").set({"job_id": "a" if i % 2 else "b", "created_at":
                                    T0 + timedelta(minutes=i),
                                    "lease_expires_at": T0 + timedelta(minutes=5 - i)})
        jobs.document(f"j{i}").set({"status": "active" if i < 5 else "paused",
                                    "next_run_at": T0 + timedelta(minutes=i)})
    # recovery: leases at or before now, earliest first
    expired = (runs.where(filter=firestore.FieldFilter("lease_expires_at", "<=",
                                                        T0 + timedelta(minutes=3)))
               .order_by("lease_expires_at").limit(2).stream())
    assert [s.id for s in expired] == ["r5", "r4"]
    # tick: active jobs due by now, in next_run_at order, limited
    due = (jobs.where(filter=firestore.FieldFilter("status", "==", "active"))
           .where(filter=firestore.FieldFilter("next_run_at", "<=", T0 + timedelta(minutes=10)))
           .order_by("next_run_at").limit(3).stream())
    assert [s.id for s in due] == ["j0", "j1", "j2"]
    # publish / API: a job's newest runs first
    newest = (runs.where(filter=firestore.FieldFilter("job_id", "==", "a"))
              .order_by("created_at", direction=firestore.Query.DESCENDING).limit(2).stream())
    assert [s.id for s in newest] == ["r5", "r3"]


def test_count_aggregation(db):
    for i in range(7):
        db.collection("runs").document(f"r{i}").set({"status": "queued" if i < 4 else "running"})
    query = db.collection("runs").where(filter=firestore.FieldFilter("status", "==", "queued"))
    (result,) = query.count().get()[0:1]
    assert result[0].value == 4


def test_a_document_over_one_mib_is_refused(db):
    with pytest.raises(gexc.InvalidArgument):
        db.collection("runs").document("big").set({"error": "x" * (1024 * 1024 + 10)})


def test_rules_refuse_clients_and_the_server_client_bypasses_them(firestore_emulator, db):
    """The emulator loads infra/firestore.rules: a browser-style request (no owner
    token) is refused, as in production; Freshet's own client is the admin."""
    db.collection("jobs").document("j").set({"status": "active"})
    url = (f"http://{firestore_emulator.address}/v1/projects/{firestore_emulator.project}"
           "/databases/(default)/documents/jobs/j")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403
    owner = urllib.request.Request(url, headers={"Authorization": "Bearer owner"})
    with urllib.request.urlopen(owner, timeout=10) as resp:
        assert json.loads(resp.read())["fields"]["status"]["stringValue"] == "active"


def test_without_java_the_emulator_stops_with_one_line_saying_what_to_install(monkeypatch):
    if os.environ.get(emulators.FIRESTORE_ENV):
        monkeypatch.delenv(emulators.FIRESTORE_ENV)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("java") is None
    with pytest.raises(emulators.EmulatorError) as failed:
        emulators.start_firestore()
    message = str(failed.value)
    assert "\n" not in message and "Java" in message and "install" in message
