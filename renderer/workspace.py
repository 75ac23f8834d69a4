"""A workspace's own objects: its Namespace (labels, environment) and its ResourceQuota.

``workspace_settings_problems`` checks labels and quota in words before they
are stored, so a workspace that was accepted always renders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contract.labels import ENVIRONMENT_LABEL, KUBERNETES_PREFIXES, RESERVED_PREFIXES
from renderer.engine import render_template
from renderer.flavors import EXTENDED_RESOURCES
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.naming import common_labels
from renderer.profiles import ClusterProfile


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
    # the other accelerators renderer.flavors requests; an extended resource is capped by requests only
    # (Kubernetes "Resource Quotas", resource quota for extended resources)
    *(f"requests.{resource}" for resource in EXTENDED_RESOURCES),
)


def workspace_settings_problems(labels: dict, quota: dict) -> list[str]:
    """What is wrong with a workspace's labels and quota, in words; empty when they can be rendered."""
    problems = []
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or len(key) > 253:
            problems.append(f'label key "{key}" is not a valid Kubernetes label key')
        elif key.startswith(RESERVED_PREFIXES + KUBERNETES_PREFIXES):
            problems.append(f'label key "{key}" is reserved; Shipyard and Kubernetes set it')
        if not _LABEL_VALUE.match(str(value)):
            problems.append(f'label "{key}" has a value Kubernetes refuses: up to 63 letters, digits, "-", "_", "."')
    for key, value in quota.items():
        if key not in QUOTA_KEYS:
            problems.append(f'quota "{key}" is not one of {", ".join(QUOTA_KEYS)}')
        elif not _QUANTITY.match(str(value)):
            problems.append(f'quota "{key}" must be a Kubernetes quantity such as 8, 500m, 16Gi (got "{value}")')
    return problems


def render_namespace(profile: ClusterProfile, workspace: str, settings: WorkspaceSettings | None = None,
                     schemas: KubeSchemas = CORE_ONLY) -> dict:
    settings = settings or WorkspaceSettings()
    labels = {**dict(settings.labels), **common_labels(profile, workspace),
              ENVIRONMENT_LABEL: settings.environment}
    context = {"namespace": workspace, "labels": labels}
    return render_template("common/namespace.yaml.j2", context, profile.kubernetes_version, schemas)


def render_quota(profile: ClusterProfile, workspace: str, settings: WorkspaceSettings | None,
                 schemas: KubeSchemas = CORE_ONLY) -> dict | None:
    """The workspace's ResourceQuota, or None when it has no quota."""
    if settings is None or not settings.quota:
        return None
    context = {"namespace": workspace, "labels": common_labels(profile, workspace), "hard": dict(settings.quota)}
    return render_template("common/resourcequota.yaml.j2", context, profile.kubernetes_version, schemas)


__all__ = ["WorkspaceSettings", "QUOTA_KEYS", "workspace_settings_problems", "render_namespace", "render_quota"]
