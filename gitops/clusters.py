"""Clusters and the tenant's settings: their records, their repositories' remotes, their tokens.

A cluster's repository (gitops.repo_store) is created with its bootstrap when
the cluster is registered, and is pushed to ``remote_url`` when one is set. The
cluster profile is kept as the YAML text it was given, validated on the way
in, so what a user wrote is what they read back.

A remote is where the control plane itself connects to, so only a tenant-admin
sets one (tenant.manage), only https and ssh remotes whose hosts the egress
policy lets through are taken (gitops.egress), and their credentials are sealed
apart from the URL (gitops.credentials). A deleted cluster's repository is moved
into ``repos/<tenant>/.archive/`` (never served), so a cluster created again
under the same name starts from an empty repository holding only its bootstrap.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Problem,
    ProfileError,
    RenderError,
    RepoError,
    ShipyardError,
    SpecError,
)
from renderer.profiles import ClusterProfile, load_profile_text
from renderer.render import WorkspaceSettings, render, reserved_namespaces
from renderer.spec import load_specs
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gitops import apply as apply_service
from gitops import egress, refreshes
from gitops.audit import record
from gitops.credentials import password_credentials, ssh_key_credentials
from gitops.models import Application, Cluster, Tenant, Version, Workspace, utcnow
from gitops.policy import Grant, Principal, Scope
from gitops.remote import RemoteCredentials
from gitops.repo_store import RepoStore
from gitops.service_context import Context

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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


def tenant_settings(ctx: Context) -> Tenant:
    ctx.principal.require("tenant.manage", Scope(ctx.principal.tenant_id), "the tenant")
    return ctx.session.get(Tenant, ctx.principal.tenant_id)


def update_tenant(ctx: Context, changes: dict[str, Any]) -> Tenant:
    """Change the tenant's settings: ``remote_allowed_hosts``, the non-public hosts its remotes may reach."""
    tenant = tenant_settings(ctx)
    if "remote_allowed_hosts" in changes:
        tenant.remote_allowed_hosts = egress.allowed_hosts(changes["remote_allowed_hosts"])
    record(ctx.session, ctx.principal, "tenant.update", tenant.name,
           {"fields": sorted(changes), "remote_allowed_hosts": tenant.remote_allowed_hosts})
    return tenant


def get_cluster(ctx: Context, name: str, permission: str = "cluster.read") -> Cluster:
    principal = ctx.principal
    cluster = ctx.session.scalar(select(Cluster).where(Cluster.tenant_id == principal.tenant_id, Cluster.name == name))
    if cluster is None or not sees_cluster(principal, cluster):
        raise NotFound(f'no cluster "{name}"')
    principal.require(permission, Scope(cluster.tenant_id, cluster.id), f'cluster "{name}"')
    return cluster


def sees_cluster(principal: Principal, cluster: Cluster) -> bool:
    """Whether the caller may know the cluster exists: some role in it or in one of its workspaces.

    An API token narrows that as it narrows everything else: its own scope must reach the
    cluster too, or a token of cluster a would tell cluster b (an empty list of its workspaces)
    from a cluster that does not exist (404).
    """
    def reaches(grant: Grant) -> bool:
        return grant.scope.level == "tenant" or grant.scope.cluster_id == cluster.id

    if principal.token is not None and not reaches(principal.token):
        return False
    return principal.can("cluster.read", Scope(cluster.tenant_id, cluster.id)) or any(
        reaches(grant) for grant in principal.grants
    )


def list_clusters(ctx: Context) -> list[Cluster]:
    clusters = ctx.session.scalars(
        select(Cluster).where(Cluster.tenant_id == ctx.principal.tenant_id).order_by(Cluster.name)
    ).all()
    return [c for c in clusters if ctx.principal.can("cluster.read", Scope(c.tenant_id, c.id))]


@dataclass
class NewCluster:
    cluster: Cluster
    read_token: str  # shown once
    agent_token: str  # shown once


def create_cluster(ctx: Context, name: Any, profile_text: Any, remote: dict[str, Any] | None = None) -> NewCluster:
    """Register the cluster and write its bootstrap; ``remote``: the request's remote_* fields, if any."""
    session, repos, principal = ctx.session, ctx.repos, ctx.principal
    principal.require("cluster.create", Scope(principal.tenant_id), "the tenant")
    remote = {key: value for key, value in (remote or {}).items() if value is not None}
    if remote:
        _require_remote_setter(principal, name)
    elif repos.remote_required:
        raise InvalidRequest(REMOTE_REQUIRED)
    check_name("cluster", name)
    profile = parse_profile(profile_text, name)
    if session.scalar(select(Cluster.id).where(Cluster.tenant_id == principal.tenant_id, Cluster.name == name)):
        raise Conflict(f'cluster "{name}" already exists')
    tenant = session.get(Tenant, principal.tenant_id)
    read_token, agent_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = repos.path_for(tenant.name, name)
    cluster = Cluster(
        tenant=tenant, name=name, profile_text=profile_text, repo_path=str(path),
        read_token_hash=hash_token(read_token), agent_token_hash=hash_token(agent_token),
    )
    session.add(cluster)
    session.flush()
    detail: dict[str, Any] = {"flavor": profile.flavor}
    # A repository already there was left by a deleted cluster (or an older version that kept
    # them): archived, so this cluster's read token never serves another's history.
    leftover = repos.archive(path, repos.archive_target(path, name, "leftover"))
    if leftover is not None:
        log.warning("cluster %s: a repository was already at %s; archived it as %s", name, path,
                    repos.shown(leftover))
        detail["archived_leftover"] = repos.shown(leftover)
    try:
        if remote:
            _set_remote(repos, cluster, remote)
            detail.update(remote_url=cluster.remote_url, remote_auth=cluster.remote_auth)
        record(session, principal, "cluster.create", name, detail)
        # The bootstrap goes in now, so ArgoCD has something to sync from the first minute.
        repo = repos.open(cluster)
        result = apply_service.apply([], profile, repo, author=principal.name, schemas=repos.schemas)
        # (a remote with history already: the Applications of what was there are refreshed)
        refreshes.queue_commit_refreshes(session, cluster, profile, repo, result.commit_id, result.base_commit)
    except ShipyardError:
        # the row is rolled back: leave no repository behind for the next cluster of this name
        repos.forget(cluster.id)
        shutil.rmtree(path, ignore_errors=True)
        raise
    return NewCluster(cluster, read_token, agent_token)


REMOTE_FIELDS = ("remote_url", "remote_username", "remote_password", "remote_ssh_key", "remote_ssh_passphrase",
                 "remote_known_hosts")


# CLUSTER_REMOTE_REQUIRED (gitops.repo_store.RepoStore.remote_required)
REMOTE_REQUIRED = ("this control plane requires a git remote for every cluster (CLUSTER_REMOTE_REQUIRED: its "
                   "replicas share no repository volume, so commits live on the remote): give remote_url, the git "
                   "host ArgoCD reads the cluster repository from, with its credentials")


def _require_remote_setter(principal: Principal, cluster_name: Any) -> None:
    if not principal.can("tenant.manage", Scope(principal.tenant_id)):
        raise PermissionDenied(
            f'{principal.name} may not set the git remote of cluster "{cluster_name}": the control plane connects '
            "to it, so only a tenant-admin (tenant.manage) sets a remote or its credentials")


def _set_remote(repos: RepoStore, cluster: Cluster, fields: dict[str, Any]) -> None:
    """Point the cluster at the remote of ``fields`` (or at none) with its credentials, checked.

    The remote and its credentials are set together: a change of either sends both,
    so sealed credentials are never paired with a URL they were not given for.
    """
    for key, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f'"{key}" must be a string')
    text = fields.get("remote_url")
    if not text:
        if any(fields.get(key) for key in REMOTE_FIELDS if key != "remote_url"):
            raise InvalidRequest("remote credentials need their remote: send remote_url with them")
        if repos.remote_required:
            raise InvalidRequest(REMOTE_REQUIRED)
        cluster.remote_url = cluster.remote_credentials = cluster.remote_auth = None
        return
    url, userinfo = egress.parse_remote_url(text)
    try:
        repos.policy(repos.allowed_hosts(cluster)).addresses(url.host, url.port)
    except RepoError as exc:
        raise InvalidRequest(f"cannot use remote_url: {exc}") from exc
    credentials = remote_credentials(url, userinfo, fields)
    cluster.remote_url = str(url)
    cluster.remote_credentials = repos.seal(credentials) if credentials is not None else None
    cluster.remote_auth = credentials.kind if credentials is not None else None
    try:
        # Refuse a remote that cannot be fetched now, rather than failing every deploy later.
        repos.open(cluster).fetch()
    except RepoError as exc:
        raise InvalidRequest(f"cannot use remote_url: {exc}") from exc


def remote_credentials(url: egress.RemoteURL, userinfo: tuple[str, str] | None,
                       fields: dict[str, Any]) -> RemoteCredentials | None:
    """The credentials the remote_* fields give for ``url``, checked; None for a remote that needs none.

    An https URL pasted with ``user:token@`` in it gives its credentials that way:
    they are taken out of the URL and sealed like remote_username/remote_password.
    """
    username, password = fields.get("remote_username"), fields.get("remote_password")
    ssh_key, passphrase = fields.get("remote_ssh_key"), fields.get("remote_ssh_passphrase")
    known_hosts = fields.get("remote_known_hosts")
    if url.scheme == "https":
        if ssh_key or passphrase or known_hosts:
            raise InvalidRequest("remote_ssh_key, remote_ssh_passphrase and remote_known_hosts are for ssh remotes; "
                                 "an https remote takes remote_username and remote_password")
        if userinfo is not None:
            if username or password:
                raise InvalidRequest("give the credentials either in remote_url or in remote_username and "
                                     "remote_password, not both")
            username, password = userinfo
        if not username and not password:
            return None
        if not username:
            raise InvalidRequest("remote_password needs remote_username (for a token: the name its server "
                                 "expects, e.g. x-access-token on GitHub, oauth2 on GitLab)")
        return password_credentials(username, password or "")
    if username or password:
        raise InvalidRequest("an ssh remote authenticates with remote_ssh_key; remote_username and remote_password "
                             "are for https (the ssh login is part of the URL: ssh://git@host/path)")
    if not ssh_key or not known_hosts:
        raise InvalidRequest("an ssh remote needs remote_ssh_key (a private key) and remote_known_hosts (the "
                             "server's host key lines, as `ssh-keyscan -p PORT HOST` prints them): Shipyard pins "
                             "the host key and never connects to an ssh server it cannot verify")
    return ssh_key_credentials(ssh_key, passphrase or "", known_hosts)


def update_cluster(ctx: Context, cluster: Cluster, changes: dict) -> Cluster:
    ctx.principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    remote = {key: changes[key] for key in REMOTE_FIELDS if key in changes}
    if remote:  # first: refused to a cluster-admin before anything changes
        _require_remote_setter(ctx.principal, cluster.name)
    if "profile" in changes:
        profile = parse_profile(changes["profile"], cluster.name)
        taken = ctx.session.scalar(select(Workspace.name).where(
            Workspace.cluster_id == cluster.id, Workspace.name.in_(sorted(reserved_namespaces(profile)))))
        if taken:
            raise Conflict(f'workspace "{taken}" would be a system namespace of cluster "{cluster.name}" '
                           "(ArgoCD, the gateway or the Shipyard agent); choose other namespaces in the profile")
        cluster.profile_text = changes["profile"]
    detail: dict[str, Any] = {"fields": sorted(changes)}
    if remote:
        _set_remote(ctx.repos, cluster, remote)
        detail.update(remote_url=cluster.remote_url, remote_auth=cluster.remote_auth)
    record(ctx.session, ctx.principal, "cluster.update", cluster.name, detail)
    return cluster


def replace_profile(ctx: Context, cluster: Cluster, text: str, detail: dict[str, Any]) -> apply_service.ApplyResult:
    """Give the cluster the profile ``text`` and write again what it decides beside the apps' manifests.

    For a change the control plane makes itself (``shipyard up`` following its own new address),
    audited as a cluster.update with ``detail``. The bootstrap, the workspaces' files and each
    live app's Application (its current version rendered with the new profile) go into one
    commit (gitops.apply.rewrite_for_profile) before the caller commits the session, so a failed
    commit leaves the old profile in place, with the refreshes of what it touched (gitops.refreshes).
    An app the new profile cannot render keeps its Application; its next deploy says what is wrong.
    """
    ctx.principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    profile = parse_profile(text, cluster.name)
    cluster.profile_text = text
    record(ctx.session, ctx.principal, "cluster.update", cluster.name, {"fields": ["profile"], **detail})
    workspaces = ctx.session.scalars(select(Workspace).where(Workspace.cluster_id == cluster.id)).all()
    renderings = []
    for workspace, body in ctx.session.execute(_CURRENT_SPECS, {"cluster_id": cluster.id}):
        if body is None:
            continue
        try:
            (spec,) = load_specs(json.dumps(body, ensure_ascii=False), f"{cluster.name}:{workspace} current version")
            renderings.append(render(spec, profile, ctx.schemas))
        except (SpecError, RenderError) as exc:
            log.warning("cluster %s: an app keeps its Application, the new profile cannot render it: %s",
                        cluster.name, exc)
    repo = ctx.repos.open(cluster)
    result = apply_service.rewrite_for_profile(
        profile, repo, renderings, title=f"Render cluster {cluster.name} for its new profile",
        author=ctx.principal.name, schemas=ctx.repos.schemas,
        workspace_settings={w.name: WorkspaceSettings.of(w.environment, w.labels or {}, w.quota or {})
                            for w in workspaces})
    refreshes.queue_commit_refreshes(ctx.session, cluster, profile, repo, result.commit_id, result.base_commit)
    return result


# Each live app's current version's spec, with its workspace's name.
_CURRENT_SPECS = (
    select(Workspace.name, Version.spec)
    .join(Application, Application.workspace_id == Workspace.id)
    .join(Version, (Version.application_id == Application.id) & (Version.number == Application.current_version))
    .where(Workspace.cluster_id == bindparam("cluster_id"), Application.deleted.is_(False))
    .order_by(Workspace.name, Application.name))


def rotate_token(ctx: Context, cluster: Cluster, kind: str) -> str:
    """A new read (git) or agent token for the cluster; an old read token stops working at once."""
    ctx.principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    token = secrets.token_urlsafe(32)
    if kind == "read":
        cluster.read_token_hash = hash_token(token)
    elif kind == "agent":
        # the old token keeps working for a grace period (gitops.agents), so the agent switches without a gap
        cluster.previous_agent_token_hash = cluster.agent_token_hash
        cluster.agent_token_rotated_at = utcnow()
        cluster.agent_token_hash = hash_token(token)
    else:
        raise InvalidRequest(f'unknown token kind "{kind}"; use "read" or "agent"')
    record(ctx.session, ctx.principal, f"cluster.rotate-{kind}-token", cluster.name)
    return token


def delete_cluster(ctx: Context, cluster: Cluster) -> Path | None:
    """Forget the cluster and archive its repository; returns where it went (None: there was none).

    The row goes first, in its own commit: from then on nothing serves or writes the
    repository, and it is moved out of the way. Were the move to fail, the repository
    is archived when a cluster of that name is created again, never handed to it.
    """
    session, repos, principal = ctx.session, ctx.repos, ctx.principal
    principal.require("cluster.delete", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    name, cluster_id, repo_path = cluster.name, cluster.id, Path(cluster.repo_path)
    target = repos.archive_target(repo_path, name, str(cluster_id)) if repo_path.exists() else None
    record(session, principal, "cluster.delete", name, {"archive": repos.shown(target) if target else None})
    session.delete(cluster)
    session.commit()
    repos.forget(cluster_id)
    return repos.archive(repo_path, target) if target is not None else None


def seal_remote_userinfo(session: Session, repos: RepoStore) -> int:
    """Move credentials that older versions kept inside ``remote_url`` into sealed storage.

    Run at every start; it touches only rows that still hold a password (or an https
    user) in the URL and have no sealed credentials, so running it again changes nothing.
    """
    moved = 0
    for cluster in session.scalars(select(Cluster).where(Cluster.remote_url.contains("@"),
                                                         Cluster.remote_credentials.is_(None))):
        clean, username, password = egress.split_userinfo(cluster.remote_url)
        if username is None or (password is None and not clean.lower().startswith("https://")):
            continue  # no userinfo, or only an ssh login (ssh://git@host), which is no secret
        if clean.lower().startswith("ssh://"):  # the login stays in an ssh URL; only the password goes
            clean = egress.redact_url(cluster.remote_url)
        cluster.remote_credentials = repos.seal(password_credentials(username, password or ""))
        cluster.remote_auth = "password"
        cluster.remote_url = clean
        log.info("cluster %s: moved the credentials in its remote_url into sealed storage", cluster.name)
        moved += 1
    return moved


def touch(cluster: Cluster) -> None:
    cluster.last_seen_at = utcnow()


__all__ = [
    "NewCluster",
    "hash_token",
    "token_matches",
    "profile_of",
    "get_tenant",
    "tenant_settings",
    "update_tenant",
    "get_cluster",
    "sees_cluster",
    "list_clusters",
    "create_cluster",
    "update_cluster",
    "replace_profile",
    "rotate_token",
    "delete_cluster",
    "seal_remote_userinfo",
    "remote_credentials",
    "REMOTE_FIELDS",
    "check_name",
    "parse_profile",
]
