"""N simulated agents connected to one control plane: command delivery latency and control-plane RSS.

    .venv/bin/python benchmarks/simulated_agents.py [--agents 500] [--commands 200] [--database sqlite|postgresql]
        [--server serve:WORKERSxTHREADS|werkzeug]

Seeds N clusters (one workspace and one service each) through the API in this
process, then serves the control plane: by default ``shipyard serve`` with
2 workers x 400 threads (every agent's command long-poll holds a thread; past
3/4 of the threads of a worker a poll is answered at once and the agent polls
again within 5-10 s, so fewer threads trade command latency for threads), or with
``--server werkzeug`` tests/serve_plane.py (werkzeug's threaded server, a
thread per connection). It runs N simulated clusters
(simulation.run_many) in this process: each fetches its repository over
git, reports its app to Healthy, heartbeats and holds a command long-poll.
Then it sends refresh commands to random apps through the API, one at a
time, and reads each command's created_at and done_at (the control plane's
own clock): delivery to the agent plus the agent's result, p50 and p95.
Control-plane memory is read from /proc: VmRSS and VmHWM of each process, and
their summed PSS (pages the workers share with the master count once).
Numbers to read, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import api_deploys  # noqa: E402 - benchmarks/: shipyard serve, processes, PSS
import httpx  # noqa: E402
import synthetic  # noqa: E402 - benchmarks/, this script's directory

from simulation import SimulatedCluster, SimulationSettings, run_many  # noqa: E402

PROFILE = (ROOT / "fixtures" / "clusters" / "demo.yaml").read_text()


def seed(database_url: str, data_dir: Path, agents: int) -> tuple[str, list[dict]]:
    """An admin token and N clusters ("simN", workspace "w", service "web"); their tokens."""
    app, token, _ = synthetic.bench_plane(database_url, data_dir)
    plane = app.extensions["shipyard"]
    try:
        client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
        clusters = []
        for index in range(agents):
            name = f"sim{index}"
            created = client.post("/api/v1/clusters", headers=headers,
                                  json={"name": name, "profile": PROFILE.replace("name: demo", f"name: {name}")})
            if created.status_code != 201:
                raise SystemExit(f"cannot create cluster {name}: {created.get_json()}")
            client.post(f"/api/v1/clusters/{name}/workspaces", headers=headers, json={"name": "w"})
            spec = (f"type: service\nname: web\nworkspace_fqn: {name}:w\n"
                    "image: {type: image, image_uri: 'ghcr.io/acme/web:1.0'}\nports: [{port: 8000}]\nreplicas: 2\n")
            deployed = client.put("/api/v1/apps", headers=headers, data=spec, content_type="application/yaml")
            if deployed.status_code != 200:
                raise SystemExit(f"cannot deploy to {name}: {deployed.get_json()}")
            clusters.append({"name": name, **created.get_json()})
            if (index + 1) % 50 == 0:
                print(f"  seeded {index + 1} clusters", flush=True)
        return token, clusters
    finally:
        plane.close()


def proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def serve_werkzeug(database_url: str, data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "serve_plane.py"), "--data", str(data_dir),
                                "--database-url", database_url, "--port", "0", "--reconcile-interval", "0"],
                               stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("listening on"):
            return process, f"http://127.0.0.1:{int(line.split()[-1])}"
    raise SystemExit(f"the control plane did not start; see {log}")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="how often each simulated ArgoCD fetches")
    parser.add_argument("--server", default="serve:2x400",
                        help="serve:WORKERSxTHREADS (shipyard serve, default 2x400) or werkzeug (tests/serve_plane.py)")
    args = parser.parse_args()
    if args.server != "werkzeug" and not re.fullmatch(r"serve:\d+x\d+", args.server):
        parser.error("--server is serve:WORKERSxTHREADS or werkzeug")

    with tempfile.TemporaryDirectory(prefix="simulated-agents-") as tmp:
        root = Path(tmp)
        postgres = None
        if args.database == "postgresql":
            from pgserver import PostgresServer

            postgres = PostgresServer(root / "pg")
            postgres.start()
            database_url = postgres.create_database("shipyard")
        else:
            database_url = f"sqlite:///{root / 'shipyard.db'}"
        started = time.monotonic()
        token, clusters = seed(database_url, root / "data", args.agents)
        print(f"seeded {len(clusters)} clusters in {time.monotonic() - started:.0f} s", flush=True)
        for noisy in ("httpx", "shipyard.access", "simulation"):  # a line per request or sync, 500 times over
            logging.getLogger(noisy).setLevel(logging.WARNING)
        if args.server == "werkzeug":
            process, url = serve_werkzeug(database_url, root / "data", root / "server.log")
            server = api_deploys.Server("agents", process, url, root / "server.log")
        else:
            workers, threads = (int(n) for n in args.server.split(":")[1].split("x"))
            server = api_deploys.serve("agents", database_url, root / "data", workers, threads)
            process, url = server.process, server.url
        pss = api_deploys.PssSampler(server).__enter__()
        stop = threading.Event()
        limits = httpx.Limits(max_connections=args.agents * 2 + 20, max_keepalive_connections=args.agents * 2)
        shared = httpx.Client(base_url=url, timeout=60.0, limits=limits)
        simulated = [SimulatedCluster(SimulationSettings(
            url=url, tenant="default", cluster=c["name"], agent_token=c["agent_token"], read_token=c["read_token"],
            mirror_dir=root / "mirrors" / c["name"], poll_seconds=args.poll_seconds, step_seconds=1.0,
            heartbeat_seconds=30.0, command_wait_seconds=20.0), client=shared) for c in clusters]
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0)
        try:
            started = time.monotonic()
            threads = run_many(simulated, stop, workers=16, tick_seconds=1.0)
            while True:
                online = [s for s in simulated if s.revision is not None and s.reporter.stream is not None]
                if len(online) == len(simulated):
                    break
                if time.monotonic() - started > 600:
                    raise SystemExit(f"only {len(online)} of {len(simulated)} simulated agents connected in 10 min")
                time.sleep(1)
            print(f"{len(simulated)} simulated agents reporting after {time.monotonic() - started:.0f} s", flush=True)
            time.sleep(5)  # let the first rollouts settle
            latencies, errors = [], 0
            for name in random.sample([c["name"] for c in clusters] * (args.commands // len(clusters) + 1),
                                      args.commands):
                sent = api.post(f"/api/v1/apps/{name}/w/web/commands", json={"type": "refresh"})
                sent.raise_for_status()
                command_id = sent.json()["id"]
                deadline = time.monotonic() + 60
                body: dict = {}
                while time.monotonic() < deadline:
                    response = api.get(f"/api/v1/commands/{command_id}")
                    if response.status_code != 200:  # counted and printed: see the 5xx note in the report
                        errors += 1
                        continue
                    body = response.json()
                    if body["state"] in ("done", "failed", "expired"):
                        break
                    time.sleep(0.01)
                if body.get("done_at") and body["state"] == "done":
                    latencies.append((dt.datetime.fromisoformat(body["done_at"])
                                      - dt.datetime.fromisoformat(body["created_at"])).total_seconds())
            pids = [process.pid, *api_deploys.children_of(process.pid)]
            rss, peak = sum(proc_kib(p, "VmRSS") for p in pids), sum(proc_kib(p, "VmHWM") for p in pids)
            threads_now = sum(len(list(Path(f"/proc/{p}/task").iterdir())) for p in pids)
            healthy = sum(1 for c in clusters
                          if api.get(f"/api/v1/apps/{c['name']}/w/web/status").json().get("health") == "Healthy")
            # (a 500 answer counts as not Healthy here)
            print(f"agents: {len(simulated)} simulated, {healthy} apps Healthy; database: {args.database}; "
                  f"{errors} non-200 answers to GET /api/v1/commands/<id> while waiting")
            print(f"commands: {len(latencies)} of {args.commands} answered; created -> done "
                  f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {quantile(latencies, 0.95) * 1000:.0f} ms, "
                  f"max {max(latencies) * 1000:.0f} ms")
            pss.__exit__(None, None, None)
            what = "werkzeug, one process" if args.server == "werkzeug" else f"shipyard serve {args.server[6:]}"
            print(f"control plane ({what}; {len(pids)} process(es), {threads_now} threads): RSS {rss / 1024:.0f} MiB "
                  f"now, VmHWM {peak / 1024:.0f} MiB summed, peak summed PSS {pss.peak / 2**20:.0f} MiB")
        finally:
            stop.set()
            server.stop()
            deadline = time.monotonic() + 30  # long-polls end with the server; bounded in total
            for thread in threads if "threads" in locals() else []:
                thread.join(max(0.0, deadline - time.monotonic()))
            shared.close()
            if postgres is not None:
                postgres.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
