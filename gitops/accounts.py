"""People and their rights: tenants, users, passwords, principals, role bindings.

A request is made by a Principal (gitops.policy): the user's role bindings
(their own and those of their identity-provider groups) turned into grants,
narrowed by the API token's own role and scope when one was used (the tokens
themselves are gitops.tokens).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from contract.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from gitops.audit import record
from gitops.clusters import token_matches
from gitops.models import ApiToken, Cluster, RoleBinding, SpecRepo, Tenant, User, Workspace, utcnow
from gitops.policy import Grant, Principal, Scope, check_binding, may_grant
from gitops.service_context import Context
from gitops.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)

MIN_PASSWORD = 12


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant ``name``, created if missing. Every worker of a server calls this as it starts,
    at the same moment when they fork from one master: the one that loses the race reads the
    winner's row instead of failing to boot."""
    query = select(Tenant).where(Tenant.name == name)
    tenant = session.scalar(query)
    if tenant is None:
        try:
            with session.begin_nested():
                tenant = Tenant(name=name)
                session.add(tenant)
        except IntegrityError:
            tenant = session.scalar(query)
    return tenant


# --- users ----------------------------------------------------------------------------------


def set_password(user: User, password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD} characters")
    user.password_hash = generate_password_hash(password)


def create_local_user(session: Session, tenant: Tenant, username: str, password: str,
                      display_name: str | None = None, email: str | None = None) -> User:
    if not isinstance(username, str) or not username or len(username) > 255 or username != username.strip():
        raise InvalidRequest("username must be a non-empty string without surrounding spaces")
    for field_name, value in (("display_name", display_name), ("email", email)):
        # the column's own length: PostgreSQL refuses a longer value (a 500), SQLite would keep it
        limit = User.__table__.c[field_name].type.length
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise InvalidRequest(f"{field_name} must be a string of at most {limit} characters")
    if session.scalar(select(User.id).where(User.tenant_id == tenant.id, User.username == username)):
        raise Conflict(f'user "{username}" already exists')
    user = User(tenant_id=tenant.id, username=username, display_name=display_name, email=email)
    set_password(user, password)
    session.add(user)
    session.flush()
    return user


def list_users(ctx: Context) -> list[User]:
    ctx.principal.require("user.manage", Scope(ctx.principal.tenant_id))
    return list(ctx.session.scalars(select(User).where(User.tenant_id == ctx.principal.tenant_id)
                                    .order_by(User.username)))


def create_user(ctx: Context, username: Any, password: Any, display_name: Any = None, email: Any = None) -> User:
    """A local user of the caller's tenant, who logs in with ``password``."""
    ctx.principal.require("user.manage", Scope(ctx.principal.tenant_id))
    tenant = ctx.session.get(Tenant, ctx.principal.tenant_id)
    user = create_local_user(ctx.session, tenant, username, password, display_name, email)
    record(ctx.session, ctx.principal, "user.create", user.username)
    return user


# What the operator does at the machine (``shipyard up``, ``shipyard admin``): no caller is
# logged in, so the audit event names the user the change is about, and ``by`` what made it.


def create_first_admin(session: Session, tenant: Tenant, username: str, password: str, *, by: str) -> Principal:
    """The tenant's first local user, a tenant-admin; returns them as a principal, to act as."""
    user = create_local_user(session, tenant, username, password, display_name="Administrator")
    session.add(RoleBinding(tenant_id=tenant.id, role="tenant-admin", subject_kind="user", subject=username,
                            created_by=by))
    session.flush()
    principal = principal_for(session, user)
    record(session, principal, "user.create", username, {"by": by, "role": "tenant-admin"})
    return principal


def reset_password(session: Session, tenant_name: str, username: str, password: str, *, by: str) -> User:
    """Give the local user ``username`` a new password; it replaces the old one at once."""
    user = session.scalar(select(User).join(Tenant).where(Tenant.name == tenant_name, User.username == username))
    if user is None or user.oidc_subject is not None:
        raise NotFound(f'no local user "{username}" in tenant "{tenant_name}"')
    set_password(user, password)
    record(session, principal_for(session, user), "user.reset-password", username, {"by": by})
    return user


_dummy_hash: str | None = None
_dummy_hash_lock = threading.Lock()


def _dummy_password_hash() -> str:
    """A fixed hash, so that an unknown username costs as much as a wrong password.

    Made on first use, not at import: hashing costs scrypt's time and 32 MiB, which every
    process importing this module (each command line run, each test) paid for a login it
    might never check. The lock keeps two first logins from both paying.
    """
    global _dummy_hash
    if _dummy_hash is None:
        with _dummy_hash_lock:
            if _dummy_hash is None:
                _dummy_hash = generate_password_hash("not a real password")
    return _dummy_hash


def check_password(session: Session, tenant_name: str, username: str, password: str) -> User | None:
    user = session.scalar(
        select(User).join(Tenant).where(Tenant.name == tenant_name, User.username == username)
    )
    if user is None or user.password_hash is None or not user.active:
        check_password_hash(_dummy_password_hash(), password or "")
        return None
    if not check_password_hash(user.password_hash, password or ""):
        return None
    user.last_login_at = utcnow()
    return user


def oidc_user(session: Session, tenant: Tenant, issuer: str, claims: dict[str, Any], groups: list[str]) -> User:
    """The user an OIDC login stands for, created on first login; groups refreshed every time."""
    subject = str(claims["sub"])
    user = session.scalar(select(User).where(
        User.tenant_id == tenant.id, User.oidc_issuer == issuer, User.oidc_subject == subject))
    if user is None:
        base = str(claims.get("preferred_username") or claims.get("email") or subject)[:200]
        username = base
        taken = session.scalar(select(User.id).where(User.tenant_id == tenant.id, User.username == username))
        if taken:
            username = f"{base}@{issuer.split('//')[-1].split('/')[0]}"[:255]
        user = User(tenant_id=tenant.id, username=username, oidc_issuer=issuer, oidc_subject=subject)
        session.add(user)
    user.display_name = claims.get("name") or user.display_name
    user.email = claims.get("email") or user.email
    user.groups = sorted({str(g) for g in groups})
    user.last_login_at = utcnow()
    session.flush()
    return user


# --- principals -----------------------------------------------------------------------------


def grants_for(session: Session, user: User) -> tuple[Grant, ...]:
    return _grants(session, user.tenant_id, user.username, user.groups)


def _grants(session: Session, tenant_id: int, username: str, groups: list[str] | None) -> tuple[Grant, ...]:
    binding = RoleBinding.__table__.c
    query = select(binding.role, binding.tenant_id, binding.cluster_id, binding.workspace_id).where(
        binding.tenant_id == tenant_id,
        or_(
            (binding.subject_kind == "user") & (binding.subject == username),
            (binding.subject_kind == "group") & binding.subject.in_(list(groups or [])),
        ),
    )
    return tuple(Grant(row.role, Scope(row.tenant_id, row.cluster_id, row.workspace_id))
                 for row in session.execute(query))


def principal_for(session: Session, user: User, token: ApiToken | None = None) -> Principal:
    return Principal(
        tenant_id=user.tenant_id,
        user_id=user.id,
        name=user.username,
        grants=grants_for(session, user),
        token=Grant(token.role, Scope(token.tenant_id, token.cluster_id, token.workspace_id)) if token else None,
        token_id=token.id if token else None,
        groups=tuple(user.groups or ()),
    )


class PrincipalCache:
    """Principals of recently presented API tokens, each kept for ``ttl`` seconds.

    A CI pipeline or the dashboard calls the API in bursts with one token; with the cache its
    token and role bindings are read once a second, not on every call. The key is a SHA-256 of
    the token (the database holds no more than that either). Staleness is bounded by ``ttl``;
    whoever changes tokens or bindings in this process calls ``clear``, and an entry never
    outlives its token's expiry.
    """

    # A revoked token keeps working in another process until its entry there expires: the
    # promise is "within a second", so a longer setting is cut to this.
    MAX_TTL = 1.0

    def __init__(self, ttl: float = 1.0, size: int = 4096):
        if ttl > self.MAX_TTL:
            log.warning("TOKEN_CACHE_SECONDS=%s is above %s s; using %s s, so a revoked token stops working "
                        "in every process within a second", ttl, self.MAX_TTL, self.MAX_TTL)
            ttl = self.MAX_TTL
        self.ttl, self.size = ttl, size
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(presented: str) -> bytes:
        return hashlib.sha256(presented.encode()).digest()

    def get(self, presented: str) -> Principal | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(self._key(presented))
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def put(self, presented: str, principal: Principal, expires_at: dt.datetime | None) -> None:
        if self.ttl <= 0:
            return
        until = time.monotonic() + self.ttl
        if expires_at is not None:
            until = min(until, time.monotonic() + (expires_at - utcnow()).total_seconds())
        with self._lock:
            if len(self._entries) >= self.size:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.size:
                    self._entries.clear()
            self._entries[self._key(presented)] = (until, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries = {}


def principal_from_token(session: Session, presented: str,
                         record_use: Callable[[int], None] | None = None,
                         cache: PrincipalCache | None = None) -> Principal | None:
    """The principal behind a bearer token, or None for a wrong, expired or revoked one.

    Reading a token writes nothing to ``session`` (it may be a read-only one); when the
    token's last use is over a minute old, ``record_use(token id)`` is called to record it.
    Every API call comes through here, so it reads plain columns (token and user in one
    SELECT, the role bindings in another) rather than ORM objects.
    """
    if not presented.startswith(TOKEN_PREFIX):
        return None
    if cache is not None and (known := cache.get(presented)) is not None:
        return known
    token_id, _, secret = presented[len(TOKEN_PREFIX):].partition("_")
    if not token_id or not secret:
        return None
    token, user = ApiToken.__table__.c, User.__table__.c
    row = session.execute(
        select(token.id, token.secret_hash, token.role, token.tenant_id, token.cluster_id, token.workspace_id,
               token.revoked_at, token.expires_at, token.last_used_at, user.id.label("user_id"),
               user.tenant_id.label("user_tenant_id"), user.username, user.groups, user.active)
        .join_from(ApiToken.__table__, User.__table__, user.id == token.user_id)
        .where(token.token_id == token_id)).first()
    if row is None or not token_matches(secret, row.secret_hash):
        return None
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if not row.active:
        return None
    if record_use is not None and (row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1)):
        record_use(row.id)  # coarse, so a busy CI token does not write on every call
    principal = Principal(
        tenant_id=row.user_tenant_id,
        user_id=row.user_id,
        name=row.username,
        grants=_grants(session, row.user_tenant_id, row.username, row.groups),
        token=Grant(row.role, Scope(row.tenant_id, row.cluster_id, row.workspace_id)),
        token_id=row.id,
        groups=tuple(row.groups or ()),
    )
    if cache is not None:
        cache.put(presented, principal, row.expires_at)
    return principal


def record_token_use(session: Session, token_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


# --- scopes by name ---------------------------------------------------------------------------


def resolve_scope(session: Session, tenant_id: int, cluster: str | None, workspace: str | None) -> Scope:
    if workspace and not cluster:
        raise InvalidRequest("a workspace scope needs its cluster too")
    if not cluster:
        return Scope(tenant_id)
    cluster_row = session.scalar(select(Cluster).where(Cluster.tenant_id == tenant_id, Cluster.name == cluster))
    if cluster_row is None:
        raise NotFound(f'no cluster "{cluster}"')
    if not workspace:
        return Scope(tenant_id, cluster_row.id)
    workspace_row = session.scalar(
        select(Workspace).where(Workspace.cluster_id == cluster_row.id, Workspace.name == workspace))
    if workspace_row is None:
        raise NotFound(f'no workspace "{cluster}:{workspace}"')
    return Scope(tenant_id, cluster_row.id, workspace_row.id)


def scope_names(session: Session, scope: Scope) -> dict[str, str | None]:
    cluster = session.get(Cluster, scope.cluster_id) if scope.cluster_id else None
    workspace = session.get(Workspace, scope.workspace_id) if scope.workspace_id else None
    return {"cluster": cluster.name if cluster else None, "workspace": workspace.name if workspace else None}


# --- role bindings ------------------------------------------------------------------------------


def _binding_scope(binding: RoleBinding) -> Scope:
    return Scope(binding.tenant_id, binding.cluster_id, binding.workspace_id)


def list_bindings(ctx: Context) -> list[RoleBinding]:
    rows = ctx.session.scalars(
        select(RoleBinding).where(RoleBinding.tenant_id == ctx.principal.tenant_id).order_by(RoleBinding.id)
    )
    return [b for b in rows if _may_see_binding(ctx.principal, _binding_scope(b))]


def _may_see_binding(principal: Principal, scope: Scope) -> bool:
    if scope.level == "tenant":
        return principal.can("tenant.manage", scope)
    if scope.level == "cluster":
        return principal.can("cluster.update", scope)
    return principal.can("binding.read", scope)


def create_binding(ctx: Context, role: Any, subject_kind: Any, subject: Any, scope: Scope) -> RoleBinding:
    session, principal = ctx.session, ctx.principal
    problem = check_binding(role, scope) if isinstance(role, str) else "role must be a string"
    if problem:
        raise InvalidRequest(problem)
    if subject_kind not in ("user", "group", "repo"):
        raise InvalidRequest('subject_kind must be "user", "group" or "repo" (a spec repository)')
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidRequest("subject must be a username, a group name or a spec repository's name")
    if subject_kind == "repo" and session.scalar(select(SpecRepo.id).where(
            SpecRepo.tenant_id == principal.tenant_id, SpecRepo.name == subject)) is None:
        raise NotFound(f'no spec repository "{subject}"')
    if not may_grant(principal, role, scope):
        raise PermissionDenied(f"{principal.name} may not grant {role} at this scope")
    binding = RoleBinding(tenant_id=principal.tenant_id, role=role, subject_kind=subject_kind, subject=subject,
                          cluster_id=scope.cluster_id, workspace_id=scope.workspace_id, created_by=principal.name)
    session.add(binding)
    session.flush()
    record(session, principal, "binding.create", f"{subject_kind}:{subject}",
           {"role": role, **scope_names(session, scope)})
    return binding


def get_binding(ctx: Context, binding_id: int) -> RoleBinding:
    session, principal = ctx.session, ctx.principal
    # ids beyond the integer column's range are no binding (and must not overflow the driver)
    binding = session.get(RoleBinding, binding_id) if 1 <= binding_id < 2**31 else None
    if binding is None or binding.tenant_id != principal.tenant_id or not _may_see_binding(
            principal, _binding_scope(binding)):
        raise NotFound(f"no role binding {binding_id}")
    return binding


def delete_binding(ctx: Context, binding: RoleBinding) -> None:
    session, principal = ctx.session, ctx.principal
    if not may_grant(principal, binding.role, _binding_scope(binding)):
        raise PermissionDenied(f"{principal.name} may not remove a {binding.role} binding at this scope")
    record(session, principal, "binding.delete", f"{binding.subject_kind}:{binding.subject}",
           {"role": binding.role, **scope_names(session, _binding_scope(binding))})
    session.delete(binding)


__all__ = ["PrincipalCache", "ensure_tenant", "create_local_user", "list_users", "create_user", "create_first_admin", "reset_password", "set_password", "check_password", "oidc_user", "principal_for", "principal_from_token", "record_token_use", "resolve_scope", "scope_names", "list_bindings", "create_binding", "get_binding", "delete_binding"]
