"""Generate the exact deploy commands from the pipeline config into infra/deploy.mk.

    python -m freshet_local.deploy            # (re)write infra/deploy.mk
    python -m freshet_local.deploy --check    # exit 1 if infra/deploy.mk is out of date

The Makefile includes the fragment, so `make -n deploy` shows every command and
nothing needs editing by hand: change infra/pipeline.yaml, regenerate, commit.
Order: Firestore indexes and rules, the five functions (2nd gen, private, their own
service account; publish_status gets the notification routes' Secret Manager
references as environment variables) and who may invoke them, `freshet apply`
(queues, jobs, catalog, kill switches, Cloud Scheduler jobs), then one publish of the
status page.
"""

import argparse
import shlex
import sys
from pathlib import Path

from freshet.core.specs import ENTRY_POINTS
from freshet.ops.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "infra/pipeline.yaml"
OUTPUT = "infra/deploy.mk"
FIREBASE_CONFIG = "infra/firebase.firestore.json"
FIREBASE = "infra/node_modules/.bin/firebase"  # pinned in infra/package.json
TARGETS = ("deploy-firestore", "deploy-functions", "deploy-apply", "deploy-publish")


def _member(email: str) -> str:
    kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{email}"


def function_env(config: PipelineConfig, entry_point: str) -> list[tuple[str, str]]:
    fn = config.functions
    env = [
        ("GOOGLE_CLOUD_PROJECT", config.project),
        ("FRESHET_REGION", config.region),
        ("FRESHET_QUEUE", config.queue),
        ("FRESHET_RUN_TASK_URL", fn.url("run_task")),
        ("FRESHET_INVOKER_EMAIL", fn.invoker_email),
        ("FRESHET_AUDIENCE", fn.url(entry_point)),
        ("FRESHET_AUTH", "oidc"),
    ]
    if entry_point == "api" and fn.allowed_callers:
        env.append(("FRESHET_ALLOWED_CALLERS", ",".join(fn.allowed_callers)))
    if config.sync_modules:
        env.append(("FRESHET_SYNC_MODULES", ",".join(config.sync_modules)))
    return env + list(fn.env)


def secret_references(config: PipelineConfig) -> list[tuple[str, str]]:
    """(variable, projects/P/secrets/S/versions/V) for each route URL or secret the config
    keeps in Secret Manager: publish_status reads them as environment variables."""
    found = []
    for route in config.catalog.routes:
        for ref in (route.url, route.secret):
            if ref is not None and ref.secret_manager:
                found.append((ref.env, ref.secret_manager))
    return found


def _secret_version(path: str) -> tuple[str, str, str]:
    _, project, _, name, _, version = path.split("/")
    return project, name, version


def secret_flags(config: PipelineConfig, entry_point: str) -> list[str]:
    """--set-secrets for the function that sends notifications (the others need none)."""
    refs = secret_references(config) if entry_point == "publish_status" else []
    if not refs:
        return []
    pairs = []
    for env, path in refs:
        project, name, version = _secret_version(path)
        pairs.append(f"{env}=projects/{project}/secrets/{name}:{version}")
    return ["--set-secrets=" + ",".join(pairs)]


def secret_access(config: PipelineConfig) -> list[list[str]]:
    """The functions' account may read those secrets (and nothing else in the project)."""
    return [["gcloud", "secrets", "add-iam-policy-binding", name, f"--project={project}",
             f"--member={_member(config.functions.service_account)}",
             "--role=roles/secretmanager.secretAccessor", "--quiet"]
            for project, name, _ in sorted({_secret_version(p) for _, p in
                                            secret_references(config)})]


def deploy_function(config: PipelineConfig, entry_point: str) -> list[str]:
    fn = config.functions
    # '^|^' makes '|' gcloud's separator, so values may contain commas.
    env = "^|^" + "|".join(f"{k}={v}" for k, v in function_env(config, entry_point))
    return ["gcloud", "functions", "deploy", entry_point, "--gen2",
            f"--runtime={fn.runtime}", f"--region={config.region}",
            f"--project={config.project}", f"--source={fn.source}",
            f"--entry-point={entry_point}", "--trigger-http", "--no-allow-unauthenticated",
            f"--service-account={fn.service_account}", f"--set-env-vars={env}",
            *secret_flags(config, entry_point), "--quiet"]


def invokers(config: PipelineConfig, entry_point: str) -> list[str]:
    members = [config.functions.invoker_email]
    if entry_point == "api":
        members += list(config.functions.allowed_callers)
    return members


def commands(config: PipelineConfig, config_path: str = CONFIG) -> dict[str, list[list[str]]]:
    """Each make target's commands, as argv lists."""
    # publish_status renders with site/'s templates: ship them inside the source folder.
    site_copy = f"{config.functions.source}/site"
    functions = [["rm", "-rf", site_copy], ["mkdir", "-p", site_copy],
                 ["cp", "-R", "site/templates", "site/static", "site/status.schema.json",
                  site_copy], *secret_access(config)]
    for entry_point in ENTRY_POINTS:
        functions.append(deploy_function(config, entry_point))
        functions += [["gcloud", "functions", "add-invoker-policy-binding", entry_point,
                       f"--region={config.region}", f"--project={config.project}",
                       f"--member={_member(email)}"]
                      for email in invokers(config, entry_point)]
    publish = [["gcloud", "scheduler", "jobs", "run", s.name, f"--location={config.region}",
                f"--project={config.project}"]
               for s in config.control_schedules if s.target == "publish_status"]
    return {
        "deploy-firestore": [[FIREBASE, "--config", FIREBASE_CONFIG,
                              "deploy", "--only",
                              "firestore:indexes,firestore:rules",
                              f"--project={config.project}", "--non-interactive"]],
        "deploy-functions": functions,
        # The emulator variables must not send a cloud deploy's apply to the emulators.
        "deploy-apply": [["env", "-u", "FIRESTORE_EMULATOR_HOST", "-u",
                          "FRESHET_TASKS_EMULATOR_HOST", "freshet", "apply",
                          f"--config={config_path}"]],
        "deploy-publish": publish[:1],
    }


def _make_line(argv: list[str]) -> str:
    return "\t" + " ".join(shlex.quote(a) for a in argv).replace("$", "$$")


def render(config: PipelineConfig, config_path: str = CONFIG) -> str:
    lines = [
        f"# Generated by `python -m freshet_local.deploy` from {config_path}: do not edit.",
        "# After changing the config, regenerate it and commit both files.",
        f"# Project {config.project}, region {config.region}.",
        "",
        ".PHONY: deploy " + " ".join(TARGETS),
        "",
        "deploy: " + " ".join(TARGETS),
    ]
    for target, argvs in commands(config, config_path).items():
        lines += ["", f"{target}:"]
        lines += [_make_line(a) for a in argvs] or ["\t@true"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshet_local.deploy")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="fail if the output file is not what the config generates")
    args = parser.parse_args(argv)
    try:
        text = render(load_config(args.config), args.config)
    except ValueError as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"deploy: {args.output} is out of date; run python -m freshet_local.deploy",
                  file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
