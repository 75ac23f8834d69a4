"""Deploys per second through the API, with 200 clients, against the in-process apply rate.

What it measures
    A control plane (``shipyard serve``: gunicorn gthread workers over
    ``webapp.create_app``) on a throwaway PostgreSQL server (tests/pgserver.py)
    and, for comparison, one on SQLite, each with one cluster (the demo
    profile) of 200 apps in 4 workspaces. A separate client process (so the
    client load does not share the server's GIL) runs 200 concurrent
    ``aiohttp`` tasks on loopback; task ``i`` owns app ``i`` and PUTs
    its spec (``application/yaml``, one of the four synthetic shapes) with a
    new image tag every time, so every deploy renders and commits. Each round
    makes a fixed number of deploys. Peers, taking turns round by round:

    API <database>            ``PUT /api/v1/apps`` by 200 clients: committed
                              versions / wall time, p50/p95 latency per deploy
    in-process shipyard apply the limit: what ``shipyard apply FILE`` does
                              per spec (in this process), sequentially,
                              into a 200-app repository (``synthetic.build_repo``):
                              ``load_specs`` of the same YAML text the API gets,
                              ``render`` and ``gitops.apply.apply``
    in-process render+apply   the same without loading the YAML
    in-process apply, pre-rendered
                              the commit step alone: ``gitops.apply.apply`` of
                              an already rendered spec

    The API does more per deploy than ``shipyard apply`` (authorize, write
    the Version intent, record, HTTP), but concurrent deploys to one cluster
    share a commit (``gitops.commit_step.Committers``); the ratio API / in-process
    shipyard apply is the figure to read (goal >= 50%). Also reported: git
    commits against committed versions (how well group commit batches) and
    CPU per deploy of the server's processes, PostgreSQL's and the client's,
    the peak RSS (VmHWM) of each server process, and the peak total PSS of
    the server's processes, sampled every 0.2 s under the load (goal: under
    300 MB).

How
    ``timing.interleave`` rotates the peers each round; one warm-up round is
    dropped, and before it every client deploys once (creating its app).
    Rates are deploys per round / the median round time.

Run: ``.venv/bin/python benchmarks/api_deploys.py [--quick] [--servers postgresql:2x32,sqlite:2x32]``
(``--quick``: PostgreSQL only, 1 round of 200 deploys; about a minute.) Each
``--servers`` entry is a database and gunicorn ``<workers>x<threads>``; every
entry is its own server, database and cluster, all measured in the same run.
Needs the PostgreSQL server binaries (``apt-get install postgresql``), as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import synthetic
from synthetic import ROOT
from timing import interleave, ratio

sys.path.insert(0, str(ROOT / "tests"))  # tests/pgserver.py: the throwaway PostgreSQL server

CLUSTER = "demo"
TOKEN_ENV = "SHIPYARD_BENCH_TOKEN"  # how the client process gets the token (never on a command line)
SHIPYARD = Path(sys.executable).with_name("shipyard")
# Defaults of the command line, (full run, --quick); the --help text is built from them.
SERVERS = ("postgresql:2x32,sqlite:2x32", "postgresql:2x32")
ROUNDS = (5, 1)
DEPLOYS = (400, 200)
APPLIES = (200, 50)
CLIENTS = 200


# --- a seeded control plane, served by gunicorn -------------------------------------------------


def seed(database_url: str, data_dir: Path, apps: int) -> str:
    """Migrate, create an admin token, the demo cluster and the apps' workspaces; returns the token.

    Runs in this process through ``create_app`` and the API (Flask test client),
    before the server starts.
    """
    app, token, _ = synthetic.bench_plane(database_url, data_dir)
    plane = app.extensions["shipyard"]
    try:
        client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
        response = client.post("/api/v1/clusters", headers=headers,
                               json={"name": CLUSTER, "profile": synthetic.DEMO_PROFILE.read_text()})
        if response.status_code != 201:
            raise SystemExit(f"cannot create the cluster: {response.get_json()}")
        for workspace in sorted({synthetic.workspace_name(i) for i in range(apps)}):
            response = client.post(f"/api/v1/clusters/{CLUSTER}/workspaces", headers=headers, json={"name": workspace})
            if response.status_code != 201:
                raise SystemExit(f"cannot create workspace {workspace}: {response.get_json()}")
    finally:
        plane.close()
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """``shipyard serve`` on loopback (gunicorn master + workers)."""

    label: str
    process: subprocess.Popen
    url: str
    log_path: Path

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.process.pid, *children_of(self.process.pid)]

    def peak_rss(self) -> dict[int, int]:
        """Peak resident set size (VmHWM, bytes) of each process, master first."""
        return {pid: proc_kib(pid, "VmHWM") * 1024 for pid in self.pids()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of the workers
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def serve(label: str, database_url: str, data_dir: Path, workers: int, threads: int) -> Server:
    """Start ``shipyard serve`` and wait until /healthz answers."""
    import httpx

    port = free_port()
    env = {**os.environ, "SHIPYARD_DATABASE_URL": database_url, "SHIPYARD_DATA_DIR": str(data_dir),
           "SHIPYARD_LOG_FORMAT": "json", "SHIPYARD_CRD_SCHEMAS": str(synthetic.CRD_SCHEMAS.crd_dir or "")}
    log_path = data_dir.parent / f"server-{label.lower()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(SHIPYARD), "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(label, process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"shipyard serve exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"shipyard serve did not answer within 60 s:\n{log_path.read_text()[-3000:]}")


def count_commits(repo_path: Path) -> int:
    import pygit2

    repo = pygit2.Repository(str(repo_path))
    head = repo.references.get("refs/heads/" + synthetic.profile().branch)
    return sum(1 for _ in repo.walk(head.target)) if head is not None else 0


# --- the client process ------------------------------------------------------------------------------


async def burst(client, url: str, clients: int, deploys: int, round_tag: str) -> dict:
    """``deploys`` PUTs by ``clients`` concurrent tasks, task i deploying app i; latencies and outcomes."""
    import aiohttp

    tickets = iter(range(deploys))  # shared by the tasks (one event loop: no lock needed)
    latencies: list[float] = []
    states: dict[str, int] = {}
    errors: list[str] = []

    async def task(index: int) -> None:
        name, workspace = synthetic.app_name(index), synthetic.workspace_name(index)
        for ticket in tickets:
            text = synthetic.spec_text(name, workspace, f"{round_tag}.{ticket}", synthetic.shape_of(index))
            started = time.perf_counter()
            try:
                async with client.put(f"{url}/api/v1/apps", data=text.encode()) as response:
                    status, body = response.status, await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - started)
            if status in (200, 202):
                for version in json.loads(body)["versions"]:
                    states[version["state"]] = states.get(version["state"], 0) + 1
            else:
                errors.append(f"HTTP {status}: {body[:300].decode(errors='replace')}")

    started = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(clients)))
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "states": states, "errors": errors[:5],
            "error_count": len(errors)}


def client_main(url: str, clients: int) -> None:
    """Serve burst commands from stdin (one JSON object a line), answering on stdout.

    aiohttp (C-accelerated HTTP parsing) rather than httpx: the client shares the machine's
    cores with the server and the database, so every millisecond it spends per request is
    taken from what is measured (httpx cost 11-14 ms of CPU per deploy here).
    """
    import aiohttp

    async def loop() -> None:
        headers = {"Authorization": f"Bearer {os.environ[TOKEN_ENV]}", "Content-Type": "application/yaml"}
        for line in sys.stdin:
            command = json.loads(line)
            # New connections every burst: between bursts gunicorn closes idle keep-alive
            # connections (after 2 s), and a request racing that close fails.
            connector = aiohttp.TCPConnector(limit=clients)
            async with aiohttp.ClientSession(headers=headers, connector=connector,
                                             timeout=aiohttp.ClientTimeout(total=300)) as client:
                result = await burst(client, url, clients, command["deploys"], command["tag"])
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()

    asyncio.run(loop())


class Clients:
    """The client process for one server."""

    def __init__(self, server: Server, token: str, clients: int):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--client", server.url, "--clients", str(clients)],
            env={**os.environ, TOKEN_ENV: token}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.results: list[dict] = []

    def burst(self, deploys: int, tag: str) -> dict:
        self.process.stdin.write(json.dumps({"deploys": deploys, "tag": tag}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the client process died")
        result = json.loads(line)
        self.results.append(result)
        return result

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


# --- one control plane under test -------------------------------------------------------------------------


@dataclass
class Plane:
    label: str  # e.g. "PostgreSQL 2x32"
    server: Server
    clients: Clients
    repo_path: Path
    commits_before: int = 0
    commits_after: int = 0
    timed: list[dict] = field(default_factory=list)  # burst results of the timed rounds
    all_rounds: list[dict] = field(default_factory=list)  # including the warm-up round
    peak_pss: int = 0

    def committed(self, results: list[dict]) -> int:
        return sum(r["states"].get("committed", 0) for r in results)


def start_plane(kind: str, workers: int, threads: int, postgres, root: Path, apps: int) -> Plane:
    label = f"{'PostgreSQL' if kind == 'postgresql' else 'SQLite'} {workers}x{threads}"
    slug = f"{kind}-{workers}x{threads}"
    data_dir = root / slug / "data"
    if kind == "postgresql":
        database_url = postgres.create_database(slug.replace("-", "_"))
    else:
        database_url = f"sqlite:///{data_dir / 'shipyard.db'}"
    token = seed(database_url, data_dir, apps)
    server = serve(slug, database_url, data_dir, workers, threads)
    clients = Clients(server, token, apps)
    return Plane(label, server, clients, data_dir / "repos" / "default" / f"{CLUSTER}.git")


def parse_servers(text: str) -> list[tuple[str, int, int]]:
    servers = []
    for item in text.split(","):
        kind, _, shape = item.strip().partition(":")
        workers, _, threads = shape.partition("x")
        if kind not in ("postgresql", "sqlite") or not workers.isdigit() or not threads.isdigit():
            raise SystemExit(f"--servers: {item!r} is not postgresql|sqlite:<workers>x<threads>")
        servers.append((kind, int(workers), int(threads)))
    return servers


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far, with their children's, exited or not.

    An exited child's time moves into its parent's cutime/cstime once reaped (the
    postmaster reaps backends that close, gunicorn's master reaps workers), so the
    sum stays cumulative while children come and go.
    """
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None) -> float:
    return cpu_seconds([pid, *children_of(pid)]) if pid else 0.0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size: shared pages split between the processes sharing them (sums correctly)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class PssSampler:
    """The largest total PSS of a server's processes, sampled every 0.2 s while running."""

    def __init__(self, server: Server):
        self.server, self.peak = server, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = self.server.pids()
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, pss_bytes(pids))

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: servers {SERVERS[1]}, {ROUNDS[1]} round(s) of {DEPLOYS[1]} deploys, "
                             f"{APPLIES[1]} in-process applies per round")
    parser.add_argument("--servers", help="comma-separated postgresql|sqlite:<workers>x<threads> "
                                          f"(default {SERVERS[0]}; quick {SERVERS[1]})")
    parser.add_argument("--rounds", type=int, help=f"timed rounds (default {ROUNDS[0]}, quick {ROUNDS[1]})")
    parser.add_argument("--deploys", type=int,
                        help=f"deploys per API round (default {DEPLOYS[0]}, quick {DEPLOYS[1]})")
    parser.add_argument("--applies", type=int,
                        help=f"in-process applies per round (default {APPLIES[0]}, quick {APPLIES[1]})")
    parser.add_argument("--clients", type=int, default=CLIENTS,
                        help=f"concurrent API clients = apps in the cluster (default {CLIENTS})")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as the client process
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.clients)
        return

    import pygit2
    from pgserver import PostgresServer

    from gitops.apply import apply
    from renderer.render import render
    from renderer.spec import load_specs

    # create_app (in seed) would log every request of this process at INFO; only problems here
    logging.getLogger().setLevel(logging.ERROR)
    servers = parse_servers(args.servers or SERVERS[args.quick])
    rounds = args.rounds or ROUNDS[args.quick]
    per_round = args.deploys or DEPLOYS[args.quick]
    applies = args.applies or APPLIES[args.quick]
    apps, warmup = args.clients, 1
    profile = synthetic.profile()
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-api-"))
    os.chmod(root, 0o755)  # the postgres user keeps its data directory below
    print(f"api_deploys: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, pygit2 {pygit2.__version__}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"servers: shipyard serve (gunicorn gthread) {', '.join(f'{k} {w}x{t}' for k, w, t in servers)}; "
          f"{apps} clients each (aiohttp tasks, one separate process per server)")
    print(f"rounds {rounds} (+{warmup} warm-up), interleaved; {per_round} API deploys and {applies} "
          f"in-process applies per round; {apps} apps in {len({synthetic.workspace_name(i) for i in range(apps)})} "
          f"workspaces; temp dir {root}\n", flush=True)

    postgres = PostgresServer(root / "pg")
    planes: list[Plane] = []
    try:
        started = time.perf_counter()
        if any(kind == "postgresql" for kind, _, _ in servers):
            postgres.start()
        for kind, workers, threads in servers:
            planes.append(start_plane(kind, workers, threads, postgres, root, apps))
        for plane in planes:  # every client deploys once: the apps exist from here on
            result = plane.clients.burst(apps, "1.0")
            if result["error_count"] or result["states"].get("committed", 0) != apps:
                raise SystemExit(f"{plane.label}: the first deploys failed: {result}")
        print(f"setup (PostgreSQL, servers, first {apps} deploys each) in {time.perf_counter() - started:.1f} s",
              flush=True)

        started = time.perf_counter()
        repo = synthetic.build_repo(root / "inproc" / "repo.git", apps, profile).repo
        total_rounds = warmup + rounds

        def spec(index: int, tag: str):
            return synthetic.load_spec(synthetic.app_name(index), synthetic.workspace_name(index), tag,
                                       synthetic.shape_of(index))

        # one app per call, cycling over the apps; the pre-rendered ones are rendered here, untimed
        prerendered = [[render(spec(i % apps, f"2.{r}.{i}"), profile, synthetic.CRD_SCHEMAS) for i in range(applies)]
                       for r in range(total_rounds)]
        loaded = [[spec(i % apps, f"3.{r}.{i}") for i in range(applies)] for r in range(total_rounds)]
        texts = [[synthetic.spec_text(synthetic.app_name(i % apps), synthetic.workspace_name(i % apps), f"5.{r}.{i}",
                                      synthetic.shape_of(i % apps)) for i in range(applies)]
                 for r in range(total_rounds)]
        print(f"setup (in-process: {apps}-app repository, specs) in {time.perf_counter() - started:.1f} s\n",
              flush=True)

        no_commit = 0
        inproc_cpu = {"apply": [], "render+apply": [], "shipyard apply": []}  # CPU seconds per timed round

        def apply_round(r: int) -> None:
            nonlocal no_commit
            cpu = time.process_time()
            for rendering in prerendered[r]:
                no_commit += apply([rendering], profile, repo, author="bench").commit_id is None
            if r >= warmup:
                inproc_cpu["apply"].append(time.process_time() - cpu)

        def render_apply_round(r: int) -> None:
            nonlocal no_commit
            cpu = time.process_time()
            for loaded_spec in loaded[r]:
                no_commit += apply([render(loaded_spec, profile, synthetic.CRD_SCHEMAS)], profile, repo,
                                   author="bench").commit_id is None
            if r >= warmup:
                inproc_cpu["render+apply"].append(time.process_time() - cpu)

        def shipyard_apply_round(r: int) -> None:
            nonlocal no_commit
            cpu = time.process_time()
            for index, text in enumerate(texts[r]):
                renderings = [render(one, profile, synthetic.CRD_SCHEMAS) for one in load_specs(text, f"spec-{index}.yaml")]
                no_commit += apply(renderings, profile, repo, author="bench").commit_id is None
            if r >= warmup:
                inproc_cpu["shipyard apply"].append(time.process_time() - cpu)

        postgres_pid = postgres._process.pid if postgres._process is not None else None

        def api_round(plane: Plane):
            def run(r: int) -> None:
                database_pid = postgres_pid if plane.label.startswith("PostgreSQL") else None
                client_pid = plane.clients.process.pid
                before = [tree_cpu_seconds(plane.server.process.pid), tree_cpu_seconds(database_pid),
                          cpu_seconds([client_pid])]
                with PssSampler(plane.server) as sampler:
                    result = plane.clients.burst(per_round, f"4.{r}")
                after = [tree_cpu_seconds(plane.server.process.pid), tree_cpu_seconds(database_pid),
                         cpu_seconds([client_pid])]
                result["cpu"] = [b - a for a, b in zip(before, after)]
                plane.peak_pss = max(plane.peak_pss, sampler.peak)
                plane.all_rounds.append(result)
                if r >= warmup:
                    plane.timed.append(result)
            return run

        api_names = {f"API {p.label}, {apps} clients ({per_round} deploys)": p for p in planes}
        peers = {name: api_round(p) for name, p in api_names.items()}
        apply_name, render_apply_name = f"in-process apply, pre-rendered ({applies})", f"in-process render+apply ({applies})"
        cli_apply_name = f"in-process shipyard apply ({applies})"
        peers[apply_name], peers[render_apply_name] = apply_round, render_apply_round
        peers[cli_apply_name] = shipyard_apply_round
        for plane in planes:
            plane.commits_before = count_commits(plane.repo_path)
        started = time.perf_counter()
        samples = interleave(peers, rounds, warmup=warmup)
        print(f"measured in {time.perf_counter() - started:.0f} s\n")
        for plane in planes:
            plane.commits_after = count_commits(plane.repo_path)
        for sample in samples.values():
            print(sample.row(1, " s"))
        if no_commit:
            print(f"\nWARNING: {no_commit} in-process applies made no commit")

        apply_rate = applies / samples[apply_name].median
        render_apply_rate = applies / samples[render_apply_name].median
        cli_apply_rate = applies / samples[cli_apply_name].median
        apply_cpu = statistics.median(inproc_cpu["apply"]) / applies
        render_apply_cpu = statistics.median(inproc_cpu["render+apply"]) / applies
        cli_apply_cpu = statistics.median(inproc_cpu["shipyard apply"]) / applies
        print(f"\nin-process shipyard apply        {cli_apply_rate:8.1f} deploys/s (the limit); "
              f"CPU {cli_apply_cpu * 1e3:.1f} ms per deploy")
        print(f"in-process render+apply          {render_apply_rate:8.1f} deploys/s; "
              f"CPU {render_apply_cpu * 1e3:.1f} ms per deploy")
        print(f"in-process apply, pre-rendered   {apply_rate:8.1f} deploys/s; "
              f"CPU {apply_cpu * 1e3:.1f} ms per deploy")
        for name, plane in api_names.items():
            committed = [r["states"].get("committed", 0) for r in plane.timed]
            # committed versions / wall time, per round; the median round gives the rate
            rates = sorted(c / s for c, s in zip(committed, samples[name].seconds))
            rate = statistics.median(rates)
            latencies = [x for r in plane.timed for x in r["latencies"]]
            deploys = sum(len(r["latencies"]) for r in plane.timed)
            cpu = [sum(r["cpu"][i] for r in plane.timed) / deploys * 1e3 for i in range(3)]
            other: dict[str, int] = {}
            for r in plane.timed:
                for state, n in r["states"].items():
                    if state != "committed":
                        other[state] = other.get(state, 0) + n
            errors = sum(r["error_count"] for r in plane.timed)
            versions = plane.committed(plane.all_rounds)
            commits = plane.commits_after - plane.commits_before
            rss = plane.server.peak_rss()
            print(f"\nAPI on {plane.label}: {rate:8.1f} deploys/s (committed versions / wall time, median of "
                  f"{len(rates)} round(s); range {rates[0]:.1f}-{rates[-1]:.1f})")
            print(f"  latency per deploy: p50 {quantile(latencies, 50) * 1e3:.0f} ms, "
                  f"p95 {quantile(latencies, 95) * 1e3:.0f} ms ({len(latencies)} deploys)")
            print(f"  API / in-process shipyard apply {ratio(rate, cli_apply_rate)}  (goal >= 0.50x)")
            print(f"  API / in-process render+apply   {ratio(rate, render_apply_rate)}")
            print(f"  API / in-process apply, pre-rendered {ratio(rate, apply_rate)}")
            print(f"  CPU per deploy: server {cpu[0]:.1f} ms, PostgreSQL {cpu[1]:.1f} ms, client {cpu[2]:.1f} ms; "
                  f"server / in-process shipyard apply {ratio(cpu[0], cli_apply_cpu * 1e3)}")
            print(f"  group commit: {commits} git commits for {versions} committed versions "
                  f"({versions / commits if commits else 0:.1f} versions per commit)")
            if other or errors:
                print(f"  not committed: {other or 'none'}; errors: {errors} "
                      f"{[e for r in plane.timed for e in r['errors']][:3]}")
            print("  peak RSS (VmHWM): " + ", ".join(
                f"{'master' if pid == plane.server.process.pid else 'worker'} {size / 2**20:.0f} MB"
                for pid, size in rss.items()) + f"; peak total PSS {plane.peak_pss / 2**20:.0f} MB (goal < 300 MB)")
    finally:
        for plane in planes:
            try:
                plane.clients.close()
            finally:
                plane.server.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
