"""The product never reaches into the work tree: `freshet cost` reads the benchmarks'
figures from a copy the package carries, and `freshet demo` is a subcommand the local
tooling registers (an entry point), not an import of freshet_local."""

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

from freshet.ops import cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "functions" / "freshet"


def probe(argv: list[str]) -> int:
    """A subcommand an installed package adds (registered by the test below)."""
    print("probe got", argv)
    return 7


def test_the_packaged_figures_are_the_benchmarks_figures():
    packaged = PACKAGE / "ops" / cli.MEASURED
    assert json.loads(packaged.read_text()) == json.loads(
        (ROOT / "bench" / "results.json").read_text()), (
        "bench/run_all.py writes both; after a merge that changed bench/results.json: "
        f"cp bench/results.json {packaged.relative_to(ROOT)}")


def test_freshet_cost_reads_its_figures_from_inside_the_package():
    default = Path(cli._default_measured()).resolve()
    assert default.is_file() and default.is_relative_to(PACKAGE)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.json" in pyproject["tool"]["setuptools"]["package-data"]["freshet.ops"]


def test_the_local_tooling_registers_freshet_demo_as_an_entry_point():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"][cli.PLUGIN_GROUP]["demo"]
    demo = EntryPoint("demo", target, cli.PLUGIN_GROUP).load()
    assert target.startswith("freshet_local.") and callable(demo)


def test_an_installed_plugin_is_a_subcommand_that_parses_its_own_options(
        tmp_path, monkeypatch, capsys):
    dist = tmp_path / "freshet_probe-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: freshet-probe\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{cli.PLUGIN_GROUP}]\nprobe = tests.ops.test_package_data:probe\n"
        "jobs = tests.ops.test_package_data:probe\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["probe", "--port", "9", "--help"]) == 7
    assert capsys.readouterr().out == "probe got ['--port', '9', '--help']\n"
    assert cli.main(["--help"]) == 0
    assert "probe" in capsys.readouterr().out
    assert cli.main(["jobs", "frobnicate"]) == 2  # a built-in keeps its name
    assert "probe got" not in capsys.readouterr().out


def test_without_the_local_tooling_freshet_demo_says_where_it_comes_from(capsys):
    if "demo" in cli.plugin_commands():
        return  # installed here: `freshet demo` is the tooling's
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make demo" in err
