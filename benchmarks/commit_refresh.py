"""A commit reaches the cluster at once: commit -> refresh requested (goal p95 < 1 s), deploy -> Healthy (goal p95 < 5 s).

What it measures
    Two control planes as production runs them, ``shipyard serve`` on a throwaway PostgreSQL
    (tests/pgserver.py), sharing its database and data directory as two replicas would: one
    with the serve default of 2 workers x 8 threads, one with a single worker. A deploy rings
    the agent's long-poll in the process that committed (webapp.command_bell); a long-poll held
    by another process hears of it from that process's watch of the database, once a second. The
    clusters are made in this process through the API (the demo profile, a workspace), before
    the servers start.

    Commit -> refresh requested (``--samples`` per peer). Per server, a cluster with its app
    ``probe`` deployed, the agent as its own process (``python -m agent``: KUBECONFIG pointing at
    a fake Kubernetes API server, tests/fakekube.py, in this process, whose request log is
    stamped with the wall clock), and ArgoCD's part played here: the probe's Application exists
    in the fake API server, compared at the app's first commit, so every later commit is news to
    it. Each sample deploys a new image of the probe (``PUT /api/v1/apps``, the answer carries
    the version's commit and its ``committed_at``) and waits for the PATCH of the probe's
    Application to arrive at the fake API server. Figures: that arrival minus ``committed_at``
    (the commit recorded: its transaction, the bell, the long-poll's claim and answer, the
    agent's GET and PATCH), and minus the deploy request's start (what the person deploying
    waits for, the deploy included). The two peers take turns, a random pause (0.2-1.0 s)
    before each sample, so commits land at every phase of the watch's one-second beat:

    ``serve, 2 workers``   the deploy and the agent's long-poll in the same worker or not
    ``serve, 1 worker``    always the same process: the bell alone

    Deploy -> Healthy (``--healthy-samples``). A SIMULATED cluster (the simulation package, in
    this process, its settings' defaults: ArgoCD's 180 s poll, a sync step of 1 s and a 1 s
    rollout, so 3 s of every figure is the simulated sync and rollout) reporting to the
    2-worker server. Each sample deploys a new image of an app and polls ``GET .../status``
    (20 ms apart) until its newest version is healthy: from the deploy request's start.

    The peer without the refresh: the same cluster whose commands nobody claims, so ArgoCD
    finds each commit at its poll. At 180 s that is minutes a sample, so it runs at a shortened
    poll (``--peer-poll``, 30 s by default), alongside the other samples, each deploy after a
    random pause of up to one poll; a commit lands at a uniformly random moment of the poll's
    period, so its wait scales with the poll: p50 about poll / 2 and p95 about 0.95 poll, plus
    the simulated 3 s. The script prints both the measured figures and what they come to at
    180 s.

Run: ``.venv/bin/python benchmarks/commit_refresh.py [--samples 100] [--healthy-samples 30] [--peer-poll 30]
[--peer-samples 6]`` (about 6 minutes). Needs the PostgreSQL server binaries (``apt-get install
postgresql``), as the tests do.
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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

import synthetic
from api_deploys import Server, serve
from status_ingest import ARGOCD_NAMESPACE, application_object
from synthetic import ROOT

sys.path.insert(0, str(ROOT / "tests"))  # pgserver.py, fakekube.py

WORKSPACE = "storefront"
PROBE = "probe"
ARGOCD_POLL_SECONDS = 180.0
STATUS_PAUSE = 0.02  # seconds between one status answer and the next request


def spec(app: str, cluster: str, tag: str) -> str:
    return (f"type: service\nname: {app}\nworkspace_fqn: {cluster}:{WORKSPACE}\n"
            f"image: {{type: image, image_uri: 'ghcr.io/acme/{app}:{tag}'}}\nports: [{{port: 8000}}]\n")


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


@dataclass
class Made:
    agent_token: str
    read_token: str
    commit: str | None = None  # the probe's first commit, where there is a probe


def make_clusters(database_url: str, data_dir: Path, probes: list[str],
                  simulated: list[str]) -> tuple[str, str, dict[str, Made]]:
    """Migrate; an admin token, the clusters (demo profile) with a workspace, each of ``probes`` with the probe
    deployed; returns (admin token, tenant, what each cluster got)."""
    app, token, _ = synthetic.bench_plane(database_url, data_dir)
    plane = app.extensions["shipyard"]
    client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
    made = {}
    try:
        for name in [*probes, *simulated]:
            profile = synthetic.DEMO_PROFILE.read_text().replace("name: demo", f"name: {name}")
            response = client.post("/api/v1/clusters", headers=headers, json={"name": name, "profile": profile})
            if response.status_code != 201:
                raise SystemExit(f"cannot create cluster {name}: {response.get_json()}")
            made[name] = Made(response.get_json()["agent_token"], response.get_json()["read_token"])
            response = client.post(f"/api/v1/clusters/{name}/workspaces", headers=headers, json={"name": WORKSPACE})
            if response.status_code != 201:
                raise SystemExit(f"cannot create the workspace of {name}: {response.get_json()}")
        for name in probes:
            response = client.put("/api/v1/apps", headers=headers, data=spec(PROBE, name, "0"),
                                  content_type="application/yaml")
            if response.status_code != 200:
                raise SystemExit(f"cannot deploy the probe to {name}: {response.get_json()}")
            made[name].commit = response.get_json()["versions"][0]["commit"]
        return token, app.config["TENANT"], made
    finally:
        plane.close()


class Probe:
    """One peer of the first part: a server, its cluster's agent process, and the fake API server it acts on."""

    def __init__(self, label: str, server: Server, cluster: str, made: Made, tenant: str, admin_token: str,
                 root: Path):
        from fakekube import FakeKube

        self.label, self.server, self.cluster = label, server, cluster
        self.kube = FakeKube(clock=time.time).start()  # requests stamped with the wall clock, as committed_at is
        self.application = f"{WORKSPACE}.{PROBE}"
        self.kube.create("applications", application_object(WORKSPACE, PROBE, made.commit), ARGOCD_NAMESPACE)
        kubeconfig = root / f"kubeconfig-{cluster}"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.kube.url}}],
            "users": [{"name": "agent", "user": {"token": self.kube.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}]}))
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SHIPYARD_URL": server.url, "SHIPYARD_TENANT": tenant,
               "SHIPYARD_CLUSTER": cluster, "SHIPYARD_AGENT_TOKEN": made.agent_token, "SHIPYARD_METRICS_PORT": "0",
               "SHIPYARD_NAMESPACES": WORKSPACE, "SHIPYARD_LOG_LEVEL": "WARNING"}
        self.agent_log = root / f"agent-{cluster}.log"
        with open(self.agent_log, "wb") as log:
            self.agent = subprocess.Popen([sys.executable, "-m", "agent"], env=env, cwd=ROOT,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # a new connection per deploy, as a pipeline's `shipyard deploy` makes: any worker may take it
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60,
                                 limits=httpx.Limits(max_keepalive_connections=0))
        self.after_commit: list[float] = []
        self.after_request: list[float] = []
        self.deploys = 0

    def sample(self, record: bool = True) -> None:
        """Deploy a new image of the probe; wait for the PATCH of its Application."""
        self.deploys += 1
        started = time.time()
        response = self.http.put("/api/v1/apps", content=spec(PROBE, self.cluster, str(self.deploys)),
                                 headers={"Content-Type": "application/yaml"})
        if response.status_code != 200:
            raise SystemExit(f"{self.label}: deploy answered {response.status_code}: {response.text[:300]}")
        committed = epoch(response.json()["versions"][0]["committed_at"])
        deadline = time.monotonic() + 30
        while not (patches := self.kube.requests_matching("patch", "applications", ARGOCD_NAMESPACE, since=started)):
            if self.agent.poll() is not None:
                raise SystemExit(f"the agent exited ({self.agent.returncode}):\n{self.agent_log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.label}: no refresh of {self.application} within 30 s of a commit")
            time.sleep(0.002)
        patch = patches[0]
        if patch.name != self.application:
            raise SystemExit(f"{self.label}: the commit refreshed {patch.name}, not {self.application}")
        if record:
            self.after_commit.append(patch.at - committed)
            self.after_request.append(patch.at - started)

    def stop(self) -> None:
        if self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.http.close()
        self.kube.stop()


def healthy_after(http: httpx.Client, cluster: str, app: str, tag: str, timeout: float) -> float:
    """Deploy ``tag`` of ``app``; seconds from the request's start until its status shows the version healthy."""
    started = time.monotonic()
    response = http.put("/api/v1/apps", content=spec(app, cluster, tag), headers={"Content-Type": "application/yaml"})
    if response.status_code != 200:
        raise SystemExit(f"deploy to {cluster} answered {response.status_code}: {response.text[:300]}")
    number = response.json()["versions"][0]["number"]
    path = f"/api/v1/apps/{cluster}/{WORKSPACE}/{app}/status"
    while True:
        versions = http.get(path).json().get("versions") or []
        if any(v["number"] == number and v["status"] == "healthy" for v in versions):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{cluster}/{app} v{number} not healthy within {timeout:.0f} s")
        time.sleep(STATUS_PAUSE)


def row(label: str, values: list[float], seconds: bool = False) -> str:
    def shown(value: float) -> str:
        return f"{value:8.1f} s " if seconds else f"{value * 1e3:8.0f} ms"

    return (f"  {label + f' (n={len(values)})':<58} {shown(percentile(values, 50))} {shown(percentile(values, 95))} "
            f"{shown(max(values))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100, help="commits per peer of the first part (default 100)")
    parser.add_argument("--healthy-samples", type=int, default=30,
                        help="deploys to Healthy through the refresh (default 30)")
    parser.add_argument("--peer-poll", type=float, default=30.0,
                        help="the poll of the cluster without the refresh, seconds (default 30)")
    parser.add_argument("--peer-samples", type=int, default=6,
                        help="deploys to Healthy on the cluster without the refresh (default 6)")
    args = parser.parse_args()

    from pgserver import PostgresServer

    from simulation import SimulatedCluster, SimulationSettings

    logging.getLogger().setLevel(logging.ERROR)  # create_app and the simulation would log at INFO
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-refresh-"))
    os.chmod(root, 0o755)  # the postgres user keeps its data directory below
    print(f"commit_refresh: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"temp dir {root}", flush=True)
    postgres = PostgresServer(root / "pg")
    servers: list[Server] = []
    probes: list[Probe] = []
    simulated: list[SimulatedCluster] = []
    stop = threading.Event()
    loops: list[threading.Thread] = []
    try:
        postgres.start()
        database_url = postgres.create_database("shipyard_refresh")
        data_dir = root / "data"
        admin_token, tenant, made = make_clusters(database_url, data_dir, ["two", "one"], ["fast", "polled"])
        two = serve("two-workers", database_url, data_dir, workers=2, threads=8)
        servers.append(two)
        one = serve("one-worker", database_url, data_dir, workers=1, threads=8)
        servers.append(one)
        probes += [Probe("serve, 2 workers", two, "two", made["two"], tenant, admin_token, root),
                   Probe("serve, 1 worker", one, "one", made["one"], tenant, admin_token, root)]

        # --- commit -> refresh requested ------------------------------------------------------------
        for probe in probes:
            probe.sample(record=False)  # the agent's first long-poll, and the server's first deploy
        rng = random.Random(19)
        started = time.monotonic()
        for index in range(args.samples):
            for probe in probes[index % 2:] + probes[:index % 2]:
                time.sleep(rng.uniform(0.2, 1.0))
                probe.sample()
        print(f"\ncommit -> refresh PATCH at the fake API server: {args.samples} commits per peer in "
              f"{time.monotonic() - started:.0f} s")
        print(f"  {'':<58} {'p50':>11} {'p95':>11} {'max':>11}")
        for probe in probes:
            print(row(f"{probe.label}: from the commit recorded", probe.after_commit))
            print(row(f"{probe.label}: from the deploy request's start", probe.after_request))
        for probe in probes:
            probe.stop()
        probes.clear()

        # --- deploy -> Healthy -----------------------------------------------------------------------
        for name, poll, commands in (("fast", ARGOCD_POLL_SECONDS, True), ("polled", args.peer_poll, False)):
            cluster = SimulatedCluster(SimulationSettings(
                url=two.url, tenant=tenant, cluster=name, agent_token=made[name].agent_token,
                read_token=made[name].read_token, mirror_dir=root / "mirrors" / name, poll_seconds=poll))
            simulated.append(cluster)
            loops.append(threading.Thread(target=cluster.run, args=(stop,), kwargs={"commands": commands},
                                          daemon=True, name=f"simulated-{name}"))
            loops[-1].start()
        http = httpx.Client(base_url=two.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
        peer: list[float] = []

        def peer_rounds() -> None:
            pauses = random.Random(20)
            for index in range(args.peer_samples):
                # a pause of up to a whole poll: each deploy lands at a random phase of the poll's beat (one
                # right after the last sample went Healthy would always wait almost the whole poll)
                time.sleep(pauses.uniform(0.0, args.peer_poll))
                peer.append(healthy_after(http, "polled", "web", str(index), args.peer_poll + 60))

        healthy_after(http, "fast", "web", "0", 60)  # a new app: through the app of apps' refresh
        beside = threading.Thread(target=peer_rounds, daemon=True, name="peer")
        started = time.monotonic()
        beside.start()
        fast = []
        for index in range(1, args.healthy_samples + 1):
            fast.append(healthy_after(http, "fast", "web", str(index), 60))
            time.sleep(rng.uniform(0.0, 1.0))
        beside.join()
        http.close()
        print(f"\ndeploy -> Healthy on the SIMULATED cluster (3 s of it the simulated sync and rollout), "
              f"{time.monotonic() - started:.0f} s")
        print(f"  {'':<58} {'p50':>11} {'p95':>11} {'max':>11}")
        print(row("poll 180 s, with the refresh", fast, seconds=True))
        print(row(f"poll {args.peer_poll:g} s, no refresh (peer)", peer, seconds=True))
        fast_p50 = percentile(fast, 50)
        print(f"  the peer at 180 s (a commit waits U[0, poll] for it): p50 about {fast_p50 + 90:.0f} s, "
              f"p95 about {fast_p50 + 0.95 * ARGOCD_POLL_SECONDS:.0f} s; at {args.peer_poll:g} s the model says "
              f"p50 {fast_p50 + args.peer_poll / 2:.1f} s, p95 {fast_p50 + 0.95 * args.peer_poll:.1f} s")
        print(f"  with the refresh / without it at 180 s (p50): {fast_p50 / (fast_p50 + 90):.3f}x; "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        stop.set()
        for loop in loops:
            loop.join(30)
        for cluster in simulated:
            cluster.close()
        for probe in probes:
            probe.stop()
        for server in servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                server.process.wait(5)
            except subprocess.TimeoutExpired:
                # a worker thread still sleeps in an agent's command long-poll (up to 30 s), and the
                # worker's exit waits for it: end the server's process group (its own session)
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
