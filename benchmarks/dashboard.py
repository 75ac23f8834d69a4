"""What the dashboard costs the server, and how fast an open page shows a change: each against its JSON API peer.

What it measures
    One control plane (``shipyard serve``: gunicorn gthread workers over
    ``webapp.create_app``, 2 workers x 8 threads, the serve default) on a
    throwaway PostgreSQL server (tests/pgserver.py), holding one cluster
    (the demo profile) of 10,000 apps in 200 workspaces. The cluster,
    workspaces and apps are seeded by ``status_ingest.seed`` (the API for
    the cluster and workspaces, bulk inserts for the apps and a committed
    Version each); then, in bulk, an AppStatus per app with a mix of states
    (mostly Healthy; some Progressing, Degraded, Suspended, Missing, failed
    syncs; 3% never reported), 100,000 StatusEvents (10 or 11 per reported
    app) and what the agent would hold for each reported app (its ArgoCD
    Application, Deployment, 3 Pods and an Event: about 58,000
    ClusterObject rows, reduced by the agent's own ``agent.summaries``),
    then ``ANALYZE`` (the statistics autovacuum would gather soon after
    such a load; without them the planner chose plans that made the
    overview 5x slower). One
    app, ``probe``, is deployed through ``PUT /api/v1/apps`` three times
    (three real commits) and its Application, Deployment, Pods and eight
    Kubernetes Events are reported through the agent protocol by the real
    reporter (``agent.report.Reporter`` over httpx, as the agent and the
    simulated cluster report); this process plays that cluster's agent
    throughout, with a heartbeat every 15 s. Pages are read as a local user
    with a tenant-admin role binding, logged in through ``POST /login``
    with the login form's CSRF token; API calls carry a tenant-admin token.

    server    Sequential GETs over loopback (httpx, keep-alive), peers taking
              turns round by round (``timing.interleave``): the overview
              ``/``, the apps table ``/apps`` (first page) and
              ``/apps?health=Degraded``, the probe's page; and the JSON API
              calls that read the same data: ``/api/v1/clusters/demo/status``,
              ``/api/v1/apps?limit=50``, ``/api/v1/apps/demo/<ws>/probe/status``.
              Each call is timed by the client and by the server itself (the
              ``ms`` of its request log line: from before_request to
              after_request). Printed: median and p95 (goal: every page's p95
              under 100 ms) and the ratios page / API.
    latency   Debian's chromium (Playwright, sync API) logged in through the
              form, with the probe's page open. A MutationObserver on the
              page's ``<main>`` (the live script replaces the status region
              ``#app-status`` itself, so its parent is observed) records
              ``Date.now()`` when the health badge shows a new word. Each
              change flips the probe's Application Healthy <-> Degraded
              through the reporter; ``time.time()`` (the same clock) is taken
              when the report is sent. Changes are spaced randomly 1-3 s.
              Peer, watching the same changes: a client polling
              ``GET /api/v1/apps/demo/<ws>/probe/status`` (a new request 100 ms
              after each answer). Printed: p50/p95/max of both (goal: the
              page's p95 under 2 s).
    cost      1,000 open pages in a separate client process (aiohttp, one
              keep-alive connection per page), each doing what
              ``webapp/static/dashboard.js`` does: ``GET /live?t=<ticket>&
              seen=<fingerprint>`` every DASHBOARD_POLL_SECONDS (1 s) jittered
              by 0.8-1.2x, and on a 200 or 401 a GET of the page itself (with
              ``X-Live: 1`` and the session cookie), taking its new ticket and
              fingerprint from ``<meta name="live-ticket">`` and
              ``live-fingerprint``. Tickets are real: the pages are 10 each of
              100 apps (the probe and 99 across the workspaces) whose pages
              this process fetched once, logged in. Meanwhile a trickle of
              real changes: a status report of one of those apps every
              ``--change-every`` seconds on average (uniformly 0.5-1.5x).
              Peer: the same 1,000 clients polling the same apps'
              ``GET /api/v1/apps/demo/<ws>/<app>/status`` every second
              (same jitter) with an API token. The peers take turns in
              windows (live, api, api, live, each half of ``--seconds``;
              quick: live, api), each after 5 s of warm-up. Printed per peer:
              the server's CPU (utime + stime of the gunicorn master and
              workers from /proc, as % of one core), its CPU per poll
              answered (for the pages with the page GETs that followed),
              PostgreSQL's CPU and the client process's, polls answered per
              second, p50/p95 of the answer times, the share of 204s and the
              page GETs that followed (rate, p50/p95); the server's threads
              before the clients and at most while they were open, and its
              established connections (in all, and the most in one worker);
              and the ratios live / API. Each client waits for its answer
              before its next poll, so a server out of CPU answers fewer than
              the 1,000 polls a second asked for: read the rate beside the
              times.

    gunicorn's gthread worker holds at most ``worker_connections``
    (``shipyard serve --connections``, 4000 by default) connections and keeps at
    most ``worker_connections - threads`` idle keep-alive connections per
    worker, closing the rest after their answer. The script prints what the
    chosen ``--server`` holds and refuses to start the cost measurement when
    ``--pages`` cannot fit.

How
    No assertions: numbers to read. The server's request log (JSON lines)
    gives the server-side times; /proc gives CPU (children included, as
    ``api_deploys.cpu_seconds`` counts it), threads (``Threads:`` of each
    process) and connections (``/proc/net/tcp``). Everything listens on
    127.0.0.1 and lives in a temporary directory removed at the end.

Run: ``.venv/bin/python benchmarks/dashboard.py [--quick] [--seconds N] [--pages N] [--only server|latency|cost]
[--rounds N] [--changes N] [--change-every S] [--server WxT]``
(defaults: 60 rounds, 40 changes, 60 s per cost peer, about 6 minutes;
``--quick``: 10 rounds, 10 changes, 10 s per cost peer, about 2 minutes, a
third of it seeding; ``--change-every 0``: open pages with nothing changing.)
Needs the PostgreSQL server binaries, Debian's chromium and the ``test`` and
``bench`` extras (Playwright, aiohttp), as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import html
import importlib.util
import json
import logging
import os
import platform
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import synthetic
from api_deploys import Server, cpu_seconds, serve, tree_cpu_seconds
from status_ingest import (
    ARGOCD_NAMESPACE,
    CLUSTER,
    PODS_PER_APP,
    application_object,
    deployment_object,
    open_plane,
    pod_name,
    pod_object,
    seed,
)
from status_latency import percentile
from synthetic import ROOT
from timing import interleave, ratio

sys.path.insert(0, str(ROOT / "tests"))  # tests/pgserver.py: the throwaway PostgreSQL server

from agent import summaries  # noqa: E402
from agent.report import Outbox, Reporter, Tracker  # noqa: E402
from contract.protocol import Heartbeat, digest_of  # noqa: E402
from contract.repository import application_name  # noqa: E402

APPS = 10_000
STATUS_EVENTS = 100_000
PROBE = "probe"
PROBE_WORKSPACE = synthetic.workspace_name(0)
PROBE_VERSIONS = 3
USER = "dashboard"
WATCHED = 100  # apps with open pages in the cost measurement (the probe among them)
HEARTBEAT_SECONDS = 15.0
API_POLL_PAUSE = 0.1  # the latency peer: seconds between a status answer and the next request
WARMUP_SECONDS = 5.0
QUIET_AFTER = 60.0  # dashboard.js: seconds without a change after which a page asks a third as often
CHROMIUM = "/usr/bin/chromium"
COOKIE_ENV = "SHIPYARD_BENCH_COOKIE"  # how the client process gets the session and the token (never argv)
TOKEN_ENV = "SHIPYARD_BENCH_TOKEN"
# Defaults of the command line, (full run, --quick).
ROUNDS = (60, 10)
CHANGES = (40, 10)
SECONDS = (60, 10)
PAGES = 1000
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
META = {name: re.compile(rf'<meta name="{name}" content="([^"]*)">')
        for name in ("live-ticket", "live-fingerprint", "live-poll")}

# The apps' states: (share, name, ArgoCD sync, health, sync operation phase). The rest were never reported.
MIX = (
    (0.80, "healthy", "Synced", "Healthy", "Succeeded"),
    (0.07, "progressing", "Synced", "Progressing", "Succeeded"),
    (0.04, "degraded", "Synced", "Degraded", "Succeeded"),
    (0.03, "sync failed", "OutOfSync", "Healthy", "Failed"),
    (0.02, "suspended", "Synced", "Suspended", "Succeeded"),
    (0.01, "missing", "OutOfSync", "Missing", "Succeeded"),
)
NOT_REPORTED = "not reported"


# --- the cluster's objects, as the agent reduces them ----------------------------------------------


def application_state(workspace: str, app: str, revision: str, sync: str = "Synced", health: str = "Healthy",
                      operation: str = "Succeeded") -> dict:
    obj = application_object(workspace, app, revision, health, sync)
    obj["status"]["operationState"]["phase"] = operation
    if operation == "Failed":
        obj["status"]["operationState"]["message"] = "one or more objects failed to apply (dry run)"
    return summaries.application(obj)


def event_state(kind: str, name: str, reason: str, message: str, at: datetime.datetime,
                warning: bool = False, count: int = 1) -> dict:
    return summaries.event({"type": "Warning" if warning else "Normal", "reason": reason, "message": message,
                            "involvedObject": {"kind": kind, "name": name}, "count": count,
                            "lastTimestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")})


def probe_events(now: datetime.datetime) -> list[tuple[str, dict]]:
    """Eight Events of the probe's objects, as a rollout leaves them: (event name, compact state)."""
    replicaset = f"{PROBE}-7d9f6c5b8"
    events = [("Deployment", PROBE, "ScalingReplicaSet", f"Scaled up replica set {replicaset} to 3"),
              ("ReplicaSet", replicaset, "SuccessfulCreate", f"Created pod: {pod_name(PROBE, 0)}")]
    for replica in range(PODS_PER_APP):
        pod = pod_name(PROBE, replica)
        events.append(("Pod", pod, "Scheduled", f"Successfully assigned {PROBE_WORKSPACE}/{pod} to node-{replica}"))
        events.append(("Pod", pod, "Started", f"Started container {PROBE}"))
    out = []
    for index, (kind, name, reason, message) in enumerate(events):
        at = now - datetime.timedelta(seconds=60 * (len(events) - index))
        out.append((f"{name}.{index:016x}", event_state(kind, name, reason, message, at)))
    return out


class Agent:
    """The cluster's agent, played by this process: the real reporter over HTTP, and a heartbeat every 15 s."""

    def __init__(self, url: str, tenant: str, token: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=60)
        self.reporter = Reporter(self.http, tenant, CLUSTER, token, Tracker(), Outbox())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def observe(self, kind: str, namespace: str, name: str, state: dict | None) -> None:
        delta = self.reporter.tracker.observe(kind, namespace, name, state)
        if delta is not None:
            self.reporter.outbox.put(delta)

    def send(self) -> float:
        """Send what is pending; returns ``time.time()`` when it was sent."""
        with self._lock:
            sent = time.time()
            self.reporter.send_pending()
        return sent

    def heartbeat(self) -> None:
        with self._lock:
            self.reporter.heartbeat(Heartbeat("bench", "1.33", simulated=True, objects=len(self.reporter.tracker)))

    def report_application(self, workspace: str, app: str, revision: str, health: str) -> float:
        """An Application's new health through the agent protocol; ``time.time()`` when the report was sent."""
        self.observe("Application", ARGOCD_NAMESPACE, application_name(workspace, app),
                     application_state(workspace, app, revision, health=health))
        return self.send()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.heartbeat()

    def start(self, probe_revision: str) -> None:
        """Heartbeat, then a snapshot holding the probe's objects (the stream the seeded rows join)."""
        now = datetime.datetime.now(datetime.UTC)
        self.observe("Application", ARGOCD_NAMESPACE, application_name(PROBE_WORKSPACE, PROBE),
                     application_state(PROBE_WORKSPACE, PROBE, probe_revision))
        self.observe("Deployment", PROBE_WORKSPACE, PROBE,
                     summaries.deployment(deployment_object(PROBE_WORKSPACE, PROBE, PROBE_VERSIONS, 3)))
        for replica in range(PODS_PER_APP):
            self.observe("Pod", PROBE_WORKSPACE, pod_name(PROBE, replica),
                         summaries.pod(pod_object(PROBE_WORKSPACE, PROBE, replica, 2 if replica == 1 else 0, True)))
        for name, state in probe_events(now):
            self.observe("Event", PROBE_WORKSPACE, name, state)
        self.heartbeat()
        self.send()
        self._thread.start()

    @property
    def stream(self) -> str:
        return self.reporter.stream

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.http.close()


# --- a seeded control plane --------------------------------------------------------------------------


@dataclass
class Plane:
    database_url: str
    data_dir: Path
    admin_token: str
    agent_token: str
    tenant: str
    revision: str  # the commit of every background app's Version 1
    probe_revision: str  # the commit of the probe's newest version
    password: str
    mix: Counter = field(default_factory=Counter)
    status_events: int = 0
    objects: int = 0


def deploy_probe(app, token: str) -> str:
    """The probe, deployed PROBE_VERSIONS times through ``PUT /api/v1/apps`` (each a commit); the last commit."""
    client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
    commit = None
    for number in range(PROBE_VERSIONS):
        text = synthetic.spec_text(PROBE, PROBE_WORKSPACE, f"1.{number}.0", "web")
        response = client.put("/api/v1/apps", headers=headers, data=text, content_type="application/yaml")
        if response.status_code not in (200, 202):
            raise SystemExit(f"cannot deploy the probe: {response.status_code} {response.get_data(as_text=True)}")
        (version,) = response.get_json()["versions"]
        if version["state"] != "committed" or not version["commit"]:
            raise SystemExit(f"the probe's version {version['number']} was not committed: {version}")
        commit = version["commit"]
    return commit


def add_user(app, password: str) -> None:
    from sqlalchemy import select

    from gitops import accounts
    from gitops.models import RoleBinding, Tenant

    with app.extensions["shipyard"].sessions.begin() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == app.config["TENANT"]))
        accounts.create_local_user(session, tenant, USER, password)
        session.add(RoleBinding(tenant_id=tenant.id, role="tenant-admin", subject_kind="user", subject=USER))


def seed_plane(postgres, root: Path) -> tuple[Plane, object]:
    """The database, the cluster, 10,000 apps, the probe's versions and the user; (plane, an open app)."""
    database_url = postgres.create_database("shipyard_dashboard")
    data_dir = root / "data"
    seeded = seed(database_url, data_dir, APPS, 0, deploy_commits=False)
    app = open_plane(database_url, data_dir)
    probe_revision = deploy_probe(app, seeded.admin_token)
    password = secrets.token_urlsafe(24)
    add_user(app, password)
    return Plane(database_url, data_dir, seeded.admin_token, seeded.agent_token, seeded.tenant, seeded.deploys[0],
                 probe_revision, password), app


def pick_look(rng: random.Random) -> tuple:
    draw = rng.random()
    for look in MIX:
        if draw < look[0]:
            return look
        draw -= look[0]
    return (0.0, NOT_REPORTED, None, None, None)


def seed_status(app, plane: Plane, stream: str, rng: random.Random) -> None:
    """In bulk: every background app's AppStatus, history and cluster objects, on the agent's stream."""
    from sqlalchemy import select, text

    from gitops.db import insert_many
    from gitops.models import Application, AppStatus, Cluster, ClusterObject, StatusEvent, Workspace, utcnow

    now = utcnow()
    statuses, events, objects = [], [], []
    with app.extensions["shipyard"].sessions.begin() as session:
        rows = session.execute(select(Application.id, Workspace.name, Application.name)
                               .join(Workspace, Application.workspace_id == Workspace.id)
                               .where(Application.name != PROBE).order_by(Application.id)).all()
        looks = [pick_look(rng) for _ in rows]
        reported = [i for i, look in enumerate(looks) if look[1] != NOT_REPORTED]
        per_app, extra = divmod(STATUS_EVENTS, len(reported))
        for order, index in enumerate(reported):
            app_id, workspace, name = rows[index]
            _, label, sync, health, operation = looks[index]
            state = application_state(workspace, name, plane.revision, sync, health, operation)
            updated = now - datetime.timedelta(minutes=rng.uniform(1, 600))
            history = per_app + (order < extra)
            statuses.append({"application_id": app_id, "sync": state["sync"], "health": state["health"],
                             "operation": state["operation"], "revision": state["revision"],
                             "synced_revision": plane.revision, "message": state["message"], "live_version": 1,
                             "events": history, "updated_at": updated})
            for step in range(history):  # alternating rollouts, ending in the state reported now
                last = step == history - 1
                events.append({"application_id": app_id, "at": updated - datetime.timedelta(hours=history - 1 - step),
                               "sync": state["sync"] if last else "Synced",
                               "health": state["health"] if last else ("Progressing", "Healthy")[step % 2],
                               "revision": plane.revision, "message": state["message"] if last else None})
            objects += background_objects(workspace, name, state, health, updated)
            plane.mix[label] += 1
        plane.mix[NOT_REPORTED] = len(rows) - len(reported)
        cluster_id = session.scalar(select(Cluster.id).where(Cluster.name == CLUSTER))
        connection = session.connection()
        for table, batch in ((AppStatus.__table__, statuses), (StatusEvent.__table__, events)):
            for start in range(0, len(batch), 5000):
                insert_many(connection, table, batch[start:start + 5000])
        for start in range(0, len(objects), 5000):
            insert_many(connection, ClusterObject.__table__, objects[start:start + 5000],
                        common={"cluster_id": cluster_id, "stream": stream, "updated_at": now})
    plane.status_events, plane.objects = len(events), len(objects)
    with app.extensions["shipyard"].engine.connect() as connection:
        # the statistics autovacuum would gather within a minute or so of the bulk load, now
        connection.execute(text("ANALYZE"))
        connection.commit()


def background_objects(workspace: str, app: str, application: dict, health: str,
                       at: datetime.datetime) -> list[dict]:
    """The ClusterObject rows the agent would hold for one app: Application, Deployment, Pods, an Event."""
    degraded = health == "Degraded"
    ready = 2 if degraded else 3
    states = [("Application", ARGOCD_NAMESPACE, application_name(workspace, app), application),
              ("Deployment", workspace, app, summaries.deployment(deployment_object(workspace, app, 1, ready)))]
    for replica in range(PODS_PER_APP):
        crashing = degraded and replica == 0
        pod = pod_object(workspace, app, replica, 7 if crashing else 0, not crashing,
                         "CrashLoopBackOff" if crashing else None)
        states.append(("Pod", workspace, pod_name(app, replica), summaries.pod(pod)))
    if degraded:
        event = event_state("Pod", pod_name(app, 0), "BackOff", "Back-off restarting failed container", at,
                            warning=True, count=7)
    else:
        event = event_state("Deployment", app, "ScalingReplicaSet", f"Scaled up replica set {app}-7d9f6c5b8 to 3", at)
    states.append(("Event", workspace, f"{app}.{digest_of(event)[:16]}", event))
    return [{"kind": kind, "namespace": namespace, "name": name, "state": state, "digest": digest_of(state)}
            for kind, namespace, name, state in states]


# --- logged in, over HTTP ----------------------------------------------------------------------------


def login(http, password: str) -> None:
    """Log in through the form as USER, with the form's CSRF token; the client keeps the session cookie."""
    form = http.get("/login")
    match = CSRF_INPUT.search(form.text)
    if form.status_code != 200 or not match:
        raise SystemExit(f"GET /login answered {form.status_code} without a CSRF token")
    response = http.post("/login", data={"username": USER, "password": password, "csrf_token": match.group(1)})
    if response.status_code != 302 or response.headers.get("location", "").endswith("/login"):
        raise SystemExit(f"POST /login answered {response.status_code}: the user could not log in")


def live_meta(page: str) -> dict[str, str]:
    found = {name: pattern.search(page) for name, pattern in META.items()}
    return {name: html.unescape(match.group(1)) for name, match in found.items() if match}


def app_path(workspace: str, app: str) -> str:
    return f"/apps/{CLUSTER}/{workspace}/{app}"


def status_path(workspace: str, app: str) -> str:
    return f"/api/v1/apps/{CLUSTER}/{workspace}/{app}/status"


# --- server time ------------------------------------------------------------------------------------------


PAGE_PEERS = {
    "page GET /": "/",
    "page GET /apps": "/apps",
    "page GET /apps?health=Degraded": "/apps?health=Degraded",
    "page GET /apps/demo/<ws>/probe": app_path(PROBE_WORKSPACE, PROBE),
}
API_PEERS = {
    "API GET /api/v1/clusters/demo/status": f"/api/v1/clusters/{CLUSTER}/status",
    "API GET /api/v1/apps?limit=50": "/api/v1/apps?limit=50",
    "API GET .../probe/status": status_path(PROBE_WORKSPACE, PROBE),
}
PAIRS = (("page GET /", "API GET /api/v1/clusters/demo/status"),
         ("page GET /apps", "API GET /api/v1/apps?limit=50"),
         ("page GET /apps?health=Degraded", "API GET /api/v1/apps?limit=50"),
         ("page GET /apps/demo/<ws>/probe", "API GET .../probe/status"))


def check_pages(pages, api) -> None:
    """The pages measured show what they should, or the figures mean nothing."""
    expected = {
        "/": [CLUSTER, "Degraded"],
        "/apps": [f"{APPS + 1} apps", synthetic.app_name(0)],
        "/apps?health=Degraded": ["Degraded"],
        app_path(PROBE_WORKSPACE, PROBE): [pod_name(PROBE, 2), "ScalingReplicaSet", "Scheduled", f"v{PROBE_VERSIONS}",
                                           "Healthy", "Deployment: 3/3 ready"],
    }
    for path, words in expected.items():
        response = pages.get(path)
        missing = [w for w in words if w not in response.text]
        if response.status_code != 200 or missing:
            raise SystemExit(f"GET {path} answered {response.status_code}, without {missing}: the page is not "
                             "what this benchmark means to measure")
    for path in API_PEERS.values():
        response = api.get(path)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}: {response.text[:300]}")


def request_log(log_path: Path, offset: int) -> list[tuple[str, float]]:
    """(path, server ms) of each request the server logged after ``offset`` bytes of its log, in order."""
    out = []
    with open(log_path, "rb") as log:
        log.seek(offset)
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # gunicorn's own lines
            if isinstance(entry, dict) and entry.get("message") == "request":
                out.append((entry.get("path"), float(entry.get("ms", 0.0))))
    return out


def measure_server(server: Server, plane: Plane, rounds: int) -> None:
    import httpx

    print(f"\n== server: {len(PAGE_PEERS)} pages and {len(API_PEERS)} API calls, {rounds} rounds (+1 warm-up), "
          "interleaved, sequential over loopback ==", flush=True)
    pages = httpx.Client(base_url=server.url, timeout=60)
    api = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {plane.admin_token}"})
    try:
        login(pages, plane.password)
        check_pages(pages, api)
        calls: list[tuple[str, int]] = []

        def peer(name: str, client, path: str):
            def get(round_index: int) -> None:
                calls.append((name, round_index))
                response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"GET {path} answered {response.status_code}")
            return get

        peers = {name: peer(name, pages, path) for name, path in PAGE_PEERS.items()}
        peers |= {name: peer(name, api, path) for name, path in API_PEERS.items()}
        paths = {**PAGE_PEERS, **API_PEERS}
        offset = server.log_path.stat().st_size
        samples = interleave(peers, rounds, warmup=1)
    finally:
        pages.close()
        api.close()

    measured = {path.split("?")[0] for path in paths.values()}
    logged = [(path, ms) for path, ms in request_log(server.log_path, offset) if path in measured]
    server_ms: dict[str, list[float]] = {name: [] for name in peers}
    if [path for path, _ in logged] == [paths[name].split("?")[0] for name, _ in calls]:
        for (name, round_index), (_, ms) in zip(calls, logged):
            if round_index >= 1:
                server_ms[name].append(ms)
    else:
        print(f"WARNING: the server's request log ({len(logged)} lines) does not match the {len(calls)} calls; "
              "server-side times left out")
    print(f"{'':<40} {'client (loopback)':>24}   {'server (its request log)':>26}")
    print(f"{'':<40} {'median':>11} {'p95':>11}   {'median':>12} {'p95':>12}")
    for name, sample in samples.items():
        ms = server_ms[name]
        server_text = f"{statistics.median(ms):9.1f} ms {percentile(ms, 95):9.1f} ms" if ms else f"{'n/a':>26}"
        print(f"{name:<40} {sample.median * 1e3:8.1f} ms {percentile(sample.seconds, 95) * 1e3:8.1f} ms   "
              f"{server_text}")
    print()
    for page_name, api_name in PAIRS:
        client_ratio = ratio(samples[page_name].median, samples[api_name].median)
        server_ratio = (ratio(statistics.median(server_ms[page_name]), statistics.median(server_ms[api_name]))
                        if server_ms[page_name] and server_ms[api_name] else "n/a")
        print(f"{page_name} / {api_name}: {client_ratio} (client medians), {server_ratio} (server)")
    worst = max(percentile(samples[name].seconds, 95) for name in PAGE_PEERS)
    print(f"slowest page p95 {worst * 1e3:.0f} ms over loopback (goal: under 100 ms: "
          f"{'met' if worst < 0.1 else 'not met'})")


# --- from a change in the cluster to an open page ---------------------------------------------------------


OBSERVER_JS = """() => {
  const word = () => {
    const badge = document.querySelector("#app-status .badge.big");
    return badge ? badge.textContent.trim() : null;
  };
  const seen = [{ word: word(), at: Date.now() }];
  new MutationObserver(() => {
    const now = word();
    if (now !== seen[seen.length - 1].word) seen.push({ word: now, at: Date.now() });
  }).observe(document.getElementById("main"), { childList: true, subtree: true, characterData: true });
  window.benchSeen = seen;
}"""
SEEN_JS = "([word, since]) => (window.benchSeen.find((s) => s.word === word && s.at >= since) || {}).at || null"


class StatusPoller:
    """The peer: a client polling the JSON status API, a new request API_POLL_PAUSE after each answer."""

    def __init__(self, url: str, token: str, path: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        self.path = path
        self.seen: list[tuple[float, str | None]] = []  # (time.time() of the answer, health) at each change
        self.answers: list[float] = []
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-poller", daemon=True)

    def _run(self) -> None:
        import httpx

        while not self._stop.is_set():
            asked = time.perf_counter()
            try:
                response = self.http.get(self.path)
            except httpx.HTTPError as exc:
                self.failure = f"GET {self.path} failed: {type(exc).__name__}: {exc}"
                return
            at = time.time()
            self.answers.append(time.perf_counter() - asked)
            if response.status_code != 200:
                self.failure = f"GET {self.path} answered {response.status_code}"
                return
            health = response.json().get("health")
            if not self.seen or self.seen[-1][1] != health:
                self.seen.append((at, health))
            self._stop.wait(API_POLL_PAUSE)

    def first(self, health: str, since: float) -> float | None:
        return next((at for at, seen in self.seen if seen == health and at >= since), None)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)
        self.http.close()


def measure_latency(server: Server, plane: Plane, agent: Agent, changes: int, rng: random.Random) -> None:
    from playwright.sync_api import sync_playwright

    print(f"\n== latency: {changes} changes of the probe's health, 1-3 s apart, to an open page in chromium and to "
          f"a client polling the status API every {API_POLL_PAUSE * 1e3:.0f} ms ==", flush=True)
    page_seconds, api_seconds, sends = [], [], []
    with sync_playwright() as playwright, StatusPoller(server.url, plane.admin_token,
                                                       status_path(PROBE_WORKSPACE, PROBE)) as poller:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(base_url=server.url)
            page = context.new_page()
            page.goto("/login")
            page.get_by_label("Username").fill(USER)
            page.get_by_label("Password").fill(plane.password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(lambda url: not url.split("?")[0].endswith("/login"))
            page.goto(app_path(PROBE_WORKSPACE, PROBE))
            page.wait_for_selector("meta[name=live-ticket]", state="attached")
            page.evaluate(OBSERVER_JS)
            health = "Healthy"
            for index in range(changes):
                time.sleep(rng.uniform(1.0, 3.0))
                health = "Degraded" if health == "Healthy" else "Healthy"
                started = time.perf_counter()
                sent = agent.report_application(PROBE_WORKSPACE, PROBE, plane.probe_revision, health)
                sends.append(time.perf_counter() - started)
                since = int(sent * 1000)
                page.wait_for_function(f"([word, since]) => ({SEEN_JS})([word, since]) !== null",
                                       arg=[health, since], timeout=30_000)
                shown = page.evaluate(SEEN_JS, [health, since])
                deadline = time.monotonic() + 30
                while poller.first(health, sent) is None:
                    if poller.failure or time.monotonic() > deadline:
                        raise SystemExit(f"change {index}: {poller.failure or 'the status API never showed it'}")
                    time.sleep(0.01)
                page_seconds.append(shown / 1000 - sent)
                api_seconds.append(poller.first(health, sent) - sent)
        finally:
            browser.close()

    def row(label: str, values: list[float]) -> str:
        return (f"  {label:<52} {percentile(values, 50) * 1e3:6.0f} ms {percentile(values, 95) * 1e3:6.0f} ms "
                f"{max(values) * 1e3:6.0f} ms {min(values) * 1e3:6.0f} ms")

    print(f"  {'report sent -> shown (n=' + str(changes) + ')':<52} {'p50':>9} {'p95':>9} {'max':>9} {'min':>9}")
    print(row("open page in chromium (MutationObserver)", page_seconds))
    print(row(f"status API polled every {API_POLL_PAUSE * 1e3:.0f} ms", api_seconds))
    print(f"page / API: p50 {ratio(percentile(page_seconds, 50), percentile(api_seconds, 50))}, "
          f"p95 {ratio(percentile(page_seconds, 95), percentile(api_seconds, 95))}; the page's p95 "
          f"{percentile(page_seconds, 95) * 1e3:.0f} ms (goal: under 2,000 ms: "
          f"{'met' if percentile(page_seconds, 95) < 2 else 'not met'})")
    print(f"  the report itself (POST .../status, ingested when it answers): median "
          f"{statistics.median(sends) * 1e3:.0f} ms; status API answers while polling: median "
          f"{statistics.median(poller.answers) * 1e3:.1f} ms")


# --- what open pages cost the server -----------------------------------------------------------------------


async def open_pages(url: str, command: dict, cookie: str, token: str) -> dict:
    """``command["pages"]`` open pages (or status pollers) for a warm-up and a measured window; what they saw.

    Writes ``{"event": "measuring"}`` and ``{"event": "ended"}`` on stdout when the measured
    window starts and ends, so the caller's CPU readings match it; the result follows once every
    request in flight has its answer.
    """
    import aiohttp

    live = command["mode"] == "live"
    every, targets = command["poll"], command["targets"]
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + command["warmup"]
    until = measure_from + command["seconds"]
    rng = random.Random(command["seed"])
    answers: list[float] = []
    followups: list[float] = []
    codes: Counter = Counter()
    errors: list[str] = []
    connections = 0

    async def connected(_session, _context, _params) -> None:
        nonlocal connections
        connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(connected)
    timeout = aiohttp.ClientTimeout(total=60)

    async def page(index: int) -> None:
        target = dict(targets[index % len(targets)])
        headers = {"Cookie": cookie} if live else {"Authorization": f"Bearer {token}"}
        failures = 0
        async with aiohttp.ClientSession(url, headers=headers, timeout=timeout, trace_configs=[trace],
                                         connector=aiohttp.TCPConnector(limit=1),
                                         cookie_jar=aiohttp.DummyCookieJar()) as session:
            await asyncio.sleep(rng.uniform(0, every))  # the pages were opened over a poll interval
            changed = loop.time()  # dashboard.js: a page asks every `every` for a minute after it opened or
            while True:            # last saw a change, then three times as far apart
                pause = every if loop.time() - changed < QUIET_AFTER else every * 3
                # dashboard.js: the next poll pause * (0.8-1.2) after the answer, longer after failures
                await asyncio.sleep(pause * (0.8 + rng.random() * 0.4) * min(1 + failures, 10))
                asked = loop.time()
                if asked >= until:
                    return
                counted = asked >= measure_from
                try:
                    if live:
                        query = {"t": target["ticket"], "seen": target["fingerprint"]}
                        async with session.get("/live", params=query) as response:
                            await response.read()
                            status = response.status
                    else:
                        async with session.get(target["status"]) as response:
                            await response.read()
                            status = response.status
                    answered = loop.time()
                    if counted:
                        answers.append(answered - asked)
                        codes[status] += 1
                    failures = 0
                    if live and status == 200:
                        changed = loop.time()
                    if live and status in (200, 401):
                        async with session.get(target["page"], headers={"X-Live": "1"}) as response:
                            text = await response.text()
                            if response.status == 200:
                                meta = live_meta(text)
                                target["ticket"] = meta.get("live-ticket", target["ticket"])
                                target["fingerprint"] = meta.get("live-fingerprint", target["fingerprint"])
                        if counted:
                            followups.append(loop.time() - answered)
                            codes[f"page {response.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures += 1
                    codes["error" if counted else "error in warm-up"] += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")

    async def announce() -> None:
        for event, at in (("measuring", measure_from), ("ended", until)):
            await asyncio.sleep(max(0.0, at - loop.time()))
            sys.stdout.write(json.dumps({"event": event}) + "\n")
            sys.stdout.flush()

    await asyncio.gather(announce(), *(page(i) for i in range(command["pages"])))
    return {"answers": answers, "followups": followups, "codes": dict(codes), "errors": errors,
            "connections": connections, "seconds": command["seconds"]}


def pages_client_main(url: str) -> None:
    """The client process: serve commands from stdin (one JSON object a line), answering on stdout.

    A process of its own so the 1,000 clients' work shares no GIL with this script's
    samplers and reporter; aiohttp for the reason api_deploys.py gives (little CPU per request).
    """
    cookie, token = os.environ[COOKIE_ENV], os.environ[TOKEN_ENV]
    for line in sys.stdin:
        result = asyncio.run(open_pages(url, json.loads(line), cookie, token))
        sys.stdout.write(json.dumps({"event": "result", **result}) + "\n")
        sys.stdout.flush()


class PagesClient:
    """The client process, and the events it reports."""

    def __init__(self, server: Server, cookie: str, token: str):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--pages-client", server.url],
            env={**os.environ, COOKIE_ENV: cookie, TOKEN_ENV: token},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def start(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def next_event(self, expected: str) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the client process died")
        event = json.loads(line)
        if event["event"] != expected:
            raise SystemExit(f"the client process said {event['event']!r}, not {expected!r}")
        return event

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def thread_count(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def server_sockets(port: int) -> set[str]:
    """Inodes of the established TCP connections whose local end is ``port`` (the server's side of each)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def connections_by_process(pids: list[int], port: int) -> list[int]:
    """How many of those connections each process holds open."""
    inodes = server_sockets(port)
    counts = []
    for pid in pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                held += target.startswith("socket:[") and target[8:-1] in inodes
        except OSError:
            pass
        counts.append(held)
    return counts


class ServerSampler:
    """The server's threads and its connections per process, every 0.25 s while running: the highest of each."""

    def __init__(self, server: Server):
        self.server, self.threads, self.connections, self.per_worker = server, 0, 0, 0
        self.port = int(server.url.rsplit(":", 1)[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            pids = self.server.pids()
            held = connections_by_process(pids[1:], self.port)  # the workers (the master holds none)
            self.threads = max(self.threads, thread_count(pids))
            self.connections = max(self.connections, sum(held))
            self.per_worker = max(self.per_worker, max(held, default=0))

    def __enter__(self) -> ServerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Trickle:
    """Real changes while pages are open: one watched app's status report every ``mean`` s (0.5-1.5x)."""

    def __init__(self, agent: Agent, apps: list[tuple[str, str]], revision: str, mean: float, rng: random.Random):
        self.agent, self.apps, self.revision, self.mean, self.rng = agent, apps, revision, mean, rng
        self.sent: list[float] = []  # time.monotonic() of each report
        self.failure: str | None = None
        self.health: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def _run(self) -> None:
        import httpx

        while not self._stop.wait(self.mean * self.rng.uniform(0.5, 1.5)):
            key = self.rng.choice(self.apps)
            self.health[key] = "Degraded" if self.health.get(key, "Healthy") == "Healthy" else "Healthy"
            try:
                self.agent.report_application(*key, self.revision, self.health[key])
            except httpx.HTTPError as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                return
            self.sent.append(time.monotonic())

    def between(self, start: float, end: float) -> int:
        return sum(1 for at in self.sent if start <= at <= end)

    def __enter__(self) -> Trickle:
        if self.mean > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


@dataclass
class Window:
    """One measured window of one peer: CPU as shares of a core, what the server held, what the clients saw."""

    mode: str
    seconds: float
    server_cpu: float
    postgres_cpu: float
    client_cpu: float
    threads_idle: int
    sampler: ServerSampler
    reports: int
    result: dict


def watched_apps() -> list[tuple[str, str]]:
    """The probe and 99 apps spread over the workspaces: the apps whose pages are open."""
    step = APPS // (WATCHED - 1)
    return [(PROBE_WORKSPACE, PROBE)] + [(synthetic.workspace_name(i), synthetic.app_name(i))
                                         for i in range(0, step * (WATCHED - 1), step)]


def connection_capacity(workers: int, threads: int) -> tuple[int, int]:
    """(worker_connections, idle keep-alive connections all workers keep) of ``shipyard serve``'s gthread workers."""
    from cli.serve import serve as serve_command

    per_worker = next(p.default for p in serve_command.params if p.name == "connections")
    return per_worker, workers * (per_worker - threads)


def check_fit(pages: int, workers: int, threads: int) -> None:
    """Refuse a run whose open pages cannot each keep their connection (the figures would be of reconnects)."""
    _, keepalive = connection_capacity(workers, threads)
    if pages + 10 > keepalive:
        needed = -(-(pages + 10) // workers) + threads
        raise SystemExit(f"{pages:,} keep-alive clients do not fit: each gthread worker keeps at most "
                         f"worker_connections - threads idle connections ({keepalive:,} in all with "
                         f"{workers}x{threads}); {pages:,} need worker_connections >= {needed} (shipyard serve "
                         "--connections) or more workers (--server)")


def measure_cost(server: Server, plane: Plane, agent: Agent, postgres_pid: int | None, pages: int, seconds: float,
                 quick: bool, change_every: float, workers: int, threads: int, rng: random.Random) -> None:
    import httpx

    per_worker, keepalive = connection_capacity(workers, threads)
    print(f"\n== cost: {pages:,} open pages against {pages:,} status API pollers, {seconds:g} s each ==")
    print(f"gunicorn gthread: worker_connections {per_worker} (shipyard serve --connections) x {workers} "
          f"workers, idle keep-alive connections kept up to {per_worker - threads} per worker ({keepalive:,} in all)",
          flush=True)
    apps = watched_apps()

    def open_pages() -> tuple[list[dict], dict, str]:
        """The watched apps' pages as a browser has them now: ticket, fingerprint, poll interval, session.
        Read again before each window, so the pages start current, as pages open for a while are."""
        with httpx.Client(base_url=server.url, timeout=60) as http:
            login(http, plane.password)
            found = []
            for workspace, app in apps:
                response = http.get(app_path(workspace, app))
                meta = live_meta(response.text)
                if response.status_code != 200 or len(meta) != len(META):
                    raise SystemExit(f"GET {app_path(workspace, app)} answered {response.status_code} without its "
                                     "live ticket, fingerprint and poll interval")
                found.append({"page": app_path(workspace, app), "status": status_path(workspace, app),
                              "ticket": meta["live-ticket"], "fingerprint": meta["live-fingerprint"]})
            return found, meta, "; ".join(f"{name}={value}" for name, value in http.cookies.items())

    targets, meta, cookie = open_pages()
    every = max(0.25, float(meta["live-poll"]))  # as dashboard.js reads it (DASHBOARD_POLL_SECONDS)
    order = ["live", "api"] if quick else ["live", "api", "api", "live"]
    window = seconds / (len(order) // 2)
    changing = f"a status report every {change_every:g} s on average" if change_every > 0 else "no status reports"
    print(f"{len(targets)} apps' pages, {pages // len(targets)} open pages each; poll every {every:g} s (0.8-1.2x); "
          f"windows {' '.join(order)} of {window:g} s after {WARMUP_SECONDS:g} s of warm-up each; {changing}",
          flush=True)
    client = PagesClient(server, cookie, plane.admin_token)
    windows: list[Window] = []
    try:
        with Trickle(agent, apps[1:], plane.revision, change_every, rng) as trickle:
            for number, mode in enumerate(order):
                if mode == "live" and number:
                    targets = open_pages()[0]
                idle = thread_count(server.pids())
                client.start({"mode": mode, "pages": pages, "targets": targets, "poll": every, "seconds": window,
                              "warmup": WARMUP_SECONDS, "seed": number})
                client.next_event("measuring")
                with ServerSampler(server) as sampler:
                    started = time.monotonic()
                    before = (tree_cpu_seconds(server.process.pid), tree_cpu_seconds(postgres_pid),
                              cpu_seconds([client.process.pid]))
                    client.next_event("ended")
                    after = (tree_cpu_seconds(server.process.pid), tree_cpu_seconds(postgres_pid),
                             cpu_seconds([client.process.pid]))
                    ended = time.monotonic()
                result = client.next_event("result")
                if not result["answers"]:
                    raise SystemExit(f"no {mode} poll was answered in window {number + 1}: {result['errors'][:3]}")
                wall = ended - started
                cpu = [(b - a) / wall for a, b in zip(before, after)]
                windows.append(Window(mode, wall, *cpu, idle, sampler, trickle.between(started, ended), result))
                print(f"  window {number + 1}: {mode}, {wall:.1f} s, server CPU {cpu[0]:.0%} of a core, "
                      f"{len(result['answers']) / result['seconds']:.0f} polls answered/s", flush=True)
    finally:
        client.close()
    if trickle.failure:
        print(f"WARNING: the status reports stopped after {len(trickle.sent)}: {trickle.failure}")
    report_cost(windows, pages, workers, threads)


@dataclass
class PeerFigures:
    """One peer's windows, summed."""

    windows: list[Window]

    def mean(self, attribute: str) -> float:
        """A window's figure (a share of a core), weighted by the windows' lengths."""
        return sum(getattr(w, attribute) * w.seconds for w in self.windows) / self.seconds

    @property
    def seconds(self) -> float:
        return sum(w.seconds for w in self.windows)

    @property
    def answers(self) -> list[float]:
        return [x for w in self.windows for x in w.result["answers"]]

    @property
    def followups(self) -> list[float]:
        return [x for w in self.windows for x in w.result["followups"]]

    @property
    def codes(self) -> Counter:
        codes: Counter = Counter()
        for w in self.windows:
            codes.update(w.result["codes"])
        return codes

    @property
    def server_cpu(self) -> float:
        return self.mean("server_cpu")

    @property
    def poll_rate(self) -> float:
        """Polls answered per second, over the clients' own windows (those the answers were counted in)."""
        return len(self.answers) / sum(w.result["seconds"] for w in self.windows)

    @property
    def page_rate(self) -> float:
        return len(self.followups) / sum(w.result["seconds"] for w in self.windows)

    @property
    def cpu_per_poll(self) -> float:
        """Server CPU seconds per poll answered (with the page GET that followed, for the open pages)."""
        return self.server_cpu / self.poll_rate


def report_cost(windows: list[Window], pages: int, workers: int, threads: int) -> None:
    labels = {"live": "open pages: /live (+ page on 200)", "api": "pollers: GET .../status"}
    figures = {mode: PeerFigures([w for w in windows if w.mode == mode]) for mode in labels}
    print(f"\n{'':<34} {'server CPU':>10} {'CPU/poll':>9} {'PostgreSQL':>10} {'client':>7} {'polls/s':>8} "
          f"{'p50':>9} {'p95':>9} {'204s':>5} {'pages/s':>8}")
    for mode, peer in figures.items():
        answers, codes, followups = peer.answers, peer.codes, peer.followups
        polls = sum(v for k, v in codes.items() if k.isdigit())
        share = f"{codes.get('204', 0) / polls:.0%}" if mode == "live" and polls else "–"
        page_rate = f"{peer.page_rate:.1f}" if mode == "live" else "–"
        print(f"{labels[mode]:<34} {peer.server_cpu:>10.0%} {peer.cpu_per_poll * 1e3:>6.2f} ms "
              f"{peer.mean('postgres_cpu'):>10.0%} {peer.mean('client_cpu'):>7.0%} "
              f"{peer.poll_rate:>8.0f} {percentile(answers, 50) * 1e3:>6.0f} ms "
              f"{percentile(answers, 95) * 1e3:>6.0f} ms {share:>5} {page_rate:>8}")
        failed = {k: v for k, v in codes.items() if k.startswith("error")}
        details = [f"answers {dict(sorted((k, v) for k, v in codes.items() if k.isdigit()))}"
                   + (f"; failed requests {failed}, such as {[e for w in peer.windows for e in w.result['errors']][:2]}"
                      if failed else "")]
        if followups:
            page_codes = {k.split()[1]: v for k, v in codes.items() if k.startswith("page ")}
            details.append(f"page GETs after a 200 or 401: {len(followups):,} (answers {page_codes}), p50 "
                           f"{percentile(followups, 50) * 1e3:.0f} ms, p95 {percentile(followups, 95) * 1e3:.0f} ms")
        samplers = [w.sampler for w in peer.windows]
        details.append(f"status reports meanwhile {sum(w.reports for w in peer.windows)}; connections the clients "
                       f"opened {sum(w.result['connections'] for w in peer.windows):,} for {len(peer.windows)} x "
                       f"{pages:,} clients (warm-up included; one each while keep-alive holds)")
        details.append(f"server threads {min(w.threads_idle for w in peer.windows)} before the clients, at most "
                       f"{max(s.threads for s in samplers)} while they were open; established connections at most "
                       f"{max(s.connections for s in samplers):,} (at most {max(s.per_worker for s in samplers):,} "
                       "in one worker)")
        for line in details:
            print(f"    {line}")
    live, api = figures["live"], figures["api"]
    print(f"\nlive / API: server CPU {ratio(live.server_cpu, api.server_cpu)}, CPU per poll "
          f"{ratio(live.cpu_per_poll, api.cpu_per_poll)}, p50 "
          f"{ratio(percentile(live.answers, 50), percentile(api.answers, 50))}, p95 "
          f"{ratio(percentile(live.answers, 95), percentile(api.answers, 95))}")
    print(f"the clients asked for {pages:,} polls/s; fewer were answered where the server ran out of CPU (each client "
          f"waits for its answer). The server's request threads: at most {workers} workers x {threads} = "
          f"{workers * threads}, started as needed, whatever the number of open pages; the other threads are each "
          "process's own")


# --- the run -------------------------------------------------------------------------------------------


def prerequisites(parts: list[str]) -> None:
    missing = []
    if "cost" in parts and importlib.util.find_spec("aiohttp") is None:
        missing.append("aiohttp (pip install -e '.[bench]')")
    if "latency" in parts:
        if importlib.util.find_spec("playwright") is None:
            missing.append("playwright (pip install -e '.[test]')")
        if not os.access(CHROMIUM, os.X_OK):
            missing.append(f"Debian's chromium ({CHROMIUM}: apt-get install chromium)")
    if missing:
        raise SystemExit("this benchmark needs " + ", ".join(missing))


def parse_server(text: str) -> tuple[int, int]:
    workers, _, threads = text.partition("x")
    if not workers.isdigit() or not threads.isdigit() or int(workers) < 1 or int(threads) < 1:
        raise SystemExit(f"--server: {text!r} is not <workers>x<threads>, such as 2x8")
    return int(workers), int(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {ROUNDS[1]} rounds, {CHANGES[1]} changes, {SECONDS[1]} s per cost peer")
    parser.add_argument("--only", choices=("server", "latency", "cost"), help="one measurement (default: all three)")
    parser.add_argument("--rounds", type=int, help=f"server: timed rounds (default {ROUNDS[0]}, quick {ROUNDS[1]})")
    parser.add_argument("--changes", type=int, help=f"latency: changes (default {CHANGES[0]}, quick {CHANGES[1]})")
    parser.add_argument("--seconds", type=float,
                        help=f"cost: measured seconds per peer (default {SECONDS[0]}, quick {SECONDS[1]})")
    parser.add_argument("--pages", type=int, default=PAGES, help=f"cost: open pages (default {PAGES})")
    parser.add_argument("--change-every", type=float, default=3.0,
                        help="cost: mean seconds between status reports while pages are open (default 3; 0: none)")
    parser.add_argument("--server", default="2x8", help="gunicorn <workers>x<threads> (default 2x8, serve's default)")
    parser.add_argument("--pages-client", help=argparse.SUPPRESS)  # internal: run as the client process
    args = parser.parse_args()
    if args.pages_client:
        pages_client_main(args.pages_client)
        return

    from pgserver import PostgresServer

    parts = [args.only] if args.only else ["server", "latency", "cost"]
    prerequisites(parts)
    workers, threads = parse_server(args.server)
    if "cost" in parts:
        check_fit(args.pages, workers, threads)
    rounds = ROUNDS[args.quick] if args.rounds is None else args.rounds
    changes = CHANGES[args.quick] if args.changes is None else args.changes
    seconds = SECONDS[args.quick] if args.seconds is None else args.seconds
    if min(rounds, changes, seconds, args.pages) <= 0 or args.change_every < 0:
        raise SystemExit("--rounds, --changes, --seconds and --pages must be positive, --change-every not negative")
    logging.getLogger().setLevel(logging.ERROR)  # create_app would log every in-process request at INFO
    rng = random.Random(14)
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-dashboard-"))
    os.chmod(root, 0o755)  # the postgres user keeps its data directory below
    print(f"dashboard: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{APPS:,} apps, {STATUS_EVENTS:,} status events, PostgreSQL; shipyard serve {workers}x{threads}; "
          f"measuring {', '.join(parts)}; temp dir {root}\n", flush=True)

    postgres = PostgresServer(root / "pg")
    server = agent = app = None
    try:
        started = time.perf_counter()
        postgres.start()
        plane, app = seed_plane(postgres, root)
        server = serve("dashboard", plane.database_url, plane.data_dir, workers=workers, threads=threads)
        agent = Agent(server.url, plane.tenant, plane.agent_token)
        agent.start(plane.probe_revision)
        seed_status(app, plane, agent.stream, rng)
        app.extensions["shipyard"].close()
        app = None
        mix = ", ".join(f"{label} {count / APPS:.0%}" for label, count in plane.mix.most_common())
        print(f"setup in {time.perf_counter() - started:.0f} s: {APPS:,} apps ({mix}), {plane.status_events:,} "
              f"status events, {plane.objects:,} cluster objects in bulk; the probe deployed {PROBE_VERSIONS} times "
              "and reported through the agent protocol", flush=True)
        postgres_pid = postgres._process.pid if postgres._process is not None else None
        if "server" in parts:
            measure_server(server, plane, rounds)
        if "latency" in parts:
            measure_latency(server, plane, agent, changes, rng)
        if "cost" in parts:
            measure_cost(server, plane, agent, postgres_pid, args.pages, seconds, args.quick, args.change_every,
                         workers, threads, rng)
        print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if agent is not None:
            agent.stop()
        if app is not None:
            app.extensions["shipyard"].close()
        if server is not None:
            server.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
