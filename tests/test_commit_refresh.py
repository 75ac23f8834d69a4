"""A commit reaches the cluster at once: the control plane's side (gitops.refreshes).

Each commit to a cluster repository queues, in the transaction that records it, one refresh per
Application it touched, for the cluster's agent; bursts coalesce; commit refreshes outlive the
command TTL; the agent's answer and ArgoCD's first report at the commit are the trace's
"refresh requested" and "seen" steps, which the status answers and ``deploy --wait`` show too.
Runs on SQLite and PostgreSQL with the real app; the agent is played through its real API (a
Reporter over loopback) or, for the queue itself, through gitops.commands as the agent API calls it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from contract.protocol import CommandResult, Heartbeat
from contract.repository import touched_applications
from gitops import accounts, clusters, refreshes
from gitops.commands import claim_commands, record_result
from gitops.models import Application, Cluster, Command, User
from gitops.repo import ClusterRepo
from gitops.status import StatusSettings
from renderer import bootstrap
from renderer.profiles import load_profile
from tests.plane import add_cluster, add_workspace, deploy_yaml, served, service_spec  # noqa: F401 - served
from tests.test_status import argocd_application, observe, reporter

API = "/api/v1"
SETTINGS = StatusSettings()
ROOT = Path(__file__).resolve().parent.parent
KIND_PROFILE = (ROOT / "fixtures/clusters/kind.yaml").read_text()


# --- which Applications a commit touched ----------------------------------------------------------


@pytest.mark.parametrize(("path", "names"), [
    ("workspaces/shop/web/deployment-web.yaml", {"shop.web"}),
    ("workspaces/shop/web/service-web-preview.yaml", {"shop.web"}),
    ("workspaces/shop/namespace.yaml", {"shop"}),
    ("workspaces/shop/quota.yaml", {"shop"}),
    ("workspaces/shop/agent-role.yaml", {"shop"}),
    ("workspaces/shop/agent-rolebinding.yaml", {"shop"}),
    ("apps/shop/web.yaml", {"shop.web", "shipyard-demo"}),  # the app of apps applies the Application file
    ("apps/shop.yaml", {"shop", "shipyard-demo"}),
    ("bootstrap/agent/30-deployment.yaml", {"shipyard-demo-agent"}),
    ("bootstrap/agent/20-role.yaml", {"shipyard-demo-agent"}),
    ("bootstrap/project.yaml", {"shipyard-demo-bootstrap"}),
    ("bootstrap/root.yaml", {"shipyard-demo-bootstrap"}),
    ("bootstrap/agent.yaml", {"shipyard-demo-bootstrap"}),
    ("bootstrap/agent-project.yaml", {"shipyard-demo-bootstrap"}),
    ("bootstrap/apps.yaml", {"shipyard-demo-bootstrap", "shipyard-demo"}),
    ("README.md", set()),  # nothing Shipyard lays out: no Application syncs it
    ("apps/README.md", set()),
    ("workspaces/shop", set()),
])
def test_the_applications_a_path_belongs_to(path, names):
    assert touched_applications([path], "demo") == names


def test_the_bootstrap_names_are_the_renderers():
    profile = load_profile("fixtures/clusters/demo.yaml")
    assert touched_applications(["bootstrap/root.yaml", "bootstrap/apps.yaml", "bootstrap/agent/x.yaml"], "demo") == {
        bootstrap.root_application_name(profile), bootstrap.apps_application_name(profile),
        bootstrap.agent_application_name(profile)}


def test_the_changed_paths_are_gits(plane_app, admin, tmp_path):
    """The walk over the differing trees finds what ``git diff --name-only`` finds, commit by commit."""
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    for spec in (service_spec("web"), service_spec("api"), service_spec("web", image="ghcr.io/acme/web:2.0")):
        assert deploy_yaml(admin, spec).status_code == 200
    assert admin.delete(f"{API}/apps/demo/storefront/api").status_code == 200
    repo = _repo(plane_app)
    history = [str(commit.id) for commit in repo.log()]
    assert len(history) >= 5
    for commit, base in zip(history, history[1:]):
        listed = subprocess.run(["git", "--git-dir", str(repo.path), "diff", "--name-only", base, commit],
                                capture_output=True, text=True, check=True).stdout.split()
        assert sorted(refreshes.changed_paths(repo, base, commit)) == sorted(listed)


# --- what each commit queues -----------------------------------------------------------------------


def _repo(plane_app, cluster: str = "demo") -> ClusterRepo:
    control = plane_app.extensions["shipyard"]
    with control.sessions() as session:
        return control.repos.open(session.scalar(select(Cluster).where(Cluster.name == cluster)))


def _cluster_id(plane_app, cluster: str = "demo") -> int:
    with plane_app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(Cluster.id).where(Cluster.name == cluster))


def drain(plane_app, cluster: str = "demo") -> dict[str, dict]:
    """Hand out the cluster's commands as the agent API does, and answer each: name -> what was handed out."""
    out = {}
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        row = session.scalar(select(Cluster).where(Cluster.name == cluster))
        for command in claim_commands(session, row.id, SETTINGS, limit=1000):
            out[command.name] = {"type": command.type, "kind": command.kind, "namespace": command.namespace,
                                 "params": dict(command.params), "created_by": command.created_by,
                                 "application_id": command.application_id}
            record_result(session, row, command.id,
                          CommandResult(True, {"refresh": "normal", "commit": command.params.get("commit")}))
    return out


def commit_refreshes(plane_app, state: str | None = None) -> list[Command]:
    with plane_app.extensions["shipyard"].sessions() as session:
        query = select(Command).where(refreshes.COMMIT_REFRESH).order_by(Command.id)
        if state is not None:
            query = query.where(Command.state == state)
        return list(session.scalars(query))


def app_id(plane_app, name: str) -> int:
    with plane_app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(Application.id).where(Application.name == name))


def deployed(api, spec: str) -> dict:
    response = deploy_yaml(api, spec)
    assert response.status_code == 200, response.get_json()
    (version,) = response.get_json()["versions"]
    return version


def test_each_commit_queues_the_refreshes_of_exactly_what_it_touched(plane_app, admin):
    add_cluster(admin)
    assert drain(plane_app) == {}  # the first commit: nothing of it is in the cluster yet
    repo = _repo(plane_app)

    add_workspace(admin, "demo", "storefront")
    created = drain(plane_app)
    # its Namespace (the workspace's Application), its Application file (the app of apps) and
    # its place in the apps' AppProject (the root)
    assert set(created) == {"storefront", "shipyard-demo", "shipyard-demo-bootstrap"}
    assert {c["params"]["commit"] for c in created.values()} == {str(repo.tip())}

    first = deployed(admin, service_spec("web"))
    new_app = drain(plane_app)
    assert set(new_app) == {"storefront.web", "shipyard-demo"}
    web = new_app["storefront.web"]
    assert web == {"type": "refresh", "kind": "Application", "namespace": "argocd",
                   "params": {"commit": first["commit"], "reason": "commit"}, "created_by": "shipyard",
                   "application_id": app_id(plane_app, "web")}
    assert new_app["shipyard-demo"]["application_id"] is None

    second = deployed(admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    assert {name: c["params"]["commit"] for name, c in drain(plane_app).items()} == {"storefront.web": second["commit"]}

    again = deployed(admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    assert again["number"] == second["number"] and drain(plane_app) == {}  # no commit, no refresh

    response = admin.patch(f"{API}/clusters/demo/workspaces/storefront", json={"labels": {"team": "shop"}})
    assert response.status_code == 200, response.get_json()
    assert set(drain(plane_app)) == {"storefront"}  # the Namespace's labels
    assert admin.patch(f"{API}/clusters/demo/workspaces/storefront",
                       json={"labels": {"team": "shop"}}).status_code == 200
    assert drain(plane_app) == {}  # the same labels: no commit

    assert admin.delete(f"{API}/apps/demo/storefront/web").status_code == 200
    deleted = drain(plane_app)
    assert set(deleted) == {"storefront.web", "shipyard-demo"}  # its directory, and its Application's file
    assert deleted["storefront.web"]["params"]["commit"] == str(repo.tip())

    assert admin.delete(f"{API}/clusters/demo/workspaces/storefront").status_code in (200, 204)
    assert set(drain(plane_app)) == {"storefront", "shipyard-demo", "shipyard-demo-bootstrap"}


def test_a_profile_change_refreshes_the_bootstrap_it_rewrote(plane_app, admin):
    add_cluster(admin, "dev-kind", KIND_PROFILE)
    add_workspace(admin, "dev-kind", "storefront")
    deployed(admin, service_spec("web", cluster="dev-kind"))
    drain(plane_app, "dev-kind")
    control = plane_app.extensions["shipyard"]

    def replace(text: str) -> None:  # as `shipyard up` does when the server's address changed
        with control.sessions() as session:
            principal = accounts.principal_for(session, session.scalar(select(User).where(User.username == "admin")))
            cluster = session.scalar(select(Cluster).where(Cluster.name == "dev-kind"))
            clusters.replace_profile(control.system_context(session, principal), cluster, text, {"by": "test"})
            session.commit()

    moved_agent = KIND_PROFILE.replace("http://host.docker.internal:8080", "http://192.0.2.1:8080")
    replace(moved_agent)
    assert set(drain(plane_app, "dev-kind")) == {"shipyard-dev-kind-agent"}  # only the agent's URL changed
    replace(moved_agent.replace("http://127.0.0.1:8080/git/default/dev-kind.git",
                                "http://192.0.2.1:8080/git/default/dev-kind.git"))
    # every Application names the repository: the root, the app of apps, the workspace's, the app's
    assert set(drain(plane_app, "dev-kind")) == {
        "shipyard-dev-kind-bootstrap", "shipyard-dev-kind", "storefront", "storefront.web"}


# --- bursts, claims and the TTL --------------------------------------------------------------------


def test_a_burst_leaves_one_refresh_in_flight_and_one_queued_at_the_newest_commit(
        plane_app, admin, served):  # noqa: F811 - the fixture imported above
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    deployed(admin, service_spec("web"))
    drain(plane_app)
    commits = []
    for n in range(100):
        commits.append(deployed(admin, service_spec("web", image=f"ghcr.io/acme/web:burst-{n}"))["commit"])
        if n == 49:  # the agent claims in the middle of the burst
            with plane_app.extensions["shipyard"].sessions.begin() as session:
                (claimed,) = claim_commands(session, _cluster_id(plane_app), SETTINGS)
            assert claimed.params["commit"] == commits[49]
    rows = commit_refreshes(plane_app)
    live = [(row.state, row.name, row.params["commit"]) for row in rows if row.state in ("queued", "sent")]
    assert live == [("sent", "storefront.web", commits[49]), ("queued", "storefront.web", commits[-1])]

    # a second burst, concurrent this time (8 clients): still one queued, at the branch's tip
    def burst(worker: int) -> None:
        with httpx.Client(base_url=served, timeout=60, headers={"Authorization": f"Bearer {admin.token}"}) as http:
            for n in range(5):
                response = http.put(f"{API}/apps", content=service_spec("web", image=f"ghcr.io/acme/web:w{worker}-{n}"),
                                    headers={"Content-Type": "application/yaml"})
                assert response.status_code == 200, response.text

    threads = [threading.Thread(target=burst, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queued = commit_refreshes(plane_app, "queued")
    assert [(row.name, row.params["commit"]) for row in queued] == [("storefront.web", str(_repo(plane_app).tip()))]


def test_a_commit_refresh_waits_for_its_agent_past_the_command_ttl(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    drain(plane_app)
    version = deployed(admin, service_spec("web"))
    asked = admin.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "refresh"})
    assert asked.status_code == 201
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=SETTINGS.command_ttl + 3600)
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        handed = claim_commands(session, _cluster_id(plane_app), SETTINGS, now=later)
    assert {(c.name, c.params.get("commit")) for c in handed} == {
        ("storefront.web", version["commit"]), ("shipyard-demo", version["commit"])}
    person = admin.get(f"{API}/commands/{asked.get_json()['id']}").get_json()
    assert person["state"] == "expired"  # a person's refresh still expires


def test_a_commit_recorded_late_queues_its_refreshes_and_never_takes_one_back(plane_app, admin):
    """The reconciler (or the commit step) recording a commit a dead committer made: its refreshes were
    never queued; they are now, but never over a refresh already queued at a later commit."""
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    first = deployed(admin, service_spec("web"))
    drain(plane_app)
    control = plane_app.extensions["shipyard"]
    repo = _repo(plane_app)
    with control.sessions.begin() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == "demo"))
        names = refreshes.queue_recorded_commit(session, cluster, clusters.profile_of(cluster), repo, first["commit"])
    assert names == {"storefront.web", "shipyard-demo"}
    assert {row.name: row.application_id for row in commit_refreshes(plane_app, "queued")} == {
        "storefront.web": app_id(plane_app, "web"), "shipyard-demo": None}
    second = deployed(admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    with control.sessions.begin() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == "demo"))
        refreshes.queue_recorded_commit(session, cluster, clusters.profile_of(cluster), repo, first["commit"])
    assert {row.name: row.params["commit"] for row in commit_refreshes(plane_app, "queued")} == {
        "storefront.web": second["commit"], "shipyard-demo": first["commit"]}


# --- the agent's long-poll, the trace and the status answers ----------------------------------------


@pytest.fixture
def client(served):  # noqa: F811 - the fixture imported above
    with httpx.Client(base_url=served, timeout=60) as http:
        yield http


def test_a_waiting_agent_gets_a_deploys_refreshes_at_once(plane_app, admin, client):
    cluster = add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    drain(plane_app)
    # only the bell can wake the poll in time: the process's watch of other processes' commands sleeps
    plane_app.extensions["shipyard"].command_watch.interval = 60
    rep = reporter(client, cluster)
    got: dict = {}

    def poll():
        got["commands"] = rep.poll_commands(20)
        got["at"] = time.monotonic()

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.5)
    version = deployed(admin, service_spec("web"))
    deployed_at = time.monotonic()
    waiting.join(timeout=30)
    assert {(c.name, c.params["commit"]) for c in got["commands"]} == {
        ("storefront.web", version["commit"]), ("shipyard-demo", version["commit"])}
    assert got["at"] - deployed_at < 1.0


def steps_of(admin, version: int | None = None) -> dict[str, dict]:
    response = admin.get(f"{API}/apps/demo/storefront/web/trace", query_string={"version": version} if version else {})
    assert response.status_code == 200, response.get_json()
    return {step["step"]: step for step in response.get_json()["steps"]}


def version_status(admin, number: int) -> dict:
    response = admin.post(f"{API}/apps/status", json={"apps": ["demo:storefront/web"], "versions": 20})
    assert response.status_code == 200, response.get_json()
    (app,) = response.get_json()["apps"]
    return next(v for v in app["versions"] if v["number"] == number)


def report_web(rep, **status) -> None:
    observe(rep, "Application", "argocd", "storefront.web", argocd_application("storefront", "web", **status))
    rep.send_pending()


def answer_refreshes(rep) -> list:
    commands = rep.poll_commands(0)
    for command in commands:
        rep.send_result(command.id, CommandResult(True, {"refresh": "normal", "commit": command.params["commit"]}))
    return commands


def test_the_trace_and_the_status_show_refresh_requested_and_seen(plane_app, admin, client):
    cluster = add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    rep = reporter(client, cluster)
    rep.heartbeat(Heartbeat("1.0", "1.33"))
    answer_refreshes(rep)
    first = deployed(admin, service_spec("web"))
    steps = steps_of(admin)
    assert list(steps) == ["spec commit", "accepted", "committed", "refresh requested", "seen", "synced", "healthy"]
    assert steps["refresh requested"]["at"] is None and steps["seen"]["at"] is None
    assert (version_status(admin, 1)["refresh_requested_at"], version_status(admin, 1)["seen_at"]) == (None, None)

    answer_refreshes(rep)
    report_web(rep, sync="OutOfSync", revision=first["commit"], health="Missing", operation="Running")
    report_web(rep, sync="Synced", revision=first["commit"], health="Healthy")
    steps = steps_of(admin, 1)
    assert steps["refresh requested"]["commit"] == first["commit"] and steps["refresh requested"]["refresh"] == "normal"
    assert steps["seen"]["revision"] == first["commit"]
    order = [steps[name]["at"] for name in ("committed", "refresh requested", "seen", "synced", "healthy")]
    assert order == sorted(order) and all(order)
    assert steps["refresh requested"]["after_seconds"] >= 0 and steps["seen"]["after_seconds"] >= 0
    status = version_status(admin, 1)
    assert status["status"] == "healthy"
    assert (status["committed_at"], status["refresh_requested_at"], status["seen_at"]) == (
        steps["committed"]["at"], steps["refresh requested"]["at"], steps["seen"]["at"])
    (one,) = admin.get(f"{API}/apps/demo/storefront/web/status").get_json()["versions"]  # the one app's answer too
    assert (one["refresh_requested_at"], one["seen_at"]) == (status["refresh_requested_at"], status["seen_at"])

    # two deploys before the agent takes anything: one refresh, at the newer commit, serves both
    second = deployed(admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    third = deployed(admin, service_spec("web", image="ghcr.io/acme/web:3.0"))
    assert [c.params["commit"] for c in answer_refreshes(rep)] == [third["commit"]]
    report_web(rep, sync="OutOfSync", revision=third["commit"], health="Healthy", operation="Running")
    for number in (second["number"], third["number"]):
        steps = steps_of(admin, number)
        assert steps["refresh requested"]["commit"] == third["commit"] and steps["seen"]["revision"] == third["commit"]
    assert version_status(admin, third["number"])["seen_at"] == steps["seen"]["at"]


# --- deploy --wait ----------------------------------------------------------------------------------


class ArgoCD:
    """ArgoCD and the agent, played over the agent API: a refresh makes ArgoCD compare against the commit
    at once, sync it a moment later, and the app turns Healthy."""

    def __init__(self, url: str, cluster: dict):
        self.url, self.cluster = url, cluster
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            rep = reporter(http, self.cluster)
            while not self.stop.is_set():
                rep.heartbeat(Heartbeat("1.0", "1.33"))
                commands = rep.poll_commands(1)
                for command in commands:
                    rep.send_result(command.id, CommandResult(True, {"refresh": "normal",
                                                                     "commit": command.params.get("commit")}))
                revisions = [c.params["commit"] for c in commands if c.name == "storefront.web"]
                if revisions:
                    report_web(rep, sync="OutOfSync", revision=revisions[-1], health="Healthy", operation="Running")
                    time.sleep(0.4)
                    report_web(rep, sync="Synced", revision=revisions[-1], health="Healthy")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.mark.slow
def test_deploy_wait_prints_refresh_requested_and_seen_with_their_times(
        plane_app, admin, served, tmp_path):  # noqa: F811 - the fixture imported above
    cluster = add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    spec = tmp_path / "web.yaml"
    spec.write_text(service_spec("web"))
    env = {**os.environ, "SHIPYARD_URL": served, "SHIPYARD_TOKEN": admin.token, "XDG_CONFIG_HOME": str(tmp_path)}
    with ArgoCD(served, cluster):
        waited = subprocess.run([str(Path(sys.executable).parent / "shipyard"), "deploy", "--wait", "--timeout", "60s",
                                 str(spec)], capture_output=True, text=True, env=env, timeout=120,
                                stdin=subprocess.DEVNULL)
    assert waited.returncode == 0, waited.stderr
    lines = [line for line in waited.stderr.splitlines() if " demo:storefront/web v1 " in line]
    said = [line.split(" v1 ", 1)[1] for line in lines]
    requested = next(i for i, line in enumerate(said) if line.startswith("refresh requested"))
    seen = next(i for i, line in enumerate(said) if line.startswith("seen by ArgoCD"))
    healthy = said.index("healthy")
    assert requested < seen < healthy, said
    assert re.fullmatch(r"refresh requested \(\d+\.\d\d s after the commit\)", said[requested])
    assert re.search(r"^  refresh requested \d+\.\d\d s, seen by ArgoCD \d+\.\d\d s after the commit$",
                     waited.stderr, re.M), waited.stderr
