"""Read-only views of a deployed project, for `freshet doctor`: enabled APIs, the
functions and who may invoke them, service accounts and their roles, the Firestore
database. Each is one REST read with the caller's Application Default Credentials
(Google ships no client library for several of these APIs worth a dependency).

Nothing here changes anything (object_answer reads one byte of the status page). Every
method raises ProjectError with a one-line reason (403 and 404 included) for the caller
to show; object_answer returns the status instead, which is the fact it reads.
"""

import threading
from urllib.parse import quote

import google.auth
import google.auth.exceptions
import google.auth.transport.requests

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TIMEOUT_S = 30


class ProjectError(Exception):
    """A read that could not be done, in one line."""


class ProjectReader:
    def __init__(self, project: str, region: str, session=None):
        self.project, self.region = project, region
        self._session = session
        self._lock = threading.Lock()

    @property
    def session(self):
        with self._lock:
            if self._session is None:
                try:
                    credentials, _ = google.auth.default(scopes=SCOPES,
                                                         quota_project_id=self.project)
                except google.auth.exceptions.DefaultCredentialsError:
                    raise ProjectError("no Application Default Credentials") from None
                self._session = google.auth.transport.requests.AuthorizedSession(credentials)
            return self._session

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        try:
            response = self.session.request(method, url, json=body, timeout=TIMEOUT_S)
        except (google.auth.exceptions.GoogleAuthError, OSError) as exc:
            raise ProjectError(f"cannot reach Google Cloud: {exc}") from None
        if response.status_code == 404:
            raise ProjectError("not found")
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise ProjectError(f"HTTP {response.status_code}: {' '.join(message.split())[:300]}")
        return response.json() if response.content else {}

    def check_credentials(self) -> bool:
        """Raises ProjectError when there are no credentials to read anything with."""
        return self.session is not None

    # -- reads -----------------------------------------------------------------------

    def enabled_services(self) -> set[str]:
        url = (f"https://serviceusage.googleapis.com/v1/projects/{self.project}/services"
               "?filter=state:ENABLED&pageSize=200")
        found, token = set(), ""
        while True:
            page = self._call("GET", url + (f"&pageToken={token}" if token else ""))
            found |= {s["config"]["name"] for s in page.get("services", [])}
            token = page.get("nextPageToken", "")
            if not token:
                return found

    def function(self, name: str) -> dict:
        return self._call("GET", "https://cloudfunctions.googleapis.com/v2/projects/"
                                 f"{self.project}/locations/{self.region}/functions/{name}")

    def run_invokers(self, service: str) -> set[str]:
        """Members holding roles/run.invoker on a Cloud Run service (a function's)."""
        policy = self._call("GET", f"https://run.googleapis.com/v2/{service}:getIamPolicy")
        return _members(policy, "roles/run.invoker")

    def service_account(self, email: str) -> dict:
        return self._call("GET", "https://iam.googleapis.com/v1/projects/-/serviceAccounts/"
                                 f"{quote(email)}")

    def service_account_members(self, email: str, role: str) -> set[str]:
        policy = self._call("POST", "https://iam.googleapis.com/v1/projects/-/serviceAccounts/"
                                    f"{quote(email)}:getIamPolicy")
        return _members(policy, role)

    def can_act_as(self, email: str) -> bool:
        """Whether the caller holds iam.serviceAccounts.actAs on the account."""
        answer = self._call("POST", "https://iam.googleapis.com/v1/projects/-/serviceAccounts/"
                                    f"{quote(email)}:testIamPermissions",
                            {"permissions": ["iam.serviceAccounts.actAs"]})
        return "iam.serviceAccounts.actAs" in answer.get("permissions", [])

    def project_policy(self) -> dict:
        with self._lock:
            cached = getattr(self, "_policy", None)
        if cached is None:
            cached = self._call("POST", "https://cloudresourcemanager.googleapis.com/v1/"
                                        f"projects/{self.project}:getIamPolicy",
                                {"options": {"requestedPolicyVersion": 3}})
            with self._lock:
                self._policy = cached
        return cached

    def storage_data_read_audited(self) -> bool:
        """Whether Data Access audit logs record Cloud Storage reads (DATA_READ) in the
        project: then logged-in downloads through storage.cloud.google.com fail."""
        for config in self.project_policy().get("auditConfigs", []):
            if config.get("service") not in ("storage.googleapis.com", "allServices"):
                continue
            if any(c.get("logType") == "DATA_READ" for c in config.get("auditLogConfigs", [])):
                return True
        return False

    def object_answer(self, bucket: str, name: str) -> int:
        """The HTTP status Cloud Storage answers the caller for the object's first byte
        (200: they may read it; 403: they may not; 404: it is not there)."""
        url = (f"https://storage.googleapis.com/storage/v1/b/{quote(bucket, safe='')}/o/"
               f"{quote(name, safe='')}?alt=media")
        try:
            response = self.session.request("GET", url, headers={"Range": "bytes=0-0"},
                                            timeout=TIMEOUT_S)
        except (google.auth.exceptions.GoogleAuthError, OSError) as exc:
            raise ProjectError(f"cannot reach Google Cloud: {exc}") from None
        return 200 if response.status_code == 206 else response.status_code

    def project_roles(self) -> dict[str, set[str]]:
        """member -> the roles granted to it on the project (unconditional bindings)."""
        policy = self.project_policy()
        roles: dict[str, set[str]] = {}
        for binding in policy.get("bindings", []):
            if binding.get("condition"):
                continue
            for member in binding.get("members", []):
                roles.setdefault(member, set()).add(binding["role"])
        return roles

    def database(self, name: str = "(default)") -> dict:
        return self._call("GET", f"https://firestore.googleapis.com/v1/projects/{self.project}"
                                 f"/databases/{quote(name)}")

    def composite_indexes(self, name: str = "(default)") -> list[dict]:
        """The database's composite indexes (Firestore Admin API), every page."""
        url = (f"https://firestore.googleapis.com/v1/projects/{self.project}/databases/"
               f"{quote(name)}/collectionGroups/-/indexes")
        found, token = [], ""
        while True:
            answer = self._call("GET", url + (f"?pageToken={quote(token)}" if token else ""))
            found += answer.get("indexes", [])
            token = answer.get("nextPageToken") or ""
            if not token:
                return found


def _members(policy: dict, role: str) -> set[str]:
    return {m for b in policy.get("bindings", []) if b.get("role") == role
            for m in b.get("members", [])}
