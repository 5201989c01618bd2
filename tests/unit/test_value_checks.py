"""One helper tells an integer from a bool (Python's True is the int 1; JSON's and YAML's
true are no number): check_int, check_bool, is_int, is_number in freshet.core.values,
used wherever a count, a bound or a flag comes in."""

import pytest

from freshet.core.backfill import check_max_parallel
from freshet.core.errors import ValidationError
from freshet.core.herd import ShardTask
from freshet.core.models import new_job
from freshet.core.runs import record_count
from freshet.core.timeutil import parse_duration
from freshet.core.values import check_bool, check_int, is_int, is_number
from freshet.loop.delivery import parse_delivery, parse_poll


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, [1], 0, 11])
def test_check_int_refuses_bools_non_integers_and_values_out_of_range(value):
    with pytest.raises(ValidationError) as caught:
        check_int(value, "limit", 1, 10)
    assert (caught.value.field, caught.value.message) == ("limit",
                                                          "must be an integer from 1 to 10")


def test_check_int_returns_an_integer_in_range_and_takes_a_message():
    assert [check_int(v, "limit", 1, 10) for v in (1, 10)] == [1, 10]
    with pytest.raises(ValidationError, match="must be small"):
        check_int(99, "limit", 1, 10, "must be small")


def test_is_int_is_number_and_check_bool_tell_bools_apart():
    assert [is_int(v) for v in (1, -3, True, 1.0, "1")] == [True, True, False, False, False]
    assert [is_number(v) for v in (1, 1.5, False, "2", None)] == [True, True, False, False,
                                                                   False]
    assert check_bool(False, "full") is False
    for value in (0, 1, "true", None):
        with pytest.raises(ValidationError, match="must be true or false"):
            check_bool(value, "full")


@pytest.mark.parametrize(("check", "field"), [
    (lambda v: check_max_parallel(v), "max_parallel"),
    (lambda v: parse_duration(v, "max_lateness"), "max_lateness"),
    (lambda v: ShardTask.from_json({"claim_shard": v}), "claim_shard"),
    (lambda v: ShardTask.from_json({"claim_shard": 0, "seq": v}), "seq"),
    (lambda v: parse_delivery({}, {"run_id": "orders__20261128T120000Z", "attempt": v}),
     "attempt"),
    (lambda v: parse_poll({"run_id": "orders__20261128T120000Z", "attempt": 1, "poll": v}),
     "poll"),
    (lambda v: new_job(id="j", kind="noop", schedule={"cron": "* * * * *"}, max_catchup=v),
     "max_catchup"),
    (lambda v: new_job(id="j", kind="noop", schedule={"cron": "* * * * *"},
                       stuck_threshold_minutes=v), "stuck_threshold_minutes"),
    (lambda v: new_job(id="j", kind="noop", schedule={"cron": "* * * * *"}, max_retries=v),
     "max_retries"),
])
def test_a_bool_is_refused_where_an_integer_comes_in_naming_the_field(check, field):
    with pytest.raises(ValidationError) as caught:
        check(True)
    assert caught.value.field == field


def test_a_bool_record_count_is_not_stored():
    assert (record_count(True), record_count(3)) == (None, 3)


@pytest.mark.parametrize("poll", [0, -1, "3", 1.5, None, 10**7])
def test_a_poll_task_names_a_poll_number_or_is_refused_naming_it(poll):
    with pytest.raises(ValidationError) as caught:
        parse_poll({"run_id": "orders__20261128T120000Z", "attempt": 1, "poll": poll})
    assert caught.value.field == "poll"
    assert parse_poll({"run_id": "orders__20261128T120000Z", "attempt": 2, "poll": 7}) == (
        "orders__20261128T120000Z", 2, 7)
