"""The JSON shape of each object the API answers with."""

from __future__ import annotations

from gitops import accounts, egress, status
from gitops.models import (
    ApiToken,
    Application,
    Cluster,
    RoleBinding,
    User,
    Version,
    Workspace,
)
from gitops.policy import Scope
from webapp.plane import context, db_session


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def cluster_json(cluster: Cluster) -> dict:
    return {
        "name": cluster.name,
        "profile": cluster.profile_text,
        # credentials never: they are sealed apart from the URL (a row older than that is redacted)
        "remote_url": egress.redact_url(cluster.remote_url),
        "remote_auth": cluster.remote_auth,
        "secret_paths": cluster.secret_paths,
        "git_path": f"/git/{cluster.tenant.name}/{cluster.name}.git",
        "last_seen_at": iso(cluster.last_seen_at),
        "created_at": iso(cluster.created_at),
        "updated_at": iso(cluster.updated_at),
    }


def workspace_json(workspace: Workspace) -> dict:
    return {
        "cluster": workspace.cluster.name,
        "name": workspace.name,
        "namespace": workspace.name,
        "environment": workspace.environment,
        "labels": workspace.labels,
        "quota": workspace.quota,
        "secret_paths": workspace.secret_paths,
        "created_at": iso(workspace.created_at),
    }


def app_json(app: Application, workspace: Workspace, cluster: Cluster, live=None) -> dict:
    """An app; with ``live`` (gitops.reads.ListedStatus, in listings) what its cluster last said of it."""
    out = {
        "cluster": cluster.name,
        "workspace": workspace.name,
        "name": app.name,
        "kind": app.kind,
        "current_version": app.current_version,
        "versions": app.version_counter,
        "deleted": app.deleted,
        "updated_at": iso(app.updated_at),
    }
    if live is not None:
        out.update(health=live.health, sync=live.sync, operation=live.operation, live_version=live.live_version)
    return out


def version_json(version: Version, with_spec: bool = True, live: dict | None = None) -> dict:
    """``live``: the version's status from gitops.status (synced, healthy, ...), when an agent reported any."""
    app = version.application
    out = {
        "app": f"{app.workspace.cluster.name}:{app.workspace.name}/{app.name}",
        "number": version.number,
        "action": version.action,
        "state": version.state,
        "deployment_id": version.deployment_id,
        "commit": version.commit_id,
        "changed": version.changed,
        "unchanged": version.unchanged,  # a deploy answered with this version: it changed nothing
        "spec_digest": version.spec_digest,
        "render_digest": version.render_digest,
        "author": version.author,
        "source": version.source,
        "source_commit": version.source_commit,
        "origin": version.origin,
        "notes": version.notes,
        "error": version.error,
        "created_at": iso(version.created_at),
        "committed_at": iso(version.committed_at),
    }
    if live is not None:
        out["status"] = live["status"]
        out["status_message"] = live["message"]
    if with_spec:
        out["spec"] = version.spec
    return out


def live_statuses(app: Application, versions: list[Version]) -> dict[int, dict]:
    """The status of each of ``versions`` (empty while no agent has reported on the app)."""
    cluster = app.workspace.cluster
    return status.statuses_for(db_session(), context().repos.open(cluster), app, versions) or {}


def binding_json(binding: RoleBinding) -> dict:
    names = accounts.scope_names(db_session(), Scope(binding.tenant_id, binding.cluster_id, binding.workspace_id))
    return {"id": binding.id, "role": binding.role, "subject_kind": binding.subject_kind,
            "subject": binding.subject, **names, "created_by": binding.created_by,
            "created_at": iso(binding.created_at)}


def token_json(token: ApiToken) -> dict:
    names = accounts.scope_names(db_session(), Scope(token.tenant_id, token.cluster_id, token.workspace_id))
    return {"id": token.id, "name": token.name, "user": token.user.username, "role": token.role, **names,
            "expires_at": iso(token.expires_at), "revoked_at": iso(token.revoked_at),
            "last_used_at": iso(token.last_used_at), "created_at": iso(token.created_at)}


def user_json(user: User) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "email": user.email,
            "login": "oidc" if user.oidc_subject else "local", "groups": user.groups, "active": user.active,
            "last_login_at": iso(user.last_login_at)}
