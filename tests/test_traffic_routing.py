"""Traffic routing of services: canary weights that are the spec's, TrueFoundry's paths, port fields.

Requests are followed through the rendered routes by a small model of each router (Istio: a
VirtualService's routes in order, ``uri`` exact or string prefix, ``rewrite.uri`` replacing what
matched; Gateway API: PathPrefix by whole path elements, ``ReplacePrefixMatch``), so the tests say
which path the app receives, not which fields were written.
"""

from __future__ import annotations

import pytest

from contract.errors import ProfileError, SpecError
from renderer.profiles import load_profile_text
from tests.test_kubectl import assert_kustomize_builds

API = """\
type: service
name: api
workspace_fqn: demo:payments
image:
  type: image
  image_uri: ghcr.io/acme/api:1.0.0
"""

CANARY = "rollout_strategy:\n  type: canary\n  steps:\n    - weight_percentage: 10\n    - weight_percentage: 50\n"

GATEWAY_API = """\
name: gw
flavor: gke-standard
base_domain: gw.example.com
git: {{repo_url: https://git.example.com/gw.git}}
addons:
  gateway_api: {{gateway: gateway-system/public}}
  argo_rollouts: {rollouts}
"""

JWT_ISTIO = """\
name: mesh
flavor: eks
base_domain: mesh.example.com
git: {repo_url: https://git.example.com/mesh.git}
addons:
  istio:
    gateway: istio-system/public
    jwt_auth_integrations:
      acme:okta:
        issuer: https://acme.okta.com/oauth2/default
        jwks_uri: https://acme.okta.com/oauth2/default/v1/keys
        audiences: [api://shop]
"""


def gateway_api(plugin: bool):
    rollouts = "{traffic_router_plugins: [argoproj-labs/gatewayAPI]}" if plugin else "true"
    return load_profile_text(GATEWAY_API.format(rollouts=rollouts), "gw.yaml")


def kinds(rendering) -> list[str]:
    return [obj["kind"] for obj in rendering.objects]


def one(rendering, kind: str, name: str | None = None) -> dict:
    found = [o for o in rendering.objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {kinds(rendering)}"
    return found[0]


def refused(rendered, profile, spec) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as error:
        rendered(profile, spec)
    return [(p.path, p.message) for p in error.value.problems]


# --- following a request -------------------------------------------------------------------------


def istio_app_path(virtual_service: dict, host: str, path: str) -> tuple[str, list[str]] | None:
    """(path the app receives, destination hosts) of a request through the gateway, None when no route takes it."""
    for route in virtual_service["spec"]["http"]:
        for match in route["match"]:
            if "mesh" in match.get("gateways", []) or match.get("authority", {}).get("exact", host) != host:
                continue
            uri = match["uri"]
            if path == uri.get("exact") or ("prefix" in uri and path.startswith(uri["prefix"])):
                matched = uri.get("exact") or uri["prefix"]
                rewrite = route.get("rewrite", {}).get("uri")
                # Istio HTTPRewrite.uri: "the value provided in this field will replace the corresponding matched prefix"
                received = path if rewrite is None else rewrite + path[len(matched):]
                return received, [d["destination"]["host"] for d in route["route"]]
    return None


def gateway_api_app_path(route: dict, path: str) -> str | None:
    """The path the app receives through an HTTPRoute's one rule, None when it does not match."""
    [rule] = route["spec"]["rules"]
    [match] = rule["matches"]
    assert match["path"]["type"] == "PathPrefix"
    prefix = match["path"]["value"].rstrip("/") or "/"
    if not (prefix == "/" or path == prefix or path.startswith(prefix + "/")):
        return None  # PathPrefix matches whole path elements
    rewrites = [f["urlRewrite"]["path"] for f in rule.get("filters", []) if f["type"] == "URLRewrite"]
    if not rewrites:
        return path
    [modifier] = rewrites
    assert modifier["type"] == "ReplacePrefixMatch"
    rest = path if prefix == "/" else path[len(prefix):]
    return (modifier["replacePrefixMatch"].rstrip("/") + rest) or "/"


REQUESTS = ["/x", "/x/", "/x/a/b", "/xa", "/"]


@pytest.mark.parametrize(("port", "received"), [
    # TrueFoundry's default rewrite_path_to "/": the prefix is gone, whether path ends in "/" or not
    ("path: /x/", {"/x": "/", "/x/": "/", "/x/a/b": "/a/b", "/xa": None, "/": None}),
    ("path: /x", {"/x": "/", "/x/": "/", "/x/a/b": "/a/b", "/xa": None, "/": None}),
    # TrueFoundry's example: /v1/api rewritten to /api
    ("path: /x/\n    rewrite_path_to: /api/", {"/x": "/api", "/x/": "/api/", "/x/a/b": "/api/a/b", "/xa": None, "/": None}),
    # rewriting to the path itself keeps the prefix
    ("path: /x/\n    rewrite_path_to: /x/", {"/x": "/x", "/x/": "/x/", "/x/a/b": "/x/a/b", "/xa": None, "/": None}),
    ("path: /\n    rewrite_path_to: /v2", {"/x": "/v2/x", "/x/": "/v2/x/", "/x/a/b": "/v2/x/a/b", "/xa": "/v2/xa", "/": "/v2/"}),
    ("path: /", {path: path for path in REQUESTS}),
])
def test_both_routers_send_the_app_what_truefoundrys_path_and_rewrite_say(rendered, port, received):
    spec = API + f"ports:\n  - port: 8080\n    host: shop.example.com\n    {port}\n"
    virtual_service = one(rendered("eks", spec), "VirtualService")
    route = one(rendered("gke-standard", spec), "HTTPRoute")
    for path, expected in received.items():
        through_istio = istio_app_path(virtual_service, "shop.example.com", path)
        assert (through_istio and through_istio[0]) == expected, f"Istio: {path}"
        assert gateway_api_app_path(route, path) == expected, f"Gateway API: {path}"


def test_a_grpc_port_keeps_its_path_unless_told_to_rewrite_it(rendered):
    """A gRPC path names the method: TrueFoundry's default "/" would turn /pkg.Svc/Call into /Call."""
    grpc = API + "ports:\n  - port: 50051\n    app_protocol: grpc\n    host: rpc.example.com\n    path: /pkg.Svc/\n"
    rendering = rendered("eks", grpc)
    assert istio_app_path(one(rendering, "VirtualService"), "rpc.example.com", "/pkg.Svc/Call")[0] == "/pkg.Svc/Call"
    assert any("gRPC" in note and "rewrite_path_to" in note for note in rendering.notes)
    rewritten = one(rendered("eks", grpc + "    rewrite_path_to: /\n"), "VirtualService")
    assert istio_app_path(rewritten, "rpc.example.com", "/pkg.Svc/Call")[0] == "/Call"


def test_the_longest_path_of_a_host_is_matched_first(rendered):
    spec = API + ("ports:\n  - port: 8080\n    host: shop.example.com\n    path: /\n"
                  "  - port: 8081\n    host: shop.example.com\n    path: /admin/\n")
    virtual_service = one(rendered("eks", spec), "VirtualService")
    assert istio_app_path(virtual_service, "shop.example.com", "/admin/users")[0] == "/users"
    assert istio_app_path(virtual_service, "shop.example.com", "/administrators")[0] == "/administrators"


# --- port fields ---------------------------------------------------------------------------------


def test_a_port_with_a_host_is_exposed_unless_it_says_otherwise(rendered):
    exposed = rendered("eks", API + "ports:\n  - port: 8080\n    host: shop.example.com\n")
    assert one(exposed, "VirtualService")["spec"]["hosts"] == ["shop.example.com"]
    internal = rendered("eks", API + "ports:\n  - port: 8080\n")
    assert "VirtualService" not in kinds(internal)
    [(path, message)] = refused(rendered, "eks", API + "ports:\n  - port: 8080\n    host: shop.example.com\n    expose: false\n")
    assert path == "/ports/0/host" and "expose is false" in message
    [(path, message)] = refused(rendered, "generic", API + "ports:\n  - port: 8080\n    host: shop.example.com\n")
    assert path == "/ports/0/host" and "no istio or gateway_api addon" in message


@pytest.mark.parametrize(("port", "where", "words"), [
    ("    rewrite_path_to: /v1/\n", "/ports/0/rewrite_path_to", "needs one"),
    ("    expose: false\n    path: /x/\n    rewrite_path_to: /v1/\n", "/ports/0/rewrite_path_to", "not exposed"),
])
def test_rewrite_path_to_needs_an_exposed_port_with_a_path(rendered, port, where, words):
    host = "" if "expose: false" in port else "    host: shop.example.com\n"
    [(path, message)] = refused(rendered, "eks", API + "ports:\n  - port: 8080\n" + host + port)
    assert path == where and words in message


# --- canaries ------------------------------------------------------------------------------------


def test_an_istio_canary_splits_its_gateway_and_mesh_routes_by_weight(rendered, crd_schemas):
    spec = API + "ports:\n  - port: 8080\n    host: shop.example.com\n  - port: 7000\n    app_protocol: tcp\n" + CANARY
    rendering = rendered("eks", spec)
    rollout = one(rendering, "Rollout")["spec"]["strategy"]["canary"]
    assert (rollout["canaryService"], rollout["stableService"]) == ("api-canary", "api-stable")
    virtual_service, mesh = one(rendering, "VirtualService", "api"), one(rendering, "VirtualService", "api-mesh")
    assert rollout["trafficRouting"] == {"istio": {"virtualServices": [
        {"name": "api", "routes": [route["name"] for route in virtual_service["spec"]["http"]]},
        {"name": "api-mesh", "routes": ["api-mesh-8080"], "tcpRoutes": [{"port": 7000}]}]}}
    # through the gateway: stable takes everything at rest, the canary nothing, as Argo Rollouts' docs show
    assert virtual_service["spec"]["gateways"] == ["istio-system/public"]
    assert virtual_service["spec"]["hosts"] == ["shop.example.com"]
    _, destinations = istio_app_path(virtual_service, "shop.example.com", "/orders")
    assert destinations == ["api-stable.payments.svc.cluster.local", "api-canary.payments.svc.cluster.local"]
    [gateway_route] = [r for r in virtual_service["spec"]["http"] if r["name"] == "api-8080"]
    assert [d["weight"] for d in gateway_route["route"]] == [100, 0]
    # through the mesh: callers keep the app's Service name and get the same split, TCP included; the mesh
    # VirtualService names only that host, so sidecars' calls to the gateway host are not taken by it
    assert mesh["spec"]["gateways"] == ["mesh"] and mesh["spec"]["hosts"] == ["api.payments.svc.cluster.local"]
    [mesh_route] = mesh["spec"]["http"]
    assert mesh_route["match"] == [{"port": 8080}] and [d["weight"] for d in mesh_route["route"]] == [100, 0]
    [tcp] = mesh["spec"]["tcp"]
    assert tcp["match"] == [{"port": 7000}] and [d["weight"] for d in tcp["route"]] == [100, 0]
    # the two Services select the app's pods (Argo Rollouts narrows each to its ReplicaSet), ports as the app's
    app, stable, canary = (one(rendering, "Service", name) for name in ("api", "api-stable", "api-canary"))
    assert stable["spec"]["selector"] == canary["spec"]["selector"] == app["spec"]["selector"]
    assert stable["spec"]["ports"] == canary["spec"]["ports"] == app["spec"]["ports"]
    # ArgoCD leaves the weights Argo Rollouts sets alone, and does not put them back on sync
    application = rendering.application["spec"]
    assert {"group": "networking.istio.io", "kind": "VirtualService", "name": "api",
            "jqPathExpressions": [".spec.http[].route[].weight"]} in application["ignoreDifferences"]
    assert {"group": "networking.istio.io", "kind": "VirtualService", "name": "api-mesh",
            "jqPathExpressions": [".spec.http[].route[].weight", ".spec.tcp[].route[].weight"]} in application["ignoreDifferences"]
    assert "RespectIgnoreDifferences=true" in application["syncPolicy"]["syncOptions"]
    assert not rendering.notes
    for obj in rendering.objects:
        crd_schemas.validate(obj, "1.33")


def test_an_unexposed_istio_canary_is_split_through_the_mesh(rendered):
    rendering = rendered("eks", API + "ports:\n  - port: 8080\n  - port: 5353\n    protocol: UDP\n" + CANARY)
    spec = one(rendering, "VirtualService")["spec"]
    assert spec["gateways"] == ["mesh"] and spec["hosts"] == ["api.payments.svc.cluster.local"]
    assert [route["name"] for route in spec["http"]] == ["api-mesh-8080"]
    assert any("UDP port 5353" in note and "replica counts" in note for note in rendering.notes)


def test_service_monitor_scrapes_each_pod_once_beside_the_canary_services(rendered):
    rendering = rendered("eks", API + "ports:\n  - port: 8080\nmetrics: {port: 9090}\n" + CANARY)
    selector = one(rendering, "ServiceMonitor")["spec"]["selector"]
    selected = []
    for service in (o for o in rendering.objects if o["kind"] == "Service"):
        labels = service["metadata"]["labels"]
        if selector["matchLabels"].items() <= labels.items() and all(
                labels.get(e["key"]) not in e["values"] for e in selector["matchExpressions"] if e["operator"] == "NotIn"):
            selected.append(service["metadata"]["name"])
    assert selected == ["api"]


def test_a_gateway_api_canary_splits_its_routes_with_the_rollouts_plugin(rendered, crd_schemas):
    spec = API + "ports:\n  - port: 8080\n    host: shop.example.com\n  - port: 8081\n    host: admin.example.com\n" + CANARY
    rendering = rendered(gateway_api(plugin=True), spec.replace("demo:", "gw:"))
    rollout = one(rendering, "Rollout")["spec"]["strategy"]["canary"]
    assert rollout["trafficRouting"] == {"plugins": {"argoproj-labs/gatewayAPI": {
        "httpRoutes": [{"name": "api-8080"}, {"name": "api-8081"}], "namespace": "payments"}}}
    for name, port in (("api-8080", 8080), ("api-8081", 8081)):
        assert one(rendering, "HTTPRoute", name)["spec"]["rules"][0]["backendRefs"] == [
            {"name": "api-stable", "port": port, "weight": 100}, {"name": "api-canary", "port": port, "weight": 0}]
        assert {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": name,
                "jqPathExpressions": [".spec.rules[].backendRefs[].weight"]} in rendering.application["spec"]["ignoreDifferences"]
    assert {"api-stable", "api-canary"} <= {o["metadata"]["name"] for o in rendering.objects if o["kind"] == "Service"}
    assert any('Service "api"' in note and "replica counts" in note for note in rendering.notes)
    for obj in rendering.objects:
        crd_schemas.validate(obj, "1.32")


@pytest.mark.parametrize(("plugin", "ports", "why"), [
    (False, "ports:\n  - port: 8080\n    host: shop.example.com\n", "does not list the Gateway API plugin"),
    (True, "ports:\n  - port: 8080\n", "this service exposes none"),
])
def test_where_weights_cannot_be_split_a_note_says_replica_counts_approximate_them(rendered, plugin, ports, why):
    spec = (API + ports + "replicas: 2\n" + CANARY).replace("demo:", "gw:")
    rendering = rendered(gateway_api(plugin), spec)
    assert "trafficRouting" not in one(rendering, "Rollout")["spec"]["strategy"]["canary"]
    assert {o["metadata"]["name"] for o in rendering.objects if o["kind"] == "Service"} == {"api"}
    [note] = [n for n in rendering.notes if "cannot split canary traffic" in n]
    # 2 replicas at 10%: one canary pod beside one or two stable ones
    assert why in note and "a 10% step runs 1 canary pod(s) and sends them 33-50% of requests" in note
    assert "ignoreDifferences" not in rendering.application["spec"]


def test_a_canary_step_of_weight_zero_deploys_without_traffic(rendered):
    spec = API + "ports:\n  - port: 8080\nrollout_strategy:\n  type: canary\n  steps:\n    - weight_percentage: 0\n    - weight_percentage: 100\n"
    steps = one(rendered("eks", spec), "Rollout")["spec"]["strategy"]["canary"]["steps"]
    assert steps[:2] == [{"setWeight": 0}, {"pause": {}}]
    [(path, message)] = refused(rendered, "eks", spec.replace("weight_percentage: 0", "weight_percentage: -1"))
    assert path == "/rollout_strategy/steps/0/weight_percentage" and "at least 0" in message
    [(path, message)] = refused(rendered, "eks", spec.replace("weight_percentage: 0", "weight_percentage: 50")
                                .replace("weight_percentage: 100", "weight_percentage: 0"))
    assert path == "/rollout_strategy/steps" and "must not decrease" in message


# --- auth ----------------------------------------------------------------------------------------


JWT_PORT = """\
ports:
  - port: 8080
    host: shop.example.com
    path: /api/
    auth:
      type: jwt_auth
      integration_fqn: acme:okta
      claims: [{key: groups, values: [shop-admins]}]
      bypass_auth_paths: [/api/health]
"""


def test_jwt_auth_is_checked_by_the_apps_istio_sidecar(rendered, crd_schemas):
    rendering = rendered(load_profile_text(JWT_ISTIO, "mesh.yaml"), API.replace("demo:", "mesh:") + JWT_PORT)
    authentication = one(rendering, "RequestAuthentication", "api")["spec"]
    workload = one(rendering, "Deployment")["spec"]["selector"]["matchLabels"]
    assert authentication["selector"]["matchLabels"] == workload
    assert authentication["jwtRules"] == [{
        "issuer": "https://acme.okta.com/oauth2/default", "jwksUri": "https://acme.okta.com/oauth2/default/v1/keys",
        "forwardOriginalToken": True, "audiences": ["api://shop"]}]
    policy = one(rendering, "AuthorizationPolicy", "api")["spec"]
    assert policy["selector"]["matchLabels"] == workload and policy["action"] == "DENY"
    # bypass_auth_paths name the public path; the sidecar sees what the app receives (/api rewritten to /)
    operation = {"operation": {"ports": ["8080"], "notPaths": ["/health"]}}
    assert policy["rules"] == [
        {"from": [{"source": {"notRequestPrincipals": ["https://acme.okta.com/oauth2/default/*"]}}], "to": [operation]},
        {"to": [operation], "when": [{"key": "request.auth.claims[groups]", "notValues": ["shop-admins"]}]},
    ]
    assert any("valid JWT" in note and "injected" in note for note in rendering.notes)
    crd_schemas.validate(one(rendering, "AuthorizationPolicy"), "1.33")


@pytest.mark.parametrize(("profile", "change", "where", "words"), [
    ("eks", ("", ""), "/ports/0/auth/integration_fqn", 'no JWT integration "acme:okta"'),
    ("gke-standard", ("", ""), "/ports/0/auth/type", "no istio addon"),
    ("mesh", ("[/api/health]", "[/health]"), "/ports/0/auth/bypass_auth_paths/0", "outside the port's path /api"),
])
def test_jwt_auth_the_cluster_cannot_check_is_refused(rendered, profile, change, where, words):
    profile = load_profile_text(JWT_ISTIO, "mesh.yaml") if profile == "mesh" else profile
    [(path, message)] = refused(rendered, profile, API + JWT_PORT.replace(*change))
    assert path == where and words in message


@pytest.mark.parametrize(("auth", "where", "words"), [
    ("{type: basic_auth, username: admin, password: hunter2}", "/ports/0/auth/type", "written to git in clear"),
    ("{type: truefoundry_oauth}", "/ports/0/auth/type", "TrueFoundry's own login"),
    ("{type: jwt_auth, integration_fqn: acme:okta, enable_login: true}", "/ports/0/auth/enable_login", "login flow"),
])
def test_auth_no_router_enforces_is_refused_with_the_reason(rendered, auth, where, words):
    [(path, message)] = refused(rendered, load_profile_text(JWT_ISTIO, "mesh.yaml"),
                                API + f"ports:\n  - port: 8080\n    host: shop.example.com\n    auth: {auth}\n")
    assert path == where and words in message
    assert "hunter2" not in message


# --- cluster profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(("addon", "words"), [
    ("argo_rollouts: {traffic_router_plugins: [argoproj-labs/nginx]}", "argoproj-labs/gatewayAPI"),
    ("istio:\n    gateway: istio-system/gw\n    jwt_auth_integrations:\n      idp: {issuer: x, jwks_uri: 'https://u:p@idp.example.com/keys'}",
     "jwks_uri"),
])
def test_profiles_refuse_what_routing_cannot_use(addon, words):
    with pytest.raises(ProfileError) as error:
        load_profile_text(f"name: c\nflavor: kind\ngit: {{repo_url: https://git.example.com/c.git}}\naddons:\n  {addon}\n", "c.yaml")
    assert any(words in p.message or words in p.path for p in error.value.problems)


def test_kubectl_builds_routed_canaries_and_jwt_policies(rendered, kubectl, tmp_path):
    renderings = [
        rendered("eks", API + "ports:\n  - port: 8080\n    host: shop.example.com\n" + CANARY),
        rendered(gateway_api(plugin=True), (API + "ports:\n  - port: 8080\n    host: shop.example.com\n" + CANARY).replace("demo:", "gw:")),
        rendered(load_profile_text(JWT_ISTIO, "mesh.yaml"), API.replace("demo:", "mesh:") + JWT_PORT),
    ]
    for number, rendering in enumerate(renderings):
        directory = rendering.write_tree(tmp_path / f"repo-{number}")
        built = assert_kustomize_builds(kubectl, directory, tmp_path / f"work-{number}")
        assert {obj["kind"] for obj in built} >= {"Service", "VirtualService", "HTTPRoute", "Rollout",
                                                  "RequestAuthentication", "AuthorizationPolicy"} & set(kinds(rendering))
