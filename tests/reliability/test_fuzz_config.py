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


# -- the input classes of issue 12: aliases, nesting, links, numbers -------------------------

SCHEMES = st.sampled_from(["javascript", "JaVaScRiPt", "data", "vbscript", "file", "http",
                           "https", "HTTPS", "mailto", ""])
PADDING = st.sampled_from(["", " ", "\t", "\n", "\x00", "\x01", "\u202e", "\ufeff", "  "])
URL = st.builds(lambda pad, scheme, sep, rest: f"{pad}{scheme}{sep}{rest}", PADDING, SCHEMES,
                st.sampled_from([":", "://", ":\t", "\t:", ""]),
                st.text(alphabet="abc/.:?#=&<>\"'()", max_size=20))


@FUZZ
@given(url=URL)
def test_a_consumer_url_loads_only_as_an_http_or_relative_link(url):
    from freshet.core.text import safe_link

    doc = yaml.safe_load(PIPELINE.read_text())
    doc["consumers"][0]["url"] = url
    try:
        config = parse_config(yaml.safe_dump(doc, allow_unicode=True), "pipeline.yaml", env={})
    except ConfigError as exc:
        assert exc.field.startswith(("consumers[0].url", "yaml")), str(exc)
        return
    assert safe_link(config.catalog.consumers[0].url) == config.catalog.consumers[0].url \
        or config.catalog.consumers[0].url == ""


def alias_document(levels: int, width: int, depth: int) -> str:
    lines = [f"x0: &x0 {'[' * depth}1{']' * depth}"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * width) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@FUZZ
@given(levels=st.integers(1, 30), width=st.integers(1, 12), depth=st.integers(0, 40),
       where=st.sampled_from(["top", "params"]))
def test_aliases_and_nesting_of_any_shape_load_or_are_refused_in_linear_time(levels, width,
                                                                             depth, where):
    import time

    block = alias_document(levels, width, depth)
    if where == "top":
        text = PIPELINE.read_text() + block
    else:
        indented = "".join(f"        {line}\n" for line in block.splitlines())
        text = PIPELINE.read_text().replace(
            "      url: https://www.gstatic.com/ipranges/goog.json\n",
            "      url: https://www.gstatic.com/ipranges/goog.json\n      extra:\n" + indented)
    started = time.monotonic()
    loads_or_names_the_problem(text)
    assert time.monotonic() - started < 3, (levels, width, depth)


NUMBER = st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                   st.sampled_from([".nan", ".inf", "-.inf", "1e999", "9" * 5000,
                                    "0x" + "f" * 40, "-0", "1_000"]))


@FUZZ
@given(value=NUMBER, field=st.sampled_from(["max_retries", "stuck_threshold_minutes",
                                            "params.n", "params.list"]))
def test_any_number_in_a_job_loads_within_range_or_is_refused_naming_it(value, field):
    text = PIPELINE.read_text()
    job = "  - id: heartbeat\n"
    if field == "params.n":
        addition = f"    params: {{n: {value}}}\n"
    elif field == "params.list":
        addition = f"    params: {{list: [{value}]}}\n"
    else:
        addition = f"    {field}: {value}\n"
    text = text.replace(job, job + addition)
    try:
        config = parse_config(text, "pipeline.yaml", env={})
    except ConfigError as exc:
        assert exc.field.startswith(("jobs[3]", "yaml")), str(exc)
        return
    params = next(j for j in config.jobs if j.id == "heartbeat").params
    from freshet.core.values import check_value
    check_value(params, "params", max_depth=16)  # what loads can be stored


# -- issue 20 §5: every date and duration in the config, extreme or not ASCII --------------

EXTREME = st.one_of(st.sampled_from([
    '"99999999999d"', "99999999999d", ".nan", ".inf", "-.inf", "1e999", "9" * 400,
    '"1²h"', '"٣h"', '"１h"', "0001-01-01T00:00:00Z", '"0001-01-01T00:00:00+05:00"',
    '"9999-12-31T23:59:59-05:00"', "2201-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    '"٣ * * * *"', '"* * * * *"', "3661d", "-5m", "0s", "~", "[]", "{}"]),
    st.from_regex(r"[0-9²٣０]{1,20}[smhdw]", fullmatch=True),
    st.integers(-(10**30), 10**30).map(str))
DATED_FIELDS = {
    "jobs.max_lateness": ("    max_lateness: 5m\n", "    max_lateness: {}\n"),
    "consumers.warn_after": ("warn_after: 8h", "warn_after: {}"),
    "consumers.error_after": ("error_after: 14h", "error_after: {}"),
}
WINDOWS = {
    "maintenance.duration": "maintenance:\n  - {{id: w, cron: '0 3 * * *', duration: {}}}\n",
    "maintenance.cron": "maintenance:\n  - {{id: w, cron: {}, duration: 1h}}\n",
    "maintenance.start": "maintenance:\n  - {{id: w, start: {}, end: 2026-12-01T00:00:00Z}}\n",
    "maintenance.end": "maintenance:\n  - {{id: w, start: 2026-11-30T00:00:00Z, end: {}}}\n",
}


@FUZZ
@given(value=EXTREME, field=st.sampled_from(sorted([*DATED_FIELDS, *WINDOWS])))
def test_any_date_or_duration_in_the_config_loads_in_range_or_is_refused_at_its_line(value,
                                                                                     field):
    text = PIPELINE.read_text()
    if field in DATED_FIELDS:
        old, new = DATED_FIELDS[field]
        assert old in text
        text = text.replace(old, new.format(value), 1)
    else:
        text += WINDOWS[field].format(value)
    loads_or_names_the_problem(text)
