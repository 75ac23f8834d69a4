"""Status webhooks: from a state change to its webhook's arrival, and 100 subscriptions with a dead and a hanging one.

What it measures
    The embedded control plane as users run it (``shipyard up``: SQLite, the status webhooks'
    delivery worker passing every WEBHOOK_WORKER_INTERVAL, 0.25 s, and the SIMULATED compute
    plane in its process, which fetches the cluster repository on each commit's refresh (and
    every 180 s, ArgoCD's poll), rolls out and reports through the agent's code), and receivers as a team runs them: one
    ``ThreadingHTTPServer`` on loopback in this process, a path per subscription, answering
    204 at once, checking each delivery's signature with gitops.webhook_payloads ``verify``
    (the README's snippet) and recording its ``webhook-id`` and when it arrived. Subscriptions
    are made through the API (``POST /api/v1/webhooks``) by the admin ``shipyard up`` creates,
    a tenant-admin, who lets them reach 127.0.0.1 (``allowed_host``).

    Latency (``--rounds``): one app, and a subscription to its version.committed,
    version.synced and version.healthy. Each round deploys a new image with ``shipyard deploy
    FILE --wait`` in its own process, logged in with ``shipyard login``. Each event's figure is
    its arrival at the receiver minus the moment the control plane recorded the change: the
    envelope's ``occurred_at``. For a version committed that is the version's ``committed_at``;
    for Synced and Healthy it is the ``at`` of the status history's entry for the agent's
    report of the change (gitops.ingest stamps both with one clock reading), and the script
    checks that each is there. It is the first moment the state change exists outside the
    cluster; the part before it (the agent's 0.2 s batch and its request) is what
    status_latency.py measures. Peers, on the same changes:

    ``poll every 2 s``    a client asking ``GET .../status`` every 2 s (as ``deploy --wait``
                          did before it batched), as any outside system without webhooks
                          would: when its answer first showed the version committed, its
                          live version Synced, Healthy. Its phase is drawn afresh each round:
                          the simulated cluster moves on a 2 s beat too, and a poller locked
                          to it would see every change at the same delay
    ``deploy --wait``     the product's own follower (a batched status request every 0.25 s):
                          the process's exit, against the Healthy event

    Throughput (``--bursts``): a workspace, and 100 subscriptions to the same three events of
    it. A run deploys a new image of every app of a group (``shipyard deploy DIR``, one
    process), which makes one event of each type per app, each to 100 receivers, and ends when
    every answering receiver has each of them. Two groups: one app (300 deliveries in three
    waves seconds apart: what one receiver's trouble does to the others when the worker keeps
    up) and ``--apps`` apps (``--apps`` x 300 deliveries, the first wave at once: how fast the
    worker drains a backlog). Two kinds of run take turns (A B, then B A, ``--bursts`` pairs
    of each group):

    ``A``    100 receivers that answer at once
    ``B``    98 of those, one dead (its port refuses connections) and one hanging (it accepts
             the connection and never answers, so each attempt lasts the worker's 10 s timeout)

    Four subscriptions swing between the kinds, paused or resumed through the API before each
    run: two to answering receivers (active in A), the dead and the hanging one (active in B),
    so each run has 100 active subscriptions; a run after a B starts once the worker has let
    go of the hanging receiver. Figures: each delivery's arrival minus its event's
    ``occurred_at`` (p50, p95), and, for the group of ``--apps``, deliveries per second: those
    to the answering receivers over the time from the run's first event to its last arrival
    (one app's events come at the simulated cluster's pace, not the worker's). The goal: the
    98 receivers every run shares see a p95 in B within 1.5x of A's. The delivery logs of the
    dead and the hanging subscription show what their attempts came to.

    Checked: every delivery's signature verifies, no receiver got an event twice, and each
    version made one event of each type; a wrong answer exits 1.

Run: ``.venv/bin/python benchmarks/status_webhooks.py [--rounds 10] [--bursts 2] [--apps 10]`` (about 6 minutes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import httpx
import synthetic  # and the repository's root on sys.path, for gitops.webhook_payloads
from deploy_wait import SHIPYARD, Plane, free_port, pct, run_child
from spec_webhooks import at, wait_until

from gitops.webhook_payloads import verify

WORKSPACE = "storefront"  # a workspace of the demo cluster that `shipyard up` creates
LATENCY_APP = "notified"
BURST_WORKSPACE = "burst"
EVENTS = ("version.committed", "version.synced", "version.healthy")
POLL_SECONDS = 2.0
SUBSCRIBERS = 100
CORE = [f"recv-{index:02d}" for index in range(SUBSCRIBERS - 2)]  # active in every run
SWING_ANSWERING = ["recv-98", "recv-99"]  # active in runs A
DEAD, HANGING = "dead", "hanging"  # active in runs B
RUN_KINDS = {"A": SWING_ANSWERING, "B": [DEAD, HANGING]}
WAIT_TIMEOUT = "2m"


class Arrival(NamedTuple):
    """One delivery as a receiver got it."""

    receiver: str  # the subscription's name, its URL's path
    webhook_id: str  # the event's key
    type: str
    app: str
    version: int
    occurred_at: float
    at: float
    verified: bool


class Receivers:
    """One HTTP server on loopback that answers every delivery at once, a path per subscription; what arrived."""

    def __init__(self):
        self.secrets: dict[str, str] = {}
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                self.send_response(204)
                self.end_headers()
                receivers.record(self.path.strip("/"), self.headers, body, arrived)

            def log_message(self, *args):
                """Quiet: thousands of deliveries."""

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the worker opens up to 16 connections at once; 5 would drop SYNs

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="receivers", daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def record(self, name: str, headers, body: bytes, arrived: float) -> None:
        envelope = json.loads(body)
        data = envelope["data"]
        arrival = Arrival(name, headers.get("webhook-id", ""), envelope["type"], data["app"], data["version"],
                          at(envelope["occurred_at"]), arrived, verify(self.secrets[name], headers, body))
        with self._lock:
            self.arrivals.append(arrival)

    def since(self, start: int) -> list[Arrival]:
        with self._lock:
            return self.arrivals[start:]

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Hanging:
    """A receiver that accepts each connection, reads what comes, and never answers; each connection is held
    until the sender gives up on it."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.held = 0
        self.last_dropped = time.monotonic()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="hanging", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self.held += 1
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with connection:
            try:
                while connection.recv(65536):
                    pass
            except OSError:  # reset by the sender
                pass
        with self._lock:
            self.held -= 1
            self.last_dropped = time.monotonic()

    def idle_for(self, seconds: float) -> bool:
        """Whether no connection has been held for the last ``seconds``."""
        with self._lock:
            return self.held == 0 and time.monotonic() - self.last_dropped >= seconds

    def close(self) -> None:
        self.listener.close()


def subscribe(plane: Plane, receivers: Receivers, name: str, url: str, **scope: str) -> None:
    """A subscription of ``name`` to EVENTS of ``scope``, to ``url`` on 127.0.0.1; its secret goes to the receivers."""
    made = plane.api.post("/api/v1/webhooks", json={"name": name, "url": url, "events": list(EVENTS),
                                                    "allowed_host": "127.0.0.1", "cluster": "demo", **scope})
    assert made.status_code == 201, made.text
    receivers.secrets[name] = made.json()["secret"]


def set_state(plane: Plane, name: str, state: str) -> None:
    changed = plane.api.patch(f"/api/v1/webhooks/{name}", json={"state": state})
    assert changed.status_code == 200, changed.text


def deploy(plane: Plane, path: Path, *options: str) -> float:
    """``shipyard deploy PATH`` in its own process, to its end; when it ended."""
    code, _, err, _, ended = run_child([SHIPYARD, "deploy", str(path), *options], plane.env)
    assert code == 0, err[-2000:]
    return ended


# --- latency -----------------------------------------------------------------------------------------


class Poller:
    """A client asking ``GET .../status`` of one app every POLL_SECONDS: when an answer first showed each
    version committed, Synced and Healthy (as the events have it: its live version in that state)."""

    def __init__(self, plane: Plane, app: str):
        self.client = httpx.Client(base_url=plane.url, headers=plane.api.headers, timeout=30)
        self.path = f"/api/v1/apps/demo/{WORKSPACE}/{app}/status"
        self.seen: dict[tuple[int, str], float] = {}
        self._next = time.monotonic()
        self._rephase = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="poller", daemon=True)
        self._thread.start()

    def rephase(self) -> None:
        """The next poll at a random moment of the coming POLL_SECONDS, the beat kept from there."""
        self._rephase.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._rephase.wait(max(0.0, self._next - time.monotonic())):
                self._rephase.clear()
                self._next = time.monotonic() + random.uniform(0, POLL_SECONDS)
                continue
            self._next += POLL_SECONDS
            self._poll()

    def _poll(self) -> None:
        status = self.client.get(self.path).json()
        seen = time.time()
        live = status["live_version"]
        shown = [(v["number"], "version.committed") for v in status["versions"] if v["state"] == "committed"]
        if live is not None and status["sync"] == "Synced":
            shown.append((live, "version.synced"))
        if live is not None and status["health"] == "Healthy":
            shown.append((live, "version.healthy"))
        for key in shown:
            self.seen.setdefault(key, seen)

    def close(self) -> None:
        self._stop.set()
        self._rephase.set()
        self._thread.join(10)
        self.client.close()


class Latency(NamedTuple):
    """The latency part's samples, in seconds from each change as the control plane recorded it."""

    webhook: dict[str, list[float]]
    poll: dict[str, list[float]]
    wait_exit: list[float]  # deploy --wait's exit, from the Healthy event
    synced_to_healthy: list[float]  # between the two events' occurred_at: the simulated cluster's pace
    unmatched: list[str]  # events whose occurred_at the version or the status history does not hold


def recorded_at(plane: Plane, number: int) -> tuple[float, set[float]]:
    """Version ``number``'s ``committed_at``, and the ``at`` of the app's last status-history entries."""
    version = plane.api.get(f"/api/v1/apps/demo/{WORKSPACE}/{LATENCY_APP}/versions/{number}").json()
    history = plane.api.get(f"/api/v1/apps/demo/{WORKSPACE}/{LATENCY_APP}/status/history",
                            params={"limit": 20}).json()["events"]
    return at(version["committed_at"]), {at(event["at"]) for event in history}


def run_latency(plane: Plane, receivers: Receivers, work: Path, rounds: int) -> Latency:
    """Rounds of one deploy each (the module's docstring), with the poller beside the subscription."""
    spec_file = work / f"{LATENCY_APP}.yaml"
    spec_file.write_text(synthetic.spec_text(LATENCY_APP, WORKSPACE, "1.0.0", "web"))
    deploy(plane, spec_file, "--wait", "--timeout", WAIT_TIMEOUT)  # version 1, untimed: the app exists to subscribe to
    subscribe(plane, receivers, "latency", receivers.url("latency"), workspace=WORKSPACE, app=LATENCY_APP)
    poller = Poller(plane, LATENCY_APP)
    result = Latency({event: [] for event in EVENTS}, {event: [] for event in EVENTS}, [], [], [])
    try:
        for round_index in range(rounds):
            number = round_index + 2
            start = receivers.count()
            spec_file.write_text(synthetic.spec_text(LATENCY_APP, WORKSPACE, f"{number}.0.0", "web"))
            poller.rephase()
            ended = deploy(plane, spec_file, "--wait", "--timeout", WAIT_TIMEOUT)

            def arrived(number=number, start=start):
                got = {a.type: a for a in receivers.since(start) if a.receiver == "latency" and a.version == number}
                return got if len(got) == len(EVENTS) else None

            events = wait_until(f"the webhooks of {LATENCY_APP} v{number}", arrived)
            wait_until(f"the poller seeing {LATENCY_APP} v{number} Healthy",
                       lambda number=number: (number, "version.healthy") in poller.seen)
            committed_at, history = recorded_at(plane, number)
            for event, arrival in events.items():
                result.webhook[event].append(arrival.at - arrival.occurred_at)
                result.poll[event].append(poller.seen[(number, event)] - arrival.occurred_at)
                source = {committed_at} if event == "version.committed" else history
                if not any(abs(arrival.occurred_at - moment) < 1e-3 for moment in source):
                    result.unmatched.append(f"v{number} {event}")
            healthy = events["version.healthy"].occurred_at
            result.wait_exit.append(ended - healthy)
            result.synced_to_healthy.append(healthy - events["version.synced"].occurred_at)
            print(f"round {round_index + 1}: webhook " + ", ".join(
                f"{event.split('.')[1]} {result.webhook[event][-1] * 1000:4.0f} ms" for event in EVENTS)
                + f"; poll every 2 s: Healthy {result.poll['version.healthy'][-1] * 1000:5.0f} ms"
                + f"; deploy --wait exit {result.wait_exit[-1] * 1000:4.0f} ms", flush=True)
    finally:
        poller.close()
    return result


# --- throughput --------------------------------------------------------------------------------------


class Burst(NamedTuple):
    """One run of the throughput part: each answering receiver's deliveries, and the run's span."""

    apps: int
    kind: str
    delays: dict[str, list[float]]  # receiver -> each delivery's arrival minus its event's occurred_at
    deliveries: int
    span: float  # from the run's first event to its last arrival, seconds


class Bursts:
    """The throughput part's workspace, its apps in two groups (one app, and ``apps``), and the 104
    subscriptions of which 100 are active in each run (the module's docstring)."""

    def __init__(self, plane: Plane, receivers: Receivers, hanging: Hanging, work: Path, apps: int):
        self.plane, self.receivers, self.hanging = plane, receivers, hanging
        made = plane.api.post("/api/v1/clusters/demo/workspaces", json={"name": BURST_WORKSPACE})
        assert made.status_code == 201, made.text
        self.groups = {1: ["solo"], apps: [f"burst-{index:02d}" for index in range(apps)]}
        self.numbers = {size: 1 for size in self.groups}
        self.directories = {size: work / f"{BURST_WORKSPACE}-{size}" for size in self.groups}
        for size, directory in self.directories.items():  # version 1, untimed: before any subscription
            directory.mkdir()
            self._write(size)
            deploy(plane, directory, "--wait", "--timeout", WAIT_TIMEOUT)
        for name in CORE + SWING_ANSWERING:
            subscribe(plane, receivers, name, receivers.url(name), workspace=BURST_WORKSPACE)
        subscribe(plane, receivers, DEAD, f"http://127.0.0.1:{free_port()}/{DEAD}", workspace=BURST_WORKSPACE)
        subscribe(plane, receivers, HANGING, f"http://127.0.0.1:{hanging.port}/{HANGING}", workspace=BURST_WORKSPACE)
        self.active = {name: True for name in SWING_ANSWERING + [DEAD, HANGING]}

    def _write(self, size: int) -> None:
        for name in self.groups[size]:
            (self.directories[size] / f"{name}.yaml").write_text(
                synthetic.spec_text(name, BURST_WORKSPACE, f"{self.numbers[size]}.0.0", "web"))

    def _switch_to(self, kind: str) -> None:
        """The swinging subscriptions of ``kind`` active, the others paused; before a run A, the hanging
        receiver let go (an attempt in flight when it was paused lasts until its timeout)."""
        for other, swinging in RUN_KINDS.items():
            for name in swinging:
                if self.active[name] != (other == kind):
                    set_state(self.plane, name, "active" if other == kind else "paused")
                    self.active[name] = other == kind
        if kind == "A":
            wait_until("the hanging receiver let go", lambda: self.hanging.idle_for(1.0), timeout=60)

    def run(self, size: int, kind: str) -> Burst:
        """A new image of each app of the group, deployed at once; the run ends when every answering receiver
        has each of its events."""
        self._switch_to(kind)
        answering = CORE + (SWING_ANSWERING if kind == "A" else [])
        self.numbers[size] += 1
        number, start = self.numbers[size], self.receivers.count()
        apps = set(self.groups[size])
        self._write(size)
        deploy(self.plane, self.directories[size])
        expected, wanted = len(answering) * size * len(EVENTS), set(answering)

        def all_arrived():
            got = [a for a in self.receivers.since(start) if a.version == number and a.app in apps
                   and a.receiver in wanted]
            return got if len({(a.receiver, a.app, a.type) for a in got}) == expected else None

        got = wait_until(f"run {kind} of {size} apps: {expected} deliveries", all_arrived, every=0.2)
        delays: dict[str, list[float]] = {name: [] for name in answering}
        for arrival in got:
            delays[arrival.receiver].append(arrival.at - arrival.occurred_at)
        span = max(a.at for a in got) - min(a.occurred_at for a in got)
        core = [delay for name in CORE for delay in delays[name]]
        print(f"run {kind}, {size} apps: {len(got)} deliveries in {span:.1f} s, the 98 shared receivers "
              f"p50 {statistics.median(core) * 1000:.0f} ms, p95 {pct(core, 95) * 1000:.0f} ms", flush=True)
        return Burst(size, kind, delays, len(got), span)

    def close(self) -> dict[str, list[dict]]:
        """The dead and the hanging subscription paused; the attempts their delivery logs tell."""
        for name in RUN_KINDS["B"]:
            set_state(self.plane, name, "paused")
        return {name: attempts_logged(self.plane, name) for name in RUN_KINDS["B"]}


def run_bursts(plane: Plane, receivers: Receivers, hanging: Hanging, work: Path, apps: int,
               bursts: int) -> tuple[list[Burst], dict[str, list[dict]]]:
    """Runs A and B taking turns (A B, B A, ...), ``bursts`` pairs of each size: one app, then ``apps``; and the
    attempts the delivery log shows of the dead and the hanging subscription."""
    rig = Bursts(plane, receivers, hanging, work, apps)
    kinds = [kind for round_index in range(bursts) for kind in (("A", "B") if round_index % 2 == 0 else ("B", "A"))]
    results = [rig.run(size, kind) for size in (1, apps) for kind in kinds]
    return results, rig.close()


def attempts_logged(plane: Plane, name: str) -> list[dict]:
    """Every attempt of the subscription's deliveries, as its delivery log tells them."""
    deliveries = plane.api.get(f"/api/v1/webhooks/{name}/deliveries", params={"limit": 1000}).json()["deliveries"]
    return sorted((attempt for delivery in deliveries for attempt in delivery["attempt_log"]),
                  key=lambda attempt: attempt["at"])


# --- checks and figures ------------------------------------------------------------------------------


def problems(receivers: Receivers) -> list[str]:
    """What the receivers got that they should not have: a bad signature, an event twice, a version's state
    told by two events."""
    arrivals = receivers.since(0)
    wrong = []
    unsigned = sum(not a.verified for a in arrivals)
    if unsigned:
        wrong.append(f"{unsigned} deliveries whose signature did not verify")
    twice = [key for key, count in Counter((a.receiver, a.webhook_id) for a in arrivals).items() if count > 1]
    if twice:
        wrong.append(f"{len(twice)} events a receiver got more than once, e.g. {twice[:3]}")
    keys: dict[tuple[str, int, str], set[str]] = {}
    for arrival in arrivals:
        keys.setdefault((arrival.app, arrival.version, arrival.type), set()).add(arrival.webhook_id)
    split = [key for key, ids in keys.items() if len(ids) > 1]
    if split:
        wrong.append(f"{len(split)} version states told by more than one event, e.g. {split[:3]}")
    return wrong


def ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:6.0f} / {pct(values, 95) * 1000:6.0f} / "
            f"{max(values) * 1000:6.0f} ms")


def latency_summary(result: Latency, rounds: int) -> list[str]:
    lines = [(f"{rounds} rounds, one deploy each; from the change as recorded (occurred_at) to seen, "
              f"p50 / p95 / max; python {sys.version.split()[0]}, {os.cpu_count()} cpus"),
             f"{'':<18} {'webhook received':>26}   {'poll every 2 s':>26}"]
    for event in EVENTS:
        lines.append(f"{event:<18} {ms(result.webhook[event])}   {ms(result.poll[event])}")
    lines.append(f"{'deploy --wait exit':<18} {'':>26}   {ms(result.wait_exit)}  (from version.healthy)")
    healthy = statistics.median(result.webhook["version.healthy"])
    lines.append(f"webhook / poll every 2 s, Healthy (medians): "
                 f"{healthy / statistics.median(result.poll['version.healthy']):.2f}x; "
                 f"webhook / deploy --wait exit: {healthy / statistics.median(result.wait_exit):.2f}x")
    lines.append(f"Synced to Healthy (occurred_at, the simulated cluster's pace): median "
                 f"{statistics.median(result.synced_to_healthy):.1f} s")
    lines.append(f"occurred_at found as the version's committed_at / a status-history entry's at: "
                 f"{rounds * len(EVENTS) - len(result.unmatched)} of {rounds * len(EVENTS)}"
                 + (f" (not: {', '.join(result.unmatched)})" if result.unmatched else ""))
    return lines


def burst_summary(results: list[Burst]) -> list[str]:
    """Per size and kind of run: deliveries/s (the many apps' runs only: one app's events come at the simulated
    cluster's pace, not the worker's) and the delays; B / A of the 98 shared receivers' p95."""
    lines = [(f"{SUBSCRIBERS} subscriptions to {len(EVENTS)} events of each app; each delivery's delay from "
              "occurred_at, p50 / p95 / max"),
             f"{'':<52} {'deliveries/s':>12}   {'98 shared receivers':>26}   {'all answering':>26}"]
    for size in sorted({burst.apps for burst in results}):
        p95s = {}
        for kind, title in (("A", "100 answering"), ("B", "98 answering, 1 dead, 1 hanging")):
            runs = [burst for burst in results if burst.apps == size and burst.kind == kind]
            core = [delay for burst in runs for name in CORE for delay in burst.delays[name]]
            every = [delay for burst in runs for delays in burst.delays.values() for delay in delays]
            rate = f"{statistics.median(burst.deliveries / burst.span for burst in runs):12.0f}" if size > 1 else \
                f"{'-':>12}"
            p95s[kind] = pct(core, 95)
            lines.append(f"{f'{size} app(s), {len(runs)} runs {kind}: {title}':<52} {rate}   {ms(core)}   {ms(every)}")
        lines.append(f"{size} app(s): B / A, p95 of the 98 shared receivers: {p95s['B'] / p95s['A']:.2f}x "
                     f"(goal <= 1.5x)")
    return lines


def failing_summary(failing: dict[str, list[dict]]) -> list[str]:
    """What the delivery log says of the dead and the hanging receivers' attempts, and the time between their
    starts (the back-off; a gap that spans runs A, when the subscription was paused, is longer)."""
    lines = []
    for name, attempts in failing.items():
        said = Counter(attempt["error"] or f"HTTP {attempt['status_code']}" for attempt in attempts)
        starts = [at(attempt["at"]) for attempt in attempts]
        gaps = ", ".join(f"{later - earlier:.1f}" for earlier, later in itertools.pairwise(starts))
        lines.append(f"{name}: {len(attempts)} attempts, " + "; ".join(f"{count} {error!r}" for error, count in
                                                                     said.most_common())
                     + (f"; seconds between their starts: {gaps}" if gaps else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="deploys of the latency part (10)")
    parser.add_argument("--bursts", type=int, default=2, help="pairs of throughput runs, A and B (2)")
    parser.add_argument("--apps", type=int, default=10, help="apps each throughput run deploys (10)")
    options = parser.parse_args()
    if options.rounds < 1 or options.bursts < 1 or not 2 <= options.apps <= 100:
        parser.error("--rounds and --bursts are at least 1, --apps from 2 to 100")
    work = Path(tempfile.mkdtemp(prefix="status-webhooks-"))
    os.environ.setdefault("SHIPYARD_CRD_SCHEMAS", str(synthetic.SHARED_CRD_SCHEMAS))
    receivers, hanging = Receivers(), Hanging()
    try:
        plane = Plane(work)
        try:
            print(f"shipyard up pid {plane.process.pid}; receivers at {receivers.url('')}", flush=True)
            latency = run_latency(plane, receivers, work, options.rounds)
            bursts, failing = run_bursts(plane, receivers, hanging, work, options.apps, options.bursts)
        finally:
            plane.close()
    finally:
        receivers.close()
        hanging.close()
        shutil.rmtree(work, ignore_errors=True)
    wrong = problems(receivers)
    print()
    print("\n".join(latency_summary(latency, options.rounds) + burst_summary(bursts)
                    + failing_summary(failing)
                    + ["check: signatures, one arrival per event and receiver, one event per version state: "
                       + ("ok" if not wrong else "WRONG: " + "; ".join(wrong))]))
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
