"""The authorization matrix: every route, every role, inside and outside the role's scope.

(a) Every view declares what it needs (webapp.auth.requires/public), and every
API route but the OpenAPI document needs a principal.

(b) For every /api/v1 route and every role of gitops.policy.ROLES (bound at
its natural scope), a user with no role, and no credentials at all, a real
request is sent against real objects, and the outcome is compared with what
gitops.policy says that principal may do: allowed means the request got past
authorization (not 401/403, not 404 since every object it names exists, and
not a server error); denied means 403 or 404; no credentials means 401.
The same request aimed at objects outside the role's scope (cluster "other",
workspace demo:other) must be refused for cluster and workspace roles.

What "allowed" means is derived from the policy module (Principal.can at the
object's Scope), so the matrix follows the policy; a short hand-written table
of key expectations pins the policy itself, so a bug there is caught too.

Each role gets a fresh control plane; requests run reads first, then changes,
then deletions, so a deletion never hides what a later request needs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from gitops.models import Cluster, WebhookDelivery, WebhookEvent, WebhookSubscription, Workspace
from gitops.policy import ROLE_LEVEL, ROLES, Grant, Principal, Scope, applies_at, may_grant
from tests.plane import PROFILE, Api, add_cluster, add_workspace, deploy_yaml, make_user, service_spec

API = "/api/v1"
PASSWORD = "correct horse battery"
NO_ROLE, ANONYMOUS = "no role", "no credentials"
SUBJECTS = [*ROLES, NO_ROLE, ANONYMOUS]

# Where each target points: (cluster, workspace).
TARGETS = {"inside": ("demo", "storefront"), "other-workspace": ("demo", "other"), "other-cluster": ("other", "storefront")}


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the matrix is about authorization, which does not depend on the database."""
    return f"sqlite:///{tmp_path / 'shipyard.db'}"


# --- (a) declarations ---------------------------------------------------------------------------


def test_every_view_declares_its_authorization(plane_app):
    undeclared = sorted(
        f"{rule.rule} -> {rule.endpoint}" for rule in plane_app.url_map.iter_rules()
        if getattr(plane_app.view_functions[rule.endpoint], "shipyard_authz", None) is None
    )
    assert undeclared == [], "views without @requires or @public:\n" + "\n".join(undeclared)


def test_every_api_route_needs_a_principal(plane_app):
    public_api = sorted(
        f"{rule.rule} -> {rule.endpoint}: {plane_app.view_functions[rule.endpoint].shipyard_authz}"
        for rule in plane_app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.endpoint != "api.openapi"
        and plane_app.view_functions[rule.endpoint].shipyard_authz[0] != "permission"
    )
    assert public_api == [], "API routes declared public:\n" + "\n".join(public_api)
    assert plane_app.view_functions["api.openapi"].shipyard_authz[0] == "public"


def api_rules(app) -> list:
    return [rule for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/") and rule.endpoint != "api.openapi"]


def test_every_api_route_has_a_request_factory(plane_app):
    missing = sorted({rule.endpoint for rule in api_rules(plane_app)} - set(FACTORIES))
    assert missing == [], f"add a request factory to tests/test_authz.py for: {', '.join(missing)}"
    stale = sorted(set(FACTORIES) - {rule.endpoint for rule in api_rules(plane_app)})
    assert stale == [], f"factories for routes that no longer exist: {', '.join(stale)}"


# --- the world every role is tested in ----------------------------------------------------------


@dataclass
class World:
    """One control plane: clusters demo and other, workspaces demo:storefront, demo:other and
    other:storefront, app web (version 1) in each, and a victim user with a workspace-viewer
    binding in each workspace and an API token."""

    app: Any
    admin: Api
    tenant_id: int
    clusters: dict[str, int]
    workspaces: dict[tuple[str, str], int]
    bindings: dict[tuple[str, str], int]
    victim_token: int
    serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    def scope(self, cluster: str | None = None, workspace: str | None = None) -> Scope:
        if cluster is None:
            return Scope(self.tenant_id)
        if workspace is None:
            return Scope(self.tenant_id, self.clusters[cluster])
        return Scope(self.tenant_id, self.clusters[cluster], self.workspaces[(cluster, workspace)])

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.serial)}"


def build_world(app) -> World:
    admin = make_user(app, "admin", "tenant-admin")
    for cluster in ("demo", "other"):
        add_cluster(admin, cluster)
    for cluster, workspace in TARGETS.values():
        add_workspace(admin, cluster, workspace)
        response = deploy_yaml(admin, service_spec("web", workspace=workspace, cluster=cluster))
        assert response.status_code == 200, response.get_json()
    victim = make_user(app, "victim", None)
    bindings = {}
    for cluster, workspace in TARGETS.values():
        response = admin.post(f"{API}/role-bindings", json={"role": "workspace-viewer", "subject": "victim",
                                                            "cluster": cluster, "workspace": workspace})
        assert response.status_code == 201, response.get_json()
        bindings[(cluster, workspace)] = response.get_json()["id"]
    (victim_token,) = [t["id"] for t in admin.get(f"{API}/tokens").get_json()["tokens"] if t["user"] == "victim"]
    del victim
    plane = app.extensions["shipyard"]
    with plane.sessions() as session:
        clusters = {c.name: c.id for c in session.scalars(select(Cluster))}
        workspaces = {(w.cluster.name, w.name): w.id for w in session.scalars(select(Workspace))}
        tenant_id = session.scalar(select(Cluster.tenant_id))
    return World(app, admin, tenant_id, clusters, workspaces, bindings, victim_token)


def natural_scope(world: World, role: str) -> Scope:
    level = ROLE_LEVEL[role]
    if level == "tenant":
        return world.scope()
    if level == "cluster":
        return world.scope("demo")
    return world.scope("demo", "storefront")


def expected_principal(world: World, subject: str, via_session: bool) -> Principal | None:
    """The principal gitops.policy reasons about for the request's caller (None: no credentials)."""
    if subject == ANONYMOUS:
        return None
    grants = (Grant(subject, natural_scope(world, subject)),) if subject in ROLES else ()
    if via_session:
        return Principal(world.tenant_id, 0, "subject", grants)
    # tests.plane.make_user gives the token the user's role at its scope (no role: a tenant-wide viewer token)
    token = grants[0] if grants else Grant("workspace-viewer", world.scope())
    return Principal(world.tenant_id, 0, "subject", grants, token=token, token_id=1)


# --- the request factories, by endpoint ---------------------------------------------------------


@dataclass
class Case:
    method: str
    path: str
    allowed: Callable[[Principal], bool]
    scoped: bool  # the object is in a cluster or workspace (refused outside a scoped role's scope)
    json: Any = None
    yaml: str | None = None
    query: dict | None = None
    via_session: bool = False  # sent with the user's login session (tokens cannot create tokens)
    check: Callable[[Principal, Any], None] | None = None  # more checks on an allowed response


def _can(permission: str, scope: Scope) -> Callable[[Principal], bool]:
    return lambda principal: principal.can(permission, scope)


def tenant_case(method: str, path: str, permission: str, **kw) -> Callable[[World, str], Case | None]:
    def make(world: World, target: str) -> Case | None:
        if target != "inside":
            return None
        body = kw.get("json")
        return Case(method, path, _can(permission, world.scope()), False,
                    json=body(world) if callable(body) else body, check=kw.get("check"))
    return make


def anyone_case(method: str, path: str, check=None) -> Callable[[World, str], Case | None]:
    """A route for any caller with credentials: what it shows is the caller's own."""
    def make(world: World, target: str) -> Case | None:
        return Case(method, path, lambda principal: True, False, check=check) if target == "inside" else None
    return make


def cluster_case(method: str, path: str, permission: str, **kw) -> Callable[[World, str], Case | None]:
    def make(world: World, target: str) -> Case | None:
        if target == "other-workspace":
            return None
        cluster, _ = TARGETS[target]
        body = kw.get("json")
        return Case(method, path.format(c=cluster), _can(permission, world.scope(cluster)), True,
                    json=body(world, cluster) if callable(body) else body)
    return make


def workspace_case(method: str, path: str, permission: str, **kw) -> Callable[[World, str], Case]:
    def make(world: World, target: str) -> Case:
        cluster, workspace = TARGETS[target]
        body, yaml = kw.get("json"), kw.get("yaml")
        return Case(method, path.format(c=cluster, w=workspace),
                    _can(permission, world.scope(cluster, workspace)), True,
                    json=body(world, cluster, workspace) if callable(body) else body,
                    yaml=yaml(world, cluster, workspace) if yaml else None, query=kw.get("query"))
    return make


def _check_clusters(world: World):
    def check(principal: Principal, response) -> None:
        names = [c["name"] for c in response.get_json()["clusters"]]
        assert names == [c for c in sorted(world.clusters) if principal.can("cluster.read", world.scope(c))]
    return check


def _check_workspaces(world: World, cluster: str):
    def check(principal: Principal, response) -> None:
        names = [w["name"] for w in response.get_json()["workspaces"]]
        assert names == sorted(w for (c, w) in world.workspaces
                               if c == cluster and principal.can("workspace.read", world.scope(c, w)))
    return check


def _check_apps(world: World):
    def check(principal: Principal, response) -> None:
        seen = {(a["cluster"], a["workspace"]) for a in response.get_json()["apps"]}
        assert seen == {t for t in TARGETS.values() if principal.can("app.read", world.scope(*t))}
    return check


def _check_bindings(world: World):
    def check(principal: Principal, response) -> None:
        for binding in response.get_json()["role_bindings"]:
            scope = world.scope(binding["cluster"], binding["workspace"])
            needs = {"tenant": "tenant.manage", "cluster": "cluster.update", "workspace": "binding.read"}[scope.level]
            assert principal.can(needs, scope), f"sees a binding it may not read: {binding}"
        shown = {b["id"] for b in response.get_json()["role_bindings"]}
        for target, binding_id in world.bindings.items():
            assert (binding_id in shown) == principal.can("binding.read", world.scope(*target)), target
    return check


def _check_tokens(principal: Principal, response) -> None:
    users = {t["user"] for t in response.get_json()["tokens"]}
    assert users == ({"admin", "victim", "subject"} if principal.is_tenant_admin() else {"subject"})


def _list_clusters(world, target):
    if target != "inside":
        return None
    return Case("GET", f"{API}/clusters", _can("cluster.read", world.scope("demo")), True,
                check=_check_clusters(world))


def _list_workspaces(world, target):
    if target == "other-workspace":
        return None
    cluster, workspace = TARGETS[target]
    return Case("GET", f"{API}/clusters/{cluster}/workspaces", _can("workspace.read", world.scope(cluster, workspace)),
                True, check=_check_workspaces(world, cluster))


def _list_bindings(world, target):
    if target != "inside":
        return None
    return Case("GET", f"{API}/role-bindings", _can("binding.read", world.scope("demo", "storefront")), True,
                check=_check_bindings(world))


def _create_binding(world, target):
    cluster, workspace = TARGETS[target]
    scope = world.scope(cluster, workspace)
    return Case("POST", f"{API}/role-bindings", lambda p: may_grant(p, "workspace-viewer", scope), True,
                json={"role": "workspace-viewer", "subject": world.unique("someone"), "cluster": cluster,
                      "workspace": workspace})


def _delete_binding(world, target):
    cluster, workspace = TARGETS[target]
    scope = world.scope(cluster, workspace)
    return Case("DELETE", f"{API}/role-bindings/{world.bindings[(cluster, workspace)]}",
                lambda p: may_grant(p, "workspace-viewer", scope), True)


def _create_token(world, target):
    cluster, workspace = TARGETS[target]
    scope = world.scope(cluster, workspace)
    return Case("POST", f"{API}/tokens",
                lambda p: p.token_id is None and all(
                    p.can(perm, scope) for perm in ROLES["workspace-viewer"] if applies_at(perm, scope)),
                True, json={"name": world.unique("token"), "role": "workspace-viewer", "cluster": cluster,
                            "workspace": workspace}, via_session=True)


def _revoke_token(world, target):
    if target != "inside":
        return None
    return Case("DELETE", f"{API}/tokens/{world.victim_token}", lambda p: p.is_tenant_admin(), False)


def _list_apps(world, target):
    if target != "inside":
        return None
    return Case("GET", f"{API}/apps", _can("app.read", world.scope("demo", "storefront")), True,
                check=_check_apps(world))


def _promote(world, target):
    cluster, workspace = TARGETS[target]
    source, destination = world.scope(cluster, workspace), world.scope(cluster, workspace)
    return Case("POST", f"{API}/apps/{cluster}/{workspace}/web/promote",
                lambda p: p.can("app.read", source) and p.can("app.deploy", destination), True,
                json={"target": f"{cluster}:{workspace}", "name": world.unique("web")})


def _get_command(world, target):
    cluster, workspace = TARGETS[target]
    response = world.admin.post(f"{API}/apps/{cluster}/{workspace}/web/commands", json={"type": "refresh"})
    assert response.status_code == 201, response.get_json()
    return Case("GET", f"{API}/commands/{response.get_json()['id']}", _can("app.read", world.scope(cluster, workspace)),
                True)


def _release_host_claim(world, target):
    if target == "other-workspace":
        return None
    cluster, workspace = TARGETS[target]
    host = f"{world.unique('released')}.example.com"
    response = world.admin.put(f"{API}/clusters/{cluster}/hosts/{host}", json={"workspace": workspace})
    assert response.status_code == 201, response.get_json()
    return Case("DELETE", f"{API}/clusters/{cluster}/hosts/{host}", _can("cluster.update", world.scope(cluster)), True)


def _spec_repo(world: World) -> str:
    """A spec repository registered by the admin, named for one request; its remote is a closed loopback port."""
    name = world.unique("specs")
    assert world.admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 200
    response = world.admin.post(f"{API}/spec-repos", json={"name": name, "url": f"https://127.0.0.1:9/{name}.git"})
    assert response.status_code == 201, response.get_json()
    return name


def _check_no_secrets(principal: Principal, response) -> None:
    body = response.get_data(as_text=True)
    assert "webhook_secret" not in body, body[:300]


def spec_repo_case(method: str, path: str, permission: str, **kw) -> Callable[[World, str], Case | None]:
    """A route of one spec repository: they are the tenant's, used by whoever holds ``permission`` somewhere."""
    def make(world: World, target: str) -> Case | None:
        if target != "inside":
            return None
        return Case(method, path.format(r=_spec_repo(world)), lambda p: p.can_anywhere(permission), False,
                    json=kw.get("json"), query=kw.get("query"), check=kw.get("check"))
    return make


def _register_spec_repo(world, target):
    if target != "inside":
        return None
    name = world.unique("specs")
    # a public address: registering connects nowhere, and needs no exception in the tenant's egress policy
    return Case("POST", f"{API}/spec-repos", lambda p: p.can_anywhere("cluster.update"), False,
                json={"name": name, "url": f"https://93.184.216.34/{name}.git", "globs": ["deploy/*.yaml"]})


def _list_spec_repos(world, target):
    if target != "inside":
        return None
    _spec_repo(world)
    return Case("GET", f"{API}/spec-repos", lambda p: p.can_anywhere("cluster.read"), False, check=_check_no_secrets)


def _webhook(world: World, cluster: str | None = None, workspace: str | None = None) -> str:
    """A status webhook the admin made, named for one request, of a workspace, a cluster or the tenant; the
    rest of its URL's path is its secret (as Slack's is)."""
    name = world.unique("hook")
    body = {"name": name, "url": f"https://93.184.216.34/{name}/secret-path", "events": ["version.healthy"],
            **({"cluster": cluster} if cluster else {}), **({"workspace": workspace} if workspace else {})}
    response = world.admin.post(f"{API}/webhooks", json=body)
    assert response.status_code == 201, response.get_json()
    return name


def _check_no_webhook_secrets(principal: Principal, response) -> None:
    body = response.get_data(as_text=True)
    assert "whsec_" not in body and "secret-path" not in body, body[:300]


def webhook_case(method: str, path: str, permission: str, **kw) -> Callable[[World, str], Case]:
    """A route of one status webhook of the target's workspace: read and managed with that workspace's permissions."""
    def make(world: World, target: str) -> Case:
        cluster, workspace = TARGETS[target]
        return Case(method, path.format(h=_webhook(world, cluster, workspace)),
                    _can(permission, world.scope(cluster, workspace)), True, json=kw.get("json"), query=kw.get("query"),
                    check=kw.get("check"))
    return make


def _webhook_scope(world: World, webhook: dict) -> Scope:
    return world.scope(webhook["cluster"], webhook["workspace"])


def _reads_webhooks_at(principal: Principal, scope: Scope) -> bool:
    return principal.can("workspace.read" if scope.level == "workspace" else "cluster.read", scope)


def _list_webhooks(world, target):
    if target != "inside":
        return None
    made = {_webhook(world): world.scope(), _webhook(world, "demo"): world.scope("demo"),
            **{_webhook(world, c, w): world.scope(c, w) for c, w in TARGETS.values()}}

    def check(principal: Principal, response) -> None:
        listed = response.get_json()["webhooks"]
        _check_no_webhook_secrets(principal, response)
        for webhook in listed:
            assert _reads_webhooks_at(principal, _webhook_scope(world, webhook)), f"sees {webhook['name']}"
        assert {w["name"] for w in listed} >= {name for name, scope in made.items()
                                                if _reads_webhooks_at(principal, scope)}
    return Case("GET", f"{API}/webhooks", lambda p: p.can_anywhere("workspace.read"), False, check=check)


def _create_webhook(world, target):
    cluster, workspace = TARGETS[target]
    name = world.unique("hook")
    return Case("POST", f"{API}/webhooks", _can("workspace.update", world.scope(cluster, workspace)), True,
                json={"name": name, "url": f"https://93.184.216.34/{name}", "events": ["version.healthy"],
                      "cluster": cluster, "workspace": workspace})


def _delivered(world: World, webhook: str) -> int:
    """A delivery of the webhook that its receiver took: the id of one that may be sent again."""
    with world.app.extensions["shipyard"].sessions.begin() as session:
        sub = session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == webhook))
        event = WebhookEvent(tenant_id=world.tenant_id, key=f"test/{webhook}", type="version.healthy", data={})
        session.add(event)
        session.flush()
        delivery = WebhookDelivery(subscription_id=sub.id, event_id=event.id, state="delivered", attempts=1,
                                   status_code=204)
        session.add(delivery)
        session.flush()
        return delivery.id


def _redeliver_webhook_delivery(world, target):
    cluster, workspace = TARGETS[target]
    name = _webhook(world, cluster, workspace)
    return Case("POST", f"{API}/webhooks/{name}/deliveries/{_delivered(world, name)}/redeliver",
                _can("workspace.update", world.scope(cluster, workspace)), True)


def _profile(world, cluster):
    return {"profile": PROFILE.replace("name: demo", f"name: {cluster}")}


FACTORIES: dict[str, Callable[[World, str], Case | None]] = {
    "api.me": anyone_case("GET", f"{API}/me"),
    "api.list_users": tenant_case("GET", f"{API}/users", "user.manage"),
    "api.create_user": tenant_case("POST", f"{API}/users", "user.manage",
                                   json=lambda w: {"username": w.unique("user"), "password": PASSWORD}),
    "api.list_audit": tenant_case("GET", f"{API}/audit", "audit.read"),
    "api.get_tenant": tenant_case("GET", f"{API}/tenant", "tenant.manage"),
    "api.update_tenant": tenant_case("PATCH", f"{API}/tenant", "tenant.manage", json={"remote_allowed_hosts": []}),
    "api.list_clusters": _list_clusters,
    "api.create_cluster": tenant_case("POST", f"{API}/clusters", "cluster.create",
                                      json=lambda w: _profile(w, name := w.unique("made")) | {"name": name}),
    "api.get_cluster": cluster_case("GET", API + "/clusters/{c}", "cluster.read"),
    "api.update_cluster": cluster_case("PATCH", API + "/clusters/{c}", "cluster.update", json=_profile),
    "api.delete_cluster": cluster_case("DELETE", API + "/clusters/{c}", "cluster.delete"),
    "api.rotate_cluster_token": cluster_case("POST", API + "/clusters/{c}/tokens/read", "cluster.update"),
    "api.list_workspaces": _list_workspaces,
    "api.create_workspace": cluster_case("POST", API + "/clusters/{c}/workspaces", "workspace.create",
                                         json=lambda w, c: {"name": w.unique("ws")}),
    "api.get_workspace": workspace_case("GET", API + "/clusters/{c}/workspaces/{w}", "workspace.read"),
    "api.update_workspace": workspace_case("PATCH", API + "/clusters/{c}/workspaces/{w}", "workspace.update",
                                           json={"labels": {"touched": "yes"}}),
    "api.delete_workspace": workspace_case("DELETE", API + "/clusters/{c}/workspaces/{w}", "workspace.delete"),
    "api.list_host_claims": cluster_case("GET", API + "/clusters/{c}/hosts", "cluster.read"),
    "api.move_host_claim": cluster_case("PUT", API + "/clusters/{c}/hosts/web.example.com", "cluster.update",
                                        json={"workspace": "storefront"}),
    "api.release_host_claim": _release_host_claim,
    "api.list_bindings": _list_bindings,
    "api.create_binding": _create_binding,
    "api.delete_binding": _delete_binding,
    "api.list_tokens": anyone_case("GET", f"{API}/tokens", check=_check_tokens),
    "api.create_token": _create_token,
    "api.revoke_token": _revoke_token,
    "api.deploy_apps": workspace_case(
        "PUT", f"{API}/apps", "app.deploy",
        yaml=lambda w, c, ws: service_spec("web", workspace=ws, cluster=c, image=f"ghcr.io/acme/web:{next(w.serial)}")),
    "api.list_apps": _list_apps,
    "api.plan": workspace_case(
        "POST", f"{API}/plan", "app.read",
        json=lambda w, c, ws: {"files": [{"name": "web.yaml", "content": service_spec("web", workspace=ws, cluster=c,
                                                                                       image="ghcr.io/acme/web:9")}],
                               "prune": True}),
    "api.apps_status": workspace_case("POST", f"{API}/apps/status", "app.read",
                                      json=lambda w, c, ws: {"apps": [f"{c}:{ws}/web"], "versions": 2}),
    "api.get_app": workspace_case("GET", API + "/apps/{c}/{w}/web", "app.read"),
    "api.delete_app": workspace_case("DELETE", API + "/apps/{c}/{w}/web", "app.delete"),
    "api.list_versions": workspace_case("GET", API + "/apps/{c}/{w}/web/versions", "app.read"),
    "api.get_version": workspace_case("GET", API + "/apps/{c}/{w}/web/versions/1", "app.read"),
    "api.diff_versions": workspace_case("GET", API + "/apps/{c}/{w}/web/diff", "app.read",
                                        query={"from": 1, "to": 1}),
    "api.rollback_app": workspace_case("POST", API + "/apps/{c}/{w}/web/rollback", "app.deploy",
                                       json={"version": 1}),
    "api.promote_app": _promote,
    "api.cluster_status": cluster_case("GET", API + "/clusters/{c}/status", "cluster.read"),
    "api.app_status": workspace_case("GET", API + "/apps/{c}/{w}/web/status", "app.read"),
    "api.app_status_history": workspace_case("GET", API + "/apps/{c}/{w}/web/status/history", "app.read"),
    "api.app_events": workspace_case("GET", API + "/apps/{c}/{w}/web/events", "app.read"),
    "api.app_trace": workspace_case("GET", API + "/apps/{c}/{w}/web/trace", "app.read"),
    # refresh and restart need app.deploy (logs only app.read): the route checks the command's own permission
    "api.create_command": workspace_case("POST", API + "/apps/{c}/{w}/web/commands", "app.deploy",
                                         json={"type": "refresh"}),
    "api.get_command": _get_command,
    "api.list_spec_repos": _list_spec_repos,
    "api.register_spec_repo": _register_spec_repo,
    "api.get_spec_repo": spec_repo_case("GET", API + "/spec-repos/{r}", "cluster.read", check=_check_no_secrets),
    "api.update_spec_repo": spec_repo_case("PATCH", API + "/spec-repos/{r}", "cluster.update",
                                           json={"branch": "release", "prune": True}),
    "api.delete_spec_repo": spec_repo_case("DELETE", API + "/spec-repos/{r}", "cluster.update"),
    "api.sync_spec_repo": spec_repo_case("POST", API + "/spec-repos/{r}/sync", "cluster.update", json={}),
    "api.list_spec_repo_syncs": spec_repo_case("GET", API + "/spec-repos/{r}/syncs", "cluster.read",
                                               query={"limit": 5}),
    "api.create_run": workspace_case("POST", API + "/apps/{c}/{w}/web/runs", "app.deploy", json={"params": {}}),
    "api.list_runs": workspace_case("GET", API + "/apps/{c}/{w}/web/runs", "app.read"),
    "api.list_webhooks": _list_webhooks,
    "api.create_webhook": _create_webhook,
    "api.get_webhook": webhook_case("GET", API + "/webhooks/{h}", "workspace.read", check=_check_no_webhook_secrets),
    "api.update_webhook": webhook_case("PATCH", API + "/webhooks/{h}", "workspace.update",
                                       json={"events": ["version.healthy", "version.degraded"]}),
    "api.delete_webhook": webhook_case("DELETE", API + "/webhooks/{h}", "workspace.update"),
    "api.rotate_webhook_secret": webhook_case("POST", API + "/webhooks/{h}/rotate-secret", "workspace.update",
                                              json={"overlap_seconds": 60}),
    "api.list_webhook_deliveries": webhook_case("GET", API + "/webhooks/{h}/deliveries", "workspace.read",
                                                query={"limit": 5}),
    "api.redeliver_webhook_delivery": _redeliver_webhook_delivery,
    "api.test_webhook": webhook_case("POST", API + "/webhooks/{h}/test", "workspace.update"),
}

# Reads, then changes, then removals (bindings and tokens, apps, workspaces, clusters last).
PHASES = {"api.delete_binding": 2, "api.revoke_token": 2, "api.delete_app": 3, "api.delete_workspace": 4,
          "api.delete_cluster": 5}


def phase(case: Case, endpoint: str) -> int:
    return PHASES.get(endpoint, 0 if case.method == "GET" else 1)


# --- the hand-written expectations that pin the policy itself -------------------------------------

KEY_EXPECTATIONS = [
    # (subject, endpoint, target, allowed)
    ("workspace-viewer", "api.get_app", "inside", True),
    ("workspace-viewer", "api.deploy_apps", "inside", False),
    ("workspace-viewer", "api.plan", "inside", True),
    ("workspace-viewer", "api.plan", "other-workspace", False),
    ("workspace-viewer", "api.rollback_app", "inside", False),
    ("workspace-viewer", "api.delete_app", "inside", False),
    ("workspace-editor", "api.deploy_apps", "inside", True),
    ("workspace-editor", "api.delete_app", "inside", True),
    ("workspace-editor", "api.create_workspace", "inside", False),
    ("workspace-editor", "api.list_bindings", "inside", False),
    ("workspace-editor", "api.update_workspace", "inside", False),
    ("workspace-admin", "api.update_workspace", "inside", True),
    ("workspace-admin", "api.create_binding", "inside", True),
    ("workspace-admin", "api.delete_workspace", "inside", False),
    ("workspace-admin", "api.get_cluster", "inside", False),
    ("workspace-admin", "api.deploy_apps", "other-workspace", False),
    ("cluster-viewer", "api.get_app", "inside", True),
    ("cluster-viewer", "api.get_app", "other-workspace", True),
    ("cluster-viewer", "api.list_bindings", "inside", False),
    ("cluster-viewer", "api.deploy_apps", "inside", False),
    ("cluster-viewer", "api.update_cluster", "inside", False),
    ("cluster-admin", "api.create_workspace", "inside", True),
    ("cluster-admin", "api.delete_workspace", "other-workspace", True),
    ("cluster-admin", "api.rotate_cluster_token", "inside", True),
    ("cluster-admin", "api.create_cluster", "inside", False),
    ("cluster-admin", "api.list_users", "inside", False),
    ("cluster-admin", "api.update_tenant", "inside", False),
    ("tenant-admin", "api.update_tenant", "inside", True),
    ("cluster-admin", "api.get_app", "other-cluster", False),
    ("tenant-admin", "api.delete_cluster", "other-cluster", True),
    ("tenant-admin", "api.list_audit", "inside", True),
    ("tenant-admin", "api.revoke_token", "inside", True),
    ("workspace-admin", "api.revoke_token", "inside", False),
    ("tenant-admin", "api.create_token", "inside", True),
    ("workspace-viewer", "api.app_status", "inside", True),
    ("workspace-viewer", "api.apps_status", "inside", True),
    ("workspace-viewer", "api.apps_status", "other-workspace", False),
    ("workspace-viewer", "api.create_command", "inside", False),
    ("workspace-editor", "api.create_command", "inside", True),
    ("workspace-viewer", "api.get_command", "other-workspace", False),
    ("cluster-viewer", "api.cluster_status", "inside", True),
    ("cluster-viewer", "api.list_host_claims", "inside", True),
    ("cluster-viewer", "api.move_host_claim", "inside", False),
    ("workspace-admin", "api.move_host_claim", "inside", False),
    ("workspace-admin", "api.release_host_claim", "inside", False),
    ("cluster-admin", "api.release_host_claim", "inside", True),
    ("workspace-admin", "api.cluster_status", "inside", False),
    ("cluster-admin", "api.register_spec_repo", "inside", True),
    ("cluster-admin", "api.sync_spec_repo", "inside", True),
    ("cluster-viewer", "api.get_spec_repo", "inside", True),
    ("cluster-viewer", "api.register_spec_repo", "inside", False),
    ("cluster-viewer", "api.delete_spec_repo", "inside", False),
    ("workspace-admin", "api.list_spec_repos", "inside", False),
    ("workspace-admin", "api.update_spec_repo", "inside", False),
    ("workspace-viewer", "api.register_spec_repo", "inside", False),
    ("workspace-admin", "api.create_webhook", "inside", True),
    ("workspace-admin", "api.create_webhook", "other-workspace", False),
    ("workspace-editor", "api.create_webhook", "inside", False),
    ("workspace-editor", "api.get_webhook", "inside", True),
    ("workspace-viewer", "api.list_webhook_deliveries", "inside", True),
    ("workspace-viewer", "api.test_webhook", "inside", False),
    ("workspace-viewer", "api.redeliver_webhook_delivery", "inside", False),
    ("workspace-admin", "api.rotate_webhook_secret", "inside", True),
    ("cluster-viewer", "api.get_webhook", "other-workspace", True),
    ("cluster-viewer", "api.update_webhook", "inside", False),
    ("cluster-admin", "api.delete_webhook", "other-workspace", True),
    ("cluster-admin", "api.get_webhook", "other-cluster", False),
    (NO_ROLE, "api.list_webhooks", "inside", False),
    (NO_ROLE, "api.me", "inside", True),
    (NO_ROLE, "api.get_app", "inside", False),
    (NO_ROLE, "api.list_clusters", "inside", False),
]

# Requests beyond the factories' natural ones, with hand-written outcomes: nobody grants what
# they do not hold, and a promotion needs deploy rights at its target.
EXTRA_REQUESTS: dict[str, list[tuple[str, str, dict, bool]]] = {
    "tenant-admin": [
        ("POST", f"{API}/webhooks", {"name": "tenant-hook", "url": "https://93.184.216.34/t", "events": ["run.failed"]},
         True),
        ("POST", f"{API}/webhooks", {"name": "private-hook", "url": "http://127.0.0.1:9/p", "events": ["run.failed"],
                                     "allowed_host": "127.0.0.1"}, True),
    ],
    "workspace-admin": [
        # a workspace's webhooks are theirs, a cluster's are not
        ("POST", f"{API}/webhooks", {"name": "cluster-hook", "url": "https://93.184.216.34/c",
                                     "events": ["version.healthy"], "cluster": "demo"}, False),
        ("POST", f"{API}/role-bindings", {"role": "cluster-admin", "subject": "x", "cluster": "demo"}, False),
        ("POST", f"{API}/role-bindings", {"role": "workspace-admin", "subject": "x", "cluster": "demo",
                                          "workspace": "other"}, False),
        ("POST", f"{API}/role-bindings", {"role": "workspace-admin", "subject": "x", "cluster": "demo",
                                          "workspace": "storefront"}, True),
        ("POST", f"{API}/role-bindings", {"role": "tenant-admin", "subject": "x"}, False),
        # the workspace is theirs to change, but not the secrets it may reference (gitops.isolation)
        ("PATCH", f"{API}/clusters/demo/workspaces/storefront", {"secret_paths": ["other/"]}, False),
    ],
    "workspace-editor": [
        ("POST", f"{API}/apps/demo/storefront/web/promote", {"target": "demo:other"}, False),
        ("POST", f"{API}/role-bindings", {"role": "workspace-viewer", "subject": "x", "cluster": "demo",
                                          "workspace": "storefront"}, False),
    ],
    "cluster-admin": [
        ("POST", f"{API}/webhooks", {"name": "cluster-hook", "url": "https://93.184.216.34/c",
                                     "events": ["cluster.offline"], "cluster": "demo"}, True),
        ("POST", f"{API}/webhooks", {"name": "other-hook", "url": "https://93.184.216.34/o",
                                     "events": ["cluster.offline"], "cluster": "other"}, False),
        ("POST", f"{API}/webhooks", {"name": "tenant-hook", "url": "https://93.184.216.34/t",
                                     "events": ["cluster.offline"]}, False),
        # only a tenant-admin lets a subscription reach a private host
        ("POST", f"{API}/webhooks", {"name": "private-hook", "url": "http://127.0.0.1:9/p", "events": ["run.failed"],
                                     "cluster": "demo", "allowed_host": "127.0.0.1"}, False),
        ("POST", f"{API}/apps/demo/storefront/web/promote", {"target": "demo:other", "name": "web-2"}, True),
        ("POST", f"{API}/apps/demo/storefront/web/promote", {"target": "other:storefront", "name": "web-3"}, False),
        ("POST", f"{API}/role-bindings", {"role": "cluster-viewer", "subject": "x", "cluster": "demo"}, True),
        ("POST", f"{API}/role-bindings", {"role": "cluster-viewer", "subject": "x", "cluster": "other"}, False),
        ("POST", f"{API}/role-bindings", {"role": "cluster-viewer", "subject": "x"}, False),
        ("PATCH", f"{API}/clusters/demo/workspaces/storefront", {"secret_paths": ["other/"]}, True),
        # the profile is theirs to change, but not where the control plane connects to (gitops.egress)
        ("PATCH", f"{API}/clusters/demo", {"remote_url": "https://git.example.com/demo.git"}, False),
    ],
    "cluster-viewer": [
        ("POST", f"{API}/apps/demo/storefront/web/promote", {"target": "demo:other"}, False),
    ],
}


def test_policy_matches_the_key_expectations(plane_app):
    """The policy module's answers for the key cases, without any HTTP in between."""
    world = build_world(plane_app)
    wrong = []
    for subject, endpoint, target, allowed in KEY_EXPECTATIONS:
        case = FACTORIES[endpoint](world, target)
        principal = expected_principal(world, subject, case.via_session)
        if case.allowed(principal) != allowed:
            wrong.append(f"{subject} {endpoint} {target}: policy says {not allowed}, expected {allowed}")
    assert wrong == [], "\n".join(wrong)


# --- (b) the matrix -----------------------------------------------------------------------------


def login(app, username: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf})
    assert response.status_code == 302
    # A login starts a new session with a new CSRF secret: take the token from a page served after it.
    page = client.get("/account").get_data(as_text=True)
    return client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def send(world: World, subject: str, token: str | None, session, case: Case):
    headers, client = {}, world.app.test_client()
    if case.via_session and session is not None:
        client, csrf = session
        headers["X-CSRFToken"] = csrf
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"headers": headers, "query_string": case.query}
    if case.yaml is not None:
        kwargs.update(data=case.yaml, content_type="application/yaml")
    elif case.json is not None:
        kwargs["json"] = case.json
    return client.open(case.path, method=case.method, **kwargs)


def outcome_problem(subject: str, allowed: bool, response) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"server error {status}"
    if subject == ANONYMOUS:
        return None if status == 401 else f"no credentials got {status}, not 401"
    # every object a request names exists, so an allowed request never meets a 404 either
    if allowed and status in (401, 403, 404):
        return f"allowed but got {status}"
    if not allowed and status not in (403, 404):
        return f"denied but got {status}"
    return None


@pytest.mark.parametrize("subject", SUBJECTS)
def test_authorization_matrix(plane_app, subject):
    world = build_world(plane_app)
    token = session = None
    if subject != ANONYMOUS:
        role = subject if subject in ROLES else None
        cluster, workspace = {"tenant": (None, None), "cluster": ("demo", None),
                              "workspace": ("demo", "storefront")}[ROLE_LEVEL[role]] if role else (None, None)
        token = make_user(plane_app, "subject", role, cluster=cluster, workspace=workspace).token
        session = login(plane_app, "subject")

    rules = {rule.endpoint: rule for rule in api_rules(plane_app)}
    missing = sorted(set(rules) - set(FACTORIES))
    assert missing == [], f"no request factory for: {', '.join(missing)}"
    cases = []
    for endpoint, rule in rules.items():
        for target in ("other-cluster", "other-workspace", "inside"):
            case = FACTORIES[endpoint](world, target)
            if case is not None:
                assert case.method in rule.methods, (endpoint, case.method)
                cases.append((phase(case, endpoint), endpoint, target, case))
    for method, path, body, allowed in EXTRA_REQUESTS.get(subject, []):
        cases.append((1, "extra", "inside", Case(method, path, lambda p, allowed=allowed: allowed, False, json=body)))
    cases.sort(key=lambda item: item[0])  # stable: targets stay in their order within an endpoint

    key = {(e, t): allowed for s, e, t, allowed in KEY_EXPECTATIONS if s == subject}
    problems = []
    for _, endpoint, target, case in cases:
        principal = expected_principal(world, subject, case.via_session)
        allowed = principal is not None and case.allowed(principal)
        if (endpoint, target) in key and key[(endpoint, target)] != allowed:
            problems.append(f"{endpoint} {target}: policy says allowed={allowed}, the key table {key[(endpoint, target)]}")
        if target != "inside" and case.scoped and subject in ROLES and ROLE_LEVEL[subject] != "tenant" and allowed:
            # outside the role's scope: other-cluster is outside every scoped role; other-workspace
            # is outside the workspace roles (cluster roles cover every workspace of demo)
            if target == "other-cluster" or ROLE_LEVEL[subject] == "workspace":
                problems.append(f"{endpoint} {target}: the policy allows {subject} outside its scope")
        response = send(world, subject, token, session, case)
        problem = outcome_problem(subject, allowed, response)
        if problem is None and allowed and case.check is not None and subject != ANONYMOUS:
            try:
                case.check(principal, response)
            except (AssertionError, KeyError, TypeError) as exc:
                problem = f"wrong content: {exc}"
        if problem:
            problems.append(f"{case.method} {case.path} {case.json or ''} ({endpoint}, {target}): {problem}: "
                            f"{response.get_data(as_text=True)[:300]}")

    assert problems == [], f"{subject}:\n" + "\n".join(problems)


def test_matrix_exercised_every_role(plane_app):
    """Every role of the policy is in the matrix (a new role must be placed at a scope)."""
    assert set(ROLES) <= set(SUBJECTS) and set(ROLE_LEVEL) == set(ROLES)


def test_openapi_document_is_public(plane_app):
    response = plane_app.test_client().get(f"{API}/openapi.json")
    assert response.status_code == 200 and response.get_json()["openapi"].startswith("3.")
