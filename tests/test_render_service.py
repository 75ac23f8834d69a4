"""Rendering services: which objects a spec becomes on a cluster, and what they say.

Specs come from fixtures/specs (retargeted to other clusters where the test
needs another flavor or other addons) or are written inline when a test needs
one particular variation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.errors import SpecError
from renderer.profiles import load_profile_text
from renderer.render import render, render_all
from renderer.spec import load_spec_files, load_specs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

API = """\
type: service
name: api
workspace_fqn: demo:payments
image:
  type: image
  image_uri: ghcr.io/acme/api:1.0.0
"""


def kinds(rendering) -> list[str]:
    return [obj["kind"] for obj in rendering.objects]


def one(rendering, kind: str, name: str | None = None) -> dict:
    found = [o for o in rendering.objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {kinds(rendering)}"
    return found[0]


def workload(rendering) -> dict:
    [obj] = [o for o in rendering.objects if o["kind"] in ("Deployment", "Rollout")]
    return obj


def container(rendering) -> dict:
    [only] = workload(rendering)["spec"]["template"]["spec"]["containers"]
    return only


def problems_of(error: pytest.ExceptionInfo) -> list[tuple[int, int, str, str]]:
    return [(p.line, p.column, p.path, p.message) for p in error.value.problems]


# --- workloads and rollout strategies --------------------------------------------------


def test_fixed_replicas_and_rolling_update_percentages_make_a_deployment(rendered):
    ledger = rendered("demo", "rolling-update.yaml")
    deployment = one(ledger, "Deployment")
    assert "Rollout" not in kinds(ledger)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "50%"},
    }
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ledger",
        "app.kubernetes.io/managed-by": "shipyard",
    }
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert template["spec"]["imagePullSecrets"] == [{"name": "registry-example-com"}]
    assert container(ledger)["command"] == ["/app/ledger", "--listen", ":7000"]
    assert ledger.application.get("spec", {}).get("ignoreDifferences") is None


def test_a_command_line_runs_through_a_shell(rendered):
    web = rendered("demo", "web.yaml")
    assert container(web)["command"] == ["/bin/sh", "-c", "gunicorn app:server --bind 0.0.0.0:8000"]


def test_both_rolling_update_percentages_zero_is_refused(rendered):
    spec = API + "rollout_strategy:\n  type: rolling_update\n  max_unavailable_percentage: 0\n  max_surge_percentage: 0\n"
    with pytest.raises(SpecError) as error:
        rendered("demo", spec)
    [(line, column, path, message)] = problems_of(error)
    assert (line, column, path) == (8, 3, "/rollout_strategy") and "cannot both be 0" in message


def test_canary_becomes_a_rollout_with_weight_and_pause_steps(rendered):
    checkout = rendered("demo", "canary.yaml")
    rollout = one(checkout, "Rollout")
    assert "Deployment" not in kinds(checkout)
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    assert rollout["spec"]["replicas"] == 4
    # (its trafficRouting on a cluster that splits by weight: tests/test_traffic_routing.py)
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [
        {"setWeight": 10}, {"pause": {"duration": "300s"}},
        {"setWeight": 50}, {"pause": {"duration": "600s"}},
        {"setWeight": 80}, {"pause": {}},  # no pause_duration: wait for a promote
    ]
    assert rollout["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/checkout:2.7.0"


def test_blue_green_switches_between_an_active_and_a_preview_service(rendered):
    catalog = rendered("demo", "blue-green.yaml")
    rollout = one(catalog, "Rollout")
    assert rollout["spec"]["strategy"] == {
        "blueGreen": {
            "activeService": "catalog",
            "previewService": "catalog-preview",
            "autoPromotionEnabled": True,
            "autoPromotionSeconds": 120,
        }
    }
    active, preview = one(catalog, "Service", "catalog"), one(catalog, "Service", "catalog-preview")
    assert active["spec"]["ports"] == preview["spec"]["ports"]
    assert active["spec"]["selector"] == preview["spec"]["selector"] == rollout["spec"]["selector"]["matchLabels"]


def test_blue_green_waits_for_a_promote_unless_auto_promotion_is_enabled(rendered):
    spec = API + "ports:\n  - port: 8080\nrollout_strategy:\n  type: blue_green\n"
    strategy = one(rendered("demo", spec), "Rollout")["spec"]["strategy"]["blueGreen"]
    assert strategy["autoPromotionEnabled"] is False
    assert "autoPromotionSeconds" not in strategy


def test_blue_green_auto_promotion_waits_30_seconds_unless_told_otherwise(rendered):
    """TrueFoundry's auto_promotion_seconds defaults to 30; without it Argo Rollouts promotes at once."""
    spec = API + "ports:\n  - port: 8080\nrollout_strategy:\n  type: blue_green\n  enable_auto_promotion: true\n"
    strategy = one(rendered("demo", spec), "Rollout")["spec"]["strategy"]["blueGreen"]
    assert (strategy["autoPromotionEnabled"], strategy["autoPromotionSeconds"]) == (True, 30)
    strategy = one(rendered("demo", spec + "  auto_promotion_seconds: 0\n"), "Rollout")["spec"]["strategy"]["blueGreen"]
    assert strategy["autoPromotionSeconds"] == 0  # at once, when asked for


def test_auto_promotion_seconds_without_auto_promotion_is_a_note_not_a_timer(rendered):
    spec = API + "ports:\n  - port: 8080\nrollout_strategy:\n  type: blue_green\n  auto_promotion_seconds: 60\n"
    service = rendered("demo", spec)
    strategy = one(service, "Rollout")["spec"]["strategy"]["blueGreen"]
    assert strategy["autoPromotionEnabled"] is False and "autoPromotionSeconds" not in strategy
    assert any("auto_promotion_seconds has no effect" in note for note in service.notes)


def test_blue_green_without_ports_is_refused(rendered):
    with pytest.raises(SpecError, match="blue_green switches traffic between Services"):
        rendered("demo", API + "rollout_strategy:\n  type: blue_green\n")


# --- services and routing ----------------------------------------------------------------


def test_service_ports_carry_names_and_app_protocols(rendered):
    embeddings = rendered("demo", "grpc-gpu.yaml")
    service = one(embeddings, "Service", "embeddings")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "grpc-50051", "port": 50051, "targetPort": 50051, "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "http-8080", "port": 8080, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"},
        {"name": "metrics", "port": 9400, "targetPort": 9400, "protocol": "TCP", "appProtocol": "http"},
    ]
    assert [p["containerPort"] for p in container(embeddings)["ports"]] == [50051, 8080, 9400]
    assert service["spec"]["selector"] == workload(embeddings)["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("declared", ["", "    app_protocol: http\n"])
def test_a_udp_port_is_declared_udp_to_istio_not_http(rendered, declared):
    """Istio reads a Service port's protocol from its name prefix and appProtocol ("Protocol Selection");
    UDP is not proxied and must not be declared HTTP, whatever app_protocol a TrueFoundry export carries."""
    service = rendered("demo", API + "ports:\n  - port: 5353\n    protocol: UDP\n" + declared)
    [port] = one(service, "Service")["spec"]["ports"]
    assert (port["name"], port["protocol"], port["appProtocol"]) == ("udp-5353", "UDP", "udp")
    assert container(service)["ports"] == [{"name": "udp-5353", "containerPort": 5353, "protocol": "UDP"}]


def test_a_grpc_port_behind_a_gateway_api_route_is_declared_h2c(rendered):
    """An HTTPRoute's backend speaks HTTP/2 cleartext only if the Service port's appProtocol is
    kubernetes.io/h2c (Gateway API, "Backend Protocol"); "grpc" is Istio's own word for it."""
    spec = API + "ports:\n  - port: 50051\n    app_protocol: grpc\n    expose: true\n  - port: 8080\n"
    gateway = rendered(load_profile_text(BOTH_ROUTERS.format(ingress="gateway_api"), "mesh.yaml"), spec)
    ports = {p["port"]: p for p in one(gateway, "Service")["spec"]["ports"]}
    assert (ports[50051]["name"], ports[50051]["appProtocol"]) == ("grpc-50051", "kubernetes.io/h2c")
    assert ports[8080]["appProtocol"] == "http"
    istio = rendered(load_profile_text(BOTH_ROUTERS.format(ingress="istio"), "mesh.yaml"), spec)
    assert {p["port"]: p["appProtocol"] for p in one(istio, "Service")["spec"]["ports"]}[50051] == "grpc"


def test_an_app_without_ports_gets_no_service(rendered):
    indexer = rendered("demo", "autoscaling.yaml", index=1)
    assert "Service" not in kinds(indexer)
    assert "ports" not in container(indexer)


def test_istio_exposes_ports_with_a_virtual_service(rendered):
    embeddings = rendered("demo", "grpc-gpu.yaml")
    assert "HTTPRoute" not in kinds(embeddings)
    spec = one(embeddings, "VirtualService")["spec"]
    assert spec["gateways"] == ["istio-system/ingressgateway"]
    assert spec["hosts"] == ["embeddings.ml.example.com"]
    # the path as whole segments: the path itself and what lies below it (tests/test_traffic_routing.py)
    authority = {"authority": {"exact": "embeddings.ml.example.com"}}
    assert spec["http"] == [{
        "name": "embeddings-50051",
        "match": [{**authority, "uri": {"exact": "/acme.embeddings.v1.Embedder"}},
                  {**authority, "uri": {"prefix": "/acme.embeddings.v1.Embedder/"}}],
        "route": [{"destination": {"host": "embeddings.ml.svc.cluster.local", "port": {"number": 50051}}}],
    }]


def test_a_port_without_host_gets_one_from_the_base_domain(rendered):
    spec = one(rendered("demo", "canary.yaml"), "VirtualService", "checkout")["spec"]
    assert spec["hosts"] == ["checkout-payments.demo.localtest.me"]
    assert spec["http"][0]["match"][0]["uri"] == {"prefix": "/"}


def test_the_gateway_api_exposes_ports_with_http_routes(rendered):
    checkout = rendered("gke-standard", "canary.yaml")
    assert "VirtualService" not in kinds(checkout)
    route = one(checkout, "HTTPRoute")
    assert route["metadata"]["name"] == "checkout-8080"
    assert route["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateway-system"}],
        "hostnames": ["checkout-payments.apps.gke.example.com"],
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": "checkout", "port": 8080}],
        }],
    }


BOTH_ROUTERS = """\
name: mesh
flavor: eks
base_domain: mesh.example.com
ingress: {ingress}
git: {{repo_url: https://git.example.com/mesh.git}}
addons:
  istio: {{gateway: istio-system/public}}
  gateway_api: {{gateway: gateway-system/public}}
"""


@pytest.mark.parametrize("ingress, kind", [("istio", "VirtualService"), ("gateway_api", "HTTPRoute")])
def test_the_ingress_setting_picks_the_router_when_a_cluster_has_both(rendered, ingress, kind):
    profile = load_profile_text(BOTH_ROUTERS.format(ingress=ingress), "mesh.yaml")
    exposed = rendered(profile, API + "ports:\n  - port: 8080\n    expose: true\n")
    assert {"VirtualService", "HTTPRoute"} & set(kinds(exposed)) == {kind}


def test_a_port_without_host_on_a_cluster_without_base_domain_is_refused(rendered):
    profile = load_profile_text(
        "name: bare\nflavor: kind\ngit: {repo_url: http://localhost/bare.git}\n"
        "addons:\n  istio: {gateway: istio-system/gw}\n",
        "bare.yaml",
    )
    with pytest.raises(SpecError) as error:
        rendered(profile, API + "ports:\n  - port: 8080\n    expose: true\n")
    [(line, column, path, message)] = problems_of(error)
    assert (line, column, path) == (9, 13, "/ports/0/expose")
    assert 'set a host: cluster "bare" has no base_domain' in message


def test_derived_hosts_are_valid_dns_names(rendered):
    # BUG: <app>-<workspace> can exceed the 63 characters a DNS label may have;
    # the renderer must refuse (asking for a host) rather than emit an invalid host.
    spec = (
        API.replace("name: api", "name: storefront-recommendations-api-experiment")
        .replace("demo:payments", "demo:personalization-experiments")
        + "ports:\n  - port: 8080\n    expose: true\n"
    )
    try:
        hosts = one(rendered("demo", spec), "VirtualService")["spec"]["hosts"]
    except SpecError as error:
        assert [p.path for p in error.problems] == ["/ports/0/expose"]
        return
    for host in hosts:
        assert all(len(label) <= 63 for label in host.split(".")), f"{host} is not a valid DNS name"


# --- autoscaling -------------------------------------------------------------------------------


def test_keda_scales_on_cpu_and_a_cron_window(rendered):
    indexer = rendered("demo", "autoscaling.yaml", index=1)
    assert "HorizontalPodAutoscaler" not in kinds(indexer)
    scaled = one(indexer, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "search-indexer"}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 8)
    assert scaled["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "75"}},
        {"type": "cron", "metadata": {
            "timezone": "Europe/Berlin", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "desiredReplicas": "6",
        }},
    ]


def test_keda_scales_on_requests_per_second_through_prometheus(rendered):
    search = rendered("demo", "autoscaling.yaml", index=0)
    scaled = one(search, "ScaledObject")["spec"]
    assert scaled["minReplicaCount"] == 1
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring:9090"
    assert trigger["metadata"]["threshold"] == "25.5"
    query = trigger["metadata"]["query"]
    assert 'destination_workload_namespace="storefront"' in query and 'destination_workload="search-api"' in query


def test_a_profiles_rps_query_gets_namespace_and_app_filled_in(rendered):
    # BUG: the profile's rps_query is PromQL, whose label matchers use braces;
    # str.format() chokes on them (ValueError: unexpected '{' in field name).
    search = rendered("gke-standard", "autoscaling.yaml", index=0)
    [trigger] = one(search, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["query"] == (
        'sum(rate(envoy_cluster_upstream_rq_total{namespace="storefront",app="search-api"}[1m]))'
    )


def test_keda_targets_the_rollout_of_a_progressive_service(rendered):
    spec = API + (
        "replicas: {min_replicas: 2, max_replicas: 6}\n"
        "rollout_strategy:\n  type: canary\n  steps: [{weight_percentage: 50}]\n"
    )
    api = rendered("demo", spec)
    assert one(api, "ScaledObject")["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "api",
    }
    assert "replicas" not in one(api, "Rollout")["spec"]
    assert api.application["spec"]["ignoreDifferences"] == [
        {"group": "argoproj.io", "kind": "Rollout", "name": "api", "jsonPointers": ["/spec/replicas"]}
    ]


CPU_ONLY = API + "replicas:\n  min_replicas: 2\n  max_replicas: 5\n  metrics:\n    - type: cpu_utilization\n      value: 65\n"


def test_without_keda_cpu_autoscaling_uses_an_hpa(rendered):
    api = rendered("kind", CPU_ONLY)
    assert "ScaledObject" not in kinds(api)
    hpa = one(api, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 65},
        }}],
    }


def test_autoscaling_without_metrics_targets_70_percent_cpu(rendered):
    api = rendered("generic", API + "replicas: {min_replicas: 1, max_replicas: 3}\n")
    target = one(api, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]["target"]
    assert target["averageUtilization"] == 70


@pytest.mark.parametrize("flavor", ["demo", "kind"])
def test_an_autoscaled_workload_leaves_replicas_to_the_autoscaler(rendered, flavor):
    api = rendered(flavor, CPU_ONLY)
    deployment = one(api, "Deployment")
    assert "replicas" not in deployment["spec"]
    spec = api.application["spec"]
    assert spec["ignoreDifferences"] == [
        {"group": "apps", "kind": "Deployment", "name": "api", "jsonPointers": ["/spec/replicas"]}
    ]
    assert "RespectIgnoreDifferences=true" in spec["syncPolicy"]["syncOptions"]


def test_fixed_replicas_are_owned_by_git(rendered):
    api = rendered("demo", API + "replicas: 2\n")
    assert one(api, "Deployment")["spec"]["replicas"] == 2
    assert "ignoreDifferences" not in api.application["spec"]
    assert "RespectIgnoreDifferences=true" not in api.application["spec"]["syncPolicy"]["syncOptions"]


def test_scaling_to_zero_on_cpu_alone_is_refused(rendered):
    with pytest.raises(SpecError, match="scaling to zero needs a cron metric"):
        rendered("demo", API + "replicas: {min_replicas: 0, max_replicas: 3}\n")


ZERO_ON_RPS = API + "replicas:\n  min_replicas: 0\n  max_replicas: 5\n  metrics:\n    - {type: rps, value: 10}\n"


def test_scaling_to_zero_on_the_pods_own_request_count_is_refused(rendered):
    """Istio's reporter="destination" series comes from the app's own sidecars: with the last pod gone it
    ends, and KEDA never sees a request again, so min_replicas 0 would never wake the app."""
    with pytest.raises(SpecError) as refused:
        rendered("demo", ZERO_ON_RPS)
    [problem] = refused.value.problems
    assert problem.path == "/replicas/min_replicas" and "never wakes the app" in problem.message


def test_scaling_to_zero_is_allowed_where_something_can_wake_the_app(rendered):
    gateway_counted = rendered("gke-standard", ZERO_ON_RPS.replace("demo:storefront", "gke:payments"))
    assert one(gateway_counted, "ScaledObject")["spec"]["minReplicaCount"] == 0  # the profile's own rps_query
    woken = rendered("demo", ZERO_ON_RPS + '    - {type: cron, start: "0 8 * * *", end: "0 9 * * *", desired_replicas: 1}\n')
    assert one(woken, "ScaledObject")["spec"]["minReplicaCount"] == 0


@pytest.mark.parametrize(
    "replicas, has_pdb",
    [
        ("replicas: 0", False),
        ("replicas: 1", False),
        ("replicas: 2", True),
        ("replicas: {min_replicas: 1, max_replicas: 1}", False),
        ("replicas: {min_replicas: 1, max_replicas: 2}", True),
    ],
)
def test_a_disruption_budget_only_when_two_replicas_are_possible(rendered, replicas, has_pdb):
    api = rendered("demo", API + replicas + "\n")
    assert ("PodDisruptionBudget" in kinds(api)) is has_pdb
    if has_pdb:
        pdb = one(api, "PodDisruptionBudget")["spec"]
        assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": workload(api)["spec"]["selector"]["matchLabels"]}}


# --- the pod -----------------------------------------------------------------------------------


def test_probes_of_every_kind(rendered):
    ledger, embeddings, checkout = (rendered("demo", f) for f in ("rolling-update.yaml", "grpc-gpu.yaml", "canary.yaml"))
    assert container(ledger)["livenessProbe"] == {
        "tcpSocket": {"port": 7000}, "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3,
    }
    assert container(ledger)["readinessProbe"] == {
        "exec": {"command": ["/app/ledger", "healthcheck"]}, "timeoutSeconds": 2, "successThreshold": 1,
    }
    assert container(embeddings)["livenessProbe"] == {"grpc": {"port": 50051}, "periodSeconds": 15}
    assert container(embeddings)["readinessProbe"] == {"grpc": {"port": 50051, "service": "acme.embeddings.v1.Embedder"}}
    assert container(checkout)["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}}
    assert container(checkout)["startupProbe"] == {
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 2, "failureThreshold": 30,
    }
    assert "livenessProbe" not in container(checkout)


def test_pods_run_as_the_apps_own_service_account_by_default(rendered):
    checkout = rendered("demo", "canary.yaml")
    account = one(checkout, "ServiceAccount")
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == ("checkout", "payments")
    assert workload(checkout)["spec"]["template"]["spec"]["serviceAccountName"] == "checkout"


def test_pods_run_as_the_service_account_the_spec_names(rendered):
    ledger = rendered("demo", "rolling-update.yaml")
    assert workload(ledger)["spec"]["template"]["spec"]["serviceAccountName"] == "ledger-writer"
    assert all(o["metadata"]["name"] != "ledger" for o in ledger.objects if o["kind"] == "ServiceAccount")


def test_plain_env_values_become_strings(rendered):
    env = {e["name"]: e for e in container(rendered("demo", "rolling-update.yaml"))["env"]}
    assert env["MAX_CONNECTIONS"] == {"name": "MAX_CONNECTIONS", "value": "200"}
    assert env["AUDIT_ENABLED"]["value"] == "true"
    assert {e["name"]: e.get("value") for e in container(rendered("demo", "web.yaml"))["env"]}["FEATURE_FLAGS"] == "no"


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_get_a_service_monitor_where_the_prometheus_operator_runs(rendered):
    embeddings = rendered("demo", "grpc-gpu.yaml")
    monitor = one(embeddings, "ServiceMonitor")
    service = one(embeddings, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/stats/prometheus", "interval": "15s"}]
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert "annotations" not in workload(embeddings)["spec"]["template"]["metadata"]


def test_metrics_get_scrape_annotations_without_the_prometheus_operator(rendered):
    embeddings = rendered("aks", "grpc-gpu.yaml")
    assert "ServiceMonitor" not in kinds(embeddings)
    assert workload(embeddings)["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9400",
        "prometheus.io/path": "/stats/prometheus",
    }


def test_a_metrics_port_that_is_also_a_declared_port_is_listed_once(rendered):
    api = rendered("demo", API + "ports:\n  - port: 8080\nmetrics:\n  port: 8080\n")
    assert [p["name"] for p in one(api, "Service")["spec"]["ports"]] == ["http-8080"]
    assert one(api, "ServiceMonitor")["spec"]["endpoints"][0] == {"port": "http-8080", "path": "/metrics", "interval": "30s"}


# --- secrets -------------------------------------------------------------------------------------


def _strings(value, path=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, path + (key,))
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child, path)
    elif isinstance(value, str):
        yield path, value


def test_secret_references_become_an_external_secret_and_secret_key_refs(rendered):
    web, embeddings = rendered("demo", "web.yaml"), rendered("demo", "grpc-gpu.yaml")
    external = one(web, "ExternalSecret", "web-secrets")["spec"]
    assert external["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault"}
    assert external["target"]["name"] == "web-secrets"
    assert external["data"] == [
        {"secretKey": "DATABASE_PASSWORD", "remoteRef": {"key": "storefront/db", "property": "password"}}
    ]
    assert one(embeddings, "ExternalSecret")["spec"]["data"] == [  # tfy-secret://<tenant>:<group>:<key>
        {"secretKey": "HF_TOKEN", "remoteRef": {"key": "acme/ml-models", "property": "hf-token"}}
    ]
    env = {e["name"]: e for e in container(web)["env"]}
    assert env["DATABASE_PASSWORD"] == {
        "name": "DATABASE_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "web-secrets", "key": "DATABASE_PASSWORD"}},
    }
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "info"}


def test_the_secret_store_settings_come_from_the_profile(rendered):
    external = one(rendered("gke-standard", "canary.yaml"), "ExternalSecret")["spec"]
    assert external["secretStoreRef"]["name"] == "gcp-secret-manager"
    assert external["refreshInterval"] == "15m"


def test_a_secret_path_appears_only_as_a_remote_ref(rendered):
    references = {"storefront/db": "web.yaml", "payments/stripe": "canary.yaml", "acme/ml-models": "grpc-gpu.yaml"}
    for secret_path, source in references.items():
        rendering = rendered("demo", source)
        found = [
            (obj["kind"], path)
            for obj in [*rendering.objects, rendering.application]
            for path, text in _strings(obj)
            if secret_path in text or "secret://" in text
        ]
        assert found == [("ExternalSecret", ("spec", "data", "remoteRef", "key"))], source


# --- labels --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_renderings(cluster):
    return render_all(load_spec_files([FIXTURES / "specs"]), cluster("demo"))


def test_every_object_carries_the_shipyard_labels(demo_renderings):
    for rendering in demo_renderings:
        expected = {
            "app.kubernetes.io/name": rendering.name,
            "app.kubernetes.io/managed-by": "shipyard",
            "shipyard.dev/cluster": "demo",
            "shipyard.dev/workspace": rendering.workspace,
            "shipyard.dev/app": rendering.name,
        }
        user = rendering.spec.body.get("labels") or {}
        for obj in [*rendering.objects, rendering.application]:
            labels = obj["metadata"]["labels"]
            assert expected.items() <= labels.items(), f"{rendering.spec.key}: {obj['kind']}"
            if obj["kind"] != "Application":
                assert user.items() <= labels.items()
                assert obj["metadata"]["namespace"] == rendering.workspace
        pod = workload(rendering)["spec"]["template"] if rendering.spec.kind == "service" else None
        if pod is not None:
            assert expected.items() <= pod["metadata"]["labels"].items()


def test_shipyard_label_keys_cannot_be_set_by_a_spec():
    with pytest.raises(SpecError, match="is set by Shipyard"):
        load_specs(API + "labels:\n  app.kubernetes.io/name: other\n")


# --- what a cluster cannot run --------------------------------------------------------------------


@pytest.mark.parametrize(
    "flavor, addition, where, words",
    [
        ("kind", "rollout_strategy: {type: blue_green}\nports: [{port: 80}]\n", "/rollout_strategy/type",
         ['cluster "dev-kind"', "argo_rollouts addon", "blue_green"]),
        ("generic", "replicas:\n  min_replicas: 1\n  max_replicas: 4\n  metrics: {type: cron, start: '0 8 * * *', end: '0 18 * * *'}\n",
         "/replicas/metrics", ['cluster "onprem"', "keda addon", "cron"]),
        ("generic", "replicas: {min_replicas: 0, max_replicas: 3}\n", "/replicas/min_replicas",
         ["min_replicas 0 needs KEDA"]),
        ("aks", "replicas:\n  min_replicas: 1\n  max_replicas: 4\n  metrics: [{type: rps, value: 10}]\n",
         "/replicas/metrics", ['cluster "prod-aks"', "keda.prometheus_url"]),
        ("generic", "env: {TOKEN: 'tfy-secret://acme:payments:token'}\n", "/env/TOKEN",
         ['cluster "onprem"', "external_secrets addon"]),
        ("generic", "ports: [{port: 80, expose: true, host: api.example.com}]\n", "/ports/0/expose",
         ['cluster "onprem"', "istio or gateway_api addon"]),
    ],
)
def test_a_missing_addon_is_refused_naming_the_cluster_and_the_addon(rendered, flavor, addition, where, words):
    with pytest.raises(SpecError) as error:
        rendered(flavor, API + addition)
    [problem] = error.value.problems
    assert problem.path == where
    assert problem.line >= 7, "located in the spec, not at its start"
    for word in words:
        assert word in problem.message


def test_every_missing_addon_of_a_spec_is_reported_at_once(rendered):
    with pytest.raises(SpecError) as error:
        rendered("generic", "canary.yaml")
    assert sorted(p.path for p in error.value.problems) == ["/env/STRIPE_API_KEY", "/ports/0/expose", "/rollout_strategy/type"]


def test_a_spec_is_rendered_only_for_the_cluster_it_names(cluster):
    [spec] = load_specs(API, "api.yaml")
    with pytest.raises(SpecError) as error:
        render(spec, cluster("eks"))
    [problem] = error.value.problems
    assert (problem.line, problem.column, problem.path) == (3, 16, "/workspace_fqn")
    assert '"demo"' in problem.message and '"prod-eks"' in problem.message


def _selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels + NotIn/In expressions) applied to labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
    return True


def test_a_blue_green_service_monitor_scrapes_through_the_active_service_only(rendered):
    spec = API + (
        "ports: [{port: 8000}]\nmetrics: {port: 9090}\n"
        "rollout_strategy: {type: blue_green, enable_auto_promotion: true}\n"
    )
    rendering = rendered("demo", spec)
    monitor = one(rendering, "ServiceMonitor")
    active, preview = one(rendering, "Service", "api"), one(rendering, "Service", "api-preview")
    assert _selects(monitor["spec"]["selector"], active["metadata"]["labels"])
    assert not _selects(monitor["spec"]["selector"], preview["metadata"]["labels"])


@pytest.mark.parametrize("workspace", ["argocd", "istio-system"])
def test_the_clusters_own_system_namespaces_are_not_workspaces(rendered, workspace):
    with pytest.raises(SpecError) as err:
        rendered("eks", API.replace("demo:payments", f"demo:{workspace}"))
    [(line, _, path, message)] = problems_of(err)
    assert (line, path) == (3, "/workspace_fqn") and "system namespace" in message
