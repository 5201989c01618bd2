"""Property-based fuzzing of the config loader: any text, and the project's own pipeline
with any one value replaced, added or removed, either loads or raises ConfigError
naming file:line: field — never another exception, never a traceback for the user."""

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.ops.config import ConfigError, parse_config

PIPELINE = Path(__file__).resolve().parents[2] / "infra" / "pipeline.yaml"
BASE = yaml.safe_load(PIPELINE.read_text())
FUZZ = settings(max_examples=80, deadline=None, derandomize=True)
TEXT = st.one_of(st.sampled_from([
    "", "~", "null", "-1", "1e999", ".nan", "<script>alert(1)</script>", "* * * * * *",
    "Mars/Olympus", "99999s", "-5m", "a" * 3000, "\x00", "\u202e", "{{7*7}}", "os"]),
    st.text(max_size=30))
VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)


def loads_or_names_the_problem(text: str) -> None:
    try:
        parse_config(text, "pipeline.yaml", env={})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("pipeline.yaml") and exc.field
        assert "Traceback" not in message


def paths(node, prefix=()):
    """Every (path) into the document: mapping keys and list indexes."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


# Never point sync_modules at something importable: a config may import code, by design.
PATHS = [p for p in paths(BASE) if p and p[0] != "sync_modules"]


def mutated(path, action, value):
    import copy

    doc = copy.deepcopy(BASE)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    else:
        parent.append(value)
    return yaml.safe_dump(doc, allow_unicode=True)


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_loads_or_is_refused_with_a_located_error(text):
    loads_or_names_the_problem(text)


@FUZZ
@given(path=st.sampled_from(PATHS), action=st.sampled_from(["replace", "delete", "add"]),
       value=VALUE)
def test_the_pipeline_with_any_one_change_loads_or_is_refused_cleanly(path, action, value):
    loads_or_names_the_problem(mutated(path, action, value))


def test_the_unchanged_pipeline_loads():
    assert parse_config(PIPELINE.read_text(), "pipeline.yaml", env={}).jobs
