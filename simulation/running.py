"""Running simulated clusters in threads: one for ``shipyard up``, many in one process for load tests.

The loop bodies live on ``SimulatedCluster`` (``run_once``, ``serve_commands``);
here is only how they are given threads, so the demo and the load benchmark
start them the same way and stop them with one event.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from agent.report import Unauthorized
from simulation.cluster import SimulatedCluster
from simulation.settings import SimulationSettings


def run_many(clusters: list[SimulatedCluster], stop: threading.Event, workers: int = 16,
             tick_seconds: float = 0.5, commands: bool = True) -> list[threading.Thread]:
    """Run many simulated clusters in this process cheaply, until ``stop`` is set (for load tests).

    One scheduler thread advances every cluster each tick through a small pool
    (fetches are subprocesses, so a pool keeps them overlapping), and each
    cluster holds its own command long-poll in a thread, as real agents would
    each hold a connection. Returns the started threads.
    """
    def schedule():
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulated-step") as pool:
            while not stop.is_set():
                started = time.monotonic()
                for future in [pool.submit(_step, cluster) for cluster in clusters]:
                    future.result()
                stop.wait(max(0.0, tick_seconds - (time.monotonic() - started)))

    def _step(cluster: SimulatedCluster) -> None:
        try:
            cluster.run_once()
        except Unauthorized as exc:
            cluster.log_failure("reporting", exc)

    threads = [threading.Thread(target=schedule, daemon=True, name="simulated-scheduler")]
    if commands:
        threads += [threading.Thread(target=c.serve_commands, args=(stop,), daemon=True,
                                     name=f"simulated-{c.settings.cluster}-commands") for c in clusters]
    for thread in threads:
        thread.start()
    return threads


def start_in_background(settings: SimulationSettings) -> tuple[SimulatedCluster, threading.Event, threading.Thread]:
    """One simulated cluster in a daemon thread (what ``shipyard up`` runs); set the event to stop it."""
    cluster = SimulatedCluster(settings)
    stop = threading.Event()
    thread = threading.Thread(target=cluster.run, args=(stop,), daemon=True, name=f"simulated-{settings.cluster}")
    thread.start()
    return cluster, stop, thread


__all__ = ["run_many", "start_in_background"]
