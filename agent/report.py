"""Reporting to the control plane: what the agent and the simulated compute plane share.

``Tracker`` holds the newest compact state of every followed object and
turns observations into deltas (only when the digest changed). ``Outbox``
holds the deltas not yet acknowledged, coalesced per object, so memory stays
bounded by the number of objects however long the control plane is away.
``Reporter`` speaks contract.protocol over httpx: snapshot first, then numbered
delta batches, two in flight; on 409 (the control plane lost the thread) it
starts a new stream with a fresh snapshot from the tracker; on a network
error the batches not acknowledged are kept as they are and sent again first
(same seq, same deltas), so a batch the control plane applied but could not
answer is a duplicate there, never a seq reused for other deltas. Memory stays
bounded: at most two such batches besides the outbox.

The token goes on every request as ``token_source()`` gives it when there is one
(agent.credentials: a mounted file followed through rotations), else ``token``.
A 401/403 raises Unauthorized with the token refused; an answer that is not the
protocol raises BadAnswer, an httpx.HTTPError, so the loops back off from it as
from a network error. A command the agent cannot read is answered as failed
here, and the poll's other commands go on (contract.protocol.decode_command).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing

import httpx

from contract.protocol import (
    API_PREFIX,
    Command,
    CommandResult,
    Delta,
    Heartbeat,
    MalformedCommand,
    ObjectKey,
    StatusBatch,
    decode_command,
    digest_of,
    encode,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_POLL_PAUSE = 60.0  # the longest pause between command polls a control plane can ask for


class Tracker:
    """The newest compact state of every followed object."""

    def __init__(self):
        self._states: dict[ObjectKey, tuple[str, dict]] = {}
        self._lock = threading.Lock()

    def observe(self, kind: str, namespace: str, name: str, state: dict | None) -> Delta | None:
        """Record an object's state (None: deleted); the delta to send, or None when nothing changed."""
        key = ObjectKey(kind, namespace, name)
        digest = digest_of(state)
        with self._lock:
            known = self._states.get(key)
            if state is None:
                if known is None:
                    return None
                del self._states[key]
            else:
                if known is not None and known[0] == digest:
                    return None
                self._states[key] = (digest, state)
        return Delta(kind, namespace, name, state, digest)

    def forget_kind(self, kind: str, keep: Iterable[ObjectKey], namespace: str | None = None) -> list[Delta]:
        """After a re-list of ``kind`` (in ``namespace`` only, when given): deletions for the objects no longer there."""
        keep = set(keep)
        with self._lock:
            gone = [k for k in self._states
                    if k.kind == kind and k not in keep and (namespace is None or k.namespace == namespace)]
            for key in gone:
                del self._states[key]
        return [Delta(k.kind, k.namespace, k.name, None, None) for k in gone]

    def snapshot(self) -> list[Delta]:
        with self._lock:
            return [Delta(k.kind, k.namespace, k.name, state, digest) for k, (digest, state) in self._states.items()]

    def __contains__(self, key: ObjectKey) -> bool:
        return key in self._states

    def __len__(self) -> int:
        return len(self._states)


class Outbox:
    """Deltas waiting to be acknowledged, at most one per object (the newest)."""

    def __init__(self):
        self._pending: dict[ObjectKey, Delta] = {}
        self._lock = threading.Lock()
        self.changed = threading.Event()

    def put(self, delta: Delta) -> None:
        with self._lock:
            self._pending.pop(delta.key, None)  # re-insert: the newest goes to the back of the line
            self._pending[delta.key] = delta
        self.changed.set()

    def take(self, limit: int) -> list[Delta]:
        with self._lock:
            keys = list(self._pending)[:limit]
            taken = [self._pending.pop(k) for k in keys]
            if not self._pending:
                self.changed.clear()
            return taken

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
        self.changed.clear()

    def __len__(self) -> int:
        return len(self._pending)


class Unauthorized(Exception):
    """The control plane refused the agent token (wrong cluster, rotated out); ``token`` is the one refused."""

    def __init__(self, message: str, token: str = ""):
        super().__init__(message)
        self.token = token


class BadAnswer(httpx.HTTPError):
    """The control plane answered something that is not the protocol (not JSON, not an object)."""


@dataclasses.dataclass
class Reporter:
    """One cluster's connection to the control plane."""

    client: httpx.Client
    tenant: str
    cluster: str
    token: str
    tracker: Tracker
    outbox: Outbox
    batch_size: int = BATCH_SIZE
    clock: Callable[[], float] = time.time
    stream: str | None = None
    seq: int = 0
    sent_batches: int = 0
    resyncs: int = 0
    window: int = 2  # status batches in flight at once
    poll_again_in: float = 0.0  # seconds before the next command poll, as the last answer asked
    token_source: Callable[[], str] | None = None  # asked before every request; None: ``token``
    on_answer: Callable[[], None] | None = None  # told of every answer from the control plane (liveness)
    malformed_commands: int = 0  # commands answered as failed because the agent could not read them
    _unacked: deque[StatusBatch] = dataclasses.field(default_factory=deque, repr=False)  # sent, not yet acknowledged

    def _url(self, path: str) -> str:
        return f"{API_PREFIX}/{self.tenant}/{self.cluster}/{path}"

    def _headers(self, token: str, compressed: bool = True) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return headers

    def _current_token(self) -> str:
        if self.token_source is not None:
            self.token = self.token_source()
        return self.token

    def _answered(self, response: httpx.Response, token: str) -> httpx.Response:
        if self.on_answer is not None:
            self.on_answer()
        if response.status_code in (401, 403):
            raise Unauthorized(f"control plane refused the agent token: {response.status_code}", token)
        return response

    def _post(self, path: str, message) -> httpx.Response:
        return self._post_body(path, encode(message))

    def _post_body(self, path: str, body: bytes) -> httpx.Response:
        token = self._current_token()
        return self._answered(self.client.post(self._url(path), content=body, headers=self._headers(token)), token)

    @staticmethod
    def _json_object(response: httpx.Response) -> dict:
        try:
            answer = response.json()
        except ValueError as exc:
            raise BadAnswer(f"the control plane's answer is not JSON: {exc}") from exc
        if not isinstance(answer, dict):
            raise BadAnswer(f"the control plane's answer is not an object but {type(answer).__name__}")
        return answer

    def _send(self, batch: StatusBatch) -> bool:
        """Post one status batch: True when acknowledged, False when the control plane wants a resync."""
        batch.sent_at = self.clock()
        response = self._post_body("status", encode(batch))
        if response.status_code == 409:
            return False
        response.raise_for_status()
        return True

    def _post_in_order(self, batches: Callable[[], StatusBatch | None]) -> Iterator[tuple[StatusBatch, bool]]:
        """Send the batches ``batches()`` hands out (None: no more) with up to ``window`` in flight.

        Yields each batch, in order, with whether it was acknowledged (False: resync). The
        control plane applies them in seq order (one that overtakes its predecessor waits for
        it), so while one is applied the next is already encoded, sent and read. Network errors
        propagate once the batches in flight have ended.
        """
        first = batches()
        if first is None:
            return
        second = batches()
        if second is None:  # the usual tick: one batch, sent from this thread
            acknowledged = self._send(first)
            self.sent_batches += acknowledged
            yield first, acknowledged
            return
        taken = deque((first, second))
        with ThreadPoolExecutor(max_workers=self.window, thread_name_prefix="shipyard-report") as senders:
            in_flight: deque[tuple[StatusBatch, Future]] = deque()
            try:
                while True:
                    while len(in_flight) < self.window and (batch := taken.popleft() if taken else batches()):
                        in_flight.append((batch, senders.submit(self._send, batch)))
                    if not in_flight:
                        return
                    batch, answer = in_flight.popleft()
                    acknowledged = answer.result()
                    if acknowledged:
                        self.sent_batches += 1
                    yield batch, acknowledged
            finally:
                for _, answer in in_flight:  # a refusal or an error: what is still in flight ends unread
                    answer.cancel()

    @property
    def unacknowledged(self) -> int:
        """Batches sent whose answer never came (an error, a refused token): they go again first."""
        return len(self._unacked)

    def resync(self) -> None:
        """Start a new stream with a snapshot of everything followed; pending deltas are in it."""
        self.outbox.clear()
        self._unacked.clear()
        deltas = self.tracker.snapshot()
        self.stream, self.seq = uuid.uuid4().hex, 0
        chunks = [deltas[i:i + self.batch_size] for i in range(0, len(deltas), self.batch_size)] or [[]]
        batches = iter([StatusBatch(self.stream, index + 1, True, chunk, index == len(chunks) - 1)
                        for index, chunk in enumerate(chunks)])
        try:
            with closing(self._post_in_order(lambda: next(batches, None))) as posted:
                for batch, acknowledged in posted:
                    if not acknowledged:
                        raise httpx.HTTPError("control plane refused a snapshot batch")
                    self.seq = batch.seq
        except Exception:
            self.stream = None  # the next round starts over with a new snapshot
            raise
        self.resyncs += 1

    def send_pending(self) -> int:
        """Send what is pending (a snapshot first if no stream is open); returns deltas acknowledged.

        Network errors propagate (httpx.HTTPError). A batch sent but not acknowledged is kept
        and sent again as it was (same seq, same deltas) before anything newer: if the control
        plane had applied it and only its answer was lost, the copy is a duplicate it
        acknowledges, and no delta is dropped under a seq it has already seen.
        """
        if self.stream is None:
            self.resync()
            return len(self.tracker)
        again = deque(self._unacked)

        def next_batch() -> StatusBatch | None:
            if again:
                return again.popleft()
            deltas = self.outbox.take(self.batch_size)
            if not deltas:
                return None
            batch = StatusBatch(self.stream, self.seq + len(self._unacked) + 1, False, deltas)
            self._unacked.append(batch)
            return batch

        sent, refused = 0, False
        with closing(self._post_in_order(next_batch)) as posted:  # closed: nothing in flight after it
            for batch, acknowledged in posted:
                if not acknowledged:
                    refused = True
                    break
                self._unacked.popleft()
                self.seq = batch.seq
                sent += len(batch.deltas)
        if refused:
            log.info("control plane asked for a resync of cluster %s", self.cluster)
            self.resync()
            return sent + len(self.tracker)
        return sent

    def heartbeat(self, beat: Heartbeat) -> dict:
        response = self._post("heartbeat", beat)
        response.raise_for_status()
        return self._json_object(response)

    def poll_commands(self, wait: float) -> list[Command]:
        """One long-poll: the commands the agent can read. Those it cannot are answered as failed here."""
        token = self._current_token()
        response = self._answered(self.client.get(self._url("commands"), params={"wait": int(wait)},
                                                  headers=self._headers(token, compressed=False),
                                                  timeout=wait + 10), token)
        response.raise_for_status()
        answer = self._json_object(response)
        try:  # the control plane is holding as many long-polls as it may: poll again later, not at once
            self.poll_again_in = min(max(float(answer.get("poll_again_in") or 0.0), 0.0), MAX_POLL_PAUSE)
        except (TypeError, ValueError):
            self.poll_again_in = 0.0
        listed = answer.get("commands") or []
        if not isinstance(listed, list):
            raise BadAnswer(f"the control plane's commands are not a list but {type(listed).__name__}")
        commands = []
        for data in listed:
            try:
                command, unknown = decode_command(data)
            except MalformedCommand as exc:
                self._refuse_malformed(exc)
                continue
            if unknown:
                log.warning("command %s: ignoring fields this agent does not know: %s (a newer control plane?)",
                            command.id, ", ".join(unknown))
            commands.append(command)
        return commands

    def _refuse_malformed(self, exc: MalformedCommand) -> None:
        self.malformed_commands += 1
        if exc.id is None:
            log.error("a command from the control plane cannot be read, nor answered (no id): %s", exc)
            return
        log.error("command %s cannot be read: %s; answering it as failed", exc.id, exc)
        try:
            self.send_result(exc.id, CommandResult(ok=False, error=f"the agent could not read the command: {exc}"))
        except httpx.HTTPError as error:  # the commands it can read still go on; this one stays unanswered
            log.warning("could not answer command %s (%s)", exc.id, type(error).__name__)

    def send_result(self, command_id: int, result: CommandResult) -> None:
        self._post(f"commands/{command_id}/result", result).raise_for_status()


__all__ = ["Tracker", "Outbox", "Reporter", "Unauthorized", "BadAnswer", "BATCH_SIZE"]
