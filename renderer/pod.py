"""The pod template services and jobs share: container, env and secrets, probes, ports, placement.

Also what both kinds may need beside their workload (a ServiceAccount, an
ExternalSecret), and ``SpecProblems``, which collects what the cluster cannot
run so a spec's renderer reports every problem at once.
"""

from __future__ import annotations

from typing import Any

from contract.errors import Problem, SpecError
from renderer.flavors import PlacementError, place
from renderer.profiles import ClusterProfile
from renderer.spec import Spec, parse_secret_ref


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


def _env(spec: Spec, secret_name: str) -> tuple[list[dict], list[dict]]:
    """Container env entries and the ExternalSecret data entries they need."""
    env, secret_data = [], []
    for name, value in (spec.body.get("env") or {}).items():
        ref = parse_secret_ref(value)
        if ref is not None:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}})
            secret_data.append({"secretKey": name, "remoteRef": {"key": ref.path, "property": ref.key}})
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
    env, secret_data = _env(spec, secret_name)
    if secret_data and not profile.has("external_secrets"):
        first = next(n for n, v in body["env"].items() if parse_secret_ref(v))
        problems.add(
            f'cluster "{profile.name}" has no external_secrets addon, which secret references need',
            "env", first,
        )
    try:
        placement = place(body.get("resources"), profile.flavor, profile.kubernetes_version)
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
            },
        ))
    return out


__all__ = ["SpecProblems", "pod_context", "common_objects", "env_text", "app_protocol"]
