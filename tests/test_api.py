"""The /api/v1 routes end to end, on SQLite and on PostgreSQL.

Every route is driven through the real Flask app with real API tokens; what
the API says is checked against what matters behind it: the database rows
(Versions, tokens, the audit log) and the cluster repository's commits and
files. The concurrency test serves the app on a loopback port with a
threaded werkzeug server and deploys from many threads at once.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from contract.repository import app_dir, application_file
from gitops import accounts, layout, tokens
from gitops.apply import TRAILER_DEPLOYMENT
from gitops.clusters import hash_token
from gitops.models import ApiToken, AuditEvent, Cluster, RoleBinding, Tenant, Version
from gitops.accounts import PrincipalCache
from gitops.policy import Principal, Scope
from tests.plane import (Api, add_cluster, add_workspace, app_config, deploy_yaml, make_user, served,  # noqa: F401 - served: a fixture
                         service_spec)
from webapp import create_app

API = "/api/v1"


# --- helpers ----------------------------------------------------------------------------------


def plane_of(app):
    return app.extensions["shipyard"]


def repo_of(app, cluster: str = "demo", tenant: str = "default"):
    plane = plane_of(app)
    with plane.sessions() as session:
        row = session.scalar(select(Cluster).join(Tenant).where(Tenant.name == tenant, Cluster.name == cluster))
        return plane.repos.open(row)


def app_files(repo, workspace: str, app: str, commit=None) -> dict[str, bytes]:
    """The app's manifests and its ArgoCD Application at ``commit`` (default: the tip)."""
    snapshot = repo.snapshot(commit)
    files = snapshot.walk(app_dir(workspace, app))  # keyed by full path
    application = snapshot.read(application_file(workspace, app))
    if application is not None:
        files[application_file(workspace, app)] = application
    return files


def version_rows(app, name: str) -> list[Version]:
    with plane_of(app).sessions() as session:
        return list(session.scalars(select(Version).join(Version.application)
                                    .where(Version.application.has(name=name)).order_by(Version.number)))


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.get_json())
    return response.get_json() if response.data else {}


def error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:2000])
    assert response.mimetype == "application/json"
    body = response.get_json()["error"]
    if code is not None:
        assert body["code"] == code, body
    return body


def login(app, username: str, password: str = "correct horse battery"):
    """A test client logged in with a password; returns it and the CSRF token its API calls need."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": csrf})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    # A login starts a new session with a new CSRF secret: take the token from a page served after it.
    page = client.get("/account").get_data(as_text=True)
    return client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.fixture
def seeded(plane_app, admin) -> Api:
    """Cluster demo with workspace storefront; returns the tenant admin's client."""
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    return admin


def deploy_ok(api: Api, text: str, status: int = 200) -> list[dict]:
    body = ok(deploy_yaml(api, text), status)
    assert body["dry_run"] is False
    return body["versions"]


# --- clusters ---------------------------------------------------------------------------------


def test_cluster_lifecycle(plane_app, admin):
    created = add_cluster(admin)
    assert created["name"] == "demo" and created["git_path"] == "/git/default/demo.git"
    read_token, agent_token = created["read_token"], created["agent_token"]
    assert read_token and agent_token and read_token != agent_token
    # The repository exists with its bootstrap from the start.
    assert repo_of(plane_app).snapshot().read("bootstrap/project.yaml") is not None

    listed = ok(admin.get(f"{API}/clusters"))["clusters"]
    assert [c["name"] for c in listed] == ["demo"]
    got = ok(admin.get(f"{API}/clusters/demo"))
    for shown in (listed[0], got):
        assert "read_token" not in shown and "agent_token" not in shown
        assert read_token not in str(shown) and agent_token not in str(shown)
    assert got["profile"] == created["profile"]

    error(admin.post(f"{API}/clusters", json={"name": "demo", "profile": created["profile"]}), 409, "conflict")
    error(admin.post(f"{API}/clusters", json={"name": "Not_A_Name", "profile": created["profile"]}), 400)

    new_profile = created["profile"].replace("base_domain: demo.localtest.me", "base_domain: apps.example.org")
    assert new_profile != created["profile"]
    assert ok(admin.patch(f"{API}/clusters/demo", json={"profile": new_profile}))["profile"] == new_profile
    assert ok(admin.get(f"{API}/clusters/demo"))["profile"] == new_profile

    bad = error(admin.patch(f"{API}/clusters/demo", json={"profile": new_profile + "flavor: nonsense\n"}), 422,
                "profile_invalid")
    assert bad["problems"] and all({"line", "column", "message"} <= set(p) for p in bad["problems"])
    wrong_name = error(admin.patch(f"{API}/clusters/demo", json={"profile": new_profile.replace("name: demo", "name: x")}),
                       422, "profile_invalid")
    assert "x" in wrong_name["problems"][0]["message"]
    assert ok(admin.get(f"{API}/clusters/demo"))["profile"] == new_profile  # refused changes leave no trace
    error(admin.patch(f"{API}/clusters/demo", json={"colour": "blue"}), 400, "invalid_request")

    rotated = {}
    for kind in ("read", "agent"):
        body = ok(admin.post(f"{API}/clusters/demo/tokens/{kind}"), 201)
        assert body["kind"] == kind and body["token"] not in (read_token, agent_token)
        rotated[kind] = body["token"]
    error(admin.post(f"{API}/clusters/demo/tokens/admin"), 400, "invalid_request")
    with plane_of(plane_app).sessions() as session:
        row = session.scalar(select(Cluster).where(Cluster.name == "demo"))
        assert row.read_token_hash == hash_token(rotated["read"])
        assert row.agent_token_hash == hash_token(rotated["agent"])

    deleted = ok(admin.delete(f"{API}/clusters/demo"))
    assert deleted["deleted"] == "demo" and deleted["repository"] == "archived"
    assert deleted["archive"].startswith("repos/default/.archive/demo-")
    error(admin.get(f"{API}/clusters/demo"), 404, "not_found")
    assert ok(admin.get(f"{API}/clusters"))["clusters"] == []
    error(admin.delete(f"{API}/clusters/demo"), 404)


# --- workspaces -------------------------------------------------------------------------------


def test_workspace_lifecycle(plane_app, admin):
    add_cluster(admin)
    for system in ("default", "kube-system", "kube-public", "argocd", "istio-system"):
        body = error(admin.post(f"{API}/clusters/demo/workspaces", json={"name": system}), 400, "invalid_request")
        assert "system namespace" in body["message"]
    error(admin.post(f"{API}/clusters/demo/workspaces", json={"name": "Bad Name"}), 400)
    error(admin.post(f"{API}/clusters/demo/workspaces", json={"name": "ok", "environment": "moon"}), 400)
    error(admin.post(f"{API}/clusters/demo/workspaces", json={"name": "ok", "labels": {"a": ["b"]}}), 400)
    error(admin.post(f"{API}/clusters/nowhere/workspaces", json={"name": "ok"}), 404)
    assert ok(admin.get(f"{API}/clusters/demo/workspaces"))["workspaces"] == []  # refused ones left nothing

    created = add_workspace(admin, "demo", "storefront", environment="staging")
    assert created == {**created, "cluster": "demo", "name": "storefront", "namespace": "storefront",
                       "environment": "staging"}
    error(admin.post(f"{API}/clusters/demo/workspaces", json={"name": "storefront"}), 409, "conflict")
    add_workspace(admin, "demo", "checkout")
    assert [w["name"] for w in ok(admin.get(f"{API}/clusters/demo/workspaces"))["workspaces"]] == \
        ["checkout", "storefront"]

    patched = ok(admin.patch(f"{API}/clusters/demo/workspaces/storefront",
                             json={"environment": "prod", "labels": {"team": "shop", "tier": 1}}))
    assert patched["environment"] == "prod" and patched["labels"] == {"team": "shop", "tier": "1"}
    assert ok(admin.get(f"{API}/clusters/demo/workspaces/storefront"))["environment"] == "prod"
    error(admin.patch(f"{API}/clusters/demo/workspaces/storefront", json={"environment": "moon"}), 400)
    error(admin.patch(f"{API}/clusters/demo/workspaces/storefront", json={"name": "renamed"}), 400)

    deploy_ok(admin, service_spec("web"))
    body = error(admin.delete(f"{API}/clusters/demo/workspaces/storefront"), 409, "conflict")
    assert "web" in body["message"]
    ok(admin.delete(f"{API}/apps/demo/storefront/web"))
    assert admin.delete(f"{API}/clusters/demo/workspaces/storefront").status_code == 204
    error(admin.get(f"{API}/clusters/demo/workspaces/storefront"), 404)
    assert admin.delete(f"{API}/clusters/demo/workspaces/checkout").status_code == 204
    assert ok(admin.get(f"{API}/clusters/demo/workspaces"))["workspaces"] == []


# --- role bindings, users, tokens -------------------------------------------------------------


def test_role_bindings(plane_app, seeded):
    admin = seeded
    before = ok(admin.get(f"{API}/role-bindings"))["role_bindings"]
    assert [(b["role"], b["subject"]) for b in before] == [("tenant-admin", "admin")]

    made = ok(admin.post(f"{API}/role-bindings", json={"role": "workspace-editor", "subject": "alice",
                                                       "cluster": "demo", "workspace": "storefront"}), 201)
    assert made == {**made, "role": "workspace-editor", "subject_kind": "user", "subject": "alice",
                    "cluster": "demo", "workspace": "storefront", "created_by": "admin"}
    group = ok(admin.post(f"{API}/role-bindings", json={"role": "cluster-viewer", "subject_kind": "group",
                                                        "subject": "devs", "cluster": "demo"}), 201)
    listed = ok(admin.get(f"{API}/role-bindings"))["role_bindings"]
    assert {b["id"] for b in listed} == {before[0]["id"], made["id"], group["id"]}

    # A cluster role cannot be bound to one workspace; a workspace needs its cluster.
    body = error(admin.post(f"{API}/role-bindings", json={"role": "cluster-admin", "subject": "bob",
                                                          "cluster": "demo", "workspace": "storefront"}), 400)
    assert "cluster-admin" in body["message"]
    error(admin.post(f"{API}/role-bindings", json={"role": "tenant-admin", "subject": "bob", "cluster": "demo"}), 400)
    error(admin.post(f"{API}/role-bindings", json={"role": "root", "subject": "bob"}), 400)
    error(admin.post(f"{API}/role-bindings", json={"role": "workspace-viewer", "subject": "bob",
                                                   "workspace": "storefront"}), 400)
    error(admin.post(f"{API}/role-bindings", json={"role": "workspace-viewer", "subject": "bob",
                                                   "subject_kind": "robot", "cluster": "demo"}), 400)
    error(admin.post(f"{API}/role-bindings", json={"role": "workspace-viewer", "subject": "bob",
                                                   "cluster": "demo", "workspace": "nowhere"}), 404)

    # The binding takes effect: alice can deploy into storefront.
    alice = make_user(plane_app, "alice", None)
    with plane_of(plane_app).sessions.begin() as session:
        tenant = session.scalar(select(Tenant))
        scope = accounts.resolve_scope(session, tenant.id, "demo", "storefront")
        user_id = accounts.check_password(session, "default", "alice", "correct horse battery").id
        alice = Api(alice.client, tokens.issue_token(session, tenant.id, user_id, "ci", "workspace-editor",
                                                       scope, 1).secret, "alice")
    assert deploy_ok(alice, service_spec("web"))[0]["author"] == "alice"

    assert admin.delete(f"{API}/role-bindings/{made['id']}").status_code == 204
    assert made["id"] not in {b["id"] for b in ok(admin.get(f"{API}/role-bindings"))["role_bindings"]}
    error(admin.delete(f"{API}/role-bindings/{made['id']}"), 404)
    error(deploy_yaml(alice, service_spec("web", image="ghcr.io/acme/web:2")), 403)  # the right went with it


def test_users(plane_app, seeded):
    admin = seeded
    made = ok(admin.post(f"{API}/users", json={"username": "carol", "password": "a long enough one",
                                               "display_name": "Carol", "email": "carol@example.org"}), 201)
    assert made == {**made, "username": "carol", "login": "local", "active": True, "email": "carol@example.org"}
    assert "password" not in str(made) and "a long enough one" not in str(made)
    body = error(admin.post(f"{API}/users", json={"username": "dave", "password": "short"}), 400, "invalid_request")
    assert "12" in body["message"]
    error(admin.post(f"{API}/users", json={"username": "carol", "password": "another long one"}), 409)
    error(admin.post(f"{API}/users", json={"username": " carol", "password": "another long one"}), 400)
    error(admin.post(f"{API}/users", json={"password": "another long one"}), 400)
    assert [u["username"] for u in ok(admin.get(f"{API}/users"))["users"]] == ["admin", "carol"]
    # The new user can log in with the password (and nothing else).
    login(plane_app, "carol", "a long enough one")
    client = plane_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"username": "carol", "password": "wrong password!",
                                       "csrf_token": csrf}).status_code == 401


def test_tokens(plane_app, seeded):
    admin = seeded
    # Tokens are made by people who logged in, never by other tokens.
    error(admin.post(f"{API}/tokens", json={"name": "ci", "role": "workspace-editor"}), 403, "forbidden")

    client, csrf = login(plane_app, "admin")
    error(client.post(f"{API}/tokens", json={"name": "ci", "role": "workspace-editor", "cluster": "demo",
                                             "workspace": "storefront"}), 403, "csrf_failed")
    response = client.post(f"{API}/tokens", headers={"X-CSRFToken": csrf},
                           json={"name": "ci", "role": "workspace-editor", "cluster": "demo",
                                 "workspace": "storefront", "expires_in_days": 7})
    created = ok(response, 201)
    secret = created["token"]
    assert secret.startswith("shy_") and created["role"] == "workspace-editor" and created["workspace"] == "storefront"
    expires = dt.datetime.fromisoformat(created["expires_at"])
    assert dt.timedelta(days=6) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=7)
    error(client.post(f"{API}/tokens", headers={"X-CSRFToken": csrf},
                      json={"name": "x", "role": "workspace-editor", "expires_in_days": 1000}), 400)
    error(client.post(f"{API}/tokens", headers={"X-CSRFToken": csrf}, json={"role": "workspace-editor"}), 400)

    listed = ok(client.get(f"{API}/tokens"))["tokens"]
    assert created["id"] in {t["id"] for t in listed}
    assert secret not in str(listed) and secret.split("_", 2)[2] not in str(listed)
    assert all("token" not in t for t in listed)

    ci = Api(plane_app.test_client(), secret, "ci")
    me = ok(ci.get(f"{API}/me"))
    assert me["user"]["username"] == "admin" and me["via_token"] is True
    deploy_ok(ci, service_spec("web"))
    # Narrowed to its workspace: the admin's token of workspace-editor cannot create clusters.
    error(ci.get(f"{API}/users"), 403)

    assert client.delete(f"{API}/tokens/{created['id']}", headers={"X-CSRFToken": csrf}).status_code == 204
    body = error(ci.get(f"{API}/me"), 401, "unauthorized")
    assert "revoked" in body["message"]
    assert ci.get(f"{API}/me").headers["WWW-Authenticate"].startswith("Bearer")
    assert ok(client.get(f"{API}/tokens"))["tokens"][-1]["revoked_at"] is not None

    # An expired token is refused the moment it expires.
    other = ok(client.post(f"{API}/tokens", headers={"X-CSRFToken": csrf},
                           json={"name": "short-lived", "role": "tenant-admin"}), 201)
    short = Api(plane_app.test_client(), other["token"], "short")
    ok(short.get(f"{API}/clusters"))
    with plane_of(plane_app).sessions.begin() as session:
        session.execute(update(ApiToken).where(ApiToken.id == other["id"])
                        .values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    # Moving the expiry back in the database stands for time passing; a cached principal never
    # outlives its token's real expiry (test_the_principal_cache_...), so forget it here.
    plane_of(plane_app).principals.clear()
    error(short.get(f"{API}/clusters"), 401, "unauthorized")

    # Garbage credentials are 401s, never 500s.
    for header in ("Bearer nonsense", "Bearer shy_", "Bearer shy_abc_", f"Bearer {secret}x", "Basic abc", "Bearer "):
        error(plane_app.test_client().get(f"{API}/clusters", headers={"Authorization": header}), 401)
    error(plane_app.test_client().get(f"{API}/clusters"), 401)


# --- deploys --------------------------------------------------------------------------------


WEB_JSON = {
    "type": "service", "name": "web", "workspace_fqn": "demo:storefront",
    "image": {"type": "image", "image_uri": "ghcr.io/acme/web:1.0"}, "ports": [{"port": 8000}],
}


def test_deploy_yaml_and_json_bodies(plane_app, seeded):
    admin = seeded
    repo = repo_of(plane_app)
    (first,) = deploy_ok(admin, service_spec("web"))
    assert first == {**first, "app": "demo:storefront/web", "number": 1, "action": "deploy", "state": "committed",
                     "changed": True, "author": "admin", "source": "api"}
    assert first["commit"] == str(repo.tip())
    assert app_files(repo, "storefront", "web")

    as_text = ok(admin.put(f"{API}/apps", json={"spec": service_spec("web", image="ghcr.io/acme/web:2.0"),
                                                "source": "ci", "source_commit": "abc123"}))["versions"]
    assert (as_text[0]["number"], as_text[0]["source"], as_text[0]["source_commit"]) == (2, "ci", "abc123")
    message = repo.repo[repo.tip()].message
    assert "abc123" in message and f"{TRAILER_DEPLOYMENT}: {as_text[0]['deployment_id']}" in message

    as_object = ok(admin.put(f"{API}/apps", json={"spec": {**WEB_JSON, "image": {
        "type": "image", "image_uri": "ghcr.io/acme/web:3.0"}}}))["versions"]
    assert as_object[0]["number"] == 3 and as_object[0]["changed"] is True
    assert b"ghcr.io/acme/web:3.0" in b"".join(app_files(repo, "storefront", "web").values())

    as_list = ok(admin.put(f"{API}/apps", json={"spec": [
        {**WEB_JSON, "image": {"type": "image", "image_uri": "ghcr.io/acme/web:4.0"}},
        {**WEB_JSON, "name": "api"}]}))["versions"]
    assert [(v["app"], v["number"]) for v in as_list] == [("demo:storefront/api", 1), ("demo:storefront/web", 4)]
    assert as_list[0]["commit"] == as_list[1]["commit"] == str(repo.tip())  # one commit for both

    versions = ok(admin.get(f"{API}/apps/demo/storefront/web/versions"))["versions"]
    assert [v["number"] for v in versions] == [4, 3, 2, 1]
    assert ok(admin.get(f"{API}/apps/demo/storefront/web/versions", query_string={"limit": 2,
                                                                                  "before": 4}))["versions"][0]["number"] == 3
    got = ok(admin.get(f"{API}/apps/demo/storefront/web/versions/3"))
    assert got["spec"]["image"]["image_uri"] == "ghcr.io/acme/web:3.0" and got["number"] == 3
    error(admin.get(f"{API}/apps/demo/storefront/web/versions/99"), 404)
    app = ok(admin.get(f"{API}/apps/demo/storefront/web"))
    assert app == {**app, "current_version": 4, "versions": 4, "deleted": False, "kind": "service"}
    assert app["latest_version"]["number"] == 4
    assert [a["name"] for a in ok(admin.get(f"{API}/apps"))["apps"]] == ["api", "web"]
    assert [a["name"] for a in ok(admin.get(f"{API}/apps", query_string={"limit": 1}))["apps"]] == ["api"]
    page = ok(admin.get(f"{API}/apps", query_string={"limit": 1}))
    assert page["next"] == "demo/storefront/api"
    assert [a["name"] for a in ok(admin.get(f"{API}/apps", query_string={"after": page["next"]}))["apps"]] == ["web"]
    error(admin.get(f"{API}/apps/demo/storefront/nothing"), 404)
    error(admin.get(f"{API}/apps/demo/nowhere/web"), 404)


def test_multi_document_deploy(plane_app, seeded):
    admin = seeded
    add_workspace(admin, "demo", "checkout")
    text = "\n---\n".join([service_spec("web"), service_spec("api"), service_spec("pay", workspace="checkout")])
    versions = deploy_ok(admin, text)
    assert sorted(v["app"] for v in versions) == ["demo:checkout/pay", "demo:storefront/api", "demo:storefront/web"]
    assert len({v["commit"] for v in versions}) == 1
    repo = repo_of(plane_app)
    for workspace, name in (("storefront", "web"), ("storefront", "api"), ("checkout", "pay")):
        assert layout.app_exists(repo.snapshot(), workspace, name)
    # One bad document refuses the whole file, naming where.
    bad = error(deploy_yaml(admin, service_spec("web", image="ghcr.io/acme/web:2") + "---\n" +
                            service_spec("api") + "replicas: lots\n"), 422, "spec_invalid")
    assert all(p["line"] > 5 for p in bad["problems"])
    assert ok(admin.get(f"{API}/apps/demo/storefront/web"))["versions"] == 1


def test_dry_run_commits_nothing(plane_app, seeded):
    admin = seeded
    deploy_ok(admin, service_spec("web"))
    repo = repo_of(plane_app)
    tip = repo.tip()
    rows = len(version_rows(plane_app, "web"))

    body = ok(deploy_yaml(admin, service_spec("web", image="ghcr.io/acme/web:2.0"), dry_run="true"))
    assert body["dry_run"] is True
    (change,) = body["apps"]
    assert change["app"] == "demo:storefront/web" and change["action"] == "updated"
    assert "-" in change["diff"] and "+" in change["diff"] and "ghcr.io/acme/web:2.0" in change["diff"]
    created = ok(admin.put(f"{API}/apps", json={"spec": service_spec("fresh"), "dry_run": True}))["apps"]
    assert created[0]["action"] == "created"
    same = ok(deploy_yaml(admin, service_spec("web"), dry_run="1"))["apps"]
    assert same[0]["action"] == "unchanged" and same[0]["diff"] == ""

    assert repo.tip() == tip
    assert len(version_rows(plane_app, "web")) == rows and version_rows(plane_app, "fresh") == []
    error(admin.get(f"{API}/apps/demo/storefront/fresh"), 404)
    error(deploy_yaml(admin, service_spec("web"), dry_run="perhaps"), 400)


def test_identical_redeploy_makes_no_version(plane_app, seeded):
    admin = seeded
    (first,) = deploy_ok(admin, service_spec("web"))
    repo = repo_of(plane_app)
    tip = repo.tip()
    (again,) = deploy_ok(admin, service_spec("web"))
    assert (again["number"], again["unchanged"], again["commit"]) == (1, True, first["commit"])
    assert repo.tip() == tip
    assert [v["number"] for v in ok(admin.get(f"{API}/apps/demo/storefront/web/versions"))["versions"]] == [1]
    # the request is on record all the same, naming the version it left in place
    latest = ok(admin.get(f"{API}/audit", query_string={"limit": 1}))["events"][0]
    assert (latest["action"], latest["detail"]["version"], latest["detail"]["unchanged"]) == ("app.deploy", 1, True)
    # a rollback to the version running is no version either
    rolled = ok(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 1}), 201)
    assert (rolled["number"], rolled["unchanged"]) == (1, True)

    # the same spec written otherwise (comments, order of fields) is the same spec
    (reordered,) = deploy_ok(admin, "# the storefront\n" + "\n".join(reversed(service_spec("web").splitlines())))
    assert (reordered["number"], reordered["unchanged"]) == (1, True)

    # The same spec for a cluster whose profile changed renders other bytes: a new version.
    profile = ok(admin.get(f"{API}/clusters/demo"))["profile"]
    ok(admin.patch(f"{API}/clusters/demo", json={"profile": profile.replace("project: shipyard", "project: shop")}))
    (changed,) = deploy_ok(admin, service_spec("web"))
    assert (changed["number"], changed["unchanged"], changed["changed"]) == (2, False, True)


def test_diff_between_versions(plane_app, seeded):
    admin = seeded
    deploy_ok(admin, service_spec("web"))
    deploy_ok(admin, service_spec("web", image="ghcr.io/acme/web:2.0", extra="replicas: 3\n"))
    diff = ok(admin.get(f"{API}/apps/demo/storefront/web/diff", query_string={"from": 1, "to": 2}))
    assert (diff["from"], diff["to"]) == (1, 2)
    assert "-  image_uri: ghcr.io/acme/web:1.0" in diff["spec"] and "+  image_uri: ghcr.io/acme/web:2.0" in diff["spec"]
    assert "+replicas: 3" in diff["spec"]
    manifests = diff["manifests"]
    assert "--- a/workspaces/storefront/web/deployment-web.yaml\n" in manifests
    assert "+++ b/workspaces/storefront/web/deployment-web.yaml\n" in manifests
    assert "-        image: ghcr.io/acme/web:1.0\n" in manifests and "+        image: ghcr.io/acme/web:2.0\n" in manifests
    assert "-  replicas: 1\n" in manifests and "+  replicas: 3\n" in manifests
    same = ok(admin.get(f"{API}/apps/demo/storefront/web/diff", query_string={"from": 2, "to": 2}))
    assert same["spec"] == "" and same["manifests"] == ""
    error(admin.get(f"{API}/apps/demo/storefront/web/diff", query_string={"from": 1}), 400)
    error(admin.get(f"{API}/apps/demo/storefront/web/diff", query_string={"from": 1, "to": 9}), 404)
    error(admin.get(f"{API}/apps/demo/storefront/web/diff", query_string={"from": "one", "to": 2}), 400)


def test_rollback(plane_app, seeded):
    admin = seeded
    (v1,) = deploy_ok(admin, service_spec("web", extra="env: {MODE: one}\n"))
    deploy_ok(admin, service_spec("web", image="ghcr.io/acme/web:2.0", extra="replicas: 4\n"))
    repo = repo_of(plane_app)
    assert app_files(repo, "storefront", "web") != app_files(repo, "storefront", "web", v1["commit"])

    rolled = ok(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 1}), 201)
    assert rolled == {**rolled, "number": 3, "action": "rollback", "origin": {"rollback_of": 1}, "changed": True,
                      "state": "committed"}
    assert rolled["commit"] == str(repo.tip())
    assert app_files(repo, "storefront", "web") == app_files(repo, "storefront", "web", v1["commit"])
    assert ok(admin.get(f"{API}/apps/demo/storefront/web/versions/3"))["spec"]["env"] == {"MODE": "one"}

    error(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 42}), 404)
    error(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": "1"}), 400)
    error(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={}), 400)


def test_promote_across_workspaces_and_clusters(plane_app, seeded):
    admin = seeded
    add_workspace(admin, "demo", "checkout")
    add_cluster(admin, "edge")
    add_workspace(admin, "edge", "storefront")
    deploy_ok(admin, service_spec("web", extra="env: {MODE: staging, KEEP: yes}\nreplicas: 2\n"))

    promoted = ok(admin.post(f"{API}/apps/demo/storefront/web/promote", json={
        "target": "demo:checkout", "overrides": {"env": {"MODE": "prod"}, "replicas": 5}}), 201)
    assert promoted == {**promoted, "app": "demo:checkout/web", "number": 1, "action": "promote",
                        "origin": {"promoted_from": "demo:storefront/web", "version": 1,
                                   "overrides": {"env": {"MODE": "prod"}, "replicas": 5}}}
    spec = ok(admin.get(f"{API}/apps/demo/checkout/web/versions/1"))["spec"]
    assert spec["env"] == {"MODE": "prod", "KEEP": "yes"} and spec["replicas"] == 5
    assert spec["workspace_fqn"] == "demo:checkout"
    assert layout.app_exists(repo_of(plane_app).snapshot(), "checkout", "web")

    across = ok(admin.post(f"{API}/apps/demo/storefront/web/promote", json={
        "target": "edge:storefront", "version": 1, "name": "web-edge", "overrides": {"env": None, "replicas": None}}),
        201)
    assert across["app"] == "edge:storefront/web-edge" and across["origin"]["promoted_from"] == "demo:storefront/web"
    spec = ok(admin.get(f"{API}/apps/edge/storefront/web-edge/versions/1"))["spec"]
    assert "env" not in spec and "replicas" not in spec and spec["name"] == "web-edge"
    edge = repo_of(plane_app, "edge")
    assert across["commit"] == str(edge.tip()) and layout.app_exists(edge.snapshot(), "storefront", "web-edge")
    assert not layout.app_exists(edge.snapshot(), "storefront", "web")

    # promoting again keeps what the target was promoted with, under the new overrides
    deploy_ok(admin, service_spec("web", extra="env: {MODE: staging, KEEP: yes, NEW: 1}\nreplicas: 2\n"))
    again = ok(admin.post(f"{API}/apps/demo/storefront/web/promote", json={
        "target": "demo:checkout", "overrides": {"env": {"KEEP": "no"}}}), 201)
    spec = ok(admin.get(f"{API}/apps/demo/checkout/web/versions/{again['number']}"))["spec"]
    assert spec["env"] == {"MODE": "prod", "KEEP": "no", "NEW": 1} and spec["replicas"] == 5
    assert again["origin"]["overrides"] == {"env": {"MODE": "prod", "KEEP": "no"}, "replicas": 5}
    fresh = ok(admin.post(f"{API}/apps/demo/storefront/web/promote", json={
        "target": "demo:checkout", "keep_overrides": False}), 201)
    spec = ok(admin.get(f"{API}/apps/demo/checkout/web/versions/{fresh['number']}"))["spec"]
    assert spec["env"]["MODE"] == "staging" and spec["replicas"] == 2 and "overrides" not in fresh["origin"]

    error(admin.post(f"{API}/apps/demo/storefront/web/promote", json={"target": "edge"}), 400)
    error(admin.post(f"{API}/apps/demo/storefront/web/promote", json={"target": "edge:nowhere"}), 404)
    refused = error(admin.post(f"{API}/apps/demo/storefront/web/promote", json={
        "target": "demo:checkout", "overrides": {"replicas": "many"}}), 422)
    [problem] = refused["problems"]
    assert problem["file"].startswith("demo:storefront/web v") and problem["file"].endswith(" promoted to demo:checkout")
    assert (problem["line"], problem["path"]) == (0, "/replicas") and "(the override replicas)" in problem["message"]


def test_delete_app_keeps_history(plane_app, seeded):
    admin = seeded
    deploy_ok(admin, service_spec("web"))
    deploy_ok(admin, service_spec("keep"))
    repo = repo_of(plane_app)
    deleted = ok(admin.delete(f"{API}/apps/demo/storefront/web"))
    assert deleted == {**deleted, "number": 2, "action": "delete", "state": "committed", "changed": True}
    snapshot = repo.snapshot()
    assert deleted["commit"] == str(repo.tip())
    assert snapshot.tree_id(app_dir("storefront", "web")) is None
    assert snapshot.read(application_file("storefront", "web")) is None
    assert layout.app_exists(snapshot, "storefront", "keep")

    app = ok(admin.get(f"{API}/apps/demo/storefront/web"))
    assert app["deleted"] is True and app["current_version"] == 2
    assert [v["action"] for v in ok(admin.get(f"{API}/apps/demo/storefront/web/versions"))["versions"]] == \
        ["delete", "deploy"]
    assert [a["name"] for a in ok(admin.get(f"{API}/apps"))["apps"]] == ["keep"]
    assert [a["name"] for a in ok(admin.get(f"{API}/apps", query_string={"include_deleted": "true"}))["apps"]] == \
        ["keep", "web"]
    error(admin.delete(f"{API}/apps/demo/storefront/web"), 404)
    # Deploying again brings it back as version 3; rolling back to the delete is refused.
    assert deploy_ok(admin, service_spec("web"))[0]["number"] == 3
    error(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 2}), 400)


# --- errors -----------------------------------------------------------------------------------


def test_request_errors_are_json(plane_app, seeded):
    admin = seeded
    limit = plane_app.config["MAX_CONTENT_LENGTH"]
    big = service_spec("web") + "# " + "x" * limit + "\n"
    error(deploy_yaml(admin, big), 413, "payload_too_large")
    error(admin.put(f"{API}/apps", json={"spec": "x" * (limit + 1)}), 413, "payload_too_large")
    error(admin.put(f"{API}/apps", data=service_spec("web"), content_type="text/plain"), 415, "unsupported_media_type")
    error(admin.post(f"{API}/clusters", data="name=x", content_type="application/x-www-form-urlencoded"), 415)
    error(admin.put(f"{API}/apps", data='{"spec": ', content_type="application/json"), 400, "invalid_request")
    error(admin.put(f"{API}/apps", json=["not", "an", "object"]), 400)
    error(admin.put(f"{API}/apps", json={"spec": 42}), 400)
    error(admin.put(f"{API}/apps", json={"spec": []}), 400)
    error(deploy_yaml(admin, b"\xff\xfe not utf-8"), 400)

    broken = error(deploy_yaml(admin, "type: service\nname: web\nimage: [unclosed\n"), 422, "spec_invalid")
    (problem,) = broken["problems"]
    assert problem["line"] >= 3 and problem["column"] >= 1 and problem["file"] == "<request>"
    named = error(deploy_yaml(admin, "type: service\nname: web\nimage: [unclosed\n", filename="web.yaml"), 422)
    assert named["problems"][0]["file"] == "web.yaml"

    spec = error(deploy_yaml(admin, service_spec("web") + "replicas: lots\n"), 422, "spec_invalid")
    (problem,) = spec["problems"]
    assert (problem["line"], problem["column"]) == (6, 11) and problem["path"] == "/replicas"

    error(deploy_yaml(admin, service_spec("web", workspace="nowhere")), 404, "not_found")
    error(deploy_yaml(admin, ""), 422, "spec_invalid")

    for response in (admin.get(f"{API}/nothing-here"), admin.get("/api/v2/apps")):
        error(response, 404, "not_found")
    error(admin.patch(f"{API}/apps"), 405, "method_not_allowed")
    error(admin.post(f"{API}/apps/demo/storefront/web/versions"), 405)
    error(admin.get(f"{API}/role-bindings/notanumber"), 404)
    assert version_rows(plane_app, "web") == []  # none of that left a version behind


def test_audit_log_records_who_did_what(plane_app, seeded):
    admin = seeded
    deploy_ok(admin, service_spec("web"))
    deploy_ok(admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    ok(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 1}), 201)
    ok(admin.delete(f"{API}/apps/demo/storefront/web"))
    events = ok(admin.get(f"{API}/audit"))["events"]
    seen = [(e["action"], e["target"]) for e in reversed(events)]
    assert seen == [("cluster.create", "demo"), ("workspace.create", "demo:storefront"),
                    ("app.deploy", "demo:storefront/web"), ("app.deploy", "demo:storefront/web"),
                    ("app.rollback", "demo:storefront/web"), ("app.delete", "demo:storefront/web")]
    assert all(e["actor"].startswith("admin (token ") for e in events)
    assert events[1]["detail"]["version"] == 3 and events[2]["detail"]["version"] == 2
    assert [e["id"] for e in ok(admin.get(f"{API}/audit", query_string={"limit": 2}))["events"]] == \
        [events[0]["id"], events[1]["id"]]
    older = ok(admin.get(f"{API}/audit", query_string={"before": events[1]["id"]}))["events"]
    assert [e["id"] for e in older] == [e["id"] for e in events[2:]]
    with plane_of(plane_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == len(events)


# --- concurrency ------------------------------------------------------------------------------


THREADS, DEPLOYS = 8, 5


def test_concurrent_deploys_number_versions_in_order(plane_app, seeded, served):
    headers = {"Authorization": f"Bearer {seeded.token}", "Content-Type": "application/yaml"}

    def worker(thread: int) -> list[tuple[int, int]]:
        numbers = []
        with httpx.Client(base_url=served, headers=headers, timeout=120) as client:
            for round_ in range(DEPLOYS):
                shared = client.put(f"{API}/apps", content=service_spec("web", image=f"ghcr.io/acme/web:{thread}.{round_}"))
                own = client.put(f"{API}/apps", content=service_spec(f"app-{thread}", image=f"ghcr.io/acme/a:{round_}"))
                for response in (shared, own):
                    assert response.status_code == 200, response.text
                numbers.append((shared.json()["versions"][0]["number"], own.json()["versions"][0]["number"]))
        return numbers

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))

    shared_numbers = sorted(n for result in results for n, _ in result)
    assert shared_numbers == list(range(1, THREADS * DEPLOYS + 1))
    for result in results:
        own = [n for _, n in result]
        assert own == list(range(1, DEPLOYS + 1))  # one thread's deploys of its own app, in its order
        shared = [n for n, _ in result]
        assert shared == sorted(shared)  # a thread's later deploy never gets a lower number

    repo = repo_of(plane_app)
    commits = {str(c.id): c.message for c in repo.log(limit=10_000)}
    for name in ["web"] + [f"app-{t}" for t in range(THREADS)]:
        rows = version_rows(plane_app, name)
        expected = THREADS * DEPLOYS if name == "web" else DEPLOYS
        assert [v.number for v in rows] == list(range(1, expected + 1))
        assert all(v.state in ("committed", "superseded") for v in rows), [(v.number, v.state) for v in rows]
        committed = [v for v in rows if v.state == "committed"]
        for version in committed:
            assert version.commit_id in commits, f"{name} v{version.number}: commit {version.commit_id} not in repo"
            assert version.changed
            assert f"{TRAILER_DEPLOYMENT}: {version.deployment_id}" in commits[version.commit_id].splitlines()
        highest = max(committed, key=lambda v: v.number)
        assert highest.number == expected  # the last number handed out is never superseded
        assert app_files(repo, "storefront", name) == app_files(repo, "storefront", name, highest.commit_id)
        image = highest.spec["image"]["image_uri"]
        assert image.encode() in app_files(repo, "storefront", name)[f"workspaces/storefront/{name}/deployment-{name}.yaml"]
        app = ok(seeded.get(f"{API}/apps/demo/storefront/{name}"))
        assert app["current_version"] == expected


# --- tenancy ----------------------------------------------------------------------------------


def second_tenant(app, tenant: str = "other", username: str = "olga") -> Api:
    """A tenant made directly in the database, with a tenant admin and their token."""
    with plane_of(app).sessions.begin() as session:
        row = accounts.ensure_tenant(session, tenant)
        user = accounts.create_local_user(session, row, username, "correct horse battery")
        session.add(RoleBinding(tenant_id=row.id, role="tenant-admin", subject_kind="user", subject=username))
        new = tokens.issue_token(session, row.id, user.id, "test", "tenant-admin", Scope(row.id), 30)
        return Api(app.test_client(), new.secret, username)


def test_tenants_never_see_each_other(plane_app, seeded):
    admin = seeded
    (mine,) = deploy_ok(admin, service_spec("web"))
    my_binding = ok(admin.get(f"{API}/role-bindings"))["role_bindings"][0]
    with plane_of(plane_app).sessions() as session:
        my_token = session.scalar(select(ApiToken.id))
    other = second_tenant(plane_app)

    assert ok(other.get(f"{API}/clusters"))["clusters"] == []
    assert ok(other.get(f"{API}/apps"))["apps"] == []
    assert ok(other.get(f"{API}/apps", query_string={"cluster": "demo"}))["apps"] == []
    for path in ("/clusters/demo", "/clusters/demo/workspaces", "/clusters/demo/workspaces/storefront",
                 "/apps/demo/storefront/web", "/apps/demo/storefront/web/versions",
                 "/apps/demo/storefront/web/versions/1"):
        error(other.get(API + path), 404)
    error(other.delete(f"{API}/role-bindings/{my_binding['id']}"), 404)
    error(other.delete(f"{API}/tokens/{my_token}"), 404)
    error(other.delete(f"{API}/apps/demo/storefront/web"), 404)
    error(other.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 1}), 404)
    error(deploy_yaml(other, service_spec("web")), 404)
    assert [b["subject"] for b in ok(other.get(f"{API}/role-bindings"))["role_bindings"]] == ["olga"]
    assert [u["username"] for u in ok(other.get(f"{API}/users"))["users"]] == ["olga"]
    assert ok(other.get(f"{API}/audit"))["events"] == []
    assert [t["user"] for t in ok(other.get(f"{API}/tokens"))["tokens"]] == ["olga"]

    # The same names in the other tenant are other objects, with their own repository.
    add_cluster(other)
    add_workspace(other, "demo", "storefront")
    (theirs,) = deploy_ok(other, service_spec("web", image="ghcr.io/other/web:9"))
    assert theirs["number"] == 1 and theirs["commit"] != mine["commit"]
    assert repo_of(plane_app, tenant="other").path != repo_of(plane_app).path
    assert [v["number"] for v in ok(admin.get(f"{API}/apps/demo/storefront/web/versions"))["versions"]] == [1]
    assert ok(admin.get(f"{API}/apps/demo/storefront/web/versions/1"))["spec"]["image"]["image_uri"] == \
        "ghcr.io/acme/web:1.0"
    assert ok(other.get(f"{API}/apps/demo/storefront/web/versions/1"))["spec"]["image"]["image_uri"] == \
        "ghcr.io/other/web:9"
    assert [a["cluster"] for a in ok(admin.get(f"{API}/apps"))["apps"]] == ["demo"]
    assert len(ok(admin.get(f"{API}/clusters"))["clusters"]) == 1
    assert all(e["actor"].startswith("olga") for e in ok(other.get(f"{API}/audit"))["events"])
    assert not any(e["actor"].startswith("olga") for e in ok(admin.get(f"{API}/audit"))["events"])
    # Deleting theirs leaves mine alone.
    assert other.delete(f"{API}/apps/demo/storefront/web").status_code == 200
    assert ok(admin.get(f"{API}/apps/demo/storefront/web"))["deleted"] is False


# --- inputs that once ended in server errors (found by tests/test_schemathesis.py) ----------------


def test_characters_outside_the_basic_plane_survive_rollback_and_promote(plane_app, seeded):
    admin = seeded
    add_workspace(admin, "demo", "prod")
    deploy_ok(admin, service_spec("web", extra="env: {GREETING: 'hi 😀'}\n"))
    deploy_ok(admin, service_spec("web"))
    rolled = ok(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 1}), 201)
    assert ok(admin.get(f"{API}/apps/demo/storefront/web/versions/{rolled['number']}"))["spec"]["env"] == \
        {"GREETING": "hi 😀"}
    ok(admin.post(f"{API}/apps/demo/storefront/web/promote", json={"target": "demo:prod", "version": 1}), 201)
    # canonical YAML writes characters outside the basic plane as escapes
    assert b'value: "hi \\U0001F600"' in app_files(repo_of(plane_app), "prod", "web")["workspaces/prod/web/deployment-web.yaml"]
    as_object = ok(admin.put(f"{API}/apps", json={"spec": {**WEB_JSON, "name": "api", "env": {"A": "🚢"}}}))
    assert as_object["versions"][0]["state"] == "committed"


def test_unstorable_json_is_a_bad_request(plane_app, seeded):
    admin = seeded
    for body in ('{"username": "\\ud800x", "password": "long enough password"}',
                 '{"username": "a\\u0000b", "password": "long enough password"}'):
        error(admin.post(f"{API}/users", data=body, content_type="application/json"), 400, "invalid_request")
    lone = '{"spec": {"type": "service", "name": "web", "workspace_fqn": "demo:storefront", "\\udc00": 1}}'
    error(admin.put(f"{API}/apps", data=lone, content_type="application/json"), 400, "invalid_request")
    assert [u["username"] for u in ok(admin.get(f"{API}/users"))["users"]] == ["admin"]
    for depth in (5000, 100_000):  # deeper than Python's stack, within MAX_CONTENT_LENGTH
        error(admin.put(f"{API}/apps", data='{"spec": ' + "[" * depth + "]" * depth + "}",
                        content_type="application/json"), 400, "invalid_request")
    # YAML can spell NUL as an escape; a spec holding one must still be stored (or refused), never a 500
    response = deploy_yaml(admin, service_spec("web", extra='env: {A: "x\\0y"}\n'))
    assert response.status_code in (200, 422), response.get_data(as_text=True)


def test_numbers_beyond_the_id_columns_are_not_found(plane_app, seeded):
    admin = seeded
    deploy_ok(admin, service_spec("web"))
    huge = 10**25
    for path in (f"/role-bindings/{huge}", f"/tokens/{huge}", f"/role-bindings/{2**31}"):
        error(admin.delete(API + path), 404, "not_found")
    error(admin.get(f"{API}/apps/demo/storefront/web/versions/{huge}"), 404)
    error(admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": huge}), 404)
    error(admin.post(f"{API}/apps/demo/storefront/web/promote", json={"target": "demo:storefront", "name": "w",
                                                                      "version": -huge}), 404)


def test_a_token_used_only_for_reads_records_its_last_use(plane_app, admin):
    from gitops.models import ApiToken

    assert admin.get("/api/v1/clusters").status_code == 200
    plane = plane_app.extensions["shipyard"]
    with plane.sessions() as session:
        (token,) = session.query(ApiToken).all()
        assert token.last_used_at is not None


def test_the_principal_cache_bounds_staleness_and_token_expiry():
    alice = Principal(tenant_id=1, user_id=1, name="alice")
    cache = PrincipalCache(ttl=30)
    cache.put("shy_a_secret", alice, None)
    assert cache.get("shy_a_secret") is alice and cache.get("shy_a_other") is None
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=50)
    cache.put("shy_b_secret", alice, soon)  # expires long before the ttl
    time.sleep(0.1)
    assert cache.get("shy_b_secret") is None and cache.get("shy_a_secret") is alice
    cache.clear()
    assert cache.get("shy_a_secret") is None
    off = PrincipalCache(ttl=0)
    off.put("shy_a_secret", alice, None)
    assert off.get("shy_a_secret") is None


def test_the_principal_cache_never_keeps_a_token_longer_than_a_second(caplog):
    alice = Principal(tenant_id=1, user_id=1, name="alice")
    cache = PrincipalCache(ttl=30)
    assert cache.ttl == 1.0 and "TOKEN_CACHE_SECONDS=30 is above" in caplog.text
    cache.put("shy_a_secret", alice, None)
    time.sleep(1.05)
    assert cache.get("shy_a_secret") is None


def test_a_revoked_token_stops_working_in_every_worker_within_the_cache_time(plane_app, admin):
    """Two app instances on one database stand for two workers: a revocation made through one
    is refused at once there, and by the other once its cached principal is older than the TTL."""
    ci = make_user(plane_app, "ci", "tenant-admin")
    with plane_of(plane_app).sessions() as session:
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.token_id == ci.token.split("_")[1]))
    other = create_app(app_config(Path(plane_app.config["DATA_DIR"]), plane_app.config["DATABASE_URL"],
                                  TOKEN_CACHE_SECONDS=0.5))
    try:
        elsewhere = Api(other.test_client(), ci.token, "ci")
        ok(elsewhere.get(f"{API}/clusters"))  # cached in the other worker now
        ok(ci.get(f"{API}/clusters"))  # and in this one
        assert admin.delete(f"{API}/tokens/{token_id}").status_code == 204
        here = ci
        error(here.get(f"{API}/clusters"), 401, "unauthorized")
        time.sleep(0.6)
        error(elsewhere.get(f"{API}/clusters"), 401, "unauthorized")
    finally:
        other.extensions["shipyard"].close()
