"""What the console's actions write stays under Firestore's 1 MiB at its worst: a paused
job with the longest reason and author, and the control document holding the most
ad-hoc windows beside many declared ones."""

from datetime import UTC, datetime, timedelta

from freshet.core.docsize import MAX_DOC_BYTES, doc_size
from freshet.core.interventions import MAX_ADHOC_WINDOWS, MAX_REASON_CHARS, adhoc_window
from freshet.core.models import MAX_PRODUCES, new_job
from freshet.core.windows import Scope, make_window
from freshet.gcp.store import SETTINGS, Store
from freshet.ops.operations import open_window, pause_job

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WIDE = "\U0001d509"  # four bytes in UTF-8


def stored(db, collection: str, doc_id: str) -> int:
    snap = db.collection(collection).document(doc_id).get()
    return doc_size(f"{collection}/{doc_id}", snap.to_dict())


def test_a_paused_job_with_the_longest_reason_and_author_stays_bounded(db):
    store = Store(db)
    job = new_job(id="j" * 100, kind="noop", schedule={"cron": "* * * * *"},
                  produces=[f"{i:06d}." + "k" * 193 for i in range(MAX_PRODUCES)],
                  description=WIDE * 2000)
    store.put_job(job)
    pause_job(store, job.id, reason=WIDE * MAX_REASON_CHARS, until="2h", by=WIDE * 10_000,
              now=NOW)
    paused = store.job(job.id)
    assert len(paused.paused_by) == 200 and len(paused.paused_reason) == MAX_REASON_CHARS
    assert stored(db, "jobs", job.id) < MAX_DOC_BYTES / 4


def test_the_most_adhoc_windows_beside_declared_ones_stay_bounded(db):
    store = Store(db)
    declared = [make_window({"id": f"w{i}", "cron": "0 3 * * *", "duration": "30m",
                             "note": "n" * 500,
                             "scope": {"jobs": [f"{j:03d}" + "j" * 97 for j in range(50)]}},
                            f"maintenance[{i}]").to_doc() for i in range(50)]
    store.set_control({"maintenance": declared})
    for i in range(MAX_ADHOC_WINDOWS):
        open_window(store, minutes=60, note=WIDE * 500, by=WIDE * 10_000,
                    scope=Scope(jobs=tuple(f"{j:03d}" + "j" * 97 for j in range(50))),
                    now=NOW + timedelta(seconds=i))
    doc = db.collection(SETTINGS).document("control").get().to_dict()
    assert len(doc["adhoc_maintenance"]) == MAX_ADHOC_WINDOWS
    assert stored(db, SETTINGS, "control") < MAX_DOC_BYTES / 2
    one = adhoc_window(minutes=5, note="x", by=WIDE * 10_000, now=NOW)
    assert len(one.note) < 220
