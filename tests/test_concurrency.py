"""The deploy path under crowds: many threads, two server processes, two reconcilers at once.

(a) 16 threads deploy through one loopback server into one cluster; (b) two
server processes share one PostgreSQL database and one data directory (the
same repositories); (c) two processes run the reconciler over the same pending
Versions at the same moment. Each ends with ``check_consistency``
(tests/serve_plane.py): numbers consecutive per app, every committed Version
in the commit that carries its deployment id and in no other, every app's
files the rendering of its highest version, ``git fsck --strict`` clean.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, update
from werkzeug.serving import make_server

from gitops.clusters import profile_of
from gitops.deploy import _render_digest
from gitops.models import Application, Version, Workspace, utcnow
from gitops.reconciler import LEASE
from renderer.render import render
from renderer.spec import load_specs
from tests.plane import add_cluster, add_workspace, app_config, make_user, service_spec
from tests.serve_plane import ROOT, Plane, PlaneServer, check_consistency, deployment_ids_in_history, seed
from webapp import create_app

API = "/api/v1"


def put(client: httpx.Client, name: str, image: str) -> tuple[str, int]:
    response = client.put(f"{API}/apps", content=service_spec(name, image=image))
    assert response.status_code == 200, response.text
    (version,) = response.json()["versions"]
    assert version["state"] in ("committed", "superseded"), version
    return name, version["number"]


# --- (a) threads ---------------------------------------------------------------------------------

THREADS, DEPLOYS = 16, 10


def test_sixteen_threads_into_one_cluster(database_url, tmp_path):
    data = tmp_path / "data"
    app = create_app(app_config(data, database_url))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    plane = None
    try:
        admin = make_user(app, "admin", "tenant-admin")
        add_cluster(admin)
        add_workspace(admin, "demo", "storefront")
        plane = Plane(data, database_url)
        before, bootstrap_commits = deployment_ids_in_history(plane.repo())
        serving.start()
        headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/yaml"}

        def worker(thread: int) -> list[tuple[str, int]]:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", headers=headers,
                              timeout=300) as client:
                # half into one app all threads share, half into one app per pair of threads
                return [put(client, "web" if i % 2 == 0 else f"app-{thread // 2}", f"ghcr.io/acme/x:{thread}.{i}")
                        for i in range(DEPLOYS)]

        with ThreadPoolExecutor(THREADS) as pool:
            accepted = [item for result in pool.map(worker, range(THREADS)) for item in result]
    finally:
        server.shutdown()
        if serving.is_alive():
            serving.join(timeout=60)
        app.extensions["shipyard"].close()

    try:
        assert len(accepted) == THREADS * DEPLOYS
        assert sorted(n for name, n in accepted if name == "web") == list(range(1, THREADS * DEPLOYS // 2 + 1))
        figures = check_consistency(plane, accepted, set(before))
        assert figures["versions"] == THREADS * DEPLOYS  # all kept
        deploy_commits = figures["commits"] - bootstrap_commits
        # Group commit: a commit carries every app queued behind the one before it, so there are
        # never more commits than versions that changed bytes (each of those needs one).
        assert 0 < deploy_commits <= figures["changed"]
        print(f"{figures['versions']} versions, {figures['changed']} changed bytes, {figures['committed']} "
              f"committed, {deploy_commits} commits: {figures['changed'] / deploy_commits:.2f} changed versions a commit")
    finally:
        plane.close()


# --- (b) two server processes --------------------------------------------------------------------


@pytest.fixture
def two_servers(postgres_url, tmp_path):
    data = tmp_path / "data"
    token = seed(data, postgres_url)
    plane = Plane(data, postgres_url)
    servers = [PlaneServer(data, postgres_url, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield token, plane, servers
    finally:
        for server in servers:
            server.kill()
        plane.close()


def test_two_server_processes_share_database_and_repositories(two_servers):
    token, plane, servers = two_servers
    before = set(deployment_ids_in_history(plane.repo())[0])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"}

    def worker(thread: int) -> list[tuple[str, int]]:
        results = []
        clients = [httpx.Client(base_url=s.url, headers=headers, timeout=300) for s in servers]
        try:
            for i in range(8):  # alternate between the processes, so each app's deploys come through both
                name = "web" if i % 2 == 0 else f"app-{thread}"
                results.append(put(clients[(thread + i) % 2], name, f"ghcr.io/acme/x:{thread}.{i}"))
        finally:
            for client in clients:
                client.close()
        return results

    with ThreadPoolExecutor(8) as pool:
        accepted = [item for result in pool.map(worker, range(8)) for item in result]
    figures = check_consistency(plane, accepted, before)
    assert figures["versions"] == len(accepted) == 64
    print(f"two processes: {figures}")


# --- (c) two reconcilers at once -----------------------------------------------------------------

RECONCILE_CHILD = """
import datetime as dt, sys
sys.path.insert(0, {root!r})
from gitops.reconciler import LEASE, reconcile
from gitops.models import utcnow
from tests.serve_plane import Plane
plane = Plane({data!r}, {url!r})
print("ready", flush=True)
sys.stdin.readline()
later = utcnow() + LEASE + dt.timedelta(minutes=1)
print(reconcile(plane.sessions, plane.repos, plane.committers, plane.worker, now=lambda: later), flush=True)
plane.close()
"""

PENDING_APPS, PENDING_EACH = 6, 5


def write_pending(plane: Plane, count_each: int, apps: int) -> list[str]:
    """Intent rows as gitops.deploy._submit writes them, left by a process that died at once."""
    now = utcnow()
    ids = []
    with plane.sessions.begin() as session:
        workspace = session.scalar(select(Workspace).where(Workspace.name == "storefront"))
        profile = profile_of(workspace.cluster)
        for a in range(apps):
            name = f"app-{a}"
            app = Application(tenant_id=workspace.tenant_id, workspace_id=workspace.id, name=name, kind="service")
            session.add(app)
            session.flush()
            for i in range(count_each):
                (spec,) = load_specs(service_spec(name, image=f"ghcr.io/acme/{name}:{i}"))
                number = session.execute(
                    update(Application).where(Application.id == app.id)
                    .values(version_counter=Application.version_counter + 1, updated_at=now)
                    .returning(Application.version_counter)).scalar_one()
                version = Version(
                    application_id=app.id, number=number, action="deploy", deployment_id=str(uuid.uuid4()),
                    spec=spec.body, spec_digest=spec.digest, render_digest=_render_digest(render(spec, profile)),
                    author="admin", source="api", source_commit=None, origin=None, notes=[],
                    claimed_by="dead-host:1:00000000", claimed_until=now + LEASE, created_at=now)
                session.add(version)
                session.flush()
                ids.append(version.deployment_id)
    return ids


def test_two_reconcilers_handle_each_pending_version_once(postgres_url, tmp_path):
    data = tmp_path / "data"
    seed(data, postgres_url)
    plane = Plane(data, postgres_url)
    children = []
    try:
        before = set(deployment_ids_in_history(plane.repo())[0])
        pending = write_pending(plane, PENDING_EACH, PENDING_APPS)
        code = RECONCILE_CHILD.format(root=str(ROOT), data=str(data), url=postgres_url)
        for _ in range(2):
            children.append(subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True, cwd=ROOT))
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:  # both start their pass at the same moment
            child.stdin.write("go\n")
            child.stdin.flush()
        counts = []
        for child in children:
            out, _ = child.communicate(timeout=300)
            assert child.returncode == 0
            counts.append(int(out.strip().splitlines()[-1]))
        assert sum(counts) == len(pending)  # each version repaired by exactly one of them
        check_consistency(plane, [], before)
        ids, _ = deployment_ids_in_history(plane.repo())
        committed = {v.deployment_id for v in plane.versions() if v.state == "committed"}
        assert committed and committed <= set(ids)
        print(f"two reconcilers: repaired {counts} of {len(pending)}")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
        plane.close()
