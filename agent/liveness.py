"""Liveness: every loop records its progress; the probe fails when one of them is overdue.

The kubelet restarts a container whose liveness probe fails failureThreshold
times in a row; the probe is there to "catch a deadlock, where an application
is running, but unable to make progress" (Kubernetes, "Configure Liveness,
Readiness and Startup Probes"). The agent's threads can get into that state
where a process-level check cannot see it: a read that never returns, a lock
never released. So each loop tells its ``Progress`` when a step starts, when
the step gets somewhere (a batch acknowledged, a command carried out) and when
it ends and waits; a loop is stuck when it went longer than its budget without
either. A loop that waits is never stuck: through a control-plane outage or a
refused token each step ends quickly and says how long it waits, so the loop
is due back after that wait plus its budget, however long the outage lasts.

``health_app`` serves ``/livez`` (the name the Kubernetes API server uses for
its own liveness endpoint, "Kubernetes API health endpoints") beside the
Prometheus metrics on the metrics port: 200 while every loop is on time, 503
naming the loops that are not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LIVENESS_PATH = "/livez"


class Progress:
    """One loop's deadline: when it must next start a step, get somewhere in one, or end one."""

    def __init__(self, name: str, budget: float, clock: Callable[[], float]):
        self.name, self.budget, self.clock = name, budget, clock
        self.due = clock() + budget

    def advanced(self) -> None:
        """A step started, or got somewhere: the loop has ``budget`` seconds to get further."""
        self.due = self.clock() + self.budget

    def waiting(self, delay: float) -> None:
        """A step ended; the loop waits ``delay`` seconds before the next one."""
        self.due = self.clock() + max(delay, 0.0) + self.budget

    def overdue(self) -> float:
        """Seconds past the deadline (negative: on time)."""
        return self.clock() - self.due


class Liveness:
    """The Progress of every loop of the process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._loops: dict[str, Progress] = {}
        self._lock = threading.Lock()

    def track(self, name: str, budget: float) -> Progress:
        with self._lock:
            progress = self._loops[name] = Progress(name, budget, self.clock)
        return progress

    def stuck(self) -> list[tuple[str, float]]:
        """The loops past their deadline, with by how many seconds."""
        with self._lock:
            loops = list(self._loops.values())
        return [(p.name, late) for p in loops if (late := p.overdue()) > 0]


def health_app(liveness: Liveness, metrics_app):
    """A WSGI app: ``/livez`` from ``liveness``, every other path to ``metrics_app`` (Prometheus)."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != LIVENESS_PATH:
            return metrics_app(environ, start_response)
        stuck = liveness.stuck()
        if not stuck:
            body, status = b"ok\n", "200 OK"
        else:
            body = "".join(f"stuck: {name} ({late:.0f} s past its deadline)\n" for name, late in stuck).encode()
            status = "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve(app, port: int, addr: str = "0.0.0.0"):
    """Serve ``app`` on ``addr:port`` from a daemon thread, as prometheus_client's start_http_server does;
    returns the server (``shutdown()`` ends it)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a probe's thread never holds up shutdown

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # a probe every few seconds is not news
            pass

    server = make_server(addr, port, app, Server, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


__all__ = ["Liveness", "Progress", "health_app", "serve", "LIVENESS_PATH"]
