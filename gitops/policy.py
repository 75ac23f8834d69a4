"""Who may do what: roles, permissions, scopes. The one place that decides.

Roles are bound to a user or an identity-provider group at a scope:

=================  ==========  ===========================================================
role               bound at    may
=================  ==========  ===========================================================
tenant-admin       tenant      everything in the tenant: clusters, users, role bindings,
                               every workspace and app, the audit log, others' tokens
cluster-admin      cluster     change the cluster's profile and tokens, create and manage
                               its workspaces and their role bindings, deploy anything in it
cluster-viewer     cluster     read the cluster, its workspaces, apps and versions
workspace-admin    workspace   change the workspace, manage its role bindings, deploy,
                               roll back, promote and delete its apps
workspace-editor   workspace   deploy, roll back, promote into and delete its apps
workspace-viewer   workspace   read the workspace, its apps and versions
=================  ==========  ===========================================================

A binding at a wider scope covers the narrower ones inside it (a
cluster-admin is workspace-admin of every workspace of that cluster), but
never reaches up: a workspace role gives nothing at cluster or tenant level.
Cluster roles may also be bound tenant-wide (every cluster), and workspace
roles at a cluster (every workspace of it).

An API token acts for its user but only within its own role and scope: both
must allow an action.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contract.errors import PermissionDenied

# Permissions, by the level of object they apply to.
TENANT_PERMISSIONS = frozenset({"tenant.manage", "audit.read", "user.manage", "cluster.create"})
CLUSTER_PERMISSIONS = frozenset({"cluster.read", "cluster.update", "cluster.delete", "workspace.create"})
WORKSPACE_PERMISSIONS = frozenset({
    "workspace.read", "workspace.update", "workspace.delete", "binding.read", "binding.manage",
    "app.read", "app.deploy", "app.delete",
})
PERMISSIONS = TENANT_PERMISSIONS | CLUSTER_PERMISSIONS | WORKSPACE_PERMISSIONS

_READ = {"workspace.read", "app.read"}
_EDIT = _READ | {"app.deploy", "app.delete"}
_WORKSPACE_ADMIN = _EDIT | {"workspace.update", "binding.read", "binding.manage"}

ROLES: dict[str, frozenset[str]] = {
    "tenant-admin": PERMISSIONS,
    "cluster-admin": frozenset(CLUSTER_PERMISSIONS | WORKSPACE_PERMISSIONS),
    "cluster-viewer": frozenset({"cluster.read"} | _READ),
    "workspace-admin": frozenset(_WORKSPACE_ADMIN),
    "workspace-editor": frozenset(_EDIT),
    "workspace-viewer": frozenset(_READ),
}

# The narrowest scope each role may be bound at: "tenant", "cluster" or "workspace".
ROLE_LEVEL = {
    "tenant-admin": "tenant",
    "cluster-admin": "cluster",
    "cluster-viewer": "cluster",
    "workspace-admin": "workspace",
    "workspace-editor": "workspace",
    "workspace-viewer": "workspace",
}
_DEPTH = {"tenant": 0, "cluster": 1, "workspace": 2}


@dataclass(frozen=True)
class Scope:
    """Where an object lives: tenant-wide, a cluster, or a workspace of a cluster."""

    tenant_id: int
    cluster_id: int | None = None
    workspace_id: int | None = None

    @property
    def level(self) -> str:
        if self.workspace_id is not None:
            return "workspace"
        return "cluster" if self.cluster_id is not None else "tenant"

    def covers(self, other: "Scope") -> bool:
        """Whether a binding at this scope reaches an object at ``other``."""
        if self.tenant_id != other.tenant_id:
            return False
        if self.cluster_id is not None and self.cluster_id != other.cluster_id:
            return False
        if self.workspace_id is not None and self.workspace_id != other.workspace_id:
            return False
        return True


@dataclass(frozen=True)
class Grant:
    role: str
    scope: Scope

    def allows(self, permission: str, scope: Scope) -> bool:
        if permission not in ROLES.get(self.role, ()):
            return False
        if permission in TENANT_PERMISSIONS and self.scope.level != "tenant":
            return False
        if permission in CLUSTER_PERMISSIONS and self.scope.level == "workspace":
            return False
        return self.scope.covers(scope)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user with their grants, possibly through a narrower API token."""

    tenant_id: int
    user_id: int
    name: str
    grants: tuple[Grant, ...] = ()
    token: Grant | None = None  # set when the request came with an API token
    token_id: int | None = None
    groups: tuple[str, ...] = field(default=())

    def can(self, permission: str, scope: Scope) -> bool:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        if scope.tenant_id != self.tenant_id:
            return False
        if self.token is not None and not self.token.allows(permission, scope):
            return False
        return any(grant.allows(permission, scope) for grant in self.grants)

    def can_anywhere(self, permission: str) -> bool:
        """Whether some scope exists where this principal holds ``permission``."""
        candidates = [g for g in self.grants if permission in ROLES.get(g.role, ())]
        if self.token is not None:
            if permission not in ROLES.get(self.token.role, ()):
                return False
            candidates = [g for g in candidates if g.scope.covers(self.token.scope) or self.token.scope.covers(g.scope)]
        if permission in TENANT_PERMISSIONS:
            candidates = [g for g in candidates if g.scope.level == "tenant"]
            if self.token is not None and self.token.scope.level != "tenant":
                return False
        return bool(candidates)

    def require(self, permission: str, scope: Scope, what: str = "") -> None:
        if not self.can(permission, scope):
            target = f" on {what}" if what else ""
            raise PermissionDenied(f"{self.name} may not {permission}{target}")

    def visible(self, permission: str, scopes: Iterable[Scope]) -> list[Scope]:
        return [s for s in scopes if self.can(permission, s)]

    def is_tenant_admin(self) -> bool:
        return self.can("tenant.manage", Scope(self.tenant_id))


def check_binding(role: str, scope: Scope) -> str | None:
    """Why ``role`` cannot be bound at ``scope``, or None when it can."""
    if role not in ROLES:
        return f'unknown role "{role}"; roles are {", ".join(ROLES)}'
    if _DEPTH[scope.level] > _DEPTH[ROLE_LEVEL[role]]:
        return f"{role} is bound at {ROLE_LEVEL[role]} scope or wider, not at a {scope.level}"
    return None


def may_grant(principal: Principal, role: str, scope: Scope) -> bool:
    """Whether ``principal`` may bind ``role`` at ``scope``: only roles they hold there themselves.

    Managing bindings needs binding.manage at the scope (tenant and cluster
    bindings need tenant.manage or cluster.update), and nobody hands out a
    permission they do not have, so a workspace-admin cannot make anyone
    cluster-admin.
    """
    if scope.level == "tenant":
        if not principal.can("tenant.manage", scope):
            return False
    elif scope.level == "cluster":
        if not principal.can("cluster.update", scope):
            return False
    elif not principal.can("binding.manage", scope):
        return False
    granted = ROLES[role]
    return all(principal.can(p, scope) for p in granted if applies_at(p, scope))


def applies_at(permission: str, scope: Scope) -> bool:
    """Whether ``permission`` means anything at ``scope`` (tenant permissions only tenant-wide, ...)."""
    if permission in TENANT_PERMISSIONS:
        return scope.level == "tenant"
    if permission in CLUSTER_PERMISSIONS:
        return scope.level != "workspace"
    return True


__all__ = [
    "ROLES",
    "ROLE_LEVEL",
    "PERMISSIONS",
    "Scope",
    "Grant",
    "Principal",
    "check_binding",
    "may_grant",
    "applies_at",
]
