"""API tokens: issued to a person for scripts and CI, each narrowed to a role and a scope.

Tokens look like ``shy_<id>_<secret>``; only the id and a SHA-256 of the
secret are stored, so a token is shown once, when it is created.
gitops.accounts turns a presented token into the Principal it stands for.

Which tokens a caller may list and revoke (least privilege: a token narrowed
to a role must not reach the wider tokens of its own user):

=================================  =============================================
caller                             sees and revokes
=================================  =============================================
a tenant-admin, logged in or       every token of the tenant
through a tenant-admin token
anyone else, logged in             their own tokens
any other API token                itself only (a workspace-viewer token of a
                                   tenant-admin cannot revoke that admin's other
                                   tokens, nor list their names, roles, scopes)
=================================  =============================================

Tokens never create tokens (``create_token``): a person logs in for that.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from contract.errors import InvalidRequest, NotFound, PermissionDenied
from sqlalchemy import select
from sqlalchemy.orm import Session

from gitops.audit import record
from gitops.clusters import hash_token
from gitops.models import ApiToken, utcnow
from gitops.policy import ROLES, Principal, Scope, applies_at, check_binding
from gitops.service_context import Context

TOKEN_PREFIX = "shy_"
MAX_TOKEN_DAYS = 366

@dataclass
class NewToken:
    token: ApiToken
    secret: str  # the full token; shown once


def create_token(ctx: Context, name: Any, role: Any, scope: Scope, expires_in_days: Any = 90) -> NewToken:
    """A token for the caller, narrowed to ``role`` at ``scope`` (which the caller must hold)."""
    session, principal = ctx.session, ctx.principal
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidRequest("a token needs a name (what it is for)")
    problem = check_binding(role, scope) if isinstance(role, str) else "role must be a string"
    if problem:
        raise InvalidRequest(problem)
    if not isinstance(expires_in_days, int) or isinstance(expires_in_days, bool) or not (
            1 <= expires_in_days <= MAX_TOKEN_DAYS):
        raise InvalidRequest(f"expires_in_days must be a whole number from 1 to {MAX_TOKEN_DAYS}")
    if principal.token_id is not None:
        raise PermissionDenied("API tokens cannot create tokens; log in to create one")
    if not all(principal.can(p, scope) for p in ROLES[role] if applies_at(p, scope)):
        raise PermissionDenied(f"{principal.name} does not hold {role} there, so cannot give it to a token")
    new = issue_token(session, principal.tenant_id, principal.user_id, name.strip(), role, scope, expires_in_days)
    record(session, principal, "token.create", name.strip(), {"role": role, "token": new.token.id})
    return new


def issue_token(session: Session, tenant_id: int, user_id: int, name: str, role: str, scope: Scope,
                expires_in_days: int) -> NewToken:
    """Store a new token (no questions asked: callers check who may have it)."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    token = ApiToken(
        tenant_id=tenant_id, user_id=user_id, name=name, token_id=token_id,
        secret_hash=hash_token(secret), role=role, cluster_id=scope.cluster_id, workspace_id=scope.workspace_id,
        expires_at=utcnow() + dt.timedelta(days=expires_in_days),
    )
    session.add(token)
    session.flush()
    return NewToken(token, f"{TOKEN_PREFIX}{token_id}_{secret}")


def list_tokens(ctx: Context) -> list[ApiToken]:
    """The tokens the caller may see (the table in this module's docstring)."""
    session, principal = ctx.session, ctx.principal
    query = select(ApiToken).where(ApiToken.tenant_id == principal.tenant_id)
    if not principal.is_tenant_admin():
        query = query.where(ApiToken.id == principal.token_id if principal.token_id is not None
                            else ApiToken.user_id == principal.user_id)
    return list(session.scalars(query.order_by(ApiToken.id)))


def _sees_token(principal: Principal, token: ApiToken) -> bool:
    if token.tenant_id != principal.tenant_id:
        return False
    if principal.is_tenant_admin():
        return True
    if principal.token_id is not None:
        return token.id == principal.token_id
    return token.user_id == principal.user_id


def get_token(ctx: Context, token_id: int) -> ApiToken:
    """A token the caller may see and revoke; NotFound for any other, as for one that does not exist."""
    session, principal = ctx.session, ctx.principal
    token = session.get(ApiToken, token_id) if 1 <= token_id < 2**31 else None  # as in get_binding
    if token is None or not _sees_token(principal, token):
        if principal.token_id is not None and not principal.is_tenant_admin():
            # said whether or not the token exists, so it tells the caller nothing about other tokens
            raise NotFound(f"no token {token_id} for this API token: an API token sees and revokes only itself "
                           "unless it is a tenant-admin token; log in to manage your other tokens")
        raise NotFound(f"no token {token_id}")
    return token


def revoke_token(ctx: Context, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(ctx.session, ctx.principal, "token.revoke", token.name, {"token": token.id})


__all__ = ["create_token", "issue_token", "list_tokens", "get_token", "revoke_token", "NewToken", "TOKEN_PREFIX", "MAX_TOKEN_DAYS"]
