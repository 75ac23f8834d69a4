"""The layout of a cluster repository: the public contract with ArgoCD.

::

    bootstrap/project.yaml          AppProject: only workspace namespaces as destinations
    bootstrap/root.yaml             root Application (app-of-apps over apps/), applied once
    bootstrap/agent/                the agent's install, when the profile has an ``agent`` section
                                    (renderer.render.render_agent), numbered for kubectl apply -R:
      00-namespace.yaml             its Namespace
      01-serviceaccount.yaml        its ServiceAccount
      02-externalsecret.yaml        the token Secret from agent.token_ref (External Secrets)
      10-clusterrole.yaml           list CRDs, nothing else cluster-wide
      11-clusterrolebinding.yaml
      20-role-<ns>.yaml             a Role in the ArgoCD namespace and in each workspace namespace
      21-rolebinding-<ns>.yaml
      30-deployment.yaml            the agent: one replica, Recreate, token from the Secret as a file
    apps/<ws>.yaml                  Application of the workspace (its namespace)
    apps/<ws>/<app>.yaml            Application of one app -> workspaces/<ws>/<app>
    workspaces/<ws>/namespace.yaml  the workspace's Namespace (labels: environment and its own)
    workspaces/<ws>/quota.yaml      its ResourceQuota, when the workspace has a quota
    workspaces/<ws>/<app>/*.yaml    the app's manifests, one object per file

Every file holds canonical bytes (renderer.yamlio.dump_manifest), so the same
input always gives the same tree and an unchanged deploy makes no commit.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict

from renderer.profiles import ClusterProfile
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.render import (
    Rendering,
    WorkspaceSettings,
    render_application,
    render_bootstrap,
    render_namespace,
    render_quota,
)
from renderer.yamlio import dump_manifest

from gitops.repo import DELETE, Changes, Directory, Snapshot

BOOTSTRAP_DIR = "bootstrap"
AGENT_DIR = f"{BOOTSTRAP_DIR}/agent"
APPS_DIR = "apps"
WORKSPACES_DIR = "workspaces"


def app_dir(workspace: str, app: str) -> str:
    return f"{WORKSPACES_DIR}/{workspace}/{app}"


def application_file(workspace: str, app: str) -> str:
    return f"{APPS_DIR}/{workspace}/{app}.yaml"


def workspace_application_file(workspace: str) -> str:
    return f"{APPS_DIR}/{workspace}.yaml"


def namespace_file(workspace: str) -> str:
    return f"{WORKSPACES_DIR}/{workspace}/namespace.yaml"


def workspaces_in(snapshot: Snapshot) -> list[str]:
    return [name for name in snapshot.list_dir(WORKSPACES_DIR)]


def apps_in(snapshot: Snapshot, workspace: str) -> list[str]:
    return [n[:-5] for n in snapshot.list_dir(f"{APPS_DIR}/{workspace}") if n.endswith(".yaml")]


def app_exists(snapshot: Snapshot, workspace: str, app: str) -> bool:
    return snapshot.tree_id(application_file(workspace, app)) is not None


def rendering_changes(rendering: Rendering) -> dict[str, object]:
    """What one rendered app writes: its directory and its Application."""
    return {
        app_dir(rendering.workspace, rendering.name): Directory(rendering.files),
        application_file(rendering.workspace, rendering.name): rendering.application_bytes,
    }


def quota_file(workspace: str) -> str:
    return f"{WORKSPACES_DIR}/{workspace}/quota.yaml"


def workspace_changes(profile: ClusterProfile, workspace: str, settings: WorkspaceSettings | None = None,
                      schemas: KubeSchemas = CORE_ONLY) -> dict[str, object]:
    """The workspace's own files: Namespace, ResourceQuota (removed when it has none), Application."""
    def make():
        quota = render_quota(profile, workspace, settings, schemas)
        return {
            namespace_file(workspace): dump_manifest(render_namespace(profile, workspace, settings, schemas)),
            quota_file(workspace): dump_manifest(quota) if quota is not None else DELETE,
            workspace_application_file(workspace): dump_manifest(
                render_application(profile, workspace, None, schemas=schemas)),
        }

    return dict(_cached(("workspace", _profile_key(profile), workspace, settings, schemas.crd_dir), make))


def bootstrap_changes(profile: ClusterProfile, workspaces: list[str],
                      schemas: KubeSchemas = CORE_ONLY) -> dict[str, object]:
    """The bootstrap files; rendered once per profile and set of workspaces, not per deploy.

    The agent's directory is written whole: the Role of a removed workspace goes with it, and
    the whole directory when the profile no longer has an agent.
    """
    def make():
        objects = render_bootstrap(profile, workspaces, schemas)
        files = {f"{BOOTSTRAP_DIR}/{name}": dump_manifest(obj) for name, obj in objects.items()}
        prefix = f"{AGENT_DIR}/"
        changes: dict[str, object] = {path: data for path, data in files.items() if not path.startswith(prefix)}
        agent = {path[len(prefix):]: data for path, data in files.items() if path.startswith(prefix)}
        changes[AGENT_DIR] = Directory(agent) if agent else DELETE
        return changes

    return dict(_cached(("bootstrap", _profile_key(profile), tuple(workspaces), schemas.crd_dir), make))


_CACHE: OrderedDict[tuple, dict[str, object]] = OrderedDict()
_CACHE_SIZE = 1024
_CACHE_LOCK = threading.Lock()


def _profile_key(profile: ClusterProfile) -> str:
    return json.dumps(dataclasses.asdict(profile), sort_keys=True, default=str)


def _cached(key: tuple, make) -> dict[str, object]:
    """Rendered files by key (the profile's full content is part of every key)."""
    with _CACHE_LOCK:
        value = _CACHE.get(key)
        if value is not None:
            _CACHE.move_to_end(key)
            return value
    value = make()
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def service_names(rendering: Rendering) -> list[str]:
    return [obj["metadata"]["name"] for obj in rendering.objects if obj["kind"] == "Service"]


def service_clashes(snapshot: Snapshot, rendering: Rendering, batch: dict[str, list[str]]) -> list[str]:
    """Names of Services this app would share with another app of its workspace.

    ``batch`` maps the apps of the same workspace being applied in the same
    commit to their Service names; for all other apps the repository decides. Only a blue-green preview Service (``<app>-preview``) is named
    after something other than its own app, so two lookups per Service suffice.
    """
    clashes = []
    for name in service_names(rendering):
        owners = {name}
        if name.endswith("-preview"):
            owners.add(name[: -len("-preview")])
        owners.discard(rendering.name)
        for owner in sorted(owners):
            if owner in batch:
                taken = name in batch[owner]
            else:
                taken = snapshot.tree_id(f"{app_dir(rendering.workspace, owner)}/service-{name}.yaml") is not None
            if taken:
                clashes.append(name)
    return clashes


def delete_workspace_changes(workspace: str) -> Changes:
    return {f"{WORKSPACES_DIR}/{workspace}": DELETE, f"{APPS_DIR}/{workspace}": DELETE,
            workspace_application_file(workspace): DELETE}


def delete_app_changes(workspace: str, app: str) -> Changes:
    return {app_dir(workspace, app): DELETE, application_file(workspace, app): DELETE}


__all__ = [
    "app_dir",
    "application_file",
    "workspace_application_file",
    "namespace_file",
    "quota_file",
    "workspaces_in",
    "apps_in",
    "app_exists",
    "rendering_changes",
    "workspace_changes",
    "bootstrap_changes",
    "delete_app_changes",
    "delete_workspace_changes",
    "service_clashes",
    "service_names",
]
