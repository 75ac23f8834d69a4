"""Who is calling, users, the audit log, the tenant's settings, role bindings and API tokens."""

from __future__ import annotations

from flask import g

from contract.errors import InvalidRequest
from gitops import accounts, audit, clusters, tokens
from gitops.models import Tenant, User
from webapp.api.blueprint import bp
from webapp.api.requests import field, json_body, scope_from
from webapp.api.shapes import binding_json, iso, token_json, user_json
from webapp.auth import AUTHENTICATED, requires
from webapp.plane import context, db_session
from webapp.query_parameters import argument

# --- me, users, audit ------------------------------------------------------------------------


@bp.get("/me")
@requires(AUTHENTICATED)
def me():
    principal = g.principal
    user = db_session().get(User, principal.user_id)
    grants = [{"role": grant.role, **accounts.scope_names(db_session(), grant.scope)} for grant in principal.grants]
    return {"user": user_json(user), "tenant": user.tenant.name, "grants": grants,
            "via_token": principal.token_id is not None, "token_id": principal.token_id}


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
    return {"tokens": [token_json(t) for t in tokens.list_tokens(context())]}


@bp.post("/tokens")
@requires(AUTHENTICATED)
def create_token():
    data = json_body()
    ctx = context()
    new = tokens.create_token(ctx, field(data, "name", str), field(data, "role", str), scope_from(data),
                                field(data, "expires_in_days", int, required=False, default=90))
    ctx.session.commit()
    return {**token_json(new.token), "token": new.secret}, 201


@bp.delete("/tokens/<int:token_id>")
@requires(AUTHENTICATED)
def revoke_token(token_id: int):
    """Revoke an API token the caller may see (GET /tokens lists them); a token may always revoke itself"""
    ctx = context()
    tokens.revoke_token(ctx, tokens.get_token(ctx, token_id))
    ctx.session.commit()
    return "", 204
