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
    assert config.project == "demo-freshet" and config.region == "europe-west1"
    assert {j.kind for j in config.jobs} == {"http_fetch", "noop"}
    assert [s.target for s in config.control_schedules] == [
        "scheduler_tick", "recover_stuck_runs", "publish_status"]
    assert config.catalog.datasets["sales.revenue_daily"].upstream == (
        "sales.orders", "finance.exchange_rates")


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
])
def test_maintenance_errors_name_the_field_and_line(tmp_path, old, new, field):
    text = PIPELINE + MAINTENANCE.replace(old, new)
    err = error_for(tmp_path, text)
    assert err.field == field
    assert err.line == max(i for i, line in enumerate(text.splitlines(), 1) if new in line)


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
    assert window.recurring and window.cron == "*/10 * * * *"
    assert {r.type for r in config.catalog.routes} == {"slack", "webhook"}
    routed = [c for c in config.catalog.consumers if c.routes]
    assert {r for c in routed for r in c.routes} == {r.id for r in config.catalog.routes}
