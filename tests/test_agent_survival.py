"""No silent thread deaths: the agent's loops outlive whatever a step raises, a rotated agent token is
picked up from its file at once, and /livez fails when (and only when) a loop stops making progress.

Against the fake API server and the test collector; tests wait for the state they expect (with a
generous deadline), never assert on durations.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from agent.credentials import AgentToken
from agent.liveness import Liveness
from agent.main import Agent, metrics_registry
from agent.summaries import SUMMARIES
from tests.agent_collector import Collector
from tests.fakekube import FakeKube
from tests.test_agent_watch import app, make_settings, wait_for


@pytest.fixture
def kube():
    with FakeKube(bookmark_interval=0.2) as fake:
        fake.create("applications", app("shop.web"), "argocd")
        yield fake


@pytest.fixture
def collector():
    plane = Collector().start()
    yield plane
    plane.stop()


class Running:
    """An Agent started in its threads; stopped at the end of the test."""

    def __init__(self, settings):
        self.agent = Agent(settings, rng=random.Random(1))
        self.stop_event = threading.Event()
        self.agent.start(self.stop_event)

    def stop(self) -> None:
        self.stop_event.set()
        self.agent.stop()


@pytest.fixture
def running():
    started: list[Running] = []

    def start(settings) -> Agent:
        started.append(Running(settings))
        return started[-1].agent

    yield start
    for runner in started:
        runner.stop()


def health(agent: Agent):
    """Serve the agent's /livez and /metrics as run() does, on a free loopback port; returns a getter."""
    from prometheus_client import make_wsgi_app

    from agent.liveness import health_app, serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve(health_app(agent.liveness, make_wsgi_app(metrics_registry(agent))),
                   port, addr="127.0.0.1")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return get, server


def reported(collector: Collector, app_health: str):
    """A predicate: the control plane holds shop.web with this health."""
    return lambda: collector.of_kind("Application").get(("argocd", "shop.web"), {}).get("health") == app_health


# --- a kubelet-like Secret volume: token -> ..data/token, ..data -> ..<timestamp> --------------------


def mount_secret(directory: Path, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").symlink_to("..data/token")
    swap_secret(directory, token)
    return directory / "token"


def swap_secret(directory: Path, token: str) -> None:
    """What the kubelet's AtomicWriter does: a new timestamped directory, then ..data renamed over to it."""
    version = directory / f"..{time.time_ns()}"
    version.mkdir()
    (version / "token").write_text(token + "\n")
    (directory / "..data_tmp").symlink_to(version.name)
    os.rename(directory / "..data_tmp", directory / "..data")


# --- commands from a newer or broken control plane ------------------------------------------------


def test_a_command_with_fields_the_agent_does_not_know_is_carried_out(kube, collector, running, caplog):
    agent = running(make_settings(kube, url=collector.url))
    with collector.lock:
        collector.commands.append({"id": 1, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                   "name": "shop.web", "params": {"hard": True}, "priority": "high",
                                   "requested_by": {"user": "ada"}})
    wait_for(lambda: 1 in collector.results, what="the result")
    assert collector.results[1]["ok"] is True
    assert kube.get("applications", "argocd", "shop.web")["metadata"]["annotations"][
        "argocd.argoproj.io/refresh"] == "hard"
    assert "ignoring fields this agent does not know: priority, requested_by" in caplog.text
    assert agent.loop_failures == {}


def test_malformed_commands_are_answered_as_failed_and_the_rest_carried_out(kube, collector, running):
    agent = running(make_settings(kube, url=collector.url))
    with collector.lock:
        collector.commands += [
            {"id": 2, "type": "restart", "kind": "Deployment", "namespace": ["shop"], "name": "web"},
            {"id": 3, "type": "logs", "kind": "Pod", "namespace": "shop", "name": "web-1", "params": "all"},
            {"type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.web"},  # no id
            "restart everything",
            {"id": 4, "type": "refresh", "kind": "Application", "namespace": "argocd", "name": "shop.web"},
        ]
    wait_for(lambda: {2, 3, 4} <= set(collector.results), what="the results")
    assert collector.results[2]["ok"] is False and "namespace must be a string" in collector.results[2]["error"]
    assert collector.results[3]["ok"] is False and "params must be an object" in collector.results[3]["error"]
    assert collector.results[4]["ok"] is True
    assert agent.command_reporter.malformed_commands == 4
    text = generate_latest(metrics_registry(agent)).decode()
    assert "shipyard_agent_malformed_commands_total 4.0" in text
    # the command loop is alive: a later command is carried out too
    with collector.lock:
        collector.commands.append({"id": 5, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                   "name": "shop.web"})
    wait_for(lambda: 5 in collector.results, what="a later result")


def test_a_command_the_agent_fails_on_is_answered_and_the_loop_goes_on(kube, collector, running, monkeypatch):
    agent = running(make_settings(kube, url=collector.url))
    real = agent.executor.refresh
    calls = []

    def broken_once(command):
        calls.append(command.id)
        if len(calls) == 1:
            raise KeyError("metadata")  # e.g. an answer from the API server without what it should have
        return real(command)

    monkeypatch.setattr(agent.executor, "refresh", broken_once)
    with collector.lock:
        collector.commands.append({"id": 6, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                   "name": "shop.web"})
    wait_for(lambda: 6 in collector.results, what="the failed result")
    assert collector.results[6]["ok"] is False and "KeyError" in collector.results[6]["error"]
    with collector.lock:
        collector.commands.append({"id": 7, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                   "name": "shop.web"})
    wait_for(lambda: 7 in collector.results, what="the next result")
    assert collector.results[7]["ok"] is True and agent.loop_failures["commands"] == 1


# --- loops outlive what their steps raise -----------------------------------------------------------


def test_the_report_loop_outlives_an_exception_logs_it_once_and_counts_it(kube, collector, running, caplog,
                                                                          monkeypatch):
    agent = running(make_settings(kube, url=collector.url))
    wait_for(reported(collector, "Healthy"), what="the first snapshot")
    real, failures = agent.reporter.send_pending, []

    def failing(*args, **kwargs):
        if len(failures) < 3:
            failures.append(1)
            raise RuntimeError("a bug in the reporter")
        return real(*args, **kwargs)

    monkeypatch.setattr(agent.reporter, "send_pending", failing)
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Degraded"}}})
    wait_for(reported(collector, "Degraded"), what="the change after the failures")
    assert agent.loop_failures["report"] == 3
    tracebacks = [r for r in caplog.records if r.exc_info and "report loop failed" in r.getMessage()]
    assert len(tracebacks) == 1  # the same failure again is one line, without the traceback
    assert sum("report loop failed again" in r.getMessage() for r in caplog.records) == 2
    text = generate_latest(metrics_registry(agent)).decode()
    assert 'shipyard_agent_loop_failures_total{loop="report"} 3.0' in text


def test_a_watcher_outlives_an_exception_its_step_does_not_expect(kube, collector, running, monkeypatch):
    real, failures = SUMMARIES["Application"], []

    def summary(obj):
        if obj.get("status", {}).get("health", {}).get("status") == "Suspended" and len(failures) < 2:
            failures.append(1)
            raise AttributeError("'str' object has no attribute 'get'")  # an object the summary did not foresee
        return real(obj)

    monkeypatch.setitem(SUMMARIES, "Application", summary)
    agent = running(make_settings(kube, url=collector.url))
    wait_for(reported(collector, "Healthy"), what="the first snapshot")
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Suspended"}}})
    wait_for(reported(collector, "Suspended"), what="the watcher to go on")
    [name] = [loop for loop in agent.loop_failures if loop.startswith("watch Application")]
    assert agent.loop_failures[name] >= 1
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Progressing"}}})
    wait_for(reported(collector, "Progressing"), what="later changes")


# --- the agent token --------------------------------------------------------------------------------


def test_a_rotation_without_grace_is_picked_up_from_the_file_at_once(kube, collector, running, tmp_path):
    """The control plane and the mounted Secret change together; the agent would otherwise wait
    SHIPYARD_UNAUTHORIZED_BACKOFF (an hour here) before reading the file again."""
    token_file = mount_secret(tmp_path / "secret", "agent-token")
    agent = running(make_settings(kube, url=collector.url, token="", token_file=str(token_file),
                                  unauthorized_backoff=3600))
    wait_for(reported(collector, "Healthy"), what="the first snapshot")
    with collector.lock:
        collector.token = "rotated-1"
    swap_secret(tmp_path / "secret", "rotated-1")
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Degraded"}}})
    wait_for(reported(collector, "Degraded"), what="status with the new token")
    # the control plane first, the file later (the kubelet's sync delay): refused, then picked up
    with collector.lock:
        collector.token = "rotated-2"
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Missing"}}})
    wait_for(lambda: agent.token._refused == "rotated-1", what="the refusal")
    swap_secret(tmp_path / "secret", "rotated-2")
    wait_for(reported(collector, "Missing"), what="status after the file changed")
    heartbeats = len(collector.heartbeats)
    wait_for(lambda: len(collector.heartbeats) > heartbeats, what="heartbeats with the new token")
    with collector.lock:
        collector.commands.append({"id": 9, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                   "name": "shop.web"})
    wait_for(lambda: 9 in collector.results, what="commands with the new token")


def test_an_unreadable_token_file_stops_no_loop(kube, collector, running, tmp_path, caplog):
    token_file = tmp_path / "token"
    token_file.write_text("agent-token\n")
    agent = running(make_settings(kube, url=collector.url, token="", token_file=str(token_file),
                                  unauthorized_backoff=3600))
    wait_for(reported(collector, "Healthy"), what="the first snapshot")
    with collector.lock:
        collector.token = "rotated"
    token_file.unlink()  # a Secret volume being remounted; a mistyped key
    kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": "Degraded"}}})
    wait_for(lambda: agent.token._refused == "agent-token", what="the refusal")
    wait_for(lambda: "cannot read the agent token" in caplog.text, what="the log")
    token_file.write_text("rotated\n")
    wait_for(reported(collector, "Degraded"), what="status once the file is back")
    with collector.lock:
        collector.commands.append({"id": 10, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                   "name": "shop.web"})
    wait_for(lambda: 10 in collector.results, what="commands once the file is back")
    assert all(thread.is_alive() for thread in agent._threads)
    assert sum("cannot read the agent token" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_the_token_file_is_read_again_only_when_it_changed(tmp_path):
    secret = tmp_path / "secret"
    token = AgentToken(path=str(mount_secret(secret, "one")))
    assert token() == "one" and token() == "one" and token.rereads == 0
    swap_secret(secret, "two")
    assert token() == "two" and token.rereads == 1
    token.refused("two")
    assert token.retry_in() > 0  # the same token: wait, do not hammer the control plane with it
    swap_secret(secret, "three")
    assert token.retry_in() == 0 and token() == "three"


# --- liveness ---------------------------------------------------------------------------------------


def test_a_loop_is_stuck_only_past_its_budget_after_a_step_or_a_wait():
    now = [0.0]
    liveness = Liveness(clock=lambda: now[0])
    report = liveness.track("report", budget=120)
    report.waiting(3600)  # a long backoff (an outage, a Retry-After) is waiting, not stuck
    now[0] = 3600 + 119
    assert liveness.stuck() == []
    report.advanced()  # a step started
    now[0] += 119
    assert liveness.stuck() == []
    now[0] += 2
    assert [name for name, _ in liveness.stuck()] == ["report"]


def test_livez_stays_up_through_an_outage_and_fails_on_a_stuck_loop(kube, collector, running, monkeypatch):
    agent = running(make_settings(kube, url=collector.url))
    get, server = health(agent)
    try:
        for progress in agent.progress.values():
            progress.budget = 3.0  # far below the real budgets, far above a step against loopback
        wait_for(reported(collector, "Healthy"), what="the first snapshot")
        assert get("/livez") == (200, "ok\n")
        assert "shipyard_agent_followed_objects 1.0" in get("/metrics")[1]  # readiness: unchanged
        collector.stop()  # an outage longer than the budgets: every loop keeps retrying
        outage_ends = time.monotonic() + 8
        while time.monotonic() < outage_ends:
            assert get("/livez")[0] == 200
            time.sleep(0.2)
        collector.start()
        release = threading.Event()
        real = agent.executor.refresh
        monkeypatch.setattr(agent.executor, "refresh", lambda command: release.wait() and real(command))
        with collector.lock:
            collector.commands.append({"id": 11, "type": "refresh", "kind": "Application", "namespace": "argocd",
                                       "name": "shop.web"})
        wait_for(lambda: get("/livez")[0] == 503, what="liveness to fail")
        status, body = get("/livez")
        assert status == 503 and body.startswith("stuck: commands")
        release.set()
        wait_for(lambda: 11 in collector.results, what="the command to end")
        wait_for(lambda: get("/livez")[0] == 200, what="liveness to recover")
    finally:
        server.shutdown()
