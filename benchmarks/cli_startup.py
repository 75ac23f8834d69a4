"""What a ``shipyard`` command costs to start: CPU time and peak memory of whole processes.

What it measures
    Each peer is one whole process, started fresh every round, as a person or
    a CI step starts it. Read from the child's own rusage (``os.wait4``):

    CPU         user + system seconds of the child process alone (not the wall
                clock: on a shared 2-core machine the wall clock mostly measures
                the neighbours; CPU time measures what the command did)
    peak RSS    the child's largest resident set, as GNU time (``/usr/bin/time -f %M``)
                reads it from its own ``wait4``: Linux carries the high-water mark of
                the memory a process was forked from across ``exec``, so read directly
                here every child would show at least this benchmark's own RSS; under
                the small ``time`` process it shows the command's own. (CPU time then
                includes ``time`` itself, well under a millisecond.)

    Peers, with the goal each ``shipyard`` command is held to (CPU, median):

    git --version                       a native command, for scale
    python -c pass                      the interpreter alone (this venv's); the floor
    shipyard --version                  <= 0.15 s  the command line's own start-up
    shipyard validate web.yaml          <= 0.5 s   offline: load and check one spec
    shipyard render web.yaml --cluster  <= 0.8 s   offline: render it for the demo cluster
    shipyard deploy web.yaml (client)   <= 0.3 s   the client process only, against a real
                                                   control plane (``shipyard up --no-simulate``
                                                   on loopback, started once, logged in once);
                                                   the server's work is not the client's CPU

How
    Every peer takes a turn in each round, in an order that rotates from round
    to round, so a burst of load from a neighbour hits all peers alike; one
    warm-up round is dropped (it fills the page cache and writes .pyc files).
    Reported: median CPU time, median peak RSS, wall-clock median for
    reference, the ratio of CPU time to ``python -c pass``, and the goal.

Run: ``.venv/bin/python benchmarks/cli_startup.py [--quick] [--rounds N]``
(15 rounds by default, 40 s to 2 minutes; ``--quick`` 5 rounds, 20-40 s.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from timing import ratio

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SHIPYARD = str(Path(sys.executable).parent / "shipyard")  # the installed console script, as people run it
SPEC = "fixtures/specs/web.yaml"
CLUSTER = "fixtures/clusters/demo.yaml"
GNU_TIME = "/usr/bin/time"  # Debian's package "time"
STARTUP_LIMIT = 180.0  # seconds; only a bound on waiting for a control plane that never comes up


@dataclass
class Peer:
    label: str
    argv: list[str]
    goal: float | None = None  # CPU seconds, median
    env: dict[str, str] | None = None
    cpu: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


def run_once(peer: Peer, rss_file: Path) -> tuple[float, int, float]:
    """Run the peer's process to the end: (CPU seconds, peak RSS in KiB, wall seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", str(rss_file), *peer.argv], cwd=ROOT, env=peer.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 reaps the child and returns its rusage, its own and its reaped children's (the command under
    # time); Popen then must not wait for it again
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{peer.label} exited with {process.returncode}:\n{errors[-2000:]}")
    peak_kib = int(rss_file.read_text().split()[-1])  # GNU time's %M: KiB
    return usage.ru_utime + usage.ru_stime, peak_kib, wall


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_env(config_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k == "SHIPYARD_CRD_SCHEMAS"}
    return {**env, "XDG_CONFIG_HOME": str(config_home), "COLUMNS": "200"}


def start_control_plane(base: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """``shipyard up --no-simulate`` on a free loopback port, and a client environment logged in to it."""
    import httpx  # only here: the timed peers are separate processes, this one may import what it likes

    port, config_home = free_port(), base / "config"
    url = f"http://127.0.0.1:{port}"
    env = client_env(config_home)
    log = (base / "server.log").open("ab")
    server = subprocess.Popen([SHIPYARD, "up", "--no-simulate", "--data", str(base / "data"), "--port", str(port)],
                              cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                              stderr=log, text=True)
    banner = []
    for line in server.stdout:  # the password is printed once, before serving
        banner.append(line)
        if line.startswith("Shipyard is running at"):
            break
    password = re.search(r"^  password\s+(\S+)$", "".join(banner), re.MULTILINE)
    if password is None:
        server.kill()
        raise SystemExit("shipyard up printed no admin password:\n" + "".join(banner)
                         + (base / "server.log").read_text()[-2000:])
    deadline = time.monotonic() + STARTUP_LIMIT
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the control plane did not come up:\n" + (base / "server.log").read_text()[-2000:])
        time.sleep(0.2)
    login = subprocess.run([SHIPYARD, "login", "--url", url], input=f"admin\n{password.group(1)}\n",
                           capture_output=True, text=True, cwd=ROOT, env=env)
    if login.returncode != 0:
        raise SystemExit(f"shipyard login failed: {login.stderr}")
    return server, env


def main() -> None:
    # The commands run as an installed package runs: with its modules' bytecode written (pip compiles
    # it at install time). Set in the environment, PYTHONDONTWRITEBYTECODE would have every command
    # compile again each run whatever changed since the last write; the warm-up round writes it here.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per peer (default 15, quick 5)")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} is missing: install GNU time (Debian: apt-get install time)")
    warmup = 1

    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"cli_startup: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {git_version}, load average "
          + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    print(f"rounds {rounds} (+{warmup} warm-up), interleaved; CPU = user + sys of the child process\n")

    base = Path(tempfile.mkdtemp(prefix="shipyard-cli-bench-"))
    server = None
    try:
        server, env = start_control_plane(base)
        peers = [
            Peer("git --version", ["git", "--version"]),
            Peer("python -c pass", [PYTHON, "-c", "pass"]),
            Peer("shipyard --version", [SHIPYARD, "--version"], goal=0.15),
            Peer("shipyard validate web.yaml", [SHIPYARD, "validate", SPEC], goal=0.5),
            Peer("shipyard render web.yaml --cluster demo", [SHIPYARD, "render", SPEC, "--cluster", CLUSTER],
                 goal=0.8),
            Peer("shipyard deploy web.yaml (client)", [SHIPYARD, "deploy", SPEC], goal=0.3, env=env),
        ]
        for round_index in range(warmup + rounds):
            shift = round_index % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                cpu, rss, wall = run_once(peer, base / "peak-rss")
                if round_index >= warmup:
                    peer.cpu.append(cpu)
                    peer.rss_kib.append(rss)
                    peer.wall.append(wall)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(base, ignore_errors=True)

    floor = statistics.median(peers[1].cpu)
    print(f"{'':<40} {'CPU median':>11} {'peak RSS':>10} {'wall median':>12} {'CPU / python':>13}   goal (CPU)")
    for peer in peers:
        cpu = statistics.median(peer.cpu)
        verdict = ""
        if peer.goal is not None:
            verdict = f"<= {peer.goal:.2f} s  {'met' if cpu <= peer.goal else 'MISSED'}"
        print(f"{peer.label:<40} {cpu:9.3f} s {statistics.median(peer.rss_kib) / 1024:7.1f} MB "
              f"{statistics.median(peer.wall):10.3f} s {ratio(cpu, floor):>13}   {verdict}")


if __name__ == "__main__":
    main()
