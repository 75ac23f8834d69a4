"""Latency from a change in the cluster to the status the control plane's API shows: p50, p95 (goal p95 < 1 s).

What it measures
    Three real parts on loopback: the fake Kubernetes API server
    (tests/fakekube.py, in this process; it speaks the wire protocol the
    agent's kubernetes client uses, list + watch), the agent as its own
    process (``python -m agent``, settings from the environment:
    KUBECONFIG pointing at the fake server, SHIPYARD_URL, the cluster's agent
    token), and the control plane (``shipyard serve``: gunicorn, 2 workers
    x 8 threads, the serve default) on a throwaway PostgreSQL server
    (tests/pgserver.py). The cluster is created through ``webapp.create_app``
    and the API, with 200 background apps inserted in bulk
    (``status_ingest.seed``) and one app, ``probe``, deployed through the API
    (``PUT /api/v1/apps``: rendered and committed), so its status has a
    version to map to. Each background app's Version is on a commit of its
    own (one deploy commit per app, as status_ingest.py seeds them;
    ``--history shared``: all on one commit). The fake API server holds, per
    app, its ArgoCD Application (synced: the probe's to its commit, the
    others' to the newest deploy commit), Deployment and 3 Pods: 1,000
    background objects and the probe's 5.

    Each sample changes one of the probe's objects in the fake API server at
    t0, alternately its Application's health (Healthy <-> Degraded) and its
    first Pod's container state (running <-> waiting CrashLoopBackOff), then
    polls ``GET /api/v1/apps/demo/<ws>/probe/status`` (bearer token; a new
    request 5 ms after the previous answer) until the answer shows the change
    (``health``, or ``reasons``); t1 is when that answer arrived. The path
    measured: watch event to the agent, its compact state and digest, the
    outbox, the next status batch (every SHIPYARD_BATCH_INTERVAL seconds,
    0.2 by default: up to one interval of every figure is waiting for it),
    ``POST /agent/v1/.../status`` and ``gitops.ingest.ingest``, then the
    status read. Between samples a random pause (0.05-0.5 s) so changes land
    at every phase of the agent's batch timer. Meanwhile background churn
    changes 1% of the 1,000 background objects per second (10 changes a
    second: Application health, Deployment ready replicas, Pod restarts),
    so batches carry other objects too (``--churn`` sets the share,
    ``--background-apps`` the number of apps, 5 objects each).

    ``--revision-every S`` adds what a commit does to a cluster: every S
    seconds a new commit, and every background Application moves to it, as
    ArgoCD moves every app of a repository on each commit (status then maps
    each app's new revision to its live version). Samples begun within 3 s
    after such a commit are also reported apart.

    No peer: the goal is absolute. For context only, not measured: ArgoCD
    itself finds a new commit by polling git every 180 s by default.

Run: ``.venv/bin/python benchmarks/status_latency.py [--quick] [--samples 200] [--batch-interval 0.2]
[--background-apps 200] [--churn 0.01] [--revision-every 0] [--history per-app|shared]``
(``--quick``: 30 samples; about half a minute, most of it setting up.) Needs the
PostgreSQL server binaries (``apt-get install postgresql``), as the tests do.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import synthetic
from api_deploys import serve
from status_ingest import (
    ARGOCD_NAMESPACE,
    CLUSTER,
    HEALTHS,
    PODS_PER_APP,
    application_object,
    deployment_object,
    open_plane,
    pod_name,
    pod_object,
    seed,
)
from synthetic import ROOT

sys.path.insert(0, str(ROOT / "tests"))  # pgserver.py, fakekube.py

PROBE = "probe"
PROBE_WORKSPACE = synthetic.workspace_name(0)
PROBE_SPEC = f"""\
type: service
name: {PROBE}
workspace_fqn: {CLUSTER}:{PROBE_WORKSPACE}
image: {{type: image, image_uri: 'ghcr.io/acme/{PROBE}:1.0.0'}}
ports: [{{port: 8000}}]
replicas: 3
"""
POLL_PAUSE = 0.005  # seconds between one status answer and the next request
COMMIT_WINDOW = 3.0
ARGOCD_POLL_SECONDS = 180


def deploy_probe(app, token: str) -> str:
    """``PUT /api/v1/apps`` of the probe app (rendered and committed); the commit of its version."""
    client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
    response = client.put("/api/v1/apps", headers=headers, data=PROBE_SPEC, content_type="application/yaml")
    if response.status_code not in (200, 202):
        raise SystemExit(f"cannot deploy the probe app: {response.status_code} {response.get_data(as_text=True)}")
    response = client.get(f"/api/v1/apps/{CLUSTER}/{PROBE_WORKSPACE}/{PROBE}/versions", headers=headers)
    versions = response.get_json()["versions"]
    commit = versions[0]["commit"]
    if not commit:
        raise SystemExit(f"the probe's version has no commit: {versions[0]}")
    return commit


def fill_cluster(kube, background_apps: int, background_revision: str, probe_revision: str) -> list[tuple[str, str, str]]:
    """Every app's Application, Deployment and Pods in the fake API server; the background objects' keys."""
    background = []
    apps = [(synthetic.workspace_name(i), synthetic.app_name(i)) for i in range(background_apps)]
    for workspace, app in [*apps, (PROBE_WORKSPACE, PROBE)]:
        revision = probe_revision if app == PROBE else background_revision
        kube.create("applications", application_object(workspace, app, revision), ARGOCD_NAMESPACE)
        kube.create("deployments", deployment_object(workspace, app, 1, 3), workspace)
        for replica in range(PODS_PER_APP):
            kube.create("pods", pod_object(workspace, app, replica, 0, True), workspace)
        if app != PROBE:
            background += [("Application", workspace, app), ("Deployment", workspace, app)]
            background += [("Pod", workspace, f"{app}/{replica}") for replica in range(PODS_PER_APP)]
    return background


class Churn:
    """Changes ``per_second`` random background objects a second, in ticks of 0.1 s, until stopped.

    With ``revision_every``, every that many seconds ``new_revision(previous)`` makes a commit and
    every background Application moves to it, as ArgoCD moves every app of a repository on each
    commit (only the probe's Application stays where it is).
    """

    def __init__(self, kube, objects: list[tuple[str, str, str]], per_second: float, revision: str,
                 revision_every: float = 0.0, new_revision=None, seed: int = 1):
        self.kube, self.objects, self.per_second, self.revision = kube, objects, per_second, revision
        self.revision_every, self.new_revision = revision_every, new_revision
        self.rng = random.Random(seed)
        self.changes = 0
        self.commits: list[float] = []  # when each new revision was applied (perf_counter)
        self._counters: dict[tuple[str, str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def change(self, key: tuple[str, str, str]) -> None:
        kind, workspace, name = key
        count = self._counters[key] = self._counters.get(key, 0) + 1
        if kind == "Application":
            obj = application_object(workspace, name, self.revision, HEALTHS[count % len(HEALTHS)])
            self.kube.update("applications", ARGOCD_NAMESPACE, f"{workspace}.{name}", {"status": obj["status"]})
        elif kind == "Deployment":
            obj = deployment_object(workspace, name, 1, 3 if count % 2 == 0 else 2)
            self.kube.update("deployments", workspace, name, {"status": obj["status"]})
        else:
            app, replica = name.split("/")
            obj = pod_object(workspace, app, int(replica), count, True)
            self.kube.update("pods", workspace, pod_name(app, int(replica)), {"status": obj["status"]})
        self.changes += 1

    def move_every_application(self) -> None:
        self.revision = self.new_revision(self.revision)
        self.commits.append(time.perf_counter())
        for key in self.objects:
            kind, workspace, name = key
            if kind == "Application":
                health = HEALTHS[self._counters.get(key, 0) % len(HEALTHS)]
                obj = application_object(workspace, name, self.revision, health)
                self.kube.update("applications", ARGOCD_NAMESPACE, f"{workspace}.{name}", {"status": obj["status"]})

    def _run(self) -> None:
        owed = 0.0
        next_commit = time.monotonic() + self.revision_every if self.revision_every else float("inf")
        while not self._stop.wait(0.1):
            if time.monotonic() >= next_commit:
                self.move_every_application()
                next_commit += self.revision_every
            owed += self.per_second * 0.1
            while owed >= 1:
                self.change(self.rng.choice(self.objects))
                owed -= 1

    def start(self) -> Churn:
        if self.per_second > 0 or self.revision_every:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def wait_for(predicate, timeout: float, what: str, pause: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(pause)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 samples")
    parser.add_argument("--samples", type=int, help="changes measured (default 200, quick 30)")
    parser.add_argument("--batch-interval", type=float, default=0.2,
                        help="the agent's SHIPYARD_BATCH_INTERVAL, seconds (default 0.2, the agent's default)")
    parser.add_argument("--background-apps", type=int, default=200,
                        help="apps besides the probe, 5 objects each in the fake API server (default 200)")
    parser.add_argument("--churn", type=float, default=0.01,
                        help="share of the background objects changed per second (default 0.01)")
    parser.add_argument("--history", choices=("per-app", "shared"), default="per-app",
                        help="each background app's Version on a commit of its own (default), or all on one")
    parser.add_argument("--revision-every", type=float, default=0.0,
                        help="seconds between commits that move every background Application to a new "
                             "revision (default 0: never)")
    args = parser.parse_args()

    import httpx
    import pygit2
    from pgserver import PostgresServer

    from tests.fakekube import FakeKube

    logging.getLogger().setLevel(logging.ERROR)  # create_app would log every in-process request at INFO
    samples = args.samples or (30 if args.quick else 200)
    background_objects = args.background_apps * (2 + PODS_PER_APP)
    churn_per_second = background_objects * args.churn
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-latency-"))
    os.chmod(root, 0o755)  # the postgres user keeps its data directory below
    print(f"status_latency: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"agent batch interval (SHIPYARD_BATCH_INTERVAL) {args.batch_interval:g} s; {samples} samples; background "
          f"{background_objects:,} objects of {args.background_apps} apps, churn {args.churn:.1%}/s "
          f"({churn_per_second:g} changes/s), history {args.history}"
          + (f", every {args.revision_every:g} s a commit moves every background Application" if args.revision_every
             else "") + f"; poll pause {POLL_PAUSE * 1e3:.0f} ms; temp dir {root}\n", flush=True)

    postgres = PostgresServer(root / "pg")
    kube = FakeKube(history=100_000, bookmark_interval=5.0)
    server = agent = churn = http = None
    kube_started = False
    agent_log = root / "agent.log"
    try:
        started = time.perf_counter()
        postgres.start()
        database_url = postgres.create_database("shipyard_latency")
        data_dir = root / "data"
        seeded = seed(database_url, data_dir, args.background_apps, 0, args.history == "per-app")
        app = open_plane(database_url, data_dir)
        try:
            revision = deploy_probe(app, seeded.admin_token)
        finally:
            app.extensions["shipyard"].close()
        background_revision = seeded.deploys[-1] if seeded.deploys else revision
        server = serve("latency", database_url, data_dir, workers=2, threads=8)
        kube.start()
        kube_started = True
        background = fill_cluster(kube, args.background_apps, background_revision, revision)
        (root / "kubeconfig").write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
            "users": [{"name": "agent", "user": {"token": kube.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}]}))
        env = {**os.environ, "KUBECONFIG": str(root / "kubeconfig"), "SHIPYARD_URL": server.url,
               "SHIPYARD_TENANT": seeded.tenant, "SHIPYARD_CLUSTER": CLUSTER,
               "SHIPYARD_AGENT_TOKEN": seeded.agent_token, "SHIPYARD_METRICS_PORT": "0",
               "SHIPYARD_LOG_LEVEL": "WARNING", "SHIPYARD_BATCH_INTERVAL": str(args.batch_interval)}
        with open(agent_log, "wb") as log:
            agent = subprocess.Popen([sys.executable, "-m", "agent"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)

        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {seeded.admin_token}"},
                            timeout=30)
        status_path = f"/api/v1/apps/{CLUSTER}/{PROBE_WORKSPACE}/{PROBE}/status"
        objects_expected = background_objects + 2 + PODS_PER_APP

        def synced() -> bool:
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited ({agent.returncode}):\n{agent_log.read_text()[-3000:]}")
            counts = http.get(f"/api/v1/clusters/{CLUSTER}/status").json().get("objects") or {}
            body = http.get(status_path).json()
            return (sum(counts.values()) == objects_expected and body.get("health") == "Healthy"
                    and body.get("live_version") == 1)

        wait_for(synced, 120, "the agent's first snapshot at the control plane")
        print(f"setup (PostgreSQL, seed, probe deploy, server, {objects_expected:,} objects in the fake API server, "
              f"agent's first snapshot ingested) in {time.perf_counter() - started:.1f} s", flush=True)

        git = pygit2.Repository(str(data_dir / "repos" / seeded.tenant / f"{CLUSTER}.git"))
        signature = pygit2.Signature("bench", "bench@example.invalid")

        def new_revision(previous: str) -> str:
            """An empty commit on top of ``previous`` (status maps revisions by ancestry only)."""
            parent = git[previous]
            commit = git.create_commit(None, signature, signature, "bench: a new revision", parent.tree_id,
                                       [parent.id])
            git.references.create("refs/bench/revision", commit, force=True)
            return str(commit)

        churn = Churn(kube, background, churn_per_second, background_revision, args.revision_every,
                      new_revision).start()
        rng = random.Random(7)
        latencies: dict[str, list[float]] = {"Application health": [], "Pod waiting reason": []}
        after_commit: list[float] = []  # samples that began within COMMIT_WINDOW s after a new revision
        polls: list[float] = []  # duration of each status GET
        polls_per_sample: list[int] = []
        degraded = crashing = False
        started = time.perf_counter()
        for index in range(samples):
            time.sleep(rng.uniform(0.05, 0.5))
            if index % 2 == 0:
                kind = "Application health"
                degraded = not degraded
                health = "Degraded" if degraded else "Healthy"
                status = application_object(PROBE_WORKSPACE, PROBE, revision, health)["status"]

                def change(status=status) -> None:
                    kube.update("applications", ARGOCD_NAMESPACE, f"{PROBE_WORKSPACE}.{PROBE}", {"status": status})

                def shows(body: dict, health=health) -> bool:
                    return body.get("health") == health
            else:
                kind = "Pod waiting reason"
                crashing = not crashing
                waiting = "CrashLoopBackOff" if crashing else None
                status = pod_object(PROBE_WORKSPACE, PROBE, 0, 0, True, waiting)["status"]

                def change(status=status) -> None:
                    kube.update("pods", PROBE_WORKSPACE, pod_name(PROBE, 0), {"status": status})

                def shows(body: dict, crashing=crashing) -> bool:
                    return ("CrashLoopBackOff" in (body.get("reasons") or [])) == crashing

            t0 = time.perf_counter()
            change()
            count = 0
            while True:
                asked = time.perf_counter()
                response = http.get(status_path)
                t1 = time.perf_counter()
                polls.append(t1 - asked)
                count += 1
                if response.status_code != 200:
                    raise SystemExit(f"GET {status_path} answered {response.status_code}: {response.text[:300]}")
                if shows(response.json()):
                    break
                if t1 - t0 > 30:
                    raise SystemExit(f"sample {index}: the change did not show within 30 s")
                time.sleep(POLL_PAUSE)
            latencies[kind].append(t1 - t0)
            polls_per_sample.append(count)
            if any(0 <= t0 - at <= COMMIT_WINDOW for at in churn.commits):
                after_commit.append(t1 - t0)
        measured = time.perf_counter() - started
        churn.stop()

        every = [x for values in latencies.values() for x in values]
        print(f"measured {samples} samples in {measured:.0f} s; churn made {churn.changes} background changes "
              f"({churn.changes / measured:.1f}/s); load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print(f"{'latency: change in the API server -> visible in GET .../status':<66} "
              f"{'p50':>8} {'p95':>8} {'max':>8} {'min':>8}")
        rows = [("all changes", every), *latencies.items()]
        if churn.commits:
            print(f"{len(churn.commits)} commits each moved {args.background_apps:,} background Applications")
            rows.append((f"changes begun <= {COMMIT_WINDOW:g} s after such a commit", after_commit))
        for label, values in rows:
            if not values:
                print(f"  {label + ' (n=0)':<64}")
                continue
            print(f"  {label + f' (n={len(values)})':<64} {percentile(values, 50) * 1e3:6.0f} ms "
                  f"{percentile(values, 95) * 1e3:5.0f} ms {max(values) * 1e3:5.0f} ms {min(values) * 1e3:5.0f} ms")
        print(f"\np95 {percentile(every, 95) * 1e3:.0f} ms (goal: under 1,000 ms); the agent sends a batch every "
              f"{args.batch_interval * 1e3:.0f} ms, so up to that much of each figure is waiting for the next batch")
        print(f"status GET while polling: median {statistics.median(polls) * 1e3:.1f} ms, p95 "
              f"{percentile(polls, 95) * 1e3:.1f} ms; {statistics.median(polls_per_sample):.0f} GETs per sample "
              f"(median): the figures are late by up to one GET plus {POLL_PAUSE * 1e3:.0f} ms")
        print(f"context, not measured: ArgoCD polls git for new commits every {ARGOCD_POLL_SECONDS} s by default, "
              f"so a commit reaches a cluster up to {ARGOCD_POLL_SECONDS // 60} minutes later unless a webhook "
              f"tells ArgoCD sooner")
    finally:
        if churn is not None:
            churn.stop()
        if agent is not None and agent.poll() is None:
            agent.terminate()
        if server is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        if agent is not None:
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if server is not None:
            try:
                server.process.wait(5)
            except subprocess.TimeoutExpired:
                # a worker thread still sleeps in the agent's command long-poll (up to 30 s), and the
                # worker's exit waits for it: end the server's process group (its own session)
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
        if http is not None:
            http.close()
        if kube_started:
            kube.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
