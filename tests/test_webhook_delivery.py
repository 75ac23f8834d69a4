"""Status webhooks delivered (gitops.webhook_delivery) to real HTTP receivers on loopback.

The receivers are ``ThreadingHTTPServer``s on 127.0.0.1, reached over plain http because each
subscription's ``allowed_host`` is 127.0.0.1 (what a tenant-admin sets for a private receiver).
They verify signatures with the README's own snippet. Time is the worker's ``now`` and the
back-off's ``jitter`` is fixed, so a day of retries runs in a second; a receiver that hangs meets
a timeout of a second or two. What the database decides (exactly once, across a restart and
between two workers) runs on SQLite and PostgreSQL; what the network does, on SQLite.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select, update

from gitops import webhook_payloads, webhooks
from gitops.models import (AuditEvent, Cluster, Tenant, WebhookAttempt, WebhookDelivery, WebhookEvent,
                           WebhookSubscription, utcnow)
from gitops.policy import Grant, Principal, Scope
from gitops.service_context import Context
from gitops.status import StatusSettings
from gitops.webhook_delivery import REFUSED, WebhookWorker, retry_delay
from gitops.webhook_events import envelope
from tests.plane import add_cluster, app_config, make_user
from webapp import create_app

HEALTHY = {"tenant": "default", "cluster": "demo", "workspace": "payments", "app": "ledger", "version": 12,
           "action": "deploy", "deployment_id": "d-12", "commit": "0123456789abcdef0123456789abcdef01234567",
           "changed": True, "source_commit": None, "author": "ana", "origin": None, "sync": "Synced",
           "health": "Healthy", "operation": "Succeeded", "revision": "0123456789abcdef0123456789abcdef01234567",
           "message": None}


# --- receivers ------------------------------------------------------------------------------------------


@dataclass
class Got:
    path: str
    headers: Message  # as http.server gives them: looked up without regard to case
    body: bytes
    at: float  # time.monotonic()


class Receiver:
    """An HTTP server on loopback that answers each POST with ``answer(handler, receiver)`` and keeps what it got."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, Receiver], None]):
        self.answer = answer
        self.got: list[Got] = []
        self.connections = 0
        self.released = threading.Event()  # ends the answers that wait (hanging, dripping)
        self.finished = threading.Event()  # an endless answer could write no more
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(Got(self.path, self.headers, body, time.monotonic()))
                receiver.answer(self, receiver)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request, client_address):
                receiver.connections += 1
                super().process_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def answering(*codes: int, **headers: str):
    """Answer the first request with the first code, the next with the next, ..., the rest with the last."""
    def answer(handler, receiver):
        handler.send_response(codes[min(len(receiver.got), len(codes)) - 1])
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def slowly(seconds: float):
    def answer(handler, receiver):
        time.sleep(seconds)
        answering(200)(handler, receiver)
    return answer


def hanging(handler, receiver):
    receiver.released.wait()  # never answers


def dripping(handler, receiver):
    """A status line, then a header a byte at a time: every read gets something, the answer never ends."""
    try:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not receiver.released.wait(0.1):
            handler.wfile.write(b"a")
            handler.wfile.flush()
    except OSError:
        pass


def endlessly(handler, receiver):
    """A 200 whose chunked body never ends, until the client goes away."""
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    try:
        while not receiver.released.is_set():
            handler.wfile.write(chunk)
    except OSError:
        receiver.finished.set()


def redirecting(to: str):
    def answer(handler, receiver):
        handler.send_response(301)
        handler.send_header("Location", to)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(answer) -> Receiver:
        made.append(Receiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def readme_verify():
    """The README's verification snippet, run as a receiver would paste it; and its text."""
    blocks = re.findall(r"```python\n(.*?)```", Path("README.md").read_text(), re.S)
    snippet = next(block for block in blocks if "def verify(" in block)
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - the documented snippet is what is under test
    return namespace["verify"], snippet


# --- control planes, workers, subscriptions, events --------------------------------------------------------


@pytest.fixture
def planes(tmp_path):
    """Control planes on one data directory; each closed at the end (or by the test)."""
    apps = []

    def make(database_url: str, **extra):
        apps.append(create_app(app_config(tmp_path / "data", database_url, **extra)))
        return apps[-1].extensions["shipyard"]

    yield make
    for app in apps:
        app.extensions["shipyard"].close()


@pytest.fixture
def plane(planes, tmp_path):
    return planes(f"sqlite:///{tmp_path / 'shipyard.db'}")


@pytest.fixture
def workers():
    made: list[WebhookWorker] = []

    def make(plane, name: str = "test-worker", timeout: float = 2.0, jitter: float = 1.0) -> WebhookWorker:
        made.append(WebhookWorker(plane.sessions, plane.repos, name, 0, StatusSettings(),
                                  read_sessions=plane.read_sessions, timeout=timeout, jitter=lambda: jitter))
        return made[-1]

    yield make
    for worker in made:
        worker.stop()


def admin_context(plane, session) -> Context:
    tenant_id = session.scalar(select(Tenant.id))
    return Context(session, Principal(tenant_id, 0, "admin", (Grant("tenant-admin", Scope(tenant_id)),)), plane.repos)


def subscribe(plane, url: str, name: str = "hook", events: tuple[str, ...] = ("version.healthy",),
              format: str = "shipyard", allowed_host: str | None = "127.0.0.1") -> str:
    """A tenant-wide subscription made by the service, as the API makes it; its secret."""
    with plane.sessions.begin() as session:
        return webhooks.create_subscription(admin_context(plane, session), name, url, events=list(events),
                                            format=format, allowed_host=allowed_host).secret


def happen(plane, key: str, type: str = "version.healthy", at: dt.datetime | None = None,
           data: dict | None = None) -> None:
    with plane.sessions.begin() as session:
        webhooks.emit(session, tenant_id=session.scalar(select(Tenant.id)), type=type, key=key, cluster_id=None,
                      workspace_id=None, application_id=None, data=data or HEALTHY, occurred_at=at or utcnow())


def deliveries(plane, name: str = "hook") -> list[WebhookDelivery]:
    with plane.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).join(WebhookSubscription).where(
            WebhookSubscription.name == name).order_by(WebhookDelivery.event_id)))


def attempts(plane) -> list[WebhookAttempt]:
    with plane.sessions() as session:
        return list(session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))


def subscription(plane, name: str = "hook") -> WebhookSubscription:
    with plane.sessions() as session:
        return session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == name))


# --- delivered once, signed ------------------------------------------------------------------------------


def test_an_event_reaches_each_subscription_that_hears_it_once_signed_as_the_readme_shows(
        database_url, planes, receivers, workers):
    plane = planes(database_url)
    receiver = receivers(answering(204))
    secret = subscribe(plane, receiver.url())
    subscribe(plane, receiver.url("/runs"), name="runs", events=("run.failed",))
    happen(plane, "version/12/healthy/s1.4")
    worker = workers(plane)

    assert worker.run_once() == 1
    (got,) = receiver.got
    verify, snippet = readme_verify()
    assert inspect.getsource(webhook_payloads.verify) in snippet  # the README shows the code that is tested
    assert verify(secret, got.headers, got.body)
    assert not verify(secret, got.headers, got.body + b" ")
    assert not verify("whsec_" + "A" * 44, got.headers, got.body)
    assert got.path == "/hook"
    assert got.headers["webhook-id"] == got.headers["Idempotency-Key"] == "version/12/healthy/s1.4"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 30
    assert got.headers["Content-Type"] == "application/json" and got.headers["User-Agent"] == "Shipyard"
    with plane.sessions() as session:
        event = session.scalar(select(WebhookEvent))
        assert json.loads(got.body) == envelope(event) and event.fanned_out
    (delivery,) = deliveries(plane)
    assert (delivery.state, delivery.attempts, delivery.status_code, delivery.error) == ("delivered", 1, 204, None)
    assert delivery.delivered_at is not None and delivery.claimed_by is None
    (attempt,) = attempts(plane)
    assert (attempt.delivery_id, attempt.status_code, attempt.error, attempt.worker) == \
        (delivery.id, 204, None, "test-worker")
    assert deliveries(plane, "runs") == []

    happen(plane, "version/12/healthy/s1.4")  # the same change again: one event, already sent
    assert worker.run_once() == 0
    assert len(receiver.got) == 1 and len(deliveries(plane)) == 1


def test_during_a_rotation_each_delivery_verifies_with_the_old_secret_and_the_new(plane, receivers, workers):
    receiver = receivers(answering(200))
    old = subscribe(plane, receiver.url())
    with plane.sessions.begin() as session:
        context = admin_context(plane, session)
        new = webhooks.rotate_secret(context, webhooks.get_subscription(context, "hook"), 3600)
    happen(plane, "version/12/healthy/s1.5")
    workers(plane).run_once()
    (got,) = receiver.got
    verify, _ = readme_verify()
    assert len(got.headers["webhook-signature"].split()) == 2
    assert verify(old, got.headers, got.body) and verify(new, got.headers, got.body)


def test_the_slack_and_teams_formats_are_sent_as_their_incoming_webhooks_take_them(plane, receivers, workers):
    receiver = receivers(answering(200))
    subscribe(plane, receiver.url("/slack"), name="chat", format="slack")
    subscribe(plane, receiver.url("/teams"), name="channel", format="teams")
    happen(plane, "version/12/healthy/s1.6")
    assert workers(plane).run_once() == 2
    bodies = {got.path: json.loads(got.body) for got in receiver.got}
    assert bodies["/slack"]["text"] == "payments/ledger on demo: version 12 is healthy"
    assert [block["type"] for block in bodies["/slack"]["blocks"]] == ["section", "section", "context"]
    (attachment,) = bodies["/teams"]["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["body"][0]["text"] == "payments/ledger on demo: version 12 is healthy"


# --- retries ------------------------------------------------------------------------------------------------


def test_the_back_off_doubles_from_5_s_to_an_hour_with_full_jitter_and_honours_retry_after():
    assert [retry_delay(n, 1.0) for n in range(1, 13)] == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert retry_delay(3, 0.5) == 10 and retry_delay(1, 0.0) == 1.0  # never sooner than a second
    assert retry_delay(400, 0.999) == pytest.approx(3596.4)
    assert retry_delay(1, 0.1, retry_after=120) == 120 and retry_delay(1, 0.1, retry_after=10**9) == 3600


def test_a_failing_receiver_is_retried_for_a_day_then_given_up_and_its_subscription_paused(
        database_url, planes, receivers, workers):
    plane = planes(database_url)
    receiver = receivers(answering(500))
    subscribe(plane, receiver.url())
    start = utcnow()
    happen(plane, "version/12/healthy/s1.7", at=start)
    worker = workers(plane)

    now, waits, first_end = start, [], None
    while True:
        assert worker.run_once(now) == 1
        (delivery,) = deliveries(plane)
        ended = now + dt.timedelta(milliseconds=delivery.duration_ms)  # the back-off runs from the attempt's end
        first_end = first_end or ended
        if delivery.state != "pending":
            break
        waits.append((delivery.next_attempt_at - ended).total_seconds())
        now = delivery.next_attempt_at
    assert waits[:12] == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert set(waits[11:]) == {3600}
    assert (delivery.state, delivery.status_code, delivery.error) == ("failed", 500, "the receiver answered HTTP 500")
    assert now >= start + dt.timedelta(hours=24) and now - start < dt.timedelta(hours=25)
    assert delivery.attempts == len(receiver.got) == len(attempts(plane)) == len(waits) + 1
    assert {got.headers["webhook-id"] for got in receiver.got} == {"version/12/healthy/s1.7"}

    paused = subscription(plane)
    assert paused.state == "paused" and paused.failing_since == first_end
    assert "no delivery succeeded for 24 hours" in paused.paused_reason and "HTTP 500" in paused.paused_reason
    with plane.sessions() as session:
        audited = session.scalar(select(AuditEvent).where(AuditEvent.action == "webhook.pause"))
        assert audited.target == "hook" and audited.actor == "webhook delivery worker"

    happen(plane, "version/12/healthy/s1.8", at=now)  # heard of while paused: not for it
    assert worker.run_once(now + dt.timedelta(hours=1)) == 0
    assert len(deliveries(plane)) == 1

    receiver.answer = answering(200)
    with plane.sessions.begin() as session:
        context = admin_context(plane, session)
        webhooks.update_subscription(context, webhooks.get_subscription(context, "hook"), {"state": "active"})
    happen(plane, "version/12/healthy/s1.9")
    assert worker.run_once() == 1
    assert deliveries(plane)[-1].state == "delivered" and subscription(plane).failing_since is None


def test_a_subscriptions_events_go_one_at_a_time_in_order_behind_one_being_retried(plane, receivers, workers):
    receiver = receivers(answering(503, 200))
    subscribe(plane, receiver.url())
    start = utcnow()
    for n in (1, 2, 3):
        happen(plane, f"version/12/healthy/s2.{n}", at=start)
    worker = workers(plane)

    assert worker.run_once(start) == 1  # the first fails; the others wait behind it
    first, second, third = deliveries(plane)
    ended = start + dt.timedelta(milliseconds=first.duration_ms)
    assert first.state == "pending" and first.next_attempt_at == ended + dt.timedelta(seconds=5)
    assert second.next_attempt_at == third.next_attempt_at == first.next_attempt_at
    assert worker.run_once(first.next_attempt_at) == 3
    assert [got.headers["webhook-id"][-4:] for got in receiver.got] == ["s2.1", "s2.1", "s2.2", "s2.3"]
    assert [delivery.state for delivery in deliveries(plane)] == ["delivered"] * 3


def test_a_restart_in_the_middle_of_retrying_still_delivers_once(database_url, planes, receivers):
    first = planes(database_url)
    receiver = receivers(answering(503, 200, Retry_After="30"))
    subscribe(first, receiver.url())
    start = utcnow()
    happen(first, "version/12/healthy/s1.10", at=start)
    assert first.webhook_worker.run_once(start) == 1
    (waiting,) = deliveries(first)
    ended = start + dt.timedelta(milliseconds=waiting.duration_ms)
    assert waiting.state == "pending" and waiting.next_attempt_at == ended + dt.timedelta(seconds=30)
    first.close()

    second = planes(database_url)  # another process, the same database
    assert second.webhook_worker.run_once(ended + dt.timedelta(seconds=29)) == 0
    assert second.webhook_worker.run_once(ended + dt.timedelta(seconds=30)) == 1
    assert second.webhook_worker.run_once(start + dt.timedelta(hours=1)) == 0
    (delivered,) = deliveries(second)
    assert (delivered.state, delivered.attempts) == ("delivered", 2)
    assert [got.headers["webhook-id"] for got in receiver.got] == ["version/12/healthy/s1.10"] * 2
    assert [attempt.status_code for attempt in attempts(second)] == [503, 200]


def test_two_workers_on_one_postgresql_never_both_send_a_delivery(postgres_url, planes, receivers, workers):
    one, other = planes(postgres_url), planes(postgres_url)
    receiver = receivers(slowly(0.01))
    paths = [f"/r{n}" for n in range(4)]
    for path in paths:
        subscribe(one, receiver.url(path), name=path[1:])
    workers_ = [workers(one, "worker-one"), workers(other, "worker-two")]
    expected = len(paths) * 20

    def delivered() -> int:
        with one.sessions() as session:
            return len(session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.state == "delivered")).all())

    def run(worker: WebhookWorker) -> None:
        deadline = time.monotonic() + 60
        while delivered() < expected and time.monotonic() < deadline:
            if not worker.run_once():
                time.sleep(0.005)

    for n in range(10):
        happen(one, f"version/12/healthy/s3.{n}")
    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers_]
    for thread in threads:
        thread.start()
    for n in range(10, 20):  # events keep coming while both fan out and send
        happen(other, f"version/12/healthy/s3.{n}")
    for thread in threads:
        thread.join()

    received = Counter((got.path, got.headers["webhook-id"]) for got in receiver.got)
    assert len(received) == expected and set(received.values()) == {1}
    with one.sessions() as session:
        assert len(session.scalars(select(WebhookDelivery.id)).all()) == expected
    assert {attempt.worker for attempt in attempts(one)} == {"worker-one", "worker-two"}


# --- receivers that misbehave ---------------------------------------------------------------------------------


def test_a_slow_receiver_is_waited_for(plane, receivers, workers):
    receiver = receivers(slowly(2.0))
    subscribe(plane, receiver.url())
    happen(plane, "version/12/healthy/s1.11")
    workers(plane, timeout=10.0).run_once()
    (delivery,) = deliveries(plane)
    assert delivery.state == "delivered" and delivery.duration_ms >= 2000


def test_a_hanging_receiver_times_out_and_holds_up_no_other_subscription(plane, receivers, workers):
    stuck, fine = receivers(hanging), receivers(answering(200))
    subscribe(plane, stuck.url(), name="stuck")
    subscribe(plane, fine.url(), name="fine")
    happen(plane, "version/12/healthy/s1.12")
    started = time.monotonic()
    assert workers(plane, timeout=1.0).run_once() == 2
    assert time.monotonic() - started < 4
    (got,) = fine.got
    assert got.at - started < 0.8  # while the other still waited
    assert deliveries(plane, "fine")[0].state == "delivered"
    (waiting,) = deliveries(plane, "stuck")
    assert waiting.state == "pending" and waiting.error == "no answer within 1 s"
    assert 900 <= waiting.duration_ms < 2500


def test_an_answer_that_never_ends_is_cut_at_the_timeout_though_every_read_gets_a_byte(plane, receivers, workers):
    receiver = receivers(dripping)
    subscribe(plane, receiver.url())
    happen(plane, "version/12/healthy/s1.13")
    workers(plane, timeout=1.0).run_once()
    (waiting,) = deliveries(plane)
    assert waiting.state == "pending" and waiting.error == "no answer within 1 s"
    assert waiting.duration_ms < 2500


def test_a_redirect_is_not_followed(plane, receivers, workers):
    elsewhere = receivers(answering(200))
    receiver = receivers(redirecting(elsewhere.url()))
    subscribe(plane, receiver.url())
    happen(plane, "version/12/healthy/s1.14")
    workers(plane).run_once()
    (waiting,) = deliveries(plane)
    assert waiting.state == "pending" and waiting.status_code == 301
    assert waiting.error.startswith("the receiver answered HTTP 301, a redirect, which is not followed")
    assert elsewhere.got == []


def test_only_the_start_of_a_huge_answer_is_read(plane, receivers, workers):
    receiver = receivers(endlessly)
    subscribe(plane, receiver.url())
    happen(plane, "version/12/healthy/s1.15")
    workers(plane, timeout=5.0).run_once()
    (delivery,) = deliveries(plane)
    assert delivery.state == "delivered" and delivery.duration_ms < 2000
    assert receiver.finished.wait(10)  # the client went away: the receiver could write no more


def test_a_host_that_now_resolves_to_a_private_address_is_refused_at_delivery(plane, receivers, workers):
    receiver = receivers(answering(200))
    addresses = {"hooks.example.com": ["93.184.216.34"]}
    plane.repos.resolve = lambda host, port: addresses[host]
    subscribe(plane, f"https://hooks.example.com:{receiver.port}/hook", allowed_host=None)
    happen(plane, "version/12/healthy/s4.1")
    worker, now = workers(plane), utcnow()
    for answer in (["127.0.0.1"], ["93.184.216.34", "10.1.2.3"], ["169.254.169.254"]):
        addresses["hooks.example.com"] = answer  # the DNS answer changed since the URL was checked
        assert worker.run_once(now) == 1
        now = deliveries(plane)[0].next_attempt_at
    assert [attempt.error for attempt in attempts(plane)] == [REFUSED] * 3
    assert receiver.connections == 0


# --- the control plane's own worker ---------------------------------------------------------------------------


def test_the_control_planes_thread_delivers_without_being_asked(planes, receivers, tmp_path):
    plane = planes(f"sqlite:///{tmp_path / 'shipyard.db'}", WEBHOOK_WORKER_INTERVAL=0.05)
    receiver = receivers(answering(200))
    subscribe(plane, receiver.url())
    happen(plane, "version/12/healthy/s1.16")
    deadline = time.monotonic() + 5
    while not receiver.got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(receiver.got) == 1


def test_a_cluster_gone_quiet_is_found_by_the_worker_and_told(tmp_path, receivers, workers):
    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'shipyard.db'}"))
    plane = app.extensions["shipyard"]
    try:
        receiver = receivers(answering(200))
        subscribe(plane, receiver.url(), events=("cluster.offline",))
        add_cluster(make_user(app, "admin", "tenant-admin"), "demo")
        with plane.sessions.begin() as session:
            session.execute(update(Cluster).values(last_seen_at=utcnow() - dt.timedelta(hours=1)))
        assert workers(plane).run_once() == 1
        (got,) = receiver.got
        body = json.loads(got.body)
        assert body["type"] == "cluster.offline" and body["data"]["cluster"] == "demo"
        assert workers(plane, "another").run_once() == 0  # one event per absence
    finally:
        plane.close()
