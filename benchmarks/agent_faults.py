"""The agent's watch loop against a faulty API server: requests per watcher per minute, first snapshot time.

Two measurements against the fake API server (tests/fakekube.py) with the real kubernetes client:

- ``ends-at-once``: every watch ends right after its headers (a proxy closing them); each of
  ``--watchers`` watchers runs for ``--seconds`` with the agent's default back-off settings;
  prints the median requests per watcher per minute (goal: under 10);
- ``first-snapshot``: an agent following ``--namespaces`` namespaces, with none or one of them
  forbidden (403: created before its Role); prints the median seconds from start to the first
  complete snapshot at the test collector (goal: the same with one forbidden as with none).

    .venv/bin/python benchmarks/agent_faults.py [--runs 3] [--seconds 60] [--watchers 5] [--namespaces 10]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # agent/, tests/ (fakekube.py, the collector), run as a script

from agent.kube import DEPLOYMENT, KubeApi  # noqa: E402
from agent.main import Agent  # noqa: E402
from agent.report import Outbox, Tracker  # noqa: E402
from agent.settings import AgentSettings  # noqa: E402
from agent.watch import Target, Watcher  # noqa: E402
from tests.agent_collector import Collector  # noqa: E402
from tests.fakekube import FakeKube, client_configuration  # noqa: E402

MANAGED = {"app.kubernetes.io/managed-by": "shipyard"}


def settings_for(kube: FakeKube, **overrides) -> AgentSettings:
    """The agent's defaults (back-off, watch timeout), pointed at the fake and a collector."""
    values = dict(url="http://127.0.0.1:9", tenant="acme", cluster="bench", token="agent-token",
                  kube_configuration=client_configuration(kube), metrics_port=0)
    values.update(overrides)
    return AgentSettings(**values)


def requests_per_minute(seconds: float, watchers: int, seed: int) -> list[float]:
    """Requests per minute of each watcher, all running at once against watches that end at once."""
    with FakeKube() as kube:
        kube.end_watches()  # watches answered with the headers and a closed connection
        settings = settings_for(kube)
        api = KubeApi(settings.kubernetes_configuration(), connections=watchers + 4)
        running = [Watcher(api, Target(DEPLOYMENT, f"ns{i}"), Tracker(), Outbox(), settings,
                           rng=random.Random(seed * 1000 + i)) for i in range(watchers)]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in running]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for w in running:
            w.close()
        for thread in threads:
            thread.join(10)
        api.close()
        return [kube.count(path_contains=f"/namespaces/ns{i}/") * 60.0 / seconds for i in range(watchers)]


def first_snapshot(namespaces: int, forbidden: bool) -> float:
    """Seconds from the agent's start to the collector holding every allowed namespace's Deployment."""
    names = tuple(f"team{i}" for i in range(namespaces))
    with FakeKube() as kube:
        for name in names:
            kube.create("deployments", {"metadata": {"name": "web", "labels": MANAGED}}, name)
        if forbidden:
            kube.fail(403, times=10 ** 9, match=lambda method, path, query: "/namespaces/team0/" in path)
        collector = Collector(cluster="bench").start()
        agent = Agent(settings_for(kube, url=collector.url, namespaces=names, batch_interval=0.05))
        expected = namespaces - forbidden
        stop = threading.Event()
        started = time.monotonic()
        agent.start(stop)
        try:
            while len(collector.of_kind("Deployment")) < expected:
                if time.monotonic() - started > 300:
                    raise SystemExit("no first snapshot within 300 s")
                time.sleep(0.01)
            return time.monotonic() - started
        finally:
            stop.set()
            agent.stop()
            collector.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--watchers", type=int, default=5)
    parser.add_argument("--namespaces", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    rates = []
    for run in range(args.runs):
        rates += requests_per_minute(args.seconds, args.watchers, run)
    print(f"watches that end at once: median {statistics.median(rates):.1f} requests per watcher per minute "
          f"(max {max(rates):.1f}; {args.watchers} watchers x {args.runs} runs of {args.seconds:.0f} s)")
    for forbidden in (False, True):
        times = [first_snapshot(args.namespaces, forbidden) for _ in range(args.runs)]
        label = "one namespace forbidden" if forbidden else "none forbidden"
        print(f"first snapshot, {args.namespaces} namespaces, {label}: median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
