"""Which requests an app's routes take at its cluster's gateway, and when two apps' routes clash.

An exposed port becomes a route: a VirtualService (Istio) or an HTTPRoute (Gateway API) of
its app. Both routers accept several apps routing one host and choose between them by rules
of their own, so two apps whose routes take the same requests leave one of them without
traffic, or with a share nobody chose. A route is refused when another app of the cluster
(any workspace) already takes requests it would take; the error names that app, and the
first one keeps its route. Two matches on one host clash when:

=============  ===========================================  ============================================
router         they clash when                              because
=============  ===========================================  ============================================
Istio,         one path can take requests the other         Istio merges the VirtualServices bound to a
a gateway      takes: equal paths, a prefix below the       gateway for one host, and "the cross-resource
               other's (``/`` and ``/api``), an exact       order is UNDEFINED" (Istio, Traffic
               path below a prefix; a regex always          Management Best Practices, "Split large
                                                            virtual services"): ``/`` may come first
Istio, mesh    always                                       "Host merging is not supported in sidecars"
                                                            (same page; istioctl analyze IST0109)
Gateway API    same path type and value (``/api/`` is the   the most specific match wins (Exact, then
               PathPrefix ``/api``) and as many method,     the longest prefix, method, headers, query
               header and query conditions; a regex always  parameters) and a tie goes to the oldest
                                                            route (HTTPRouteRule ``matches``); regex
                                                            precedence is implementation-specific
=============  ===========================================  ============================================

So ``/`` in one app and ``/api`` in another are refused on Istio and allowed on Gateway
API, where ``/api`` takes its requests whatever the order. Matches that can never take the
same request (different exact methods, or one header, query parameter or port with different
exact values) do not clash. Hosts compare exactly: a request's host picks the most specific
host first (Envoy's virtual host domain search order, which Istio's gateways are built on;
HTTPRoute ``hostnames``: the longest non-wildcard hostname wins), so ``*.example.com`` and
``shop.example.com`` never share a request. Whether a workspace may route a host at all is
gitops.isolation's host claims, checked first; only routes of the same gateway are compared.

The others' routes are read from the cluster repository: the VirtualService and HTTPRoute
files of every app that has its Application (what ArgoCD syncs), matches read as the routers
read them rather than as today's templates write them. An app's matches are kept by its
directory's tree id and a workspace's by its two trees' ids, so a deploy parses only the apps
that changed since the last one. The deploy service checks a plan against the repository's
tip (gitops.deploy), and every commit checks again on the tree it is built on (gitops.apply),
which holds against concurrent deploys and covers the offline ``shipyard apply --repo``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from contract.errors import Problem
from contract.repository import APPS_DIR, app_dir, kind_of_filename, workspace_dir
from renderer.manifest_yaml import load_trusted
from renderer.render import Rendering
from renderer.spec import port_exposed

from gitops import layout
from gitops.repo import Snapshot

ISTIO, GATEWAY_API = "istio", "gateway_api"
MESH = "mesh"  # Istio's reserved gateway name: every sidecar of the mesh
PREFIX, EXACT, REGEX, PRESENT = "prefix", "exact", "regex", "present"
ROUTE_KINDS = {"VirtualService": ISTIO, "HTTPRoute": GATEWAY_API}
_ROUTE_FILES = {kind.lower() for kind in ROUTE_KINDS}
_PATH_WORDS = {PREFIX: "path", EXACT: "exact path", REGEX: "path regex"}


@dataclass(frozen=True)
class RouteMatch:
    """One request match of an app's route: the requests it takes, through which gateway."""

    router: str  # ISTIO | GATEWAY_API
    gateway: str  # "<namespace>/<name>", or MESH
    host: str  # lowercase
    path_type: str  # PREFIX | EXACT | REGEX
    path: str
    conditions: frozenset  # (field, name, type, value): what else a request must carry
    port: int | None  # the Service port it sends to, which names the spec's port

    @property
    def place(self) -> tuple[str, str, str]:
        return self.router, self.gateway, self.host

    def shown_path(self) -> str:
        return f'{_PATH_WORDS[self.path_type]} "{self.path}"'

    def shown(self) -> str:
        return f'host "{self.host}" {self.shown_path()}'


# --- reading matches from route objects --------------------------------------------------------


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list:
    return value if isinstance(value, list) else []


def _string_match(value: Any) -> tuple[str, str]:
    """An Istio StringMatch as (type, value); ``{}`` matches any value that is present."""
    value = _mapping(value)
    for kind in (EXACT, PREFIX, REGEX):
        if isinstance(value.get(kind), str):
            return kind, value[kind]
    return PRESENT, ""


def _istio_gateway(name: str, namespace: str) -> str:
    # VirtualService "gateways": <namespace>/<name>, a bare name in the VirtualService's namespace, or "mesh"
    return name if name == MESH or "/" in name else f"{namespace}/{name}"


def _virtual_service(obj: Mapping) -> Iterable[RouteMatch]:
    """A VirtualService's matches (Istio, VirtualService: HTTPRoute ``match``, HTTPMatchRequest)."""
    namespace = _mapping(obj.get("metadata")).get("namespace") or "default"
    spec = _mapping(obj.get("spec"))
    hosts = [host.lower() for host in _items(spec.get("hosts")) if isinstance(host, str)]
    # without "gateways" a VirtualService applies to the sidecars ("mesh") only
    gateways = [_istio_gateway(g, namespace) for g in _items(spec.get("gateways")) if isinstance(g, str)] or [MESH]
    for route in map(_mapping, _items(spec.get("http"))):
        ports = [_mapping(_mapping(_mapping(d).get("destination")).get("port")).get("number")
                 for d in _items(route.get("route"))]
        port = next((p for p in ports if isinstance(p, int)), None)
        for match in map(_mapping, _items(route.get("match")) or [{}]):  # no match: every request
            authority = _mapping(match.get("authority"))
            on = [authority["exact"].lower()] if isinstance(authority.get("exact"), str) else hosts
            uri = match.get("uri")
            path_type, path = _string_match(uri) if uri is not None else (PREFIX, "/")
            if path_type == PRESENT:
                path_type, path = PREFIX, "/"
            conditions = {("method", "", *_string_match(match["method"]))} if "method" in match else set()
            conditions |= {("header", str(name).lower(), *_string_match(value))
                           for name, value in _mapping(match.get("headers")).items()}
            conditions |= {("query", str(name), *_string_match(value))
                           for name, value in _mapping(match.get("queryParams")).items()}
            if isinstance(match.get("port"), int):
                conditions.add(("port", "", EXACT, str(match["port"])))
            # a match's own "gateways" replace the VirtualService's
            where = [_istio_gateway(g, namespace) for g in _items(match.get("gateways")) if isinstance(g, str)]
            for gateway in where or gateways:
                for host in on:
                    yield RouteMatch(ISTIO, gateway, host, path_type, path, frozenset(conditions), port)


_GATEWAY_API_TYPES = {"PathPrefix": PREFIX, "Exact": EXACT, "RegularExpression": REGEX}


def _condition(field: str, entry: Any, fold_case: bool) -> tuple[str, str, str, str]:
    entry = _mapping(entry)
    name = str(entry.get("name", ""))
    kind = {"Exact": EXACT, "RegularExpression": REGEX}.get(entry.get("type", "Exact"), REGEX)
    return field, name.lower() if fold_case else name, kind, str(entry.get("value", ""))


def _http_route(obj: Mapping) -> Iterable[RouteMatch]:
    """An HTTPRoute's matches (Gateway API, HTTPRoute: ``hostnames``, ``parentRefs``, ``rules[].matches``)."""
    namespace = _mapping(obj.get("metadata")).get("namespace") or "default"
    spec = _mapping(obj.get("spec"))
    # no hostnames: every hostname of the listener, which only another route without any shares exactly
    hosts = [host.lower() for host in _items(spec.get("hostnames")) if isinstance(host, str)] or ["*"]
    parents = []
    for ref in map(_mapping, _items(spec.get("parentRefs"))):
        kind, where = ref.get("kind", "Gateway"), f"{ref.get('namespace') or namespace}/{ref.get('name')}"
        parents.append(where if kind == "Gateway" else f"{kind}:{where}")
    for rule in map(_mapping, _items(spec.get("rules")) or [{}]):
        ports = [_mapping(ref).get("port") for ref in _items(rule.get("backendRefs"))]
        port = next((p for p in ports if isinstance(p, int)), None)
        for match in map(_mapping, _items(rule.get("matches")) or [{}]):  # none: PathPrefix "/"
            path = _mapping(match.get("path"))
            path_type = _GATEWAY_API_TYPES.get(path.get("type", "PathPrefix"), REGEX)
            value = path.get("value") if isinstance(path.get("value"), str) else "/"
            if path_type == PREFIX and value != "/":
                value = value.rstrip("/") or "/"  # "When specified, a trailing / is ignored"
            conditions = {("method", "", EXACT, str(match["method"]))} if "method" in match else set()
            conditions |= {_condition("header", entry, True) for entry in _items(match.get("headers"))}
            conditions |= {_condition("query", entry, False) for entry in _items(match.get("queryParams"))}
            for parent in parents:
                for host in hosts:
                    yield RouteMatch(GATEWAY_API, parent, host, path_type, value, frozenset(conditions), port)


def matches_of(objects: Iterable[Any]) -> list[RouteMatch]:
    """Every request match of the route objects among ``objects``; other objects are skipped."""
    matches: list[RouteMatch] = []
    for obj in objects:
        kind = _mapping(obj).get("kind")
        if kind == "VirtualService":
            matches.extend(_virtual_service(obj))
        elif kind == "HTTPRoute":
            matches.extend(_http_route(obj))
    return matches


def routes_anything(renderings: Iterable[Rendering]) -> bool:
    """Whether any rendering has a route object: without one there is nothing to compare."""
    return any(obj.get("kind") in ROUTE_KINDS for rendering in renderings for obj in rendering.objects)


# --- when two matches clash --------------------------------------------------------------------


def _disjoint(mine: frozenset, theirs: frozenset) -> bool:
    """Whether no request can meet both sets of conditions: one field with two exact values."""
    exact = {(field, name): value for field, name, kind, value in mine if kind == EXACT}
    return any(exact.get((field, name), value) != value for field, name, kind, value in theirs if kind == EXACT)


def _paths_overlap(a: RouteMatch, b: RouteMatch) -> bool:
    """Whether one request path can match both (Istio: a prefix is a plain string prefix)."""
    if REGEX in (a.path_type, b.path_type):
        return True  # which paths a regex takes cannot be told from here
    if a.path_type == b.path_type == PREFIX:
        return a.path.startswith(b.path) or b.path.startswith(a.path)
    if a.path_type == b.path_type == EXACT:
        return a.path == b.path
    exact, prefix = (a, b) if a.path_type == EXACT else (b, a)
    return exact.path.startswith(prefix.path)


def _precedence(match: RouteMatch) -> tuple:
    """What the Gateway API ranks a match by, beyond its path: method, then header and query counts."""
    fields = [field for field, _, _, _ in match.conditions]
    return match.path_type, match.path, "method" in fields, fields.count("header"), fields.count("query")


def clash(mine: RouteMatch, theirs: RouteMatch) -> bool:
    """Whether two apps' matches of one place (router, gateway, host) take requests with no rule to choose."""
    if mine.router == ISTIO and mine.gateway == MESH:
        return True
    if _disjoint(mine.conditions, theirs.conditions):
        return False
    if mine.router == ISTIO or REGEX in (mine.path_type, theirs.path_type):
        return _paths_overlap(mine, theirs)
    return _precedence(mine) == _precedence(theirs)


def _message(mine: RouteMatch, owner: str, theirs: RouteMatch) -> str:
    if mine.router == ISTIO and mine.gateway == MESH:
        return (f'{mine.shown()} is also routed by app "{owner}" on this cluster through the mesh, where Istio\'s '
                f'sidecars route a host by one VirtualService only; use another host, or delete "{owner}" first')
    if (mine.path_type, mine.path) == (theirs.path_type, theirs.path):
        return (f'{mine.shown()} is also routed by app "{owner}" on this cluster, and the gateway sends each of '
                f'these requests to one app only; use another host or path, or change or delete "{owner}" first')
    why = ("Istio merges the apps' VirtualServices of a host in no defined order" if mine.router == ISTIO
           else "the Gateway API leaves the precedence of a regex path to the implementation")
    return (f'{mine.shown()} overlaps {theirs.shown_path()} that app "{owner}" routes on this host: {why}, so '
            f'either could take the other\'s requests; use another host, or a path the other does not contain, or '
            f'serve both paths from one app')


# --- where a match comes from in the spec ------------------------------------------------------


def locate(rendering: Rendering, match: RouteMatch) -> tuple:
    """Where the spec asks for ``match``: its port's host, or the expose of a port whose host is derived
    (``<app>-<workspace>.<base_domain>``); the ports as a whole for a host no port names (the mesh's)."""
    spec, base_domain = rendering.spec, rendering.profile.base_domain
    ports = list(enumerate(spec.body.get("ports") or []))

    def pick(candidates: list[tuple[int, dict]]) -> int:
        return next((index for index, port in candidates if port.get("port") == match.port), candidates[0][0])

    written = [(index, port) for index, port in ports if (port.get("host") or "").lower() == match.host]
    if written:
        return "ports", pick(written), "host"
    derived = [(index, port) for index, port in ports if not port.get("host") and port_exposed(port)]
    if derived and base_domain and f"{spec.name}-{spec.workspace}.{base_domain}".lower() == match.host:
        return "ports", pick(derived), "expose"
    return ("ports",)


# --- the repository's routes -------------------------------------------------------------------


_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 4096
_CACHE_LOCK = threading.Lock()


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    """Read by content: ``key`` holds git tree ids, so a hit is always what ``make`` would return."""
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = make()
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def _app_matches(snapshot: Snapshot, workspace: str, app: str) -> tuple[RouteMatch, ...]:
    directory = app_dir(workspace, app)
    tree = snapshot.tree_id(directory)
    if tree is None:
        return ()

    def read() -> tuple[RouteMatch, ...]:
        objects = []
        for name in snapshot.list_dir(directory):
            if kind_of_filename(name) in _ROUTE_FILES and (data := snapshot.read(f"{directory}/{name}")) is not None:
                try:
                    objects.append(load_trusted(data))
                except yaml.YAMLError:
                    continue  # a file broken by hand in the repository: ArgoCD cannot apply it either
        return tuple(matches_of(objects))

    return _cached(("app", tree), read)


def _workspace_routes(snapshot: Snapshot, workspace: str) -> Mapping[tuple, tuple[tuple[str, RouteMatch], ...]]:
    """The workspace's apps' matches by place: {(router, gateway, host): ((app, match), ...)}."""
    key = ("workspace", snapshot.tree_id(f"{APPS_DIR}/{workspace}"), snapshot.tree_id(workspace_dir(workspace)))

    def read() -> dict:
        by_place: dict[tuple, list] = {}
        for app in layout.apps_in(snapshot, workspace):
            for match in _app_matches(snapshot, workspace, app):
                by_place.setdefault(match.place, []).append((app, match))
        return {place: tuple(entries) for place, entries in by_place.items()}

    return _cached(key, read)


def clash_problems(snapshot: Snapshot, renderings: Sequence[Rendering],
                   leaving: Iterable[tuple[str, str]] = ()) -> list[Problem]:
    """Problems of the renderings' routes that another app of the cluster takes, each at its port.

    The others are the repository's apps at ``snapshot``, but for the renderings' own apps
    (a redeploy replaces its routes) and ``leaving`` (apps deleted in the same commit), and
    the renderings before each one in the batch: the first one keeps a route.
    """
    mine = [matches_of(rendering.objects) for rendering in renderings]
    if not any(mine):
        return []
    replaced = {(rendering.workspace, rendering.name) for rendering in renderings} | set(leaving)
    repository = [(workspace, _workspace_routes(snapshot, workspace)) for workspace in layout.workspaces_in(snapshot)]
    batch: dict[tuple, list[tuple[str, RouteMatch]]] = {}
    problems: list[Problem] = []
    for rendering, matches in zip(renderings, mine):
        refused: set[tuple] = set()
        for match in matches:
            where = locate(rendering, match)
            if where in refused:
                continue
            others = [(f"{workspace}/{app}", theirs) for workspace, routes in repository
                      for app, theirs in routes.get(match.place, ()) if (workspace, app) not in replaced]
            owner = next(((name, theirs) for name, theirs in [*others, *batch.get(match.place, ())]
                          if clash(match, theirs)), None)
            if owner is not None:
                refused.add(where)
                problems.append(rendering.spec.problem(_message(match, *owner), where))
        if not refused:
            for match in matches:
                batch.setdefault(match.place, []).append((f"{rendering.workspace}/{rendering.name}", match))
    return problems


__all__ = [
    "RouteMatch",
    "ROUTE_KINDS",
    "matches_of",
    "routes_anything",
    "clash",
    "locate",
    "clash_problems",
]
