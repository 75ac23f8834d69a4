"""How a service's requests reach it: exposed ports' routes, canary traffic splitting, JWT checks.

renderer.service renders what this module decides, around the workload:

==========================  =================================================================
the spec says               the cluster gets
==========================  =================================================================
an exposed port             a route of the app's VirtualService (Istio) or an HTTPRoute
                            (Gateway API) for its host and path
``path``                    whole path segments, as the Gateway API's PathPrefix matches
                            them: ``/x`` and ``/x/`` both take ``/x``, ``/x/`` and ``/x/a``,
                            never ``/xa``. Istio's ``uri.prefix`` is a plain string prefix,
                            so there it is the exact path plus the prefix ``/x/``
``rewrite_path_to``         the prefix replaced before the app sees the request, TrueFoundry's
                            default ``/`` (``/x/a`` reaches the app as ``/a``): Istio
                            ``rewrite.uri``, Gateway API ``URLRewrite`` ``ReplacePrefixMatch``
canary, Istio               Services ``<app>-stable`` and ``<app>-canary`` and, in the app's
                            VirtualService, the routes of its hosts through the gateway and of
                            its Service through the mesh split between them, stable 100 and
                            canary 0 at rest; Argo Rollouts sets the weights at each step
canary, Gateway API with    the same Services; each HTTPRoute's backendRefs split between them
the Rollouts plugin
canary elsewhere            no split: Argo Rollouts approximates weights with replica counts,
                            and a note says so
``auth: jwt_auth``          a RequestAuthentication of the integration's issuer and a DENY
                            AuthorizationPolicy for requests to the port without its token
==========================  =================================================================

The weights Argo Rollouts writes are ignored by ArgoCD (``ignoreDifferences``) so a sync never
puts a running canary back to 100/0. Pure: spec + profile in, contexts for the templates out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from contract.labels import SERVICE_ROLE_LABEL
from renderer.pod import SpecProblems, app_protocol
from renderer.profiles import ClusterProfile
from renderer.spec import Spec, port_exposed

# The Argo Rollouts Gateway API plugin, by the name the controller's argo-rollouts-config registers it under
# (trafficRouterPlugins) and a Rollout's trafficRouting.plugins refers to it by.
GATEWAY_API_PLUGIN = "argoproj-labs/gatewayAPI"
MESH = "mesh"  # Istio's reserved gateway name: every sidecar of the mesh (VirtualService "gateways")


def stable_service_name(app: str) -> str:
    return f"{app}-stable"


def canary_service_name(app: str) -> str:
    return f"{app}-canary"


@dataclass(frozen=True)
class Route:
    """One exposed port's route: requests for ``host`` below ``prefix``, sent to ``port``."""

    name: str
    index: int  # the port's place in the spec's ports
    host: str
    port: int
    prefix: str  # "/" or a path without its trailing slash
    rewrite: str | None  # what the prefix becomes for the app ("/" or no trailing slash); None keeps it

    def takes(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self.prefix + "/")

    def app_path(self, path: str) -> str:
        """The path the app receives for a request of ``path`` (one the route takes)."""
        if self.rewrite is None:
            return path
        rest = path if self.prefix == "/" else path[len(self.prefix):]
        return (self.rewrite.rstrip("/") + rest) or "/"


def _segments(path: str) -> str:
    return path.rstrip("/") or "/"


def exposed_routes(spec: Spec, profile: ClusterProfile, problems: SpecProblems, notes: list[str]) -> list[Route]:
    """The routes of the spec's exposed ports, with the host derived where a port has none."""
    routes = []
    for index, port in enumerate(spec.body.get("ports") or []):
        if not port_exposed(port):
            continue
        where = ("ports", index, "expose") if "expose" in port else ("ports", index, "host")
        if profile.router is None:
            problems.add(f'cluster "{profile.name}" has no istio or gateway_api addon, which exposing a port needs', *where)
            continue
        host = port.get("host")
        if not host:
            if not profile.base_domain:
                problems.add(f'set a host: cluster "{profile.name}" has no base_domain to derive one from', *where)
                continue
            label = f"{spec.name}-{spec.workspace}"
            if len(label) > 63:
                problems.add(
                    f'set a host: the derived host "{label}.{profile.base_domain}" starts with a label longer than 63 characters',
                    *where,
                )
                continue
            host = f"{label}.{profile.base_domain}"
        prefix = _segments(port.get("path", "/"))
        if "rewrite_path_to" in port:
            rewrite = _segments(port["rewrite_path_to"])
        elif "path" in port and app_protocol(port) == "grpc":
            # a gRPC request's path names its method (/package.Service/Method): TrueFoundry's default "/"
            # would leave /Method, which no server answers
            rewrite = None
            if prefix != "/":
                notes.append(f"port {port['port']} is gRPC: requests keep their path {port['path']} (a gRPC path names "
                             "the method), rather than TrueFoundry's default rewrite_path_to /; set rewrite_path_to "
                             "to rewrite it anyway")
        elif "path" in port:
            rewrite = "/"  # TrueFoundry's Port.rewrite_path_to: "Defaults to /"
        else:
            rewrite = None
        routes.append(Route(f"{spec.name}-{port['port']}", index, host, port["port"], prefix,
                            None if rewrite == prefix else rewrite))
    return routes


def gateway(profile: ClusterProfile) -> dict:
    namespace, name = profile.addon(profile.router)["gateway"].split("/", 1)
    return {"namespace": namespace, "name": name, "ref": f"{namespace}/{name}"}


# --- canary traffic --------------------------------------------------------------------------------


def canary_router(spec: Spec, profile: ClusterProfile, routes: list[Route], notes: list[str]) -> str | None:
    """Who splits a canary's requests by weight: "istio", "gateway_api", or None (a note says why not)."""
    if profile.router == "istio":
        # The app's VirtualService routes its gateway hosts and, through the mesh, its own Service
        # (Argo Rollouts, "Istio": host-level traffic splitting), so in-cluster callers keep their name.
        return "istio"
    plugin = GATEWAY_API_PLUGIN in (profile.addon("argo_rollouts").get("traffic_router_plugins") or [])
    if profile.router == "gateway_api" and plugin and routes:
        # The plugin edits the backendRefs' weights of the routes it is given (its "Quick start" and
        # "Using Multiple Routes"); a request from inside the cluster to the app's Service meets no route.
        notes.append(f'canary weights apply to requests through the gateway; requests from inside the cluster to '
                     f'Service "{spec.name}" reach canary pods in proportion to replica counts')
        return "gateway_api"
    if profile.router == "gateway_api" and plugin:
        why = "the Argo Rollouts Gateway API plugin splits the HTTPRoutes of exposed ports, and this service exposes none"
    elif profile.router == "gateway_api":
        why = f"its argo_rollouts addon does not list the Gateway API plugin {GATEWAY_API_PLUGIN} in traffic_router_plugins"
    else:
        why = "it has no istio or gateway_api addon"
    notes.append(f'cluster "{profile.name}" cannot split canary traffic by weight: {why}. Argo Rollouts approximates '
                 f"each step's weight with replica counts{_approximation(spec)}")
    return None


def _approximation(spec: Spec) -> str:
    """An example of what replica counts make of the first weighted step, when the replica count is fixed."""
    replicas = spec.body.get("replicas", 1)
    weights = [step["weight_percentage"] for step in spec.body["rollout_strategy"]["steps"] if step["weight_percentage"]]
    if isinstance(replicas, dict) or not replicas or not weights or weights[0] == 100:
        return ""  # autoscaled: the count, and so the share, moves
    replicas = int(replicas)
    # Argo Rollouts ("Canary"): without traffic management "the Rollout makes a best effort attempt to achieve
    # the percentage ... 10 Replicas and 10% ... the new desired ReplicaSet to 1 replicas"; while the stable
    # pods are scaled down the canary's share is between its pods over all and over the stable count.
    canary = math.ceil(replicas * weights[0] / 100)
    low, high = round(100 * canary / (canary + replicas)), round(100 * min(1, canary / replicas))
    share = f"{low}%" if low == high else f"{low}-{high}%"
    return f" (with {replicas} replicas a {weights[0]}% step runs {canary} canary pod(s) and sends them {share} of requests)"


def canary_services(app: dict, service_ports: list[dict]) -> list[dict]:
    """Contexts of the stable and canary Services: the app's pods, narrowed by Argo Rollouts to each ReplicaSet.

    Labelled with their role, so the ServiceMonitor keeps scraping through the app's own Service only."""
    return [{
        "app": app,
        "service_name": name,
        "service_ports": service_ports,
        "service_labels": {**app["labels"], SERVICE_ROLE_LABEL: role},
    } for role, name in (("stable", stable_service_name(app["name"])), ("canary", canary_service_name(app["name"])))]


def _service_host(service: str, spec: Spec) -> str:
    return f"{service}.{spec.workspace}.svc.cluster.local"


def _destinations(spec: Spec, port: int, canary: bool) -> list[dict]:
    if not canary:
        return [{"destination": {"host": _service_host(spec.name, spec), "port": {"number": port}}}]
    # Argo Rollouts, "Istio": both destinations in the route, "100% to stable, and 0% to canary" at rest
    return [
        {"destination": {"host": _service_host(stable_service_name(spec.name), spec), "port": {"number": port}}, "weight": 100},
        {"destination": {"host": _service_host(canary_service_name(spec.name), spec), "port": {"number": port}}, "weight": 0},
    ]


def mesh_virtual_service_name(app: str) -> str:
    """The VirtualService that splits a canary's in-mesh traffic (bound to ``mesh`` for the app's Service host)."""
    return f"{app}-mesh"


def virtual_services(spec: Spec, profile: ClusterProfile, routes: list[Route], canary: bool,
                     notes: list[str]) -> list[dict]:
    """Contexts of the app's VirtualServices: the one of its gateway routes (named after the app), and for a
    canary one bound to ``mesh`` for the app's own Service host, so calls from inside the mesh split too.

    Two objects, not one bound to both: a VirtualService's hosts apply to each of its gateways, and one bound
    to ``mesh`` for the gateway hosts would take every sidecar's calls to those hosts, where Istio does not
    merge VirtualServices of one host ("host merging is not supported in sidecars", istioctl analyze IST0109).
    """
    out = []
    gateway_ref = gateway(profile)["ref"]
    http = []
    # Istio takes a VirtualService's first matching route: the longest path first, as the Gateway API would
    for route in sorted(routes, key=lambda r: (r.host, -len(r.prefix), r.index)):
        on = {"authority": _authority(route.host)}
        destinations = _destinations(spec, route.port, canary)
        if route.prefix == "/":
            rewrite = None if route.rewrite is None else route.rewrite.rstrip("/") + "/"
            http.append(_http(route.name, [{**on, "uri": {"prefix": "/"}}], rewrite, destinations))
        elif route.rewrite is None or route.rewrite == "/":
            # rewrite.uri replaces what matched: the whole of /x, or the /x/ of /x/a ("/" keeps one slash)
            http.append(_http(route.name, [{**on, "uri": {"exact": route.prefix}}, {**on, "uri": {"prefix": route.prefix + "/"}}],
                              route.rewrite, destinations))
        else:
            http.append(_http(route.name, [{**on, "uri": {"prefix": route.prefix + "/"}}], route.rewrite + "/", destinations))
            http.append(_http(f"{route.name}-exact", [{**on, "uri": {"exact": route.prefix}}], route.rewrite, destinations))
    if http:
        out.append({"name": spec.name, "gateways": [gateway_ref], "hosts": sorted({route.host for route in routes}),
                    "http": http, "tcp": []})
    if canary:
        mesh_http, mesh_tcp = [], []
        for port in spec.body.get("ports") or []:
            if port.get("protocol") == "UDP":
                notes.append(f"UDP port {port['port']} is not split by weight (Istio does not proxy UDP): its requests "
                             "reach canary pods in proportion to replica counts")
                continue
            match = [{"port": port["port"]}]
            destinations = _destinations(spec, port["port"], True)
            if app_protocol(port) == "tcp":
                mesh_tcp.append({"match": match, "route": destinations})  # Argo Rollouts, "Istio": TCP Traffic Splitting
            else:
                mesh_http.append(_http(f"{spec.name}-mesh-{port['port']}", match, None, destinations))
        if mesh_http or mesh_tcp:
            out.append({"name": mesh_virtual_service_name(spec.name), "gateways": [MESH],
                        "hosts": [_service_host(spec.name, spec)], "http": mesh_http, "tcp": mesh_tcp})
    return out


def _authority(host: str) -> dict:
    """The match of a request's host (Istio StringMatch on :authority): exact, or for a wildcard host one
    DNS label in its place (Istio matches authority literally, so "*.example.com" would match nothing)."""
    if host.startswith("*."):
        return {"regex": r"[^.:]+" + re.escape(host[1:])}
    return {"exact": host}


def _http(name: str, match: list[dict], rewrite: str | None, destinations: list[dict]) -> dict:
    return {"name": name, "match": match, "rewrite": {"uri": rewrite} if rewrite else None, "route": destinations}


def http_route(spec: Spec, profile: ClusterProfile, route: Route, canary: bool) -> dict:
    """The context of one exposed port's HTTPRoute."""
    if canary:
        # the plugin's "Quick start": both Services as backendRefs; it sets their weights
        backends = [{"name": stable_service_name(spec.name), "port": route.port, "weight": 100},
                    {"name": canary_service_name(spec.name), "port": route.port, "weight": 0}]
    else:
        backends = [{"name": spec.name, "port": route.port}]
    # Gateway API, HTTPPathModifier: "a request to /foo/bar with a prefix match of /foo and a ReplacePrefixMatch
    # of /xyz would be modified to /xyz/bar"; PathPrefix matches whole path elements, so /x/ is /x
    return {"name": route.name, "host": route.host, "prefix": route.prefix, "rewrite": route.rewrite,
            "backends": backends, "gateway": gateway(profile)}


def rollout_traffic_routing(spec: Spec, router: str, virtuals: list[dict], routes: list[Route]) -> dict:
    """The Rollout's canaryService, stableService and trafficRouting for the router that splits."""
    if router == "istio":
        # Argo Rollouts, "Istio": "virtualServices" takes several, each with the routes it splits
        listed = []
        for virtual in virtuals:
            istio = {"name": virtual["name"]}
            if virtual["http"]:
                istio["routes"] = [route["name"] for route in virtual["http"]]
            if virtual["tcp"]:
                istio["tcpRoutes"] = [{"port": entry["match"][0]["port"]} for entry in virtual["tcp"]]
            listed.append(istio)
        traffic = {"istio": {"virtualServices": listed}}
    else:
        traffic = {"plugins": {GATEWAY_API_PLUGIN: {
            "httpRoutes": [{"name": route.name} for route in routes], "namespace": spec.workspace}}}
    return {"canary_service": canary_service_name(spec.name), "stable_service": stable_service_name(spec.name),
            "traffic_routing": traffic}


def weight_differences(spec: Spec, router: str, virtuals: list[dict], routes: list[Route]) -> list[dict]:
    """What ArgoCD must not put back while Argo Rollouts moves a canary's weights (Argo Rollouts, "Istio":
    Integrating with GitOps; the Gateway API plugin's "Quick start": ignoreDifferences on the weights)."""
    if router == "istio":
        return [{"group": "networking.istio.io", "kind": "VirtualService", "name": virtual["name"],
                 "jqPathExpressions": ([".spec.http[].route[].weight"] if virtual["http"] else [])
                 + ([".spec.tcp[].route[].weight"] if virtual["tcp"] else [])} for virtual in virtuals]
    return [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route.name,
             "jqPathExpressions": [".spec.rules[].backendRefs[].weight"]} for route in routes]


# --- JWT ---------------------------------------------------------------------------------------------


def jwt_policies(spec: Spec, profile: ClusterProfile, routes: list[Route], problems: SpecProblems,
                 notes: list[str]) -> tuple[dict, dict] | None:
    """Contexts of the RequestAuthentication and AuthorizationPolicy that guard the ports with ``jwt_auth``.

    Istio's sidecar of each pod checks them (Istio, "RequestAuthentication": a request with an invalid
    token is refused, one without a token gets no identity; "AuthorizationPolicy": a DENY rule with
    notRequestPrincipals refuses it then, the negative match Istio's security best practices advise).
    The port, not the host, is matched: the sidecar sees the port the request came to whatever its
    Host header, so a request from inside the cluster needs the token too.
    """
    by_index = {route.index: route for route in routes}
    issuers: dict[str, dict] = {}
    rules = []
    for index, port in enumerate(spec.body.get("ports") or []):
        auth = port.get("auth") or {}
        if auth.get("type") != "jwt_auth":
            continue
        if not profile.has("istio"):
            problems.add(f'cluster "{profile.name}" has no istio addon, whose sidecars check JWTs (RequestAuthentication); '
                         "the Gateway API has no standard JWT check, so this port could not be guarded here",
                         "ports", index, "auth", "type")
            continue
        known = profile.addon("istio").get("jwt_auth_integrations") or {}
        integration = known.get(auth["integration_fqn"])
        if integration is None:
            listed = f"it lists {', '.join(sorted(known))}" if known else "it lists none"
            problems.add(f'cluster "{profile.name}" has no JWT integration "{auth["integration_fqn"]}" under '
                         f"addons.istio.jwt_auth_integrations ({listed})", "ports", index, "auth", "integration_fqn")
            continue
        route = by_index.get(index)
        bypass = []
        for position, path in enumerate(auth.get("bypass_auth_paths") or []):
            if route is not None and not route.takes(path):
                problems.add(f'"{path}" is outside the port\'s path {route.prefix}: no request for it reaches this port',
                             "ports", index, "auth", "bypass_auth_paths", position)
                continue
            bypass.append(route.app_path(path) if route is not None else path)  # the sidecar sees the app's path
        issuer = integration["issuer"]
        rule = {"issuer": issuer, "jwksUri": integration["jwks_uri"], "forwardOriginalToken": True}
        if integration.get("audiences"):
            rule["audiences"] = list(integration["audiences"])
        issuers.setdefault(issuer, rule)
        operation = {"ports": [str(port["port"])], **({"notPaths": sorted(set(bypass))} if bypass else {})}
        rules.append({"from": [{"source": {"notRequestPrincipals": [f"{issuer}/*"]}}], "to": [{"operation": operation}]})
        for claim in auth.get("claims") or []:
            rules.append({"to": [{"operation": operation}],
                          "when": [{"key": f"request.auth.claims[{claim['key']}]", "notValues": list(claim["values"])}]})
        notes.append(f"port {port['port']} refuses requests without a valid JWT of {issuer}, from the gateway and from "
                     "inside the cluster alike; the app's Istio sidecar checks it, so its pods must be injected "
                     "(namespace label istio-injection=enabled or the revision's istio.io/rev)")
    if not rules:
        return None
    return {"jwt_rules": list(issuers.values())}, {"rules": rules}


__all__ = [
    "GATEWAY_API_PLUGIN", "Route", "exposed_routes", "gateway", "canary_router", "canary_services", "virtual_services", "mesh_virtual_service_name",
    "http_route", "rollout_traffic_routing", "weight_differences", "jwt_policies", "stable_service_name",
    "canary_service_name",
]
