"""Clusters and workspaces: their records, their repositories, their tokens.

A cluster's repository lives under the data directory
(``repos/<tenant>/<cluster>.git``), is created with its bootstrap when the
cluster is registered, and is pushed to ``remote_url`` when one is set. The
cluster profile is kept as the YAML text it was given, validated on the way
in, so what a user wrote is what they read back.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderer.errors import Conflict, InvalidRequest, NotFound, Problem, ProfileError, RepoError
from renderer.profiles import ClusterProfile, load_profile_text
from renderer.render import WorkspaceSettings, reserved_namespaces, workspace_settings_problems
from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from gitops import apply as apply_service
from gitops import layout
from gitops.audit import record
from gitops.models import Application, Cluster, Tenant, Workspace, utcnow
from gitops.policy import Principal, Scope
from gitops.repo import Author, ClusterRepo, Snapshot

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENVIRONMENTS = ("dev", "staging", "prod", "test", "sandbox")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str | None, digest: str | None) -> bool:
    if not token or not digest:
        return False
    return hmac.compare_digest(hash_token(token), digest)


def check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidRequest(
            f"{kind} name {name!r} is not valid: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


class RepoStore:
    """The cluster repositories under one data directory, opened once each."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._repos: dict[tuple[str, str | None], ClusterRepo] = {}
        self._lock = threading.Lock()

    def path_for(self, tenant: str, cluster: str) -> Path:
        return self.root / tenant / f"{cluster}.git"

    def open(self, cluster: Cluster) -> ClusterRepo:
        key = (cluster.repo_path, cluster.remote_url)
        with self._lock:
            repo = self._repos.get(key)
            if repo is None:
                repo = self._repos[key] = ClusterRepo(cluster.repo_path, remote_url=cluster.remote_url)
            return repo


def profile_of(cluster: Cluster) -> ClusterProfile:
    return _parsed_profile(cluster.profile_text, cluster.name)


@functools.lru_cache(maxsize=256)
def _parsed_profile(text: str, name: str) -> ClusterProfile:
    # Parsing the profile YAML cost as much as loading the spec, on every deploy; a
    # ClusterProfile is frozen and only read, so one parse per text is shared by all threads.
    return load_profile_text(text, f"cluster {name} profile")


def parse_profile(text: Any, name: str) -> ClusterProfile:
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("profile must be the cluster profile as YAML text")
    profile = load_profile_text(text, "profile")
    if profile.name != name:
        raise ProfileError([Problem("profile", 0, 0, f'the profile names cluster "{profile.name}", not "{name}"')])
    return profile


def get_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f'no tenant "{name}"')
    return tenant


def get_cluster(session: Session, principal: Principal, name: str, permission: str = "cluster.read") -> Cluster:
    cluster = session.scalar(select(Cluster).where(Cluster.tenant_id == principal.tenant_id, Cluster.name == name))
    if cluster is None or not _sees_cluster(principal, cluster):
        raise NotFound(f'no cluster "{name}"')
    principal.require(permission, Scope(cluster.tenant_id, cluster.id), f'cluster "{name}"')
    return cluster


def _sees_cluster(principal: Principal, cluster: Cluster) -> bool:
    """Whether the caller may know the cluster exists: some role in it or in one of its workspaces."""
    scope = Scope(cluster.tenant_id, cluster.id)
    return principal.can("cluster.read", scope) or any(
        g.scope.cluster_id == cluster.id or g.scope.level == "tenant" for g in principal.grants
    )


def list_clusters(session: Session, principal: Principal) -> list[Cluster]:
    clusters = session.scalars(
        select(Cluster).where(Cluster.tenant_id == principal.tenant_id).order_by(Cluster.name)
    ).all()
    return [c for c in clusters if principal.can("cluster.read", Scope(c.tenant_id, c.id))]


@dataclass
class NewCluster:
    cluster: Cluster
    read_token: str  # shown once
    agent_token: str  # shown once


def create_cluster(
    session: Session, repos: RepoStore, principal: Principal, name: Any, profile_text: Any,
    remote_url: str | None = None,
) -> NewCluster:
    principal.require("cluster.create", Scope(principal.tenant_id), "the tenant")
    check_name("cluster", name)
    profile = parse_profile(profile_text, name)
    if session.scalar(select(Cluster.id).where(Cluster.tenant_id == principal.tenant_id, Cluster.name == name)):
        raise Conflict(f'cluster "{name}" already exists')
    tenant = session.get(Tenant, principal.tenant_id)
    read_token, agent_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    cluster = Cluster(
        tenant_id=principal.tenant_id, name=name, profile_text=profile_text,
        repo_path=str(repos.path_for(tenant.name, name)), remote_url=remote_url or None,
        read_token_hash=hash_token(read_token), agent_token_hash=hash_token(agent_token),
    )
    session.add(cluster)
    session.flush()
    record(session, principal, "cluster.create", name, {"flavor": profile.flavor, "remote_url": remote_url})
    # The bootstrap goes in now, so ArgoCD has something to sync from the first minute.
    _check_remote(repos, cluster)
    apply_service.apply([], profile, repos.open(cluster), author=principal.name)
    return NewCluster(cluster, read_token, agent_token)


def _check_remote(repos: RepoStore, cluster: Cluster) -> None:
    """Refuse a remote that cannot be fetched now, rather than failing every deploy later."""
    if not cluster.remote_url:
        return
    try:
        repos.open(cluster).fetch()
    except RepoError as exc:
        raise InvalidRequest(f"cannot use remote_url: {exc}; check the URL and the credentials in it") from exc


def update_cluster(session: Session, principal: Principal, cluster: Cluster, changes: dict,
                   repos: RepoStore | None = None) -> Cluster:
    principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    if "profile" in changes:
        profile = parse_profile(changes["profile"], cluster.name)
        taken = session.scalar(select(Workspace.name).where(
            Workspace.cluster_id == cluster.id, Workspace.name.in_(sorted(reserved_namespaces(profile)))))
        if taken:
            raise Conflict(f'workspace "{taken}" would be a system namespace of cluster "{cluster.name}" '
                           "(ArgoCD, the gateway or the Shipyard agent); choose other namespaces in the profile")
        cluster.profile_text = changes["profile"]
    if "remote_url" in changes:
        cluster.remote_url = changes["remote_url"] or None
        if repos is not None:
            _check_remote(repos, cluster)
    record(session, principal, "cluster.update", cluster.name, {"fields": sorted(changes)})
    return cluster


def rotate_token(session: Session, principal: Principal, cluster: Cluster, kind: str) -> str:
    """A new read (git) or agent token for the cluster; an old read token stops working at once."""
    principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    token = secrets.token_urlsafe(32)
    if kind == "read":
        cluster.read_token_hash = hash_token(token)
    elif kind == "agent":
        # the old token keeps working for a grace period (gitops.status), so the agent switches without a gap
        cluster.previous_agent_token_hash = cluster.agent_token_hash
        cluster.agent_token_rotated_at = utcnow()
        cluster.agent_token_hash = hash_token(token)
    else:
        raise InvalidRequest(f'unknown token kind "{kind}"; use "read" or "agent"')
    record(session, principal, f"cluster.rotate-{kind}-token", cluster.name)
    return token


def delete_cluster(session: Session, principal: Principal, cluster: Cluster) -> None:
    """Forget the cluster. Its repository stays on disk: the cluster may still sync from it."""
    principal.require("cluster.delete", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    record(session, principal, "cluster.delete", cluster.name)
    session.delete(cluster)


# --- workspaces ---------------------------------------------------------------------------


def workspace_scope(workspace: Workspace) -> Scope:
    return Scope(workspace.tenant_id, workspace.cluster_id, workspace.id)


def get_workspace(session: Session, principal: Principal, cluster: Cluster, name: str,
                  permission: str = "workspace.read") -> Workspace:
    # Without the eager join: the cluster is at hand.
    workspace = session.scalar(select(Workspace).options(lazyload(Workspace.cluster))
                               .where(Workspace.cluster_id == cluster.id, Workspace.name == name))
    if workspace is not None:
        set_committed_value(workspace, "cluster", cluster)
    return _checked(principal, cluster, workspace, name, permission)


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


def find_workspace(session: Session, principal: Principal, cluster_name: str, name: str,
                   permission: str = "workspace.read") -> Workspace:
    """The workspace ``<cluster>:<name>``, checked for ``permission``; NotFound names what is missing."""
    row = session.execute(_CLUSTER_AND_WORKSPACE, {"tenant_id": principal.tenant_id, "cluster": cluster_name,
                                                   "workspace": name}).first()
    if row is None or not _sees_cluster(principal, row[0]):
        raise NotFound(f'no cluster "{cluster_name}"')
    cluster, workspace = row
    if workspace is not None:
        set_committed_value(workspace, "cluster", cluster)
    return _checked(principal, cluster, workspace, name, permission)


def list_workspaces(session: Session, principal: Principal, cluster: Cluster) -> list[Workspace]:
    rows = session.scalars(
        select(Workspace).where(Workspace.cluster_id == cluster.id).order_by(Workspace.name)
    ).all()
    return [w for w in rows if principal.can("workspace.read", workspace_scope(w))]


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


def sync_workspace(repos: RepoStore, principal: Principal, workspace: Workspace) -> None:
    """Write the workspace's Namespace (labels) and ResourceQuota into its cluster's repository."""
    cluster = workspace.cluster
    apply_service.apply([], profile_of(cluster), repos.open(cluster), author=principal.name,
                        workspace_settings={workspace.name: workspace_settings(workspace)})


def create_workspace(session: Session, repos: RepoStore, principal: Principal, cluster: Cluster,
                     data: dict) -> Workspace:
    principal.require("workspace.create", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    name = check_name("workspace", data.get("name"))
    profile = profile_of(cluster)
    if name == "default" or name.startswith("kube-") or name in reserved_namespaces(profile):
        raise InvalidRequest(f'"{name}" is a system namespace; choose another workspace name')
    if session.scalar(select(Workspace.id).where(Workspace.cluster_id == cluster.id, Workspace.name == name)):
        raise Conflict(f'workspace "{cluster.name}:{name}" already exists')
    workspace = Workspace(tenant_id=cluster.tenant_id, cluster_id=cluster.id, name=name)
    _workspace_fields(data, workspace)
    session.add(workspace)
    session.flush()
    record(session, principal, "workspace.create", f"{cluster.name}:{name}", {"environment": workspace.environment})
    sync_workspace(repos, principal, workspace)
    return workspace


def update_workspace(session: Session, repos: RepoStore, principal: Principal, workspace: Workspace,
                     data: dict) -> Workspace:
    principal.require("workspace.update", workspace_scope(workspace), f'workspace "{workspace.name}"')
    _workspace_fields(data, workspace)
    record(session, principal, "workspace.update", f"{workspace.cluster.name}:{workspace.name}", {"fields": sorted(data)})
    sync_workspace(repos, principal, workspace)
    return workspace


def delete_workspace(session: Session, repos: RepoStore, principal: Principal, workspace: Workspace) -> None:
    """Forget the workspace and take it out of the repository: ArgoCD then prunes its namespace."""
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
        return {**layout.bootstrap_changes(profile, remaining), **layout.delete_workspace_changes(name)}

    repos.open(cluster).commit(build, f"Remove workspace {name}\n\n{apply_service.TRAILER_AUTHOR}: {principal.name}\n",
                               Author.parse(principal.name))
    session.delete(workspace)


def touch(cluster: Cluster) -> None:
    cluster.last_seen_at = utcnow()


__all__ = [
    "RepoStore",
    "NewCluster",
    "hash_token",
    "token_matches",
    "profile_of",
    "get_tenant",
    "get_cluster",
    "list_clusters",
    "create_cluster",
    "update_cluster",
    "rotate_token",
    "delete_cluster",
    "get_workspace",
    "find_workspace",
    "list_workspaces",
    "create_workspace",
    "update_workspace",
    "delete_workspace",
    "workspace_scope",
    "workspace_settings",
    "sync_workspace",
]
