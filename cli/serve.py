"""``shipyard serve``: production, gunicorn workers over ``create_app()``, configured by ``SHIPYARD_*``.

Refuses a database that is not migrated. What the workers share is loaded in
the master before they fork (templates, validators); malloc arenas are
limited; the workers' metrics are summed through a private directory
(PROMETHEUS_MULTIPROC_DIR, set before anything imports prometheus_client); a
graceful stop answers the agents' command long-polls at once.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.exits import EXIT_INTERNAL, Failure
from cli.output import stderr

if TYPE_CHECKING:
    pass
from cli.server import check_migrated, safe_url, server_settings


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for the workers (forked from here, they inherit it).

    glibc gives threads up to 8 arenas per core, each holding on to freed memory; a worker
    with dozens of request threads then keeps far more resident than it uses (a 1x64 worker
    under 200 clients peaked at 245 MB with the default, 191 MB with 2 arenas). The standard
    MALLOC_ARENA_MAX environment variable, when set, is left to decide.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl has no arenas to cap)
        return
    m_arena_max = -8  # <malloc.h>
    libc.mallopt(m_arena_max, arenas)


def _share_with_workers(crd_schemas: str | None) -> None:
    """Load, before gunicorn forks the workers, what every worker would load for itself.

    The workers then share those pages with this process instead of each holding a copy:
    the app's modules, the spec validators and the Kubernetes schemas of the default
    version. ``gc.freeze`` keeps the collector of each worker from writing to (and so
    copying) every object it inherited.
    """
    import gc

    from renderer.kube import KubeSchemas
    from renderer.render import warm_up
    from webapp import agent_api, api, githttp_routes, oidc, pages  # noqa: F401 - what create_app imports

    warm_up(KubeSchemas.from_setting(crd_schemas))
    gc.collect()
    gc.freeze()


def _private_metrics_directory() -> Path:
    """A new directory (mode 0700) for the workers' metrics, named in PROMETHEUS_MULTIPROC_DIR.

    A scrape of /metrics reaches one worker, which alone counted only its own requests. With
    the directory set, prometheus_client writes each worker's values to files in it and the
    worker that answers sums them all (gitops.metrics). prometheus_client chooses how it keeps
    values when it is first imported, so this runs before anything imports it, here in the
    master whose modules the workers inherit (this module imports the server stack late for
    that). The directory is new on every start, so no earlier run's or other server's counts
    add in, and only this user can read it; serve removes it when it stops.
    """
    if "prometheus_client" in sys.modules:
        raise Failure("internal error: prometheus_client was imported before serve set PROMETHEUS_MULTIPROC_DIR, "
                      "so each worker would count on its own", EXIT_INTERNAL)
    directory = Path(tempfile.mkdtemp(prefix="shipyard-metrics-"))  # created empty, mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def _forget_dead_worker(_arbiter, worker) -> None:
    """gunicorn's child_exit hook, in the master: a worker ended (stopped, crashed, restarted).

    Its counters stay in the directory, so totals never go back when a worker is replaced;
    only live gauges (none so far) are dropped with it.
    """
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


KEEPALIVE_SECONDS = 30  # idle keep-alive connections cost a socket in the worker's poller, not a thread


def _worker_class():
    from gunicorn.workers.gthread import ThreadWorker

    class ShipyardWorker(ThreadWorker):
        """gunicorn's gthread worker whose graceful stop also ends the agents' command long-polls.

        A long-poll waits up to 30 s for a command; without this, a worker told to stop
        waited for every open one (the agent polls again, and reaches a worker that serves).
        """

        def handle_exit(self, sig, frame) -> None:  # SIGTERM: finish the requests in hand, then stop
            self._end_long_polls()
            super().handle_exit(sig, frame)

        def handle_quit(self, sig, frame) -> None:  # SIGINT, SIGQUIT: stop now (the interpreter still joins
            self._end_long_polls()                  # the request threads, long-polls among them)
            super().handle_quit(sig, frame)

        def _end_long_polls(self) -> None:
            # the worker's app (gunicorn sets wsgi when it loads it; a failed load has no extensions)
            control = getattr(getattr(self, "wsgi", None), "extensions", {}).get("shipyard")
            if control is not None:
                # not in the signal handler itself: it may have interrupted a thread holding the bell's lock
                threading.Thread(target=control.bell.close, name="shipyard-stop", daemon=True).start()

    return ShipyardWorker


def _gunicorn(options: dict):
    from gunicorn.app.base import BaseApplication

    class ShipyardServer(BaseApplication):
        """gunicorn through its Python API; each worker builds its own app (engine, reconciler)."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from webapp import create_app

            return create_app()

    return ShipyardServer()


@click.command()
@click.option("--bind", default="0.0.0.0:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 1024),
              help="Threads per worker (concurrent deploys to a cluster share one commit; a connected agent's "
                   "command long-poll holds one).")
@click.option("--timeout", default=120, show_default=True, type=click.IntRange(10, 3600),
              help="Seconds a request may take before its worker is restarted.")
@click.option("--connections", default=4000, show_default=True, type=click.IntRange(16, 100_000),
              help="Open connections per worker (gunicorn's worker_connections): idle keep-alive connections, "
                   "such as open dashboard pages between their asks, wait without a thread.")
def serve(bind: str, workers: int, threads: int, timeout: int, connections: int) -> None:
    """Run the control plane for production with gunicorn; settings from SHIPYARD_* (see README).

    A PostgreSQL database is never migrated here: when it is not at the head
    revision, serve refuses to start (exit 7) and asks for `shipyard db upgrade`.
    /metrics counts every worker, whichever one a scrape reaches (through a private
    temporary directory, made at start and removed at exit).
    """
    metrics_directory = _private_metrics_directory()
    master = os.getpid()
    try:
        settings = server_settings()
        check_migrated(settings)
        stderr.print(f"serving on {bind} with {workers} worker(s), database {safe_url(settings['DATABASE_URL'])}")
        # every agent's command long-poll holds a thread: keep a quarter of each worker's (at least 4) for
        # everything else
        os.environ.setdefault("SHIPYARD_AGENT_LONG_POLLS", str(max(1, threads - max(4, threads // 4))))
        _limit_malloc_arenas()
        _share_with_workers(settings["CRD_SCHEMAS"])
        _gunicorn({
            "bind": [bind], "workers": workers, "threads": threads, "worker_class": _worker_class(),
            "timeout": timeout, "graceful_timeout": 30, "accesslog": None, "errorlog": "-",
            "worker_connections": connections,
            # agents and CLIs reuse their connections; with gunicorn's 2 s a request sent on a connection
            # idle for 2-5 s (httpx keeps them 5 s) raced the server closing it, and failed
            "keepalive": KEEPALIVE_SECONDS,
            "proc_name": "shipyard",
            "child_exit": _forget_dead_worker,
        }).run()
    finally:
        # gunicorn's workers are forked inside run() and leave through this frame too (sys.exit)
        if os.getpid() == master:
            shutil.rmtree(metrics_directory, ignore_errors=True)
