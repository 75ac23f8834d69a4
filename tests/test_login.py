"""Logging in: local passwords, OIDC through a real provider, sessions, CSRF, and the pages behind them.

The OIDC tests run the whole authorization-code flow over real HTTP: the
PyPI package ``oidc-provider-mock`` is a real OpenID provider (discovery,
signed ID tokens, token endpoint) on loopback, Shipyard runs in a real HTTP
server on loopback too, and httpx plays the browser (cookies, redirects, the
provider's authorize form).
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import oidc_provider_mock
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from gitops.models import AuditEvent, RoleBinding, Tenant, User
from tests.plane import add_cluster, add_workspace, app_config, deploy_yaml, make_user, service_spec
from webapp import create_app
from webapp.oidc import SYNC_ACTOR, sync_group_bindings

API = "/api/v1"
PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, f"no csrf_token input in:\n{html[:500]}"
    return match.group(1)


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash" role="alert">([^<]*)</p>', html)


def password_login(client, username: str, password: str = PASSWORD, next_path: str | None = None):
    page = client.get("/login")
    query = {"next": next_path} if next_path is not None else None
    return client.post("/login", query_string=query,
                       data={"username": username, "password": password, "csrf_token": csrf_of(page.get_data(True))})


# --- local users --------------------------------------------------------------------------------


def test_wrong_password_is_refused_without_a_session(plane_app):
    make_user(plane_app, "alice", "tenant-admin")
    client = plane_app.test_client()
    for username, password in (("alice", "not the password at all"), ("nobody", PASSWORD)):
        response = password_login(client, username, password)
        assert response.status_code == 401
        assert flashes(response.get_data(True)) == ["Wrong username or password."]
        assert client.get(f"{API}/me").status_code == 401


def test_password_login_session_csrf_and_logout(plane_app):
    make_user(plane_app, "alice", "tenant-admin")
    client = plane_app.test_client()
    before = csrf_of(client.get("/login").get_data(True))
    with client.session_transaction() as planted:
        planted["planted"] = "by someone else"

    response = password_login(client, "alice")
    assert response.status_code == 302 and urlsplit(response.location).path == "/"
    me = client.get(f"{API}/me")
    assert me.status_code == 200
    assert me.get_json()["user"]["username"] == "alice" and me.get_json()["via_token"] is False
    # The login started a new session: nothing of the cookie before survives, not even its CSRF secret.
    with client.session_transaction() as session:
        assert "planted" not in session
    body = {"name": "ci", "role": "workspace-viewer"}
    stale = client.post(f"{API}/tokens", json=body, headers={"X-CSRFToken": before})
    assert stale.status_code == 403 and stale.get_json()["error"]["code"] == "csrf_failed"

    # A session-authenticated change needs the CSRF token; a page of the session carries it.
    missing = client.post(f"{API}/tokens", json=body)
    assert missing.status_code == 403 and missing.get_json()["error"]["code"] == "csrf_failed"
    csrf = csrf_of(client.get("/account").get_data(True))
    created = client.post(f"{API}/tokens", json=body, headers={"X-CSRFToken": csrf})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["token"].startswith("shy_")

    # Logging out is a CSRF-protected form post too.
    assert client.post("/logout").status_code == 403
    assert client.get(f"{API}/me").status_code == 200
    out = client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 302 and urlsplit(out.location).path == "/login"
    assert client.get(f"{API}/me").status_code == 401
    assert client.post(f"{API}/tokens", json=body, headers={"X-CSRFToken": csrf}).status_code == 401


@pytest.mark.parametrize(("public_url", "override", "secure"), [
    ("https://shipyard.example.com", None, True),
    ("http://127.0.0.1:8080", None, False),
    ("https://shipyard.example.com", False, False),  # SESSION_COOKIE_SECURE set says more than the URL
])
def test_session_cookies_are_secure_when_people_reach_the_server_over_https(database_url, tmp_path, public_url,
                                                                            override, secure):
    extra = {"PUBLIC_URL": public_url, **({"SESSION_COOKIE_SECURE": override} if override is not None else {})}
    app = create_app(app_config(tmp_path / "data", database_url, **extra))
    try:
        make_user(app, "alice", "tenant-admin")
        response = password_login(app.test_client(), "alice")
        assert response.status_code == 302
        (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
        assert ("; Secure" in cookie) is secure, cookie
        assert "; HttpOnly" in cookie
    finally:
        app.extensions["shipyard"].close()


def test_login_form_without_csrf_token_is_refused(plane_app):
    make_user(plane_app, "alice", "tenant-admin")
    client = plane_app.test_client()
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    # a person's browser gets the refusal as a page, in the dashboard's layout
    assert response.status_code == 403 and response.mimetype == "text/html"
    assert "CSRF" in response.get_data(True) and "Not allowed" in response.get_data(True)
    assert client.get(f"{API}/me").status_code == 401


@pytest.mark.parametrize("next_path, lands_on", [
    ("https://evil.example/", "/"),
    ("//evil.example/apps", "/"),
    ("/\\evil.example/apps", "/"),
    ("javascript:alert(1)", "/"),
    ("/account", "/account"),
])
def test_login_goes_back_only_to_this_site(plane_app, next_path, lands_on):
    make_user(plane_app, "alice", "tenant-admin")
    response = password_login(plane_app.test_client(), "alice", next_path=next_path)
    assert response.status_code == 302
    target = urlsplit(response.location)
    assert target.netloc in ("", "localhost") and target.path == lands_on


# --- pages ----------------------------------------------------------------------------------------


def test_pages_show_what_the_user_may_read(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    add_workspace(admin, "demo", "payments")
    for spec in (service_spec("web"), service_spec("web", image="ghcr.io/acme/web:2.0"),
                 service_spec("ledger", workspace="payments")):
        assert deploy_yaml(admin, spec).status_code == 200
    make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    make_user(plane_app, "newcomer")
    client = plane_app.test_client()

    # Not logged in: pages send people to the login page (and back), the API answers 401.
    response = client.get("/apps")
    assert response.status_code == 302
    assert urlsplit(response.location).path == "/login" and parse_qs(urlsplit(response.location).query) == \
        {"next": ["/apps"]}
    assert client.get(f"{API}/apps").status_code == 401

    assert password_login(client, "viewer", next_path="/apps/demo/storefront/web").location.endswith(
        "/apps/demo/storefront/web")
    listing = client.get("/apps").get_data(True)
    assert 'href="/apps/demo/storefront/web"' in listing
    assert "ledger" not in listing and "payments" not in listing
    page = client.get("/apps/demo/storefront/web")
    assert page.status_code == 200
    rows = re.findall(r'<td><a href="/apps/demo/storefront/web/versions/(\d+)">v\d+</a>.*?</td>\s*<td>(\w+)',
                      page.get_data(True), re.S)
    assert rows == [("2", "deploy"), ("1", "deploy")]
    assert re.search(r"Newest version</dt><dd><a [^>]*>v2</a>", page.get_data(True))
    assert client.get("/apps/demo/payments/ledger").status_code in (403, 404)

    # Someone without any role yet gets an empty list, not an error.
    newcomer = plane_app.test_client()
    password_login(newcomer, "newcomer")
    empty = newcomer.get("/apps")
    assert empty.status_code == 200 and "No apps you can see yet" in empty.get_data(True)


# --- OIDC: a real provider and a real Shipyard server on loopback -------------------------------


@contextmanager
def running(tmp_path, database_url: str, config: dict | Callable[[str], dict]):
    """Shipyard in a real HTTP server on loopback; PUBLIC_URL is its URL (``config`` may depend on it)."""
    apps = []
    server = make_server("localhost", 0, lambda environ, start: apps[0](environ, start), threaded=True)
    url = f"http://localhost:{server.server_port}"
    extra = config(url) if callable(config) else config
    apps.append(create_app(app_config(tmp_path / "data", database_url, PUBLIC_URL=url, **extra)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield apps[0], url
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        apps[0].extensions["shipyard"].close()


@pytest.fixture
def provider():
    """An OpenID provider on loopback; PUT /users/<sub> sets the claims its ID tokens carry for that subject."""
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


def oidc_config(issuer: str, **extra) -> dict:
    return {"OIDC_ISSUER": issuer, "OIDC_CLIENT_ID": "shipyard", "OIDC_CLIENT_SECRET": "client-secret", **extra}


def set_user(provider: str, sub: str, **claims) -> None:
    response = httpx.put(f"{provider}/users/{sub}", json=claims)
    assert response.status_code == 204, response.text


def to_provider(browser: httpx.Client, url: str, next_path: str | None = None) -> httpx.Response:
    """Start an OIDC login at Shipyard; returns the provider's authorize form."""
    form = browser.get(f"{url}/login/oidc", params={"next": next_path} if next_path else None)
    assert form.status_code == 200 and "Authorize Client" in form.text, form.text[:500]
    return form


def authorize(browser: httpx.Client, form: httpx.Response, **data) -> str:
    """Submit the provider's authorize form; returns where the provider sends the browser (Shipyard's callback)."""
    answer = browser.post(str(form.url), data=data, follow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["location"]


def oidc_login(browser: httpx.Client, url: str, sub: str, next_path: str | None = None) -> httpx.Response:
    callback = authorize(browser, to_provider(browser, url, next_path), sub=sub)
    return browser.get(callback)


def users(app) -> list[User]:
    with app.extensions["shipyard"].sessions() as session:
        return list(session.scalars(select(User).order_by(User.id)))


def test_oidc_login_with_group_roles(tmp_path, database_url, provider):
    set_user(provider, "u-1001", email="pat@example.com", preferred_username="pat", name="Pat Doe",
             groups=["platform", "everyone"])
    set_user(provider, "u-1002", email="sam@example.com", preferred_username="sam", groups=["everyone"])
    with running(tmp_path, database_url, oidc_config(provider, OIDC_GROUP_ROLES={"platform": "tenant-admin"})) \
            as (app, url):
        assert "Log in with your identity provider" in httpx.get(f"{url}/login").text
        with httpx.Client(follow_redirects=True) as pat:
            form = to_provider(pat, url, next_path="/account")
            # What went to the provider: state, nonce and a PKCE S256 challenge, back to PUBLIC_URL.
            sent = parse_qs(form.url.query.decode())
            assert sent["code_challenge_method"] == ["S256"] and len(sent["code_challenge"][0]) >= 43
            assert sent["state"][0] and sent["nonce"][0]
            assert sent["redirect_uri"] == [f"{url}/login/oidc/callback"] and sent["client_id"] == ["shipyard"]
            assert "openid" in sent["scope"][0].split()
            landed = pat.get(authorize(pat, form, sub="u-1001"))
            assert landed.status_code == 200 and landed.url.path == "/account"

            me = pat.get(f"{url}{API}/me").json()
            assert me["user"]["username"] == "pat" and me["user"]["login"] == "oidc"
            assert me["user"]["email"] == "pat@example.com" and me["user"]["groups"] == ["everyone", "platform"]
            assert [g["role"] for g in me["grants"]] == ["tenant-admin"]
            csrf = csrf_of(pat.get(f"{url}/account").text)
            assert pat.get(f"{url}{API}/clusters").status_code == 200
            created = pat.post(f"{url}{API}/clusters", headers={"X-CSRFToken": csrf},
                               json={"name": "demo", "profile": open("fixtures/clusters/demo.yaml").read()})
            assert created.status_code == 201, created.text

        with httpx.Client(follow_redirects=True) as sam:
            assert oidc_login(sam, url, "u-1002", next_path="https://evil.example/").url.path == "/"
            me = sam.get(f"{url}{API}/me").json()
            assert me["user"]["username"] == "sam" and me["grants"] == []
            csrf = csrf_of(sam.get(f"{url}/account").text)
            refused = sam.post(f"{url}{API}/clusters", headers={"X-CSRFToken": csrf},
                               json={"name": "other", "profile": open("fixtures/clusters/demo.yaml").read()})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

        # Logging in again finds the same user, with the groups of this login.
        set_user(provider, "u-1001", email="pat@example.com", preferred_username="pat", groups=["everyone"])
        with httpx.Client(follow_redirects=True) as pat:
            oidc_login(pat, url, "u-1001")
            assert pat.get(f"{url}{API}/me").json()["grants"] == []

        rows = users(app)
        assert [(u.username, u.oidc_issuer, u.oidc_subject, u.email, u.groups, u.password_hash) for u in rows] == [
            ("pat", provider, "u-1001", "pat@example.com", ["everyone"], None),
            ("sam", provider, "u-1002", "sam@example.com", ["everyone"], None),
        ]
        with app.extensions["shipyard"].sessions() as session:
            bindings = [(b.subject_kind, b.subject, b.role, b.cluster_id, b.created_by)
                        for b in session.scalars(select(RoleBinding))]
            events = [(e.actor, e.action, e.target) for e in session.scalars(select(AuditEvent))
                      if e.actor == SYNC_ACTOR]
        assert bindings == [("group", "platform", "tenant-admin", None, SYNC_ACTOR)]  # once, after three logins
        assert events == [(SYNC_ACTOR, "binding.create", "group:platform")]


def test_oidc_refuses_a_tampered_state(tmp_path, provider):
    set_user(provider, "u-1", email="pat@example.com", groups=["platform"])
    with running(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", oidc_config(provider)) as (app, url), \
            httpx.Client(follow_redirects=True) as browser:
        callback = authorize(browser, to_provider(browser, url), sub="u-1")
        parts = urlsplit(callback)
        query = parse_qs(parts.query)
        assert set(query) == {"code", "state"}
        for state in (query["state"][0][:-1] + ("A" if query["state"][0][-1] != "A" else "B"), ""):
            forged = urlunsplit(parts._replace(query=urlencode({"code": query["code"][0], "state": state})))
            refused = browser.get(forged)
            assert refused.status_code == 400
            assert flashes(refused.text) == ["This login is not valid any more (expired, already used, or started in "
                                             "another browser). Please log in again."]
            assert browser.get(f"{url}{API}/me").status_code == 401
        assert users(app) == []
        # The genuine answer still works: the refusal was the state's doing.
        assert browser.get(callback).url.path == "/"
        assert browser.get(f"{url}{API}/me").status_code == 200
        # ... once: the state is spent.
        with httpx.Client(follow_redirects=True) as other:
            assert other.get(callback).status_code == 400


def test_oidc_denied_at_the_provider(tmp_path, provider):
    with running(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", oidc_config(provider)) as (app, url), \
            httpx.Client(follow_redirects=True) as browser:
        callback = authorize(browser, to_provider(browser, url), action="deny")
        assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
        refused = browser.get(callback)
        assert refused.status_code == 400
        assert flashes(refused.text)[0].startswith("The identity provider did not let you log in (access denied).")
        assert "Traceback" not in refused.text and "<form" in refused.text
        assert browser.get(f"{url}{API}/me").status_code == 401


def test_oidc_token_exchange_refused(tmp_path):
    """A client secret the provider does not accept: the code cannot be exchanged, the login fails cleanly."""
    with oidc_provider_mock.run_server_in_thread(require_client_registration=True) as server:
        issuer = f"http://localhost:{server.server_port}"

        def registered_client(url: str) -> dict:
            client = httpx.post(f"{issuer}/oauth2/clients", json={"redirect_uris": [f"{url}/login/oidc/callback"]})
            assert client.status_code == 201, client.text
            # the id is right, the secret is not
            return oidc_config(issuer, OIDC_CLIENT_ID=client.json()["client_id"], OIDC_CLIENT_SECRET="not-the-secret")

        with running(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", registered_client) as (app, url):
            with httpx.Client(follow_redirects=True) as browser:
                refused = oidc_login(browser, url, "u-1")
                assert refused.status_code == 502
                assert flashes(refused.text) == ["The identity provider refused to complete the login. "
                                                 "Please log in again."]
                assert browser.get(f"{url}{API}/me").status_code == 401
            assert users(app) == []


def test_oidc_provider_down(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}",
                                **oidc_config(f"http://127.0.0.1:{port}")))
    try:
        response = app.test_client().get("/login/oidc")
        assert response.status_code == 502
        assert flashes(response.get_data(True)) == ["The identity provider could not be reached. Try again in a moment."]
    finally:
        app.extensions["shipyard"].close()


def test_oidc_not_configured(plane_app):
    page = plane_app.test_client().get("/login")
    assert "identity provider" not in page.get_data(True)
    response = plane_app.test_client().get("/login/oidc")
    assert response.status_code == 404
    assert flashes(response.get_data(True)) == ["Logging in with an identity provider is not set up on this server."]


def test_oidc_configuration_is_checked_at_start(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(ValueError, match="OIDC_CLIENT_ID"):
        create_app(app_config(tmp_path / "data", database, OIDC_ISSUER="https://idp.example"))
    with pytest.raises(ValueError, match='unknown role "admin"'):
        create_app(app_config(tmp_path / "data", database,
                              **oidc_config("https://idp.example", OIDC_GROUP_ROLES={"platform": "admin"})))


def test_group_role_bindings_follow_the_configuration(plane_app):
    """OIDC_GROUP_ROLES bindings are created and removed with the setting; bindings people made stay."""
    sessions = plane_app.extensions["shipyard"].sessions
    with sessions.begin() as session:
        tenant = session.scalar(select(Tenant))
        session.add(RoleBinding(tenant_id=tenant.id, role="tenant-admin", subject_kind="group", subject="platform",
                                created_by="admin"))
    for config in ({"platform": "tenant-admin", "viewers": "cluster-viewer"}, {"platform": "tenant-admin"},
                   {"platform": "tenant-admin"}, {}):
        with sessions.begin() as session:
            sync_group_bindings(session, session.scalar(select(Tenant)), config)
    with sessions() as session:
        left = [(b.subject, b.role, b.created_by) for b in session.scalars(select(RoleBinding).order_by(RoleBinding.id))]
        events = [(e.action, e.target, e.detail["role"]) for e in
                  session.scalars(select(AuditEvent).where(AuditEvent.actor == SYNC_ACTOR).order_by(AuditEvent.id))]
    assert left == [("platform", "tenant-admin", "admin")]
    assert events == [
        ("binding.create", "group:viewers", "cluster-viewer"),  # platform/tenant-admin existed already
        ("binding.delete", "group:viewers", "cluster-viewer"),
    ]
