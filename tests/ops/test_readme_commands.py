"""Every command the README (and docs/context.md, docs/reference.md) shows parses:
`make` targets exist, `freshet ...` lines are accepted by the CLI's parser (the demo's
options by the demo's), so the first thing a newcomer copies is never a usage error.
The gcloud commands of docs/deploy.md are run by tests/ops/test_deploy_commands.py."""

import re
import shlex

import pytest

from freshet.ops.cli import build_parser
from freshet_local.demo import parse_args as demo_args
from tests.ops.helpers import ROOT

SHOWN_IN = ("README.md", "docs/context.md", "docs/reference.md")


def shown_commands() -> list[tuple[str, str]]:
    """(file, command) for each command line of each ```sh block."""
    found = []
    for name in SHOWN_IN:
        text = (ROOT / name).read_text()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.split(r"\s{2,}#", line)[0].strip()
                inner = re.fullmatch(r'eval "\$\((.*)\)"', line)
                if line:
                    found.append((name, inner.group(1) if inner else line))
    return found


COMMANDS = shown_commands()


def test_the_readme_shows_commands_to_try():
    shown = [c for name, c in COMMANDS if name == "README.md"]
    assert "make demo" in shown and "make test" in shown
    assert sum(c.startswith(".venv/bin/freshet ") for c in shown) >= 10


@pytest.mark.parametrize("name, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_each_shown_command_parses(name, command):
    words = shlex.split(command)
    if words[0] == "make":
        makefile = (ROOT / "Makefile").read_text() + (ROOT / "infra/deploy.mk").read_text()
        assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), command
        return
    assert words[0] in (".venv/bin/freshet", "freshet"), f"{name}: {command}"
    argv = words[1:]
    if argv[:1] == ["demo"]:  # the demo's own command line (a plugin of the CLI)
        if argv[1:] != ["env"]:  # `demo env` is freshet_local.demo.env_cli
            demo_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
        assert callable(args.fn)
