"""REST API ``/api/v1``: thin views over the gitops services.

Each view parses its input, declares and checks what it needs
(webapp.auth), calls one service and shapes the JSON. The OpenAPI document
(webapp.openapi) is built from the same route table.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from gitops import accounts, audit, clusters, commands, deploy, egress, isolation, reads, status, workspaces
from gitops.models import ApiToken, Application, Cluster, Command, RoleBinding, Tenant, User, Version, Workspace
from gitops.policy import Scope
from contract.errors import InvalidRequest, NotFound
from renderer.yamlio import document_spans
from webapp.auth import AUTHENTICATED, public, requires
from webapp.plane import context, db_session, plane
from webapp.query_parameters import SOURCES, argument
from webapp.request_text import loads_storable

bp = Blueprint("api", __name__, url_prefix="/api/v1")

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


# --- input ---------------------------------------------------------------------------------


def json_body() -> dict:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    data = loads_storable(request.get_data())
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


def field(data: dict, name: str, kind: type | tuple, required: bool = True, default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None:
        if required:
            raise InvalidRequest(f'"{name}" is required')
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidRequest(f'"{name}" must be a {expected}')
    return value


def source_field(data: dict) -> str:
    """What sent a deploy, rollback or promotion: one of SOURCES, as its column (32 characters) holds."""
    source = field(data, "source", str, required=False, default="api")
    if source not in SOURCES:
        raise InvalidRequest(f"source must be one of {', '.join(SOURCES)}")
    return source


def scope_from(data: dict) -> Scope:
    """The scope a body names; a cluster or workspace the caller may not see is as absent as a missing one.

    Otherwise a role binding or token asked for there would be refused (403) where a missing
    one is not found (404), telling the caller what exists outside its scope.
    """
    ctx = context()
    cluster, workspace = field(data, "cluster", str, required=False), field(data, "workspace", str, required=False)
    if cluster and workspace:
        return workspaces.workspace_scope(workspaces.find_workspace(ctx, cluster, workspace))
    if cluster:
        return Scope(ctx.principal.tenant_id, _visible_cluster(ctx.session, cluster).id)
    return accounts.resolve_scope(ctx.session, ctx.principal.tenant_id, cluster, workspace)


# --- output --------------------------------------------------------------------------------


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


def app_json(app: Application, workspace: Workspace, cluster: Cluster) -> dict:
    return {
        "cluster": cluster.name,
        "workspace": workspace.name,
        "name": app.name,
        "kind": app.kind,
        "current_version": app.current_version,
        "versions": app.version_counter,
        "deleted": app.deleted,
        "updated_at": iso(app.updated_at),
    }


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


def _live(app: Application, versions: list[Version]) -> dict[int, dict]:
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


# --- me, users, audit ------------------------------------------------------------------------


@bp.get("/me")
@requires(AUTHENTICATED)
def me():
    principal = g.principal
    user = db_session().get(User, principal.user_id)
    grants = [{"role": grant.role, **accounts.scope_names(db_session(), grant.scope)} for grant in principal.grants]
    return {"user": user_json(user), "tenant": user.tenant.name, "grants": grants,
            "via_token": principal.token_id is not None}


@bp.get("/users")
@requires("user.manage")
def list_users():
    return {"users": [user_json(u) for u in accounts.list_users(context())]}


@bp.post("/users")
@requires("user.manage")
def create_user():
    data = json_body()
    ctx = context()
    user = accounts.create_user(ctx, field(data, "username", str), field(data, "password", str),
                                field(data, "display_name", str, False), field(data, "email", str, False))
    ctx.session.commit()
    return user_json(user), 201


@bp.get("/audit")
@requires("audit.read")
def list_audit():
    events = audit.list_events(context(), limit=argument("limit"), before_id=argument("before"))
    return {"events": [{"id": e.id, "actor": e.actor, "action": e.action, "target": e.target,
                        "detail": e.detail, "at": iso(e.at)} for e in events]}


# --- tenant -----------------------------------------------------------------------------------


def tenant_json(tenant: Tenant) -> dict:
    return {"name": tenant.name, "remote_allowed_hosts": list(tenant.remote_allowed_hosts or [])}


@bp.get("/tenant")
@requires("tenant.manage")
def get_tenant():
    """The tenant's settings: the hosts its cluster remotes may reach although not public (gitops.egress)."""
    return tenant_json(clusters.tenant_settings(context()))


@bp.patch("/tenant")
@requires("tenant.manage")
def update_tenant():
    data = json_body()
    unknown = set(data) - {"remote_allowed_hosts"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; a tenant has remote_allowed_hosts")
    ctx = context()
    tenant = clusters.update_tenant(ctx, data)
    ctx.session.commit()
    return tenant_json(tenant)


# --- clusters ---------------------------------------------------------------------------------


@bp.get("/clusters")
@requires("cluster.read")
def list_clusters():
    return {"clusters": [cluster_json(c) for c in clusters.list_clusters(context())]}


@bp.post("/clusters")
@requires("cluster.create")
def create_cluster():
    data = json_body()
    ctx = context()
    remote = {key: data[key] for key in clusters.REMOTE_FIELDS if key in data}
    new = clusters.create_cluster(ctx, field(data, "name", str), field(data, "profile", str), remote)
    ctx.session.commit()
    return {**cluster_json(new.cluster), "read_token": new.read_token, "agent_token": new.agent_token}, 201


@bp.get("/clusters/<cluster>")
@requires("cluster.read")
def get_cluster(cluster: str):
    return cluster_json(clusters.get_cluster(context(), cluster))


@bp.patch("/clusters/<cluster>")
@requires("cluster.update")
def update_cluster(cluster: str):
    data = json_body()
    unknown = set(data) - {"profile", "secret_paths", *clusters.REMOTE_FIELDS}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; "
                             "a cluster has profile, remote_url (with remote_username, remote_password, "
                             "remote_ssh_key, remote_ssh_passphrase, remote_known_hosts) and secret_paths")
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    field(data, "profile", str, required=False)
    if "secret_paths" in data:
        isolation.set_cluster_secret_paths(ctx, row, data.pop("secret_paths"))
    if data:
        clusters.update_cluster(ctx, row, data)
    ctx.session.commit()
    return cluster_json(row)


@bp.delete("/clusters/<cluster>")
@requires("cluster.delete")
def delete_cluster(cluster: str):
    """Delete the cluster; its repository is archived in the data directory, never served again."""
    ctx = context()
    archive = clusters.delete_cluster(ctx, clusters.get_cluster(ctx, cluster, "cluster.delete"))  # commits
    return {"deleted": cluster, "repository": "archived" if archive else "absent",
            "archive": ctx.repos.shown(archive) if archive else None}


@bp.post("/clusters/<cluster>/tokens/<kind>")
@requires("cluster.update")
def rotate_cluster_token(cluster: str, kind: str):
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    token = clusters.rotate_token(ctx, row, kind)
    ctx.session.commit()
    return {"cluster": row.name, "kind": kind, "token": token}, 201


# --- workspaces -------------------------------------------------------------------------------


@bp.get("/clusters/<cluster>/workspaces")
@requires("workspace.read")
def list_workspaces(cluster: str):
    ctx = context()
    row = _visible_cluster(ctx.session, cluster)
    return {"workspaces": [workspace_json(w) for w in workspaces.list_workspaces(ctx, row)]}


def _visible_cluster(session, name: str) -> Cluster:
    row = session.scalar(select(Cluster).where(Cluster.tenant_id == g.principal.tenant_id, Cluster.name == name))
    # a cluster the caller has no role in is as absent as one that does not exist
    if row is None or not clusters.sees_cluster(g.principal, row):
        raise NotFound(f'no cluster "{name}"')
    return row


@bp.post("/clusters/<cluster>/workspaces")
@requires("workspace.create")
def create_workspace(cluster: str):
    data = json_body()
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "workspace.create")
    workspace = workspaces.create_workspace(ctx, row, data)
    ctx.session.commit()
    return workspace_json(workspace), 201


@bp.get("/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.read")
def get_workspace(cluster: str, workspace: str):
    return workspace_json(workspaces.find_workspace(context(), cluster, workspace))


@bp.patch("/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.update")
def update_workspace(cluster: str, workspace: str):
    data = json_body()
    unknown = set(data) - {"environment", "labels", "quota", "secret_paths"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    ctx = context()
    row = workspaces.find_workspace(ctx, cluster, workspace, "workspace.update")
    workspaces.update_workspace(ctx, row, data)
    ctx.session.commit()
    return workspace_json(row)


@bp.delete("/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.delete")
def delete_workspace(cluster: str, workspace: str):
    ctx = context()
    workspaces.delete_workspace(ctx, workspaces.find_workspace(ctx, cluster, workspace, "workspace.delete"))
    ctx.session.commit()
    return "", 204


# --- host claims (gitops.isolation) ----------------------------------------------------------------


def host_claim_json(claim, workspace: str) -> dict:
    return {"host": claim.host, "workspace": workspace, "claimed_by": claim.claimed_by,
            "claimed_at": iso(claim.claimed_at)}


@bp.get("/clusters/<cluster>/hosts")
@requires("cluster.read")
def list_host_claims(cluster: str):
    """The hosts routed in the cluster, each held by one workspace"""
    ctx = context()
    row = clusters.get_cluster(ctx, cluster)
    return {"hosts": [host_claim_json(claim, name) for claim, name in isolation.list_claims(ctx, row)]}


@bp.put("/clusters/<cluster>/hosts/<host>")
@requires("cluster.update")
def move_host_claim(cluster: str, host: str):
    """Give a host to a workspace of the cluster (claim it, or move it from the workspace holding it)"""
    data = json_body()
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    claim, created = isolation.move_claim(ctx, row, host, field(data, "workspace", str))
    ctx.session.commit()
    return host_claim_json(claim, data["workspace"]), 201 if created else 200


@bp.delete("/clusters/<cluster>/hosts/<host>")
@requires("cluster.update")
def release_host_claim(cluster: str, host: str):
    """Release a host: the next workspace to route it claims it"""
    ctx = context()
    isolation.release_claim(ctx, clusters.get_cluster(ctx, cluster, "cluster.update"), host)
    ctx.session.commit()
    return "", 204


# --- role bindings ----------------------------------------------------------------------------


@bp.get("/role-bindings")
@requires("binding.read")
def list_bindings():
    return {"role_bindings": [binding_json(b) for b in accounts.list_bindings(context())]}


@bp.post("/role-bindings")
@requires("binding.manage")
def create_binding():
    data = json_body()
    ctx = context()
    binding = accounts.create_binding(ctx, field(data, "role", str), field(data, "subject_kind", str, default="user"),
                                      field(data, "subject", str), scope_from(data))
    ctx.session.commit()
    return binding_json(binding), 201


@bp.delete("/role-bindings/<int:binding_id>")
@requires("binding.manage")
def delete_binding(binding_id: int):
    ctx = context()
    accounts.delete_binding(ctx, accounts.get_binding(ctx, binding_id))
    ctx.session.commit()
    return "", 204


# --- API tokens -------------------------------------------------------------------------------


@bp.get("/tokens")
@requires(AUTHENTICATED)
def list_tokens():
    """API tokens: a tenant-admin's, every one of the tenant; a login's, the user's; any other token, itself"""
    return {"tokens": [token_json(t) for t in accounts.list_tokens(context())]}


@bp.post("/tokens")
@requires(AUTHENTICATED)
def create_token():
    data = json_body()
    ctx = context()
    new = accounts.create_token(ctx, field(data, "name", str), field(data, "role", str), scope_from(data),
                                field(data, "expires_in_days", int, required=False, default=90))
    ctx.session.commit()
    return {**token_json(new.token), "token": new.secret}, 201


@bp.delete("/tokens/<int:token_id>")
@requires(AUTHENTICATED)
def revoke_token(token_id: int):
    """Revoke an API token the caller may see (GET /tokens lists them); a token may always revoke itself"""
    ctx = context()
    accounts.revoke_token(ctx, accounts.get_token(ctx, token_id))
    ctx.session.commit()
    return "", 204


# --- apps ----------------------------------------------------------------------------------


def _spec_input() -> tuple[str, str, dict]:
    """The spec text of a deploy request, its name for error messages, and the options."""
    if request.mimetype in YAML_TYPES:
        raw = request.get_data(cache=False)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})") from exc
        options = {"dry_run": argument("dry_run"), "source_commit": argument("source_commit"),
                   "source": argument("source")}
        return text, argument("filename"), options
    data = json_body()
    spec = data.get("spec")
    if isinstance(spec, str):
        text = spec
    elif isinstance(spec, dict):
        # ensure_ascii=False: YAML reads "\ud83d\ude00" as two lone surrogates, not one emoji
        text = json.dumps(spec, indent=2, ensure_ascii=False)
    elif isinstance(spec, list) and spec and all(isinstance(s, dict) for s in spec):
        _refuse_spec_count(len(spec))  # before thousands of them are serialized
        text = "\n---\n".join(json.dumps(s, indent=2, ensure_ascii=False) for s in spec)
    else:
        raise InvalidRequest('"spec" must be the spec as YAML text, a spec object, or a list of spec objects')
    options = {"dry_run": field(data, "dry_run", bool, required=False, default=False),
               "source_commit": field(data, "source_commit", str, required=False),
               "source": field(data, "source", str, required=False, default="api")}
    return text, field(data, "filename", str, required=False, default="<request>"), options


def _check_spec_limits(text: str, filename: str) -> None:
    """Refuse (413) a deploy over MAX_SPECS_PER_REQUEST specs or MAX_SPEC_BYTES in one, before parsing any.

    Every spec of a request is parsed, validated and rendered before anything is decided:
    8,000 specs in one 1 MiB body held a worker for 29 s and grew it by 80 MB. The specs
    are counted and measured by a scan for document markers (renderer.yamlio.document_spans),
    in milliseconds whatever the body holds.
    """
    spans = document_spans(text)
    _refuse_spec_count(len(spans))
    limit = current_app.config["MAX_SPEC_BYTES"]
    for number, span in enumerate(spans, 1):
        if span.size > limit:
            raise RequestEntityTooLarge(
                f"{filename}:{span.line}: spec {number} is {span.size} bytes, over the {limit} bytes one spec may "
                "have (MAX_SPEC_BYTES); make it smaller")


def _refuse_spec_count(count: int) -> None:
    limit = current_app.config["MAX_SPECS_PER_REQUEST"]
    if count > limit:
        raise RequestEntityTooLarge(
            f"the request holds {count} specs, over the {limit} one request may hold (MAX_SPECS_PER_REQUEST); "
            "split them into several requests")


@bp.put("/apps")
@requires("app.deploy")
def deploy_apps():
    text, filename, options = _spec_input()
    _check_spec_limits(text, filename)
    if options["source"] not in SOURCES:
        raise InvalidRequest(f"source must be one of {', '.join(SOURCES)}")
    if options["source_commit"] is not None and len(options["source_commit"]) > 255:
        raise InvalidRequest("source_commit is at most 255 characters")
    ctx = context()
    if options["dry_run"]:
        changes = deploy.dry_run(ctx, text, filename=filename)
        return {"dry_run": True, "apps": [
            {"app": f"{c.cluster}:{c.workspace}/{c.app}", "action": c.action, "diff": c.diff, "notes": c.notes}
            for c in changes]}
    versions = deploy.deploy(ctx, text, filename=filename, source=options["source"],
                             source_commit=options["source_commit"])
    status = 202 if any(v.state == "pending" for v in versions) else 200
    return {"dry_run": False, "versions": [version_json(v, with_spec=False) for v in versions]}, status


@bp.get("/apps")
@requires("app.read")
def list_apps():
    rows = reads.list_apps(context(), cluster=argument("cluster"), workspace=argument("workspace"),
                            include_deleted=argument("include_deleted"), limit=argument("limit"),
                            after=argument("after"))
    apps = [app_json(*row) for row in rows]
    next_after = f"{apps[-1]['cluster']}/{apps[-1]['workspace']}/{apps[-1]['name']}" if apps else None
    return {"apps": apps, "next": next_after if len(apps) == argument("limit") else None}


def _app(cluster: str, workspace: str, app: str, permission: str = "app.read") -> Application:
    return reads.get_app(context(), cluster, workspace, app, permission)


@bp.get("/apps/<cluster>/<workspace>/<app>")
@requires("app.read")
def get_app(cluster: str, workspace: str, app: str):
    row = _app(cluster, workspace, app)
    latest = reads.list_versions(context(), row, limit=1)
    live = _live(row, latest)
    return {**app_json(row, row.workspace, row.workspace.cluster),
            "latest_version": version_json(latest[0], live=live.get(latest[0].number)) if latest else None}


@bp.delete("/apps/<cluster>/<workspace>/<app>")
@requires("app.delete")
def delete_app(cluster: str, workspace: str, app: str):
    version = deploy.delete_app(context(), _app(cluster, workspace, app, "app.delete"))
    return version_json(version, with_spec=False), 202 if version.state == "pending" else 200


@bp.get("/apps/<cluster>/<workspace>/<app>/versions")
@requires("app.read")
def list_versions(cluster: str, workspace: str, app: str):
    row = _app(cluster, workspace, app)
    versions = reads.list_versions(context(), row, limit=argument("limit"), before=argument("before"))
    live = _live(row, versions)
    return {"versions": [version_json(v, with_spec=False, live=live.get(v.number)) for v in versions]}


@bp.get("/apps/<cluster>/<workspace>/<app>/versions/<int:number>")
@requires("app.read")
def get_version(cluster: str, workspace: str, app: str, number: int):
    row = _app(cluster, workspace, app)
    version = reads.get_version(context(), row, number)
    return version_json(version, live=_live(row, [version]).get(version.number))


@bp.get("/apps/<cluster>/<workspace>/<app>/diff")
@requires("app.read")
def diff_versions(cluster: str, workspace: str, app: str):
    older, newer = argument("from"), argument("to")
    return reads.version_diff(context(), _app(cluster, workspace, app), older, newer)


@bp.post("/apps/<cluster>/<workspace>/<app>/rollback")
@requires("app.deploy")
def rollback_app(cluster: str, workspace: str, app: str):
    data = json_body()
    version = deploy.rollback(context(), _app(cluster, workspace, app), field(data, "version", int),
                              source=source_field(data))
    return version_json(version, with_spec=False), 202 if version.state == "pending" else 201


@bp.post("/apps/<cluster>/<workspace>/<app>/promote")
@requires("app.deploy")
def promote_app(cluster: str, workspace: str, app: str):
    data = json_body()
    version = deploy.promote(context(), _app(cluster, workspace, app), target=field(data, "target", str),
                             number=field(data, "version", int, required=False),
                             name=field(data, "name", str, required=False),
                             overrides=field(data, "overrides", dict, required=False),
                             source=source_field(data))
    return version_json(version, with_spec=False), 202 if version.state == "pending" else 201


# --- live status, commands, job runs -------------------------------------------------------------


def _status_settings() -> status.StatusSettings:
    return status.StatusSettings.from_config(current_app.config)


@bp.get("/clusters/<cluster>/status")
@requires("cluster.read")
def cluster_status(cluster: str):
    """The cluster's agent: connectivity, what it last said, counts of what it follows"""
    ctx = context()
    return status.cluster_status(ctx.session, clusters.get_cluster(ctx, cluster), _status_settings())


@bp.get("/apps/<cluster>/<workspace>/<app>/status")
@requires("app.read")
def app_status(cluster: str, workspace: str, app: str):
    """Sync, health and the live version, each recent version's status, the pods' reasons"""
    row = _app(cluster, workspace, app)
    versions = reads.list_versions(context(), row, limit=argument("versions"))
    return status.app_status(db_session(), context().repos.open(row.workspace.cluster), row, _status_settings(),
                             versions)


@bp.get("/apps/<cluster>/<workspace>/<app>/status/history")
@requires("app.read")
def app_status_history(cluster: str, workspace: str, app: str):
    """Changes of the app's sync, health, revision or message, newest first"""
    row = _app(cluster, workspace, app)
    events = status.status_history(db_session(), row, limit=argument("limit"), before=argument("before"))
    return {"events": [{"id": e.id, "at": iso(e.at), "sync": e.sync, "health": e.health, "revision": e.revision,
                        "message": e.message} for e in events]}


def _ring(cluster_id: int) -> None:
    plane().bell.ring(cluster_id)  # a long-poll of this cluster's agent in this process takes it now


@bp.post("/apps/<cluster>/<workspace>/<app>/commands")
@requires("app.read")
def create_command(cluster: str, workspace: str, app: str):
    """Send the app's agent a command: refresh, restart (app.deploy) or logs (app.read)"""
    data = json_body()
    ctx = context()
    row = _app(cluster, workspace, app)
    command = commands.enqueue_command(ctx, row, field(data, "type", str),
                                       field(data, "params", dict, required=False, default={}))
    ctx.session.commit()
    _ring(command.cluster_id)
    return commands.command_json(command), 201


@bp.get("/commands/<int:command_id>")
@requires("app.read")
def get_command(command_id: int):
    """A command and, once the agent answered, its result"""
    return commands.command_json(commands.get_command(context(), command_id))


@bp.post("/apps/<cluster>/<workspace>/<app>/runs")
@requires("app.deploy")
def create_run(cluster: str, workspace: str, app: str):
    """Run a job now, with params"""
    data = json_body()
    ctx = context()
    row = _app(cluster, workspace, app, "app.deploy")
    run = commands.trigger_run(ctx, row, field(data, "params", dict, required=False, default={}))
    ctx.session.commit()
    _ring(row.workspace.cluster_id)
    return commands.run_json(run, ctx.session.get(Command, run.command_id)), 201


@bp.get("/apps/<cluster>/<workspace>/<app>/runs")
@requires("app.read")
def list_runs(cluster: str, workspace: str, app: str):
    """A job's runs with their state, newest first"""
    row = _app(cluster, workspace, app)
    return {"runs": [commands.run_json(run, command) for run, command in
                     commands.list_runs(db_session(), row, limit=argument("limit"))]}


@bp.get("/openapi.json")
@public("the API's description; it holds no data")
def openapi():
    from webapp.openapi import document

    return document(current_app)


__all__ = ["bp"]
