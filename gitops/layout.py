"""The files a change writes into a cluster repository, laid out as ``contract.repository`` says.

An app's directory and Application (``rendering_changes``), a workspace's own
files (``workspace_changes``), ``bootstrap/`` and the agent's access to every
workspace (``bootstrap_changes``; the agent's install numbered for ``kubectl
apply -R``: 00 Namespace, 01 ServiceAccount, 02 ExternalSecret of the token,
10/11 ClusterRole and binding to list CRDs, 20/21 its Role and binding in
ArgoCD's namespace, 30 the Deployment), and what a delete removes. Also what
the repository says about clashes: a Service name another app of the
workspace already holds (a route another app of the cluster takes is
gitops.routes', which reads the apps' routes with ``apps_in``).

Every file holds canonical bytes (renderer.manifest_yaml.dump_manifest), so the same
input always gives the same tree and an unchanged deploy makes no commit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from renderer.profiles import ClusterProfile
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.render import (
    Rendering,
    WorkspaceSettings,
    render_application,
    render_bootstrap,
    render_namespace,
    render_quota,
    render_workspace_agent_access,
)
from renderer.manifest_yaml import dump_manifest

from contract.repository import (APPS_DIR, BOOTSTRAP_DIR, MANIFEST_SUFFIX, WORKSPACES_DIR, agent_role_file,
                                 agent_rolebinding_file, app_dir, application_file, namespace_file, object_filename,
                                 quota_file, workspace_application_file, workspace_dir)
from gitops.memo import Memo
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

    return dict(_CACHE.get(("workspace", _profile_key(profile), workspace, settings, schemas.crd_dir), make))


def bootstrap_changes(profile: ClusterProfile, workspaces: list[str], schemas: KubeSchemas = CORE_ONLY,
                      base: Snapshot | None = None, touched: Iterable[str] = ()) -> dict[str, object]:
    """The bootstrap, and the agent's Role and RoleBinding in each workspace's directory; rendered
    once per profile and set of workspaces, not per deploy.

    bootstrap/ is written whole: what the profile no longer renders goes (the agent's files, its
    AppProject and Application when the profile drops its ``agent`` section), and the root
    Application, which syncs the directory, has ArgoCD prune it. The agent's access is rewritten
    in every workspace, so a changed profile reaches all of them with the next commit, and
    removed from each when there is no agent. Given the ``base`` the commit is built on, a
    workspace that is not ``touched`` gets its access files only when they would change: when
    bootstrap/ or one workspace's files differ from what base holds (a changed profile, or a new
    Shipyard), all are written; otherwise only new and touched workspaces are, so a deploy into a
    cluster of many workspaces does not rebuild every workspace's tree.
    """
    def make():
        objects = render_bootstrap(profile, workspaces, schemas)
        changes: dict[str, object] = {
            BOOTSTRAP_DIR: Directory({name: dump_manifest(obj) for name, obj in objects.items()})}
        for workspace in workspaces:
            access = render_workspace_agent_access(profile, workspace, schemas)
            role, binding = (dump_manifest(obj) for obj in access) if access else (DELETE, DELETE)
            changes[agent_role_file(workspace)] = role
            changes[agent_rolebinding_file(workspace)] = binding
        return changes

    changes = dict(_CACHE.get(("bootstrap", _profile_key(profile), tuple(workspaces), schemas.crd_dir), make))
    if base is None:
        return changes
    touched = set(touched)
    existing = set(workspaces_in(base))
    settled = [w for w in workspaces if w in existing and w not in touched]
    if not settled or not _as_in(base, changes, settled[0]):
        return changes
    for workspace in settled:
        del changes[agent_role_file(workspace)], changes[agent_rolebinding_file(workspace)]
    return changes


def _as_in(base: Snapshot, changes: dict[str, object], workspace: str) -> bool:
    """Whether ``base`` already holds the bootstrap of ``changes`` and ``workspace``'s access files as they are:
    every workspace's are rendered from the same profile and templates, so one stands for all."""
    bootstrap = changes[BOOTSTRAP_DIR]
    if base.walk(BOOTSTRAP_DIR) != {f"{BOOTSTRAP_DIR}/{name}": data for name, data in bootstrap.files.items()}:
        return False
    for path in (agent_role_file(workspace), agent_rolebinding_file(workspace)):
        expected = changes[path]
        if base.read(path) != (None if expected is DELETE else expected):
            return False
    return True


_CACHE = Memo(1024)  # rendered files by key; the profile's full content is part of every key


def _profile_key(profile: ClusterProfile) -> str:
    return json.dumps(dataclasses.asdict(profile), sort_keys=True, default=str)


def object_names(rendering: Rendering) -> list[tuple[str, str]]:
    """(kind, name) of every object the app renders."""
    return [(obj["kind"], obj["metadata"]["name"]) for obj in rendering.objects]


def _owners(name: str) -> list[str]:
    """The apps an object named ``name`` could belong to: its name cut at each "-". An app's objects are named
    after it, alone or with a suffix (its -preview, -stable and -canary Services, the -mesh VirtualService,
    <app>-<port> HTTPRoutes, the -secrets ExternalSecret, ConfigMaps and claims), so these are all candidates."""
    return [name[:index] for index, char in enumerate(name) if char == "-"] + [name]


def name_clashes(snapshot: Snapshot, rendering: Rendering, batch: dict[str, set[tuple[str, str]]]) -> list[tuple[str, str]]:
    """(kind, name) of objects this app would share with another app of its workspace, which would take
    each other's objects over (one namespace, one object per kind and name).

    ``batch`` maps the apps of the same workspace being applied in the same commit to their object names;
    for all other apps the repository decides, one tree lookup per candidate owner.
    """
    clashes = []
    for kind, name in object_names(rendering):
        for owner in _owners(name):
            if owner == rendering.name:
                continue
            if owner in batch:
                taken = (kind, name) in batch[owner]
            else:
                taken = snapshot.tree_id(f"{app_dir(rendering.workspace, owner)}/{object_filename(kind, name)}") is not None
            if taken:
                clashes.append((kind, name))
                break
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
    "name_clashes",
    "object_names",
]
