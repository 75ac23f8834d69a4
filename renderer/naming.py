"""Names and labels of rendered objects: how Shipyard marks what it manages, and what it calls it.

The names and labels themselves are the contract (``contract.repository``,
``contract.labels``); this module applies them to a spec and a profile, and
every renderer takes them from here.
"""

from __future__ import annotations

from contract.labels import (APP_LABEL, CLUSTER_LABEL, MANAGED_BY, NAME_LABEL, SPEC_DIGEST_ANNOTATION,
                             WORKSPACE_LABEL)
from contract.repository import object_filename as _filename
from renderer.profiles import ClusterProfile
from renderer.spec import Spec


def object_filename(obj: dict) -> str:
    """An object's file in its app's directory: ``<kind>-<name>.yaml``, one object per file."""
    return _filename(obj["kind"], obj["metadata"]["name"])


def common_labels(profile: ClusterProfile, workspace: str, app: str | None = None) -> dict:
    labels = {
        **MANAGED_BY,
        CLUSTER_LABEL: profile.name,
        WORKSPACE_LABEL: workspace,
    }
    if app:
        labels = {NAME_LABEL: app, **labels, APP_LABEL: app}
    return labels


def app_context(spec: Spec, profile: ClusterProfile) -> dict:
    labels = common_labels(profile, spec.workspace, spec.name)
    user = spec.body.get("labels") or {}
    labels.update({k: user[k] for k in sorted(user)})
    return {
        "name": spec.name,
        "namespace": spec.workspace,
        "labels": labels,
        "selector": {NAME_LABEL: spec.name, **MANAGED_BY},
        "annotations": {SPEC_DIGEST_ANNOTATION: spec.digest},
    }


__all__ = ["object_filename", "common_labels", "app_context"]
