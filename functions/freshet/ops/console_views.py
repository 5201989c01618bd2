"""The console's screens and actions: each reads or acts through one or two API calls
(freshet.ops.console's InProcessApi or HttpApi) and renders a Jinja2 template from
site/templates/console/. Nothing here decides anything the API does not."""

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import flask
import jinja2
from werkzeug.exceptions import NotFound as NoSuchFile

from freshet.core.timeutil import utcnow

RUN_STATES = ("queued", "running", "waiting", "retrying", "succeeded", "failed", "skipped",
              "cancelled")
OVERVIEW_STATES = ("active", "paused", "archived", "completed", "failing", "kill_switched",
                   "maintenance")
SAFE_BACK = re.compile(r"/[A-Za-z0-9_.%~-]+(/[A-Za-z0-9_.%~-]+)*")
PAGE_ROWS = 25  # rows a screen lists at a time
MAX_BULK = 100  # runs one bulk action may name
STATIC = {"status.css": "text/css", "console.css": "text/css",
          "console.js": "text/javascript"}


class _Form:
    """The current request's form fields (flask.request.form, looked up per request)."""

    def get(self, key: str, default=None):
        return flask.request.form.get(key, default)

    def getlist(self, key: str) -> list[str]:
        return flask.request.form.getlist(key)

    def __getitem__(self, key: str) -> str:
        return flask.request.form[key]


@dataclass
class State:
    api: object
    env: jinja2.Environment
    csrf: str
    flash: object
    clock: object = utcnow
    static: Path | None = None


def register(app: flask.Flask, st: State) -> None:
    from freshet.ops.console import Answer, log_action, relative, sentence

    def render(template: str, title: str, nav: str, **context) -> flask.Response:
        now = st.clock()
        notice = st.flash.take(flask.request.args.get("msg"))
        html = st.env.get_template(template).render(
            title=title, nav=nav, csrf=st.csrf, notice=notice, now=now,
            rel=lambda v: relative(v, now), url=url, q=quote, **context)
        return flask.Response(html, mimetype="text/html")

    def url(path: str, **params) -> str:
        kept = {k: v for k, v in params.items() if v not in (None, "")}
        return path + ("?" + urlencode(kept) if kept else "")

    def read(path: str, doing: str, query: dict | None = None) -> Answer:
        answer = st.api.call("GET", path, query)
        if not answer.ok:
            flask.abort(_problem(answer, doing))
        return answer

    def _problem(answer: Answer, doing: str) -> flask.Response:
        html = st.env.get_template("problem.html").render(
            title="Not shown", nav="", csrf=st.csrf,
            notice=st.flash.take(flask.request.args.get("msg")),  # what an action said
            problem=sentence(answer, doing), now=st.clock(), rel=lambda v: v, url=url, q=quote)
        return flask.Response(html, status=answer.status, mimetype="text/html")

    def act(method: str, path: str, body: dict | None, doing: str, back: str,
            done: str | Callable[[Answer], str] = "Done.") -> flask.Response:
        """Call the API, log the action, and go back with what happened, in words."""
        answer = st.api.call(method, path, None, body)
        log_action(getattr(st.api, "caller", "operator"), method, path, body, answer)
        if answer.ok:
            key = st.flash.put("ok", done(answer) if callable(done) else done)
        else:
            key = st.flash.put("error", sentence(answer, doing))
        sep = "&" if "?" in back else "?"
        return flask.redirect(f"{back}{sep}msg={key}", code=303)

    form = _Form()

    # -- static ------------------------------------------------------------------------

    @app.get("/static/<name>")
    def static(name: str):
        if name not in STATIC:
            raise NoSuchFile()
        folder = st.static / ("" if name == "status.css" else "console")
        text = (folder / name).read_text(encoding="utf-8")
        return flask.Response(text, mimetype=STATIC[name])

    @app.get("/favicon.ico")
    def favicon():
        return flask.Response(status=204)

    # -- overview ----------------------------------------------------------------------

    @app.get("/")
    def overview():
        args = flask.request.args
        filters = {k: args.get(k, "") for k in ("state", "pool", "owner", "kind", "q")}
        answer = read("/overview", "view this pipeline",
                      {**filters, "cursor": args.get("cursor"), "limit": str(PAGE_ROWS)})
        return render("overview.html", "Overview", "overview", o=answer.body,
                      filters=filters, states=OVERVIEW_STATES, cursor=args.get("cursor", ""))

    # -- a job -------------------------------------------------------------------------

    @app.get("/jobs/<job_id>")
    def job(job_id: str):
        answer = read(f"/jobs/{quote(job_id)}", "view this job")
        args = flask.request.args
        page = read("/runs", "view this job's runs", {
            "job_id": job_id, "cursor": args.get("cursor"), "limit": str(PAGE_ROWS)})
        return render("job.html", job_id, "overview", job=answer.body["job"],
                      runs=page.body["runs"], next_cursor=page.body["next_cursor"],
                      run_key=secrets.token_urlsafe(12), cursor=args.get("cursor", ""))

    @app.post("/jobs/<job_id>/run")
    def run_now(job_id: str):
        def done(answer: Answer) -> str:
            verb = "queued" if answer.body.get("created") else "was already requested"
            return f"Run {answer.body['run']['id']} {verb}."

        return act("POST", f"/jobs/{quote(job_id)}/run",
                   {"idempotency_key": form.get("key") or None}, "run jobs",
                   f"/jobs/{quote(job_id)}", done)

    @app.post("/jobs/<job_id>/pause")
    def pause(job_id: str):
        body = {"reason": form.get("reason", ""), "until": form.get("until") or None}
        return act("POST", f"/jobs/{quote(job_id)}/pause", body, "pause jobs",
                   f"/jobs/{quote(job_id)}", f"Job {job_id} paused.")

    @app.post("/jobs/<job_id>/resume")
    def resume(job_id: str):
        return act("POST", f"/jobs/{quote(job_id)}/resume", None, "resume jobs",
                   f"/jobs/{quote(job_id)}", f"Job {job_id} resumed.")

    @app.post("/jobs/<job_id>/backfill")
    def backfill(job_id: str):
        parallel = form.get("max_parallel") or "1"  # not a number: the API says so
        body = {"job_id": job_id, "from": form.get("from", ""), "to": form.get("to", ""),
                "rerun": form.get("rerun") == "on",
                "max_parallel": int(parallel) if parallel.isdigit() else parallel}
        if form.get("confirm") != "yes":  # first the dry run, shown before Confirm
            answer = st.api.call("POST", "/backfills", None, {**body, "dry_run": True})
            if not answer.ok:
                key = st.flash.put("error", sentence(answer, "backfill jobs"))
                return flask.redirect(f"/jobs/{quote(job_id)}?msg={key}", code=303)
            return render("backfill.html", f"Backfill {job_id}", "overview", job_id=job_id,
                          plan=answer.body, body=body, key=secrets.token_urlsafe(12))
        return act("POST", "/backfills", {**body, "idempotency_key": form.get("key")},
                   "backfill jobs", f"/jobs/{quote(job_id)}",
                   lambda a: f"Backfill {a.body['backfill']['id']} started: "
                             f"{a.body['backfill']['progress']['planned']} slot(s).")

    @app.post("/runs/<run_id>/cancel")
    def cancel(run_id: str):
        back = form.get("back") or "/runs"
        if not SAFE_BACK.fullmatch(back):  # a path here, never //host or /\\host
            back = "/runs"
        return act("POST", f"/runs/{quote(run_id)}/cancel", None, "cancel runs", back,
                   f"Run {run_id} cancelled.")

    # -- runs --------------------------------------------------------------------------

    @app.get("/runs")
    def runs():
        args = flask.request.args
        filters = {k: args.get(k, "") for k in ("state", "job_id", "since", "until")}
        answer = read("/runs", "view runs", {**filters, "cursor": args.get("cursor"),
                                              "limit": str(PAGE_ROWS)})
        return render("runs.html", "Runs", "runs", runs=answer.body["runs"],
                      next_cursor=answer.body["next_cursor"], filters=filters,
                      states=RUN_STATES, cursor=args.get("cursor", ""))

    @app.post("/runs/bulk")
    def bulk():
        action = form.get("action")
        ids = form.getlist("run")[:MAX_BULK]
        if action not in ("retry", "cancel") or not ids:
            key = st.flash.put("error", "Not done: choose runs, then Retry or Cancel.")
            return flask.redirect(f"/runs?msg={key}", code=303)
        if form.get("confirm") != "yes":
            return render("confirm.html", "Confirm", "runs", action=action, ids=ids)
        results = [(rid, st.api.call("POST", f"/runs/{quote(rid)}/{action}", None, None))
                   for rid in ids]
        for rid, answer in results:
            log_action(getattr(st.api, "caller", "operator"), "POST",
                       f"/runs/{rid}/{action}", None, answer)
        failed = [(rid, a) for rid, a in results if not a.ok]
        done = len(results) - len(failed)
        verb = {"retry": "retried", "cancel": "cancelled"}[action]
        text = f"{done} of {len(results)} run(s) {verb}."
        if failed:
            rid, a = failed[0]
            text += f" {len(failed)} not: {rid}: {sentence(a, action + ' runs')}"
        key = st.flash.put("ok" if not failed else "error", text)
        return flask.redirect(f"/runs?msg={key}", code=303)

    # -- datasets ----------------------------------------------------------------------

    @app.get("/datasets")
    def datasets():
        answer = read("/datasets", "view datasets")
        found = answer.body["datasets"]
        downstream: dict[str, list[str]] = {}
        for d in found:
            for up in d["upstream"]:
                downstream.setdefault(up, []).append(d["key"])
        producers = {d["key"]: d["producers"] for d in found}
        consumers = read("/consumers", "view consumers").body["consumers"]
        return render("datasets.html", "Datasets", "datasets", datasets=found,
                      downstream=downstream, producers=producers, consumers=consumers)

    # -- incidents and maintenance -----------------------------------------------------

    @app.get("/incidents")
    def incidents():
        found = read("/incidents", "view incidents").body["incidents"]
        windows = read("/maintenance", "view maintenance windows").body
        return render("incidents.html", "Incidents & maintenance", "incidents",
                      incidents=found, windows=windows)

    @app.post("/incidents")
    def open_incident():
        body = {"title": form.get("title", ""), "note": form.get("note") or None,
                "eta": form.get("eta") or None}
        return act("POST", "/incidents", {k: v for k, v in body.items() if v is not None},
                   "open incidents", "/incidents", "Incident opened.")

    @app.post("/incidents/<incident_id>/notes")
    def note_incident(incident_id: str):
        body = {"text": form.get("text", ""), "eta": form.get("eta") or None}
        return act("POST", f"/incidents/{quote(incident_id)}/notes",
                   {k: v for k, v in body.items() if v is not None}, "note incidents",
                   "/incidents", "Note added.")

    @app.post("/incidents/<incident_id>/resolve")
    def resolve_incident(incident_id: str):
        body = {"text": form.get("text")} if form.get("text") else {}
        return act("POST", f"/incidents/{quote(incident_id)}/resolve", body,
                   "resolve incidents", "/incidents", "Incident resolved.")

    @app.post("/maintenance")
    def open_window():
        minutes = form.get("minutes", "")
        body = {"minutes": int(minutes) if minutes.isdigit() else minutes,
                "note": form.get("note", ""), "mode": form.get("mode") or "skip"}
        if form.get("job"):
            body["scope"] = {"jobs": [form["job"]]}
        return act("POST", "/maintenance", body, "start maintenance windows", "/incidents",
                   "Maintenance window started.")

    @app.post("/maintenance/<window_id>/end")
    def end_window(window_id: str):
        return act("POST", f"/maintenance/{quote(window_id)}/end", None,
                   "end maintenance windows", "/incidents", "Maintenance window ended.")

