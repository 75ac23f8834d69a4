"""The files a change writes into a cluster repository, laid out as ``contract.repository`` says.

An app's directory and Application (``rendering_changes``), a workspace's own
files (``workspace_changes``), ``bootstrap/`` (``bootstrap_changes``, with the
agent's install numbered for ``kubectl apply -R``: 00 Namespace, 01
ServiceAccount, 02 ExternalSecret of the token, 10/11 ClusterRole and binding
to list CRDs, 20/21 a Role and binding per namespace it reads, 30 the
Deployment), and what a delete removes. Also what the repository says about
clashes: a Service name another app of the workspace already holds.

Every file holds canonical bytes (renderer.manifest_yaml.dump_manifest), so the same
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
from renderer.manifest_yaml import dump_manifest

from contract.repository import (AGENT_DIR, APPS_DIR, BOOTSTRAP_DIR, MANIFEST_SUFFIX, WORKSPACES_DIR, app_dir,
                                 application_file, namespace_file, object_filename, preview_owner, quota_file,
                                 workspace_application_file, workspace_dir)
from gitops.repo import DELETE, Changes, Directory, Snapshot

def workspaces_in(snapshot: Snapshot) -> list[str]:
    return [name for name in snapshot.list_dir(WORKSPACES_DIR)]


def apps_in(snapshot: Snapshot, workspace: str) -> list[str]:
    return [n[: -len(MANIFEST_SUFFIX)] for n in snapshot.list_dir(f"{APPS_DIR}/{workspace}") if n.endswith(MANIFEST_SUFFIX)]


def app_exists(snapshot: Snapshot, workspace: str, app: str) -> bool:
    return snapshot.tree_id(application_file(workspace, app)) is not None


def rendering_changes(rendering: Rendering) -> dict[str, object]:
    """What one rendered app writes: its directory and its Application."""
    return {
        app_dir(rendering.workspace, rendering.name): Directory(rendering.files),
        application_file(rendering.workspace, rendering.name): rendering.application_bytes,
    }


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
        owners = {name, preview_owner(name)} - {None}
        owners.discard(rendering.name)
        for owner in sorted(owners):
            if owner in batch:
                taken = name in batch[owner]
            else:
                taken = snapshot.tree_id(f"{app_dir(rendering.workspace, owner)}/{object_filename('Service', name)}") is not None
            if taken:
                clashes.append(name)
    return clashes


def delete_workspace_changes(workspace: str) -> Changes:
    return {workspace_dir(workspace): DELETE, f"{APPS_DIR}/{workspace}": DELETE,
            workspace_application_file(workspace): DELETE}


def delete_app_changes(workspace: str, app: str) -> Changes:
    return {app_dir(workspace, app): DELETE, application_file(workspace, app): DELETE}


__all__ = [
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
