"""Where a produced dataset's state is stored (core.groups): a pure function of its job
and its position, and what apply must lay out again."""

import pytest

from freshet.core.groups import PER_GROUP, chunks, group_id, group_of, layout, relayout

KEYS = [f"d{i:03d}" for i in range(2 * PER_GROUP + 1)]


@pytest.mark.parametrize("position, group", [
    (0, "j~0"), (PER_GROUP - 1, "j~0"), (PER_GROUP, "j~1"), (2 * PER_GROUP, "j~2")])
def test_a_datasets_group_is_its_jobs_chunk_by_position(position, group):
    assert group_of("j", KEYS, KEYS[position]) == group
    assert group in chunks("j", KEYS) and KEYS[position] in chunks("j", KEYS)[group]


def test_a_dataset_the_job_does_not_produce_has_no_group_there():
    assert group_of("j", KEYS, "other") is None


def test_a_group_id_names_its_job_and_chunk_and_never_a_dataset_key():
    assert group_id("orders-sync.v2", 3) == "orders-sync.v2~3"
    assert set(chunks("a", ["x"])) == {"a~0"}  # "~" is in no job id nor dataset key


def test_each_chunk_holds_at_most_per_group_datasets_in_order():
    found = chunks("j", KEYS)
    assert [len(k) for k in found.values()] == [PER_GROUP, PER_GROUP, 1]
    assert [k for keys in found.values() for k in keys] == KEYS


def test_the_layout_keeps_a_dataset_two_jobs_name_with_the_first():
    assert layout([("a", ["x", "y"]), ("b", ["y", "z"])]) == {
        "x": "a~0", "y": "a~0", "z": "b~0"}


LAID = {"x": "a~0", "y": "a~0"}


@pytest.mark.parametrize("jobs, pointers, groups, own, todo", [
    # laid out: nothing to do (apply is idempotent)
    ([("a", ["x", "y"])], LAID, {"a~0": ["x", "y"]}, [], {}),
    # a job new to groups, or an existing deployment's datasets/{key} documents
    ([("a", ["x", "y"])], {}, {}, ["x", "y"], {"a~0": ("x", "y")}),
    # its produces reordered or grown
    ([("a", ["y", "x"])], LAID, {"a~0": ["x", "y"]}, [], {"a~0": ("y", "x")}),
    # a pointer naming another group (a dataset that changed producer)
    ([("a", ["x", "y"])], {**LAID, "y": "b~0"}, {"a~0": ["x", "y"]}, [],
     {"a~0": ("x", "y")}),
    # a job gone: its group emptied (its states move to documents of their own)
    ([], LAID, {"a~0": ["x", "y"]}, [], {"a~0": ()}),
    ([], {}, {"a~0": []}, [], {}),  # ... once
    # a dataset another job moved to: the first producer listed keeps it
    ([("b", ["y"]), ("a", ["x", "y"])], {"x": "a~0", "y": "b~0"},
     {"a~0": ["x"], "b~0": ["y"]}, [], {}),
])
def test_apply_lays_out_again_only_the_groups_that_differ(jobs, pointers, groups, own, todo):
    assert relayout(jobs, pointers, groups, own) == todo
