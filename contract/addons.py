"""Cluster addons and their CRDs: what a profile may list, what the agent detects, what a rendering needs.

A cluster profile names the addons it runs (``addons:``); the agent reports
the ones it finds installed, by the CRDs each installs; the control plane
refuses a rendering whose custom resources have no CRD on the cluster. The
three read this one table. CRD names are ``<plural>.<group>`` as the projects
define them (Argo CD, Argo Rollouts, Argo Workflows, Istio, Gateway API, KEDA,
External Secrets, Prometheus Operator); the first CRD of each addon is the one
whose presence means the addon is installed.
"""

from __future__ import annotations

ARGOCD = "argocd"  # not an addon a profile lists: every cluster Shipyard deploys to runs it

ADDON_CRDS: dict[str, tuple[str, ...]] = {
    ARGOCD: ("applications.argoproj.io", "appprojects.argoproj.io"),
    "istio": ("virtualservices.networking.istio.io",),
    "gateway_api": ("httproutes.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io"),
    "argo_rollouts": ("rollouts.argoproj.io",),
    "argo_workflows": ("workflows.argoproj.io", "workflowtemplates.argoproj.io", "cronworkflows.argoproj.io"),
    "keda": ("scaledobjects.keda.sh",),
    "external_secrets": ("externalsecrets.external-secrets.io", "clustersecretstores.external-secrets.io",
                         "secretstores.external-secrets.io"),
    "prometheus_operator": ("servicemonitors.monitoring.coreos.com",),
}

# What a cluster profile's ``addons:`` may list.
PROFILE_ADDONS = tuple(addon for addon in ADDON_CRDS if addon != ARGOCD)

# The CRD of every custom kind Shipyard renders or creates, by (API group, kind).
CUSTOM_KIND_CRDS: dict[tuple[str, str], str] = {
    ("argoproj.io", "Application"): "applications.argoproj.io",
    ("argoproj.io", "AppProject"): "appprojects.argoproj.io",
    ("argoproj.io", "Rollout"): "rollouts.argoproj.io",
    ("argoproj.io", "Workflow"): "workflows.argoproj.io",
    ("argoproj.io", "WorkflowTemplate"): "workflowtemplates.argoproj.io",
    ("argoproj.io", "CronWorkflow"): "cronworkflows.argoproj.io",
    ("networking.istio.io", "VirtualService"): "virtualservices.networking.istio.io",
    ("gateway.networking.k8s.io", "HTTPRoute"): "httproutes.gateway.networking.k8s.io",
    ("keda.sh", "ScaledObject"): "scaledobjects.keda.sh",
    ("external-secrets.io", "ExternalSecret"): "externalsecrets.external-secrets.io",
    ("monitoring.coreos.com", "ServiceMonitor"): "servicemonitors.monitoring.coreos.com",
}


def is_custom(api_version: str) -> bool:
    """Whether objects of this apiVersion are custom resources (their group has a dot).

    Built-in groups carry none (``v1``, ``apps/v1``, ``batch/v1``), except the
    ``*.k8s.io`` groups Kubernetes itself serves; Gateway API's group is a CRD's.
    """
    group = api_version.rpartition("/")[0]
    if not group or "." not in group:
        return False
    return not group.endswith(".k8s.io") or group == "gateway.networking.k8s.io"


def crd_of(api_version: str, kind: str) -> str:
    """The CRD that serves a custom kind; KeyError for a kind this table does not know."""
    return CUSTOM_KIND_CRDS[(api_version.rpartition("/")[0], kind)]


def addons_installed(crds: set[str] | frozenset[str]) -> list[str]:
    """The addons (``argocd`` included) whose marking CRD is among ``crds``, sorted."""
    return sorted(addon for addon, names in ADDON_CRDS.items() if names[0] in crds)


__all__ = ["ARGOCD", "ADDON_CRDS", "PROFILE_ADDONS", "CUSTOM_KIND_CRDS", "is_custom", "crd_of", "addons_installed"]
