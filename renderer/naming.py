"""Names and labels of rendered objects: how Shipyard marks what it manages, and what it calls it.

These names are part of the cluster repository's contract (file names, the
``<workspace>.<app>`` Application) and of what the agent and the status
ingest match on (labels), so every renderer takes them from here.
"""

from __future__ import annotations

from renderer.profiles import ClusterProfile
from renderer.spec import Spec

MANAGED_BY = {"app.kubernetes.io/managed-by": "shipyard"}


def object_filename(obj: dict) -> str:
    """An object's file in its app's directory: ``<kind>-<name>.yaml``, one object per file."""
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


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


def app_context(spec: Spec, profile: ClusterProfile) -> dict:
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


__all__ = ["MANAGED_BY", "object_filename", "common_labels", "application_name", "preview_service_name", "app_context"]
