"""How long status stops when the agent token is rotated with no grace.

The agent runs against the fake API server and the test collector with its token in a
kubelet-like Secret volume (token -> ..data/token, ..data swapped to a new directory). Each round
rotates the token on the control plane (the old one is refused at once), changes an Application,
and measures until the control plane holds the change:

- together: the Secret file changes at the same moment (a rotation the kubelet already projected);
- file later: the file changes 2 to 3 s after the control plane (a different delay each round, so
  the change falls anywhere in the agent's 1 s look at the file); the gap counts from the file
  change (what the kubelet's sync delay adds is outside the agent).

    .venv/bin/python benchmarks/agent_token_rotation.py [rounds]

Before (issue 13) the file was read again only after a 401 and SHIPYARD_UNAUTHORIZED_BACKOFF (60 s):
a 121 s gap was seen. The settings here are the agent's defaults but for a short batch interval.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # agent/, tests/ (fakekube.py, the collector), run as a script

from agent.main import Agent  # noqa: E402
from tests.agent_collector import Collector  # noqa: E402
from tests.fakekube import FakeKube  # noqa: E402
from tests.test_agent_survival import mount_secret, swap_secret  # noqa: E402
from tests.test_agent_watch import app, make_settings  # noqa: E402

LATES = (2.0, 2.25, 2.5, 2.75, 3.0, 2.1, 2.6, 2.35, 2.85, 2.45)


def until(predicate, timeout: float = 300.0) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)
    return time.monotonic()


def main(rounds: int = 5) -> None:
    logging.basicConfig(level=logging.CRITICAL)
    together, later = [], []
    with FakeKube() as kube, tempfile.TemporaryDirectory() as tmp:
        kube.create("applications", app("shop.web"), "argocd")
        collector = Collector().start()
        secret = Path(tmp) / "secret"
        token_file = mount_secret(secret, collector.token)
        settings = make_settings(kube, url=collector.url, token="", token_file=str(token_file),
                                 batch_interval=0.2, heartbeat_interval=15, unauthorized_backoff=60,
                                 backoff_base=0.5, backoff_max=30, command_wait=30)
        agent = Agent(settings)
        stop = threading.Event()
        agent.start(stop)

        def holds(health: str):
            return lambda: collector.of_kind("Application").get(("argocd", "shop.web"), {}).get("health") == health

        until(holds("Healthy"))
        try:
            for index in range(rounds * 2):
                health = f"H{index}"
                token = f"token-{index}"
                with collector.lock:
                    collector.token = token
                rotated = time.monotonic()
                if index % 2 == 0:
                    swap_secret(secret, token)
                kube.update("applications", "argocd", "shop.web", {"status": {"health": {"status": health}}})
                if index % 2 == 1:
                    time.sleep(LATES[(index // 2) % len(LATES)])
                    rotated = time.monotonic()
                    swap_secret(secret, token)
                gap = until(holds(health)) - rotated
                (together if index % 2 == 0 else later).append(gap)
        finally:
            stop.set()
            agent.stop()
            collector.stop()
    print(f"status gap after a rotation with no grace, {rounds} rounds each (seconds):")
    print(f"  file changed with the control plane     median {statistics.median(together):6.2f}  "
          f"max {max(together):6.2f}")
    print(f"  file changed 2-3 s after it (from then) median {statistics.median(later):6.2f}  "
          f"max {max(later):6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", type=int, nargs="?", default=5, help="rotations per case (default 5)")
    main(parser.parse_args().rounds)
