"""The agent's watch loop against API server faults: client-go's habits, per-namespace RBAC, CRDs that
come and go, enough pooled connections; and the heartbeat that tells the control plane what the agent
cannot follow.

Each test drives watchers a step at a time where it can (no timing), against the fake API server.
"""

from __future__ import annotations

import logging
import random
import socket
import threading

import pytest

from agent.backoff import Backoff
from agent.kube import DEPLOYMENT, ROLLOUT, KubeApi
from agent.main import Agent
from agent.report import Outbox, Tracker
from agent.watch import Target, Watcher
from contract.protocol import Heartbeat
from tests.agent_collector import Collector
from tests.fakekube import FakeKube, client_configuration
from tests.plane import add_cluster, make_user, served  # noqa: F401 - served: a fixture
from tests.test_agent_watch import MANAGED, Running, app, make_settings, wait_for


class EndsAtOnce(FakeKube):
    """The fake API server with its watches ending right after the headers (``end_watches``: a proxy or a
    load balancer closing them)."""

    def __enter__(self):
        started = super().__enter__()
        self.end_watches()
        return started


def watcher(kube: FakeKube, target: Target | None = None, **overrides) -> Watcher:
    settings = make_settings(kube, **overrides)
    return Watcher(KubeApi(settings.kubernetes_configuration()), target or Target(DEPLOYMENT, "shop"),
                   Tracker(), Outbox(), settings, rng=random.Random(1))


def deployment(name: str) -> dict:
    return {"metadata": {"name": name, "labels": MANAGED}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}


def watch_queries(kube: FakeKube) -> list[dict]:
    return [q for m, p, q in kube.requests if q.get("watch") in ("true", "1")]


def list_queries(kube: FakeKube, plural: str) -> list[dict]:
    return [q for m, p, q in kube.requests if p.endswith("/" + plural) and q.get("watch") is None]


# --- part 1: the watch loop ------------------------------------------------------------------------


def test_a_watch_that_ends_at_once_is_a_failure_that_backs_off():
    with EndsAtOnce() as kube:
        w = watcher(kube, backoff_base=0.01, backoff_max=100)
        assert w.step() == 0.0 and w.synced.is_set()  # the list
        delays = [w.step() for _ in range(8)]
        assert len(watch_queries(kube)) == 8 and w.restarts == 8
        # 0.01, 0.02, 0.04 ... each scaled by 0.5-1: growing, never 0 (a reconnect at once, as before)
        assert all(0.01 * 2 ** i * 0.5 <= delay <= 0.01 * 2 ** i for i, delay in enumerate(delays))


def test_the_back_off_starts_over_only_after_sustained_health():
    now = [0.0]
    backoff = Backoff(1.0, 1000.0, random.Random(2), reset_after=120.0, clock=lambda: now[0])
    for seconds in (1, 2, 4, 8):
        assert seconds * 0.5 <= backoff.next() <= seconds
        now[0] += seconds + 5  # the delay, then a few seconds of success before the next failure
    assert 8 <= backoff.next() <= 16  # short successes in between did not start it over
    now[0] += 121
    assert 0.5 <= backoff.next() <= 1  # two minutes without a failure: from the base again


def test_a_successful_list_between_short_watches_does_not_start_the_back_off_over():
    with EndsAtOnce() as kube:
        w = watcher(kube, backoff_base=0.01, backoff_max=100)
        w.step()
        before = [w.step() for _ in range(5)]
        w.resource_version = None  # e.g. after a 410: the next step lists, and the list succeeds
        assert w.step() == 0.0
        assert w.step() >= 0.01 * 2 ** 5 * 0.5 > max(before) / 2  # the sixth failure's delay, not the first's


def test_watch_timeouts_are_randomised_between_the_setting_and_twice_it():
    with EndsAtOnce() as kube:
        w = watcher(kube, watch_timeout=300)
        w.step()
        for _ in range(12):
            w.step()
        asked = [int(query["timeoutSeconds"]) for query in watch_queries(kube)]
        assert all(300 <= seconds <= 600 for seconds in asked)
        assert len(set(asked)) > 6  # spread out, not all 300 (lockstep reconnects)


def test_lists_come_from_the_watch_cache_and_only_a_410_on_a_list_asks_for_a_quorum_read(running):
    kube = running.kube
    kube.create("applications", app("shop.a"), "argocd")
    runner = running.start()
    wait_for(lambda: kube.open_watches == 1, what="a watch")
    first = list_queries(kube, "applications")[0]
    assert first["resourceVersion"] == "0" and "resourceVersionMatch" not in first  # any version: the cache
    for i in range(4):
        kube.create("applications", app(f"shop.n{i}"), "argocd")
    kube.update("applications", "argocd", "shop.a", {"status": {"health": {"status": "Degraded"}}})
    seen = str(kube.resource_version)
    wait_for(lambda: runner.watcher.resource_version == seen, what="the changes")
    kube.fail(410, match=lambda method, path, query: query.get("watch") == "true")  # the watch's version expired
    kube.fail(410, match=lambda method, path, query: query.get("continue") is not None)  # so did a continue token
    kube.cut_watches()
    wait_for(lambda: runner.watcher.relists == 2 and kube.open_watches == 1, what="the relists")
    assert len(runner.tracker) == 5
    after = list_queries(kube, "applications")[1:]
    # not older than what was seen, from the cache; then, its continue token expired, a quorum read
    assert after[0]["resourceVersion"] == seen and after[0]["resourceVersionMatch"] == "NotOlderThan"
    assert "continue" in after[1] and "resourceVersion" not in after[1]
    assert "resourceVersion" not in after[2] and "continue" not in after[2]


@pytest.fixture
def running():
    """One watcher of Applications against a fake with frequent bookmarks, started by the test."""
    with FakeKube(bookmark_interval=0.2) as kube:

        class Holder:
            def start(self, **overrides) -> Running:
                self.runner = Running(kube, list_page_size=3, **overrides).start()
                return self.runner

        holder = Holder()
        holder.kube = kube
        yield holder
        if hasattr(holder, "runner") and not holder.runner.stop.is_set():
            holder.runner.halt()


def test_a_silent_watch_is_replaced_after_the_idle_timeout():
    with FakeKube(bookmark_interval=3600) as kube:  # no bookmark, no event: a dead connection looks like this
        w = watcher(kube, watch_timeout=3600)
        w.idle_timeout = 0.3
        kube.create("deployments", deployment("web"), "shop")
        assert w.step() == 0.0
        assert w.step() > 0 and w.restarts == 1  # the read timed out: not left hanging for the watch's hour
        kube.slow(2, match=lambda method, path, query: query.get("watch") == "true")  # no answer at all
        assert w.step() > 0 and w.restarts == 2
        assert w.resource_version is not None and w.relists == 1  # resumed from where it was, nothing listed


def test_the_api_client_probes_idle_connections_with_tcp_keepalive():
    with FakeKube() as kube:
        api = KubeApi(client_configuration(kube), connections=300)
        pool_kw = api.client.rest_client.pool_manager.connection_pool_kw
        assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in pool_kw["socket_options"]
        assert pool_kw["maxsize"] == 300


# --- part 2: 403 per namespace, 404 per kind -------------------------------------------------------


def locked(method, path, query) -> bool:
    return "/namespaces/locked/" in path


def test_a_forbidden_namespace_holds_up_nothing_is_reported_and_is_followed_once_its_role_appears():
    with FakeKube() as kube:
        kube.create("deployments", deployment("web"), "shop")
        kube.create("deployments", deployment("vault"), "locked")
        kube.grant(["list", "watch"], "*", "shop")  # RBAC as rendered: a Role per namespace the agent reads
        kube.grant(["list", "watch"], "*", "argocd")  # "locked" exists, its Role does not yet
        agent = Agent(make_settings(kube, namespaces=("shop", "locked"), unauthorized_backoff=30))
        delays = {w.target.namespace: [] for w in agent.watchers}
        for w in agent.watchers:
            delays[w.target.namespace].append(w.step())
        # every scope has answered: the first snapshot goes now, not after SYNC_TIMEOUT
        assert agent.ready_to_report()
        assert all(delay >= 30 for delay in delays["locked"]) and not any(delays["shop"] + delays["argocd"])
        assert ("shop", "web") in {(d.namespace, d.name) for d in agent.tracker.snapshot()}
        faults = agent.heartbeat_message().watch_faults
        assert {(f["kind"], f["namespace"], f["reason"]) for f in faults} == {
            (kind, "locked", "forbidden") for kind in ("Deployment", "Rollout", "Pod", "Workflow", "Job", "Event")}
        assert all(f["message"] for f in faults)
        kube.grant(["list", "watch"], "*", "locked")  # the Role is created
        for w in agent.watchers:
            if w.target.namespace == "locked":
                assert w.step() == 0.0
        assert ("locked", "vault") in {(d.namespace, d.name) for d in agent.tracker.snapshot()}
        assert agent.heartbeat_message().watch_faults == []
        agent.api.close()


def test_a_kind_whose_crd_goes_away_is_reported_deleted_and_picked_up_when_it_comes_back(caplog):
    with FakeKube() as kube:
        for name in ("web", "api"):
            kube.create("rollouts", {"metadata": {"name": name, "labels": MANAGED}}, "shop")
        w = watcher(kube, Target(ROLLOUT, "shop"), unauthorized_backoff=30)
        assert w.step() == 0.0 and len(w.tracker) == 2
        w.outbox.take(100)
        crd = kube.get("customresourcedefinitions", None, "rollouts.argoproj.io")
        kube.delete("customresourcedefinitions", None, "rollouts.argoproj.io")  # uninstalled: the kind is not served
        with caplog.at_level(logging.WARNING, logger="agent.watch"):
            assert w.step() >= 30
        assert {(d.name, d.state) for d in w.outbox.take(100)} == {("web", None), ("api", None)}
        assert len(w.tracker) == 0 and w.synced.is_set()
        assert w.fault == {"kind": "Rollout", "namespace": "shop", "reason": "not_served",
                           "message": w.fault["message"]}
        assert "not served" in caplog.text
        assert w.step() >= 30 and w.outbox.take(100) == []  # said once; nothing more to forget
        kube.create("customresourcedefinitions", {"metadata": {"name": crd["metadata"]["name"]},
                                                  "spec": crd["spec"]})  # installed again, its objects gone
        for name in ("web", "api"):
            kube.create("rollouts", {"metadata": {"name": name, "labels": MANAGED}}, "shop")
        assert w.step() == 0.0 and w.fault is None
        assert sorted(d.name for d in w.outbox.take(100)) == ["api", "web"]


# --- part 3: connections -------------------------------------------------------------------------


def test_fifty_namespaces_get_a_pooled_connection_each_and_no_pool_is_full_warning(caplog):
    namespaces = tuple(f"team{i}" for i in range(50))
    with FakeKube(bookmark_interval=0.5) as kube:
        for namespace in namespaces:
            kube.create("deployments", deployment("web"), namespace)
        collector = Collector().start()
        agent = Agent(make_settings(kube, url=collector.url, namespaces=namespaces, watch_timeout=30))
        stop = threading.Event()
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            agent.start(stop)
            try:
                wait_for(lambda: len(collector.of_kind("Deployment")) == 50, timeout=120, what="the snapshot")
                reconnected = {id(w): w.restarts + w.relists for w in agent.watchers}
                kube.cut_watches()  # every connection back through the pool at once
                wait_for(lambda: all(w.restarts + w.relists > reconnected[id(w)] for w in agent.watchers),
                         timeout=120, what="every watcher to reconnect")
                wait_for(lambda: kube.open_watches == len(agent.watchers), timeout=120, what="the watches again")
            finally:
                stop.set()
                agent.stop()
                collector.stop()
    assert len(agent.watchers) == 50 * 6 + 2
    assert "Connection pool is full" not in caplog.text


# --- the heartbeat field, through the real control plane -------------------------------------------


def test_the_control_plane_stores_watch_faults_and_older_agents_still_work(served, plane_app):
    import httpx

    from agent.report import Reporter

    admin = make_user(plane_app, "admin", "tenant-admin")
    cluster = add_cluster(admin, "demo")
    with httpx.Client(base_url=served, timeout=60) as client:
        reporter = Reporter(client, "default", "demo", cluster["agent_token"], Tracker(), Outbox())
        fault = {"kind": "Deployment", "namespace": "locked", "reason": "forbidden",
                 "message": 'deployments.apps is forbidden: User "system:serviceaccount:shipyard:agent" cannot list'}
        assert reporter.heartbeat(Heartbeat("1.0", "v1.33.1", watch_faults=[fault])) == {"commands": 0}
        shown = admin.get("/api/v1/clusters/demo/status").json["agent"]
        assert shown["watch_faults"] == [fault]
        headers = {"Authorization": f"Bearer {cluster['agent_token']}", "Content-Type": "application/json"}
        older = client.post("/agent/v1/default/demo/heartbeat", json={"agent_version": "0.9"}, headers=headers)
        assert older.status_code == 200
        assert admin.get("/api/v1/clusters/demo/status").json["agent"]["watch_faults"] == []
        for bad in ({"kind": "Deployment", "namespace": "x", "reason": "sleepy"}, "Deployment", {"kind": 1}):
            answer = client.post("/agent/v1/default/demo/heartbeat", headers=headers,
                                 json={"agent_version": "1.0", "watch_faults": [bad]})
            assert answer.status_code == 400 and "watch_faults" in answer.text


@pytest.fixture
def plane_app(database_url, tmp_path):
    from tests.plane import app_config
    from webapp import create_app

    app = create_app(app_config(tmp_path / "data", database_url))
    yield app
    app.extensions["shipyard"].close()
