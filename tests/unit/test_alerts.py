"""Routed, quiet alerts as tables: what is told, once, to whom, and when not."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.alerts import (
    MAX_BACKLOG,
    MAX_EVENTS_PER_MESSAGE,
    Attempted,
    DeadlineNews,
    Observation,
    Reference,
    RouteSpec,
    RouteState,
    RouteType,
    after_delivery,
    backoff,
    decide_route,
    subject_key,
    tell_of,
)
from freshet.core.deadlines import Judgement, Verdict
from freshet.core.egress import EgressPolicy
from freshet.core.errors import ValidationError
from freshet.status.notify import make_route

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SLACK = RouteSpec("growth", RouteType.SLACK, Reference(env="GROWTH_URL"))


def seen(*states: tuple[str, str]) -> RouteState:
    """A route that last told these (subject, state)s."""
    return RouteState("growth", notified={subject_key(s): str(tell_of(st)) for s, st in states})


def obs(subject: str, state: str, muted=False) -> Observation:
    return Observation(subject, subject.split(":")[1], state, f"it is {state}", muted)


@pytest.mark.parametrize(
    ("before", "now", "kind"),
    [
        ("fresh", "warn", "consumer_warning"),  # entering warning
        ("fresh", "at_risk", "consumer_warning"),
        ("fresh", "error", "consumer_error"),  # entering error
        ("warn", "failing", "consumer_error"),
        ("fresh", "stale_data", "consumer_stale_data"),  # entering stale data
        ("error", "stale_data", "consumer_stale_data"),
        ("error", "fresh", "consumer_recovered"),  # recovery
        ("stale_data", "fresh", "consumer_recovered"),
        ("unknown", "running", None),  # a first sync under way: told when it ends
        ("error", "running", None),  # a refresh under way
        ("warn", "at_risk", None),  # the same class: nothing new to say
        ("error", "failing", None),
        ("fresh", "running", None),
        ("error", "maintenance", None),  # excused: muted
    ],
)
def test_what_is_told(before, now, kind):
    state, message = decide_route(SLACK, seen(("consumer:ads", before)),
                                  [obs("consumer:ads", now)], [], T0)
    if kind is None:
        assert message is None
    else:
        assert [e["kind"] for e in message.events] == [kind]
        assert message.events[0]["previous"] == str(tell_of(before))


def test_a_subject_seen_first_only_sets_a_baseline():
    state, message = decide_route(SLACK, RouteState("growth"), [obs("consumer:ads", "error")],
                                  [], T0)
    assert message is None and state.notified == {subject_key("consumer:ads"): "error"}
    state, message = decide_route(SLACK, state, [obs("consumer:ads", "error")], [], T0 + MIN)
    assert message is None  # still the same: told once, never again


def test_one_dataset_change_is_one_message_per_route_for_every_consumer_it_affects():
    """ads.daily feeds two consumers on this route, and the route follows the dataset too."""
    before = seen(("consumer:ads", "fresh"), ("consumer:weekly", "fresh"),
                  ("dataset:ads.daily", "fresh"))
    state, message = decide_route(SLACK, before, [
        obs("consumer:ads", "error"), obs("consumer:weekly", "error"),
        obs("dataset:ads.daily", "error")], [], T0)
    assert [e["subject"] for e in message.events] == ["consumer:ads", "consumer:weekly",
                                                      "dataset:ads.daily"]
    assert len(state.backlog) == 1


def test_the_minimum_interval_holds_changes_and_coalesces_them():
    spec = replace(SLACK, min_interval=10 * MIN)
    state, first = decide_route(spec, seen(("consumer:ads", "fresh")),
                                [obs("consumer:ads", "error")], [], T0)
    assert first is not None
    # 3 min later it recovers: within the interval, nothing is sent...
    state, held = decide_route(spec, state, [obs("consumer:ads", "fresh")], [], T0 + 3 * MIN)
    assert held is None
    # ...and it breaks again before the interval ends: the route still believes "error",
    # so when the interval has passed there is nothing new to tell (the flap is swallowed)
    state, later = decide_route(spec, state, [obs("consumer:ads", "error")], [], T0 + 11 * MIN)
    assert later is None
    # a change that lasts past the interval is told then
    state, _ = decide_route(spec, state, [obs("consumer:ads", "fresh")], [], T0 + 12 * MIN)
    assert _ is not None and _.events[0]["kind"] == "consumer_recovered"


def test_the_interval_is_per_route():
    other = RouteSpec("ops", RouteType.SLACK, Reference(env="OPS"), min_interval=0 * MIN)
    spec = replace(SLACK, min_interval=60 * MIN)
    start = seen(("consumer:ads", "fresh"))
    slow, _ = decide_route(spec, start, [obs("consumer:ads", "error")], [], T0)
    fast, _ = decide_route(other, start, [obs("consumer:ads", "error")], [], T0)
    assert decide_route(spec, slow, [obs("consumer:ads", "fresh")], [], T0 + MIN)[1] is None
    assert decide_route(other, fast, [obs("consumer:ads", "fresh")], [], T0 + MIN)[1]


def test_muted_subjects_say_nothing_and_what_remains_is_told_after_the_window():
    state = seen(("consumer:ads", "fresh"))
    state, message = decide_route(SLACK, state, [obs("consumer:ads", "error", muted=True)], [],
                                  T0)
    assert message is None and state.notified[subject_key("consumer:ads")] == "ok"
    state, message = decide_route(SLACK, state, [obs("consumer:ads", "error")], [], T0 + 30 * MIN)
    assert message.events[0]["kind"] == "consumer_error"  # still broken when it ends


def news(*dues_verdicts, muted=False) -> DeadlineNews:
    recent = tuple(Judgement("k", due, Verdict(v), "Daily revenue was late")
                   for due, v in sorted(dues_verdicts, reverse=True))
    return DeadlineNews("consumer:revenue", "Revenue", recent, {"k": "At 07:00"}, muted)


def test_a_consumer_without_verdicts_yet_is_told_its_first_miss():
    state, message = decide_route(SLACK, RouteState("growth"), [], [news()], T0 - MIN)
    assert message is None
    state, message = decide_route(SLACK, state, [], [news((T0, "missed"))], T0)
    assert [e["kind"] for e in message.events] == ["deadline_missed"]


def test_a_missed_deadline_is_told_once():
    d1, d2, d3 = T0 - 2 * MIN, T0 - MIN, T0
    state, message = decide_route(SLACK, RouteState("growth"), [], [news((d1, "missed"))], T0)
    assert message is None  # first sight: verdicts from before the route followed it
    state, message = decide_route(SLACK, state, [],
                                  [news((d1, "missed"), (d2, "met"), (d3, "missed"))], T0)
    assert [e["kind"] for e in message.events] == ["deadline_missed"]
    assert "At 07:00: Daily revenue was late" in message.events[0]["summary"]
    state, message = decide_route(SLACK, state, [],
                                  [news((d1, "missed"), (d2, "met"), (d3, "missed"))], T0)
    assert message is None


def test_excused_and_met_deadlines_are_not_told():
    state, _ = decide_route(SLACK, RouteState("growth"), [], [news((T0 - MIN, "met"))], T0)
    state, message = decide_route(SLACK, state, [], [news((T0, "excused"), (T0 - MIN, "met"))],
                                  T0)
    assert message is None


def test_the_backlog_is_bounded_and_counts_what_it_drops():
    state = seen(("consumer:ads", "fresh"))
    for i in range(MAX_BACKLOG + 3):
        current = "error" if i % 2 == 0 else "fresh"
        state, _ = decide_route(SLACK, state, [obs("consumer:ads", current)], [], T0 + i * MIN)
    assert len(state.backlog) == MAX_BACKLOG and state.dropped == 3


def test_a_message_carries_at_most_20_changes_and_counts_the_rest():
    subjects = [f"dataset:d{i}" for i in range(25)]
    state = seen(*[(s, "fresh") for s in subjects])
    _, message = decide_route(SLACK, state, [obs(s, "error") for s in subjects], [], T0)
    assert len(message.events) == MAX_EVENTS_PER_MESSAGE and message.more == 5


def test_delivery_records_status_backoff_and_drops():
    state = seen(("consumer:ads", "fresh"))
    state, message = decide_route(SLACK, state, [obs("consumer:ads", "error")], [], T0)
    state = after_delivery(state, [Attempted(message.id, T0, "HTTP 503")])
    assert state.last_status == "failed" and state.backlog[0].next_attempt_at == T0 + backoff(1)
    assert backoff(1) == MIN and backoff(3) == 4 * MIN and backoff(20) == timedelta(hours=1)
    state = after_delivery(state, [Attempted(message.id, T0 + 2 * MIN)])
    assert (state.last_status, state.delivered, state.backlog) == ("delivered", 1, ())
    assert state.last_delivered_at == T0 + 2 * MIN and state.last_error is None


def test_states_round_trip():
    state = seen(("consumer:ads", "fresh"))
    state, _ = decide_route(SLACK, state, [obs("consumer:ads", "error")],
                            [news((T0, "missed"))], T0)
    assert RouteState.from_doc(state.to_doc()) == state


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"id": "x", "type": "slack"}, "r.url", "is required"),
        ({"id": "x", "type": "teams", "url": "https://x"}, "r.type", "slack or webhook"),
        ({"id": "x", "url": "ftp://x"}, "r.url", "http"),
        ({"id": "x", "url": "https://"}, "r.url", "http"),
        ({"id": "x", "url": "https://hooks.example:99999/x"}, "r.url", "valid port"),
        ({"id": "x", "url": "http://[::1/x"}, "r.url", "http"),
        ({"id": "x", "type": "webhook", "url": "https://x"}, "r.secret", "is required"),
        ({"id": "x", "type": "webhook", "url": "https://x", "secret": "plain"}, "r.secret",
         "{env: NAME}"),
        ({"id": "x", "type": "webhook", "url": "https://x",
          "secret": {"secret_manager": "projects/p/secrets/s"}},
         "r.secret.secret_manager", "versions"),
        ({"id": "x", "url": {"env": "lower"}}, "r.url.env", "upper-case"),
        ({"id": "x", "url": "https://x", "secret": {"env": "S"}}, "r.secret", "only a webhook"),
        ({"id": "x", "url": "https://x", "min_interval": "often"}, "r.min_interval",
         "not a duration"),
    ],
)
def test_route_errors_name_the_field(doc, field, message):
    with pytest.raises(ValidationError, match=message) as caught:
        make_route(doc, "r")
    assert caught.value.field == field


def test_secret_manager_references_become_an_environment_variable():
    route = make_route({"id": "ops-hook", "type": "webhook", "url": {"env": "OPS_URL"},
                        "secret": {"secret_manager": "projects/p/secrets/hook/versions/3"}},
                       "r")
    assert route.secret.env == "FRESHET_ROUTE_OPS_HOOK_SECRET"
    assert route.secret.resolve({"FRESHET_ROUTE_OPS_HOOK_SECRET": "k"}) == "k"
    assert route.url.resolve({}) is None
    assert RouteSpec.from_doc(route.to_doc()) == route


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
    "http://metadata.google.internal/computeMetadata/v1/", "http://[fe80::1]/hook",
    "http://0.0.0.0/hook", "http://[::ffff:169.254.169.254]/x",
])
@pytest.mark.parametrize("link_local", [False, True])
def test_a_route_to_a_link_local_metadata_or_unusable_address_is_refused_at_apply(url,
                                                                                  link_local):
    """Whatever http_fetch may reach, a route never reaches the metadata server."""
    policy = EgressPolicy(allow_private=True, allow_link_local=link_local)
    with pytest.raises(ValidationError) as caught:
        make_route({"id": "x", "url": url}, "routes[0]", policy)
    assert caught.value.field == "routes[0].url"
    assert "allow_link_local" not in caught.value.message  # no setting allows it


def test_a_route_to_a_private_address_is_refused_when_the_pipeline_refuses_them():
    strict = EgressPolicy(allow_private=False)
    with pytest.raises(ValidationError, match="private address"):
        make_route({"id": "x", "url": "http://127.0.0.1:8085/hook"}, "r", strict)
    assert make_route({"id": "x", "url": "http://127.0.0.1:8085/hook"}, "r").url.value


def test_a_route_is_not_held_to_http_fetchs_allowed_hosts():
    policy = EgressPolicy(("api.example.com",))
    assert make_route({"id": "x", "url": "https://hooks.slack.com/services/T/B/C"}, "r",
                      policy).url.value
