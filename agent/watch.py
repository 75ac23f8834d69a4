"""List + watch of the objects the agent follows, into the Tracker and the Outbox.

One ``Watcher`` per (kind, namespace or cluster-wide) in its own thread: the
kubernetes client is synchronous (urllib3), and a blocked read costs a thread,
not a busy loop. Each watcher:

1. lists page by page (``limit``), summarising each object (agent.summaries)
   into the Tracker; what the Tracker knew of this kind and scope and the list
   no longer has is reported deleted (so a gap, e.g. after 410, loses nothing);
2. watches from the list's resourceVersion with bookmarks; the JSON lines are
   parsed here, never deserialized into client models (memory);
3. on a normal end of the watch (timeoutSeconds) watches again from the last
   resourceVersion; on 410 Gone lists again; on errors reconnects after a
   backoff with jitter (Retry-After honoured); 401/403, and 404 (a CRD not
   installed), wait longer, since they only change when someone acts.

Events older than or equal to what the watcher has seen (a duplicate, or an
older resourceVersion delivered after a newer one) are dropped, so redelivery
never walks an object back in time. resourceVersions are opaque to clients
in principle; every API server in practice (etcd revisions) hands out
increasing integers, and the comparison is skipped for any that is not.

The loop body (``step``) is a function and ``run`` takes a stop event and an
iteration count, so tests drive it a step at a time.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import urllib3

from agent.backoff import Backoff
from agent.kube import APPLICATION, DEPLOYMENT, EVENT, JOB, POD, ROLLOUT, WORKFLOW, ApiException, Kind, KubeApi
from contract.protocol import ObjectKey
from agent.report import Outbox, Tracker
from agent.settings import AgentSettings
from agent.summaries import SUMMARIES
from contract.labels import MANAGED_SELECTOR

log = logging.getLogger(__name__)

FOLLOWED_KINDS = {"Application", "Deployment", "Rollout", "Pod", "Workflow", "Job"}


def retry_after(exc: ApiException) -> float:
    try:
        return float((exc.headers or {}).get("Retry-After") or 0)
    except (TypeError, ValueError):
        return 0.0


def _rv_number(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


@dataclass
class Target:
    """What one watcher follows: a kind in one namespace (or all), a label selector, a client-side filter."""

    kind: Kind
    namespace: str | None
    label_selector: str | None = MANAGED_SELECTOR
    accept: Callable[[dict], bool] | None = None
    page_size: int | None = None  # None: settings.list_page_size

    def __str__(self) -> str:
        return f"{self.kind.kind} in {self.namespace or 'all namespaces'}"


@dataclass
class Watcher:
    api: KubeApi
    target: Target
    tracker: Tracker
    outbox: Outbox
    settings: AgentSettings
    rng: random.Random = field(default_factory=random.Random)
    resource_version: str | None = None  # None: the next step lists
    relists: int = 0
    restarts: int = 0
    events: int = 0
    synced: threading.Event = field(default_factory=threading.Event)  # set after the first complete list
    _last_seen: int | None = None
    _response: object | None = None
    _closing: bool = False

    def __post_init__(self):
        self.backoff = Backoff(self.settings.backoff_base, self.settings.backoff_max, self.rng)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, iterations: int | None = None) -> None:
        done, self._closing = 0, False
        while not stop.is_set() and (iterations is None or done < iterations):
            delay = self.step()
            done += 1
            if delay and not stop.is_set():
                stop.wait(delay)

    def step(self) -> float:
        """One list or one watch connection; returns how long to wait before the next step."""
        try:
            if self.resource_version is None:
                self.relist()
            else:
                self.watch_once()
            self.backoff.reset()
            return 0.0
        except Gone:
            log.info("%s: resourceVersion %s expired, listing again", self.target, self.resource_version)
            self.resource_version = None
            return 0.0
        except ApiException as exc:
            self.restarts += 1
            if exc.status == 410:
                self.resource_version = None
                return 0.0
            if exc.status in (401, 403):
                log.error("%s: the API server refused the agent (%s %s); check its service account and RBAC; "
                          "retrying in %.0f s", self.target, exc.status, exc.reason, self.settings.unauthorized_backoff)
                return self.backoff.next(at_least=max(self.settings.unauthorized_backoff, retry_after(exc)))
            if exc.status == 404:
                self.synced.set()  # nothing of this kind to follow; the first snapshot need not wait for it
                log.warning("%s: not served by this cluster (CRD not installed?); retrying in %.0f s",
                            self.target, self.settings.unauthorized_backoff)
                return self.settings.unauthorized_backoff
            delay = self.backoff.next(at_least=retry_after(exc))
            log.warning("%s: API error %s %s; retrying in %.1f s", self.target, exc.status, exc.reason, delay)
            return delay
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._closing:
                return 0.0  # close() interrupted the watch: the agent is stopping
            # Cut connections, timeouts, refused connections, a garbled line: temporary.
            self.restarts += 1
            delay = self.backoff.next()
            log.warning("%s: connection problem (%s); retrying in %.1f s", self.target, type(exc).__name__, delay)
            return delay

    def close(self) -> None:
        """Interrupt an open watch (shutdown)."""
        self._closing = True
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except (OSError, AttributeError):  # a response that already ended: nothing to interrupt
                pass

    # --- list -----------------------------------------------------------------------------

    def relist(self) -> None:
        kind, namespace = self.target.kind, self.target.namespace
        seen: set[ObjectKey] = set()
        token, list_rv = None, None
        while True:
            page = self.api.list(kind, namespace, self.target.label_selector,
                                 self.target.page_size or self.settings.list_page_size, token)
            meta = page.get("metadata") or {}
            list_rv = list_rv or meta.get("resourceVersion")
            for obj in page.get("items") or []:
                key = self._observe(obj)
                if key is not None:
                    seen.add(key)
            token = meta.get("continue")
            if not token:
                break
        for delta in self.tracker.forget_kind(kind.kind, seen, namespace):
            self.outbox.put(delta)
        self.resource_version = list_rv
        self._last_seen = _rv_number(list_rv)
        self.relists += 1
        self.synced.set()

    # --- watch ------------------------------------------------------------------------------

    def watch_once(self) -> None:
        response = self.api.watch(self.target.kind, self.target.namespace, self.resource_version,
                                  self.target.label_selector, self.settings.watch_timeout)
        self._response = response
        try:
            buffer = b""
            for chunk in response.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.handle_line(line)
            if buffer.strip():
                self.handle_line(buffer)
        finally:
            self._response = None
            response.release_conn()

    def handle_line(self, line: bytes) -> None:
        event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ValueError(f"watch error: {obj.get('code')} {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        number = _rv_number(rv)
        if number is not None and self._last_seen is not None and number <= self._last_seen:
            return  # a duplicate, or older than what was already seen
        if kind in ("ADDED", "MODIFIED"):
            self._observe(obj)
        elif kind == "DELETED":
            self._observe(obj, deleted=True)
        elif kind != "BOOKMARK":
            raise ValueError(f"unknown watch event type {kind!r}")
        self.events += kind != "BOOKMARK"
        if rv:
            self.resource_version = rv
            self._last_seen = number

    def _observe(self, obj: dict, deleted: bool = False) -> ObjectKey | None:
        """Summarise one object into the tracker; its key when it is followed."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        kind = self.target.kind.kind
        followed = not deleted and (self.target.accept is None or self.target.accept(obj))
        state = _interned(SUMMARIES[kind](obj)) if followed else None
        delta = self.tracker.observe(kind, sys.intern(namespace), name, state)
        if delta is not None:
            self.outbox.put(delta)
        return ObjectKey(kind, namespace, name) if followed else None


def _interned(state: dict) -> dict:
    """The state with its short strings interned: thousands of objects share "Synced", "Healthy",
    workspace names, reasons; one copy each instead of one per object (a few MB at 10,000 objects)."""
    for key, value in state.items():
        if isinstance(value, str) and len(value) <= 64:
            state[key] = sys.intern(value)
        elif isinstance(value, list):
            state[key] = [sys.intern(v) if isinstance(v, str) and len(v) <= 64 else v for v in value]
    return state


def targets(settings: AgentSettings, tracker: Tracker) -> list[Target]:
    """Everything the agent follows, for these settings.

    Applications: the ArgoCD namespace, Shipyard's label. Workloads (Deployments,
    Rollouts, Pods, Workflows, Jobs) with Shipyard's label, and Events, in the allowed
    namespaces: one watch per namespace when the allow list names them exactly
    (namespaced RBAC suffices), else one cluster-wide watch filtered here. Events
    carry no labels: only those about an object the tracker follows are kept.
    """

    def allowed(obj: dict) -> bool:
        return settings.namespace_allowed((obj.get("metadata") or {}).get("namespace") or "")

    def about_followed(obj: dict) -> bool:
        involved = obj.get("involvedObject") or obj.get("regarding") or {}
        namespace = involved.get("namespace") or (obj.get("metadata") or {}).get("namespace") or ""
        return (involved.get("kind") in FOLLOWED_KINDS
                and ObjectKey(involved["kind"], namespace, involved.get("name") or "") in tracker)

    def event_filter(obj: dict) -> bool:
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        return (namespace == settings.argocd_namespace or settings.namespace_allowed(namespace)) and about_followed(obj)

    # Applications are large (status lists every resource and the sync history): a page of 500 parsed
    # at once cost 6 MB more peak RSS than pages of 100 at 10,000 Applications (benchmarks/agent_rss.py).
    result = [Target(APPLICATION, settings.argocd_namespace, page_size=min(100, settings.list_page_size))]
    workloads = (DEPLOYMENT, ROLLOUT, POD, WORKFLOW, JOB)
    fixed = settings.fixed_namespaces
    if fixed is None:
        result += [Target(kind, None, accept=allowed) for kind in workloads]
        result.append(Target(EVENT, None, label_selector=None, accept=event_filter))
    else:
        result += [Target(kind, namespace) for namespace in fixed for kind in workloads]
        result += [Target(EVENT, namespace, label_selector=None, accept=about_followed)
                   for namespace in (settings.argocd_namespace, *fixed)]
    return result


__all__ = ["Watcher", "Target", "Gone", "targets", "retry_after"]
