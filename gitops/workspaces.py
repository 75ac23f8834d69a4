"""Workspaces: a cluster's namespaces that apps are deployed into, with their labels, quota and secret paths.

A workspace is a row and its Namespace and ResourceQuota in the cluster's
repository (gitops.layout); creating, changing or deleting one commits there too,
with the refreshes of the Applications the commit touched (gitops.refreshes), and
deleting one takes its namespace out, which ArgoCD then prunes. Those refreshes reach
a waiting agent through its process's command watch (webapp.command_bell) once the
caller commits.
"""

from __future__ import annotations

from contract.errors import Conflict, InvalidRequest, NotFound
from renderer.render import WorkspaceSettings, reserved_namespaces, workspace_settings_problems
from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.attributes import set_committed_value

from gitops import apply as apply_service
from gitops import isolation, layout, refreshes
from gitops.audit import record
from gitops.clusters import check_name, profile_of, sees_cluster
from gitops.models import Application, Cluster, Workspace
from gitops.policy import Principal, Scope
from gitops.repo import Author, Snapshot
from gitops.service_context import Context

ENVIRONMENTS = ("dev", "staging", "prod", "test", "sandbox")


def workspace_scope(workspace: Workspace) -> Scope:
    return Scope(workspace.tenant_id, workspace.cluster_id, workspace.id)


def get_workspace(ctx: Context, cluster: Cluster, name: str, permission: str = "workspace.read") -> Workspace:
    # Without the eager join: the cluster is at hand.
    workspace = ctx.session.scalar(select(Workspace).options(lazyload(Workspace.cluster))
                                   .where(Workspace.cluster_id == cluster.id, Workspace.name == name))
    if workspace is not None:
        set_committed_value(workspace, "cluster", cluster)
    return _checked(ctx.principal, cluster, workspace, name, permission)


def _checked(principal: Principal, cluster: Cluster, workspace: Workspace | None, name: str,
             permission: str) -> Workspace:
    if workspace is None or not principal.can("workspace.read", workspace_scope(workspace)):
        raise NotFound(f'no workspace "{name}" in cluster "{cluster.name}"')
    principal.require(permission, workspace_scope(workspace), f'workspace "{cluster.name}:{name}"')
    return workspace


# One query for both, built once (every deploy and app request asks); the workspace outer-joined.
_CLUSTER_AND_WORKSPACE = (
    select(Cluster, Workspace).options(lazyload(Cluster.tenant), lazyload(Workspace.cluster))
    .outerjoin(Workspace, and_(Workspace.cluster_id == Cluster.id, Workspace.name == bindparam("workspace")))
    .where(Cluster.tenant_id == bindparam("tenant_id"), Cluster.name == bindparam("cluster"))
)


def find_workspace(ctx: Context, cluster_name: str, name: str, permission: str = "workspace.read") -> Workspace:
    """The workspace ``<cluster>:<name>``, checked for ``permission``; NotFound names what is missing."""
    principal = ctx.principal
    row = ctx.session.execute(_CLUSTER_AND_WORKSPACE, {"tenant_id": principal.tenant_id, "cluster": cluster_name,
                                                       "workspace": name}).first()
    if row is None or not sees_cluster(principal, row[0]):
        raise NotFound(f'no cluster "{cluster_name}"')
    cluster, workspace = row
    if workspace is not None:
        set_committed_value(workspace, "cluster", cluster)
    return _checked(principal, cluster, workspace, name, permission)


def list_workspaces(ctx: Context, cluster: Cluster) -> list[Workspace]:
    rows = ctx.session.scalars(
        select(Workspace).where(Workspace.cluster_id == cluster.id).order_by(Workspace.name)
    ).all()
    return [w for w in rows if ctx.principal.can("workspace.read", workspace_scope(w))]


def _workspace_fields(data: dict, workspace: Workspace) -> None:
    if "environment" in data:
        if data["environment"] not in ENVIRONMENTS:
            raise InvalidRequest(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        workspace.environment = data["environment"]
    for key in ("labels", "quota"):
        if key in data:
            value = data[key]
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()
            ):
                raise InvalidRequest(f"{key} must be a mapping of names to strings or numbers")
            setattr(workspace, key, {k: str(v) if key == "labels" else v for k, v in value.items()})
    problems = workspace_settings_problems(workspace.labels or {}, workspace.quota or {})
    if problems:
        raise InvalidRequest("; ".join(problems))


def workspace_settings(workspace: Workspace) -> WorkspaceSettings:
    return WorkspaceSettings.of(workspace.environment, workspace.labels or {}, workspace.quota or {})


def sync_workspace(ctx: Context, workspace: Workspace) -> None:
    """Write the workspace's Namespace (labels) and ResourceQuota into its cluster's repository."""
    cluster, repos = workspace.cluster, ctx.repos
    profile, repo = profile_of(cluster), repos.open(cluster)
    result = apply_service.apply([], profile, repo, author=ctx.principal.name, schemas=repos.schemas,
                                 workspace_settings={workspace.name: workspace_settings(workspace)})
    refreshes.queue_commit_refreshes(ctx.session, cluster, profile, repo, result.commit_id, result.base_commit)


def create_workspace(ctx: Context, cluster: Cluster, data: dict) -> Workspace:
    session, principal = ctx.session, ctx.principal
    principal.require("workspace.create", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    name = check_name("workspace", data.get("name"))
    profile = profile_of(cluster)
    if name == "default" or name.startswith("kube-") or name in reserved_namespaces(profile):
        raise InvalidRequest(f'"{name}" is a system namespace; choose another workspace name')
    if session.scalar(select(Workspace.id).where(Workspace.cluster_id == cluster.id, Workspace.name == name)):
        raise Conflict(f'workspace "{cluster.name}:{name}" already exists')
    workspace = Workspace(tenant_id=cluster.tenant_id, cluster=cluster, name=name)
    _workspace_fields(data, workspace)
    session.add(workspace)
    session.flush()
    record(session, principal, "workspace.create", f"{cluster.name}:{name}", {"environment": workspace.environment})
    if "secret_paths" in data:
        isolation.set_workspace_secret_paths(ctx, workspace, data["secret_paths"])
    sync_workspace(ctx, workspace)
    return workspace


def update_workspace(ctx: Context, workspace: Workspace, data: dict) -> Workspace:
    ctx.principal.require("workspace.update", workspace_scope(workspace), f'workspace "{workspace.name}"')
    if "secret_paths" in data:  # first: refused to a workspace-admin before anything changes
        isolation.set_workspace_secret_paths(ctx, workspace, data["secret_paths"])
    _workspace_fields(data, workspace)
    record(ctx.session, ctx.principal, "workspace.update", f"{workspace.cluster.name}:{workspace.name}",
           {"fields": sorted(data)})
    sync_workspace(ctx, workspace)
    return workspace


def delete_workspace(ctx: Context, workspace: Workspace) -> None:
    """Forget the workspace and take it out of the repository: ArgoCD then prunes its namespace."""
    session, repos, principal = ctx.session, ctx.repos, ctx.principal
    principal.require("workspace.delete", workspace_scope(workspace), f'workspace "{workspace.name}"')
    live = session.scalar(
        select(Application.name).where(Application.workspace_id == workspace.id, Application.deleted.is_(False))
    )
    if live:
        raise Conflict(f'workspace "{workspace.name}" still has apps (e.g. "{live}"); delete them first')
    record(session, principal, "workspace.delete", f"{workspace.cluster.name}:{workspace.name}")
    cluster, name = workspace.cluster, workspace.name
    profile = profile_of(cluster)

    def build(base: Snapshot):
        remaining = [w for w in layout.workspaces_in(base) if w != name]
        return {**layout.bootstrap_changes(profile, remaining, repos.schemas), **layout.delete_workspace_changes(name)}

    repo = repos.open(cluster)
    result = repo.commit(build, f"Remove workspace {name}\n\n{apply_service.TRAILER_AUTHOR}: {principal.name}\n",
                         Author.parse(principal.name))
    refreshes.queue_commit_refreshes(session, cluster, profile, repo, result.commit_id,
                                     str(result.base.commit_id) if result.base.commit_id else None)
    session.delete(workspace)


__all__ = [
    "ENVIRONMENTS",
    "workspace_scope",
    "get_workspace",
    "find_workspace",
    "list_workspaces",
    "workspace_settings",
    "sync_workspace",
    "create_workspace",
    "update_workspace",
    "delete_workspace",
]
