"""Fixtures and helpers for control-plane tests: an app on SQLite or PostgreSQL, users, tokens.

Every control-plane test that takes ``database_url`` runs once on SQLite and
once on a throwaway PostgreSQL (tests/pgserver.py). ``SHIPYARD_TEST_DATABASES``
(comma-separated: sqlite, postgresql) narrows that for a quick local run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from sqlalchemy import select, update

from gitops import accounts, tokens
from gitops.models import Cluster, Command, RoleBinding, Tenant, utcnow
from gitops.refreshes import COMMIT_REFRESH
from webapp import create_app

PROFILE = Path("fixtures/clusters/demo.yaml").read_text()
DATABASES = [d.strip() for d in os.environ.get("SHIPYARD_TEST_DATABASES", "sqlite,postgresql").split(",") if d.strip()]


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shipyard.db'}"
    return request.getfixturevalue("postgres_url")


def app_config(data_dir: Path, database_url: str, **extra) -> dict:
    return {
        "TESTING": True,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "AUTO_MIGRATE": True,
        "RECONCILE_INTERVAL": 0,
        "SPEC_REPO_WORKER_INTERVAL": 0,
        "WEBHOOK_WORKER_INTERVAL": 0,
        "SECRET_KEY": "test-secret-key",
        "LOG_FORMAT": "text",
        **extra,
    }


@pytest.fixture
def plane_app(database_url, tmp_path):
    app = create_app(app_config(tmp_path / "data", database_url))
    yield app
    app.extensions["shipyard"].close()


@dataclass
class Api:
    """A test client that sends one principal's API token."""

    client: object
    token: str
    name: str

    def _headers(self, headers):
        return {"Authorization": f"Bearer {self.token}", **(headers or {})}

    def get(self, path, **kw):
        return self.client.get(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def post(self, path, **kw):
        return self.client.post(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def put(self, path, **kw):
        return self.client.put(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def patch(self, path, **kw):
        return self.client.patch(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def delete(self, path, **kw):
        return self.client.delete(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def request(self, method, path, **kw):
        return self.client.open(path, method=method, headers=self._headers(kw.pop("headers", None)), **kw)


def make_user(app, username: str, role: str | None = None, cluster: str | None = None,
              workspace: str | None = None, password: str = "correct horse battery") -> Api:
    """A local user bound to ``role`` at the given scope, with a token of that same role and scope."""
    plane = app.extensions["shipyard"]
    with plane.sessions.begin() as session:
        tenant = session.query(Tenant).filter_by(name=app.config["TENANT"]).one()
        user = accounts.create_local_user(session, tenant, username, password)
        scope = accounts.resolve_scope(session, tenant.id, cluster, workspace)
        if role is not None:
            session.add(RoleBinding(tenant_id=tenant.id, role=role, subject_kind="user", subject=username,
                                    cluster_id=scope.cluster_id, workspace_id=scope.workspace_id))
        # the token carries the same role and scope; a user with no role gets a viewer token that
        # must still be able to do nothing
        new = tokens.issue_token(session, tenant.id, user.id, "test", role or "workspace-viewer", scope, 30)
        return Api(app.test_client(), new.secret, username)


@pytest.fixture
def served(plane_app):
    """The app (whichever plane_app the test module uses) on a loopback port, one thread per
    request, as a WSGI server would run it; yields its base URL."""
    server = make_server("127.0.0.1", 0, plane_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


@pytest.fixture
def admin(plane_app) -> Api:
    return make_user(plane_app, "admin", "tenant-admin")


def add_cluster(api: Api, name: str = "demo", profile: str = PROFILE) -> dict:
    response = api.post("/api/v1/clusters", json={"name": name, "profile": profile.replace("name: demo", f"name: {name}")})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def answer_commit_refreshes(app, cluster: str = "demo") -> int:
    """What a live agent does after each commit (gitops.refreshes): the cluster's commit refreshes answered,
    so a test of other commands sees only its own. How many there were."""
    with app.extensions["shipyard"].sessions.begin() as session:
        cluster_id = session.scalar(select(Cluster.id).where(Cluster.name == cluster))
        return session.execute(update(Command).where(
            Command.cluster_id == cluster_id, Command.state.in_(("queued", "sent")), COMMIT_REFRESH)
            .values(state="done", done_at=utcnow(), claimed_until=None, result={"refresh": "normal"})).rowcount


def add_workspace(api: Api, cluster: str, name: str, environment: str = "dev") -> dict:
    response = api.post(f"/api/v1/clusters/{cluster}/workspaces", json={"name": name, "environment": environment})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def service_spec(name: str, workspace: str = "storefront", cluster: str = "demo", image: str = "ghcr.io/acme/web:1.0",
                 extra: str = "") -> str:
    return (f"type: service\nname: {name}\nworkspace_fqn: {cluster}:{workspace}\n"
            f"image: {{type: image, image_uri: '{image}'}}\nports: [{{port: 8000}}]\n{extra}")


def deploy_yaml(api: Api, text: str, **query):
    return api.put("/api/v1/apps", data=text, content_type="application/yaml", query_string=query)
