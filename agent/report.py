"""Reporting to the control plane: what the agent and the simulated compute plane share.

``Tracker`` holds the newest compact state of every followed object and
turns observations into deltas (only when the digest changed). ``Outbox``
holds the deltas not yet acknowledged, coalesced per object, so memory stays
bounded by the number of objects however long the control plane is away.
``Reporter`` speaks agent.protocol over httpx: snapshot first, then numbered
delta batches; on 409 (the control plane lost the thread) it starts a new
stream with a fresh snapshot from the tracker; on a network error the batch
goes back into the outbox (newer deltas of the same objects win) and is sent
again later.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

from agent.protocol import (
    API_PREFIX,
    Command,
    CommandResult,
    Delta,
    Heartbeat,
    ObjectKey,
    StatusBatch,
    digest_of,
    encode,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 500


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

    def give_back(self, deltas: list[Delta]) -> None:
        """Put back deltas that were not acknowledged, unless a newer one of the object came meanwhile."""
        with self._lock:
            returned = {d.key: d for d in deltas if d.key not in self._pending}
            self._pending = {**returned, **self._pending}
        if returned:
            self.changed.set()

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
        self.changed.clear()

    def __len__(self) -> int:
        return len(self._pending)


class Unauthorized(Exception):
    """The control plane refused the agent token (wrong cluster, rotated out)."""


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

    def _url(self, path: str) -> str:
        return f"{API_PREFIX}/{self.tenant}/{self.cluster}/{path}"

    def _headers(self, compressed: bool = True) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return headers

    def _post(self, path: str, message) -> httpx.Response:
        return self._post_body(path, encode(message))

    def _post_body(self, path: str, body: bytes) -> httpx.Response:
        response = self.client.post(self._url(path), content=body, headers=self._headers())
        if response.status_code in (401, 403):
            raise Unauthorized(f"control plane refused the agent token: {response.status_code}")
        return response

    def _encoded(self, batch: StatusBatch) -> bytes:
        batch.sent_at = self.clock()
        return encode(batch)

    def _post_in_turn(self, batches: list[StatusBatch]) -> Iterator[bool]:
        """Post ``batches`` in order, yielding for each whether it was acknowledged (False: resync).

        The next batch is encoded on a helper thread while one is on the wire, so catching up
        costs the control plane's time, not the agent's too. Network errors propagate.
        """
        if len(batches) == 1:
            yield self._acknowledged(self._post_body("status", self._encoded(batches[0])))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shipyard-encode") as encoder:
            upcoming = encoder.submit(self._encoded, batches[0])
            for index in range(len(batches)):
                body = upcoming.result()
                if index + 1 < len(batches):
                    upcoming = encoder.submit(self._encoded, batches[index + 1])
                yield self._acknowledged(self._post_body("status", body))

    def _acknowledged(self, response: httpx.Response) -> bool:
        if response.status_code == 409:
            return False
        response.raise_for_status()
        self.sent_batches += 1
        return True

    def resync(self) -> None:
        """Start a new stream with a snapshot of everything followed; pending deltas are in it."""
        self.outbox.clear()
        deltas = self.tracker.snapshot()
        self.stream, self.seq = uuid.uuid4().hex, 0
        chunks = [deltas[i:i + self.batch_size] for i in range(0, len(deltas), self.batch_size)] or [[]]
        batches = [StatusBatch(self.stream, index + 1, True, chunk, index == len(chunks) - 1)
                   for index, chunk in enumerate(chunks)]
        try:
            for acknowledged in self._post_in_turn(batches):
                if not acknowledged:
                    raise httpx.HTTPError("control plane refused a snapshot batch")
                self.seq += 1
        except Exception:
            self.stream = None  # the next round starts over with a new snapshot
            raise
        self.resyncs += 1

    def send_pending(self) -> int:
        """Send what is pending (a snapshot first if no stream is open); returns deltas acknowledged.

        Network errors propagate (httpx.HTTPError); what was not acknowledged stays pending.
        """
        if self.stream is None:
            self.resync()
            return len(self.tracker)
        sent = 0
        while True:
            batches: list[StatusBatch] = []
            while deltas := self.outbox.take(self.batch_size):
                batches.append(StatusBatch(self.stream, self.seq + len(batches) + 1, False, deltas))
            if not batches:
                return sent
            done = 0
            try:
                for acknowledged in self._post_in_turn(batches):
                    if not acknowledged:
                        log.info("control plane asked for a resync of cluster %s", self.cluster)
                        self.resync()
                        return sent + len(self.tracker)
                    self.seq += 1
                    sent += len(batches[done].deltas)
                    done += 1
            except BaseException:
                self.outbox.give_back([d for batch in batches[done:] for d in batch.deltas])
                raise

    def heartbeat(self, beat: Heartbeat) -> dict:
        response = self._post("heartbeat", beat)
        response.raise_for_status()
        return response.json()

    def poll_commands(self, wait: float) -> list[Command]:
        response = self.client.get(self._url("commands"), params={"wait": int(wait)},
                                   headers=self._headers(compressed=False), timeout=wait + 10)
        if response.status_code in (401, 403):
            raise Unauthorized(f"control plane refused the agent token: {response.status_code}")
        response.raise_for_status()
        return [Command(**c) for c in response.json().get("commands", [])]

    def send_result(self, command_id: int, result: CommandResult) -> None:
        self._post(f"commands/{command_id}/result", result).raise_for_status()


__all__ = ["Tracker", "Outbox", "Reporter", "Unauthorized", "BATCH_SIZE"]
