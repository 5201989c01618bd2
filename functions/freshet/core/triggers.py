"""Runs triggered by fresh upstreams, with no polling: the rules, as pure functions.

A job with `trigger: {after: [a, b], when: all|any}` runs when the datasets it names
advance. A dataset's *version* is the run whose success it last recorded
(`last_success_run_id`); it changes exactly when a success makes the dataset newer,
so a backfill of an old slot triggers nothing.

The commit that records an upstream's success creates the triggered runs: run_task's
finish transaction reads the downstream jobs the produced datasets list (`triggers`,
written by apply: no query), decides here, and writes the runs with the rest.

    any   one run per new upstream version: id from the versions that advanced;
    all   one run once every upstream has a version the job has not run with yet
          (`Job.trigger_versions`): id from the whole version vector.

Ids are derived from the versions, so a repeated commit (a duplicate delivery, a
retried transaction) creates nothing new, and with `all` two upstreams finishing
at once still make one run: Firestore serialises the two commits, and only the
second sees both versions fresh.

Loops: a cycle of triggers is refused where jobs are made (apply, and the api's create,
whose check and registration commit together with the job against the trigger graph's
version). At run time each triggered run carries its chain's depth (hops from the run
that was not triggered); with no cycle no chain is longer than there are jobs, so a
triggered run deeper than that (`depth_limit`) is not created: the refusal is recorded
on the downstream job (`trigger_refused`), whatever let the loop in.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from freshet.core.errors import ValidationError
from freshet.core.models import Dataset, Job, JobStatus, TriggerWhen

# Jobs one dataset may trigger: the commit that records its success reads each of them,
# and the dataset document lists them (bounded, like every document Freshet writes).
MAX_DOWNSTREAM = 100
# The depth bound when the number of jobs is not known (no trigger graph recorded yet).
FALLBACK_DEPTH_LIMIT = 1000


def depth_limit(jobs: int | None) -> int:
    """The deepest chain of triggered runs allowed: the number of jobs (an acyclic chain
    visits each job at most once), or FALLBACK_DEPTH_LIMIT when that is not known."""
    return FALLBACK_DEPTH_LIMIT if not jobs or jobs < 1 else jobs


def triggered_run_id(job_id: str, versions: Mapping[str, str]) -> str:
    key = "|".join(f"{k}={v}" for k, v in sorted(versions.items()))
    return f"{job_id}__t{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def advanced(before: Mapping[str, Dataset | None], after: Mapping[str, Dataset],
             run_id: str) -> dict[str, str]:
    """The datasets this run's success made newer: {key: new version}."""
    return {k: run_id for k, d in after.items()
            if d.last_success_run_id == run_id
            and (before.get(k) is None or before[k].last_success_run_id != run_id)}


def downstream_of(datasets: Mapping[str, Dataset], keys: Iterable[str]) -> list[str]:
    """The jobs triggered by any of `keys`, as the dataset documents list them."""
    return sorted({job_id for k in keys for job_id in datasets[k].triggers})


def upstreams_to_read(job: Job | None, known: Iterable[str]) -> list[str]:
    """For `all`: the upstream datasets whose version the commit has not read yet."""
    if job is None or job.trigger is None or job.trigger.when != TriggerWhen.ALL:
        return []
    have = set(known)
    return [k for k in job.trigger.after if k not in have]


@dataclass(frozen=True)
class Fire:
    """A triggered run to create, and what the downstream job remembers of it."""

    job_id: str
    run_id: str
    versions: dict[str, str]
    job_fields: dict
    depth: int = 1  # hops from the chain's first (not triggered) run
    refused: str | None = None  # set: the run is not created (the chain is too deep)


def decide_trigger(job: Job | None, new: Mapping[str, str],
                   versions: Mapping[str, str | None], now: datetime, *,
                   depth: int = 1, limit: int = FALLBACK_DEPTH_LIMIT,
                   upstream_run_id: str | None = None) -> Fire | None:
    """`new`: the upstream versions that just advanced; `versions`: every dataset's
    current version as read (for `all`); `depth`: the new run's depth (the upstream
    run's + 1), refused beyond `limit`."""
    if job is None or job.trigger is None or job.status != JobStatus.ACTIVE:
        return None
    after = job.trigger.after
    fresh = {k: v for k, v in new.items() if k in after}
    if not fresh:
        return None
    if job.trigger.when == TriggerWhen.ANY:
        use = {k: v for k, v in fresh.items() if job.trigger_versions.get(k) != v}
        if not use:
            return None  # this version made its run already (a repeated commit)
        remembered = {**job.trigger_versions, **use}
    else:
        use = {k: fresh.get(k) or versions.get(k) for k in after}
        if any(v is None or job.trigger_versions.get(k) == v for k, v in use.items()):
            return None  # an upstream has nothing new for this job yet
        remembered = dict(use)
    fields = {"trigger_versions": remembered, "last_triggered_at": now, "updated_at": now}
    refused = refuse_depth(depth, limit)
    if refused is not None:
        # The versions are remembered all the same: a repeated commit refuses nothing new.
        fields = {"trigger_versions": remembered, "updated_at": now, "trigger_refused": {
            "at": now, "depth": depth, "limit": limit, "upstream_run_id": upstream_run_id,
            "reason": refused}}
    return Fire(job_id=job.id, run_id=triggered_run_id(job.id, use), versions=dict(use),
                job_fields=fields, depth=depth, refused=refused)


def refuse_depth(depth: int, limit: int) -> str | None:
    """Why a triggered run at `depth` is not created, or None when it may be."""
    if depth <= limit:
        return None
    return (f"trigger chain depth {depth} exceeds {limit} (the number of jobs): "
            "a trigger loop; the run was not created")


def trigger_map(jobs: Iterable[Job]) -> dict[str, list[str]]:
    """{dataset: the jobs its success triggers}: what apply writes on each dataset."""
    found: dict[str, set[str]] = {}
    for job in jobs:
        if job.trigger is not None and job.status != JobStatus.ARCHIVED:
            for key in job.trigger.after:
                found.setdefault(key, set()).add(job.id)
    return {k: sorted(v) for k, v in sorted(found.items())}


def check_triggers(jobs: Iterable[Job], field: str = "trigger") -> dict[str, list[str]]:
    """The trigger map of `jobs`, refusing a cycle (named) and a dataset that would
    trigger more than MAX_DOWNSTREAM jobs."""
    jobs = list(jobs)
    cycle = trigger_cycle(jobs)
    if cycle:
        raise ValidationError(field, f"trigger cycle: {describe_cycle(cycle)}")
    found = trigger_map(jobs)
    for key, job_ids in found.items():
        if len(job_ids) > MAX_DOWNSTREAM:
            raise ValidationError(field, f"dataset {key!r} would trigger {len(job_ids)} jobs "
                                         f"(at most {MAX_DOWNSTREAM})")
    return found


def trigger_cycle(jobs: Iterable[Job]) -> list[str] | None:
    """A cycle of triggers, as [job, dataset, job, dataset, ..., job], or None.

    Job A leads to job B when A produces a dataset B's trigger names."""
    jobs = [j for j in jobs if j.status != JobStatus.ARCHIVED]
    producers: dict[str, list[str]] = {}
    for job in jobs:
        for key in job.produces:
            producers.setdefault(key, []).append(job.id)
    edges: dict[str, list[tuple[str, str]]] = {j.id: [] for j in jobs}
    for job in jobs:
        for key in job.trigger.after if job.trigger else ():
            for up in producers.get(key, ()):
                edges[up].append((key, job.id))
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[tuple[str, str]]) -> list[str] | None:
        """`path`: (job, the dataset that leads on from it) up to `node`."""
        if state.get(node) == 1:
            start = next(i for i, (job_id, _) in enumerate(path) if job_id == node)
            return [x for step in path[start:] for x in step] + [node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for key, down in sorted(edges[node]):
            found = visit(down, [*path, (node, key)])
            if found:
                return found
        state[node] = 2
        return None

    for job_id in sorted(edges):
        found = visit(job_id, [])
        if found:
            return found
    return None


def describe_cycle(cycle: list[str]) -> str:
    """'a -[x]-> b -[y]-> a': jobs, with the dataset that leads from one to the next."""
    text = cycle[0]
    for i in range(1, len(cycle) - 1, 2):
        text += f" -[{cycle[i]}]-> {cycle[i + 1]}"
    return text


def describe_trigger(job: Job) -> str:
    if job.trigger is None:
        return ""
    names = ", ".join(job.trigger.after)
    if len(job.trigger.after) == 1:
        return f"after {names} is fresh"
    word = "all of" if job.trigger.when == TriggerWhen.ALL else "any of"
    return f"after {word} {names} is fresh"
