"""Which API tokens a caller may list and revoke, on SQLite and on PostgreSQL.

A token narrowed to a role (say a workspace-viewer token a tenant-admin gave
a dashboard) must not reach its user's wider tokens: it sees and revokes only
itself, unless its own role is tenant-admin. A person logged in manages their
own tokens, a tenant-admin every token of the tenant (gitops/accounts.py).
"""

from __future__ import annotations

from tests.plane import Api, add_cluster, add_workspace
from tests.test_api import error, login, ok

API = "/api/v1"


def _token(client, csrf: str, name: str, role: str, **scope: str) -> dict:
    return ok(client.post(f"{API}/tokens", headers={"X-CSRFToken": csrf},
                          json={"name": name, "role": role, **scope}), 201)


def test_a_narrowed_token_sees_and_revokes_only_itself(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    session, csrf = login(plane_app, "admin")
    wide = _token(session, csrf, "platform cli", "tenant-admin")
    narrow = _token(session, csrf, "dashboard", "workspace-viewer", cluster="demo", workspace="storefront")
    editor = _token(session, csrf, "ci", "workspace-editor", cluster="demo", workspace="storefront")
    dashboard = Api(plane_app.test_client(), narrow["token"], "dashboard")
    platform = Api(plane_app.test_client(), wide["token"], "platform")

    # It lists itself, not the names, roles and scopes of its user's other tokens.
    assert [t["id"] for t in ok(dashboard.get(f"{API}/tokens"))["tokens"]] == [narrow["id"]]
    # Revoking a sibling (the tenant-admin token above all) is refused as if there were no such token,
    # with the same answer as for a token that does not exist.
    for other in (wide["id"], editor["id"], 999_999):
        refused = error(dashboard.delete(f"{API}/tokens/{other}"), 404, "not_found")
        assert "only itself" in refused["message"] and "log in" in refused["message"]
    ok(platform.get(f"{API}/users"))  # the tenant-admin token still works
    listed = {t["id"]: t for t in ok(platform.get(f"{API}/tokens"))["tokens"]}
    assert listed[wide["id"]]["revoked_at"] is None and listed[editor["id"]]["revoked_at"] is None

    # A workspace-editor token is narrowed too: neither its sibling nor the tenant-admin token.
    ci = Api(plane_app.test_client(), editor["token"], "ci")
    error(ci.delete(f"{API}/tokens/{narrow['id']}"), 404)
    assert [t["id"] for t in ok(ci.get(f"{API}/tokens"))["tokens"]] == [editor["id"]]

    # Revoking itself is always allowed (a leaked token can be killed with itself).
    assert dashboard.delete(f"{API}/tokens/{narrow['id']}").status_code == 204
    error(dashboard.get(f"{API}/me"), 401, "unauthorized")

    # A tenant-admin token manages every token of the tenant, its user's and others'.
    everyone = {t["id"] for t in ok(platform.get(f"{API}/tokens"))["tokens"]}
    assert {wide["id"], narrow["id"], editor["id"]} <= everyone
    assert platform.delete(f"{API}/tokens/{editor['id']}").status_code == 204
    error(ci.get(f"{API}/me"), 401)


def test_a_person_logged_in_manages_their_own_tokens_only(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    ok(admin.post(f"{API}/users", json={"username": "wendy", "password": "correct horse battery"}), 201)
    ok(admin.post(f"{API}/role-bindings", json={"role": "workspace-admin", "subject": "wendy", "cluster": "demo",
                                                "workspace": "storefront"}), 201)
    session, csrf = login(plane_app, "wendy")
    first = _token(session, csrf, "deploys", "workspace-admin", cluster="demo", workspace="storefront")
    second = _token(session, csrf, "reads", "workspace-viewer", cluster="demo", workspace="storefront")

    listed = [t["id"] for t in ok(session.get(f"{API}/tokens"))["tokens"]]
    assert listed == [first["id"], second["id"]]  # not the admin's

    # The workspace-admin token's role cannot manage tokens: it does not reach the viewer token.
    deploys = Api(plane_app.test_client(), first["token"], "deploys")
    error(deploys.delete(f"{API}/tokens/{second['id']}"), 404)

    # Logged in, wendy revokes either of hers, never the admin's.
    assert session.delete(f"{API}/tokens/{second['id']}", headers={"X-CSRFToken": csrf}).status_code == 204
    admins = [t["id"] for t in ok(admin.get(f"{API}/tokens"))["tokens"] if t["user"] == "admin"]
    error(session.delete(f"{API}/tokens/{admins[0]}", headers={"X-CSRFToken": csrf}), 404)
