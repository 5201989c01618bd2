"""State changes between publishes (pure): reported once, when they happen."""

from freshet.status.changes import Memory, detect_changes, remember

from .builders import MIN, NOW, H, job, model, run, synced


def publish(memory: Memory, m) -> tuple[Memory, list]:
    events = detect_changes(m, memory)
    return remember(m, memory, events), events


def test_the_first_publish_sets_a_baseline_and_reports_nothing():
    m = model(datasets=[synced("a", 60 * H)], jobs=[job(last_run_status="failed")])
    assert detect_changes(m, Memory()) == []


def test_a_dataset_going_stale_then_recovering_is_reported_once_each():
    memory, _ = publish(Memory(), model(datasets=[synced("a", H)]))
    memory, events = publish(memory, model(datasets=[synced("a", 30 * H)]))
    assert [(e.kind, e.state, e.previous) for e in events] == [("dataset_stale", "warn", "fresh")]
    memory, events = publish(memory, model(datasets=[synced("a", 31 * H)]))
    assert events == []  # still stale: no new change
    memory, events = publish(memory, model(datasets=[synced("a", 50 * H)]))
    assert [e.state for e in events] == ["error"]  # warn -> error is a change of level
    memory, events = publish(memory, model(datasets=[synced("a", MIN)]))
    assert [(e.kind, e.title) for e in events] == [("dataset_recovered",
                                                    "a recovered: Fresh (was Error)")]
    assert [e.kind for e in memory.events] == ["dataset_recovered", "dataset_stale",
                                               "dataset_stale"]


def test_a_job_failure_is_reported_once_not_every_publish():
    memory, _ = publish(Memory(), model(jobs=[job(last_run_status="succeeded")]))
    failed = model(jobs=[job(last_run_status="failed", last_error="boom")])
    memory, events = publish(memory, failed)
    assert [(e.kind, e.summary) for e in events] == [("job_failed", "boom")]
    memory, events = publish(memory, failed)
    assert events == []
    memory, events = publish(memory, model(jobs=[job(last_run_status="succeeded")]))
    assert [e.kind for e in events] == ["job_recovered"]


def test_a_stuck_run_is_reported_once():
    memory, _ = publish(Memory(), model())
    stuck = model(runs=[run("r1", status="failed", stuck=True, error="lease expired")])
    memory, events = publish(memory, stuck)
    assert [(e.kind, e.subject) for e in events] == [("run_stuck", "r1")]
    memory, events = publish(memory, stuck)
    assert events == []


def test_memory_round_trips_through_its_document():
    memory, _ = publish(Memory(), model(datasets=[synced("a.b:c", H)]))
    memory, events = publish(memory, model(datasets=[synced("a.b:c", 30 * H)]))
    memory.badges["badges/dataset/a.b:c.svg"] = "abc123"
    again = Memory.from_doc(memory.to_doc(NOW))
    assert again.datasets == {"a.b:c": "warn"}
    assert again.events == memory.events
    assert again.badges == {"badges/dataset/a.b:c.svg": "abc123"}
