"""A small control-plane stand-in for agent tests: the agent endpoints of contract.protocol on loopback.

It keeps the seq rules the real control plane keeps (gitops.ingest and
webapp.agent_api's post_status: a stream starts with a snapshot at seq 1; the
next seq is applied; a duplicate is acknowledged without applying, answered
with ``duplicate: true``; a batch that arrives ahead of the one it follows --
the agent keeps two in flight -- waits up to ``gap_wait`` seconds
(STATUS_GAP_WAIT) for it, then a gap that stays, or an unknown stream, is
409), holds the objects it
was told about, records heartbeats and command results, and hands out
queued commands to the long-poll. It can be stopped and started again on the
same port (an outage), optionally forgetting everything (a control plane
that lost its state).
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from contract.protocol import API_PREFIX, decode_batch


class Collector:
    def __init__(self, tenant: str = "acme", cluster: str = "prod", token: str = "agent-token",
                 gap_wait: float = 2.0):
        self.tenant, self.cluster, self.token = tenant, cluster, token
        self.gap_wait = gap_wait  # gitops.status.StatusSettings.gap_wait
        self.lock = threading.Lock()
        self.applied = threading.Condition(self.lock)  # notified whenever the stream moves
        self.waited = 0  # batches that arrived ahead of their predecessor and waited for it
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.stream: str | None = None
        self.seq = 0
        self._snapshot: dict | None = None
        self.batches = 0
        self.conflicts = 0
        self.heartbeats: list[dict] = []
        self.commands: list[dict] = []
        self.results: dict[int, dict] = {}
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.connections: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Collector":
        collector = self

        class Handler(_Handler):
            owner = collector

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self, forget: bool = False) -> None:
        """Stop listening and drop every open (keep-alive) connection: a real outage."""
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()
        if forget:
            with self.lock:
                self.objects.clear()
                self.stream, self.seq, self._snapshot = None, 0, None

    def apply(self, data: dict) -> tuple[int, dict]:
        batch = decode_batch(data)
        deadline = time.monotonic() + self.gap_wait
        with self.lock:
            waited = False
            while True:
                if batch.stream == self.stream and batch.seq <= self.seq:
                    return 200, {"acked": batch.seq, "duplicate": True}
                starts = batch.snapshot and batch.seq == 1
                follows = batch.stream == self.stream and batch.seq == self.seq + 1
                if starts or follows:
                    break
                # A batch sent while its predecessor was still on the way may come first: wait for it.
                ahead = batch.seq > self.seq + 1 if batch.stream == self.stream else batch.snapshot and batch.seq > 1
                left = deadline - time.monotonic()
                if not ahead or left <= 0:
                    self.conflicts += 1
                    return 409, {"resync": True}
                if not waited:
                    self.waited, waited = self.waited + 1, True
                self.applied.wait(left)
            if starts:
                self.stream, self.seq, self._snapshot = batch.stream, 0, {}
            if batch.snapshot:
                for delta in batch.deltas:
                    self._snapshot[(delta.kind, delta.namespace, delta.name)] = delta.state
                if batch.final:
                    self.objects = self._snapshot
                    self._snapshot = None
            else:
                for delta in batch.deltas:
                    key = (delta.kind, delta.namespace, delta.name)
                    if delta.state is None:
                        self.objects.pop(key, None)
                    else:
                        self.objects[key] = delta.state
            self.seq = batch.seq
            self.batches += 1
            self.applied.notify_all()
            return 200, {"acked": batch.seq, "duplicate": False}

    def of_kind(self, kind: str) -> dict[tuple[str, str], dict]:
        with self.lock:
            return {(ns, name): state for (k, ns, name), state in self.objects.items() if k == kind}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: Collector

    def log_message(self, *args) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner.lock:
            self.owner.connections.add(self.connection)

    def finish(self) -> None:
        with self.owner.lock:
            self.owner.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        prefix = f"{API_PREFIX}/{self.owner.tenant}/{self.owner.cluster}/"
        if not self.path.startswith(prefix) or self.headers.get("Authorization") != f"Bearer {self.owner.token}":
            self._reply(401, {"error": "unauthorized"})
            return False
        self.rest = self.path[len(prefix):]
        return True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
        owner = self.owner
        if self.rest == "heartbeat":
            with owner.lock:
                owner.heartbeats.append(data)
                return self._reply(200, {"commands": len(owner.commands)})
        if self.rest == "status":
            return self._reply(*owner.apply(data))
        match = re.fullmatch(r"commands/(\d+)/result", self.rest)
        if match:
            with owner.lock:
                owner.results[int(match.group(1))] = data
            return self._reply(200, {})
        self._reply(404, {"error": "not found"})

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if not self.rest.startswith("commands"):
            return self._reply(404, {"error": "not found"})
        deadline = time.monotonic() + 0.5  # a short long-poll keeps the tests quick
        while True:
            with self.owner.lock:
                if self.owner.commands or time.monotonic() > deadline:
                    commands, self.owner.commands = self.owner.commands, []
                    return self._reply(200, {"commands": commands})
            time.sleep(0.02)


__all__ = ["Collector"]
