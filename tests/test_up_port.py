"""``shipyard up`` started again at another address points the demo cluster it seeded there.

The first start writes the control plane's address into the demo cluster's profile (the
repository URL ArgoCD pulls from) and into everything rendered from it (the bootstrap, every
workspace's and app's Application). A later start at another --port or --host follows with
all of it, audited, and leaves alone a profile someone changed or an address someone chose.
In process against the real control plane (SQLite and PostgreSQL), and once as people run it:
``shipyard up`` twice, on two ports.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.up import DEMO_CLUSTER, demo_profile_text, follow_new_address, seed_first_start
from gitops.models import AuditEvent, Cluster
from tests.plane import make_user
from tests.test_cli_plane import EXAMPLE_APPS, start_up, stop

TENANT = "default"
FIRST, SECOND = "http://127.0.0.1:8081", "http://127.0.0.1:9092"


def repository_files(plane_app) -> dict[str, str]:
    plane = plane_app.extensions["shipyard"]
    with plane.sessions() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == DEMO_CLUSTER))
        return {path: data.decode() for path, data in plane.repos.open(cluster).snapshot().walk().items()}


def stored_profile(plane_app) -> str:
    with plane_app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(Cluster.profile_text).where(Cluster.name == DEMO_CLUSTER))


def naming(files: dict[str, str], address: str) -> set[str]:
    return {path for path, text in files.items() if f"{address}/git/{TENANT}/{DEMO_CLUSTER}.git" in text}


def test_a_start_at_another_address_moves_what_the_first_start_wrote(plane_app):
    plane = plane_app.extensions["shipyard"]
    assert seed_first_start(plane, TENANT, FIRST) is not None
    before = repository_files(plane_app)
    applications = naming(before, FIRST)
    # the bootstrap, each workspace's Application and each app's
    assert {"bootstrap/root.yaml", "bootstrap/project.yaml"} <= set(before) and "bootstrap/root.yaml" in applications
    assert {f"apps/{app}.yaml" for app in EXAMPLE_APPS} <= applications

    assert follow_new_address(plane, TENANT, FIRST + "/") is None  # the same address: nothing to do
    previous, commit = follow_new_address(plane, TENANT, SECOND)
    assert previous == FIRST and commit is not None
    after = repository_files(plane_app)
    assert naming(after, FIRST) == set() and naming(after, SECOND) == applications
    # only what names the address changed: every app's manifests are as they were
    assert {path for path in after if after[path] != before.get(path)} == applications
    assert stored_profile(plane_app) == demo_profile_text(SECOND, TENANT)
    with plane.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "cluster.update")).one()
    assert (event.actor, event.target) == ("admin", DEMO_CLUSTER)
    assert event.detail == {"fields": ["profile"], "by": "shipyard up", "address": {"from": FIRST, "to": SECOND}}

    # a public address chosen for it (SHIPYARD_PUBLIC_URL) is followed to, and from there on it is kept
    assert follow_new_address(plane, TENANT, "https://shipyard.example.com")[0] == SECOND
    assert follow_new_address(plane, TENANT, FIRST) is None
    assert stored_profile(plane_app) == demo_profile_text("https://shipyard.example.com", TENANT)


def test_a_profile_someone_changed_is_left_alone(plane_app):
    plane = plane_app.extensions["shipyard"]
    seed_first_start(plane, TENANT, FIRST)
    carla = make_user(plane_app, "carla", "cluster-admin", cluster=DEMO_CLUSTER)
    changed = demo_profile_text(FIRST, TENANT).replace("base_domain:", "# ours now\nbase_domain:")
    response = carla.patch(f"/api/v1/clusters/{DEMO_CLUSTER}", json={"profile": changed})
    assert response.status_code == 200, response.get_json()
    tip = repository_files(plane_app)

    assert follow_new_address(plane, TENANT, SECOND) is None
    assert stored_profile(plane_app) == changed and repository_files(plane_app) == tip


@pytest.mark.slow
def test_up_twice_on_two_ports(tmp_path):
    log = tmp_path / "server.log"
    first = start_up(tmp_path / "data", tmp_path / "config", log)
    assert stop(first.process) == 0
    second = start_up(tmp_path / "data", tmp_path / "config", log)
    try:
        assert first.url != second.url
        assert f'cluster "{DEMO_CLUSTER}" was set up for {first.url}: its repository URL now names {second.url}' \
            in second.banner
        repository = tmp_path / "data" / "repos" / TENANT / f"{DEMO_CLUSTER}.git"
        old = subprocess.run(["git", "--git-dir", str(repository), "grep", "-l", first.url, "main"],
                             capture_output=True, text=True)
        assert old.returncode == 1 and old.stdout == ""  # git grep: nothing found
        new = subprocess.run(["git", "--git-dir", str(repository), "grep", "-l", f"{second.url}/git/", "main"],
                             capture_output=True, text=True, check=True)
        assert {f"main:apps/{app}.yaml" for app in EXAMPLE_APPS} <= set(new.stdout.split())
        with sqlite3.connect(tmp_path / "data" / "shipyard.db") as db:
            (profile,) = db.execute("SELECT profile_text FROM cluster WHERE name = ?", (DEMO_CLUSTER,)).fetchone()
        assert re.search(rf"repo_url: {re.escape(second.url)}/git/{TENANT}/{DEMO_CLUSTER}\.git", profile)
    finally:
        stop(second.process, signal.SIGTERM)


def test_the_demo_profile_names_this_server_wherever_it_points_the_agent(monkeypatch, tmp_path):
    profile = tmp_path / "demo.yaml"
    profile.write_text(Path("fixtures/clusters/demo.yaml").read_text()
                       + "agent:\n  # the control plane it reports to\n  url: http://127.0.0.1:8080\n")
    monkeypatch.setattr("cli.up.DEMO_PROFILE", profile)
    text = demo_profile_text(SECOND + "/", "acme")
    assert f"repo_url: {SECOND}/git/acme/{DEMO_CLUSTER}.git" in text
    assert text.endswith(f"agent:\n  # the control plane it reports to\n  url: {SECOND}\n")
