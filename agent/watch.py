"""List + watch of the objects the agent follows, into the Tracker and the Outbox.

One ``Watcher`` per (kind, namespace or cluster-wide) in its own thread: the
kubernetes client is synchronous (urllib3), and a blocked read costs a thread,
not a busy loop. Each watcher, with the habits of client-go's reflector
(k8s.io/client-go tools/cache/reflector.go):

1. lists page by page (``limit``), summarising each object (agent.summaries)
   into the Tracker; what the Tracker knew of this kind and scope and the list
   no longer has is reported deleted (so a gap, e.g. after 410, loses nothing);
2. watches from the list's resourceVersion with bookmarks; the JSON lines are
   parsed here, never deserialized into client models (memory);
3. on a normal end of the watch (timeoutSeconds) watches again from the last
   resourceVersion at once; everything else waits a back-off with jitter that
   starts over only after sustained health (agent.backoff).

=====================================  =============================================================
what happens                           what the watcher does
=====================================  =============================================================
watch ends normally                    watch again now; timeoutSeconds drawn from [T, 2T] (T:
                                       SHIPYARD_WATCH_TIMEOUT) so watchers do not reconnect in step
watch ends under a second, no events   a failure (client-go: "very short watch"): back off
nothing read for ``idle_timeout``      the connection is dead (bookmarks come about once a minute on
                                       a quiet watch): back off, watch again
410 Gone on the watch                  back off (so watchers told at once spread out), list again
                                       NotOlderThan the last resourceVersion seen
410 Gone on a list                     back off, list again as a quorum read (what was seen is gone
                                       from the watch cache and etcd alike)
401 / 403                              record the fault (heartbeat), the scope counts as listed so the
                                       first snapshot does not wait; retry every
                                       SHIPYARD_UNAUTHORIZED_BACKOFF: a Role created later is used
404 (the kind's CRD not installed)     report the kind's objects deleted, record the fault, retry
                                       every SHIPYARD_UNAUTHORIZED_BACKOFF: a CRD installed later is used
429 / 5xx / connection problems        back off, at least Retry-After
=====================================  =============================================================

Lists are served from the API server's watch cache where correctness allows
(Kubernetes "API Concepts", "Semantics for get and list"): the first with
``resourceVersion=0`` (any version; client-go's initial list does the same;
the watch that follows brings it up to date), a relist after a watch's 410
with ``resourceVersion=<last seen>&resourceVersionMatch=NotOlderThan`` (never
older than what was already reported, so no object walks back in time). A
list that itself answered 410 is retried unset: a quorum read from etcd, the
one case that needs it (client-go's ``isLastSyncResourceVersionUnavailable``).

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
import time
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

# The API server sends a BOOKMARK about once a minute on a watch that asked for them ("API Concepts",
# "Watch bookmarks"; the watch cache's bookmark frequency is 1 min): silence for longer than that and
# a margin means the connection is dead, even where TCP has not noticed.
WATCH_IDLE_TIMEOUT = 90.0
# client-go's reflector calls a watch that ends within a second with no event a "very short watch": an error.
SHORT_WATCH = 1.0
# The back-off starts over only after this long without a failure (client-go's reflector: 2 minutes).
HEALTHY_AFTER = 120.0


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


class ShortWatch(Exception):
    """The watch ended under a second with nothing in it: the server or a proxy is closing it, not a timeout."""


def _server_message(exc: ApiException) -> str:
    """The API server's Status message of an error answer, or its HTTP reason."""
    try:
        return str(json.loads(exc.body or "")["message"])
    except (ValueError, TypeError, KeyError):
        return f"{exc.status} {exc.reason}"


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
    idle_timeout: float = WATCH_IDLE_TIMEOUT
    relists: int = 0
    restarts: int = 0
    events: int = 0
    synced: threading.Event = field(default_factory=threading.Event)  # set once the scope is listed or refused
    fault: dict[str, str] | None = None  # why the scope is not followed now (the heartbeat's watch_faults)
    _last_seen: int | None = None
    _list_from: tuple[str | None, str | None] = ("0", None)  # the next list's resourceVersion and match
    _response: object | None = None
    _closing: bool = False

    def __post_init__(self):
        self.backoff = Backoff(self.settings.backoff_base, self.settings.backoff_max, self.rng,
                               reset_after=HEALTHY_AFTER)

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
            self._clear_fault()
            return 0.0
        except Gone:
            self._list_from = (self.resource_version, "NotOlderThan")
            self.resource_version = None
            delay = self.backoff.next()
            log.info("%s: resourceVersion expired, listing again in %.1f s", self.target, delay)
            return delay
        except ShortWatch:
            self.restarts += 1
            delay = self.backoff.next()
            log.warning("%s: the watch ended at once with nothing in it; retrying in %.1f s", self.target, delay)
            return delay
        except ApiException as exc:
            self.restarts += 1
            if exc.status == 410:
                # A watch answered 410: list not older than what was seen. A list answered 410 (its
                # resourceVersion or continue token is out of the window): only a quorum read is left.
                listing = self.resource_version is None
                self._list_from = (None, None) if listing else (self.resource_version, "NotOlderThan")
                self.resource_version = None
                return self.backoff.next()
            if exc.status in (401, 403, 404):
                return self._refused(exc)
            delay = self.backoff.next(at_least=retry_after(exc))
            log.warning("%s: API error %s %s; retrying in %.1f s", self.target, exc.status, exc.reason, delay)
            return delay
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._closing:
                return 0.0  # close() interrupted the watch: the agent is stopping
            # Cut connections, timeouts (a silent, dead watch), refused connections, a garbled line: temporary.
            self.restarts += 1
            delay = self.backoff.next()
            log.warning("%s: connection problem (%s); retrying in %.1f s", self.target, type(exc).__name__, delay)
            return delay

    def _refused(self, exc: ApiException) -> float:
        """401/403/404: they change only when someone acts (a token, a Role, a CRD), so retry slowly,
        spread out; record why for the heartbeat; never hold up the first snapshot for a 403 or 404."""
        reason = {401: "unauthorized", 403: "forbidden", 404: "not_served"}[exc.status]
        delay = max(retry_after(exc), self.settings.unauthorized_backoff * self.rng.uniform(1.0, 1.5))
        if exc.status == 404:
            # The kind is gone (its CRD uninstalled) or never was: what was reported of it is not there.
            for delta in self.tracker.forget_kind(self.target.kind.kind, (), self.target.namespace):
                self.outbox.put(delta)
            self.resource_version, self._list_from = None, ("0", None)
        if exc.status != 401:
            # A 401 refuses every scope alike (the agent's token): a snapshot then would say that
            # everything is gone, so the first one waits for it as for a list (up to SYNC_TIMEOUT).
            self.synced.set()
        known = self.fault is not None and self.fault["reason"] == reason
        self.fault = {"kind": self.target.kind.kind, "namespace": self.target.namespace or "", "reason": reason,
                      "message": _server_message(exc)}
        if not known:
            if exc.status == 404:
                log.warning("%s: not served by this cluster (CRD not installed?); its objects are reported deleted; "
                            "retrying every %.0f s", self.target, self.settings.unauthorized_backoff)
            else:
                log.error("%s: the API server refused the agent (%s %s: %s); check its service account and RBAC; "
                          "retrying every %.0f s", self.target, exc.status, exc.reason, self.fault["message"],
                          self.settings.unauthorized_backoff)
        return delay

    def _clear_fault(self) -> None:
        if self.fault is not None:
            log.info("%s: followed again (was %s)", self.target, self.fault["reason"])
            self.fault = None

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
        resource_version, match = self._list_from
        while True:
            # Only the first page names a resourceVersion; the continue token carries the list's own.
            page = self.api.list(kind, namespace, self.target.label_selector,
                                 self.target.page_size or self.settings.list_page_size, token,
                                 resource_version=None if token else resource_version,
                                 resource_version_match=None if token else match)
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
        # Randomised in [T, 2T] as client-go's reflector draws it (minWatchTimeout * (1 + rand)), so
        # watchers started together do not all reconnect at the same moment every T seconds.
        timeout = int(self.settings.watch_timeout * self.rng.uniform(1.0, 2.0))
        started, received = time.monotonic(), 0
        response = self.api.watch(self.target.kind, self.target.namespace, self.resource_version,
                                  self.target.label_selector, timeout, read_timeout=self.idle_timeout)
        self._response = response
        try:
            buffer = b""
            for chunk in response.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        received += 1
                        self.handle_line(line)
            if buffer.strip():
                received += 1
                self.handle_line(buffer)
        finally:
            self._response = None
            response.release_conn()
        if not received and time.monotonic() - started < SHORT_WATCH and not self._closing:
            raise ShortWatch()

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


__all__ = ["Watcher", "Target", "Gone", "ShortWatch", "targets", "retry_after", "WATCH_IDLE_TIMEOUT"]
