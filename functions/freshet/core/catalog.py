"""The catalog: declared datasets (with their upstreams), the consumers that need them,
and the pools (concurrency limits) runs go through.

It is declared in the pipeline config (infra/pipeline.yaml), validated there, and
stored by `apply` in Firestore (settings/catalog) so that publish_status reads it
with the rest of the state in one pass.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from freshet.core.alerts import RouteSpec
from freshet.core.deadlines import Deadline
from freshet.core.errors import ValidationError
from freshet.core.freshness import Requirement
from freshet.core.observe import ObserveSpec
from freshet.core.text import safe_link
from freshet.core.timeutil import format_duration, parse_duration

CONSUMER_KINDS = ("page", "report", "team", "service")
# Used for a dataset no consumer requires: still shown, judged against this.
DEFAULT_REQUIREMENT = (timedelta(hours=24), timedelta(hours=48))


@dataclass(frozen=True)
class DatasetSpec:
    key: str
    title: str = ""
    description: str = ""
    owner: str = ""
    upstream: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()  # notification routes (ids) told of its changes
    # Seen rather than produced (core.observe): where to look and how often.
    observe: ObserveSpec | None = None


@dataclass(frozen=True)
class Consumer:
    id: str
    title: str
    kind: str = "page"
    url: str = ""
    requires: tuple[Requirement, ...] = ()
    owner: str = ""
    deadlines: tuple[Deadline, ...] = ()
    routes: tuple[str, ...] = ()

    def deadline_keys(self, deadline: Deadline) -> tuple[str, ...]:
        """The datasets a deadline covers: those it names, else all this consumer needs."""
        return deadline.datasets or tuple(r.dataset for r in self.requires)


@dataclass(frozen=True)
class Pool:
    """A pool as the page shows it: its queue and its limit."""

    name: str
    queue: str
    max_concurrent: int


@dataclass(frozen=True)
class AppliedFrom:
    """Which config file the stored catalog was applied from, and its content's digest
    (sha256 of the file's bytes): doctor, apply and `site build` default to it."""

    path: str
    digest: str = ""

    def to_doc(self) -> dict:
        return {"path": self.path, "digest": self.digest}

    @classmethod
    def from_doc(cls, doc: object) -> "AppliedFrom | None":
        if not isinstance(doc, dict) or not isinstance(doc.get("path"), str):
            return None
        return cls(doc["path"], str(doc.get("digest") or ""))

    def describe(self) -> str:
        return f"{self.path} (sha256 {self.digest[:12]})" if self.digest else self.path


APPLIED_FROM = "applied_from"  # its key in the catalog document


@dataclass(frozen=True)
class Catalog:
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    consumers: tuple[Consumer, ...] = ()
    pools: tuple[Pool, ...] = ()  # the default pool first
    routes: tuple[RouteSpec, ...] = ()

    @property
    def observed(self) -> dict[str, ObserveSpec]:
        """The observed datasets' specs, by key."""
        return {k: d.observe for k, d in self.datasets.items() if d.observe is not None}

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)

    def requirement_for(self, key: str) -> Requirement:
        """The strictest requirement any consumer puts on `key` (or the default)."""
        found = [r for c in self.consumers for r in c.requires if r.dataset == key]
        if not found:
            return Requirement(key, *DEFAULT_REQUIREMENT)
        return Requirement(key, min(r.warn_after for r in found),
                           min(r.error_after for r in found))

    def to_doc(self) -> dict:
        return {
            "datasets": [
                {"key": d.key, "title": d.title, "description": d.description,
                 "owner": d.owner, "upstream": list(d.upstream), "routes": list(d.routes),
                 **({"observe": d.observe.to_dict()} if d.observe is not None else {})}
                for d in self.datasets.values()
            ],
            "consumers": [
                {"id": c.id, "title": c.title, "kind": c.kind, "url": c.url,
                 "requires": [{"dataset": r.dataset,
                               "warn_after": format_duration(r.warn_after),
                               "error_after": format_duration(r.error_after)}
                              for r in c.requires],
                 "owner": c.owner, "deadlines": [d.to_doc() for d in c.deadlines],
                 "routes": list(c.routes)}
                for c in self.consumers
            ],
            "pools": [{"name": p.name, "queue": p.queue, "max_concurrent": p.max_concurrent}
                      for p in self.pools],
            "routes": [r.to_doc() for r in self.routes],
        }

    @classmethod
    def from_doc(cls, doc: dict | None) -> "Catalog":
        doc = doc or {}
        datasets = {
            d["key"]: DatasetSpec(
                key=d["key"], title=d.get("title", ""), description=d.get("description", ""),
                owner=d.get("owner", ""), upstream=tuple(d.get("upstream") or ()),
                routes=tuple(d.get("routes") or ()),
                observe=ObserveSpec.from_dict(d["observe"]) if d.get("observe") else None,
            )
            for d in doc.get("datasets") or []
        }
        consumers = tuple(
            Consumer(
                id=c["id"], title=c.get("title") or c["id"], kind=c.get("kind", "page"),
                url=c.get("url", ""),
                requires=tuple(
                    Requirement(
                        r["dataset"],
                        parse_duration(r["warn_after"], "warn_after"),
                        parse_duration(r["error_after"], "error_after"),
                    )
                    for r in c.get("requires") or []
                ),
                owner=c.get("owner") or "",
                deadlines=tuple(Deadline.from_doc(d) for d in c.get("deadlines") or ()),
                routes=tuple(c.get("routes") or ()),
            )
            for c in doc.get("consumers") or []
        )
        pools = tuple(Pool(name=p["name"], queue=p["queue"],
                           max_concurrent=int(p["max_concurrent"]))
                      for p in doc.get("pools") or [])
        routes = tuple(RouteSpec.from_doc(r) for r in doc.get("routes") or ())
        return cls(datasets=datasets, consumers=consumers, pools=pools, routes=routes)


MAX_LINK_CHARS = 2000


def check_link(value: object, field: str) -> str:
    """A link the status page may render: http(s) or relative, nothing else ('' if none).

    A `javascript:` or `data:` URL would run in the page's origin when a reader clicks
    it; leading spaces, tabs and mixed case do not hide the scheme from this check."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_LINK_CHARS:
        raise ValidationError(field, f"must be a URL of at most {MAX_LINK_CHARS} characters")
    if safe_link(value) is None:
        raise ValidationError(field, "must be an http(s) URL or a relative link, without "
                              "spaces or control characters at its ends")
    return value


def upstream_cycle(datasets: dict[str, DatasetSpec]) -> list[str] | None:
    """A cycle in the upstream graph, as a path [a, b, a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(key: str, path: list[str]) -> list[str] | None:
        if state.get(key) == 1:
            return path[path.index(key):] + [key]
        if state.get(key) == 2 or key not in datasets:
            return None
        state[key] = 1
        for up in datasets[key].upstream:
            cycle = visit(up, path + [key])
            if cycle:
                return cycle
        state[key] = 2
        return None

    for key in datasets:
        cycle = visit(key, [])
        if cycle:
            return cycle
    return None


def check_catalog(catalog: Catalog) -> None:
    """Cross-references: requirements and upstreams must name declared datasets."""
    for c in catalog.consumers:
        for i, r in enumerate(c.requires):
            if r.dataset not in catalog.datasets:
                raise ValidationError(f"consumers.{c.id}.requires[{i}].dataset",
                                      f"unknown dataset {r.dataset!r}")
    for d in catalog.datasets.values():
        for up in d.upstream:
            if up not in catalog.datasets:
                raise ValidationError(f"datasets.{d.key}.upstream", f"unknown dataset {up!r}")
    cycle = upstream_cycle(catalog.datasets)
    if cycle:
        raise ValidationError("datasets.upstream", "cycle: " + " -> ".join(cycle))
    routes = {r.id for r in catalog.routes}
    named = [(f"consumers.{c.id}.routes", c.routes) for c in catalog.consumers]
    named += [(f"datasets.{d.key}.routes", d.routes) for d in catalog.datasets.values()]
    for where, ids in named:
        for i, route in enumerate(ids):
            if route not in routes:
                raise ValidationError(f"{where}[{i}]", f"unknown route {route!r}")
