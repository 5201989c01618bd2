"""What `make deploy` runs between Google's commands: bounded waits for readiness, the
function deploy that compares digest and state, the build retried while the build
account's role is not in effect yet, and the preflight checks. Called through
`python -m freshet_local.deploy ACTION` (deploy.py builds every gcloud command it runs,
so the parse test covers them).

Every wait polls with a growing interval and stops at a bound; each line it prints says
what it waits for. A failure is one line on stderr naming the step and the command that
resumes (`make deploy` again: every finished step is skipped). The intervals and bounds
come from the environment, so a test runs the whole deploy in seconds:

    FRESHET_DEPLOY_POLL_S          first interval between two checks (default 10)
    FRESHET_DEPLOY_BACKOFF_MAX_S   longest interval (default 60)
    FRESHET_DEPLOY_<STEP>_S        the bound of each step, STEP one of BOUNDS below
"""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# How long each step may take at most, in seconds (override: FRESHET_DEPLOY_<KEY>_S).
BOUNDS = {
    "DATABASE": 300,   # gcloud returns before the database is ready
    "INDEXES": 1800,   # composite indexes build in minutes, more with data
    "FUNCTION": 900,   # a function leaving DEPLOYING, then becoming ACTIVE
    "BUILD_IAM": 600,  # IAM grants: ~2 min, sometimes 7 or more
    "PAGE": 300,       # the first publish writing index.html
    "REPUBLISH": 60,   # between two nudges of the publish job while waiting for the page
}
DEFAULT_POLL_S, DEFAULT_BACKOFF_MAX_S = 10.0, 60.0

# What the build says when its account's role is not in effect yet (Cloud Functions
# v2: "Could not build the function due to a missing permission on the build service
# account"); also any permission error that names the account itself.
BUILD_ACCOUNT_NEEDLES = ("missing permission on the build service account",
                         "build service account")
PERMISSION_NEEDLES = ("permission", "denied", "forbidden")


def seconds(key: str, env=os.environ) -> float:
    default = BOUNDS.get(key) or {"POLL": DEFAULT_POLL_S,
                                  "BACKOFF_MAX": DEFAULT_BACKOFF_MAX_S}[key]
    try:
        return max(0.0, float(env.get(f"FRESHET_DEPLOY_{key}_S", default)))
    except ValueError:
        return float(default)


def say(text: str) -> None:
    print(text, flush=True)


def fail(step: str, why: str, project: str, target: str = "deploy") -> int:
    """The one line a failed step leaves, with the command that resumes."""
    print(f"deploy: {step} failed: {why} — fix that if it names a cause, then resume with "
          f"`make {target} PROJECT={project}` (finished steps are skipped)",
          file=sys.stderr, flush=True)
    return 1


def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    # No prompts: a missing gcloud component (alpha, for the quota read) is then an
    # error that preflight reports, never an installation started unattended.
    return subprocess.run(list(argv), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})


# -- waiting -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """One look at what is awaited: ready, still waiting (and on what), or failed."""

    ready: bool
    detail: str = ""
    failed: str = ""


def wait_for(what: str, probe: Callable[[], Probe], *, bound_key: str, project: str,
             nudge: Callable[[], None] | None = None, clock=time.monotonic,
             sleep=time.sleep) -> int:
    """probe() until it is ready, with a growing interval, at most the bound's seconds.
    nudge (when given) runs again every REPUBLISH seconds while waiting."""
    bound, interval = seconds(bound_key), seconds("POLL")
    start = clock()
    last_nudge = start
    while True:
        seen = probe()
        if seen.ready:
            say(f"  ready: {what}")
            return 0
        if seen.failed:
            return fail(what, seen.failed, project)
        waited = clock() - start
        if waited + interval > bound:
            return fail(what, f"not ready after {waited:.0f} s (bound {bound:.0f} s, "
                              f"FRESHET_DEPLOY_{bound_key}_S): {seen.detail}", project)
        say(f"  waiting for {what}: {seen.detail} (next look in {interval:g} s)")
        sleep(interval)
        if nudge is not None and clock() - last_nudge >= seconds("REPUBLISH"):
            nudge()
            last_nudge = clock()
        interval = min(max(interval * 2, 0.001), seconds("BACKOFF_MAX"))


def database_probe(describe: Sequence[str]) -> Probe:
    done = run(describe)
    if done.returncode == 0:
        return Probe(True)
    return Probe(False, last_line(done.stderr) or "not there yet")


def indexes_state(states: list[str], expected: int) -> Probe:
    """Pure: the composite indexes' states as gcloud lists them."""
    if any(s == "NEEDS_REPAIR" for s in states):
        return Probe(False, failed="an index NEEDS_REPAIR: see the Firestore console "
                                   "(Indexes), delete it and deploy again")
    building = [s for s in states if s != "READY"]
    if len(states) < expected:
        return Probe(False, f"{len(states)} of {expected} indexes listed so far")
    if building:
        return Probe(False, f"{len(building)} of {len(states)} indexes still "
                            f"{'/'.join(sorted(set(building)))}")
    return Probe(True)


def indexes_probe(listing: Sequence[str], expected: int) -> Probe:
    done = run(listing)
    if done.returncode != 0:
        return Probe(False, last_line(done.stderr) or "cannot list the indexes yet")
    return indexes_state([s.strip() for s in done.stdout.split() if s.strip()], expected)


def object_probe(describe: Sequence[str]) -> Probe:
    done = run(describe)
    if done.returncode == 0:
        return Probe(True)
    return Probe(False, "index.html not written yet (the first publish runs, "
                        "then writes the page)")


# -- the functions -----------------------------------------------------------------------

def function_action(label: str | None, state: str | None, digest: str) -> str:
    """Pure: what to do with a function, from its digest label and state as Google has
    them and the digest of what would be deployed.

    wait       a deploy is under way: let it end first
    unchanged  the same source and flags, and ACTIVE
    deploy     anything else: missing, changed, FAILED or UNKNOWN, or either digest
               empty (a crashed digest command must never look like a match)
    """
    if state == "DEPLOYING":
        return "wait"
    if digest and label == digest and state == "ACTIVE":
        return "unchanged"
    return "deploy"


def read_function(describe: Sequence[str]) -> tuple[str | None, str | None]:
    """(digest label, state) of the function, (None, None) when it does not exist."""
    done = run(describe)
    if done.returncode != 0:
        return None, None
    parts = done.stdout.strip().split("\t") if done.stdout.strip() else []
    if len(parts) == 1:  # no label: gcloud prints only the state
        return "", parts[0]
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", "")


def build_account_not_ready(stderr: str, build_account: str) -> bool:
    text = stderr.lower()
    if any(needle in text for needle in BUILD_ACCOUNT_NEEDLES):
        return True
    return build_account.lower() in text and any(n in text for n in PERMISSION_NEEDLES)


def deploy_function(name: str, *, describe: Sequence[str], deploy: Sequence[str],
                    digest: str, build_account: str, project: str,
                    clock=time.monotonic, sleep=time.sleep) -> int:
    """Deploy the function unless it is unchanged and ACTIVE; retry the build while the
    build account's role is not in effect; then wait until it is ACTIVE."""
    step = f"function {name}"

    def state_probe() -> Probe:
        _, state = read_function(describe)
        if state == "ACTIVE":
            return Probe(True)
        if state in ("FAILED", "UNKNOWN"):
            return Probe(False, failed=f"it is {state} after the deploy: read the build log "
                                       "that gcloud printed above")
        return Probe(False, f"state {state or 'not visible yet'}")

    label, state = read_function(describe)
    action = function_action(label, state, digest)
    if action == "wait":
        code = wait_for(f"{step} (a deploy already under way)",
                        lambda: Probe(read_function(describe)[1] != "DEPLOYING",
                                      "DEPLOYING"), bound_key="FUNCTION", project=project,
                        clock=clock, sleep=sleep)
        if code:
            return code
        label, state = read_function(describe)
        action = function_action(label, state, digest)
    if action == "unchanged":
        say(f"  unchanged: {step} (same digest, ACTIVE)")
        return 0
    if state in ("FAILED", "UNKNOWN"):
        say(f"  {step} is {state}: deploying it again")
    elif label is not None and not digest:
        say(f"  {step}: no digest to compare (the digest command failed): deploying")
    code = _deploy_with_build_retry(step, [*deploy, f"--update-labels=freshet-digest={digest}"],
                                    build_account, project, clock, sleep)
    if code:
        return code
    return wait_for(f"{step} ACTIVE", state_probe, bound_key="FUNCTION", project=project,
                    clock=clock, sleep=sleep)


def _deploy_with_build_retry(step: str, argv: list[str], build_account: str, project: str,
                             clock, sleep) -> int:
    bound, interval = seconds("BUILD_IAM"), seconds("POLL")
    start = clock()
    attempt = 1
    while True:
        say(f"  deploying {step} (a build takes a few minutes; gcloud's output follows "
            "when it ends)")
        done = run(argv)
        sys.stdout.write(done.stdout)
        if done.returncode == 0:
            sys.stderr.write(done.stderr)
            return 0
        waited = clock() - start
        if not build_account_not_ready(done.stderr, build_account):
            sys.stderr.write(done.stderr)
            return fail(step, f"gcloud functions deploy exited {done.returncode}: "
                              f"{last_line(done.stderr)}", project)
        if waited + interval > bound:
            sys.stderr.write(done.stderr)
            return fail(step, f"the build account {build_account} still lacks its role "
                              f"after {waited:.0f} s (bound {bound:.0f} s, "
                              f"FRESHET_DEPLOY_BUILD_IAM_S): check it holds "
                              "roles/cloudbuild.builds.builder", project)
        say(f"  {step}: attempt {attempt}: the build account's role is not in effect yet "
            f"(IAM takes ~2 min, sometimes 7 or more); building again in {interval:g} s "
            f"({bound - waited:.0f} s left)")
        sleep(interval)
        attempt += 1
        interval = min(max(interval * 2, 0.001), seconds("BACKOFF_MAX"))


# -- preflight ---------------------------------------------------------------------------

MIN_NODE = 20
MIN_GCLOUD = (500, 0, 0)  # the generated commands are checked with Cloud SDK 528
IAM_SETTING_ROLES = ("roles/owner", "roles/resourcemanager.projectIamAdmin")
RUN_QUOTA_METRICS = {"memory": "run.googleapis.com/mem_allocation",
                     "cpu": "run.googleapis.com/cpu_allocation"}


@dataclass(frozen=True)
class Unread:
    """A fact preflight could not read, and why."""

    reason: str


@dataclass
class PreflightFacts:
    node: object = None  # "v20.11.1", or Unread
    npm: object = None  # "10.2.4", or Unread
    gcloud: object = None  # "528.0.0", or Unread
    billing: object = None  # True / False, or Unread
    roles: object = None  # the caller's own roles on the project, or Unread
    quota: object = None  # {"memory": MiB, "cpu": milli-vCPU} for the region, or Unread
    account: str = ""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def judge_tools(facts: PreflightFacts) -> list[str]:
    """Pure: Node, npm and gcloud, each failure one line with its fix."""
    problems = []
    if isinstance(facts.node, Unread) or not facts.node:
        problems.append("Node.js is not installed (firebase-tools needs it): install Node "
                        f"{MIN_NODE} or later (https://nodejs.org)")
    elif _version(facts.node)[:1] < (MIN_NODE,):
        problems.append(f"Node.js {facts.node} is too old for firebase-tools: install Node "
                        f"{MIN_NODE} or later (https://nodejs.org)")
    if isinstance(facts.npm, Unread) or not facts.npm:
        problems.append("npm is not installed (make setup installs firebase-tools with it): "
                        "install it with Node.js")
    if isinstance(facts.gcloud, Unread) or not facts.gcloud:
        problems.append("gcloud is not installed: https://cloud.google.com/sdk/docs/install")
    elif _version(facts.gcloud) < MIN_GCLOUD:
        problems.append(f"gcloud {facts.gcloud} is older than "
                        f"{'.'.join(map(str, MIN_GCLOUD))}: run `gcloud components update` "
                        "(or upgrade the google-cloud-cli package)")
    return problems


def judge_cloud(facts: PreflightFacts, project: str, limits: dict[str, tuple[int, float, int]],
                region: str, env=os.environ) -> tuple[list[str], list[str]]:
    """Pure: (problems, notes) about billing, the caller's IAM and the Cloud Run quota.
    limits: function -> (memory MiB, vCPU, max_instances)."""
    problems, notes = [], []
    if facts.billing is False:
        problems.append(f"billing is not enabled on {project}: link a billing account "
                        f"(gcloud billing projects link {project} --billing-account=ID)")
    elif isinstance(facts.billing, Unread):
        notes.append(f"could not read whether billing is enabled ({facts.billing.reason}); "
                     f"check: gcloud billing projects describe {project}")
    if env.get("FRESHET_DEPLOY_SKIP_IAM_CHECK") != "1":
        held = facts.roles
        if isinstance(held, Unread):
            problems.append(f"you ({facts.account}) cannot read {project}'s IAM policy, so "
                            f"deploy could not set it ({held.reason}): ask for roles/owner "
                            f"on {project}")
        elif held is not None and not set(held) & set(IAM_SETTING_ROLES):
            problems.append(f"you ({facts.account}) hold neither {' nor '.join(IAM_SETTING_ROLES)}"
                            f" on {project}, which deploy needs to grant roles: ask for "
                            "roles/owner (granted through a group? FRESHET_DEPLOY_SKIP_IAM_"
                            "CHECK=1 skips this check)")
    quota = facts.quota
    if isinstance(quota, Unread) or quota is None:
        why = quota.reason if isinstance(quota, Unread) else "not found"
        notes.append(f"could not read the Cloud Run quota in {region} ({why}); if a "
                     "function deploy fails on quota, lower its max_instances under "
                     "functions: in the config")
        return problems, notes
    for name, (memory, cpu, instances) in limits.items():
        for kind, need, unit in (("memory", memory * instances, "MiB"),
                                 ("cpu", cpu * 1000 * instances, "milli-vCPU")):
            have = quota.get(kind)
            if have is None or need <= have:
                continue
            per = memory if kind == "memory" else cpu * 1000
            fits = max(1, int(have // per))
            problems.append(f"{name}: {instances} instances x {per:g} {unit} needs "
                            f"{need:g} {unit}, above the Cloud Run {kind} quota of {have:g} "
                            f"in {region}: set max_instances: {fits} for {name} under "
                            "functions: (or request more quota: IAM & Admin > Quotas, "
                            f"{RUN_QUOTA_METRICS[kind]})")
    return problems, notes


def parse_quota(infos: list, region: str) -> dict[str, float]:
    """Pure: the region's Cloud Run memory (MiB) and CPU (milli-vCPU) limits from
    `gcloud alpha quotas info list --format=json` (Cloud Quotas API QuotaInfo objects)."""
    found = {}
    for info in infos if isinstance(infos, list) else []:
        kind = next((k for k, m in RUN_QUOTA_METRICS.items() if info.get("metric") == m), None)
        if kind is None:
            continue
        value = None
        for dim in info.get("dimensionsInfos", []):
            dims = dim.get("dimensions") or {}
            if dims.get("region") in (region, None):
                raw = (dim.get("details") or {}).get("value")
                if raw is not None and (value is None or dims.get("region") == region):
                    value = float(raw)
        if value is None or value < 0:  # -1: unlimited
            continue
        found[kind] = value * _unit_factor(info.get("metricUnit", ""), kind)
    return found


def _unit_factor(unit: str, kind: str) -> float:
    """To MiB (memory) or milli-vCPU (cpu); a unit without a size counts as those."""
    if kind == "memory":
        for prefix, factor in (("GiBy", 1024), ("GBy", 1e9 / 2**20), ("MiBy", 1),
                               ("MBy", 1e6 / 2**20), ("By", 1 / 2**20)):
            if unit.startswith(prefix):
                return factor
    return 1.0


def cpus_for(memory_mib: int, cpu: str | None) -> float:
    """The vCPUs a 2nd-gen function gets: as set, or as Google derives them from memory."""
    if cpu:
        return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    for up_to, cpus in ((128, 0.083), (256, 0.167), (512, 0.333), (1024, 0.583),
                        (2048, 1), (8192, 2), (16384, 4), (32768, 8)):
        if memory_mib <= up_to:
            return cpus
    return 8


def read_text(argv: Sequence[str]) -> object:
    try:
        done = run(argv)
    except OSError as exc:
        return Unread(str(exc))
    if done.returncode != 0:
        return Unread(last_line(done.stderr) or f"exit {done.returncode}")
    return done.stdout.strip()


def read_json(argv: Sequence[str]) -> object:
    text = read_text(argv)
    if isinstance(text, Unread):
        return text
    try:
        return json.loads(text or "null")
    except ValueError:
        return Unread(f"not JSON: {text[:80]}")


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# -- retry: its own entry, so that each of deploy's grants does not import the config --

RETRY_WHEN = ("does not exist", "not found", "NOT_FOUND", "is not a valid service account")


def retry(argv: list[str], *, attempts: int = 7, wait_s: float | None = None) -> int:
    """Run argv; while it fails because IAM does not know a new account yet, again."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(argv, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode == 0 or attempt == attempts or not any(
                needle in proc.stderr for needle in RETRY_WHEN):
            sys.stderr.write(proc.stderr)
            return proc.returncode
        wait = seconds("POLL") if wait_s is None else wait_s
        print(f"  (IAM has not caught up yet; trying again in {wait:g} s)", flush=True)
        time.sleep(wait)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["retry"] or len(argv) < 2:
        print("usage: python -m freshet_local.deploy_run retry [--] CMD...", file=sys.stderr)
        return 2
    rest = argv[1:]
    return retry(rest[1:] if rest[:1] == ["--"] else rest)


if __name__ == "__main__":
    sys.exit(main())
