"""A commit reaches ArgoCD at once: the agent refreshes exactly the Applications each commit touched.

First the agent alone against the fake API server (tests/fakekube.py): what a commit's refresh
patches, skips and answers, and how a claimed batch is coalesced. Then end to end: the real
control plane on loopback queues the refreshes after each deploy, the real agent carries them
out against the fake API server under exactly the RBAC the bootstrap renders for it, and
``ArgoCD`` below plays ArgoCD's part there (the Applications the repository holds, compared at
its head when the test says ArgoCD got there).
"""

from __future__ import annotations

import threading
import time

import pygit2
import pytest
import yaml
from sqlalchemy import select

from agent.commands import Executor
from agent.kube import KubeApi
from agent.main import Agent
from contract.protocol import Command
from gitops.models import Command as CommandRow
from tests.agent_collector import Collector
from tests.fakekube import FakeKube
from tests.plane import (PROFILE, add_cluster, add_workspace, deploy_yaml, make_user, served,  # noqa: F401 - a fixture
                         service_spec)
from tests.test_agent_watch import make_settings, wait_for

MANAGED = {"app.kubernetes.io/managed-by": "shipyard"}
REFRESH = "argocd.argoproj.io/refresh"
OLD, NEW, NEWER = "a" * 40, "b" * 40, "c" * 40


def application(name: str, revision: str = OLD) -> dict:
    return {"metadata": {"name": name, "labels": MANAGED},
            "status": {"sync": {"status": "Synced", "revision": revision}, "health": {"status": "Healthy"}}}


def commit_refresh(command_id: int, name: str, commit: str, namespace: str = "argocd") -> Command:
    return Command(command_id, "refresh", "Application", namespace, name, {"commit": commit, "reason": "commit"})


def patched(kube: FakeKube, since: float | None = None) -> list[str]:
    """The Applications the API server got a PATCH for, in order."""
    return [r.name for r in kube.requests_matching("patch", "applications", since=since)]


# --- the agent alone ----------------------------------------------------------------------------------


@pytest.fixture
def kube():
    with FakeKube() as fake:
        fake.create("applications", application("shop.web"), "argocd")
        fake.create("applications", application("shop.api", revision=NEW), "argocd")
        fake.create("applications", application("shipyard-prod"), "argocd")
        fake.create("applications", {"metadata": {"name": "hand-made"}}, "argocd")
        yield fake


@pytest.fixture
def executor(kube):
    settings = make_settings(kube)
    return Executor(KubeApi(settings.kubernetes_configuration()), settings)


def test_a_commit_refresh_patches_an_application_argocd_has_not_compared_at_the_commit(kube, executor):
    result = executor.execute(commit_refresh(1, "shop.web", NEW))
    assert result.ok and result.result == {"refresh": "normal", "commit": NEW}
    assert kube.get("applications", "argocd", "shop.web")["metadata"]["annotations"] == {REFRESH: "normal"}
    assert patched(kube) == ["shop.web"]


def test_an_application_argocd_compares_at_the_commit_already_is_not_patched(kube, executor):
    """ArgoCD's own webhook (or its poll) got there first: nothing to ask for."""
    result = executor.execute(commit_refresh(1, "shop.api", NEW))
    assert result.ok and result.result == {"refresh": "skipped", "seen": True, "commit": NEW}
    assert kube.writes() == []


def test_an_application_the_commit_adds_is_answered_absent_and_nothing_else_is_refreshed(kube, executor):
    result = executor.execute(commit_refresh(1, "shop.new", NEW))
    assert result.ok and result.result == {"refresh": "skipped", "absent": True, "commit": NEW}
    # a person's refresh of an Application that is not there is still the API server's 404
    missing = executor.execute(Command(2, "refresh", "Application", "argocd", "shop.new", {}))
    assert not missing.ok and "404" in missing.error
    assert kube.writes() == []


@pytest.mark.parametrize("refused", [
    commit_refresh(1, "shop.web", "not-a-commit"),
    commit_refresh(1, "shop.web", NEW.upper()),
    Command(1, "refresh", "Application", "argocd", "shop.web", {"reason": "commit"}),
    commit_refresh(1, "hand-made", NEW),  # not Shipyard's
    commit_refresh(1, "shop.web", NEW, namespace="shop"),  # Applications live in the ArgoCD namespace only
], ids=["not-hex", "upper-case", "no-commit", "not-shipyards", "other-namespace"])
def test_commit_refreshes_the_agent_cannot_trust_are_refused_without_writing(kube, executor, refused):
    result = executor.execute(refused)
    assert not result.ok and result.error.startswith("refused by the agent:")
    assert kube.writes() == []


@pytest.fixture
def collector():
    started = Collector().start()
    yield started
    started.stop()


def test_a_batch_refreshes_each_application_once_and_answers_every_command(kube, collector):
    agent = Agent(make_settings(kube, url=collector.url))
    try:
        collector.commands = [
            {"id": 11, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.web",
             "params": {"commit": OLD, "reason": "commit"}},
            {"id": 12, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shipyard-prod",
             "params": {"commit": NEW, "reason": "commit"}},
            {"id": 13, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.web",
             "params": {"hard": True}},  # a person's hard refresh is its own
            {"id": 14, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.web",
             "params": {"commit": NEW, "reason": "commit"}},
            {"id": 15, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.api",
             "params": {"commit": OLD, "reason": "commit"}},
            {"id": 16, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.api",
             "params": {"commit": NEW, "reason": "commit"}},
        ]
        agent.command_step()
        results = collector.results
        assert sorted(results) == [11, 12, 13, 14, 15, 16]
        # shop.web: once for its two commits (carried out at the newer), once for the hard refresh
        assert patched(kube) == ["shop.web", "shipyard-prod", "shop.web"]
        assert kube.request_count("get", "applications") == 4
        assert results[11]["result"] == {"refresh": "normal", "commit": OLD}
        assert results[14]["result"] == {"refresh": "normal", "commit": NEW}
        assert results[13]["result"] == {"refresh": "hard"}
        # shop.api compares at the newest commit already: neither of its refreshes patches
        assert results[15]["result"] == {"refresh": "skipped", "seen": True, "commit": OLD}
        assert results[16]["result"] == {"refresh": "skipped", "seen": True, "commit": NEW}
        assert all(result["ok"] for result in results.values())
        assert agent.commands[("refresh", "ok")] == 6
    finally:
        agent.stop()


# --- end to end: the control plane queues, the agent refreshes -----------------------------------------

AGENT_PROFILE = PROFILE + "agent: {url: 'https://shipyard.example.com'}\n"
WORKSPACE = "storefront"


class ArgoCD:
    """ArgoCD's part on the fake API server: the Applications of the cluster repository, compared at a revision.

    ``catch_up`` is what ArgoCD has done once it looked (by a refresh, its poll or its webhook):
    every Application the head of the repository holds exists, compared and synced at the head,
    its refresh annotation removed; an Application the repository no longer holds is pruned.
    """

    def __init__(self, kube: FakeKube, repository: str):
        self.kube, self.repository = kube, repository

    def head(self) -> str:
        return str(pygit2.Repository(self.repository).revparse_single("refs/heads/main").id)

    def applications(self, revision: str) -> dict[str, dict]:
        repo = pygit2.Repository(self.repository)
        found = {}
        for directory in ("bootstrap", "apps"):
            for path, blob in _files(repo, repo.revparse_single(revision).tree / directory, directory):
                for obj in yaml.safe_load_all(blob.data):
                    if isinstance(obj, dict) and obj.get("kind") == "Application":
                        found[obj["metadata"]["name"]] = obj
        return found

    def catch_up(self) -> str:
        head = self.head()
        wanted = self.applications(head)
        status = {"sync": {"status": "Synced", "revision": head}, "health": {"status": "Healthy"}}
        for name, obj in wanted.items():
            if self.kube.get("applications", "argocd", name) is None:
                self.kube.create("applications", {**obj, "status": status}, "argocd")
            else:
                self.kube.update("applications", "argocd", name,
                                 {"metadata": {"annotations": {REFRESH: None}}, "status": status})
        for existing in self.kube.items("applications"):
            if existing["metadata"]["name"] not in wanted:
                self.kube.delete("applications", "argocd", existing["metadata"]["name"])
        return head


def _files(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str):
    for entry in tree:
        path = f"{prefix}/{entry.name}"
        if entry.type_str == "tree":
            yield from _files(repo, repo[entry.id], path)
        elif path.endswith(".yaml"):
            yield path, repo[entry.id]


def _rules(obj: dict):
    for rule in obj["rules"]:
        yield rule["verbs"], rule["resources"]


class Cluster:
    """The served control plane, a cluster with an agent section, its fake API server under the RBAC the
    repository renders for the agent, ArgoCD played on it, and the real agent (started and stopped by tests)."""

    def __init__(self, plane_app, url: str, kube: FakeKube):
        self.app, self.url, self.kube = plane_app, url, kube
        self.admin = make_user(plane_app, "admin", "tenant-admin")
        self.tokens = add_cluster(self.admin, "demo", AGENT_PROFILE)
        add_workspace(self.admin, "demo", WORKSPACE)
        plane = plane_app.extensions["shipyard"]
        self.sessions = plane.sessions
        self.argocd = ArgoCD(kube, str(plane.repos.path_for(plane_app.config["TENANT"], "demo")))
        self.argocd.catch_up()  # bootstrapped: kubectl apply -f bootstrap/root.yaml, and ArgoCD synced it
        self.grant_rendered_rbac()
        self.agent: Agent | None = None
        self.stop_event = threading.Event()

    def grant_rendered_rbac(self) -> None:
        """Switch the fake's RBAC on with exactly what the repository's ClusterRole and Roles grant the agent."""
        repo = pygit2.Repository(self.argocd.repository)
        tree = repo.revparse_single("refs/heads/main").tree
        self.kube.restrict()
        for path, blob in [*_files(repo, tree / "bootstrap", "bootstrap"),
                           *_files(repo, tree / "workspaces", "workspaces")]:
            obj = yaml.safe_load(blob.data)
            if isinstance(obj, dict) and obj.get("kind") in ("ClusterRole", "Role"):
                namespace = obj["metadata"].get("namespace") if obj["kind"] == "Role" else None
                for verbs, resources in _rules(obj):
                    self.kube.grant(verbs, resources, namespace)

    def start_agent(self) -> Agent:
        self.stop_event = threading.Event()
        settings = make_settings(self.kube, url=self.url, tenant=self.app.config["TENANT"], cluster="demo",
                                 token=self.tokens["agent_token"], namespaces=(WORKSPACE,), command_wait=1)
        self.agent = Agent(settings)
        self.agent.start(self.stop_event)
        return self.agent

    def stop_agent(self) -> None:
        self.stop_event.set()
        self.agent.stop()
        time.sleep(1.5)  # the control plane ends the stopped agent's last long-poll (command_wait) unanswered

    def deploy(self, name: str, tag: str) -> str:
        response = deploy_yaml(self.admin, service_spec(name, WORKSPACE, image=f"ghcr.io/acme/{name}:{tag}"))
        assert response.status_code == 200, response.get_json()
        [version] = response.get_json()["versions"]
        assert version["state"] == "committed", version
        return version["commit"]

    def refreshes(self, name: str | None = None) -> list[CommandRow]:
        with self.sessions() as session:
            query = select(CommandRow).where(CommandRow.type == "refresh").order_by(CommandRow.id)
            if name is not None:
                query = query.where(CommandRow.name == name)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def settled(self) -> bool:
        """No refresh waits for the agent: each one queued so far has its answer."""
        return all(row.state in ("done", "failed") for row in self.refreshes())

    def forbidden(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.kube.log if r.status == 403]


@pytest.fixture
def cluster(plane_app, served):  # noqa: F811 - the fixture imported above
    with FakeKube() as kube:
        cluster = Cluster(plane_app, served, kube)
        yield cluster
        if cluster.agent is not None and not cluster.stop_event.is_set():
            cluster.stop_event.set()
            cluster.agent.stop()


def test_a_deploy_makes_the_agent_patch_exactly_the_touched_applications_within_a_second(cluster):
    kube = cluster.kube
    cluster.start_agent()
    wait_for(cluster.settled, what="the refreshes of the cluster's first commits answered")
    assert patched(kube) == []  # ArgoCD compares every Application at the head already: nothing to ask

    # a new app: its Application comes with the app of apps' sync, so the app of apps is refreshed
    before = kube.now()
    first = cluster.deploy("web", "1.0")
    wait_for(lambda: patched(kube, before), timeout=5, what="the refresh of the app of apps")
    assert kube.requests_matching("patch", "applications", since=before)[0].at - before < 1.0
    wait_for(cluster.settled, what="the new app's refreshes answered")
    assert patched(kube, before) == ["shipyard-demo"]
    assert kube.get("applications", "argocd", "shipyard-demo")["metadata"]["annotations"][REFRESH] == "normal"
    web = cluster.refreshes(f"{WORKSPACE}.web")[-1]
    assert web.params == {"commit": first, "reason": "commit"} and web.created_by == "shipyard"
    assert web.result == {"refresh": "skipped", "absent": True, "commit": first}
    cluster.argocd.catch_up()  # the app of apps synced: the app's Application exists, synced at the commit

    # a changed app: its own Application, nothing else
    before = kube.now()
    second = cluster.deploy("web", "2.0")
    wait_for(lambda: patched(kube, before), timeout=5, what="the refresh of the app's Application")
    assert kube.requests_matching("patch", "applications", since=before)[0].at - before < 1.0
    wait_for(cluster.settled, what="the refresh answered")
    assert patched(kube, before) == [f"{WORKSPACE}.web"]
    assert cluster.refreshes(f"{WORKSPACE}.web")[-1].result == {"refresh": "normal", "commit": second}
    assert kube.get("applications", "argocd", f"{WORKSPACE}.web")["metadata"]["annotations"][REFRESH] == "normal"
    assert cluster.forbidden() == []  # the agent needed nothing its rendered RBAC does not grant


def test_a_burst_of_commits_is_coalesced_and_the_last_refresh_carries_the_newest_commit(cluster):
    kube = cluster.kube
    cluster.start_agent()
    cluster.deploy("web", "0")
    wait_for(cluster.settled, what="the first deploy's refreshes answered")
    cluster.argocd.catch_up()
    slow = 0.5
    kube.slow(slow, times=None, verb="patch")  # each patch takes a while: commits pile up behind it
    before, last = kube.now(), cluster.refreshes()[-1].id
    commits = [cluster.deploy("web", str(tag)) for tag in range(1, 51)]
    burst = kube.now() - before
    wait_for(lambda: cluster.settled() and cluster.refreshes(f"{WORKSPACE}.web")[-1].params["commit"] == commits[-1],
             timeout=30, what="the burst's refreshes answered")
    rows = [row for row in cluster.refreshes() if row.id > last]
    patches = patched(kube, before)
    assert {row.name for row in rows} == set(patches) == {f"{WORKSPACE}.web"}
    # one patch per refresh, and one refresh per patch in flight: a refresh in flight and, behind it, at
    # most one queued taking the newer commits
    assert len(patches) == len(rows) <= min(burst / slow + 2, 50 / 4), (len(rows), burst)
    assert rows[-1].state == "done" and rows[-1].result == {"refresh": "normal", "commit": commits[-1]}
    assert cluster.forbidden() == []


def test_an_agent_back_after_an_outage_refreshes_what_it_missed_and_skips_what_argocd_saw(cluster):
    kube = cluster.kube
    cluster.start_agent()
    cluster.deploy("web", "1.0")
    cluster.deploy("api", "1.0")
    wait_for(cluster.settled, what="the first deploys' refreshes answered")
    cluster.argocd.catch_up()
    cluster.stop_agent()

    # while the agent is away: two deploys of web, then one of api that ArgoCD's own webhook brings
    # it before the agent is back
    before = kube.now()
    cluster.deploy("web", "2.0")
    newest = cluster.deploy("web", "3.0")
    seen = cluster.deploy("api", "2.0")
    kube.update("applications", "argocd", f"{WORKSPACE}.api", {"status": {"sync": {"revision": seen}}})
    assert [row.state for row in cluster.refreshes(f"{WORKSPACE}.web")][-1] == "queued"

    cluster.start_agent()
    wait_for(cluster.settled, what="the missed refreshes answered")
    web, api = cluster.refreshes(f"{WORKSPACE}.web"), cluster.refreshes(f"{WORKSPACE}.api")[-1]
    # web: the two commits of the outage in one refresh, at the newer
    assert [row.params["commit"] for row in web if row.id > web[0].id] == [newest]
    assert web[-1].result == {"refresh": "normal", "commit": newest}
    assert api.params["commit"] == seen and api.result == {"refresh": "skipped", "seen": True, "commit": seen}
    assert patched(kube, before) == [f"{WORKSPACE}.web"]
    assert cluster.forbidden() == []
