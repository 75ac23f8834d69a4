"""A pipeline's ``shipyard deploy --wait``: how long it waits beyond Healthy, and what it costs the client.

What it measures
    The embedded control plane as users run it (``shipyard up``: SQLite, the
    cluster repository, and the SIMULATED compute plane in its process, which
    polls the repository every 180 s as ArgoCD does and fetches at once on the
    refresh each commit sends through the agent, rolls out and reports
    through the agent's code), and the ``shipyard`` command as a CI job runs
    it: its own process, no terminal, logged in with ``shipyard login``.

    Each round deploys new images of a directory of ``--apps`` service specs
    (one request per file, as ``deploy`` does), three ways taking turns:

    ``deploy --wait`` (N apps)   the pipeline step: deploy, then follow every
                                 new version until its cluster runs it
    ``deploy --wait`` (1 app)    the same for a single app
    ``deploy`` (N apps)          the peer: the same deploy without waiting;
                                 the benchmark then waits (polling every 2 s)
                                 so the next round starts from a calm cluster

    Beyond Healthy: for each app, the moment the control plane received the
    simulated cluster's report of it Synced and Healthy at its new commit
    (the ``at`` of that status event, ``GET .../status/history``); the
    pipeline can end no earlier than the last of them. Its figure is the
    process's exit minus that moment (same clock: one machine). Client CPU:
    the user + system seconds of the ``shipyard`` process (``wait4``), whole
    (start-up, deploy requests, the wait), and per app. Control plane CPU:
    what the ``shipyard up`` process used while the command ran (its
    simulated cluster included, which does the same work in every peer;
    the no-wait peer's figure covers only its deploy requests).

Run: ``.venv/bin/python benchmarks/deploy_wait.py [--rounds 8] [--apps 50]`` (about 4 minutes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
WORKSPACE = "storefront"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spec(name: str, tag: str) -> str:
    return (f"type: service\nname: {name}\nworkspace_fqn: demo:{WORKSPACE}\n"
            f"image: {{type: image, image_uri: 'ghcr.io/acme/{name}:{tag}'}}\nports: [{{port: 8000}}]\n"
            "resources: {cpu_request: 0.1, cpu_limit: 0.5, memory_request: 128, memory_limit: 256}\n")


class Plane:
    """``shipyard up`` in its own process, with the CLI logged in to it."""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"), "SHIPYARD_URL": self.url}
        self.log = (work / "up.log").open("w")
        self.process = subprocess.Popen([SHIPYARD, "up", "--data", str(work / "data"), "--port", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        password = re.search(r"^\s+password\s+(\S+)$", (work / "up.log").read_text(), re.MULTILINE).group(1)
        login = subprocess.run([SHIPYARD, "login", "--url", self.url, "--username", "admin"], input=password + "\n",
                               capture_output=True, text=True, env=self.env)
        assert login.returncode == 0, login.stderr
        stored = json.loads((work / "config" / "shipyard" / "credentials.json").read_text())
        token = stored["contexts"][stored["current"]]["token"]
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def healthy_at(self, app: str, since: float) -> float | None:
        """When the control plane got the report of ``app`` Synced and Healthy again after ``since``."""
        events = self.api.get(f"/api/v1/apps/demo/{WORKSPACE}/{app}/status/history",
                              params={"limit": 50}).json()["events"]
        moved = False
        for event in reversed(events):  # oldest first
            at = datetime.datetime.fromisoformat(event["at"]).timestamp()
            if at < since:
                continue
            if event["health"] == "Healthy" and event["sync"] == "Synced" and moved:
                return at
            moved = True
        return None

    def wait_calm(self, apps: list[str], since: float) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if all(self.healthy_at(app, since) for app in apps):
                return
            time.sleep(2)
        raise RuntimeError("the simulated cluster did not run every app within 5 minutes")

    def cpu(self) -> float:
        """CPU seconds the control plane's process (the simulated cluster in it too) has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def run_child(args: list[str], env: dict) -> tuple[int, str, str, float, float]:
    """Run a child to its end; its exit code, output, CPU seconds (wait4) and the time it ended."""
    out_file, err_file = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    child = subprocess.Popen(args, stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    ended = time.time()
    child.returncode = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    err_file.seek(0)
    return child.returncode, out_file.read(), err_file.read(), usage.ru_utime + usage.ru_stime, ended


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--apps", type=int, default=50)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deploy-wait-"))
    plane = Plane(work)
    many = [f"bench-{n:02d}" for n in range(options.apps)]
    one = ["bench-solo"]
    specs = {"many": work / "many", "one": work / "one"}
    for directory in specs.values():
        directory.mkdir()
    results: dict[str, dict[str, list[float]]] = {name: {"beyond": [], "cpu": [], "wall": [], "server": []}
                                                  for name in ("wait-many", "wait-one", "nowait-many")}

    def write(kind: str, apps: list[str], tag: str) -> None:
        for app in apps:
            (specs[kind] / f"{app}.yaml").write_text(spec(app, tag))

    try:
        # a first deploy of every app, untimed: the rounds change apps that exist, as a pipeline does
        write("many", many, "0")
        write("one", one, "0")
        for kind, apps in (("many", many), ("one", one)):
            started = time.time()
            code, _, err, _, _ = run_child([SHIPYARD, "deploy", str(specs[kind])], plane.env)
            assert code == 0, err
            plane.wait_calm(apps, started)
        peers = ["wait-many", "wait-one", "nowait-many"]
        for round_index in range(options.rounds):
            order = peers[round_index % 3:] + peers[:round_index % 3]
            for peer in order:
                kind, apps = ("one", one) if peer == "wait-one" else ("many", many)
                write(kind, apps, f"{round_index + 1}-{peer}")
                started, server_before = time.time(), plane.cpu()
                args = [SHIPYARD, "deploy", str(specs[kind])] + (["--wait", "--timeout", "5m"]
                                                                 if peer.startswith("wait") else [])
                code, _, err, cpu, ended = run_child(args, plane.env)
                results[peer]["server"].append(plane.cpu() - server_before)
                assert code == 0, err[-2000:]
                if peer.startswith("wait"):
                    last = max(plane.healthy_at(app, started) for app in apps)
                    results[peer]["beyond"].append(ended - last)
                else:
                    plane.wait_calm(apps, started)
                results[peer]["cpu"].append(cpu)
                results[peer]["wall"].append(ended - started)
                print(f"round {round_index + 1} {peer}: cpu {cpu:.2f} s, wall {ended - started:.1f} s"
                      + (f", beyond healthy {results[peer]['beyond'][-1] * 1000:.0f} ms" if peer.startswith("wait")
                         else ""), flush=True)
    finally:
        plane.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{options.rounds} rounds, {options.apps} apps; python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    for peer in ("wait-many", "wait-one"):
        beyond = [b * 1000 for b in results[peer]["beyond"]]
        print(f"{peer:<12} beyond Healthy: p50 {statistics.median(beyond):6.0f} ms   p95 {pct(beyond, 95):6.0f} ms"
              f"   max {max(beyond):6.0f} ms")
    for peer in ("wait-many", "nowait-many", "wait-one"):
        cpu, wall = results[peer]["cpu"], results[peer]["wall"]
        count = 1 if peer == "wait-one" else options.apps
        server = results[peer]["server"]
        print(f"{peer:<12} client CPU: median {statistics.median(cpu):6.2f} s ({statistics.median(cpu) / count * 1000:5.1f}"
              f" ms per app)   control plane CPU meanwhile: median {statistics.median(server):6.2f} s"
              f"   wall median {statistics.median(wall):5.1f} s")
    ratio = statistics.median(results["wait-many"]["cpu"]) / statistics.median(results["nowait-many"]["cpu"])
    print(f"deploy --wait / deploy (client CPU, {options.apps} apps): {ratio:.2f}x")


if __name__ == "__main__":
    main()
