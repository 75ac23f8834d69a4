"""Cluster addons and their CRDs: what a profile may list, what the agent detects, what a rendering needs.

A cluster profile names the addons it runs (``addons:``); the agent reports
the ones it finds installed, by the CRDs each installs; the control plane
refuses a rendering whose custom resources have no CRD on the cluster. The
three read this one table. CRD names are ``<plural>.<group>`` as the projects
define them (Argo CD, Argo Rollouts, Argo Workflows, Istio, Gateway API, KEDA,
External Secrets, Prometheus Operator); the first CRD of each addon is the one
whose presence means the addon is installed.

Addons change between releases, and so does what Shipyard may render for
them. ``RELEASE_CHANGES`` lists each release that changes a rendered object
(a profile's ``addons.<name>.version`` picks the side; a profile naming no
release gets the current release line), ``OLDEST_RELEASES`` the oldest release
Shipyard renders for at all. The agent reports what a cluster tells of its
addons' versions (``addon_versions``): the API versions the groups of their
CRDs serve, and the release their CRDs are labelled with where a project's
manifests say it (``RELEASE_KEYS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

ARGOCD = "argocd"  # not an addon a profile lists: every cluster Shipyard deploys to runs it

ADDON_CRDS: dict[str, tuple[str, ...]] = {
    ARGOCD: ("applications.argoproj.io", "appprojects.argoproj.io"),
    "istio": ("virtualservices.networking.istio.io", "requestauthentications.security.istio.io",
              "authorizationpolicies.security.istio.io"),
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
    ("security.istio.io", "RequestAuthentication"): "requestauthentications.security.istio.io",
    ("security.istio.io", "AuthorizationPolicy"): "authorizationpolicies.security.istio.io",
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


def addon_of_crd(crd: str) -> str | None:
    """The addon that installs a CRD (the first listing it), or None."""
    return next((addon for addon, names in ADDON_CRDS.items() if crd in names), None)


def addon_groups(addon: str) -> list[str]:
    """The API groups of an addon's CRDs, sorted."""
    return sorted({crd.split(".", 1)[1] for crd in ADDON_CRDS[addon]})


# --- releases ----------------------------------------------------------------------------------

# The projects' own names, for messages.
ADDON_PROJECTS: dict[str, str] = {
    ARGOCD: "Argo CD",
    "istio": "Istio",
    "gateway_api": "Gateway API",
    "argo_rollouts": "Argo Rollouts",
    "argo_workflows": "Argo Workflows",
    "keda": "KEDA",
    "external_secrets": "External Secrets Operator",
    "prometheus_operator": "Prometheus Operator",
}

Release = tuple[int, ...]  # (major, minor) or (major, minor, patch)

_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_release(text: object) -> Release | None:
    """A release as projects write it ("3.6", "v1.2.1", "2.8.0-rc1") as numbers; None when it is not one."""
    match = _RELEASE.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def release_text(release: Release) -> str:
    return ".".join(str(part) for part in release)


@dataclass(frozen=True)
class ReleaseChange:
    """A release of an addon that changes what Shipyard renders for one custom kind."""

    name: str  # what templates read it by (ClusterProfile.addon_api)
    addon: str
    release: Release  # the first release with the change
    kind: str
    before: str  # what is rendered for older releases: an apiVersion, or a field's name
    after: str  # what is rendered from ``release`` on, and for a profile that names no release
    source: str  # where upstream says so


RELEASE_CHANGES: tuple[ReleaseChange, ...] = (
    ReleaseChange("cronworkflow_schedule_field", "argo_workflows", (3, 6), "CronWorkflow", "schedule", "schedules",
                  "Argo Workflows, Upgrading to v3.6: `schedule` in CronWorkflows is deprecated for `schedules`"),
    # v1 ships in 0.16 beside v1beta1 (both served, stored as v1); 0.17.0 stops serving v1beta1
    ReleaseChange("externalsecret_api_version", "external_secrets", (0, 16), "ExternalSecret",
                  "external-secrets.io/v1beta1", "external-secrets.io/v1",
                  "External Secrets Operator v0.17.0 release notes: stops serving v1beta1; update to v1 on v0.16"),
)


@dataclass(frozen=True)
class OldestRelease:
    """The oldest release of an addon Shipyard renders for, and why no older one."""

    release: Release
    why: str  # what Shipyard renders that older releases lack
    source: str  # where upstream says so


OLDEST_RELEASES: dict[str, OldestRelease] = {
    "argo_workflows": OldestRelease(
        (3, 3), "from 3.3 the executor records a step's outputs as a WorkflowTaskResult, which is what the executor "
                "Role Shipyard renders allows", "Argo Workflows, Upgrading to v3.3"),
    "external_secrets": OldestRelease(
        (0, 5), "ExternalSecret external-secrets.io/v1beta1 exists from 0.5",
        "External Secrets Operator v0.5.0 release"),
    "istio": OldestRelease(
        (1, 22), "Shipyard renders networking.istio.io/v1 VirtualServices, which Istio serves from 1.22",
        "Istio blog, Introducing Istio v1 APIs"),
    "gateway_api": OldestRelease(
        (1, 0), "Shipyard renders gateway.networking.k8s.io/v1 HTTPRoutes, which Gateway API has from v1.0",
        "Gateway API v1.0.0 release notes"),
    "keda": OldestRelease(
        (2, 7), "Shipyard renders the cpu trigger's metricType, which KEDA reads from 2.7",
        "KEDA changelog v2.7.0: metadata.type is deprecated in favor of the global metricType"),
    "prometheus_operator": OldestRelease(
        (0, 12), "ServiceMonitor monitoring.coreos.com/v1 exists from 0.12", "Prometheus Operator changelog 0.12.0"),
}

# Labels and annotations by which a project's manifests name the release of the CRDs they install:
# the Kubernetes recommended label (KEDA's release manifests and charts set it), Gateway API's
# bundle version ("CRD definitions ... all contain ... gateway.networking.k8s.io/bundle-version"),
# and the Prometheus Operator's (its release script stamps every CRD). Argo's CRDs and the External
# Secrets chart's carry none; their API versions are what the cluster tells of them.
RELEASE_KEYS = ("app.kubernetes.io/version", "gateway.networking.k8s.io/bundle-version",
                "operator.prometheus.io/version")
MAX_RELEASE_LENGTH = 64


def addon_versions(crds: Mapping[str, Mapping[str, str]],
                   served: Mapping[str, list[str]] | None) -> dict[str, dict[str, object]]:
    """What a cluster tells of the versions of each addon installed (its marking CRD among ``crds``).

    ``crds`` maps each CRD's name to the ``RELEASE_KEYS`` its labels or annotations carry;
    ``served`` each API group to the versions the API server serves (discovery), None when it
    could not be read. Per addon: ``api_versions``, the "<group>/<version>" its CRDs' groups
    serve (left out when ``served`` is None), and ``release``, where its marking CRD names one.
    """
    report: dict[str, dict[str, object]] = {}
    for addon in addons_installed(frozenset(crds)):
        entry: dict[str, object] = {}
        if served is not None:
            entry["api_versions"] = sorted(f"{group}/{version}" for group in addon_groups(addon)
                                           for version in served.get(group, ()))
        keys = crds[ADDON_CRDS[addon][0]]
        release = next((keys[key] for key in RELEASE_KEYS if keys.get(key)), None)
        if release:
            entry["release"] = release[:MAX_RELEASE_LENGTH]
        report[addon] = entry
    return report


__all__ = ["ARGOCD", "ADDON_CRDS", "PROFILE_ADDONS", "CUSTOM_KIND_CRDS", "is_custom", "crd_of", "addons_installed",
           "addon_of_crd", "addon_groups", "ADDON_PROJECTS", "Release", "parse_release", "release_text",
           "ReleaseChange", "RELEASE_CHANGES", "OldestRelease", "OLDEST_RELEASES", "RELEASE_KEYS",
           "MAX_RELEASE_LENGTH", "addon_versions"]
