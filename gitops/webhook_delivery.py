"""Status webhooks' delivery: each event to every subscription that hears of it, once, in the background.

Events wait in an outbox (``WebhookEvent``, written by gitops.webhooks ``emit`` in the transaction
of the change they tell of). One worker thread in each process of the control plane (like the
spec repositories' worker, gitops.spec_worker) takes them from there, and keeps all it knows in
the database: a restart loses nothing, and several processes on one PostgreSQL share the work
and never send one delivery at the same time. A pass:

=========  ==========================================================================================
step       what it does
=========  ==========================================================================================
offline    every OFFLINE_CHECK seconds, gitops.webhook_events ``find_offline`` makes the events of the
           clusters whose agent went quiet
fan out    takes the events not fanned out with a conditional UPDATE of ``fanned_out`` (one process
           gets each) and, in the same transaction, makes a WebhookDelivery for every active
           subscription that ``matches`` the event (gitops.webhooks)
claim      takes due deliveries, each the oldest pending one of its subscription, of a subscription
           with nothing in flight: a subscription's events reach it one at a time, in the order they
           happened (a channel never reads "healthy" before the "degraded" it ends). The
           subscription's row is locked, then a conditional UPDATE sets ``claimed_by`` and
           ``claimed_until``: one process sends each
send       on a pool of THREADS threads, so a slow or hanging receiver holds one thread and delays
           only its own subscription: the body in the subscription's format, signed
           (gitops.webhook_payloads), posted through the egress policy, which resolves and checks
           the host again at every attempt (a DNS answer that turned private is refused then). No
           redirect is followed, at most MAX_ANSWER_BYTES of the answer read, and the whole
           exchange ends after ``timeout`` (TIMEOUT) seconds, well inside the claim
record     every attempt (WebhookAttempt). A 2xx answer delivers; anything else is tried again
           after a back-off until GIVE_UP_AFTER the event, then the delivery is ``failed``. A
           subscription with no success for PAUSE_AFTER is paused, with why (audited), and sends
           nothing until it is resumed (gitops.webhooks ``update_subscription``)
=========  ==========================================================================================

The back-off is exponential with full jitter: after the n-th failed attempt, a random time up to
FIRST_RETRY * 2^(n-1) seconds, at most LONGEST_RETRY, at least SHORTEST_RETRY, and at least what a
``Retry-After`` answer asks for. Every failure is retried, a 4xx too: a receiver that refuses is
most often one being set up. A redelivery of an event older than GIVE_UP_AFTER is tried once.

A delivery is sent at least once and, but for a crash, once: a process that dies after the
receiver answered and before it recorded the answer leaves its claim to run out, and the next
process sends again. The ``webhook-id`` (the event's key) is what receivers drop repeats by.

Nothing logged holds the URL (its path or query may be the credential) or a secret: the log
names the subscription and the delivery; what a person reads of an attempt is a plain reason.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql import Select

from contract.errors import RepoError
from gitops import egress, webhook_events, webhook_payloads, webhooks
from gitops.audit import record
from gitops.background import Passes
from gitops.db import insert_many
from gitops.egress_http import CheckedTransport, Deadline, untrusted_certificate
from gitops.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription, utcnow
from gitops.policy import Principal
from gitops.repo_store import RepoStore
from gitops.status import StatusSettings

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds one attempt may take, connecting to the last byte read
MAX_ANSWER_BYTES = 64 * 1024  # of an answer read; the rest is left unread
FIRST_RETRY = 5.0  # seconds: the longest wait after the first failed attempt, doubling after each
LONGEST_RETRY = 3600.0
SHORTEST_RETRY = 1.0
GIVE_UP_AFTER = dt.timedelta(hours=24)  # after the event: a failed attempt then fails the delivery
PAUSE_AFTER = dt.timedelta(hours=24)  # a subscription with no success for this long is paused
CLAIM_MARGIN = 60.0  # seconds a claim outlasts an attempt's timeout: resolving the host, recording the answer
THREADS = 16
FAN_OUT_BATCH = 500
OFFLINE_CHECK = 5.0  # seconds between looks for offline clusters: offline is a matter of minutes

REFUSED = ("refused by the egress policy: the URL's host resolves to an address that is not public (a "
           "tenant-admin can allow this host for the subscription: allowed_host)")
UNRESOLVED = "the URL's host cannot be resolved"
UNTRUSTED = "the receiver's TLS certificate is not trusted (a private CA goes in GIT_CA_BUNDLE)"
UNREACHABLE = "could not connect, or the connection closed before an answer"

_WORKER = "webhook delivery worker"  # who pauses a subscription, in the audit log


# --- one attempt ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One attempt's request, with everything read from the database already; the URL and the headers
    (the signature) are not shown."""

    subscription: str  # its name, for the log
    url: str = field(repr=False)
    content: bytes
    headers: dict[str, str] = field(repr=False)
    policy: egress.EgressPolicy


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to: the receiver's status code (None: no answer) and, unless delivered, why not."""

    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None  # seconds the receiver asked to wait (Retry-After)

    @property
    def delivered(self) -> bool:
        return self.error is None


def send(request: Request, timeout: float = TIMEOUT) -> Outcome:
    """POST ``request`` through its egress policy, all of it within ``timeout`` seconds; never raises for what
    the receiver or the network does."""
    started = time.monotonic()
    status = retry_after = error = None
    deadline = Deadline(timeout)
    try:
        with deadline, httpx.Client(transport=CheckedTransport(request.policy), timeout=timeout,
                                    follow_redirects=False, trust_env=False) as client:
            with client.stream("POST", request.url, content=request.content, headers=request.headers,
                               extensions={"trace": deadline.trace}) as response:
                status, retry_after = response.status_code, _retry_after(response.headers.get("retry-after"))
                _read_some(response)
    except RepoError as exc:  # refused before connecting: plain already
        error = _refused(exc)
    except httpx.HTTPError as exc:
        if status is None:  # once the status came, the answer is in: the rest of it is not waited for
            log.info("webhook %s: no answer: %s: %s", request.subscription, type(exc).__name__, exc)
            error = _no_answer(exc, deadline.expired, timeout)
    duration_ms = int((time.monotonic() - started) * 1000)
    return Outcome(status, error or _judged(status), duration_ms, retry_after)


def _read_some(response: httpx.Response) -> None:
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read >= MAX_ANSWER_BYTES:
            return


def _judged(status: int | None) -> str | None:
    if status is None or 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"the receiver answered HTTP {status}, a redirect, which is not followed (use the URL it redirects to)"
    return f"the receiver answered HTTP {status}"


def _refused(exc: RepoError) -> str:
    if egress.REFUSED in str(exc):
        return REFUSED
    return UNRESOLVED if egress.UNREACHABLE in str(exc) else str(exc)


def _no_answer(exc: httpx.HTTPError, expired: bool, timeout: float) -> str:
    if expired or isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    return UNTRUSTED if untrusted_certificate(exc) else UNREACHABLE


def _retry_after(value: str | None) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number, or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - utcnow()).total_seconds())


def retry_delay(attempts: int, jitter: float, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt, ``jitter`` a random number in [0, 1)
    (the module's docstring)."""
    ceiling = min(LONGEST_RETRY, FIRST_RETRY * 2 ** min(attempts - 1, 20))
    delay = max(SHORTEST_RETRY, jitter * ceiling)
    return delay if retry_after is None else max(delay, min(retry_after, LONGEST_RETRY))


# --- the worker ----------------------------------------------------------------------------------


class WebhookWorker(Passes):
    """Fans events out and sends deliveries; ``run_once`` sends what is due (tests), ``start`` runs a thread,
    which an attempt that ends wakes: its subscription's next delivery may go.

    ``timeout`` bounds each attempt, ``jitter`` draws the back-off's random part: both are seams
    for tests, as is ``run_once``'s ``now``.
    """

    thread_name = "webhook-deliveries"

    def __init__(self, sessions: sessionmaker[Session], repos: RepoStore, worker: str, interval: float,
                 settings: StatusSettings, *, read_sessions: sessionmaker[Session] | None = None,
                 timeout: float = TIMEOUT, threads: int = THREADS, jitter: Callable[[], float] = random.random):
        super().__init__(interval)
        self.sessions, self.repos, self.worker, self.settings = sessions, repos, worker, settings
        # a pass that finds nothing to do looks with these: on SQLite they take no write lock (gitops.db)
        self.read_sessions = read_sessions or sessions
        self.timeout, self.threads, self.jitter = timeout, threads, jitter
        self.lease = dt.timedelta(seconds=timeout + CLAIM_MARGIN)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="webhook-delivery")
        self._in_flight = 0
        self._lock = threading.Lock()
        self._offline_checked: float | None = None

    def stop(self) -> None:
        """Stop passing, and wait for the attempts in flight (each ends within its timeout)."""
        super().stop()
        self._pool.shutdown(wait=True)

    def background_pass(self) -> None:
        self._pass(utcnow())

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Pass after pass, each waiting for the attempts it started, until nothing is due at ``now``;
        returns how many attempts were made."""
        now = now or utcnow()
        made = 0
        while started := self._pass(now):
            wait(started)
            made += len(started)
        return made

    def _pass(self, now: dt.datetime) -> list[Future]:
        self._look_for_offline(now)
        while self._fan_out(now) == FAN_OUT_BATCH:
            pass
        return [self._submit(delivery_id, now) for delivery_id in self._claim(now)]

    # --- fan out --------------------------------------------------------------------------------

    def _fan_out(self, now: dt.datetime) -> int:
        """Deliveries for a batch of events not fanned out yet; how many events this process took."""
        waiting = select(WebhookEvent.id).where(WebhookEvent.fanned_out.is_(False))
        with self.read_sessions() as session:
            if session.scalar(waiting.limit(1)) is None:
                return 0
        with self.sessions.begin() as session:
            batch = session.scalars(waiting.order_by(WebhookEvent.id).limit(FAN_OUT_BATCH)).all()
            taken = session.scalars(
                update(WebhookEvent).where(WebhookEvent.id.in_(batch), WebhookEvent.fanned_out.is_(False))
                .values(fanned_out=True).returning(WebhookEvent.id).execution_options(synchronize_session=False)).all()
            if not taken:
                return 0
            events = session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(taken))
                                     .order_by(WebhookEvent.id)).all()
            subscriptions = session.scalars(select(WebhookSubscription).where(
                WebhookSubscription.state == "active",
                WebhookSubscription.tenant_id.in_({event.tenant_id for event in events}))).all()
            rows = [{"subscription_id": sub.id, "event_id": event.id}
                    for event in events for sub in subscriptions if webhooks.matches(sub, event)]
            insert_many(session.connection(), WebhookDelivery.__table__, rows,
                        common={"state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now},
                        conflict=("subscription_id", "event_id"))
            return len(taken)

    def _look_for_offline(self, now: dt.datetime) -> None:
        if self._offline_checked is not None and time.monotonic() - self._offline_checked < OFFLINE_CHECK:
            return
        self._offline_checked = time.monotonic()
        with self.sessions.begin() as session:
            made = webhook_events.find_offline(session, now, self.settings)
        if made:
            log.info("webhook events: %d cluster(s) went offline", made)

    # --- claim ----------------------------------------------------------------------------------

    def _claim(self, now: dt.datetime) -> list[int]:
        """The deliveries this worker now sends: due heads of their subscriptions (the module's docstring), at
        most one per subscription and no more than the pool has threads free."""
        with self._lock:
            free = self.threads - self._in_flight
        if free <= 0:
            return []
        with self.read_sessions() as session:
            if session.scalar(select(WebhookDelivery.id).where(
                    WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now).limit(1)) is None:
                return []
            candidates = session.execute(_due_heads(now).limit(free)).all()
        claimed = []
        with self.sessions.begin() as session:
            # subscriptions are locked in the order of their ids, here and nowhere else in another: no deadlock
            for delivery_id, subscription_id in sorted(candidates, key=lambda candidate: candidate[1]):
                if session.scalar(select(WebhookSubscription.id).where(
                        WebhookSubscription.id == subscription_id, WebhookSubscription.state == "active")
                        .with_for_update(key_share=True)) is None:
                    continue
                taken = session.execute(update(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
                    ~_in_flight(subscription_id, now)).values(claimed_by=self.worker, claimed_until=now + self.lease))
                if taken.rowcount == 1:
                    claimed.append(delivery_id)
        return claimed

    def _submit(self, delivery_id: int, now: dt.datetime) -> Future:
        with self._lock:
            self._in_flight += 1
        return self._pool.submit(self._deliver, delivery_id, now)

    # --- send and record ------------------------------------------------------------------------

    def _deliver(self, delivery_id: int, now: dt.datetime) -> None:
        try:
            try:
                request = self._request(delivery_id, now)
            except RepoError as exc:  # what it sealed cannot be opened: said in the delivery log, and retried
                log.error("webhook delivery %s: %s", delivery_id, exc)
                self._record(delivery_id, now, Outcome(None, str(exc), 0))
                return
            if request is not None:
                outcome = send(request, self.timeout)
                log.info("webhook %s delivery %s: %s (%d ms)", request.subscription, delivery_id,
                         outcome.error or f"delivered, HTTP {outcome.status_code}", outcome.duration_ms)
                self._record(delivery_id, now, outcome)
        except Exception:  # noqa: BLE001 - a bug: logged; the claim runs out and the delivery is tried again
            log.exception("webhook delivery %s failed", delivery_id)
        finally:
            with self._lock:
                self._in_flight -= 1
            self.wake()

    def _request(self, delivery_id: int, now: dt.datetime) -> Request | None:
        """The request of the claimed delivery; None when it is no longer this worker's (gone with its subscription)."""
        with self.read_sessions() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.claimed_by != self.worker:
                return None
            event = session.get(WebhookEvent, delivery.event_id)
            sub = session.get(WebhookSubscription, delivery.subscription_id)
            if event is None or sub is None:
                return None
            content = webhook_payloads.body(sub.format, event)
            secrets = webhooks.open_secrets(self.repos, sub, now)
            url = webhooks.open_url(self.repos, sub)
            policy = self.repos.policy((sub.allowed_host,) if sub.allowed_host else ())
            return Request(sub.name, url, content, webhook_payloads.headers(secrets, event.key, int(time.time()),
                                                                            content), policy)

    def _record(self, delivery_id: int, now: dt.datetime, outcome: Outcome) -> None:
        """The attempt (begun at ``now``), what it makes of the delivery (delivered, again later, failed), and of
        its subscription; the back-off runs from the attempt's end, so a timed-out attempt is not retried at once."""
        started, now = now, now + dt.timedelta(milliseconds=outcome.duration_ms)
        with self.sessions.begin() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:  # deleted with its subscription meanwhile
                return
            sub = session.scalar(select(WebhookSubscription).where(WebhookSubscription.id == delivery.subscription_id)
                                 .with_for_update(key_share=True))
            if sub is None:
                return
            session.add(WebhookAttempt(delivery_id=delivery_id, at=started, status_code=outcome.status_code,
                                       error=outcome.error, duration_ms=outcome.duration_ms, worker=self.worker))
            values: dict[str, Any] = {"attempts": WebhookDelivery.attempts + 1, "status_code": outcome.status_code,
                                      "error": outcome.error, "duration_ms": outcome.duration_ms,
                                      "claimed_by": None, "claimed_until": None}
            if outcome.delivered:
                values.update(state="delivered", delivered_at=now)
                sub.failing_since = None
            else:
                values.update(self._after_failure(session, delivery, sub, now, outcome))
                self._failing(session, sub, now, outcome)
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))

    def _after_failure(self, session: Session, delivery: WebhookDelivery, sub: WebhookSubscription,
                       now: dt.datetime, outcome: Outcome) -> dict[str, Any]:
        """A failed delivery's state: given up a day after its event, else pending again after the back-off,
        with its subscription's later deliveries waiting behind it."""
        occurred_at = session.scalar(select(WebhookEvent.occurred_at).where(WebhookEvent.id == delivery.event_id))
        if now >= occurred_at + GIVE_UP_AFTER:
            log.info("webhook %s delivery %s: given up, %d hours after its event", sub.name, delivery.id,
                     _hours(GIVE_UP_AFTER))
            return {"state": "failed"}
        later = now + dt.timedelta(seconds=retry_delay(delivery.attempts + 1, self.jitter(), outcome.retry_after))
        session.execute(update(WebhookDelivery).where(
            WebhookDelivery.subscription_id == sub.id, WebhookDelivery.state == "pending",
            WebhookDelivery.id != delivery.id, WebhookDelivery.next_attempt_at < later).values(next_attempt_at=later))
        return {"next_attempt_at": later}

    def _failing(self, session: Session, sub: WebhookSubscription, now: dt.datetime, outcome: Outcome) -> None:
        """Note when the subscription started failing; pause it once that is PAUSE_AFTER ago."""
        if sub.failing_since is None:
            sub.failing_since = now
            return
        if sub.state != "active" or now - sub.failing_since < PAUSE_AFTER:
            return
        sub.state = "paused"
        sub.paused_reason = (f"paused by Shipyard: no delivery succeeded for {_hours(PAUSE_AFTER)} hours (the last "
                             f"attempt: {outcome.error}); resume it once the receiver is back")
        record(session, Principal(sub.tenant_id, 0, _WORKER), "webhook.pause", sub.name,
               {"reason": sub.paused_reason})
        log.warning("webhook %s paused: no delivery succeeded since %s", sub.name, sub.failing_since.isoformat())


def _due_heads(now: dt.datetime) -> Select:
    """(delivery id, subscription id) of each active subscription's oldest pending delivery that is due, of
    subscriptions with no delivery in flight; the longest waiting first."""
    heads = (select(WebhookDelivery.subscription_id, func.min(WebhookDelivery.event_id).label("event_id"))
             .where(WebhookDelivery.state == "pending").group_by(WebhookDelivery.subscription_id).subquery())
    busy = select(WebhookDelivery.subscription_id).where(WebhookDelivery.state == "pending",
                                                         WebhookDelivery.claimed_until >= now)
    return (select(WebhookDelivery.id, WebhookDelivery.subscription_id)
            .join(heads, and_(WebhookDelivery.subscription_id == heads.c.subscription_id,
                              WebhookDelivery.event_id == heads.c.event_id))
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(WebhookSubscription.state == "active", WebhookDelivery.next_attempt_at <= now,
                   WebhookDelivery.subscription_id.not_in(busy))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id))


_OTHER = aliased(WebhookDelivery)  # made once: building an alias per claim was a third of the claim loop's time


def _in_flight(subscription_id: int, now: dt.datetime):
    """Whether a delivery of the subscription is claimed now (being sent)."""
    return exists().where(_OTHER.subscription_id == subscription_id, _OTHER.state == "pending",
                          _OTHER.claimed_until >= now)


def _hours(span: dt.timedelta) -> int:
    return int(span.total_seconds() // 3600)


__all__ = ["TIMEOUT", "MAX_ANSWER_BYTES", "GIVE_UP_AFTER", "PAUSE_AFTER", "Request", "Outcome", "send",
           "retry_delay", "WebhookWorker"]
