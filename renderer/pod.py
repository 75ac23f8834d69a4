"""The pod template services and jobs share: container, env and secrets, probes, ports, placement, files.

Also what both kinds may need beside their workload (a ServiceAccount, an
ExternalSecret), and ``SpecProblems``, which collects what the cluster cannot
run so a spec's renderer reports every problem at once.
"""

from __future__ import annotations

from typing import Any

from contract.errors import Problem, SpecError
from renderer.artifacts import plan_artifacts
from renderer.flavors import PlacementError, place
from renderer.mounts import plan_mounts
from renderer.naming import app_context
from renderer.profiles import ClusterProfile
from renderer.secret_refs import UnmappableSecretRef, remote_ref
from renderer.spec import Spec, parse_secret_ref, port_exposed


class SpecProblems:
    """Collects spec problems found while rendering, to raise them all at once."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.items: list[Problem] = []

    def add(self, message: str, *path: Any) -> None:
        self.items.append(self.spec.problem(message, path))

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def _env(spec: Spec, profile: ClusterProfile, problems: SpecProblems, secret_name: str) -> tuple[list[dict], list[dict]]:
    """Container env entries and the ExternalSecret data entries they need.

    Each secret reference is named as the cluster's store names secrets (renderer.secret_refs);
    one the store cannot name is a problem at its env entry, never a remoteRef that reads nothing.
    """
    env, secret_data = [], []
    for name, value in (spec.body.get("env") or {}).items():
        ref = parse_secret_ref(value)
        if ref is not None:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}})
            try:
                secret_data.append({"secretKey": name, "remoteRef": remote_ref(ref, profile)})
            except UnmappableSecretRef as exc:
                problems.add(f'env "{name}": {exc}', "env", name)
        else:
            env.append({"name": name, "value": env_text(value)})
    secret_data.sort(key=lambda item: item["secretKey"])
    return env, secret_data


def env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _command(image: dict, substitute=None) -> list[str] | None:
    """The container's command: a string runs under ``/bin/sh -c``, a list as it is. ``substitute(text,
    shell)`` puts job params in; ``shell`` says whether the text is read by the shell."""
    command = image.get("command")
    if command is None:
        return None
    if isinstance(command, str):
        return ["/bin/sh", "-c", substitute(command, True) if substitute else command]
    return [substitute(part, False) for part in command] if substitute else list(command)


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
        if config.get("host"):
            # TrueFoundry's HttpProbe.host names the host; Kubernetes' HTTPGetAction: 'host: Host name to connect
            # to, defaults to the pod IP. You probably want to set "Host" in httpHeaders instead.' The container
            # is still what is probed; the app sees the host it routes on.
            action["httpGet"]["httpHeaders"] = [{"name": "Host", "value": config["host"]}]
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


def app_protocol(port: dict) -> str:
    """The port's protocol as Istio reads a Service port (name prefix and appProtocol, Istio's "Protocol
    Selection"): a UDP port is ``udp`` whatever app_protocol says (Istio does not proxy UDP, and an
    HTTP name would declare it HTTP); otherwise app_protocol, http by default as in TrueFoundry."""
    return "udp" if port.get("protocol") == "UDP" else port.get("app_protocol", "http")


def _port_name(port: dict) -> str:
    return f"{app_protocol(port)}-{port['port']}"


def pod_context(spec: Spec, profile: ClusterProfile, problems: SpecProblems, notes: list[str], substitute=None) -> tuple[dict, list[dict]]:
    """The pod context (container included) and the ExternalSecret data it needs."""
    body = spec.body
    secret_name = f"{spec.name}-secrets"
    env, secret_data = _env(spec, profile, problems, secret_name)
    if secret_data and not profile.has("external_secrets"):
        first = next(n for n, v in body["env"].items() if parse_secret_ref(v))
        problems.add(
            f'cluster "{profile.name}" has no external_secrets addon, which secret references need',
            "env", first,
        )
    try:
        placement = place(body.get("resources"), profile.flavor, profile.kubernetes_version, profile.name)
    except PlacementError as exc:
        problems.add(str(exc), *exc.path)
        placement = place({}, profile.flavor, profile.kubernetes_version)
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
        "volume_mounts": [],
    }
    pod = {
        "service_account": body.get("service_account") or spec.name,
        "image_pull_secrets": [{"name": image["docker_registry"]}] if image.get("docker_registry") else [],
        "node_selector": dict(sorted(placement.node_selector.items())),
        "affinity": placement.affinity,
        "tolerations": placement.tolerations,
        "annotations": annotations,
        "volumes": [],
        "init_containers": [],
        "container": container,
        "objects": [],  # (template, context) of what the pod's volumes need: ConfigMap, PersistentVolumeClaim
    }
    secret_data = _add_files_and_artifacts(spec, profile, problems, notes, pod, secret_data)
    container["env"].extend(_platform_env(spec, container["env"], notes))
    notes.extend(_platform_notes(spec))
    # /dev/shm for resources.shared_memory_size (renderer.flavors), after the spec's own volumes
    pod["volumes"].extend(placement.volumes)
    container["volume_mounts"].extend(placement.volume_mounts)
    return pod, secret_data


def _add_files_and_artifacts(spec: Spec, profile: ClusterProfile, problems: SpecProblems, notes: list[str],
                             pod: dict, secret_data: list[dict]) -> list[dict]:
    """Puts the spec's mounts (renderer.mounts) and artifacts (renderer.artifacts) into the pod; returns
    the ExternalSecret data with the entries of its secret files."""
    container = pod["container"]
    app = app_context(spec, profile)

    def secret_entry(key: str, secret_fqn: str) -> dict | str:
        try:
            return {"secretKey": key, "remoteRef": remote_ref(parse_secret_ref(secret_fqn), profile)}
        except UnmappableSecretRef as exc:
            return f"secret_fqn: {exc}"

    mounts = plan_mounts(spec, app, secret_entry, problems)
    if mounts.secret_data and not profile.has("external_secrets"):
        first = next(i for i, m in enumerate(spec.body["mounts"]) if m["type"] == "secret")
        problems.add(f'cluster "{profile.name}" has no external_secrets addon, which secret mounts need',
                     "mounts", first, "secret_fqn")
    artifacts = plan_artifacts(spec, profile, app, container)
    pod["volumes"].extend([*mounts.volumes, *artifacts.volumes])
    container["volume_mounts"].extend([*mounts.volume_mounts, *artifacts.volume_mounts])
    container["env"].extend(artifacts.env)
    pod["init_containers"].extend(artifacts.init_containers)
    pod["objects"].extend([*mounts.objects, *artifacts.objects])
    notes.extend(artifacts.notes)
    return sorted([*secret_data, *mounts.secret_data], key=lambda item: item["secretKey"])


# TrueFoundry sets it to the path a service is served under (its FastAPI examples pass it as root_path), and
# published commands use it as $(TFY_SERVICE_ROOT_PATH): Kubernetes expands $(VAR) in command and args only
# from the container's env, and leaves an undefined one as written ("Define Dependent Environment Variables").
ROOT_PATH_VARIABLE = "TFY_SERVICE_ROOT_PATH"


def _platform_env(spec: Spec, env: list[dict], notes: list[str]) -> list[dict]:
    """The variables TrueFoundry gives a service that its specs rely on, where the spec does not set them."""
    if spec.kind != "service" or any(entry["name"] == ROOT_PATH_VARIABLE for entry in env):
        return []
    paths = [port["path"] for port in spec.body.get("ports") or [] if port.get("path") and port_exposed(port)]
    command = spec.body["image"].get("command") or ""
    command_text = command if isinstance(command, str) else " ".join(command)
    if not paths and f"$({ROOT_PATH_VARIABLE})" not in command_text:
        return []
    if len(set(paths)) > 1:
        notes.append(f"{ROOT_PATH_VARIABLE} is {paths[0]}, the path of the first exposed port that has one; the "
                     "other ports are served under other paths")
    # "/api/" is served as /api, the form ASGI's root_path takes; a service at "/" has an empty root path
    return [{"name": ROOT_PATH_VARIABLE, "value": paths[0].rstrip("/") if paths else ""}]


# TrueFoundry's labels that its own control plane acts on (its docs: "Sticky Routing", the model server and
# OpenAPI views of its UI); applied as Kubernetes labels here, where nothing reads them.
_TRUEFOUNDRY_LABELS = {
    "tfy_sticky_session_header_name": "TrueFoundry routes requests with the same value of that header to the same "
                                      "pod; this cluster's routes balance them as any other request",
    "tfy_openapi_path": "TrueFoundry's UI shows the service's OpenAPI document from that path",
    "tfy_model_server": "TrueFoundry's UI shows which model server the service runs",
}


def _platform_notes(spec: Spec) -> list[str]:
    """What TrueFoundry fields a spec sets that have no effect on a Shipyard cluster, and why."""
    body = spec.body
    notes = []
    if body.get("allow_interception"):
        notes.append("allow_interception has no effect: TrueFoundry's intercepts inject a sidecar of its own, "
                     "which Shipyard does not")
    if "auto_shutdown" in body:
        notes.append("auto_shutdown has no effect: nothing on this cluster holds a request while a stopped service "
                     "starts, so it keeps its replicas; scale to zero with replicas.min_replicas 0 and a cron metric")
    for label, effect in _TRUEFOUNDRY_LABELS.items():
        if label in (body.get("labels") or {}):
            notes.append(f"label {label} is applied, but has no effect of its own here: {effect}")
    return notes


def common_objects(spec: Spec, profile: ClusterProfile, app: dict, secret_data: list[dict]) -> list[tuple[str, dict]]:
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
                "addon_api": profile.addon_api,
            },
        ))
    return out


__all__ = ["SpecProblems", "pod_context", "common_objects", "env_text", "app_protocol"]
