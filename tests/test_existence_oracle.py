"""A caller learns nothing about objects outside its scope: "exists, not yours" answers as "does not exist".

Every route of Flask's URL map that names a cluster, workspace or app in its
path is sent, by API tokens narrower than their user (a tenant-admin's token
narrowed to one workspace or one cluster) and by a plain workspace-viewer's
token, twice for each name: once naming an object that exists outside the
token's scope, once with that name replaced by one that exists nowhere. The
two answers must be the same status, the same error code and, with the names
blanked, the same body. Role bindings, tokens, deploys and promotions name
scopes in their bodies; they are held to the same rule.

The names outside a token's scope are derived from gitops.policy (the
token's scope does not cover them), so a route added later is covered by
itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from gitops import accounts, tokens
from gitops.models import Cluster, Tenant, User, Workspace
from gitops.policy import Scope
from tests.plane import Api, add_cluster, add_workspace, deploy_yaml, make_user, service_spec

API = "/api/v1"
WORKSPACES = (("alpha", "inside"), ("alpha", "beside"), ("bravo", "yonder"))
APP = "web"
ABSENT = "ghost"  # a name nothing has
NAME_PARAMETERS = {"cluster": 0, "repo": 0, "workspace": 1, "app": 2}  # which part of a target each one takes
OTHER_VALUES = {"tenant": "default", "owner": "default", "kind": "read", "host": "shop.example.com"}
QUERY = {"from": 1, "to": 1}
_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: who may know what exists does not depend on the database."""
    return f"sqlite:///{tmp_path / 'shipyard.db'}"


@dataclass
class Caller:
    label: str
    api: Api
    scope: Scope


@pytest.fixture
def world(plane_app):
    admin = make_user(plane_app, "admin", "tenant-admin")
    for cluster in ("alpha", "bravo"):
        add_cluster(admin, cluster)
    for cluster, workspace in WORKSPACES:
        add_workspace(admin, cluster, workspace)
        response = deploy_yaml(admin, service_spec(APP, workspace=workspace, cluster=cluster))
        assert response.status_code == 200, response.get_json()
    viewer = make_user(plane_app, "viewer", "workspace-viewer", cluster="alpha", workspace="inside")
    make_user(plane_app, "boss", "tenant-admin")
    callers = []
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == plane_app.config["TENANT"]))
        boss = session.scalar(select(User).where(User.username == "boss"))
        ids = {(w.cluster.name, w.name): (w.cluster_id, w.id) for w in session.scalars(select(Workspace))}
        ids.update({(c.name, None): (c.id, None) for c in session.scalars(select(Cluster))})
        narrowed = (("workspace-viewer", "alpha", "inside"), ("workspace-admin", "alpha", "inside"),
                    ("cluster-admin", "alpha", None))
        for role, cluster, workspace in narrowed:
            scope = accounts.resolve_scope(session, tenant.id, cluster, workspace)
            secret = tokens.issue_token(session, tenant.id, boss.id, role, role, scope, 30).secret
            where = f"{cluster}:{workspace}" if workspace else cluster
            callers.append(Caller(f"tenant-admin's token narrowed to {role} of {where}",
                                  Api(plane_app.test_client(), secret, "boss"), scope))
        callers.append(Caller("workspace-viewer of alpha:inside", viewer,
                              Scope(tenant.id, *ids[("alpha", "inside")])))
    return {"callers": callers, "ids": ids, "tenant_id": tenant.id}


def outside(world, caller: Caller, cluster: str, workspace: str | None) -> bool:
    """Whether (cluster[, workspace]) lies outside the caller's token: its scope neither covers it nor lies in it."""
    cluster_id, workspace_id = world["ids"][(cluster, workspace)]
    if workspace is None:
        return caller.scope.level != "tenant" and caller.scope.cluster_id != cluster_id
    return not caller.scope.covers(Scope(world["tenant_id"], cluster_id, workspace_id))


def path_for(rule, target: tuple[str, str, str]) -> str:
    def fill(match: re.Match) -> str:
        converter, name = match.group(1), match.group(2)
        if name in NAME_PARAMETERS:
            return target[NAME_PARAMETERS[name]]
        return "1" if converter == "int" else OTHER_VALUES.get(name, "x")

    return _PARAMETER.sub(fill, rule.rule)


def comparisons(world, caller: Caller, parts: set[int]):
    """(named, absent, varied name) for a request naming ``parts`` of (cluster, workspace, app).

    ``named`` exists outside the caller's scope; ``absent`` replaces one name by one that
    exists nowhere: any name from the first one outside the scope on (a cluster the caller
    sees may be told from a missing one; a workspace of it outside the scope may not).
    """
    for cluster, workspace in WORKSPACES:
        # what the request names: the workspace only when it takes one
        if not outside(world, caller, cluster, workspace if 1 in parts else None):
            continue
        first_unseen = 0 if outside(world, caller, cluster, None) else 1
        named = (cluster, workspace, APP)
        for part in sorted(p for p in parts if p >= first_unseen):
            absent = tuple(ABSENT if index == part else value for index, value in enumerate(named))
            yield named, absent, named[part]


def blanked(response, *names: str) -> tuple:
    body = response.get_data(as_text=True)
    for name in names:
        body = re.sub(rf"\b{re.escape(name)}\b", "<name>", body)
    error = (response.get_json(silent=True) or {}).get("error", {}) if response.is_json else {}
    return response.status_code, error.get("code"), body


def test_out_of_scope_names_answer_as_absent_ones_on_every_route(plane_app, world):
    rules = [rule for rule in plane_app.url_map.iter_rules() if set(rule.arguments) & set(NAME_PARAMETERS)]
    assert rules, "no route names a cluster, workspace or app?"
    differences, not_found_seen = [], set()
    for caller in world["callers"]:
        for rule in rules:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                parts = {NAME_PARAMETERS[name] for name in rule.arguments if name in NAME_PARAMETERS}
                for named, absent, varied in comparisons(world, caller, parts):
                    # bodies and queries a view checks before its lookup (a diff needs from and to)
                    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {"query_string": QUERY}
                    first = caller.api.request(method, path_for(rule, named), **kwargs)
                    second = caller.api.request(method, path_for(rule, absent), **kwargs)
                    if blanked(first, varied) != blanked(second, ABSENT):
                        differences.append(
                            f"{caller.label}: {method} {path_for(rule, named)} -> {first.status_code} "
                            f"{first.get_data(as_text=True)[:160]!r} but {path_for(rule, absent)} -> "
                            f"{second.status_code} {second.get_data(as_text=True)[:160]!r}")
                    assert first.status_code < 500, first.get_data(as_text=True)
                    if first.status_code == 404:
                        not_found_seen.add(rule.endpoint)
    assert differences == [], "existence shows through:\n" + "\n".join(differences)
    # each route of the API that takes a name reached its lookup for some caller (not only 403s)
    api_endpoints = {rule.endpoint for rule in rules if rule.endpoint.startswith("api.")}
    assert api_endpoints - not_found_seen == set()


def test_out_of_scope_names_in_bodies_answer_as_absent_ones(plane_app, world):
    # callers that may create role bindings and deploy somewhere, so the bodies reach their lookups
    writers = [caller for caller in world["callers"] if "narrowed to workspace-admin" in caller.label
               or "narrowed to cluster-admin" in caller.label]
    assert len(writers) == 2
    requests = {
        "role binding at a workspace": lambda c, w: ("POST", f"{API}/role-bindings", {
            "json": {"role": "workspace-viewer", "subject": "someone", "cluster": c, "workspace": w}}),
        "role binding at a cluster": lambda c, w: ("POST", f"{API}/role-bindings", {
            "json": {"role": "cluster-viewer", "subject": "someone", "cluster": c}}),
        "token at a workspace": lambda c, w: ("POST", f"{API}/tokens", {
            "json": {"name": "t", "role": "workspace-viewer", "cluster": c, "workspace": w}}),
        "deploy": lambda c, w: ("PUT", f"{API}/apps", {
            "data": service_spec("new", workspace=w, cluster=c), "content_type": "application/yaml"}),
        "promotion": lambda c, w: ("POST", f"{API}/apps/alpha/inside/{APP}/promote", {
            "json": {"target": f"{c}:{w}", "name": "copy"}}),
    }
    differences = []
    for caller in writers:
        for label, make in requests.items():
            for named, absent, varied in comparisons(world, caller, {0, 1}):
                method, path, kwargs = make(*named[:2])
                first = caller.api.request(method, path, **kwargs)
                method, path, kwargs = make(*absent[:2])
                second = caller.api.request(method, path, **kwargs)
                if blanked(first, varied) != blanked(second, ABSENT):
                    differences.append(f"{caller.label}, {label} in {named[:2]} -> {first.status_code} "
                                       f"{first.get_data(as_text=True)[:160]!r}, in {absent[:2]} -> "
                                       f"{second.status_code} {second.get_data(as_text=True)[:160]!r}")
    assert differences == [], "existence shows through:\n" + "\n".join(differences)


def test_a_narrowed_token_lists_only_its_own_cluster(plane_app, world):
    """The reported case: a tenant-admin's workspace-viewer token saw another cluster's (empty) workspace list."""
    caller = world["callers"][0]
    assert caller.api.get(f"{API}/clusters/bravo/workspaces").status_code == 404
    assert caller.api.get(f"{API}/clusters/{ABSENT}/workspaces").status_code == 404
    listed = caller.api.get(f"{API}/clusters/alpha/workspaces")
    assert listed.status_code == 200
    assert [w["name"] for w in listed.get_json()["workspaces"]] == ["inside"]
