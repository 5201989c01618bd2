"""The pipeline config: every error names file:line: field, and a good file parses."""

import pytest

from freshet.core.errors import ValidationError
from freshet.ops.config import ConfigError, load_config, parse_config
from tests.ops.helpers import PIPELINE, ROOT, write_config


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def error_for(tmp_path, text: str) -> ConfigError:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return caught.value


def test_the_projects_own_pipeline_file_is_valid():
    config = load_config(ROOT / "infra/pipeline.yaml", env={})
    # An obvious placeholder that `make deploy` refuses (freshet_local.deploy).
    assert config.project == "your-project-id" and config.region == "europe-west1"
    assert config.firestore_location == "europe-west1"
    assert {j.kind for j in config.jobs} == {"http_fetch", "noop"}
    assert [s.target for s in config.control_schedules] == [
        "scheduler_tick", "recover_stuck_runs", "publish_status"]
    assert config.catalog.datasets["network.ranges_combined"].upstream == (
        "network.google_ranges", "network.cloud_ranges")


def test_a_good_file_becomes_typed_jobs_queues_catalog_and_control(tmp_path):
    config = load_config(write_config(tmp_path), env={})
    orders = config.jobs[0]
    assert (orders.id, orders.schedule.cron, orders.schedule.timezone) == (
        "orders", "*/15 * * * *", "Europe/London")
    assert config.jobs[1].max_retries == 2
    assert (config.queues[0].min_backoff_s, config.queues[0].max_backoff_s) == (5.0, 300.0)
    assert config.catalog.requirement_for("sales.revenue").warn_after.total_seconds() == 93600
    assert config.control.manual_actions_enabled is True
    assert config.functions.invoker_email == (
        "freshet-invoker@demo-freshet.iam.gserviceaccount.com")


def test_config_error_is_a_validation_error_naming_file_line_and_field(tmp_path):
    text = PIPELINE.replace('"*/15 * * * *"', '"61 * * * *"')
    err = error_for(tmp_path, text)
    assert isinstance(err, ValidationError)
    assert err.field == "jobs[0].schedule.cron" and err.line == line_of(text, "61 * * * *")
    assert str(err).startswith(f"{tmp_path}/pipeline.yaml:{err.line}: jobs[0].schedule.cron: "
                               "invalid cron expression '61 * * * *'")


@pytest.mark.parametrize("old, new, field, needle", [
    ("timezone: Europe/London", "timezone: Mars/Olympus", "jobs[0].schedule.timezone",
     "Mars/Olympus"),
    ("    max_retries: 2", "    max_retries: many", "jobs[1].max_retries", "many"),
    ("    max_retries: 2", "    max_retries: 99", "jobs[1].max_retries", "99"),
    ("  - id: rates", "  - id: Rates!", "jobs[1].id", "Rates!"),
    ("    kind: noop\n    schedule: {cron: \"0 6", "    kind: teleport\n    schedule: {cron: \"0 6",
     "jobs[1].kind", "teleport"),
    ("produces: [finance.rates]", "produces: [finance.nope]", "jobs[1].produces[0]",
     "finance.nope"),
    ("min_backoff: 5s", "min_backoff: soon", "queues[0].min_backoff", "soon"),
    ("max_backoff: 5m", "max_backoff: 1s", "queues[0].max_backoff", "max_backoff: 1s"),
    ("warn_after: 26h, error_after: 50h", "warn_after: 60h, error_after: 50h",
     "consumers[0].requires[0].warn_after", "60h"),
    ("dataset: sales.revenue,", "dataset: sales.nothing,", "consumers[0].requires[0].dataset",
     "sales.nothing"),
    ("  manual_actions_enabled: true", "  manual_actions_enabled: maybe",
     "control.manual_actions_enabled", "maybe"),
    ("region: europe-west1", "region: Europe West", "region", "Europe West"),
])
def test_each_bad_field_is_named_with_its_line(tmp_path, old, new, field, needle):
    text = PIPELINE.replace(old, new)
    assert text != PIPELINE
    err = error_for(tmp_path, text)
    assert err.field == field, str(err)
    assert err.line == line_of(text, needle), str(err)


def test_unknown_keys_are_refused_at_their_line(tmp_path):
    text = PIPELINE.replace("    max_retries: 2", "    max_retries: 2\n    retries: 4")
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == ("jobs[1].retries", line_of(text, "retries: 4"))
    assert "unknown key" in str(err)
    err = error_for(tmp_path, PIPELINE + "colour: blue\n")
    assert err.field == "colour"


def test_duplicate_job_ids_are_refused(tmp_path):
    text = PIPELINE.replace("  - id: rates", "  - id: orders")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].id" and "duplicate" in str(err)
    second = [i for i, line in enumerate(text.splitlines(), 1) if line == "  - id: orders"][1]
    assert err.line == second


def test_a_dataset_two_jobs_produce_is_refused_naming_both(tmp_path):
    """One producer per dataset (its state is kept with that job's other datasets), as
    Dagster refuses two definitions of one asset key."""
    text = PIPELINE.replace("produces: [finance.rates]", "produces: [finance.rates, sales.orders]")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].produces[1]", str(err)
    assert "'orders'" in err.message and "'rates'" in err.message
    assert err.line == line_of(text, "produces: [finance.rates, sales.orders]")


def test_duplicate_yaml_keys_are_refused(tmp_path):
    text = PIPELINE.replace("region: europe-west1", "region: europe-west1\nregion: us-east1")
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == ("region", 3) and "duplicate key" in str(err)


def test_duplicate_datasets_are_refused(tmp_path):
    text = PIPELINE.replace("  - key: finance.rates", "  - key: sales.orders")
    assert "duplicate" in str(error_for(tmp_path, text))


def test_a_cycle_in_dataset_upstreams_is_refused(tmp_path):
    text = PIPELINE.replace("  - key: sales.orders\n",
                            "  - key: sales.orders\n    upstream: [sales.revenue]\n")
    err = error_for(tmp_path, text)
    assert err.field == "datasets[0].upstream"
    assert "sales.orders -> sales.revenue -> sales.orders" in str(err)
    assert err.line == line_of(text, "upstream: [sales.revenue]")


def test_an_upstream_must_be_declared(tmp_path):
    text = PIPELINE.replace("upstream: [sales.orders, finance.rates]",
                            "upstream: [sales.orders, finance.fx]")
    err = error_for(tmp_path, text)
    assert err.field == "datasets[2].upstream[1]" and "finance.fx" in str(err)


def test_missing_required_fields_are_named(tmp_path):
    err = error_for(tmp_path, PIPELINE.replace("project: demo-freshet\n", ""))
    assert err.field == "project" and "required" in str(err)
    text = PIPELINE.replace('    schedule: {cron: "0 6 * * *"}\n', "")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].schedule"


def test_yaml_syntax_errors_name_the_line(tmp_path):
    err = error_for(tmp_path, "project: demo-freshet\nregion: [europe\n")
    assert err.file.endswith("pipeline.yaml") and err.line is not None


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_custom_kinds_come_from_modules_named_in_the_file_or_the_environment(tmp_path):
    text = PIPELINE.replace("kind: noop\n    schedule: {cron: \"0 6", "kind: demo_custom\n"
                            "    schedule: {cron: \"0 6")
    plugin = tmp_path / "ops_test_plugin.py"
    plugin.write_text("from freshet.loop.registry import sync\n\n"
                      "@sync('demo_custom')\ndef run(ctx):\n    return None\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        assert error_for(tmp_path, text).field == "jobs[1].kind"
        config = parse_config(text, "p.yaml", env={"FRESHET_SYNC_MODULES": "ops_test_plugin"})
        assert config.jobs[1].kind == "demo_custom"
        err = error_for(tmp_path, "sync_modules: [no_such_module_x]\n" + text)
        assert err.field == "sync_modules[0]" and "no_such_module_x" in str(err)
    finally:
        sys.path.remove(str(tmp_path))
        from freshet.loop.registry import unregister
        unregister("demo_custom")


# -- deploy settings: functions, site, Firestore location, the project override ----------

def test_function_limits_come_from_each_entry_then_defaults_then_freshets_own(tmp_path):
    text = PIPELINE.replace("region: europe-west1\n", """region: europe-west1
functions:
  defaults: {memory: 1Gi, max_instances: 4}
  run_task: {timeout: 20m, memory: 2Gi, cpu: 1, concurrency: 4}
""")
    fn = load_config(write_config(tmp_path, text), env={}).functions
    run_task, api, tick = (fn.limits_for(n) for n in ("run_task", "api", "scheduler_tick"))
    assert (run_task.timeout_s, run_task.memory, run_task.cpu, run_task.concurrency,
            run_task.max_instances) == (1200, "2Gi", "1", 4, 4)
    assert (api.timeout_s, api.memory, api.max_instances, api.concurrency) == (60, "1Gi", 4, 1)
    assert tick.timeout_s == 120  # Freshet's default: covers the tick's 1m attempt deadline


@pytest.mark.parametrize("section, field, needle", [
    ("  run_task: {timeout: 2h}", "functions.run_task.timeout", "2h"),
    ("  api: {memory: lots}", "functions.api.memory", "lots"),
    ("  api: {memory: 64Mi}", "functions.api.memory", "64Mi"),
    ("  api: {concurrency: 8}", "functions.api.concurrency", "concurrency: 8"),
    ("  api: {max_instances: 0}", "functions.api.max_instances", "max_instances: 0"),
    ("  api: {colour: red}", "functions.api.colour", "colour"),
])
def test_bad_function_limits_are_named_with_their_line(tmp_path, section, field, needle):
    text = PIPELINE.replace("region: europe-west1\n",
                            f"region: europe-west1\nfunctions:\n{section}\n")
    err = error_for(tmp_path, text)
    assert err.field == field, str(err)
    assert err.line == line_of(text, needle), str(err)


def test_concurrency_above_one_needs_a_whole_cpu(tmp_path):
    text = PIPELINE.replace("region: europe-west1\n", "region: europe-west1\nfunctions:\n"
                            "  api: {concurrency: 8}\n")
    assert "at least one CPU" in str(error_for(tmp_path, text))


def test_a_stuck_threshold_beyond_cloud_tasks_30_minutes_is_refused(tmp_path):
    text = PIPELINE.replace("    max_retries: 2\n",
                            "    max_retries: 2\n    stuck_threshold_minutes: 31\n")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].stuck_threshold_minutes"
    assert err.line == line_of(text, "stuck_threshold_minutes: 31")
    assert "31 minutes cannot fit Cloud Tasks' 30-minute dispatch limit" in str(err)
    text = PIPELINE.replace("    max_retries: 2\n",
                            "    max_retries: 2\n    stuck_threshold_minutes: 30\n")
    assert load_config(write_config(tmp_path, text), env={}).jobs[1].stuck_threshold_minutes \
        == 30


def test_an_expected_runtime_beyond_the_dispatch_deadline_is_refused(tmp_path):
    text = PIPELINE.replace("    max_backoff: 5m\n",
                            "    max_backoff: 5m\n    dispatch_deadline: 10m\n").replace(
        "    max_retries: 2\n", "    max_retries: 2\n    expected_runtime_minutes: 11\n")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[1].expected_runtime_minutes"
    assert "longer than the queue's dispatch_deadline (10m" in str(err)
    ok = text.replace("expected_runtime_minutes: 11", "expected_runtime_minutes: 10")
    assert load_config(write_config(tmp_path, ok), env={}).jobs[1].expected_runtime_minutes \
        == 10


@pytest.mark.parametrize("deadline, ok", [("15s", True), ("14s", False), ("30m", False),
                                           ("15m", True), ("31m", False)])
def test_the_dispatch_deadline_is_within_cloud_tasks_limits_and_run_tasks_timeout(
        tmp_path, deadline, ok):
    """run_task's default timeout is 15m: a deadline past it would let Cloud Tasks wait
    for a delivery Cloud Run has already cut."""
    text = PIPELINE.replace("    max_backoff: 5m\n",
                            f"    max_backoff: 5m\n    dispatch_deadline: {deadline}\n")
    if ok:
        load_config(write_config(tmp_path, text), env={})
    else:
        err = error_for(tmp_path, text)
        assert err.field == "queues[0].dispatch_deadline"
        assert err.line == line_of(text, "dispatch_deadline")


def test_a_scheduler_deadline_longer_than_its_functions_timeout_is_refused(tmp_path):
    text = PIPELINE.replace("region: europe-west1\n", """region: europe-west1
functions:
  recover_stuck_runs: {timeout: 2m}
""")
    err = error_for(tmp_path, text)  # the default recover schedule waits 3m
    assert err.field == "control_schedules[1].deadline"
    assert "longer than recover_stuck_runs's timeout (2m)" in str(err)


def test_site_buckets_and_viewers(tmp_path):
    config = load_config(write_config(tmp_path), env={})
    assert (config.site.bucket, config.site.snapshot_bucket, config.site.public) == (
        "demo-freshet-freshet-site", "demo-freshet-freshet-snapshots", False)
    assert config.site.url == "https://storage.cloud.google.com/demo-freshet-freshet-site/" \
        "index.html"
    text = PIPELINE + "site:\n  public: true\n  viewers: [group:data@example.com, " \
                      "domain:example.com]\n"
    site = load_config(write_config(tmp_path, text), env={}).site
    assert site.viewers == ("group:data@example.com", "domain:example.com")
    assert site.url.startswith("https://storage.googleapis.com/")
    err = error_for(tmp_path, PIPELINE + "site:\n  viewers: [data@example.com]\n")
    assert err.field == "site.viewers[0]" and "IAM member" in str(err)


def test_the_project_override_renames_everything_derived_from_it(tmp_path):
    config = load_config(write_config(tmp_path), env={}, project="real-project-42")
    assert config.project == "real-project-42"
    assert config.functions.invoker_email == \
        "freshet-invoker@real-project-42.iam.gserviceaccount.com"
    assert config.functions.url("api") == \
        "https://europe-west1-real-project-42.cloudfunctions.net/api"
    assert config.site.bucket == "real-project-42-freshet-site"
# -- hostile and careless files ------------------------------------------------------


@pytest.mark.parametrize("url", [
    "javascript:alert(document.domain)", " javascript:alert(1)", "JaVaScRiPt:alert(1)",
    "\tjavascript:alert(1)", "java\\tscript:alert(1)", "data:text/html,<script>x</script>",
    "vbscript:x", "file:///etc/passwd",
])
def test_a_consumer_url_that_is_not_http_or_relative_is_refused_at_its_line(tmp_path, url):
    text = PIPELINE.replace("  - id: dashboard\n",
                            f"  - id: dashboard\n    url: \"{url}\"\n")
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == ("consumers[0].url", line_of(text, "    url: "))
    assert "http(s) URL or a relative link" in str(err)


@pytest.mark.parametrize("url", ["https://bi.example/ads", "HTTP://bi.example", "/reports/a"])
def test_http_and_relative_consumer_urls_are_kept(tmp_path, url):
    text = PIPELINE.replace("  - id: dashboard\n", f"  - id: dashboard\n    url: \"{url}\"\n")
    assert load_config(write_config(tmp_path, text), env={}).catalog.consumers[0].url == url


def alias_bomb(levels: int) -> str:
    """~450 bytes that nine-fold every level: 9**12 values if copied."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_at_the_line_of_the_alias(tmp_path):
    import time

    text = PIPELINE.replace("control:\n", "x-bomb:\n  " + alias_bomb(12).replace(
        "\n", "\n  ").rstrip() + "\ncontrol:\n")
    started = time.monotonic()
    err = error_for(tmp_path, text)
    assert time.monotonic() - started < 2
    assert err.field == "yaml" and "aliases (*name) expand to more than 10,000 values" in str(err)
    assert "*a" in text.splitlines()[err.line - 1]  # the line of an alias that copies


def test_a_few_shared_blocks_still_load(tmp_path):
    need = "      - {dataset: sales.revenue, warn_after: 26h, error_after: 50h}\n"
    text = PIPELINE.replace(f"    requires:\n{need}", f"    requires: &needs\n{need}"
                            "  - id: wallboard\n    requires: *needs\n")
    config = load_config(write_config(tmp_path, text), env={})
    assert [c.requires for c in config.catalog.consumers][0] == \
        config.catalog.consumers[1].requires


def test_an_alias_inside_the_value_it_names_is_refused(tmp_path):
    text = PIPELINE.replace("control:\n", "loop: &x [*x]\ncontrol:\n")
    err = error_for(tmp_path, text)
    assert err.line == line_of(text, "loop: &x") and "refers to the value that contains it" \
        in str(err)


@pytest.mark.parametrize("nested", [
    "[" * 5000 + "]" * 5000,
    "{a: " * 5000 + "1" + "}" * 5000,
    "\n" + "".join("  " * i + "-\n" for i in range(1, 100)),
])
def test_very_deep_nesting_is_a_located_error_not_a_recursion_error(tmp_path, nested):
    text = PIPELINE.replace("control:\n", f"deep: {nested}\ncontrol:\n")
    err = error_for(tmp_path, text)
    assert err.field == "yaml" and "nested deeper than 32 levels" in str(err)
    assert line_of(text, "deep:") <= err.line <= line_of(text, "deep:") + 40


def test_an_integer_too_long_to_read_is_a_located_error(tmp_path):
    text = PIPELINE.replace("    max_retries: 2", "    max_retries: " + "9" * 5000)
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == ("jobs[1].max_retries", line_of(text, "max_retries: 999"))


def test_merge_keys_are_refused_with_a_reason(tmp_path):
    text = PIPELINE.replace("  - id: rates\n", "  - <<: {kind: noop}\n    id: rates\n")
    err = error_for(tmp_path, text)
    assert "merge keys (<<) are not supported" in str(err)
    assert err.line == line_of(text, "<<:")


# -- http_fetch's policy ------------------------------------------------------------------

FETCH_JOB = ("  - id: rates\n    kind: http_fetch\n    params: {url: \"URL\"}\n"
             "    schedule: {cron: \"0 6 * * *\"}\n")


def with_fetch(url: str, section: str = "") -> str:
    text = PIPELINE.replace("  - id: rates\n    kind: noop\n    schedule: {cron: \"0 6 * * *\"}\n",
                            FETCH_JOB.replace("URL", url))
    return text + section


def test_the_http_fetch_section_is_the_configs_policy_and_no_environment_variable(tmp_path):
    from freshet.core.egress import EgressPolicy

    text = with_fetch("https://api.example.com/rates.json",
                      "http_fetch:\n  allowed_hosts: [api.example.com, \"*.example.org\"]\n"
                      "  allow_private_addresses: false\n")
    config = load_config(write_config(tmp_path, text), env={})
    assert config.egress == EgressPolicy(("api.example.com", "*.example.org"), False, False)
    assert not [k for k, _ in config.functions.env if k.startswith("FRESHET_FETCH_")]


@pytest.mark.parametrize(("url", "section", "reason"), [
    ("http://169.254.169.254/computeMetadata/v1/", "", "link-local or metadata"),
    ("http://metadata.google.internal/x", "", "link-local or metadata"),
    ("https://other.example.net/x", "http_fetch:\n  allowed_hosts: [api.example.com]\n",
     "not in http_fetch.allowed_hosts"),
    ("ftp://api.example.com/x", "", "http(s) URL"),
])
def test_an_http_fetch_url_the_policy_refuses_is_named_at_its_line(tmp_path, url, section,
                                                                    reason):
    text = with_fetch(url, section)
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == ("jobs[1].params.url", line_of(text, url))
    assert reason in str(err)


@pytest.mark.parametrize(("section", "field"), [
    ("http_fetch:\n  allowed_hosts: [\"not a host\"]\n", "http_fetch.allowed_hosts[0]"),
    ("http_fetch:\n  allow_link_local: sometimes\n", "http_fetch.allow_link_local"),
    ("http_fetch:\n  follow_redirects: true\n", "http_fetch.follow_redirects"),
    ("functions:\n  env: {FRESHET_FETCH_ALLOW_LINK_LOCAL: \"true\"}\n",
     "functions.env.FRESHET_FETCH_ALLOW_LINK_LOCAL"),
])
def test_a_bad_http_fetch_policy_is_named(tmp_path, section, field):
    assert error_for(tmp_path, PIPELINE + section).field == field


def test_catalog_entries_are_capped_so_each_stays_small(tmp_path):
    ups = ", ".join(f"up{i}" for i in range(101))
    text = PIPELINE.replace("upstream: [sales.orders, finance.rates]", f"upstream: [{ups}]")
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == ("datasets[2].upstream", line_of(text, "up100"))
    needs = "".join("      - {dataset: sales.revenue, warn_after: 1h, error_after: 2h}\n"
                    for _ in range(1001))
    text = PIPELINE.replace(
        "      - {dataset: sales.revenue, warn_after: 26h, error_after: 50h}\n", needs)
    assert error_for(tmp_path, text).field == "consumers[0].requires"


# -- scheduling depth: catch-up, triggers, pools --------------------------------------

SCHEDULING = PIPELINE.replace("""  - id: rates
    kind: noop
    schedule: {cron: "0 6 * * *"}
    max_retries: 2
    produces: [finance.rates]
""", """  - id: rates
    kind: noop
    schedule: {cron: "0 6 * * *"}
    max_retries: 2
    catchup: all
    max_catchup: 6
    max_lateness: 45m
    pool: warehouse
    produces: [finance.rates]
  - id: revenue
    kind: noop
    trigger: {after: [sales.orders, finance.rates]}
    produces: [sales.revenue]
""").replace("jobs:\n", "pools:\n  warehouse: {max_concurrent: 4}\njobs:\n")


def test_catchup_triggers_and_pools_parse(tmp_path):
    config = load_config(write_config(tmp_path, SCHEDULING), env={})
    rates, revenue = config.jobs[1], config.jobs[2]
    assert (rates.catchup, rates.max_catchup, rates.max_lateness_s, rates.pool) == (
        "all", 6, 2700, "warehouse")
    assert revenue.schedule.none and revenue.trigger.after == ("sales.orders", "finance.rates")
    assert revenue.trigger.when == "all"
    assert [p.name for p in config.pools] == ["warehouse"]
    assert [q.name for q in config.all_queues] == ["freshet-runs", "freshet-runs-warehouse",
                                                   "freshet-runs-claims"]
    assert config.all_queues[1].max_concurrent_dispatches == 4
    assert config.all_queues[1].min_backoff_s == config.queues[0].min_backoff_s
    assert [(p.name, p.max_concurrent) for p in config.catalog.pools] == [
        ("default", 200), ("warehouse", 4)]


@pytest.mark.parametrize("old, new, field, needle", [
    ("    catchup: all", "    catchup: most", "jobs[1].catchup", "catchup: most"),
    ("    max_catchup: 6", "    max_catchup: 0", "jobs[1].max_catchup", "max_catchup: 0"),
    ("    max_lateness: 45m", "    max_lateness: soon", "jobs[1].max_lateness", "soon"),
    ("    pool: warehouse", "    pool: lake", "jobs[1].pool", "pool: lake"),
    ("  warehouse: {max_concurrent: 4}", "  warehouse: {max_concurrent: 0}",
     "pools.warehouse.max_concurrent", "max_concurrent: 0"),
    ("  warehouse: {max_concurrent: 4}", "  Ware_House: {max_concurrent: 4}", "pools.Ware_House",
     "Ware_House"),
    ("  warehouse: {max_concurrent: 4}", "  warehouse: {limit: 4}", "pools.warehouse.limit",
     "limit: 4"),
    ("after: [sales.orders, finance.rates]", "after: [sales.orders, finance.nope]",
     "jobs[2].trigger.after[1]", "finance.nope"),
    ("after: [sales.orders, finance.rates]}", "after: [sales.orders], when: most}",
     "jobs[2].trigger.when", "when: most"),
])
def test_scheduling_errors_name_file_line_and_field(tmp_path, old, new, field, needle):
    text = SCHEDULING.replace(old, new)
    assert text != SCHEDULING
    err = error_for(tmp_path, text)
    assert err.field == field, str(err)
    assert err.line == line_of(text, needle), str(err)


def test_a_job_without_schedule_or_trigger_is_refused(tmp_path):
    text = SCHEDULING.replace("    trigger: {after: [sales.orders, finance.rates]}\n", "")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[2].schedule" and "or give the job a trigger" in str(err)


def test_a_trigger_cycle_is_refused_with_the_cycle_named(tmp_path):
    text = SCHEDULING.replace("""    kind: noop
    schedule: {cron: "0 6 * * *"}
    max_retries: 2""", """    kind: noop
    trigger: {after: [sales.revenue]}
    max_retries: 2""")
    err = error_for(tmp_path, text)
    assert err.field == "jobs[2].trigger"
    assert "trigger cycle: revenue -[sales.revenue]-> rates -[finance.rates]-> revenue" in str(err)
    assert err.line == line_of(text, "trigger: {after: [sales.orders, finance.rates]}")


MAINTENANCE = """\
maintenance:
  - id: vacuum
    note: Warehouse vacuum
    cron: "30 1 * * *"
    duration: 2h
    timezone: Europe/London
    scope: {jobs: [orders], consumers: [dashboard]}
    mode: drain
  - id: migration
    start: 2026-12-01T22:00:00Z
    end: 2026-12-02T02:00:00Z
"""


def test_maintenance_windows_parse(tmp_path):
    config = load_config(write_config(tmp_path, PIPELINE + MAINTENANCE), env={})
    vacuum, migration = config.maintenance.windows
    assert (vacuum.cron, vacuum.timezone, vacuum.mode) == ("30 1 * * *", "Europe/London", "drain")
    assert vacuum.scope.jobs == ("orders",) and vacuum.scope.consumers == ("dashboard",)
    assert migration.scope.everything and migration.mode == "skip"


@pytest.mark.parametrize("old, new, field", [
    ("scope: {jobs: [orders],", "scope: {jobs: [ghost],", "maintenance[0].scope.jobs[0]"),
    ("consumers: [dashboard]}", "consumers: [nobody]}", "maintenance[0].scope.consumers[0]"),
    ("duration: 2h", "duration: forever", "maintenance[0].duration"),
    ("  - id: migration", "  - id: vacuum", "maintenance[1].id"),
    ("end: 2026-12-02T02:00:00Z", "end: 2026-11-02T02:00:00Z", "maintenance[1].end"),
    # issue 20 §4: on forever (every minute for 31 days), and past 48 h in 7 days
    ("duration: 2h", "duration: 31d", "maintenance[0].duration"),
    ("duration: 2h", "duration: 23h", "maintenance[0].duration"),
    ("duration: 2h", "duration: 99999999999d", "maintenance[0].duration"),
    ("duration: 2h", "duration: .nan", "maintenance[0].duration"),
])
def test_maintenance_errors_name_the_field_and_line(tmp_path, old, new, field):
    text = PIPELINE + MAINTENANCE.replace(old, new)
    err = error_for(tmp_path, text)
    assert err.field == field
    assert err.line == max(i for i, line in enumerate(text.splitlines(), 1) if new in line)


def test_a_window_on_at_every_instant_is_refused_at_its_line(tmp_path):
    """Issue 20 §4's attack: {cron: "* * * * *", duration: 31d}, no scope."""
    text = PIPELINE + 'maintenance:\n  - {id: forever, cron: "* * * * *", duration: 31d}\n'
    err = error_for(tmp_path, text)
    assert err.field == "maintenance[0].duration" and "smallest gap" in str(err)
    assert err.line == len(text.splitlines())


TRUST = """\
routes:
  - id: growth-slack
    type: slack
    url: {env: GROWTH_SLACK_URL}
    min_interval: 10m
  - id: ops-hook
    type: webhook
    url: https://ops.example/freshet
    secret: {secret_manager: projects/demo-freshet/secrets/ops-hook/versions/latest}
"""


def with_trust(text: str = PIPELINE) -> str:
    text = text.replace("""  - id: dashboard
    requires:""", """  - id: dashboard
    owner: finance
    routes: [growth-slack, ops-hook]
    deadlines:
      - {by: "0 7 * * 1-5", timezone: Europe/Paris, as_of: midnight}
      - {by: "0 12 * * *", as_of: 4h}
    requires:""")
    text = text.replace("  - key: sales.orders\n",
                        "  - key: sales.orders\n    routes: [ops-hook]\n")
    return text + TRUST


def test_routes_deadlines_and_owners_parse_and_round_trip_through_the_catalog(tmp_path):
    from freshet.core.catalog import Catalog

    config = load_config(write_config(tmp_path, with_trust()), env={})
    dashboard = config.catalog.consumers[0]
    assert dashboard.owner == "finance" and dashboard.routes == ("growth-slack", "ops-hook")
    assert [d.as_of for d in dashboard.deadlines] == ["midnight", "4h"]
    assert config.catalog.datasets["sales.orders"].routes == ("ops-hook",)
    slack, hook = config.catalog.routes
    assert slack.min_interval.total_seconds() == 600 and slack.url.env == "GROWTH_SLACK_URL"
    assert hook.secret.env == "FRESHET_ROUTE_OPS_HOOK_SECRET"
    assert Catalog.from_doc(config.catalog.to_doc()) == config.catalog


@pytest.mark.parametrize("old, new, field", [
    ("routes: [growth-slack, ops-hook]", "routes: [growth-slack, pager]",
     "consumers[0].routes[1]"),
    ("    routes: [ops-hook]\n", "    routes: [nope]\n", "datasets[0].routes[0]"),
    ('{by: "0 7 * * 1-5", timezone: Europe/Paris', '{by: "0 7 * * 1-5", timezone: Paris',
     "consumers[0].deadlines[0].timezone"),
    ("as_of: 4h}", "as_of: soon}", "consumers[0].deadlines[1].as_of"),
    ("min_interval: 10m", "min_interval: sometimes", "routes[0].min_interval"),
    ("  - id: ops-hook", "  - id: growth-slack", "routes[1].id"),
])
def test_route_and_deadline_errors_name_the_field_and_line(tmp_path, old, new, field):
    text = with_trust().replace(old, new)
    err = error_for(tmp_path, text)
    assert err.field == field
    assert err.line == max(i for i, line in enumerate(text.splitlines(), 1)
                           if new.strip().split("\n")[0] in line)


def test_the_demo_pipeline_shows_each_trust_feature():
    """make demo: a lagging watermark, a consumer with a deadline, a recurring window that
    comes round within 10 minutes, two routes (and an incident: freshet_local.demo)."""
    config = load_config(ROOT / "infra/demo/pipeline.yaml", env={})
    assert any(j.kind == "demo_lagging" for j in config.jobs)
    assert any(c.deadlines for c in config.catalog.consumers)
    (window,) = config.maintenance.windows
    assert window.recurring and window.cron == "*/15 * * * *"
    assert {r.type for r in config.catalog.routes} == {"slack", "webhook"}
    routed = [c for c in config.catalog.consumers if c.routes]
    assert {r for c in routed for r in c.routes} == {r.id for r in config.catalog.routes}


@pytest.mark.parametrize(("params", "field", "reason"), [
    ("{url: \"https://api.example.com/x\", format: xml}", "jobs[1].params.format",
     "json, csv or auto"),
    ("{url: \"https://api.example.com/x\", timeout_s: 99999}", "jobs[1].params.timeout_s",
     "up to 3600"),
    ("{url: \"https://api.example.com/x\", headers: {Host: evil}}",
     "jobs[1].params.headers.Host", "never sent"),
    ("{url: \"https://api.example.com/x\", watermark: {json_pth: a}}",
     "jobs[1].params.watermark.json_pth", "unknown key"),
    ("{url: \"https://api.example.com/x\", urll: y}", "jobs[1].params.urll", "unknown key"),
])
def test_each_kinds_own_params_check_runs_at_apply_and_is_named_at_its_line(tmp_path, params,
                                                                              field, reason):
    text = PIPELINE.replace("  - id: rates\n    kind: noop\n    schedule: {cron: \"0 6 * * *\"}\n",
                            FETCH_JOB.replace("{url: \"URL\"}", params))
    err = error_for(tmp_path, text)
    assert (err.field, err.line) == (field, line_of(text, "params:"))
    assert reason in str(err)


def test_noop_keeps_whatever_params_it_is_given():
    from freshet.loop.registry import CheckContext, check_params

    check_params("noop", {"anything": [1, {"x": 2}]}, CheckContext(), "jobs[0]")


def test_runs_are_kept_90_days_unless_retention_says_otherwise(tmp_path):
    assert load_config(write_config(tmp_path)).runs_days == 90
    kept = load_config(write_config(tmp_path, PIPELINE + "retention: {runs_days: 30}\n"))
    assert kept.runs_days == 30


@pytest.mark.parametrize("value, needle", [
    ("0", "between 1 and 3650"), ("3651", "between 1 and 3650"), ("30.5", "integer"),
    ("true", "integer"), ("soon", "integer")])
def test_a_bad_retention_is_named_with_its_line(tmp_path, value, needle):
    text = PIPELINE + f"retention:\n  runs_days: {value}\n"
    err = error_for(tmp_path, text)
    assert err.field == "retention.runs_days", str(err)
    assert err.line == line_of(text, "runs_days") and needle in str(err)
