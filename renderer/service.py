"""What a service spec becomes: a Deployment or an Argo Rollout, Services, routes, autoscaling.

Around the shared pod template (renderer.pod) a service gets its workload (a
Deployment for rolling updates, a Rollout for canary and blue-green), its
Services, a VirtualService or HTTPRoutes for exposed ports (and a canary's
traffic split, and JWT policies: renderer.routing decides those), an HPA or a
KEDA ScaledObject, a PodDisruptionBudget and a ServiceMonitor, each only where
the spec asks for it and the cluster's addons allow it. Pure: spec + profile
in, objects out.
"""

from __future__ import annotations

from renderer.engine import render_template
from renderer.kube import KubeSchemas
from contract.labels import SERVICE_ROLE_LABEL
from contract.repository import preview_service_name
from renderer.naming import app_context
from renderer.pod import SpecProblems, app_protocol, common_objects, env_text, pod_context
from renderer.profiles import DEFAULT_RPS_QUERY, ClusterProfile
from renderer.routing import (canary_router, canary_services, exposed_routes, http_route, jwt_policies,
                              rollout_traffic_routing, virtual_services, weight_differences)
from renderer.spec import Spec

# TrueFoundry's default wait before a blue-green rollout promotes itself (BlueGreen.auto_promotion_seconds)
AUTO_PROMOTION_SECONDS = 30


def _autoscaling(spec: Spec, profile: ClusterProfile, problems: SpecProblems, notes: list[str]) -> dict | None:
    replicas = spec.body.get("replicas")
    if not isinstance(replicas, dict):
        return None
    metrics = replicas.get("metrics") or [{"type": "cpu_utilization", "value": 70}]
    metrics = metrics if isinstance(metrics, list) else [metrics]
    # TrueFoundry's BaseAutoscaling: min_replicas 1 unless given; polling_interval is KEDA's pollingInterval
    auto = {"min": int(replicas.get("min_replicas", 1)), "max": int(replicas["max_replicas"]), "metrics": metrics,
            "polling_interval": replicas.get("polling_interval")}
    kinds = {m["type"] for m in metrics}
    if not profile.has("keda") and "polling_interval" in replicas:
        # Kubernetes, "Horizontal Pod Autoscaling": the HPA controller runs every
        # --horizontal-pod-autoscaler-sync-period of the controller manager, for every HPA alike
        notes.append(f"replicas.polling_interval has no effect: cluster {profile.name} scales with an HPA (no keda "
                     "addon), which checks metrics at the controller manager's sync period (15s by default)")
    if not profile.has("keda"):
        listed = isinstance(replicas.get("metrics"), list)
        for index, metric in enumerate(metrics):
            if metric["type"] != "cpu_utilization":
                problems.add(
                    f'cluster "{profile.name}" has no keda addon, which autoscaling on {metric["type"]} needs '
                    "(without KEDA only cpu_utilization is available)",
                    *(("replicas", "metrics", index) if listed else ("replicas", "metrics")),
                )
        if auto["min"] < 1:
            problems.add("min_replicas 0 needs KEDA; this cluster scales with an HPA, which keeps at least one replica", "replicas", "min_replicas")
    elif auto["min"] == 0 and "cron" not in kinds:
        if "rps" not in kinds:
            problems.add("scaling to zero needs a cron metric (or rps, see below); CPU use of zero pods cannot wake "
                         "the app", "replicas", "min_replicas")
        elif "rps_query" not in profile.addon("keda"):
            # the default query counts what the app's own sidecars report (Istio reporter="destination"):
            # with the last pod gone the series ends, and zero is all KEDA ever sees again
            problems.add(
                "scaling to zero on rps never wakes the app on this cluster: its requests are counted by the app's "
                "own pods (Istio reporter=\"destination\"), so the count ends with the last pod; keep min_replicas "
                "at 1, add a cron metric that wakes it, or give the cluster profile a keda.rps_query counted at "
                "the gateway", "replicas", "min_replicas")
    if "rps" in kinds and profile.has("keda") and not profile.addon("keda").get("prometheus_url"):
        problems.add(
            f'cluster "{profile.name}" sets no keda.prometheus_url, which autoscaling on rps needs', "replicas", "metrics"
        )
    return auto


def _keda_triggers(auto: dict, spec: Spec, profile: ClusterProfile) -> list[dict]:
    keda = profile.addon("keda")
    triggers = []
    for metric in auto["metrics"]:
        if metric["type"] == "cpu_utilization":
            triggers.append({"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(metric["value"])}})
        elif metric["type"] == "rps":
            query = keda.get("rps_query", DEFAULT_RPS_QUERY)
            query = query.replace("{namespace}", spec.workspace).replace("{app}", spec.name)
            triggers.append({
                "type": "prometheus",
                "metadata": {
                    "serverAddress": keda.get("prometheus_url", ""),
                    "query": query,
                    "threshold": env_text(metric["value"]),
                },
            })
        else:
            triggers.append({
                "type": "cron",
                "metadata": {
                    "timezone": metric.get("timezone", "Etc/UTC"),
                    "start": metric["start"],
                    "end": metric["end"],
                    "desiredReplicas": str(metric.get("desired_replicas", auto["max"])),
                },
            })
    return triggers


def render_service(spec: Spec, profile: ClusterProfile, schemas: KubeSchemas) -> tuple[list[dict], list[dict], list[str]]:
    """Objects of a service, ArgoCD ignoreDifferences, and notes."""
    body = spec.body
    problems = SpecProblems(spec)
    notes: list[str] = []
    app = app_context(spec, profile)
    version = profile.kubernetes_version

    strategy = body.get("rollout_strategy") or {"type": "rolling_update"}
    progressive = strategy["type"] in ("canary", "blue_green")
    if progressive and not profile.has("argo_rollouts"):
        problems.add(
            f'cluster "{profile.name}" has no argo_rollouts addon, which the {strategy["type"]} strategy needs',
            "rollout_strategy", "type",
        )
    if strategy["type"] == "blue_green" and not body.get("ports"):
        problems.add("blue_green switches traffic between Services and needs at least one port", "rollout_strategy", "type")
    if strategy["type"] == "rolling_update":
        unavailable = strategy.get("max_unavailable_percentage", 25)
        surge = strategy.get("max_surge_percentage", 25)
        if unavailable == 0 and surge == 0:
            problems.add("max_unavailable_percentage and max_surge_percentage cannot both be 0", "rollout_strategy")

    metrics = body.get("metrics")
    auto = _autoscaling(spec, profile, problems, notes)
    routes = exposed_routes(spec, profile, problems, notes)
    jwt = jwt_policies(spec, profile, routes, problems, notes)
    pod, secret_data = pod_context(spec, profile, problems, notes)
    problems.raise_if_any()
    splitter = canary_router(spec, profile, routes, notes) if strategy["type"] == "canary" else None
    virtuals = virtual_services(spec, profile, routes, splitter == "istio", notes) if profile.router == "istio" else []
    if splitter == "istio" and not virtuals:
        splitter = None  # no port Istio routes: the canary has no requests to split

    target = (
        {"api_version": "argoproj.io/v1alpha1", "kind": "Rollout", "group": "argoproj.io"}
        if progressive
        else {"api_version": "apps/v1", "kind": "Deployment", "group": "apps"}
    )
    replicas = None if auto else int(body.get("replicas", 1))  # TrueFoundry exports may write 2.0: Kubernetes wants 2
    templates: list[tuple[str, dict]] = common_objects(spec, profile, app, secret_data)
    templates += pod["objects"]  # what the pod's volumes need: a ConfigMap, a PersistentVolumeClaim (renderer.pod)

    if progressive:
        if strategy["type"] == "canary":
            steps = []
            for step in strategy["steps"]:
                steps.append({"setWeight": step["weight_percentage"]})
                pause = step.get("pause_duration")
                steps.append({"pause": {"duration": f"{pause}s"}} if pause is not None else {"pause": {}})
            rollout_strategy = {"type": "canary", "steps": steps, "traffic_routing": None}
            if splitter:
                rollout_strategy.update(rollout_traffic_routing(spec, splitter, virtuals, routes))
        else:
            # TrueFoundry waits auto_promotion_seconds (30 unless given) before it promotes; Argo Rollouts
            # promotes at once without autoPromotionSeconds, and ignores it when auto-promotion is off
            auto_promotion = strategy.get("enable_auto_promotion", False)
            if not auto_promotion and "auto_promotion_seconds" in strategy:
                notes.append("auto_promotion_seconds has no effect without enable_auto_promotion: the new version "
                             "waits on the preview Service until it is promoted")
            rollout_strategy = {
                "type": "blue_green",
                "active_service": spec.name,
                "preview_service": preview_service_name(spec.name),
                "auto_promotion": auto_promotion,
                "auto_promotion_seconds": strategy.get("auto_promotion_seconds", AUTO_PROMOTION_SECONDS)
                if auto_promotion else None,
            }
        templates.append(("service/rollout.yaml.j2", {"app": app, "pod": pod, "replicas": replicas, "strategy": rollout_strategy}))
    else:
        rolling = {
            "max_unavailable": f"{strategy.get('max_unavailable_percentage', 25)}%",
            "max_surge": f"{strategy.get('max_surge_percentage', 25)}%",
        }
        templates.append(("service/deployment.yaml.j2", {"app": app, "pod": pod, "replicas": replicas, "rolling": rolling}))

    container_ports = pod["container"]["ports"]
    if container_ports:
        service_ports = []
        by_number = {p["port"]: p for p in body.get("ports") or []}
        for port in container_ports:
            entry = {"name": port["name"], "port": port["containerPort"], "targetPort": port["containerPort"], "protocol": port["protocol"]}
            declared = by_number.get(port["containerPort"])
            entry["appProtocol"] = app_protocol(declared) if declared else "http"
            if entry["appProtocol"] == "grpc" and profile.router == "gateway_api":
                # a Gateway API HTTPRoute reaches a gRPC backend over HTTP/2 only when the Service port
                # says so: kubernetes.io/h2c (Gateway API, "Backend Protocol"; Istio reads it too)
                entry["appProtocol"] = "kubernetes.io/h2c"
            service_ports.append(entry)
        templates.append(("service/service.yaml.j2", {
            "app": app, "service_name": spec.name, "service_ports": service_ports, "service_labels": app["labels"],
        }))
        if strategy["type"] == "blue_green":
            # Labelled so the ServiceMonitor skips it: the same pods stand behind both Services.
            templates.append(("service/service.yaml.j2", {
                "app": app,
                "service_name": preview_service_name(spec.name),
                "service_ports": service_ports,
                "service_labels": {**app["labels"], SERVICE_ROLE_LABEL: "preview"},
            }))
        if splitter:
            templates.extend(("service/service.yaml.j2", context) for context in canary_services(app, service_ports))

    templates.extend(("service/virtualservice.yaml.j2", {"app": app, **virtual}) for virtual in virtuals)
    if profile.router == "gateway_api":
        for route in routes:
            templates.append(("service/httproute.yaml.j2", {"app": app, "route": http_route(spec, profile, route, splitter == "gateway_api")}))
    if jwt:
        authentication, authorization = jwt
        templates.append(("service/requestauthentication.yaml.j2", {"app": app, **authentication}))
        templates.append(("service/authorizationpolicy.yaml.j2", {"app": app, **authorization}))

    ignore_differences = weight_differences(spec, splitter, virtuals, routes) if splitter else []
    if auto:
        if profile.has("keda"):
            templates.append((
                "service/scaledobject.yaml.j2",
                {"app": app, "target": target, "autoscaling": auto, "triggers": _keda_triggers(auto, spec, profile)},
            ))
        else:
            cpu = next(m["value"] for m in auto["metrics"] if m["type"] == "cpu_utilization")
            templates.append(("service/hpa.yaml.j2", {"app": app, "target": target, "autoscaling": auto, "cpu_utilization": cpu}))
        ignore_differences.append({"group": target["group"], "kind": target["kind"], "name": spec.name, "jsonPointers": ["/spec/replicas"]})

    most = auto["max"] if auto else (replicas or 0)
    if most >= 2:
        templates.append(("service/pdb.yaml.j2", {"app": app}))

    if metrics and profile.has("prometheus_operator"):
        port_name = next(p["name"] for p in container_ports if p["containerPort"] == metrics["port"])
        release = profile.addon("prometheus_operator").get("release_label")
        monitor_labels = dict(app["labels"], **({"release": release} if release else {}))
        templates.append((
            "service/servicemonitor.yaml.j2",
            {
                "app": app,
                "monitor_labels": monitor_labels,
                "service_role_label": SERVICE_ROLE_LABEL,
                "metrics": {
                    "port_name": port_name,
                    "path": metrics.get("path", "/metrics"),
                    "interval": f"{metrics.get('interval_seconds', 30)}s",
                },
            },
        ))
    objects = [render_template(name, context, version, schemas) for name, context in templates]
    return objects, ignore_differences, notes


__all__ = ["render_service"]
