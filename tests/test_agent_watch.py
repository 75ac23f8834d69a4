"""The agent's list + watch against the fake API server, with the real kubernetes client underneath.

Watchers run in threads as in the agent; tests wait for the state they expect
(with a generous deadline, never asserting on durations).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from agent.kube import APPLICATION, DEPLOYMENT, POD, KubeApi
from agent.main import Agent, metrics_registry
from contract.protocol import ObjectKey
from agent.report import Outbox, Tracker
from agent.settings import AgentSettings
from agent.summaries import application
from agent.watch import Target, Watcher, targets
from tests.agent_collector import Collector
from tests.fakekube import FakeKube, client_configuration

MANAGED = {"app.kubernetes.io/managed-by": "shipyard"}


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def app(name: str, health: str = "Healthy", sync: str = "Synced", managed: bool = True, revision: str = "a1") -> dict:
    labels = {**MANAGED, "shipyard.dev/app": name, "shipyard.dev/workspace": "shop"} if managed else {"team": "x"}
    return {"metadata": {"name": name, "labels": labels},
            "status": {"sync": {"status": sync, "revision": revision}, "health": {"status": health}}}


@pytest.fixture
def kube():
    with FakeKube(bookmark_interval=0.2) as fake:
        yield fake


def make_settings(kube: FakeKube, url: str = "http://127.0.0.1:9", **overrides) -> AgentSettings:
    values = dict(url=url, tenant="acme", cluster="prod", token="agent-token",
                  kube_configuration=client_configuration(kube), backoff_base=0.01, backoff_max=0.05,
                  unauthorized_backoff=0.05, watch_timeout=5, list_page_size=3, metrics_port=0,
                  batch_interval=0.05, heartbeat_interval=0.5, command_wait=1)
    values.update(overrides)
    return AgentSettings(**values)


class Running:
    """One watcher in its own thread, as the agent runs it."""

    def __init__(self, kube: FakeKube, target: Target | None = None, **overrides):
        self.settings = make_settings(kube, **overrides)
        self.api = KubeApi(self.settings.kubernetes_configuration())
        self.tracker, self.outbox = Tracker(), Outbox()
        self.watcher = Watcher(self.api, target or Target(APPLICATION, "argocd"), self.tracker, self.outbox,
                               self.settings, rng=random.Random(4))
        self.stop = threading.Event()
        self.thread = None

    def start(self) -> "Running":
        self.stop.clear()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,), daemon=True)
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        self.watcher.close()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def state(self, name: str, namespace: str = "argocd", kind: str = "Application"):
        for delta in self.tracker.snapshot():
            if delta.key == ObjectKey(kind, namespace, name):
                return delta.state
        return None

    def drain(self) -> dict:
        return {d.name: d.state for d in self.outbox.take(100_000)}


@pytest.fixture
def running(kube):
    started = []

    def start(target: Target | None = None, **overrides) -> Running:
        runner = Running(kube, target, **overrides).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if not runner.stop.is_set():
            runner.halt()


def test_initial_list_pages_through_and_keeps_only_shipyard_applications(kube, running):
    for i in range(7):
        kube.create("applications", app(f"shop.app{i}"), "argocd")
    kube.create("applications", app("hand-made", managed=False), "argocd")
    kube.create("applications", app("elsewhere"), "other")
    runner = running()
    wait_for(runner.watcher.synced.is_set, what="first list")
    assert sorted(d.name for d in runner.tracker.snapshot()) == [f"shop.app{i}" for i in range(7)]
    pages = [q for m, p, q in kube.requests if p.endswith("/applications") and q.get("watch") is None]
    assert len(pages) == 3 and all(q["limit"] == "3" for q in pages)
    assert "continue" not in pages[0] and all("continue" in q for q in pages[1:])
    assert all(q["labelSelector"] == "app.kubernetes.io/managed-by=shipyard" for q in pages)
    pending = runner.drain()
    assert pending["shop.app3"] == application(kube.get("applications", "argocd", "shop.app3"))


def test_changes_flow_as_deltas_and_meaningless_churn_does_not(kube, running):
    kube.create("applications", app("shop.web"), "argocd")
    kube.create("applications", app("shop.api"), "argocd")
    runner = running()
    wait_for(lambda: len(runner.tracker) == 2, what="first list")
    runner.drain()
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Degraded",
                                                                              "message": "back-off"}}})
    kube.update("applications", "argocd", "shop.api", {"metadata": {"annotations": {"noise": "1"}}})
    kube.delete("applications", "argocd", "shop.api")
    kube.create("applications", app("shop.new", health="Progressing"), "argocd")
    wait_for(lambda: runner.state("shop.new") is not None, what="the new app")
    pending = runner.drain()
    assert pending["shop.web"]["health"] == "Degraded" and pending["shop.web"]["message"] == "back-off"
    assert pending["shop.api"] is None  # the annotation-only change never became a delta of its own
    assert pending["shop.new"]["health"] == "Progressing"
    assert sorted(d.name for d in runner.tracker.snapshot()) == ["shop.new", "shop.web"]


@pytest.mark.parametrize("gone_as_response", [False, True], ids=["error-event", "410-response"])
def test_relist_after_410_reports_what_changed_and_vanished_during_the_gap(kube, running, gone_as_response):
    kube.gone_as_response = gone_as_response
    for name in ("a", "b", "c"):
        kube.create("applications", app(f"shop.{name}"), "argocd")
    runner = running()
    wait_for(lambda: len(runner.tracker) == 3, what="first list")
    runner.halt()
    runner.drain()
    kube.delete("applications", "argocd", "shop.a")
    kube.update("applications", "argocd", "shop.b", {"status": {"health": {"status": "Missing"}}})
    kube.create("applications", app("shop.d"), "argocd")
    kube.compact()  # the watcher's resourceVersion is now older than the server's history
    runner.start()
    wait_for(lambda: runner.watcher.relists == 2 and runner.state("shop.d") is not None, what="the re-list")
    pending = runner.drain()
    assert pending == {"shop.a": None, "shop.b": application(kube.get("applications", "argocd", "shop.b")),
                       "shop.d": application(kube.get("applications", "argocd", "shop.d"))}
    assert sorted(d.name for d in runner.tracker.snapshot()) == ["shop.b", "shop.c", "shop.d"]


def test_an_open_watch_told_410_lists_again(kube, running):
    kube.create("applications", app("shop.a"), "argocd")
    runner = running()
    wait_for(lambda: len(runner.tracker) == 1 and kube.open_watches == 1, what="a watch")
    kube.expire_watches()
    kube.create("applications", app("shop.b"), "argocd")
    wait_for(lambda: runner.watcher.relists == 2 and len(runner.tracker) == 2, what="the re-list")


def test_reconnects_after_cut_connections_and_server_errors_without_listing_again(kube, running):
    kube.create("applications", app("shop.a"), "argocd")
    runner = running()
    wait_for(lambda: kube.open_watches == 1, what="a watch")
    kube.fail(500, times=3, match=lambda method, path, query: query.get("watch") == "true")
    kube.cut_watches()
    kube.update("applications", "argocd", "shop.a", {"status": {"health": {"status": "Degraded"}}})
    wait_for(lambda: (runner.state("shop.a") or {}).get("health") == "Degraded", what="the change after the cut")
    assert runner.watcher.restarts >= 4  # the cut and three 500s
    assert runner.watcher.relists == 1  # resumed from its resourceVersion each time: nothing listed again
    wait_for(lambda: kube.open_watches == 1, what="the watch again")
    kube.slow(0.5, match=lambda method, path, query: query.get("watch") == "true")
    kube.cut_watches()
    kube.create("applications", app("shop.b"), "argocd")
    wait_for(lambda: runner.state("shop.b") is not None, what="the change after a slow reconnect")


def test_server_errors_back_off_and_honour_retry_after(kube):
    runner = Running(kube, backoff_base=0.01, backoff_max=0.05, unauthorized_backoff=30)
    # urllib3 under the client already waits out Retry-After on 429/503 and tries again; any other
    # status with Retry-After reaches the watcher, which waits at least that long.
    kube.fail(500, retry_after=7)
    assert runner.watcher.step() >= 7  # the API server asked for 7 s
    assert runner.watcher.resource_version is None and runner.watcher.restarts == 1
    kube.fail(500)
    assert runner.watcher.step() <= 0.05
    assert runner.watcher.step() == 0.0 and runner.watcher.synced.is_set()  # the list goes through


def test_401_and_403_wait_long_and_recover(kube):
    runner = Running(kube, backoff_base=0.01, backoff_max=0.05, unauthorized_backoff=30)
    kube.create("applications", app("shop.a"), "argocd")
    kube.token = "rotated"  # the agent's service account token no longer valid
    assert runner.watcher.step() >= 30
    kube.token = "fake-token"
    kube.fail(403)
    assert runner.watcher.step() >= 30
    assert runner.watcher.step() == 0.0 and len(runner.tracker) == 1


def test_bookmarks_advance_the_resource_version_so_a_reconnect_needs_no_relist(kube, running):
    kube.create("applications", app("shop.a"), "argocd")
    runner = running()
    wait_for(lambda: kube.open_watches == 1, what="a watch")
    for i in range(20):  # other kinds move the global resourceVersion; the app watch sees none of it
        kube.create("deployments", {"metadata": {"name": f"d{i}"}}, "shop")
    newest = str(kube.resource_version)
    kube.bookmark()
    wait_for(lambda: runner.watcher.resource_version == newest, what="the bookmark")
    kube.compact()  # history before the bookmark is gone: only the bookmark saves a re-list
    kube.cut_watches()
    kube.create("applications", app("shop.b"), "argocd")
    wait_for(lambda: runner.state("shop.b") is not None, what="the change after reconnecting")
    assert runner.watcher.relists == 1


def test_duplicate_and_out_of_order_events_do_not_walk_state_back(kube, running):
    kube.create("applications", app("shop.a"), "argocd")
    kube.create("applications", app("shop.z"), "argocd")
    runner = running()
    wait_for(lambda: len(runner.tracker) == 2 and kube.open_watches == 1, what="a watch")
    old = kube.get("applications", "argocd", "shop.a")
    new = kube.update("applications", "argocd", "shop.a", {"status": {"health": {"status": "Degraded"}}})
    wait_for(lambda: runner.state("shop.a")["health"] == "Degraded", what="the update")
    runner.drain()
    kube.inject_event("applications", "MODIFIED", new)  # the same event again
    kube.inject_event("applications", "MODIFIED", new)
    kube.inject_event("applications", "MODIFIED", old)  # an older resourceVersion after a newer one
    kube.inject_event("applications", "DELETED", old)
    kube.update("applications", "argocd", "shop.z", {"status": {"sync": {"status": "OutOfSync"}}})  # a barrier
    wait_for(lambda: runner.state("shop.z")["sync"] == "OutOfSync", what="the barrier")
    assert runner.state("shop.a")["health"] == "Degraded"
    assert set(runner.drain()) == {"shop.z"}


def test_events_are_kept_only_for_followed_objects(kube, running):
    kube.create("pods", {"metadata": {"name": "web-1", "labels": MANAGED}, "status": {"phase": "Pending"}}, "shop")
    kube.create("pods", {"metadata": {"name": "other-1"}, "status": {"phase": "Running"}}, "shop")
    pods = running(Target(POD, None))
    wait_for(lambda: pods.state("web-1", "shop", "Pod") is not None, what="the pod")
    settings = make_settings(kube)
    event_target = [t for t in targets(settings, pods.tracker) if t.kind.kind == "Event"][0]
    events = Running(kube, event_target)
    events.tracker = pods.tracker  # one agent: one tracker
    events.watcher.tracker = pods.tracker
    events.start()
    try:
        wait_for(events.watcher.synced.is_set, what="the events list")
        for name, involved in (("e1", "web-1"), ("e2", "other-1")):
            kube.create("events", {"metadata": {"name": name}, "type": "Warning", "reason": "BackOff",
                                   "message": "Back-off restarting failed container",
                                   "involvedObject": {"kind": "Pod", "namespace": "shop", "name": involved}}, "shop")
        kube.create("events", {"metadata": {"name": "e3"}, "reason": "Pulled",
                               "involvedObject": {"kind": "Pod", "namespace": "kube-system", "name": "web-1"}},
                    "kube-system")
        wait_for(lambda: events.watcher.events >= 2, what="the events")
        assert pods.state("e1", "shop", "Event")["reason"] == "BackOff"
        assert pods.state("e2", "shop", "Event") is None and pods.state("e3", "kube-system", "Event") is None
    finally:
        events.halt()


def test_targets_follow_the_allow_and_deny_lists(kube):
    fixed = make_settings(kube, namespaces=("shop", "kube-system", "argocd", "pay"), namespaces_deny=("pay",))
    scopes = {(t.kind.kind, t.namespace) for t in targets(fixed, Tracker())}
    assert ("Application", "argocd") in scopes and ("Pod", "shop") in scopes
    assert not {ns for kind, ns in scopes if kind != "Event"} & {"kube-system", "pay", None} - {"argocd"}
    assert ("Deployment", "argocd") not in scopes and ("Event", "argocd") in scopes
    patterns = make_settings(kube, namespaces=("team-*",))
    wide = [t for t in targets(patterns, Tracker()) if t.kind.kind == "Deployment"]
    assert len(wide) == 1 and wide[0].namespace is None
    assert wide[0].accept({"metadata": {"namespace": "team-a"}}) and not wide[0].accept({"metadata": {"namespace": "x"}})


def test_control_plane_outage_while_thousands_of_objects_change(kube):
    """The control plane goes away while 2,000 Applications change 6,000 times: the agent keeps
    following, holds at most one pending change per object, and the control plane ends up with
    exactly the cluster's state; then the control plane comes back without its memory and gets a snapshot."""
    rng = random.Random(7)
    names = [f"ws{i % 20}.app{i}" for i in range(2000)]
    for name in names:
        kube.create("applications", app(name), "argocd")
    collector = Collector().start()
    settings = make_settings(kube, url=collector.url, list_page_size=500, batch_interval=0.02)
    agent = Agent(settings, rng=random.Random(3))
    stop = threading.Event()
    agent.start(stop)
    try:
        wait_for(lambda: len(collector.of_kind("Application")) == 2000, timeout=60, what="the first snapshot")
        collector.stop()
        healths = ("Healthy", "Degraded", "Progressing", "Missing")
        largest = 0
        for i in range(6000):
            name = rng.choice(names)
            kube.update("applications", "argocd", name,
                        {"status": {"health": {"status": rng.choice(healths)}, "sync": {"revision": f"r{i}"}}})
            if i % 500 == 0:
                largest = max(largest, len(agent.outbox))
        for name in names[:100]:
            kube.delete("applications", "argocd", name)
        for i in range(100):
            kube.create("applications", app(f"ws-new.app{i}"), "argocd")
        wait_for(lambda: agent.watchers[0].resource_version == str(kube.resource_version), what="the agent to follow")
        largest = max(largest, len(agent.outbox))
        assert largest <= 2100  # bounded by the objects, not by the 6,200 changes
        expected = {(o["metadata"]["namespace"], o["metadata"]["name"]): application(o)
                    for o in kube.items("applications")}
        collector.start()  # back, with its state: the stream simply continues
        wait_for(lambda: collector.of_kind("Application") == expected, timeout=60, what="catching up")
        assert agent.reporter.resyncs == 1 and len(agent.outbox) == 0
        collector.stop(forget=True)
        collector.start()  # back without its state: 409, a new stream, a snapshot
        kube.update("applications", "argocd", names[500], {"status": {"health": {"status": "Unknown"}}})
        expected[("argocd", names[500])] = application(kube.get("applications", "argocd", names[500]))
        wait_for(lambda: collector.of_kind("Application") == expected and agent.reporter.resyncs == 2,
                 timeout=60, what="the resync")
        beat = collector.heartbeats[-1]
        assert beat["kubernetes_version"] == "v1.33.1" and beat["objects"] == 2000
        assert {"argo_rollouts", "argo_workflows", "keda", "argocd"} <= set(beat["addons"])
        assert "rollouts.argoproj.io" in beat["crds"]
    finally:
        stop.set()
        agent.stop()
        collector.stop()


def test_commands_arrive_by_long_poll_and_results_go_back(kube):
    kube.create("applications", app("shop.web"), "argocd")
    collector = Collector().start()
    agent = Agent(make_settings(kube, url=collector.url))
    stop = threading.Event()
    agent.start(stop)
    try:
        with collector.lock:
            collector.commands += [
                {"id": 1, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.web",
                 "params": {"hard": True}},
                {"id": 2, "type": "restart", "kind": "Deployment", "namespace": "kube-system", "name": "dns"},
            ]
        wait_for(lambda: len(collector.results) == 2, what="the results")
        assert collector.results[1]["ok"] is True
        annotations = kube.get("applications", "argocd", "shop.web")["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/refresh"] == "hard"
        assert collector.results[2]["ok"] is False and "kube-system" in collector.results[2]["error"]
        from prometheus_client import generate_latest

        text = generate_latest(metrics_registry(agent)).decode()
        assert 'shipyard_agent_commands_total{outcome="ok",type="refresh"} 1.0' in text
        assert "shipyard_agent_followed_objects 1.0" in text
    finally:
        stop.set()
        agent.stop()
        collector.stop()


def test_metrics_are_served_on_their_port(kube, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from prometheus_client import start_http_server

    agent = Agent(make_settings(kube))
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics_registry(agent))
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "shipyard_agent_pending_deltas 0.0" in body and "shipyard_agent_relists_total" in body
    finally:
        server.shutdown()


def test_deployments_in_all_allowed_namespaces(kube, running):
    kube.create("deployments", {"metadata": {"name": "web", "labels": MANAGED}, "spec": {"replicas": 2},
                                "status": {"readyReplicas": 1}}, "shop")
    kube.create("deployments", {"metadata": {"name": "coredns", "labels": MANAGED}}, "kube-system")
    settings = make_settings(kube)
    target = [t for t in targets(settings, Tracker()) if t.kind == DEPLOYMENT][0]
    runner = running(target)
    wait_for(runner.watcher.synced.is_set, what="the list")
    assert [d.name for d in runner.tracker.snapshot()] == ["web"]
    assert runner.state("web", "shop", "Deployment")["ready"] == 1


def write_kubeconfig(kube: FakeKube, path) -> None:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
        "users": [{"name": "agent", "user": {"token": kube.token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}],
    }))


@pytest.mark.parametrize("entry", [["-m", "agent"], ["-m", "cli", "agent"]], ids=["python-m-agent", "shipyard-agent"])
def test_the_agent_process_reports_and_stops_on_sigterm(kube, tmp_path, entry):
    """The real process: settings from the environment, KUBECONFIG, token from a file; SIGTERM ends it cleanly."""
    kube.create("applications", app("shop.web"), "argocd")
    write_kubeconfig(kube, tmp_path / "kubeconfig")
    (tmp_path / "token").write_text("agent-token\n")
    collector = Collector().start()
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "SHIPYARD_URL": collector.url,
           "SHIPYARD_TENANT": "acme", "SHIPYARD_CLUSTER": "prod", "SHIPYARD_AGENT_TOKEN_FILE": str(tmp_path / "token"),
           "SHIPYARD_METRICS_PORT": "0", "SHIPYARD_BATCH_INTERVAL": "0.05", "SHIPYARD_COMMAND_WAIT": "1"}
    env.pop("SHIPYARD_AGENT_TOKEN", None)
    process = subprocess.Popen([sys.executable, *entry], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: ("argocd", "shop.web") in collector.of_kind("Application"), timeout=60, what="the snapshot")
        kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Degraded"}}})
        wait_for(lambda: collector.of_kind("Application")[("argocd", "shop.web")]["health"] == "Degraded",
                 what="the change")
        wait_for(lambda: collector.heartbeats, what="a heartbeat")  # its own loop: not ordered with status
        assert collector.heartbeats[0]["kubernetes_version"] == "v1.33.1"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        collector.stop()
    assert b"agent-token" not in process.stdout.read()  # the token is never logged


def test_settings_from_the_environment(tmp_path):
    (tmp_path / "token").write_text("secret\n")
    settings = AgentSettings.from_env({"SHIPYARD_URL": "https://ship.example/", "SHIPYARD_TENANT": "acme",
                                       "SHIPYARD_CLUSTER": "prod", "SHIPYARD_AGENT_TOKEN_FILE": str(tmp_path / "token"),
                                       "SHIPYARD_NAMESPACES": "shop, team-*", "SHIPYARD_NAMESPACES_DENY": "team-x",
                                       "SHIPYARD_BATCH_INTERVAL": "0.5", "ARGOCD_NAMESPACE": "gitops"})
    assert settings.url == "https://ship.example" and settings.agent_token() == "secret"
    assert settings.batch_interval == 0.5 and settings.fixed_namespaces is None
    assert [n for n in ("shop", "team-a", "team-x", "kube-system", "gitops", "other") if settings.namespace_allowed(n)] \
        == ["shop", "team-a"]
    (tmp_path / "token").write_text("rotated\n")
    assert settings.agent_token() == "rotated"
    from agent.settings import SettingsError

    for broken in ({}, {"SHIPYARD_URL": "u", "SHIPYARD_TENANT": "t", "SHIPYARD_CLUSTER": "c"},
                   {"SHIPYARD_URL": "u", "SHIPYARD_TENANT": "t", "SHIPYARD_CLUSTER": "c", "SHIPYARD_AGENT_TOKEN": "x",
                    "SHIPYARD_BATCH_INTERVAL": "soon"}):
        with pytest.raises(SettingsError):
            AgentSettings.from_env(broken)


class Outage:
    """A TCP proxy in front of the control plane: stop() is an outage (listener and every connection gone)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> "Outage":
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()


def test_outage_of_the_real_control_plane_while_objects_change(kube, database_url, tmp_path):
    """The real control plane (webapp.create_app, SQLite and PostgreSQL) behind a proxy that goes away
    while 1,000 Applications change 3,000 times: its database ends up with exactly the cluster's state."""
    from werkzeug.serving import make_server

    from tests.plane import add_cluster, app_config, make_user
    from tests.test_status import objects_of
    from webapp import create_app

    plane = create_app(app_config(tmp_path / "data", database_url))
    server = make_server("127.0.0.1", 0, plane, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cluster = add_cluster(make_user(plane, "admin", "tenant-admin"), "demo")
    proxy = Outage(server.server_port).start()
    rng = random.Random(11)
    names = [f"ws{i % 10}.app{i}" for i in range(1000)]
    for name in names:
        kube.create("applications", app(name), "argocd")
    settings = make_settings(kube, url=f"http://127.0.0.1:{proxy.port}", tenant="default", cluster="demo",
                             token=cluster["agent_token"], list_page_size=500, batch_interval=0.05)
    agent = Agent(settings, rng=random.Random(5))
    stop = threading.Event()
    agent.start(stop)

    def applications() -> dict:
        return {(ns, name): state for (kind, ns, name), state in objects_of(plane, "demo").items()
                if kind == "Application"}

    try:
        wait_for(lambda: len(applications()) == 1000, timeout=120, what="the first snapshot")
        proxy.stop()
        for i in range(3000):
            kube.update("applications", "argocd", rng.choice(names),
                        {"status": {"health": {"status": rng.choice(("Healthy", "Degraded"))},
                                    "sync": {"revision": f"r{i}"}}})
        for name in names[:50]:
            kube.delete("applications", "argocd", name)
        wait_for(lambda: agent.watchers[0].resource_version == str(kube.resource_version), what="the agent")
        assert 0 < len(agent.outbox) <= 1000  # held back by the outage, one per object at most
        expected = {(o["metadata"]["namespace"], o["metadata"]["name"]): application(o)
                    for o in kube.items("applications")}
        proxy.start()
        wait_for(lambda: applications() == expected, timeout=120, what="the control plane to catch up")
        assert agent.reporter.resyncs == 1  # the stream went on where it stopped: no second snapshot
    finally:
        stop.set()
        agent.stop()
        proxy.stop()
        server.shutdown()
        plane.extensions["shipyard"].close()
