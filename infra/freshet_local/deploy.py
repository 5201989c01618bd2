"""Generate every deploy command from the pipeline config into infra/deploy.mk.

    python -m freshet_local.deploy                  # (re)write infra/deploy.mk (make deploy-config)
    python -m freshet_local.deploy --check          # exit 1 if infra/deploy.mk is out of date
    python -m freshet_local.deploy preflight --project=P   # what `make deploy` checks first
    python -m freshet_local.deploy digest NAME --project=P # a function's source+flags digest
    python -m freshet_local.deploy_run retry -- CMD...  # again while IAM has not caught up
    python -m freshet_local.deploy wait database|indexes|page --project=P  # bounded waits
    python -m freshet_local.deploy function NAME --project=P -- DEPLOY...  # see deploy_run

The Makefile includes the fragment, so `make -n deploy` shows every command and
nothing needs editing by hand. `make deploy PROJECT=my-project` deploys into that
project: the fragment names it `$(PROJECT)` wherever the config derives a name from
it (service accounts, URLs, buckets).

Order, and the make prerequisites that keep it under `make -j`: preflight (reads only;
nothing is created unless it passes) -> APIs -> service accounts -> roles | Firestore
database (awaited), indexes (awaited READY), rules, the runs' TTL | buckets | queues ->
the five functions (each awaited ACTIVE, with its invokers; publish_status gets the
notification routes' Secret Manager references as environment variables) -> the image
repository's cleanup policy -> `freshet apply` (queues, jobs, catalog, kill switches,
Cloud Scheduler jobs) -> a first publish, awaited before the URL is printed. Every
step that creates something first checks whether it exists, so a second `make deploy`
changes nothing and says so, and a failed one resumes where it stopped. What each wait
waits for, its bound and the variables that change them: deploy_run, docs/deploy.md.

`function_env` is the one place a function's environment is decided: deploy.mk's
--set-env-vars and the cloud-shaped local run (freshet_local.cloud_local) both use it.
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from freshet.core.limits import memory_mib
from freshet.core.specs import ENTRY_POINTS
from freshet.ops import engine_access
from freshet.ops.config import PipelineConfig, load_config
from freshet_local import deploy_run

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "infra/pipeline.yaml"
OUTPUT = "infra/deploy.mk"
FIREBASE_CONFIG = "infra/firebase.firestore.json"
FIREBASE = "infra/node_modules/.bin/firebase"  # pinned in infra/package.json
PYTHON = ".venv/bin/python"
FRESHET = ".venv/bin/freshet"
# A valid project id that never occurs otherwise: rendered as $(PROJECT) in deploy.mk.
MARKER = "freshet-project-marker"
PLACEHOLDERS = ("your-project-id",)
DIGEST_LABEL = "freshet-digest"
FIRESTORE_DATABASE = "(default)"

APIS = (
    "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com", "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com", "firestore.googleapis.com",
    "firebaserules.googleapis.com", "storage.googleapis.com", "iam.googleapis.com",
    "logging.googleapis.com", "cloudresourcemanager.googleapis.com",
    # Operators impersonate the allowed callers' accounts (README, "Calling the API").
    "iamcredentials.googleapis.com",
)
RUNTIME_PROJECT_ROLES = ("roles/datastore.user",)  # Firestore grants no narrower scope
BUILD_PROJECT_ROLES = ("roles/cloudbuild.builds.builder",)
BUCKET_WRITER_ROLE = "roles/storage.objectUser"
VIEWER_ROLE = "roles/storage.objectViewer"
ENQUEUER_ROLE = "roles/cloudtasks.enqueuer"
ACT_AS_ROLE = "roles/iam.serviceAccountUser"
SOURCE_IGNORED = ("__pycache__", ".pytest_cache", ".gcloudignore", ".import_linter_cache")
CLEANUP_POLICY = "infra/gcf-artifacts-cleanup.json"
ARTIFACTS_REPOSITORY = "gcf-artifacts"  # where Cloud Functions keeps the built images
SAMPLE_ACCOUNT = "you@example.com"  # stands for the deploying account in `also` commands
SAMPLE_PROJECT_NUMBER = "123456789012"


# -- commands ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One line of a make recipe. `mode` says how `run` and `check` combine:

    run        run it (through `retry` when `retry`: IAM needs a moment to know a new
               service account)
    ensure     run it only when `check` fails (the thing is missing), else say it exists
    ensure-if  the same, where `check` finds the thing by printing something
    remove     run it only when `check` succeeds (the thing is there), else say so
    remove-if  the same, where `check` finds the thing by printing something
    deploy     a function deploy, handed to `via` (deploy_run.deploy_function), which
               reads the function with `check` (its digest label and state) and skips
               the deploy only when both say unchanged and ACTIVE
    say        only print `what`

    `via` runs the step through a helper of this module (a wait, the function deploy);
    `also` lists the gcloud commands that helper runs, for the parse test.
    """

    mode: str = "run"
    run: tuple[str, ...] = ()
    check: tuple[str, ...] = ()
    what: str = ""
    retry: bool = False
    via: tuple[str, ...] = ()
    also: tuple[tuple[str, ...], ...] = ()

    def commands(self) -> list[tuple[str, ...]]:
        """Every Google CLI command this step may run (what the parse test runs), without
        an `env VAR=value` in front."""
        found = []
        run = self.run + ((f"--update-labels={DIGEST_LABEL}={'0' * 40}",)
                          if self.mode == "deploy" else ())
        for argv in (self.check, run, *self.also):
            tools = [i for i, a in enumerate(argv) if a in ("gcloud", FIREBASE)]
            if tools and all(a == "env" or "=" in a for a in argv[:tools[0]]):
                found.append(argv[tools[0]:])
        return found


def _q(argv: Iterable[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def render_step(step: Step, resume: str = "") -> str:
    """The step as shell text (before make's escaping). With `resume` (the command that
    resumes, e.g. `make deploy PROJECT=P`), a failing command is followed by one line
    naming it and that command (the helpers print their own)."""
    text = _shell(step)
    if not resume or step.mode == "say" or step.via or step.run[:1] == (PYTHON,):
        return text  # this module's own steps say what failed themselves
    name = step.what or _command_name(step.run)
    line = (f"deploy: {name} failed (its error is above): fix the cause, then resume "
            f"with `{resume}` (finished steps are skipped)")
    return f"{text} || {{ echo {shlex.quote(line)} >&2; exit 1; }}"


def _command_name(argv: tuple[str, ...]) -> str:
    """`gcloud services enable`: the command's words before its first argument or flag."""
    words = []
    for arg in argv:
        if arg.startswith("-") or any(c in arg for c in "./@=:") and words:
            break
        words.append(arg)
    return " ".join(words[:5])


def _shell(step: Step) -> str:
    run, check = _q(step.run), _q(step.check)
    if step.retry:
        run = f"{PYTHON} -m freshet_local.deploy_run retry -- {run}"
    if step.via:
        run = f"{_q(step.via)} -- {run}" if step.run else _q(step.via)
    if step.mode == "say":
        return "@echo " + shlex.quote(step.what)
    if step.mode in ("ensure", "ensure-if"):
        found = (f'[ -n "$({check} 2>/dev/null)" ]' if step.mode == "ensure-if"
                 else f"{check} >/dev/null 2>&1")
        return f"if {found}; then echo {shlex.quote('  exists: ' + step.what)}; else {run}; fi"
    if step.mode in ("remove", "remove-if"):
        found = (f'[ -n "$({check} 2>/dev/null)" ]' if step.mode == "remove-if"
                 else f"{check} >/dev/null 2>&1")
        return f"if {found}; then {run}; else echo {shlex.quote('  absent: ' + step.what)}; fi"
    return run


def _say(text: str) -> Step:
    return Step("say", what=text)


def _helper(config: PipelineConfig, action: str, *args: str,
            also: Iterable[tuple[str, ...]] = (), config_path: str = CONFIG) -> Step:
    """A step run by this module's `action` (deploy_run), naming the commands it runs."""
    return Step(via=(PYTHON, "-m", "freshet_local.deploy", action, *args,
                     f"--project={config.project}", f"--config={config_path}"),
                also=tuple(also))


def _member(email: str) -> str:
    kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{email}"


def _own_account(email: str, project: str) -> bool:
    return email.endswith(f"@{project}.iam.gserviceaccount.com")


# -- the functions' environment (deploy and the cloud-shaped local run) --------------

def function_env(config: PipelineConfig, entry_point: str) -> list[tuple[str, str]]:
    """Every variable a function needs, as deploy sets it: none is left to set by hand
    (--set-env-vars replaces them all on each deploy)."""
    fn, site = config.functions, config.site
    tick_timeout = fn.limits_for("scheduler_tick").timeout_s
    env = [
        ("GOOGLE_CLOUD_PROJECT", config.project),
        ("FRESHET_REGION", config.region),
        ("FRESHET_QUEUE", config.queue),
        ("FRESHET_RUN_TASK_URL", fn.url("run_task")),
        # The claim handler is scheduler_tick called by Cloud Tasks (freshet.core.herd).
        ("FRESHET_CLAIM_URL", fn.url("scheduler_tick")),
        ("FRESHET_DISPATCH_SHARDS", str(config.dispatch_shards)),
        ("FRESHET_INVOKER_EMAIL", fn.invoker_email),
        ("FRESHET_AUDIENCE", fn.url(entry_point)),
        ("FRESHET_AUTH", "oidc"),
        ("FRESHET_DISPATCH_DEADLINE_S", f"{config.run_queue.dispatch_deadline_s:g}"),
        # The tick stops starting work well before its own timeout.
        ("FRESHET_TICK_BUDGET_S", str(max(5, min(50, tick_timeout - 10)))),
        ("FRESHET_SITE_BUCKET", site.bucket),
        ("FRESHET_SNAPSHOT_BUCKET", site.snapshot_bucket),
        ("FRESHET_SITE_URL", site.url),
        ("FRESHET_LOG_FORMAT", "json"),
        ("FRESHET_RUN_RETENTION_DAYS", str(config.runs_days)),
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


def secret_access(config: PipelineConfig) -> list[Step]:
    """The functions' account may read those secrets (and nothing else in the project)."""
    return [Step(run=("gcloud", "secrets", "add-iam-policy-binding", name,
                      f"--project={project}",
                      f"--member={_member(config.functions.service_account)}",
                      "--role=roles/secretmanager.secretAccessor", "--format=none"),
                 retry=True)
            for project, name, _ in sorted({_secret_version(p) for _, p in
                                            secret_references(config)})]


def invokers(config: PipelineConfig, entry_point: str) -> list[str]:
    """Who deploy lets call the function (roles/run.invoker): the invoker account, and
    on the api the operators too."""
    members = [config.functions.invoker_email]
    if entry_point == "api":
        members += list(config.functions.allowed_callers)
    return members


# -- targets -----------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    deps: tuple[str, ...] = ()
    steps: list[Step] = field(default_factory=list)
    doc: str = ""
    purge: list[Step] = field(default_factory=list)  # only with PURGE=1

    def all_steps(self) -> list[Step]:
        return self.steps + self.purge


def _loc(config: PipelineConfig) -> list[str]:
    return [f"--project={config.project}"]


def preflight_target(config: PipelineConfig, config_path: str) -> Target:
    return Target("deploy-check", ("setup",), [
        _say("== Preflight: nothing is created unless every check passes"),
        _helper(config, "preflight", also=preflight_commands(config, SAMPLE_ACCOUNT),
                config_path=config_path)],
        "refuse placeholder ids; check tools, credentials, billing, IAM, quota, names")


def preflight_commands(config: PipelineConfig, account: str) -> list[tuple[str, ...]]:
    """The gcloud reads preflight makes, in order (deploy_run judges what they answer)."""
    return [("gcloud", "config", "get-value", "account"),
            ("gcloud", "version", "--format=json"),
            ("gcloud", "billing", "projects", "describe", config.project,
             "--format=value(billingEnabled)"),
            ("gcloud", "projects", "get-iam-policy", config.project,
             "--flatten=bindings[].members", f"--filter=bindings.members={_member(account)}",
             "--format=value(bindings.role)"),
            ("gcloud", "alpha", "quotas", "info", "list", "--service=run.googleapis.com",
             f"--project={config.project}", "--format=json")]


def apis_target(config: PipelineConfig) -> Target:
    # Secret Manager only when a notification route keeps its URL or secret there.
    apis = (*APIS, "secretmanager.googleapis.com") if secret_references(config) else APIS
    return Target("deploy-apis", ("deploy-check",), [
        _say(f"== Enabling the APIs Freshet uses in {config.project}"),
        Step(run=("gcloud", "services", "enable", *apis, *_loc(config)))])


def accounts_target(config: PipelineConfig) -> Target:
    fn, project = config.functions, config.project
    accounts = (("runtime: what the functions run as", fn.service_account),
                ("invoker: Cloud Scheduler and Cloud Tasks call the functions as it",
                 fn.invoker_email),
                ("build: Cloud Build builds the functions as it", fn.build_service_account))
    steps = [_say("== Service accounts")]
    for description, email in dict.fromkeys(accounts):
        if not _own_account(email, project):
            continue  # another project's account: used as given, never created here
        steps.append(Step(
            "ensure",
            check=("gcloud", "iam", "service-accounts", "describe", email, *_loc(config)),
            run=("gcloud", "iam", "service-accounts", "create", email.split("@")[0],
                 f"--display-name=Freshet {description.split(':')[0]}",
                 f"--description=Freshet {description}", *_loc(config)),
            what=email))
    return Target("deploy-accounts", ("deploy-apis",), steps)


def iam_target(config: PipelineConfig) -> Target:
    fn = config.functions
    project_binding = ("gcloud", "projects", "add-iam-policy-binding", config.project)
    steps = [_say("== Roles, each at the narrowest scope Google offers for it")]
    runtime_roles = RUNTIME_PROJECT_ROLES + ((engine_access.BIGQUERY_JOB_ROLE,)
                                             if engine_access.needs_bigquery_jobs(config) else ())
    for email, roles in ((fn.service_account, runtime_roles),
                         (fn.build_service_account, BUILD_PROJECT_ROLES)):
        steps += [Step(run=(*project_binding, f"--member={_member(email)}", f"--role={role}",
                            "--condition=None", "--format=none"), retry=True)
                  for role in roles]
    # Creating a task that carries an OIDC token of the invoker is acting as it.
    steps.append(Step(run=(
        "gcloud", "iam", "service-accounts", "add-iam-policy-binding", fn.invoker_email,
        f"--member={_member(fn.service_account)}", f"--role={ACT_AS_ROLE}",
        *_loc(config), "--format=none"), retry=True))
    steps += secret_access(config) + engine_grants(config)
    return Target("deploy-iam", ("deploy-accounts",), steps)


def engine_grants(config: PipelineConfig) -> list[Step]:
    """The runtime account's roles on each Cloud Run job a `cloud_run_job` runs, granted
    on that job alone (freshet.ops.engine_access). The job must exist: Freshet never
    creates one."""
    member = _member(config.functions.service_account)
    return [Step(run=("gcloud", "run", "jobs", "add-iam-policy-binding", job.name,
                      f"--region={job.region}", f"--project={job.project}",
                      f"--member={member}", f"--role={role}", "--format=none"), retry=True)
            for job in engine_access.cloud_run_jobs(config)
            for role, _ in engine_access.RUN_JOB_ROLES]


def database_describe(config: PipelineConfig) -> tuple[str, ...]:
    return ("gcloud", "firestore", "databases", "describe", f"--database={FIRESTORE_DATABASE}",
            *_loc(config))


def indexes_list(config: PipelineConfig) -> tuple[str, ...]:
    return ("gcloud", "firestore", "indexes", "composite", "list",
            f"--database={FIRESTORE_DATABASE}", *_loc(config), "--format=value(state)")


def expected_indexes(root: Path = ROOT) -> int:
    return len(json.loads((root / "infra/firestore.indexes.json").read_text())["indexes"])


def firestore_target(config: PipelineConfig, config_path: str = CONFIG) -> Target:
    database = f"--database={FIRESTORE_DATABASE}"
    return Target("deploy-firestore", ("deploy-apis",), [
        _say(f"== Firestore database in {config.firestore_location} "
                 "(permanent), indexes and rules"),
        Step("ensure",
             check=("gcloud", "firestore", "databases", "describe", database, *_loc(config)),
             run=("gcloud", "firestore", "databases", "create", database,
                  f"--location={config.firestore_location}", "--type=firestore-native",
                  "--delete-protection", *_loc(config)),
             what=f"Firestore database {FIRESTORE_DATABASE}"),
        # gcloud returns before the database is ready; firebase-tools, seeing a 404, would
        # try to create it again and fail with 409.
        _helper(config, "wait", "database", also=[database_describe(config)],
                config_path=config_path),
        Step(run=("env", f"GOOGLE_CLOUD_QUOTA_PROJECT={config.project}", FIREBASE,
                  "--config", FIREBASE_CONFIG, "deploy", "--only",
                  "firestore:indexes,firestore:rules", f"--project={config.project}",
                  "--non-interactive"), what="firebase deploy of the indexes and rules"),
        # Runs past their retention are deleted by Firestore (within about a day).
        Step("ensure-if",
             check=("gcloud", "firestore", "fields", "ttls", "list", "--collection-group=runs",
                    database, *_loc(config), "--filter=name:expire_at", "--format=value(name)"),
             run=("gcloud", "firestore", "fields", "ttls", "update", "expire_at",
                  "--collection-group=runs", "--enable-ttl", database, "--async",
                  *_loc(config)),
             what="TTL policy on runs.expire_at"),
        # The tick's and the publish's queries fail until their indexes are READY.
        _helper(config, "wait", "indexes", also=[indexes_list(config)],
                config_path=config_path),
    ])


def buckets_target(config: PipelineConfig, config_path: str = CONFIG) -> Target:
    site, fn = config.site, config.functions
    steps = [_say("== Buckets: the status page and the snapshots")]
    for bucket, public in ((site.bucket, site.public), (site.snapshot_bucket, False)):
        url = f"gs://{bucket}"
        pap = "--no-public-access-prevention" if public else "--public-access-prevention"
        steps.append(Step(
            "ensure", check=("gcloud", "storage", "buckets", "describe", url, *_loc(config)),
            run=("gcloud", "storage", "buckets", "create", url, f"--location={config.region}",
                 "--uniform-bucket-level-access", pap, *_loc(config)),
            what=url))
        # Declared every time: turning `public` off shuts the page again.
        steps.append(Step(run=("gcloud", "storage", "buckets", "update", url, pap,
                               *_loc(config))))
        steps.append(Step(run=_bucket_binding(url, _member(fn.service_account),
                                              BUCKET_WRITER_ROLE, config), retry=True))
    site_url = f"gs://{site.bucket}"
    members = list(site.viewers) + (["allUsers"] if site.public else [])
    # The deploying account opens the page too, whoever it is (read at deploy time).
    steps.append(_helper(config, "grant-viewer", also=[
        ("gcloud", "config", "get-value", "account"),
        _bucket_binding(site_url, _member(SAMPLE_ACCOUNT), VIEWER_ROLE, config)],
        config_path=config_path))
    steps += [Step(run=_bucket_binding(site_url, m, VIEWER_ROLE, config)) for m in members]
    return Target("deploy-buckets", ("deploy-accounts",), steps)


def _bucket_binding(url: str, member: str, role: str, config: PipelineConfig) -> tuple:
    return ("gcloud", "storage", "buckets", "add-iam-policy-binding", url,
            f"--member={member}", f"--role={role}", *_loc(config), "--format=none")


def queues_target(config: PipelineConfig) -> Target:
    steps = [_say("== Cloud Tasks queues (freshet apply keeps their settings)")]
    where = [f"--location={config.region}", *_loc(config)]
    for q in config.all_queues:  # the declared ones and one per pool
        steps.append(Step(
            "ensure", check=("gcloud", "tasks", "queues", "describe", q.name, *where),
            run=("gcloud", "tasks", "queues", "create", q.name, *where,
                 f"--max-attempts={q.max_attempts}", f"--min-backoff={q.min_backoff_s:g}s",
                 f"--max-backoff={q.max_backoff_s:g}s", f"--max-doublings={q.max_doublings}",
                 f"--max-dispatches-per-second={q.max_dispatches_per_second:g}",
                 f"--max-concurrent-dispatches={q.max_concurrent_dispatches}"),
            what=f"queue {q.name}"))
        steps.append(Step(run=(
            "gcloud", "tasks", "queues", "add-iam-policy-binding", q.name, *where,
            f"--member={_member(config.functions.service_account)}",
            f"--role={ENQUEUER_ROLE}", "--format=none"), retry=True))
    return Target("deploy-queues", ("deploy-accounts",), steps)


def source_target(config: PipelineConfig) -> Target:
    # publish_status renders with site/'s templates: ship them inside the source folder.
    site_copy = f"{config.functions.source}/site"
    return Target("deploy-source", ("deploy-check",), [
        Step(run=("rm", "-rf", site_copy)), Step(run=("mkdir", "-p", site_copy)),
        Step(run=("cp", "-R", "site/templates", "site/static", "site/status.schema.json",
                  site_copy))])


def deploy_function(config: PipelineConfig, entry_point: str) -> list[str]:
    fn = config.functions
    limits = fn.limits_for(entry_point)
    # '^|^' makes '|' gcloud's separator, so values may contain commas.
    env = "^|^" + "|".join(f"{k}={v}" for k, v in function_env(config, entry_point))
    argv = ["gcloud", "functions", "deploy", entry_point, "--gen2",
            f"--runtime={fn.runtime}", f"--region={config.region}",
            f"--project={config.project}", f"--source={fn.source}",
            f"--entry-point={entry_point}", "--trigger-http", "--no-allow-unauthenticated",
            f"--service-account={fn.service_account}",
            f"--build-service-account=projects/{config.project}/serviceAccounts/"
            f"{fn.build_service_account}",
            f"--timeout={limits.timeout_s}s", f"--memory={limits.memory}"]
    if limits.cpu:
        argv.append(f"--cpu={limits.cpu}")
    argv += [f"--max-instances={limits.max_instances}",
             f"--concurrency={limits.concurrency}", f"--set-env-vars={env}",
             *secret_flags(config, entry_point), "--quiet"]
    return argv


def function_describe(config: PipelineConfig, entry_point: str) -> tuple[str, ...]:
    """Its digest label and state, tab-separated (deploy_run.read_function)."""
    return ("gcloud", "functions", "describe", entry_point, "--gen2",
            f"--region={config.region}", f"--project={config.project}",
            f"--format=value(labels.{DIGEST_LABEL},state)")


def function_target(config: PipelineConfig, entry_point: str,
                    config_path: str = CONFIG) -> Target:
    where = [f"--region={config.region}", f"--project={config.project}"]
    via = (PYTHON, "-m", "freshet_local.deploy", "function", entry_point,
           f"--project={config.project}", f"--config={config_path}")
    steps = [_say(f"== Function {entry_point}"),
             Step("deploy", run=tuple(deploy_function(config, entry_point)),
                  check=function_describe(config, entry_point), via=via,
                  what=f"function {entry_point}")]
    steps += [Step(run=("gcloud", "functions", "add-invoker-policy-binding", entry_point,
                        *where, f"--member={_member(email)}", "--format=none"), retry=True)
              for email in invokers(config, entry_point)]
    return Target(f"deploy-function-{entry_point}",
                  ("deploy-source", "deploy-iam", "deploy-firestore", "deploy-buckets",
                   "deploy-queues"), steps)


def apply_target(config: PipelineConfig, config_path: str) -> Target:
    # The emulator variables must not send a cloud deploy's apply to the emulators.
    return Target("deploy-apply", ("deploy-functions",), [
        _say("== freshet apply: queues, jobs, catalog, kill switches, Cloud Scheduler"),
        Step(run=("env", "-u", "FIRESTORE_EMULATOR_HOST", "-u", "FRESHET_TASKS_EMULATOR_HOST",
                  "-u", "STORAGE_EMULATOR_HOST", f"GOOGLE_CLOUD_QUOTA_PROJECT={config.project}",
                  FRESHET, "apply", f"--config={config_path}",
                  f"--project={config.project}"), what="freshet apply")])


def publish_target(config: PipelineConfig, config_path: str) -> Target:
    steps = [_say("== A first publish of the status page")]
    run = publish_run(config)
    if run:
        steps.append(Step(run=run))
        # The URL is printed only once the page is there.
        steps.append(_helper(config, "wait", "page", also=[page_describe(config), run],
                             config_path=config_path))
    viewers = ("anyone" if config.site.public
               else ", ".join(["you (the deploying account)", *config.site.viewers]))
    steps += [_say(f"Status page: {config.site.url} (readers: {viewers})"),
              _say(f"API: {config.functions.url('api')} (see README: Calling the API)"),
              _say(f"Check it: {FRESHET} doctor --config={config_path} "
                   f"--project={config.project}")]
    return Target("deploy-publish", ("deploy-apply",), steps)


def publish_run(config: PipelineConfig) -> tuple[str, ...]:
    publish = [s.name for s in config.control_schedules if s.target == "publish_status"]
    return (("gcloud", "scheduler", "jobs", "run", publish[0], f"--location={config.region}",
             *_loc(config)) if publish else ())


def page_describe(config: PipelineConfig) -> tuple[str, ...]:
    return ("gcloud", "storage", "objects", "describe",
            f"gs://{config.site.bucket}/index.html", *_loc(config), "--format=value(name)")


def cleanup_policy_json() -> str:
    """The functions' image repository keeps each image's two newest versions and
    deletes the rest after a day: old builds stop costing storage."""
    return json.dumps([
        {"name": "keep-newest", "action": {"type": "Keep"},
         "mostRecentVersions": {"keepCount": 2}},
        {"name": "delete-old", "action": {"type": "Delete"},
         "condition": {"tagState": "any", "olderThan": "1d"}},
    ], indent=2) + "\n"


def functions_done_target(config: PipelineConfig, functions: list[Target]) -> Target:
    return Target("deploy-functions", tuple(t.name for t in functions), [
        _say(f"== Cleanup policy on {ARTIFACTS_REPOSITORY}, where the images of the functions "
             "are kept"),
        Step(run=("gcloud", "artifacts", "repositories", "set-cleanup-policies",
                  ARTIFACTS_REPOSITORY, f"--location={config.region}", *_loc(config),
                  f"--policy={CLEANUP_POLICY}", "--no-dry-run", "--format=none"))])


def deploy_targets(config: PipelineConfig, config_path: str = CONFIG) -> list[Target]:
    functions = [function_target(config, ep, config_path) for ep in ENTRY_POINTS]
    return [
        Target("deploy", ("deploy-publish",), doc="everything, in order"),
        preflight_target(config, config_path), apis_target(config), accounts_target(config),
        iam_target(config), firestore_target(config, config_path),
        buckets_target(config, config_path), queues_target(config), source_target(config),
        *functions, functions_done_target(config, functions),
        apply_target(config, config_path), publish_target(config, config_path),
    ]


# -- undeploy ----------------------------------------------------------------------------

def function_buckets(config: PipelineConfig, number: str) -> list[str]:
    """The buckets Cloud Functions (2nd gen) creates for the uploaded sources."""
    return [f"gcf-v2-sources-{number}-{config.region}", f"gcf-v2-uploads-{number}-{config.region}"]


def project_number(config: PipelineConfig) -> tuple[str, ...]:
    return ("gcloud", "projects", "describe", config.project, "--format=value(projectNumber)")


def purge_commands(config: PipelineConfig, number: str) -> list[tuple[str, ...]]:
    """Per function bucket: is it there, then delete it with its objects."""
    found = []
    for bucket in function_buckets(config, number):
        found += [("gcloud", "storage", "buckets", "describe", f"gs://{bucket}", *_loc(config),
                   "--format=value(name)"),
                  ("gcloud", "storage", "rm", "--recursive", f"gs://{bucket}", *_loc(config))]
    return found


def undeploy_target(config: PipelineConfig, config_path: str = CONFIG) -> Target:
    """Removes what deploy created. Keeps the Firestore data, the buckets, the queues and
    the functions' images unless PURGE=1 (a deleted queue's name stays reserved for 7
    days). The APIs stay enabled (costless by themselves; other things may use them):
    the last lines list them with the command that disables them."""
    fn, where = config.functions, [f"--location={config.region}", *_loc(config)]
    region = [f"--region={config.region}", *_loc(config)]
    steps = [_say(f"== Removing Freshet from {config.project}")]
    for s in config.control_schedules:
        steps.append(_remove(("gcloud", "scheduler", "jobs", "describe", s.name, *where),
                             ("gcloud", "scheduler", "jobs", "delete", s.name, *where,
                              "--quiet"), f"scheduler job {s.name}"))
    for ep in ENTRY_POINTS:
        steps.append(_remove(("gcloud", "functions", "describe", ep, "--gen2", *region),
                             ("gcloud", "functions", "delete", ep, "--gen2", *region,
                              "--quiet"), f"function {ep}"))
    for q in config.all_queues:  # pending deliveries would only fail: drop them
        steps.append(_remove(("gcloud", "tasks", "queues", "describe", q.name, *where),
                             ("gcloud", "tasks", "queues", "purge", q.name, *where,
                              "--quiet"), f"tasks of queue {q.name}"))
    for email, roles in ((fn.service_account, RUNTIME_PROJECT_ROLES),
                         (fn.build_service_account, BUILD_PROJECT_ROLES)):
        for role in roles:
            steps.append(Step(
                "remove-if",
                check=("gcloud", "projects", "get-iam-policy", config.project,
                       "--flatten=bindings[].members", f"--filter=bindings.role={role} AND "
                       f"bindings.members={_member(email)}", "--format=value(bindings.role)"),
                run=("gcloud", "projects", "remove-iam-policy-binding", config.project,
                     f"--member={_member(email)}", f"--role={role}", "--condition=None",
                     "--format=none"), what=f"{role} of {email}"))
    for email in dict.fromkeys((fn.service_account, fn.invoker_email,
                                fn.build_service_account)):
        if _own_account(email, config.project):
            steps.append(_remove(
                ("gcloud", "iam", "service-accounts", "describe", email, *_loc(config)),
                ("gcloud", "iam", "service-accounts", "delete", email, *_loc(config),
                 "--quiet"), f"service account {email}"))
    apis = " ".join(APIS)
    steps += [_say(f"APIs left enabled (no cost by themselves): {apis}"),
              _say(f"To disable them (if nothing else in {config.project} uses them): "
                   f"gcloud services disable {apis} --project={config.project}")]
    purge = [_say("== PURGE=1: deleting the queues, the buckets, the images and sources of "
                  "the functions, and the Firestore database")]
    for q in config.all_queues:
        purge.append(_remove(("gcloud", "tasks", "queues", "describe", q.name, *where),
                             ("gcloud", "tasks", "queues", "delete", q.name, *where,
                              "--quiet"), f"queue {q.name}"))
    for bucket in (config.site.bucket, config.site.snapshot_bucket):
        url = f"gs://{bucket}"
        purge.append(_remove(("gcloud", "storage", "buckets", "describe", url, *_loc(config)),
                             ("gcloud", "storage", "rm", "--recursive", url, *_loc(config)),
                             url))
    database = f"--database={FIRESTORE_DATABASE}"
    describe = ("gcloud", "firestore", "databases", "describe", database, *_loc(config))
    purge.append(_remove(describe, ("gcloud", "firestore", "databases", "update", database,
                                    "--no-delete-protection", *_loc(config)),
                         "delete protection"))
    purge.append(_remove(describe, ("gcloud", "firestore", "databases", "delete", database,
                                    *_loc(config), "--quiet"),
                         f"Firestore database {FIRESTORE_DATABASE}"))
    purge.append(_remove(("gcloud", "artifacts", "repositories", "describe",
                          ARTIFACTS_REPOSITORY, f"--location={config.region}", *_loc(config)),
                         ("gcloud", "artifacts", "repositories", "delete", ARTIFACTS_REPOSITORY,
                          f"--location={config.region}", *_loc(config), "--quiet"),
                         f"the functions' images ({ARTIFACTS_REPOSITORY})"))
    purge.append(_helper(config, "purge-sources", also=[
        project_number(config), *purge_commands(config, SAMPLE_PROJECT_NUMBER)],
        config_path=config_path))
    return Target("undeploy", ("undeploy-check",), steps,
                  "remove functions, jobs, accounts; PURGE=1 also data and buckets", purge)


def undeploy_check_target(config: PipelineConfig) -> Target:
    return Target("undeploy-check", ("setup",), [Step(run=(
        PYTHON, "-m", "freshet_local.deploy", "preflight", "--undeploy",
        f"--project={config.project}"))])


def _remove(check: tuple, remove: tuple, what: str) -> Step:
    return Step("remove", run=remove, check=check, what=what)


# -- the make fragment -------------------------------------------------------------------

def _make_text(shell: str) -> str:
    """Shell text as a recipe line: `$` doubled for make, the project made $(PROJECT),
    the firebase and freshet executables $(FIREBASE) and $(FRESHET) (a test runs the
    deploy with stand-ins)."""
    return "\t" + shell.replace("$", "$$").replace(MARKER, "$(PROJECT)").replace(
        FIREBASE, "$(FIREBASE)").replace(FRESHET, "$(FRESHET)")


def resume_command(target: Target, project: str) -> str:
    goal = "undeploy" if target.name.startswith("undeploy") else "deploy"
    return f"make {goal} PROJECT={project}"


def all_targets(config: PipelineConfig, config_path: str = CONFIG) -> list[Target]:
    return [*deploy_targets(config, config_path), undeploy_target(config, config_path),
            undeploy_check_target(config)]


def render(config: PipelineConfig, config_path: str = CONFIG,
           default_project: str | None = None) -> str:
    """deploy.mk's text. Rendered from a config loaded with project=MARKER (see
    load_for_render), the commands name $(PROJECT), which defaults to the file's own."""
    targets = all_targets(config, config_path)
    lines = [
        f"# Generated by `python -m freshet_local.deploy` from {config_path}: do not edit.",
        "# After changing the config, run `make deploy-config` and commit both files.",
        f"# Region {config.region}; Firestore in {config.firestore_location}.",
        "# `make deploy PROJECT=my-project` overrides the project the config names.",
        "",
        f"PROJECT ?= {default_project or config.project}",
        f"FIREBASE ?= {FIREBASE}",
        f"FRESHET ?= {FRESHET}",
        "",
        ".PHONY: " + " ".join(t.name for t in targets),
    ]
    for target in targets:
        lines += ["", f"{target.name}:" + "".join(f" {d}" for d in target.deps)]
        resume = resume_command(target, config.project)
        lines += [_make_text(render_step(step, resume)) for step in target.steps]
        if target.purge:
            lines += ["ifeq ($(PURGE),1)"]
            lines += [_make_text(render_step(step, resume + " PURGE=1"))
                      for step in target.purge]
            lines += ["endif"]
    return "\n".join(lines) + "\n"


def load_for_render(config_path: str | os.PathLike = CONFIG) -> tuple[PipelineConfig, str]:
    """The config as deploy.mk needs it: with MARKER as the project (rendered
    $(PROJECT)), and the file's own project id (the default)."""
    own = load_config(config_path, env={})
    return load_config(config_path, env={}, project=MARKER), own.project


def render_file(config_path: str = CONFIG) -> str:
    config, default = load_for_render(config_path)
    return render(config, config_path, default)


def firebase_json(config: PipelineConfig) -> str:
    """infra/firebase.firestore.json: firebase-tools would create a missing database in
    `location` (its own default is nam5, permanently), and deploys rules and indexes."""
    return json.dumps({"firestore": {
        "database": FIRESTORE_DATABASE, "location": config.firestore_location,
        "rules": "firestore.rules", "indexes": "firestore.indexes.json"}}, indent=2) + "\n"


# -- preflight, digest, retry ------------------------------------------------------------

PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def project_refusal(project: str) -> str | None:
    """Why deploy refuses this project id, in one line; None when it may go ahead."""
    fix = "set yours with `make deploy PROJECT=my-project` or `project:` in infra/pipeline.yaml"
    if project in PLACEHOLDERS or project == MARKER:
        return f"project {project!r} is the placeholder the config ships with: {fix}"
    if project.startswith("demo-"):
        return (f"project {project!r} starts with 'demo-', a prefix Google reserves for "
                f"emulator-only projects: {fix}")
    if not PROJECT_RE.match(project):
        return f"project {project!r} is not a Google Cloud project id: {fix}"
    return None


def bucket_refusals(config: PipelineConfig) -> list[str]:
    """Cloud Storage refuses bucket names that contain "google" or start with "goog"."""
    return [f"bucket name {name!r} contains \"google\" (or starts with \"goog\"), which "
            f"Cloud Storage refuses: set site.{key}: another name in {config.path}"
            for key, name in (("bucket", config.site.bucket),
                              ("snapshot_bucket", config.site.snapshot_bucket))
            if "google" in name.lower() or name.lower().startswith("goog")]


def preflight(project: str, config_path: str, *, undeploy: bool = False,
              notes: list[str] | None = None) -> list[str]:
    """The problems that would make a later command fail, each one line with its fix
    (notes collects what could not be checked). Nothing is created before it passes."""
    refusal = project_refusal(project)
    if refusal:
        return [refusal]
    problems = []
    if not undeploy:
        problems += [f"{name} is out of date with {config_path}: run `make deploy-config`"
                     for name in stale(config_path)]
    account = _gcloud_account()
    if account is None:
        problems.append("gcloud is not installed: https://cloud.google.com/sdk/docs/install")
    elif not account:
        problems.append("gcloud has no active account: run `gcloud auth login`")
    if undeploy:
        return problems
    if not _has_adc():
        problems.append("no Application Default Credentials (freshet apply and firebase "
                        "use them): run `gcloud auth application-default login`")
    config = load_config(config_path, env={}, project=project)
    problems += bucket_refusals(config)
    facts = preflight_facts(config, account or "")
    problems += [p for p in deploy_run.judge_tools(facts)
                 if account is not None or not p.startswith("gcloud is not installed")]
    if account:
        cloud, found_notes = deploy_run.judge_cloud(facts, project, run_limits(config),
                                                    config.region)
        problems += cloud
        if notes is not None:
            notes += found_notes
    return problems


def run_limits(config: PipelineConfig) -> dict[str, tuple[int, float, int]]:
    """function -> (memory MiB, vCPU, max_instances), as deployed."""
    found = {}
    for name in ENTRY_POINTS:
        limits = config.functions.limits_for(name)
        memory = memory_mib(limits.memory)
        found[name] = (memory, deploy_run.cpus_for(memory, limits.cpu), limits.max_instances)
    return found


def preflight_facts(config: PipelineConfig, account: str) -> "deploy_run.PreflightFacts":
    read_text, read_json, unread = deploy_run.read_text, deploy_run.read_json, deploy_run.Unread
    _, version, billing, policy, quota = preflight_commands(config, account)
    facts = deploy_run.PreflightFacts(account=account)
    facts.node = read_text(("node", "--version"))
    facts.npm = read_text(("npm", "--version"))
    sdk = read_json(version)
    facts.gcloud = sdk.get("Google Cloud SDK") if isinstance(sdk, dict) else sdk
    if not account:
        return facts
    enabled = read_text(billing)
    facts.billing = enabled if isinstance(enabled, unread) else enabled.lower() == "true"
    roles = read_text(policy)
    facts.roles = roles if isinstance(roles, unread) else set(roles.split())
    infos = read_json(quota)
    facts.quota = (infos if isinstance(infos, unread)
                   else deploy_run.parse_quota(infos, config.region) or None)
    return facts


def _gcloud_account() -> str | None:
    try:
        out = subprocess.run(["gcloud", "config", "get-value", "account"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _has_adc() -> bool:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        return False
    return True


def source_files(source: Path) -> list[Path]:
    return sorted(p for p in source.rglob("*") if p.is_file()
                  and not any(part in SOURCE_IGNORED or part.endswith(".pyc")
                              for part in p.relative_to(source).parts))


def digest(config: PipelineConfig, entry_point: str, root: Path = ROOT) -> str:
    """What a deploy of the function would upload and set, hashed: the same digest
    means redeploying changes nothing."""
    h = hashlib.sha256(json.dumps(deploy_function(config, entry_point)).encode())
    source = root / config.functions.source
    for path in source_files(source):
        h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:40]


retry = deploy_run.retry  # `python -m freshet_local.deploy retry` still works


# -- command line ------------------------------------------------------------------------

def generated(config_path: str = CONFIG, output: str = OUTPUT) -> dict[str, str]:
    """The files generated from the config, by path relative to the work tree."""
    config, default = load_for_render(config_path)
    return {output: render(config, config_path, default),
            FIREBASE_CONFIG: firebase_json(config), CLEANUP_POLICY: cleanup_policy_json()}


def write(config_path: str = CONFIG, output: str = OUTPUT) -> list[Path]:
    paths = []
    for name, text in generated(config_path, output).items():
        (ROOT / name).write_text(text)
        paths.append(ROOT / name)
    return paths


def stale(config_path: str = CONFIG, output: str = OUTPUT) -> list[str]:
    return [name for name, text in generated(config_path, output).items()
            if not (ROOT / name).exists() or (ROOT / name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["retry"]:
        rest = argv[1:]
        return retry(rest[1:] if rest[:1] == ["--"] else rest)
    command: list[str] = []
    if "--" in argv:
        argv, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(prog="python -m freshet_local.deploy")
    parser.add_argument("action", nargs="?", default="write",
                        choices=("write", "preflight", "digest", "wait", "function",
                                 "grant-viewer", "purge-sources"))
    parser.add_argument("function", nargs="?")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--project")
    parser.add_argument("--undeploy", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="fail if the output files are not what the config generates")
    args = parser.parse_args(argv)
    try:
        if args.action == "preflight":
            notes: list[str] = []
            problems = preflight(args.project or "", args.config, undeploy=args.undeploy,
                                 notes=notes)
            for note in notes:
                print(f"  note: {note}")
            for problem in problems:
                print(f"deploy: {problem}", file=sys.stderr)
            if not problems and not args.undeploy:
                print("  preflight passed")
            return 2 if problems else 0
        if args.action in ("wait", "function", "grant-viewer", "purge-sources"):
            config = load_config(args.config, env={}, project=args.project)
            return helper(args.action, config, args.function, command)
        if args.action == "digest":
            config = load_config(args.config, env={}, project=args.project)
            print(digest(config, args.function))
            return 0
        if args.check:
            for name in stale(args.config, args.output):
                print(f"deploy: {name} is out of date; run `make deploy-config`",
                      file=sys.stderr)
                return 1
            return 0
        for path in write(args.config, args.output):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    except ValueError as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 2


def helper(action: str, config: PipelineConfig, name: str | None, command: list[str]) -> int:
    """The steps deploy.mk runs through this module (deploy_run does the work)."""
    project = config.project
    if action == "function":
        try:
            mine = digest(config, name)
        except (OSError, ValueError) as exc:  # never a match: the function is deployed
            print(f"  cannot compute {name}'s digest ({exc}): deploying it", flush=True)
            mine = ""
        return deploy_run.deploy_function(
            name, describe=function_describe(config, name), deploy=command, digest=mine,
            build_account=config.functions.build_service_account, project=project)
    if action == "grant-viewer":
        return grant_deployer(config)
    if action == "purge-sources":
        return purge_sources(config)
    if name == "database":
        return deploy_run.wait_for(f"Firestore database {FIRESTORE_DATABASE}",
                                   lambda: deploy_run.database_probe(database_describe(config)),
                                   bound_key="DATABASE", project=project)
    if name == "indexes":
        expected = expected_indexes()
        return deploy_run.wait_for(
            f"{expected} Firestore composite indexes READY",
            lambda: deploy_run.indexes_probe(indexes_list(config), expected),
            bound_key="INDEXES", project=project)
    if name == "page":
        def nudge() -> None:
            print("  publishing again (the first publish may have met IAM not caught up)",
                  flush=True)
            deploy_run.run(publish_run(config))

        return deploy_run.wait_for(
            f"gs://{config.site.bucket}/index.html",
            lambda: deploy_run.object_probe(page_describe(config)),
            bound_key="PAGE", project=project, nudge=nudge)
    raise ValueError(f"wait for what? {name!r} (database, indexes, page)")


def grant_deployer(config: PipelineConfig) -> int:
    account = deploy_run.read_text(("gcloud", "config", "get-value", "account"))
    if isinstance(account, deploy_run.Unread) or not account:
        return deploy_run.fail("granting you read access to the page",
                               "no active gcloud account", config.project)
    done = deploy_run.run(_bucket_binding(f"gs://{config.site.bucket}", _member(account),
                                          VIEWER_ROLE, config))
    if done.returncode:
        sys.stderr.write(done.stderr)
        return deploy_run.fail(f"granting {account} read access to the page",
                               deploy_run.last_line(done.stderr), config.project)
    print(f"  {account} may open the page", flush=True)
    return 0


def purge_sources(config: PipelineConfig) -> int:
    number = deploy_run.read_text(project_number(config))
    if isinstance(number, deploy_run.Unread) or not number:
        print(f"  absent: the functions' source buckets (cannot read {config.project}'s "
              "number)", flush=True)
        return 0
    commands = purge_commands(config, number)
    for describe, remove in zip(commands[::2], commands[1::2], strict=True):
        if deploy_run.run(describe).returncode != 0:
            print(f"  absent: {describe[4]}", flush=True)
            continue
        done = deploy_run.run(remove)
        sys.stdout.write(done.stdout)
        if done.returncode:
            sys.stderr.write(done.stderr)
            return deploy_run.fail(f"deleting {describe[4]}", deploy_run.last_line(
                done.stderr), config.project, "undeploy PURGE=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
