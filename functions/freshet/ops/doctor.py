"""`freshet doctor`: a read-only check of a deployment, one line per check, ✓ or ✗ with
the fix.

Against Google Cloud: the APIs, the five functions (present, their timeouts, no
allUsers or allAuthenticatedUsers invoker), the service accounts and their roles, the
Firestore database (location, delete protection), the queues, the Cloud Scheduler jobs
and their last attempt, the tick's heartbeat, the status page in its bucket, and that the
page opens for the caller (their read access; Data Access audit logs on Cloud Storage,
which make storage.cloud.google.com refuse logged-in downloads).
Against the local stack (FIRESTORE_EMULATOR_HOST set): what exists locally.

Reading (collect_*) is kept apart from judging (cloud_checks, local_checks): the
judging is pure, a function of the facts read, the config and `now`.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from freshet.core.specs import ENTRY_POINTS
from freshet.core.text import one_line
from freshet.core.timeutil import human_duration, to_utc
from freshet.gcp.ports import COMPOSITE_INDEXES
from freshet.ops import engine_access
from freshet.ops.config import PipelineConfig
from freshet.status.loop_health import loop_health

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
REQUIRED_APIS = ("cloudfunctions.googleapis.com", "run.googleapis.com",
                 "cloudbuild.googleapis.com", "artifactregistry.googleapis.com",
                 "cloudtasks.googleapis.com", "cloudscheduler.googleapis.com",
                 "firestore.googleapis.com", "storage.googleapis.com", "iam.googleapis.com",
                 "iamcredentials.googleapis.com")


@dataclass(frozen=True)
class Unknown:
    """A fact that could not be read, and why."""

    reason: str


@dataclass(frozen=True)
class Check:
    ok: bool
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        fix = f" — fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.name}: {self.detail}{fix}"


def read(fn: Callable, *args) -> object:
    """fn(*args), or Unknown(reason) when Google (or the emulator) would not say."""
    try:
        return fn(*args)
    except Exception as exc:  # every failure becomes a ✗ line, never a traceback
        return Unknown(one_line(str(exc))[:300] or type(exc).__name__)


@dataclass
class CloudFacts:
    credentials: object = True  # Unknown when there are none: nothing else can be read
    apis: object = None  # set of enabled service names
    functions: dict = field(default_factory=dict)  # name -> Cloud Functions v2 resource
    invokers: dict = field(default_factory=dict)  # name -> members with run.invoker
    accounts: dict = field(default_factory=dict)  # email -> resource
    project_roles: object = None  # member -> roles
    act_as: object = None  # members with serviceAccountUser on the invoker account
    caller_act_as: object = None  # bool: may the caller act as the invoker (apply)?
    database: object = None  # Firestore database resource
    indexes: object = None  # its composite indexes (Firestore Admin API resources)
    queues: dict = field(default_factory=dict)  # name -> {"enqueuers": set} or None
    jobs: dict = field(default_factory=dict)  # scheduler job name -> dict or None
    heartbeats: object = None  # settings/heartbeat
    site: object = None  # {"updated": datetime | None, "members": set}
    page_answer: object = None  # HTTP status the page's object answers the caller
    storage_audit: object = None  # Data Access audit logs record Cloud Storage reads
    # The Cloud Run jobs the config's cloud_run_job jobs name: path -> {role: members}.
    engine_jobs: dict = field(default_factory=dict)
    observed: dict = field(default_factory=dict)  # dataset key -> TableFacts (tables.get)


def _sa(email: str) -> str:
    return f"serviceAccount:{email}"


def _missing(value: object) -> bool:
    return value is None or isinstance(value, Unknown)


def _why(value: object, default: str = "not read") -> str:
    return value.reason if isinstance(value, Unknown) else default


# -- judging: the cloud ----------------------------------------------------------------

def cloud_checks(config: PipelineConfig, facts: CloudFacts, now: datetime, *,
                 page_stale_after: timedelta = timedelta(minutes=15)) -> list[Check]:
    if isinstance(facts.credentials, Unknown):
        return [Check(False, "credentials", facts.credentials.reason,
                      "gcloud auth application-default login")]
    checks = [_apis(config, facts.apis)]
    for name in ENTRY_POINTS:
        checks += _function(config, name, facts.functions.get(name),
                            facts.invokers.get(name))
    checks += _accounts(config, facts)
    checks += _engines(config, facts)
    checks.append(_database(config, facts.database))
    checks.append(_indexes(config, facts.indexes))
    for queue in config.all_queues:  # the declared ones and one per pool
        checks.append(_queue(config, queue.name, facts.queues.get(queue.name)))
    for schedule in config.control_schedules:
        checks.append(_job(config, schedule.name, facts.jobs.get(schedule.name), now))
    checks.append(_heartbeat(facts.heartbeats, now))
    checks.append(_site(config, facts.site, now, page_stale_after))
    checks.append(_page_opens(config, facts.page_answer, facts.storage_audit))
    return checks + observed_checks(config, facts.observed, now)


# Observed tables doctor reads with tables.get (free metadata), at most: the pass reads
# them all, every few minutes, and says which fail on the page.
DOCTOR_OBSERVED = 50


def _observed_tables(config: PipelineConfig) -> list[tuple[str, str]]:
    from freshet.core.observe import ObserveKind

    return [(key, spec.target) for key, spec in config.observed
            if spec.kind == ObserveKind.BIGQUERY_TABLE][:DOCTOR_OBSERVED]


def observed_checks(config: PipelineConfig, observed: dict, now: datetime) -> list[Check]:
    """Each observed BigQuery table (up to DOCTOR_OBSERVED) as the caller sees it: there,
    a table (not a view: its lastModifiedTime is not its data's), and when it changed."""
    checks = []
    for key, table in _observed_tables(config):
        label, found = f"observed table {table} ({key})", observed.get(key)
        if found is None:
            continue
        if isinstance(found, Unknown):
            checks.append(Check(False, label, found.reason,
                                f"name a table the runtime account "
                                f"{config.functions.service_account} may read "
                                "(roles/bigquery.metadataViewer on it)"))
            continue
        age = human_duration(max(now - found.modified, timedelta(0)))
        checks.append(Check(True, label, f"a table, last modified {age} ago (read with "
                            "your credentials: the runtime account needs "
                            "roles/bigquery.metadataViewer on it)"))
    return checks


def _read_observed(config: PipelineConfig) -> dict:
    from freshet.gcp.bigquery import BigQuery

    bigquery = BigQuery(config.project)
    return {key: read(bigquery.table_facts, table) for key, table in _observed_tables(config)}


def _deploy(config: PipelineConfig) -> str:
    return f"make deploy PROJECT={config.project}"


def _apis(config: PipelineConfig, apis: object) -> Check:
    if isinstance(apis, Unknown):
        return Check(False, "APIs", f"cannot list them ({apis.reason})",
                     "run as a project owner or viewer")
    missing = [a for a in REQUIRED_APIS if a not in apis]
    if missing:
        return Check(False, "APIs", f"not enabled: {', '.join(missing)}",
                     f"gcloud services enable {' '.join(missing)} --project={config.project}")
    return Check(True, "APIs", f"all {len(REQUIRED_APIS)} enabled")


def _function(config: PipelineConfig, name: str, fn: object, members: object) -> list[Check]:
    label = f"function {name}"
    if _missing(fn):
        return [Check(False, label, f"missing ({_why(fn)})", _deploy(config))]
    service = fn.get("serviceConfig", {})
    limits = config.functions.limits_for(name)
    problems = []
    if fn.get("state") != "ACTIVE":
        # make deploy compares the state as well as the digest: it deploys this one again
        problems.append(f"state {fn.get('state')} (make deploy deploys it again)")
    timeout = int(service.get("timeoutSeconds", 60))
    if timeout != limits.timeout_s:
        problems.append(f"timeout {timeout}s, the config says {limits.timeout_s}s")
    account = service.get("serviceAccountEmail")
    if account != config.functions.service_account:
        problems.append(f"runs as {account}, not {config.functions.service_account}")
    audience = (service.get("environmentVariables") or {}).get("FRESHET_AUDIENCE")
    if audience != config.functions.url(name):
        problems.append(f"FRESHET_AUDIENCE is {audience!r}")
    checks = [Check(not problems, label, "; ".join(problems) if problems else
                    f"active, timeout {timeout}s, memory {service.get('availableMemory')}, "
                    f"at most {service.get('maxInstanceCount')} instances",
                    _deploy(config))]
    checks.append(_invokers(config, name, members))
    return checks


def _invokers(config: PipelineConfig, name: str, members: object) -> Check:
    label = f"invokers of {name}"
    if _missing(members):
        return Check(False, label, f"cannot read them ({_why(members)})",
                     "run as a project owner")
    wanted = {_member(e) for e in [config.functions.invoker_email,
                                   *(config.functions.allowed_callers if name == "api"
                                     else ())]}
    public = sorted(m for m in members if m in PUBLIC_MEMBERS)
    if public:
        region = f"--region={config.region} --project={config.project}"
        return Check(False, label, f"{', '.join(public)} may call it: anyone could forge a "
                                   "caller (docs/deploy-security.md)",
                     "; ".join(f"gcloud functions remove-invoker-policy-binding {name} "
                               f"{region} --member={m}" for m in public))
    missing = sorted(wanted - set(members))
    if missing:
        return Check(False, label, f"missing {', '.join(missing)}", _deploy(config))
    extra = sorted(set(members) - wanted)
    note = f" (also {', '.join(extra)}, whom the function itself refuses)" if extra else ""
    return Check(True, label, f"only {', '.join(sorted(wanted))}{note}")


def _member(email: str) -> str:
    return _sa(email) if email.endswith(".gserviceaccount.com") else f"user:{email}"


def _accounts(config: PipelineConfig, facts: CloudFacts) -> list[Check]:
    fn = config.functions
    checks = []
    for email in dict.fromkeys((fn.service_account, fn.invoker_email,
                                fn.build_service_account)):
        got = facts.accounts.get(email)
        ok = isinstance(got, dict)
        checks.append(Check(ok, f"service account {email}", "exists" if ok else
                            f"missing ({_why(got)})", _deploy(config)))
    roles = facts.project_roles
    for email, role in ((fn.service_account, "roles/datastore.user"),
                        (fn.build_service_account, "roles/cloudbuild.builds.builder")):
        if _missing(roles):
            checks.append(Check(False, f"{role} for {email}", "cannot read the project's "
                                "IAM policy", "run as a project owner"))
            continue
        ok = role in roles.get(_sa(email), set())
        checks.append(Check(ok, f"{role} for {email}", "granted" if ok else "not granted",
                            _deploy(config)))
    act_as = facts.act_as
    ok = not _missing(act_as) and _sa(fn.service_account) in act_as
    checks.append(Check(ok, f"{fn.service_account} may act as {fn.invoker_email}",
                        "granted (tasks carry the invoker's token)" if ok else
                        "not granted: every task it creates with an OIDC token is refused",
                        _deploy(config)))
    caller = facts.caller_act_as
    checks.append(Check(caller is True, "you may act as the invoker (freshet apply)",
                        "yes" if caller is True else
                        f"no{'' if caller is False else f' ({_why(caller)})'}: creating "
                        "Scheduler jobs that call as it would be refused",
                        f"gcloud iam service-accounts add-iam-policy-binding "
                        f"{fn.invoker_email} --member=user:YOU "
                        f"--role=roles/iam.serviceAccountUser --project={config.project}"))
    return checks


def _engines(config: PipelineConfig, facts: CloudFacts) -> list[Check]:
    """The runtime account's roles on the engines the jobs use (freshet.ops.engine_access)."""
    runtime = _sa(config.functions.service_account)
    checks = []
    for job in engine_access.cloud_run_jobs(config):
        label = f"Cloud Run job {job.name} ({job.region}), run by {', '.join(job.used_by)}"
        policy = facts.engine_jobs.get(job.path)
        if _missing(policy):
            checks.append(Check(False, label, f"cannot read its IAM policy ({_why(policy)}); "
                                "Freshet runs an existing job and never creates one",
                                f"gcloud run jobs describe {job.name} --region={job.region} "
                                f"--project={job.project}"))
            continue
        held = {role for role, members in policy.items() if runtime in members}
        if not _missing(facts.project_roles):
            held |= facts.project_roles.get(runtime, set())
        missing = engine_access.missing_job_roles(held)
        checks.append(Check(
            not missing, label,
            f"{config.functions.service_account} may run and follow it" if not missing else
            f"{config.functions.service_account} lacks " + "; ".join(
                f"{role} (to {why})" for role, why in missing),
            _deploy(config) if not missing else " && ".join(
                f"gcloud run jobs add-iam-policy-binding {job.name} --region={job.region} "
                f"--project={job.project} --member={runtime} --role={role}"
                for role, _ in missing)))
    if engine_access.needs_bigquery_jobs(config):
        role, roles = engine_access.BIGQUERY_JOB_ROLE, facts.project_roles
        label = f"{role} for {config.functions.service_account}"
        if _missing(roles):
            checks.append(Check(False, label, "cannot read the project's IAM policy",
                                "run as a project owner"))
        else:
            ok = role in roles.get(runtime, set())
            checks.append(Check(ok, label, "granted (BigQuery jobs)" if ok else
                                "not granted: every BigQuery job a run submits is refused",
                                _deploy(config)))
    return checks


def _database(config: PipelineConfig, db: object) -> Check:
    label = "Firestore database (default)"
    if _missing(db):
        return Check(False, label, f"missing ({_why(db)})", _deploy(config))
    location = db.get("locationId")
    if location != config.firestore_location:
        return Check(False, label, f"in {location}, the config says "
                                   f"{config.firestore_location} (a location is permanent)",
                     f"set firestore_location: {location} in {config.path}")
    protected = db.get("deleteProtectionState") == "DELETE_PROTECTION_ENABLED"
    return Check(protected, label, f"in {location}" + ("" if protected
                                                       else ", delete protection off"),
                 f"gcloud firestore databases update --database='(default)' "
                 f"--delete-protection --project={config.project}")


def _indexes(config: PipelineConfig, listed: object) -> Check:
    """Every composite index the store's queries need, READY (a query without its index
    fails in Firestore, never in the emulator)."""
    label = "Firestore composite indexes"
    if _missing(listed):
        return Check(False, label, f"cannot tell ({_why(listed)})", _deploy(config))
    states = {}
    for index in listed:
        collection = index.get("name", "").partition("/collectionGroups/")[2].split("/")[0]
        fields = tuple((f.get("fieldPath"), f.get("order")) for f in index.get("fields", ())
                       if f.get("fieldPath") != "__name__")
        states[(collection, fields)] = index.get("state")
    wanted = len(COMPOSITE_INDEXES)
    missing = [i for i in COMPOSITE_INDEXES if i not in states]
    if missing:
        return Check(False, label, f"{len(missing)} of {wanted} missing: "
                                   + "; ".join(map(_index_words, missing)), _deploy(config))
    building = [i for i in COMPOSITE_INDEXES if states[i] != "READY"]
    if building:
        return Check(False, label, f"{len(building)} of {wanted} not ready: " + "; ".join(
            f"{_index_words(i)} {states[i]}" for i in building),
                     "wait: an index takes minutes to build (more with data), then run "
                     "freshet doctor again")
    return Check(True, label, f"all {wanted} ready")


def _index_words(index: tuple[str, tuple[tuple[str, str], ...]]) -> str:
    collection, fields = index
    return f"{collection} ({', '.join(f if o == 'ASCENDING' else f'{f} desc' for f, o in fields)})"


def _queue(config: PipelineConfig, name: str, queue: object) -> Check:
    label = f"queue {name}"
    if _missing(queue):
        return Check(False, label, _why(queue, "missing"), _deploy(config))
    enqueuers = queue.get("enqueuers")
    if isinstance(enqueuers, set) and _sa(config.functions.service_account) not in enqueuers:
        return Check(False, label, f"{config.functions.service_account} may not add tasks",
                     _deploy(config))
    return Check(True, label, f"present ({queue.get('state', 'RUNNING')})")


def _job(config: PipelineConfig, name: str, job: object, now: datetime) -> Check:
    label = f"scheduler job {name}"
    if _missing(job):
        return Check(False, label, _why(job, "missing"), f"freshet apply --config={config.path}")
    if job.get("state") != "ENABLED":
        return Check(False, label, f"{job.get('state', '?').lower()}",
                     f"gcloud scheduler jobs resume {name} --location={config.region} "
                     f"--project={config.project}")
    last = to_utc(job.get("last_attempt_time"))
    if last is None:
        return Check(True, label, "enabled, not attempted yet")
    ago = human_duration(now - last)
    if job.get("code", 0):
        return Check(False, label, f"last attempt {ago} ago failed: {job.get('message')}",
                     "read the target function's logs (Logs Explorer)")
    return Check(True, label, f"last attempt {ago} ago succeeded")


def _heartbeat(heartbeats: object, now: datetime) -> Check:
    if _missing(heartbeats):
        return Check(False, "tick heartbeat", f"cannot read it ({_why(heartbeats)})",
                     "check Firestore access")
    health = loop_health(heartbeats, now)
    return Check(health.ok, "tick heartbeat", health.message.removeprefix("Control loop: "),
                 "look at the freshet-tick scheduler job and scheduler_tick's logs")


def _site(config: PipelineConfig, site: object, now: datetime, stale: timedelta) -> Check:
    label = f"status page gs://{config.site.bucket}"
    if _missing(site):
        return Check(False, label, f"unreachable ({_why(site)})", _deploy(config))
    public = sorted(m for m in site.get("members", ()) if m in PUBLIC_MEMBERS)
    if public and not config.site.public:
        return Check(False, label, f"readable by {', '.join(public)} but the config keeps it "
                                   "private", f"gcloud storage buckets remove-iam-policy-binding "
                                   f"gs://{config.site.bucket} --member={public[0]} "
                                   "--role=roles/storage.objectViewer")
    updated = to_utc(site.get("updated"))
    if updated is None:
        return Check(False, label, "no index.html yet",
                     f"gcloud scheduler jobs run freshet-publish --location={config.region} "
                     f"--project={config.project}")
    age = now - updated
    if age > stale:
        return Check(False, label, f"index.html is {human_duration(age)} old",
                     "look at the freshet-publish job and publish_status's logs")
    return Check(True, label, f"index.html published {human_duration(age)} ago: "
                              f"{config.site.url}")


def _page_opens(config: PipelineConfig, answer: object, audited: object) -> Check:
    """Whether the page opens for whoever runs doctor: the same identity and permission
    (storage.objects.get) as their browser on storage.cloud.google.com."""
    label = "status page opens for you"
    bucket = f"gs://{config.site.bucket}"
    if _missing(answer):
        return Check(False, label, f"cannot tell ({_why(answer)})", _deploy(config))
    if answer == 404:
        return Check(False, label, "index.html is not there yet",
                     f"gcloud scheduler jobs run freshet-publish --location={config.region} "
                     f"--project={config.project}")
    if answer in (401, 403):
        return Check(False, label, f"HTTP {answer}: you may not read {bucket}",
                     "add yourself (user:EMAIL) or your group to site.viewers in "
                     f"{config.path} and run {_deploy(config)}")
    if answer != 200:
        return Check(False, label, f"HTTP {answer} from Cloud Storage", "try again later")
    if audited is True and not config.site.public:
        return Check(False, label, "you may read it, but Data Access audit logs record "
                                   "Cloud Storage reads in this project, and then "
                                   "storage.cloud.google.com refuses logged-in downloads",
                     "exempt the page's readers from DATA_READ logs for Cloud Storage (IAM & "
                     "Admin > Audit Logs), or read it with `gcloud storage cat "
                     f"{bucket}/index.html`, or set site.public: true")
    return Check(True, label, f"HTTP 200 with your credentials: {config.site.url}")


# -- judging: the local stack -----------------------------------------------------------

@dataclass
class LocalFacts:
    firestore: object = None  # address, when reachable
    tasks: object = None  # address, when reachable
    queues: object = None  # names present in the tasks emulator
    jobs: object = None  # job ids stored
    heartbeats: object = None
    page: object = None  # {"where": str, "updated": datetime | None}
    observed: dict = field(default_factory=dict)  # as CloudFacts', from the emulator


def local_checks(config: PipelineConfig, facts: LocalFacts, now: datetime, *,
                 page_stale_after: timedelta = timedelta(minutes=15)) -> list[Check]:
    def known(value) -> bool:
        return not _missing(value)

    def why(value) -> str:
        return _why(value, "not set")

    checks = [Check(known(facts.firestore), "Firestore emulator",
                    f"at {facts.firestore}" if known(facts.firestore)
                    else f"unreachable ({why(facts.firestore)})", "make emulators")]
    checks.append(Check(known(facts.tasks), "Cloud Tasks emulator",
                        f"at {facts.tasks}" if known(facts.tasks)
                        else f"unreachable ({why(facts.tasks)})",
                        "make emulators, and export FRESHET_TASKS_EMULATOR_HOST"))
    # What cannot be read is "not checked", never "missing" (that would send the reader
    # to apply into a stack that is merely stopped).
    if not known(facts.queues):
        checks.append(Check(False, "queues", "not checked: the Cloud Tasks emulator is "
                            "not reachable", "start the stack (freshet demo)"))
    else:
        missing_queues = [q.name for q in config.all_queues if q.name not in facts.queues]
        checks.append(Check(not missing_queues, "queues", "present" if not missing_queues
                            else f"missing: {', '.join(missing_queues)}",
                            f"freshet apply --config={config.path}"))
    if not known(facts.jobs):
        checks.append(Check(False, "pipeline applied", "not checked: the Firestore emulator "
                            "is not reachable", "start the stack (freshet demo)"))
    else:
        missing_jobs = sorted(config.job_ids - set(facts.jobs))
        checks.append(Check(not missing_jobs, "pipeline applied",
                            f"{len(config.job_ids)} job(s) stored" if not missing_jobs else
                            f"jobs not stored: {', '.join(missing_jobs[:5])}",
                            f"freshet apply --config={config.path}"))
    checks.append(_heartbeat(facts.heartbeats, now))
    page = facts.page
    if not known(page) or page.get("updated") is None:
        checks.append(Check(False, "status page", "not published yet"
                            if known(page) else f"unreachable ({why(page)})",
                            "freshet site build"))
    elif not known(facts.firestore):
        age = now - to_utc(page["updated"])
        checks.append(Check(False, "status page", f"{page['where']} was published "
                            f"{human_duration(age)} ago, but nothing publishes it now "
                            "(the stack is not running)", "start the stack (freshet demo)"))
    else:
        age = now - to_utc(page["updated"])
        checks.append(Check(age <= page_stale_after, "status page",
                            f"{page['where']} published {human_duration(age)} ago",
                            "freshet site build (or is the local scheduler running?)"))
    return checks + observed_checks(config, facts.observed, now)


# -- reading ------------------------------------------------------------------------------

def collect_cloud(config: PipelineConfig) -> CloudFacts:
    """Every fact cloud_checks judges, read with the caller's credentials."""
    from freshet.core.settings import load_settings
    from freshet.gcp.cloudrun import CloudRun
    from freshet.gcp.project import ProjectReader
    from freshet.gcp.scheduler import SchedulerAdmin, job_summary
    from freshet.gcp.storage import bucket_facts
    from freshet.gcp.store import Store, firestore_client
    from freshet.gcp.tasks import TaskQueue

    reader = ProjectReader(config.project, config.region)
    fn = config.functions
    facts = CloudFacts(credentials=read(reader.check_credentials))
    if isinstance(facts.credentials, Unknown):
        return facts
    facts.apis = read(reader.enabled_services)
    for name in ENTRY_POINTS:
        resource = read(reader.function, name)
        facts.functions[name] = resource
        service = resource.get("serviceConfig", {}).get("service") \
            if isinstance(resource, dict) else None
        facts.invokers[name] = read(reader.run_invokers, service) if service else resource
    for email in dict.fromkeys((fn.service_account, fn.invoker_email,
                                fn.build_service_account)):
        facts.accounts[email] = read(reader.service_account, email)
    facts.project_roles = read(reader.project_roles)
    facts.act_as = read(reader.service_account_members, fn.invoker_email,
                        "roles/iam.serviceAccountUser")
    facts.caller_act_as = read(reader.can_act_as, fn.invoker_email)
    facts.database = read(reader.database)
    facts.indexes = read(reader.composite_indexes)
    settings = load_settings(os.environ, project=config.project, region=config.region,
                             queue=config.queue)
    queue = TaskQueue(settings)
    for spec in config.all_queues:
        facts.queues[spec.name] = read(queue.queue_facts, spec.name)
    admin = SchedulerAdmin(config.project, config.region)
    current = read(admin.current_jobs)
    for schedule in config.control_schedules:
        if isinstance(current, Unknown):
            facts.jobs[schedule.name] = current
            continue
        job = current.get(f"projects/{config.project}/locations/{config.region}/jobs/"
                          f"{schedule.name}")
        facts.jobs[schedule.name] = None if job is None else job_summary(job)
    facts.heartbeats = read(lambda: Store(firestore_client(config.project)).heartbeats())
    facts.site = read(bucket_facts, config.site.bucket, "index.html")
    facts.page_answer = read(reader.object_answer, config.site.bucket, "index.html")
    facts.storage_audit = read(reader.storage_data_read_audited)
    for job in engine_access.cloud_run_jobs(config):
        engines = CloudRun(job.project, job.region)
        facts.engine_jobs[job.path] = read(engines.job_policy, job.path)
    facts.observed = _read_observed(config)
    return facts


def collect_local(config: PipelineConfig, env=os.environ) -> LocalFacts:
    """What the local stack has: emulators, queues, stored jobs, heartbeat, the page."""
    from freshet.core.settings import load_settings
    from freshet.gcp.storage import local_page_facts
    from freshet.gcp.store import Store, firestore_client
    from freshet.gcp.tasks import TaskQueue

    facts = LocalFacts()
    firestore, tasks = env.get("FIRESTORE_EMULATOR_HOST"), env.get("FRESHET_TASKS_EMULATOR_HOST")
    facts.firestore = read(_reachable, firestore) if firestore else None
    facts.tasks = read(_reachable, tasks) if tasks else None
    if facts.tasks and not isinstance(facts.tasks, Unknown):
        settings = load_settings(env, project=config.project, region=config.region,
                                 queue=config.queue)
        facts.queues = read(TaskQueue(settings).queue_names)
    if facts.firestore and not isinstance(facts.firestore, Unknown):
        store = Store(firestore_client(config.project))
        facts.jobs = read(lambda: [j.id for j in store.list_jobs()])
        facts.heartbeats = read(store.heartbeats)
    settings = load_settings(env)
    facts.page = read(local_page_facts, settings)
    if env.get("BIGQUERY_EMULATOR_HOST"):  # the demo's vendor table lives there
        facts.observed = _read_observed(config)
    return facts


def _reachable(address: str) -> str:
    import socket

    host, _, port = address.rpartition(":")
    with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=2):
        return address
