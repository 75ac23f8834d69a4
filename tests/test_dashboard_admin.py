"""The dashboard's admin pages (webapp.pages.admin), through Flask's test client as a logged-in browser.

Each test runs on SQLite and PostgreSQL. The pages call the API's services, so what they
change is read back through the JSON API (with the admin's token), and what they show
once (API tokens, a cluster's read and agent tokens) is used for real: against the API,
git over HTTP and the agent's endpoints.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re

from gitops import accounts, audit
from gitops.models import User
from tests.plane import PROFILE, add_cluster, add_workspace, deploy_yaml, make_user, service_spec
from tests.test_login import csrf_of, password_login

API = "/api/v1"
TOKEN = re.compile(r"shy_[0-9a-f]{16}_[A-Za-z0-9_-]+")
AGENT_PROFILE = (PROFILE.replace("name: demo", "name: edge").replace("/demo.git", "/edge.git")
                 + "agent:\n  url: http://127.0.0.1:8080\n")


def logged_in(app, username: str):
    """A browser logged in as ``username``, and the CSRF token its forms carry."""
    client = app.test_client()
    assert password_login(client, username).status_code == 302
    return client, csrf_of(client.get("/admin").get_data(as_text=True))


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def flashed(client) -> str:
    """The page a post redirected to, as the browser then shows it."""
    return text_of(client.get("/admin"))


def shown_once(response, label: str) -> str:
    match = re.search(rf'aria-label="{label}">([^<]+)</pre>', response.get_data(as_text=True))
    assert match, f"no {label} on the page"
    return match.group(1)


def audit_rows(response) -> list[tuple[str, str, str]]:
    """(actor, action, target) of each row of the audit page."""
    return re.findall(r"<tr><td>.*?</td><td>([^<]*)</td><td><code>([^<]*)</code></td><td>([^<]*)</td>",
                      response.get_data(as_text=True))


# --- who may open what ----------------------------------------------------------------------------

PAGES = {
    "/admin": ["Users", "Role bindings", "API tokens", "Clusters", "Workspaces", "Audit log"],
    "/admin/users": ["admin", "tenant-admin", "Add a local user"],
    "/admin/bindings": ["tenant-admin", "Grant a role"],
    "/admin/tokens": ["Every token of the tenant", "Make a token"],
    "/admin/clusters": ["demo", "Never connected", "Register a cluster"],
    "/admin/register-cluster": ["Cluster profile (YAML)"],
    "/admin/clusters/demo": ["Never connected", "storefront", "kubectl apply -f demo/bootstrap/root.yaml",
                             "New read token", "New agent token"],
    "/admin/workspaces": ["storefront", "Add a workspace to demo"],
    "/admin/clusters/demo/workspaces": ["storefront", "dev"],
    "/admin/clusters/demo/workspaces/storefront": ["demo:storefront", "Environment"],
    "/admin/clusters/demo/workspaces/storefront/delete": ["Remove demo:storefront"],
    "/admin/audit": ["cluster.create", "workspace.create", "demo:storefront"],
}


def test_every_admin_page_renders_for_a_tenant_admin(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    client, _ = logged_in(plane_app, "admin")
    for path, expected in PAGES.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:500])
        missing = [text for text in expected if text not in text_of(response)]
        assert missing == [], f"{path} lacks {missing}"
    assert '<a href="/admin"' in client.get("/").get_data(as_text=True)
    for path in ("/admin/clusters/ghost", "/admin/clusters/ghost/workspaces", "/admin/clusters/demo/workspaces/ghost",
                 "/admin/bindings/999/delete"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
    # bad filters are a message on the page, not an error page
    for query, message in (({"from": "yesterday"}, "from must be a date like 2025-01-31"),
                           ({"from": "2025-02-02", "to": "2025-02-01"}, "the range starts after it ends"),
                           ({"before": "99999999999"}, "before must be an event number")):
        response = client.get("/admin/audit", query_string=query)
        assert response.status_code == 400 and message in text_of(response)
        assert 'name="actor"' in text_of(response)


RESTRICTED_PAGES = [path for path in PAGES if path != "/admin"]
RESTRICTED_POSTS = {
    "/admin/users": {"username": "mallory", "password": "a long enough password"},
    "/admin/bindings": {"role": "tenant-admin", "subject": "viewer"},
    "/admin/bindings/1/delete": {"confirm": "yes"},
    "/admin/register-cluster": {"name": "evil", "profile": PROFILE.replace("name: demo", "name: evil")},
    "/admin/clusters/demo/tokens/read": {"confirm": "yes"},
    "/admin/clusters/demo/workspaces": {"name": "sneaky", "environment": "dev"},
    "/admin/clusters/demo/workspaces/storefront": {"environment": "prod"},
    "/admin/clusters/demo/workspaces/storefront/delete": {"confirm": "yes"},
}


def test_a_workspace_viewer_opens_only_their_own_tokens(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    client, csrf = logged_in(plane_app, "viewer")
    before = [admin.get(f"{API}/{what}").get_json() for what in ("users", "role-bindings", "clusters")]

    index = text_of(client.get("/admin"))
    assert "API tokens" in index and not any(title in index for title in ("Users", "Role bindings", "Audit log"))
    tokens = client.get("/admin/tokens")
    assert tokens.status_code == 200 and "Your own tokens" in text_of(tokens)
    refused = {path: client.get(path).status_code for path in RESTRICTED_PAGES if path != "/admin/tokens"}
    assert set(refused.values()) == {403}, refused
    # refused for the permission, not for the form's CSRF token
    refused = {path: client.post(path, data={**data, "csrf_token": csrf}) for path, data in RESTRICTED_POSTS.items()}
    wrong = {path: r.status_code for path, r in refused.items()
             if r.status_code != 403 or "viewer may not" not in text_of(r)}
    assert wrong == {}, wrong
    assert [admin.get(f"{API}/{what}").get_json() for what in ("users", "role-bindings", "clusters")] == before
    assert admin.get(f"{API}/clusters/demo/workspaces/storefront").get_json()["environment"] == "dev"


# --- users and role bindings ----------------------------------------------------------------------


def test_a_tenant_admin_adds_a_user_then_grants_and_takes_back_a_role(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    client, csrf = logged_in(plane_app, "admin")

    short = client.post("/admin/users", data={"csrf_token": csrf, "username": "alice", "display_name": "Alice A",
                                              "password": "too short"})
    assert short.status_code == 400
    assert "a password needs at least 12 characters" in text_of(short)
    assert 'value="alice"' in text_of(short) and 'value="Alice A"' in text_of(short)
    assert "too short" not in text_of(short)  # a password is never sent back
    added = client.post("/admin/users", data={"csrf_token": csrf, "username": "alice", "display_name": "Alice A",
                                              "email": "alice@example.com", "password": "correct horse battery"})
    assert added.status_code == 302 and added.location.endswith("/admin/users")
    assert 'User "alice" added' in flashed(client)
    assert "alice@example.com" in text_of(client.get("/admin/users"))
    assert password_login(plane_app.test_client(), "alice").status_code == 302
    taken = client.post("/admin/users", data={"csrf_token": csrf, "username": "alice",
                                              "password": "correct horse battery"})
    assert taken.status_code == 409 and 'user "alice" already exists' in text_of(taken)

    grant = {"csrf_token": csrf, "role": "workspace-editor", "subject_kind": "user", "subject": "alice",
             "cluster": "ghost", "workspace": "storefront"}
    nowhere = client.post("/admin/bindings", data=grant)
    assert nowhere.status_code == 404 and 'no cluster "ghost"' in text_of(nowhere)
    assert 'value="alice"' in text_of(nowhere) and 'value="ghost"' in text_of(nowhere)
    assert client.post("/admin/bindings", data={**grant, "cluster": "demo"}).status_code == 302
    assert "user alice now holds workspace-editor at demo:storefront" in flashed(client)
    row = re.search(r"<td>alice</td>.*?</tr>", text_of(client.get("/admin/users")), re.DOTALL).group(0)
    assert "workspace-editor" in row and "at demo:storefront" in row
    (binding,) = [b for b in admin.get(f"{API}/role-bindings").get_json()["role_bindings"] if b["subject"] == "alice"]
    assert (binding["role"], binding["cluster"], binding["workspace"]) == ("workspace-editor", "demo", "storefront")

    confirm_page = client.get(f"/admin/bindings/{binding['id']}/delete")
    assert confirm_page.status_code == 200
    assert "holds <strong>workspace-editor</strong> at demo:storefront" in text_of(confirm_page)
    unconfirmed = client.post(f"/admin/bindings/{binding['id']}/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box to confirm" in text_of(unconfirmed)
    assert any(b["id"] == binding["id"] for b in admin.get(f"{API}/role-bindings").get_json()["role_bindings"])
    removed = client.post(f"/admin/bindings/{binding['id']}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert removed.status_code == 302 and removed.location.endswith("/admin/bindings")
    assert not any(b["id"] == binding["id"] for b in admin.get(f"{API}/role-bindings").get_json()["role_bindings"])
    actions = [(e["action"], e["actor"]) for e in admin.get(f"{API}/audit").get_json()["events"][:3]]
    assert actions == [("binding.delete", "admin"), ("binding.create", "admin"), ("user.create", "admin")]


# --- API tokens -----------------------------------------------------------------------------------


def test_a_new_token_is_shown_once_and_kept_nowhere(plane_app, admin, caplog):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    client, csrf = logged_in(plane_app, "admin")
    caplog.set_level(logging.DEBUG)
    form = {"csrf_token": csrf, "name": "ci-deploy", "role": "workspace-editor", "cluster": "demo",
            "workspace": "storefront", "expires_in_days": "soon"}

    wrong = client.post("/admin/tokens", data=form)
    assert wrong.status_code == 400 and "expires in days must be a whole number" in text_of(wrong)
    assert 'value="ci-deploy"' in text_of(wrong)
    made = client.post("/admin/tokens", data={**form, "expires_in_days": "30"})
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    (secret,) = set(TOKEN.findall(made.get_data(as_text=True)))
    assert "workspace-editor" in text_of(made) and "demo:storefront" in text_of(made)
    me = client.get(f"{API}/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.get_json()["via_token"] is True

    for path in ("/admin/tokens", "/admin", "/", "/admin/audit"):
        assert secret not in client.get(path).get_data(as_text=True), path
    assert "ci-deploy" in text_of(client.get("/admin/tokens"))
    with client.session_transaction() as session:
        assert secret not in repr(dict(session))
    assert secret not in caplog.text

    (token,) = [t for t in admin.get(f"{API}/tokens").get_json()["tokens"] if t["name"] == "ci-deploy"]
    assert token["user"] == "admin" and token["role"] == "workspace-editor"
    revoked = client.post(f"/admin/tokens/{token['id']}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 302 and 'Token "ci-deploy" revoked' in flashed(client)
    assert client.get(f"{API}/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert "Revoked" in text_of(client.get("/admin/tokens"))


# --- clusters -------------------------------------------------------------------------------------


def git_refs(client, cluster: str, read_token: str) -> int:
    return client.get(f"/git/default/{cluster}.git/info/refs", query_string={"service": "git-upload-pack"},
                      auth=("x", read_token)).status_code


def test_registering_a_cluster_shows_its_tokens_once_with_the_exact_install_commands(plane_app, admin):
    client, csrf = logged_in(plane_app, "admin")
    broken = AGENT_PROFILE.replace("flavor: kind", "flavor: nope")
    refused = client.post("/admin/register-cluster", data={"csrf_token": csrf, "name": "edge", "profile": broken})
    assert refused.status_code == 422
    assert re.search(r"profile:\d+:\d+: .*nope", text_of(refused)), text_of(refused)
    assert "flavor: nope" in text_of(refused) and 'value="edge"' in text_of(refused)

    # a browser sends a textarea's lines ending in CRLF
    made = client.post("/admin/register-cluster", data={"csrf_token": csrf, "name": "edge",
                                                        "profile": AGENT_PROFILE.replace("\n", "\r\n")})
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    page = text_of(made)
    read_token, agent_token = shown_once(made, "the read token"), shown_once(made, "the agent token")
    assert f"git clone http://x:{read_token}@127.0.0.1:8080/git/default/edge.git" in page
    assert "kubectl apply -f edge/bootstrap/root.yaml" in page
    assert ("kubectl -n shipyard-system create secret generic shipyard-agent-token "
            f"--from-literal=token={agent_token}") in page
    secret = re.search(r"kubectl apply -f - <<'EOF'\n(.*?)EOF", page, re.DOTALL).group(1)
    assert "argocd.argoproj.io/secret-type: repository" in secret and "namespace: argocd" in secret
    assert "url: http://127.0.0.1:8080/git/default/edge.git" in secret and f"password: {read_token}" in secret
    assert admin.get(f"{API}/clusters/edge").get_json()["profile"] == AGENT_PROFILE

    # the tokens are the real ones: git for ArgoCD, the agent's heartbeat
    assert git_refs(client, "edge", read_token) == 200 and git_refs(client, "edge", "wrong") == 401
    fault = {"kind": "Rollout", "namespace": "shop", "reason": "not_served", "message": "no such CRD"}
    beat = client.post("/agent/v1/default/edge/heartbeat", headers={"Authorization": f"Bearer {agent_token}"},
                       json={"agent_version": "1.4.0", "kubernetes_version": "v1.33.1", "watch_faults": [fault]})
    assert beat.status_code == 200, beat.get_json()
    cluster_page = client.get("/admin/clusters/edge").get_data(as_text=True)
    assert "Connected" in cluster_page and "v1.33.1" in cluster_page and "1.4.0" in cluster_page
    assert "Rollout</strong> in shop: not_served" in cluster_page
    assert read_token not in cluster_page and agent_token not in cluster_page

    unconfirmed = client.post("/admin/clusters/edge/tokens/read", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box" in text_of(unconfirmed)
    assert git_refs(client, "edge", read_token) == 200
    rotated = client.post("/admin/clusters/edge/tokens/read", data={"csrf_token": csrf, "confirm": "yes"})
    assert rotated.status_code == 201 and rotated.headers["Cache-Control"] == "no-store"
    new_read = shown_once(rotated, "the new read token")
    assert f"password: {new_read}" in text_of(rotated)
    assert git_refs(client, "edge", read_token) == 401 and git_refs(client, "edge", new_read) == 200
    rotated = client.post("/admin/clusters/edge/tokens/agent", data={"csrf_token": csrf, "confirm": "yes"})
    new_agent = shown_once(rotated, "the new agent token")
    assert ("kubectl -n shipyard-system create secret generic shipyard-agent-token "
            f"--from-literal=token={new_agent} --dry-run=client -o yaml | kubectl apply -f -") in text_of(rotated)
    assert client.post("/admin/clusters/edge/tokens/other", data={"csrf_token": csrf}).status_code == 404


# --- workspaces -----------------------------------------------------------------------------------


def test_workspaces_are_added_changed_and_removed_with_confirmation(plane_app, admin):
    add_cluster(admin)
    client, csrf = logged_in(plane_app, "admin")
    assert "No workspaces in demo yet" in text_of(client.get("/admin/clusters/demo/workspaces"))

    bad = client.post("/admin/clusters/demo/workspaces", data={"csrf_token": csrf, "name": "Shop_1",
                                                               "environment": "staging"})
    assert bad.status_code == 400 and "workspace name 'Shop_1' is not valid" in text_of(bad)
    assert 'value="Shop_1"' in text_of(bad) and "<option selected>staging</option>" in text_of(bad)
    for name in ("shop", "scratch"):
        added = client.post("/admin/clusters/demo/workspaces", data={"csrf_token": csrf, "name": name,
                                                                     "environment": "staging"})
        assert added.status_code == 302 and added.location.endswith("/admin/clusters/demo/workspaces")
    assert admin.get(f"{API}/clusters/demo/workspaces/shop").get_json()["environment"] == "staging"

    changed = client.post("/admin/clusters/demo/workspaces/shop", data={"csrf_token": csrf, "environment": "prod"})
    assert changed.status_code == 302 and 'Workspace "demo:shop" is now prod' in flashed(client)
    assert admin.get(f"{API}/clusters/demo/workspaces/shop").get_json()["environment"] == "prod"
    odd = client.post("/admin/clusters/demo/workspaces/shop", data={"csrf_token": csrf, "environment": "moon"})
    assert odd.status_code == 400 and "environment must be one of" in text_of(odd)

    assert deploy_yaml(admin, service_spec("web", workspace="shop")).status_code == 200
    busy = client.post("/admin/clusters/demo/workspaces/shop/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert busy.status_code == 409 and 'workspace "shop" still has apps' in text_of(busy)
    unconfirmed = client.post("/admin/clusters/demo/workspaces/scratch/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box" in text_of(unconfirmed)
    assert admin.get(f"{API}/clusters/demo/workspaces/scratch").status_code == 200
    removed = client.post("/admin/clusters/demo/workspaces/scratch/delete", data={"csrf_token": csrf,
                                                                                  "confirm": "yes"})
    assert removed.status_code == 302
    assert admin.get(f"{API}/clusters/demo/workspaces/scratch").status_code == 404
    listed = text_of(client.get("/admin/clusters/demo/workspaces"))
    assert "<td>shop</td><td>prod</td>" in listed and "scratch</td>" not in listed


# --- the audit log --------------------------------------------------------------------------------


def test_the_audit_log_filters_and_pages(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    bob = make_user(plane_app, "bob", "tenant-admin")
    add_workspace(bob, "demo", "checkout")
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        principal = accounts.principal_for(session, session.query(User).filter_by(username="bob").one())
        for number in range(60):
            audit.record(session, principal, "test.ping", f"probe-{number}")
    client, _ = logged_in(plane_app, "admin")

    def rows(**query):
        response = client.get("/admin/audit", query_string=query)
        assert response.status_code == 200, text_of(response)
        return audit_rows(response)

    newest = rows()
    assert len(newest) == 50 and newest[0] == ("bob", "test.ping", "probe-59")
    assert {actor.split(" ")[0] for actor, _, _ in rows(action="workspace.")} == {"admin", "bob"}
    assert [(a.split(" ")[0], t) for a, _, t in rows(action="WORKSPACE.create")] == [
        ("bob", "demo:checkout"), ("admin", "demo:storefront")]
    assert [t for _, _, t in rows(target="STORE")] == ["demo:storefront"]
    assert {a.split(" ")[0] for a, _, _ in rows(actor="bob", action="workspace")} == {"bob"}
    assert rows(actor="bo") == []  # a person, not part of a name
    today = dt.datetime.now(dt.timezone.utc).date()
    assert len(rows(action="cluster", **{"from": today.isoformat(), "to": today.isoformat()})) == 1
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    assert rows(**{"from": tomorrow}) == []
    assert "No event matches these filters" in text_of(client.get("/admin/audit", query_string={"from": tomorrow}))

    first = client.get("/admin/audit", query_string={"action": "test."}).get_data(as_text=True)
    older = html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    assert "action=test." in older
    rest = audit_rows(client.get(older))
    assert [t for _, _, t in rest] == [f"probe-{n}" for n in range(9, -1, -1)]
    assert 'rel="next"' not in client.get(older).get_data(as_text=True)
