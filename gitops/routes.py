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
read them rather than as today's templates write them. Only files that name one of the hosts
being deployed are parsed (a route to a host has that host written in it). An app directory
read a second time by the same process gets an index of the dotted names its route files hold,
kept by its tree id, and parsed files are kept by blob id: a server's deploys read only the
apps that changed since, and a one-off ``shipyard apply`` searches the files once. The deploy service checks a plan against the repository's tip
(gitops.deploy), and every commit checks again on the tree it is built on (gitops.apply),
which holds against concurrent deploys and covers the offline ``shipyard apply --repo``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from contract.errors import Problem
from contract.repository import APPS_DIR, MANIFEST_SUFFIX, WORKSPACES_DIR
from renderer.manifest_yaml import load_trusted
from renderer.render import Rendering
from renderer.spec import port_exposed

from gitops.memo import Memo
from gitops.repo import Snapshot

ISTIO, GATEWAY_API = "istio", "gateway_api"
MESH = "mesh"  # Istio's reserved gateway name: every sidecar of the mesh
PREFIX, EXACT, REGEX, PRESENT = "prefix", "exact", "regex", "present"
ROUTE_KINDS = {"VirtualService": ISTIO, "HTTPRoute": GATEWAY_API}
_ROUTE_PREFIXES = tuple(f"{kind.lower()}-" for kind in ROUTE_KINDS)  # contract.repository's <kind>-<name>.yaml
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


# Parsed route files by blob id, and each app directory's index of the names its route files hold by
# its tree id: both content-addressed, so a hit is always what reading again would give.
_PARSED = Memo(65536)
_INDEXES = Memo(65536)
_SEEN = Memo(65536)  # the app directories (and workspaces) read once: indexed when read again
# What a host can be written as in a route file: DNS labels (and "*") joined by dots, lowercase
_NAME = re.compile(rb"[a-z0-9*][-a-z0-9*]*(?:\.[-a-z0-9*]+)+")


def _file_matches(snapshot: Snapshot, blob_id: str) -> tuple[RouteMatch, ...]:
    def parse() -> tuple[RouteMatch, ...]:
        try:
            return tuple(matches_of([load_trusted(snapshot.read_blob(blob_id))]))
        except yaml.YAMLError:
            return ()  # a file broken by hand in the repository: ArgoCD cannot apply it either
    return _PARSED.get(blob_id, parse)


def _app_names(snapshot: Snapshot, app_tree: object) -> dict[bytes, tuple[object, ...]] | None:
    """The dotted names written in an app directory's route files, with the files holding each; kept by the
    directory's tree id once a process has read that directory twice (None before: search its files)."""
    index = _INDEXES.peek(app_tree)
    if index is not None:
        return index
    if not _seen_before(app_tree):
        return None
    built: dict[bytes, list[object]] = {}
    for blob_id in snapshot.files_at(app_tree, _ROUTE_PREFIXES):
        for name in set(_NAME.findall(snapshot.read_blob(blob_id).lower())):
            built.setdefault(name, []).append(blob_id)
    index = {name: tuple(blobs) for name, blobs in built.items()}
    _INDEXES.put(app_tree, index)
    return index


def _files_naming(snapshot: Snapshot, workspace_tree: object, applications: object | None,
                  hosts: set[str]) -> list[tuple[str, object]]:
    """(app, blob id) of the route files of the workspace's synced apps (those with their Application in the
    tree ``applications``, the workspace's directory under apps/) that have one of ``hosts`` written in them:
    a route to a host has it written in its file, so only these need a parse (a name that merely contains a
    host is parsed and told apart). An app directory read a second time by the process gets an index of
    the names its files hold, kept by its tree id: a server's deploys then read only the apps that changed,
    and a one-off ``shipyard apply`` searches each file once."""
    needles = {host.encode() for host in hosts}
    key = ("workspace", workspace_tree, applications)
    merged = _INDEXES.peek(key)
    if merged is not None:  # the workspace's trees as a deploy before saw them: one lookup per host
        return list(dict.fromkeys(entry for name in merged.keys() & needles for entry in merged[name]))
    synced = {name[: -len(MANIFEST_SUFFIX)] for name in snapshot.names_at(applications)}
    found, indexes = [], {}
    for app, app_tree in snapshot.subtrees_at(workspace_tree).items():
        if app not in synced:
            continue
        index = _app_names(snapshot, app_tree)
        if index is not None:
            if indexes is not None:
                indexes[app] = index
            found += [(app, blob_id) for name in index.keys() & needles for blob_id in index[name]]
        else:
            indexes = None
            found += [(app, blob_id) for blob_id in snapshot.files_at(app_tree, _ROUTE_PREFIXES)
                      if _names_any(snapshot.read_blob(blob_id).lower(), needles)]
    if indexes is not None and _seen_before(key):  # every app indexed, and these trees read before: merge
        combined: dict[bytes, list[tuple[str, object]]] = {}
        for app, index in indexes.items():
            for name, blobs in index.items():
                combined.setdefault(name, []).extend((app, blob_id) for blob_id in blobs)
        _INDEXES.put(key, {name: tuple(entries) for name, entries in combined.items()})
    return list(dict.fromkeys(found))


def _names_any(data: bytes, needles: set[bytes]) -> bool:
    """Whether a file names one of ``needles``: a substring search for a few (most deploys route one or two
    hosts), the file's dotted names against the set for many (a batch of thousands stays linear)."""
    if len(needles) <= 8:
        return any(needle in data for needle in needles)
    return not needles.isdisjoint(_NAME.findall(data))


def _seen_before(key: object) -> bool:
    """Whether the process read ``key`` (an app directory's or a workspace's trees) before; marks it read."""
    seen = _SEEN.peek(key) is not None
    _SEEN.put(key, True)
    return seen


def _repository_routes(snapshot: Snapshot, hosts: set[str]) -> dict[tuple, list[tuple[str, str, RouteMatch]]]:
    """The matches on ``hosts`` of every app of the cluster that has its Application (what ArgoCD syncs), by
    place: {(router, gateway, host): [(workspace, app, match), ...]}."""
    by_place: dict[tuple, list[tuple[str, str, RouteMatch]]] = {}
    manifests, applications = snapshot.ids_in(WORKSPACES_DIR), snapshot.ids_in(APPS_DIR)
    for workspace, tree in manifests.items():
        for app, blob_id in _files_naming(snapshot, tree, applications.get(workspace), hosts):
            for match in _file_matches(snapshot, blob_id):
                if match.host in hosts:
                    by_place.setdefault(match.place, []).append((workspace, app, match))
    return by_place


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
    repository = _repository_routes(snapshot, {match.host for matches in mine for match in matches})
    batch: dict[tuple, list[tuple[str, RouteMatch]]] = {}
    problems: list[Problem] = []
    for rendering, matches in zip(renderings, mine):
        refused: set[tuple] = set()
        for match in matches:
            where = locate(rendering, match)
            if where in refused:
                continue
            others = [(f"{workspace}/{app}", theirs) for workspace, app, theirs in repository.get(match.place, ())
                      if (workspace, app) not in replaced]
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
