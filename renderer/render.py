"""Rendering: a validated spec and a cluster profile in, Kubernetes manifests out.

:func:`render` is a pure function: no git, no network, no clock, no
database. Same spec and profile give the same objects and the same bytes.

Python decides *what* to render and computes the values; the Jinja templates
under ``templates/`` give each object its shape. Every value reaches template
text through the ``y`` filter (a serialized YAML flow node); ``finalize``
refuses anything printed without it, so no user string can become YAML
structure. Each template's output is parsed back and validated against the
Kubernetes schema of the cluster's version, and against the CRD schema where
``SHIPYARD_CRD_SCHEMAS`` has the kind.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from renderer.errors import Problem, ProfileError, RenderError, SpecError
from renderer.flavors import PlacementError, place
from renderer.kube import validate_object, validator_for
from renderer.profiles import DEFAULT_KUBERNETES_VERSION, DEFAULT_RPS_QUERY, ClusterProfile
from renderer.spec import Spec, compile_schemas, parse_secret_ref
from renderer.yamlio import dump_manifest, flow, parse_rendered

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"

MANAGED_BY = {"app.kubernetes.io/managed-by": "shipyard"}


# --- the template environment -------------------------------------------------


def _serialized(value: Any) -> Markup:
    return Markup(flow(value))


def _require_serialized(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    raise RenderError(
        f"template printed a raw value ({type(value).__name__}); pass it through the 'y' filter"
    )


@functools.cache
def environment(template_dir: str = str(TEMPLATE_DIR)) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        finalize=_require_serialized,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["y"] = _serialized
    return env


_TEMPLATE_KIND = re.compile(r"^apiVersion: (\S+)\s*\nkind: (\w+)", re.MULTILINE)


def warm_up(kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> None:
    """Compile now what renders would compile on first use: every template, the spec and
    profile schemas, and the validator of every kind the templates produce."""
    env = environment()
    for name in env.list_templates(filter_func=lambda n: n.endswith(".j2")):
        template = env.get_template(name)
        for api_version, kind in _TEMPLATE_KIND.findall(Path(template.filename).read_text()):
            validator_for(kubernetes_version, api_version, kind)
    compile_schemas()


def render_template(name: str, context: dict, kubernetes_version: str) -> dict:
    """Render one template into exactly one validated Kubernetes object."""
    try:
        text = environment().get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}") from exc
    try:
        documents = parse_rendered(text)
    except Exception as exc:  # libyaml's errors have no common base worth naming
        raise RenderError(f"template {name} produced invalid YAML: {exc}") from exc
    if len(documents) != 1:
        raise RenderError(f"template {name} produced {len(documents)} documents instead of one")
    obj = documents[0]
    validate_object(obj, kubernetes_version, where=f"template {name}")
    return obj


# --- results -------------------------------------------------------------------


@dataclass
class Rendering:
    """Everything one spec becomes on one cluster."""

    spec: Spec
    profile: ClusterProfile
    objects: list[dict]  # the app's objects, in apply order
    application: dict  # the ArgoCD Application that syncs them
    notes: list[str] = field(default_factory=list)  # what the renderer changed and why

    @property
    def workspace(self) -> str:
        return self.spec.workspace

    @property
    def name(self) -> str:
        return self.spec.name

    files: dict[str, bytes] = field(init=False)  # file name -> canonical bytes, one object per file
    application_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        # Serializing is part of rendering: the renderer's product is bytes.
        self.files = {object_filename(obj): dump_manifest(obj) for obj in self.objects}
        self.application_bytes = dump_manifest(self.application)


def object_filename(obj: dict) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


# --- labels and naming ---------------------------------------------------------


def common_labels(profile: ClusterProfile, workspace: str, app: str | None = None) -> dict:
    labels = {
        **MANAGED_BY,
        "shipyard.dev/cluster": profile.name,
        "shipyard.dev/workspace": workspace,
    }
    if app:
        labels = {"app.kubernetes.io/name": app, **labels, "shipyard.dev/app": app}
    return labels


def application_name(workspace: str, app: str) -> str:
    """ArgoCD Application of an app: ``<workspace>.<app>`` (names have no dots)."""
    return f"{workspace}.{app}"


def preview_service_name(app: str) -> str:
    """The blue-green preview Service: the one object named after something other than its app."""
    return f"{app}-preview"


def _app_context(spec: Spec, profile: ClusterProfile) -> dict:
    labels = common_labels(profile, spec.workspace, spec.name)
    user = spec.body.get("labels") or {}
    labels.update({k: user[k] for k in sorted(user)})
    return {
        "name": spec.name,
        "namespace": spec.workspace,
        "labels": labels,
        "selector": {"app.kubernetes.io/name": spec.name, **MANAGED_BY},
        "annotations": {"shipyard.dev/spec-digest": spec.digest},
    }


# --- shared pieces ---------------------------------------------------------------


class _Problems:
    """Collects spec problems found while rendering, to raise them all at once."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.items: list[Problem] = []

    def add(self, message: str, *path: Any) -> None:
        self.items.append(self.spec.problem(message, path))

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def _env(spec: Spec, secret_name: str) -> tuple[list[dict], list[dict]]:
    """Container env entries and the ExternalSecret data entries they need."""
    env, secret_data = [], []
    for name, value in (spec.body.get("env") or {}).items():
        ref = parse_secret_ref(value)
        if ref is not None:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}})
            secret_data.append({"secretKey": name, "remoteRef": {"key": ref.path, "property": ref.key}})
        else:
            env.append({"name": name, "value": _env_text(value)})
    secret_data.sort(key=lambda item: item["secretKey"])
    return env, secret_data


def _env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _command(image: dict, substitute=None) -> list[str] | None:
    command = image.get("command")
    if command is None:
        return None
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    return [substitute(part) for part in command] if substitute else list(command)


_PROBE_KEYS = {
    "initial_delay_seconds": "initialDelaySeconds",
    "period_seconds": "periodSeconds",
    "timeout_seconds": "timeoutSeconds",
    "success_threshold": "successThreshold",
    "failure_threshold": "failureThreshold",
}


def _probe(probe: dict) -> dict:
    config = probe["config"]
    kind = config["type"]
    if kind == "http":
        action = {"httpGet": {"path": config["path"], "port": config["port"], "scheme": config.get("scheme", "HTTP")}}
    elif kind == "tcp":
        action = {"tcpSocket": {"port": config["port"]}}
    elif kind == "exec":
        action = {"exec": {"command": list(config["command"])}}
    else:
        grpc = {"port": config["port"]}
        if config.get("service"):
            grpc["service"] = config["service"]
        action = {"grpc": grpc}
    for key, k8s_key in _PROBE_KEYS.items():
        if key in probe:
            action[k8s_key] = probe[key]
    return action


def _port_name(port: dict) -> str:
    return f"{port.get('app_protocol', 'http')}-{port['port']}"


def _pod(spec: Spec, profile: ClusterProfile, problems: _Problems, notes: list[str], substitute=None) -> tuple[dict, list[dict]]:
    """The pod context (container included) and the ExternalSecret data it needs."""
    body = spec.body
    secret_name = f"{spec.name}-secrets"
    env, secret_data = _env(spec, secret_name)
    if secret_data and not profile.has("external_secrets"):
        first = next(n for n, v in body["env"].items() if parse_secret_ref(v))
        problems.add(
            f'cluster "{profile.name}" has no external_secrets addon, which secret references need',
            "env", first,
        )
    try:
        placement = place(body.get("resources"), profile.flavor)
    except PlacementError as exc:
        problems.add(str(exc), *exc.path)
        placement = place({}, profile.flavor)
    notes.extend(placement.notes)

    ports = []
    for port in body.get("ports") or []:
        ports.append({"name": _port_name(port), "containerPort": port["port"], "protocol": port.get("protocol", "TCP")})
    metrics = body.get("metrics")
    annotations = {}
    if metrics and metrics["port"] not in {p["containerPort"] for p in ports}:
        ports.append({"name": "metrics", "containerPort": metrics["port"], "protocol": "TCP"})
    if metrics and not profile.has("prometheus_operator"):
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(metrics["port"]),
            "prometheus.io/path": metrics.get("path", "/metrics"),
        }

    probes = {}
    for field_name, k8s_name in (
        ("liveness_probe", "livenessProbe"),
        ("readiness_probe", "readinessProbe"),
        ("startup_probe", "startupProbe"),
    ):
        if field_name in body:
            probes[k8s_name] = _probe(body[field_name])

    image = body["image"]
    container = {
        "name": spec.name,
        "image": image["image_uri"],
        "command": _command(image, substitute),
        "ports": ports,
        "env": env,
        "resources": placement.resources,
        "probes": probes,
    }
    pod = {
        "service_account": body.get("service_account") or spec.name,
        "image_pull_secrets": [{"name": image["docker_registry"]}] if image.get("docker_registry") else [],
        "node_selector": dict(sorted(placement.node_selector.items())),
        "affinity": placement.affinity,
        "tolerations": placement.tolerations,
        "annotations": annotations,
        "container": container,
    }
    return pod, secret_data


def _common_objects(spec: Spec, profile: ClusterProfile, app: dict, secret_data: list[dict]) -> list[tuple[str, dict]]:
    """ServiceAccount and ExternalSecret: what services and jobs both may need."""
    out = []
    if not spec.body.get("service_account"):
        out.append(("common/serviceaccount.yaml.j2", {"app": app}))
    if secret_data and profile.has("external_secrets"):
        store = profile.addon("external_secrets")
        out.append((
            "common/externalsecret.yaml.j2",
            {
                "app": app,
                "secret_name": f"{spec.name}-secrets",
                "store": store["store"],
                "refresh_interval": store.get("refresh_interval", "1h"),
                "secret_data": secret_data,
            },
        ))
    return out


# --- services --------------------------------------------------------------------


def _autoscaling(spec: Spec, profile: ClusterProfile, problems: _Problems) -> dict | None:
    replicas = spec.body.get("replicas")
    if not isinstance(replicas, dict):
        return None
    metrics = replicas.get("metrics") or [{"type": "cpu_utilization", "value": 70}]
    metrics = metrics if isinstance(metrics, list) else [metrics]
    auto = {"min": replicas["min_replicas"], "max": replicas["max_replicas"], "metrics": metrics}
    kinds = {m["type"] for m in metrics}
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
    elif auto["min"] == 0 and kinds == {"cpu_utilization"}:
        problems.add("scaling to zero needs an rps or cron metric; CPU use of zero pods cannot wake the app", "replicas", "min_replicas")
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
                    "threshold": _env_text(metric["value"]),
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


def _exposure(spec: Spec, profile: ClusterProfile, problems: _Problems) -> list[dict]:
    routes = []
    for index, port in enumerate(spec.body.get("ports") or []):
        if not port.get("expose"):
            continue
        if profile.router is None:
            problems.add(
                f'cluster "{profile.name}" has no istio or gateway_api addon, which exposing a port needs',
                "ports", index, "expose",
            )
            continue
        host = port.get("host")
        if not host:
            if not profile.base_domain:
                problems.add(
                    f'set a host: cluster "{profile.name}" has no base_domain to derive one from',
                    "ports", index, "expose",
                )
                continue
            label = f"{spec.name}-{spec.workspace}"
            if len(label) > 63:
                problems.add(
                    f'set a host: the derived host "{label}.{profile.base_domain}" starts with a label longer than 63 characters',
                    "ports", index, "expose",
                )
                continue
            host = f"{label}.{profile.base_domain}"
        routes.append({
            "name": f"{spec.name}-{port['port']}",
            "host": host,
            "path": port.get("path", "/"),
            "port": port["port"],
        })
    return routes


def _gateway(profile: ClusterProfile) -> dict:
    namespace, name = profile.addon(profile.router)["gateway"].split("/", 1)
    return {"namespace": namespace, "name": name, "ref": f"{namespace}/{name}"}


def render_service(spec: Spec, profile: ClusterProfile) -> tuple[list[dict], list[dict], list[str]]:
    """Objects of a service, ArgoCD ignoreDifferences, and notes."""
    body = spec.body
    problems = _Problems(spec)
    notes: list[str] = []
    app = _app_context(spec, profile)
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
    auto = _autoscaling(spec, profile, problems)
    routes = _exposure(spec, profile, problems)
    pod, secret_data = _pod(spec, profile, problems, notes)
    problems.raise_if_any()

    target = (
        {"api_version": "argoproj.io/v1alpha1", "kind": "Rollout", "group": "argoproj.io"}
        if progressive
        else {"api_version": "apps/v1", "kind": "Deployment", "group": "apps"}
    )
    replicas = None if auto else body.get("replicas", 1)
    templates: list[tuple[str, dict]] = _common_objects(spec, profile, app, secret_data)

    if progressive:
        if strategy["type"] == "canary":
            steps = []
            for step in strategy["steps"]:
                steps.append({"setWeight": step["weight_percentage"]})
                pause = step.get("pause_duration")
                steps.append({"pause": {"duration": f"{pause}s"}} if pause is not None else {"pause": {}})
            rollout_strategy = {"type": "canary", "steps": steps}
        else:
            rollout_strategy = {
                "type": "blue_green",
                "active_service": spec.name,
                "preview_service": preview_service_name(spec.name),
                "auto_promotion": strategy.get("enable_auto_promotion", False),
                "auto_promotion_seconds": strategy.get("auto_promotion_seconds"),
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
            entry["appProtocol"] = (declared or {}).get("app_protocol", "http")
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
                "service_labels": {**app["labels"], "shipyard.dev/service-role": "preview"},
            }))

    if routes:
        gateway = _gateway(profile)
        if profile.router == "istio":
            templates.append((
                "service/virtualservice.yaml.j2",
                {
                    "app": app,
                    "gateway": gateway["ref"],
                    "hosts": sorted({r["host"] for r in routes}),
                    "routes": routes,
                    "service_host": f"{spec.name}.{spec.workspace}.svc.cluster.local",
                },
            ))
        else:
            for route in routes:
                templates.append(("service/httproute.yaml.j2", {"app": app, "gateway": gateway, "route": route}))

    ignore_differences = []
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
                "metrics": {
                    "port_name": port_name,
                    "path": metrics.get("path", "/metrics"),
                    "interval": f"{metrics.get('interval_seconds', 30)}s",
                },
            },
        ))
    objects = [render_template(name, context, version) for name, context in templates]
    return objects, ignore_differences, notes


# --- jobs ---------------------------------------------------------------------------

_NEVER = "0 0 31 2 *"  # February 31st: a CronJob that only runs when triggered


def render_job(spec: Spec, profile: ClusterProfile) -> tuple[list[dict], list[dict], list[str]]:
    body = spec.body
    problems = _Problems(spec)
    notes: list[str] = []
    app = _app_context(spec, profile)
    trigger = body.get("trigger") or {"type": "manual"}
    params = body.get("params") or []
    argo = profile.has("argo_workflows")

    if argo:
        def substitute(text: str) -> str:
            for param in params:
                text = _param_pattern(param["name"]).sub("{{workflow.parameters.%s}}" % param["name"], text)
            return text
    else:
        for index, param in enumerate(params):
            if "default" not in param:
                problems.add(
                    f'param "{param["name"]}" has no default, and cluster "{profile.name}" has no argo_workflows addon '
                    "to pass one when the job runs",
                    "params", index,
                )
        defaults = {p["name"]: _env_text(p.get("default")) for p in params}

        def substitute(text: str) -> str:
            for name, value in defaults.items():
                text = _param_pattern(name).sub(lambda _m, v=value: v, text)
            return text
        if params:
            notes.append(f"cluster {profile.name} has no Argo Workflows: params take their defaults")

    pod, secret_data = _pod(spec, profile, problems, notes, substitute=substitute if params else None)
    problems.raise_if_any()

    job = {
        "retries": body.get("retries", 0),
        "timeout": body.get("timeout"),
        "schedule": trigger.get("schedule", _NEVER),
        "timezone": trigger.get("timezone"),
        "concurrency_policy": trigger.get("concurrency_policy", "Forbid"),
        "suspend": trigger["type"] == "manual",
        "parameters": [
            {k: v for k, v in (("name", p["name"]), ("value", _env_text(p["default"]) if "default" in p else None), ("description", p.get("description"))) if v is not None}
            for p in params
        ],
    }
    templates = _common_objects(spec, profile, app, secret_data)
    if argo:
        name = "job/cronworkflow.yaml.j2" if trigger["type"] == "scheduled" else "job/workflowtemplate.yaml.j2"
    else:
        name = "job/cronjob.yaml.j2"
    templates.append((name, {"app": app, "pod": pod, "job": job}))
    objects = [render_template(n, context, profile.kubernetes_version) for n, context in templates]
    return objects, [], notes


@functools.cache
def _param_pattern(name: str) -> re.Pattern:
    return re.compile(r"\{\{\s*" + re.escape(name) + r"\s*\}\}")


# --- applications, workspaces, bootstrap --------------------------------------------------


def _argocd(profile: ClusterProfile) -> dict:
    return {"namespace": profile.argocd_namespace, "project": profile.argocd_project, "server": profile.destination_server}


def _git(profile: ClusterProfile) -> dict:
    return {"repo_url": profile.repo_url, "branch": profile.branch}


def render_application(
    profile: ClusterProfile, workspace: str, app: str | None, ignore_differences: list[dict] | None = None
) -> dict:
    """The ArgoCD Application for an app, or for a workspace when ``app`` is None."""
    sync_options = ["CreateNamespace=true", "PrunePropagationPolicy=foreground"]
    if ignore_differences:
        sync_options.append("RespectIgnoreDifferences=true")
    application = {
        "name": application_name(workspace, app) if app else workspace,
        "labels": common_labels(profile, workspace, app),
        "path": f"workspaces/{workspace}/{app}" if app else f"workspaces/{workspace}",
        "namespace": workspace,
        "sync_options": sync_options,
        "ignore_differences": ignore_differences or [],
    }
    context = {"application": application, "argocd": _argocd(profile), "git": _git(profile)}
    return render_template("argocd/application.yaml.j2", context, profile.kubernetes_version)


@dataclass(frozen=True)
class WorkspaceSettings:
    """What a workspace adds to its namespace: environment, labels, and a ResourceQuota's hard limits."""

    environment: str = "dev"
    labels: tuple[tuple[str, str], ...] = ()
    quota: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, environment: str, labels: dict, quota: dict) -> "WorkspaceSettings":
        return cls(environment, tuple(sorted((k, str(v)) for k, v in labels.items())),
                   tuple(sorted((k, str(v)) for k, v in quota.items())))


_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
QUOTA_KEYS = (
    "requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "requests.ephemeral-storage",
    "limits.ephemeral-storage", "requests.storage", "persistentvolumeclaims", "pods", "services",
    "services.loadbalancers", "configmaps", "secrets", "requests.nvidia.com/gpu",
)


def workspace_settings_problems(labels: dict, quota: dict) -> list[str]:
    """What is wrong with a workspace's labels and quota, in words; empty when they can be rendered."""
    problems = []
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or len(key) > 253:
            problems.append(f'label key "{key}" is not a valid Kubernetes label key')
        elif key.startswith(("shipyard.dev/", "app.kubernetes.io/", "kubernetes.io/", "k8s.io/")):
            problems.append(f'label key "{key}" is reserved; Shipyard and Kubernetes set it')
        if not _LABEL_VALUE.match(str(value)):
            problems.append(f'label "{key}" has a value Kubernetes refuses: up to 63 letters, digits, "-", "_", "."')
    for key, value in quota.items():
        if key not in QUOTA_KEYS:
            problems.append(f'quota "{key}" is not one of {", ".join(QUOTA_KEYS)}')
        elif not _QUANTITY.match(str(value)):
            problems.append(f'quota "{key}" must be a Kubernetes quantity such as 8, 500m, 16Gi (got "{value}")')
    return problems


def render_namespace(profile: ClusterProfile, workspace: str, settings: WorkspaceSettings | None = None) -> dict:
    settings = settings or WorkspaceSettings()
    labels = {**dict(settings.labels), **common_labels(profile, workspace),
              "shipyard.dev/environment": settings.environment}
    context = {"namespace": workspace, "labels": labels}
    return render_template("common/namespace.yaml.j2", context, profile.kubernetes_version)


def render_quota(profile: ClusterProfile, workspace: str, settings: WorkspaceSettings | None) -> dict | None:
    """The workspace's ResourceQuota, or None when it has no quota."""
    if settings is None or not settings.quota:
        return None
    context = {"namespace": workspace, "labels": common_labels(profile, workspace), "hard": dict(settings.quota)}
    return render_template("common/resourcequota.yaml.j2", context, profile.kubernetes_version)


def render_bootstrap(profile: ClusterProfile, workspaces: list[str]) -> dict[str, dict]:
    """bootstrap/ objects by file name: the AppProject (only workspace namespaces), the root app,
    and, when the profile has an ``agent`` section, the agent's install under ``agent/`` (render_agent)."""
    labels = _bootstrap_labels(profile)
    destinations = [{"server": profile.destination_server, "namespace": ws} for ws in sorted(workspaces)]
    base = {"argocd": _argocd(profile), "git": _git(profile), "labels": labels}
    # The agent's Role in each workspace namespace comes from bootstrap/, not from an Application:
    # not an orphan to warn about.
    orphans_ignored = [
        {"group": "rbac.authorization.k8s.io", "kind": kind, "name": AGENT_NAME} for kind in ("Role", "RoleBinding")
    ] if profile.agent is not None else []
    return {
        "project.yaml": render_template(
            "argocd/appproject.yaml.j2", dict(base, destinations=destinations, orphans_ignored=orphans_ignored),
            profile.kubernetes_version,
        ),
        "root.yaml": render_template(
            "argocd/root.yaml.j2", dict(base, root_name=f"shipyard-{profile.name}"), profile.kubernetes_version
        ),
        **render_agent(profile, workspaces),
    }


def _bootstrap_labels(profile: ClusterProfile) -> dict:
    return {**MANAGED_BY, "shipyard.dev/cluster": profile.name}


# --- the agent ------------------------------------------------------------------------------

AGENT_NAME = "shipyard-agent"
AGENT_TOKEN_DIR = "/var/run/secrets/shipyard"
AGENT_METRICS_PORT = 9090
# The agent stays under 80 MB RSS following 10,000 Applications (benchmarks/agent_rss.py).
AGENT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
# GKE Autopilot sets limits to the requests: ask for what the agent may need.
AGENT_RESOURCES_AUTOPILOT = {"requests": {"cpu": "100m", "memory": "128Mi"},
                             "limits": {"cpu": "100m", "memory": "128Mi"}}


def agent_env(profile: ClusterProfile, workspaces: list[str]) -> list[dict]:
    """The agent's environment (agent/settings.py): who it is, where it reports, what it follows.

    SHIPYARD_NAMESPACES names the workspace namespaces exactly, so the agent watches each of
    them (agent.watch.targets) and the namespaced Roles suffice. With no workspace yet it names
    only the ArgoCD namespace, which the agent never follows workloads in: an allow list of no
    namespace (an empty one would mean every namespace, and cluster-wide watches).
    """
    agent = profile.agent
    namespaces = ",".join(sorted(workspaces)) or profile.argocd_namespace
    env = {
        "SHIPYARD_URL": agent.url,
        "SHIPYARD_TENANT": agent.tenant,
        "SHIPYARD_CLUSTER": profile.name,
        "SHIPYARD_AGENT_TOKEN_FILE": f"{AGENT_TOKEN_DIR}/token",
        "ARGOCD_NAMESPACE": profile.argocd_namespace,
        "SHIPYARD_NAMESPACES": namespaces,
        "SHIPYARD_METRICS_PORT": str(AGENT_METRICS_PORT),
    }
    return [{"name": name, "value": value} for name, value in env.items()]


def render_agent(profile: ClusterProfile, workspaces: list[str]) -> dict[str, dict]:
    """The agent's objects for bootstrap/agent/, by file name; none without the profile's ``agent``. Pure.

    Least privilege: a ClusterRole that only lists CRDs, a Role in the ArgoCD namespace and one
    in each workspace namespace (the rules and the code behind each verb are in
    templates/agent/). File names are numbered so that ``kubectl apply -R -f bootstrap/`` creates
    the Namespace and ServiceAccount before what needs them.
    """
    agent = profile.agent
    if agent is None:
        return {}
    if agent.namespace in workspaces:
        raise ProfileError([Problem(
            profile.source, 0, 0,
            f'agent.namespace "{agent.namespace}" of cluster "{profile.name}" is a workspace; '
            "give the agent a namespace of its own",
        )])
    version = profile.kubernetes_version
    labels = _bootstrap_labels(profile)
    selector = {"app.kubernetes.io/name": AGENT_NAME, **MANAGED_BY}
    agent_labels = {**selector, **labels}
    context = {"agent": {"name": AGENT_NAME, "namespace": agent.namespace, "image": agent.image,
                         "token_secret": agent.token_secret}, "labels": agent_labels}
    files = {
        "agent/00-namespace.yaml": render_template(
            "common/namespace.yaml.j2", {"namespace": agent.namespace, "labels": labels}, version),
        "agent/01-serviceaccount.yaml": render_template("agent/serviceaccount.yaml.j2", context, version),
    }
    if agent.token_ref is not None:
        store = profile.addon("external_secrets")
        files["agent/02-externalsecret.yaml"] = render_template("common/externalsecret.yaml.j2", {
            "app": {"namespace": agent.namespace, "labels": agent_labels},
            "secret_name": agent.token_secret,
            "store": store["store"],
            "refresh_interval": store.get("refresh_interval", "1h"),
            "secret_data": [{"secretKey": "token",
                             "remoteRef": {"key": agent.token_ref.path, "property": agent.token_ref.key}}],
        }, version)
    files["agent/10-clusterrole.yaml"] = render_template("agent/clusterrole.yaml.j2", context, version)
    files["agent/11-clusterrolebinding.yaml"] = render_template("agent/clusterrolebinding.yaml.j2", context, version)
    roles = [("agent/role-argocd.yaml.j2", profile.argocd_namespace)]
    roles += [("agent/role-workspace.yaml.j2", workspace) for workspace in sorted(workspaces)]
    for template, namespace in roles:
        scoped = dict(context, namespace=namespace)
        files[f"agent/20-role-{namespace}.yaml"] = render_template(template, scoped, version)
        files[f"agent/21-rolebinding-{namespace}.yaml"] = render_template("agent/rolebinding.yaml.j2", scoped, version)
    resources = AGENT_RESOURCES_AUTOPILOT if profile.flavor == "gke-autopilot" else AGENT_RESOURCES
    files["agent/30-deployment.yaml"] = render_template("agent/deployment.yaml.j2", dict(
        context, selector=selector, env=agent_env(profile, workspaces), resources=resources,
        metrics_port=AGENT_METRICS_PORT, token_dir=AGENT_TOKEN_DIR,
    ), version)
    return files


# --- the entry point --------------------------------------------------------------------


def reserved_namespaces(profile: ClusterProfile) -> set[str]:
    """Namespaces of the cluster's own machinery (ArgoCD, the gateway, the agent): never a workspace."""
    return {profile.argocd_namespace} | {
        profile.addon(router)["gateway"].split("/", 1)[0] for router in ("istio", "gateway_api") if profile.has(router)
    } | ({profile.agent.namespace} if profile.agent is not None else set())


def render(spec: Spec, profile: ClusterProfile) -> Rendering:
    """Render one spec for one cluster. Pure: spec + profile in, manifests out.

    Raises SpecError (located in the spec) when the cluster cannot run what the
    spec asks for, RenderError when a template produced an invalid object.
    """
    if spec.cluster != profile.name:
        raise SpecError([
            spec.problem(
                f'spec targets cluster "{spec.cluster}" but the cluster profile is "{profile.name}"; '
                "fix workspace_fqn or pick the matching --cluster",
                ("workspace_fqn",),
            )
        ])
    if spec.workspace in reserved_namespaces(profile):
        raise SpecError([
            spec.problem(
                f'workspace "{spec.workspace}" is a system namespace of cluster "{profile.name}" '
                "(ArgoCD, the gateway or the Shipyard agent); deploy into a workspace of its own",
                ("workspace_fqn",),
            )
        ])
    if spec.kind == "service":
        objects, ignore_differences, notes = render_service(spec, profile)
    else:
        objects, ignore_differences, notes = render_job(spec, profile)
    application = render_application(profile, spec.workspace, spec.name, ignore_differences)
    return Rendering(spec, profile, objects, application, notes)


def render_all(specs: list[Spec], profile: ClusterProfile) -> list[Rendering]:
    """Render many specs; SpecError carries the problems of all of them."""
    renderings, problems = [], []
    for spec in specs:
        try:
            renderings.append(render(spec, profile))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return renderings


__all__ = [
    "warm_up",
    "render",
    "reserved_namespaces",
    "render_quota",
    "WorkspaceSettings",
    "workspace_settings_problems",
    "render_all",
    "render_application",
    "render_namespace",
    "render_bootstrap",
    "render_agent",
    "agent_env",
    "Rendering",
    "application_name",
    "preview_service_name",
    "object_filename",
    "common_labels",
]
