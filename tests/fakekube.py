"""A fake Kubernetes API server that speaks the wire protocol the official client uses.

No API server can run on these machines, so the agent is tested against this
one: a real HTTP/1.1 server on loopback (a thread per connection), so the
``kubernetes`` client's own request code (urllib3, bearer auth, query
serialization, ApiException on non-2xx) runs unchanged. Each behaviour below
follows the Kubernetes documentation ("API Concepts", "API Priority and
Fairness", "Using RBAC Authorization") or, where the documentation leaves it
open, the kube-apiserver source it names; tests/test_fakekube.py holds the fake
to each of them on the wire.

What it does as the API server does:

- objects per resource (core v1 pods/events/namespaces, apps/v1 deployments,
  batch/v1 jobs/cronjobs, argoproj.io applications/rollouts/workflows/
  workflowtemplates/cronworkflows, apiextensions CRDs), one global
  resourceVersion counter (etcd's revision);
- a custom resource is served only while its CRD exists and serves that
  version: lists, watches, gets and creates of it answer 404 otherwise, and
  deleting the CRD deletes its objects and ends its watches;
- list (namespaced and cluster-wide) as a ``<Kind>List`` envelope, label
  selectors (``k=v``, ``k!=v``, ``k``, ``!k``), ``limit`` + ``continue``
  pages served from a consistent snapshot taken by the first page; the
  resourceVersion / resourceVersionMatch table of "API Concepts": unset is a
  quorum read (etcd), ``0`` and ``NotOlderThan`` are served from the watch
  cache, ``Exact`` (or a resourceVersion with ``limit``) from etcd with 410
  below the compaction floor; each list records where it was served from;
- watch (``watch=true|1``) from a resourceVersion as a chunked stream of JSON
  lines: synthetic ADDED first when started without one, else the replay of
  the watch cache; BOOKMARKs when asked for (``allowWatchBookmarks``) every
  ``bookmark_interval`` (kube-apiserver: once a minute) and 2 s before
  ``timeoutSeconds`` ends; streaming lists (``sendInitialEvents``);
- the watch cache: a window of events per resource, kept ``watch_cache_window``
  seconds (kube-apiserver: 75 s) but never fewer than the last
  ``watch_cache_min_events`` (kube-apiserver: 100); a watch from before the
  window gets an ERROR event with code 410 (or a 410 response with
  ``gone_as_response``); etcd compaction every ``compaction_interval``
  (kube-apiserver: 5 min), after which continue tokens and Exact lists from
  before it get 410 Gone;
- PartialObjectMetadata(List) when the Accept header asks for it
  (``application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1``),
  406 when no offered representation is served;
- RBAC when switched on (``restrict``/``grant``/``revoke``): 403 Forbidden
  with the real Status body for a (verb, resource, namespace) not granted;
- create (POST, ``generateName``), get, merge/strategic-merge patch,
  pods/<name>/log with ``tailLines``/``limitBytes``/``container``/``previous``/``sinceTime``/
  ``timestamps``, /version,
  /api and /apis discovery (only the groups served).

And what tests need: ``create``/``update``/``delete`` from Python (bumping
the resourceVersion and emitting watch events), ``compact`` (drop history),
``advance`` (move the fake's clock: the watch cache and compaction age by it),
``inject_event`` (a raw event, for duplicate and out-of-order delivery),
fault switches for a number of requests or until switched off (``fail``:
401/403/500/...; ``throttle``: APF's 429 with Retry-After; ``slow``;
``end_watches``: the connection closes right after the headers; ``hang``: accept
and never answer; ``cut_watches``: open watches closed mid-stream), and a
request log (``requests`` as (method, path, query); ``log`` as ``Request``
records with the Kubernetes verb, resource, namespace, time, status and where
a list was served from; ``request_count``, ``requests_per_minute``).
"""

from __future__ import annotations

import base64
import datetime as dt
import collections
import copy
import json
import queue
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kube_objects import (
    managed_fields,
    realistic_application,
    realistic_crd,
    realistic_deployment,
    realistic_pod,
)


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def crd_name(self) -> str | None:
        """The CRD that serves this resource; None for a built-in one."""
        return None if self.group in BUILT_IN_GROUPS else f"{self.plural}.{self.group}"


BUILT_IN_GROUPS = frozenset({"", "apps", "batch", "apiextensions.k8s.io"})
RESOURCES = [
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("batch", "v1", "jobs", "Job"),
    Resource("batch", "v1", "cronjobs", "CronJob"),
    Resource("argoproj.io", "v1alpha1", "applications", "Application"),
    Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout"),
    Resource("argoproj.io", "v1alpha1", "workflows", "Workflow"),
    Resource("argoproj.io", "v1alpha1", "workflowtemplates", "WorkflowTemplate"),
    Resource("argoproj.io", "v1alpha1", "cronworkflows", "CronWorkflow"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False),
]
BY_PLURAL = {r.plural: r for r in RESOURCES}
BY_KIND = {r.kind: r for r in RESOURCES}

# What a cluster with Argo CD, Argo Rollouts, Argo Workflows and KEDA installed serves.
DEFAULT_CRDS = ("applications.argoproj.io", "rollouts.argoproj.io", "workflows.argoproj.io",
                "workflowtemplates.argoproj.io", "cronworkflows.argoproj.io", "scaledobjects.keda.sh")

# "API Concepts", Receiving resources as Tables / alternate representations: the metadata-only
# representations are asked for with ``as=<Kind>;g=meta.k8s.io;v=v1`` in the Accept header.
META_GROUP_VERSION = "meta.k8s.io/v1"
NOT_FOUND = "the server could not find the requested resource"
TOO_MANY_REQUESTS = "Too many requests, please try again later.\n"  # kube-apiserver's tooManyRequests(), text/plain

# Kubernetes authorization verbs of a request ("Authorization Overview", Determine the Request Verb).
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge behaves the same on the maps the agent patches)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_selector(text: str | None):
    """A predicate over label dicts for a label selector (equality and existence forms)."""
    terms = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) != v)
        elif "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            terms.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) == v)
        elif part.startswith("!"):
            terms.append(lambda labels, k=part[1:].strip(): k not in labels)
        else:
            terms.append(lambda labels, k=part: k in labels)
    return lambda labels: all(term(labels or {}) for term in terms)


def partial_metadata(obj: dict) -> dict:
    """An object as PartialObjectMetadata: its metadata only ("API Concepts", alternate representations)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": META_GROUP_VERSION,
            "metadata": copy.deepcopy(obj.get("metadata") or {})}


def _representation(accept: str | None, wanted: str) -> str | None:
    """Which representation of ``wanted`` ("list", "object") the Accept header gets: "full",
    "partial", or None (406) when no offered media type is served. Offers are taken in order
    (q-values are not weighed); protobuf and Table are not served by the fake, so a client that
    also offers plain JSON gets that, as the API server's content negotiation does."""
    if not accept or not accept.strip():
        return "full"
    for offer in accept.split(","):
        media, *params = [p.strip() for p in offer.split(";")]
        options = dict(p.split("=", 1) for p in params if "=" in p)
        if media not in ("application/json", "application/*", "*/*"):
            continue
        target = options.get("as")
        if target is None:
            return "full"
        if options.get("g") != "meta.k8s.io" or options.get("v") not in ("v1", "v1beta1"):
            continue
        if target == ("PartialObjectMetadataList" if wanted == "list" else "PartialObjectMetadata"):
            return "partial"
    return None


@dataclass
class Request:
    """One request as the API server's audit log would see it."""

    at: float  # the fake's clock (FakeKube.now)
    method: str
    path: str
    query: dict
    verb: str | None = None  # get, list, watch, create, patch, update, delete; None for non-resource URLs
    resource: str | None = None  # plural, "pods/log" for a subresource
    namespace: str | None = None  # "" for a cluster-scoped or all-namespaces request
    name: str | None = None
    status: int = 0
    served_from: str | None = None  # lists: "cache" (watch cache) or "etcd" (quorum read); watches: "cache"


@dataclass
class Fault:
    """A fault switch: what the next matching requests get, ``times`` of them (None: until ``off()``)."""

    status: int
    times: int | None
    match: Any  # callable(method, path, query) -> bool, or None for every request
    retry_after: int | None = None
    delay: float = 0.0  # a slow response: sleep before answering
    action: str = "status"  # status | slow | end (close after the headers) | hang (never answer)
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    hits: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    def matches(self, request: Request) -> bool:
        return ((self.times is None or self.times > 0)
                and (self.verb is None or self.verb == request.verb)
                and (self.resource is None or self.resource == request.resource)
                and (self.namespace is None or self.namespace == request.namespace)
                and (self.match is None or self.match(request.method, request.path, request.query)))

    def off(self) -> None:
        """Switch the fault off; connections it holds hanging are closed."""
        self.times = 0
        self.released.set()


@dataclass
class Watcher:
    resource: Resource
    namespace: str | None
    selects: Any
    events: queue.Queue = field(default_factory=queue.Queue)
    cut: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    """Clients that hang up (a cut watch, an agent stopping) are a normal end, not a traceback on stderr."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FakeKube:
    """The server's state and the test API. Use as a context manager, or start()/stop()."""

    def __init__(self, token: str = "fake-token", history: int = 10_000, bookmark_interval: float = 60.0,
                 git_version: str = "v1.33.1", crds: tuple[str, ...] | None = None,
                 watch_cache_window: float = 75.0, watch_cache_min_events: int = 100,
                 compaction_interval: float = 300.0, user: str = "system:serviceaccount:shipyard:shipyard-agent",
                 clock=time.monotonic):
        self.token = token
        self.history_size = history  # events kept per resource at most
        # kube-apiserver (apiserver/pkg/storage/cacher): defaultBookmarkFrequency = 1 min,
        # eventFreshDuration = 75 s, lowerBoundCapacity = 100 events; etcd compaction every 5 min.
        self.bookmark_interval = bookmark_interval
        self.watch_cache_window = watch_cache_window
        self.watch_cache_min_events = watch_cache_min_events
        self.compaction_interval = compaction_interval
        self.git_version = git_version
        self.user = user
        self.gone_as_response = False  # 410 as an HTTP response to a watch instead of an ERROR event
        self._clock = clock
        self._clock_offset = 0.0
        self._lock = threading.RLock()
        self._rv = 0
        self._objects: dict[Resource, dict[tuple[str, str], dict]] = {r: {} for r in RESOURCES}
        # the watch cache: per resource, (rv, type, object, recorded at)
        self._history: dict[Resource, collections.deque] = {r: collections.deque() for r in RESOURCES}
        self._cache_floor: dict[Resource, int] = {r: 0 for r in RESOURCES}
        self._floor = 0  # etcd's compacted revision: nothing older can be read
        self._last_compaction = (self.now(), 0)  # (when, revision then): the next compaction goes to it
        self._watchers: list[Watcher] = []
        self._snapshots: collections.OrderedDict[str, tuple[int, list[dict]]] = collections.OrderedDict()
        self._faults: list[Fault] = []
        self._logs: dict[tuple[str, str, str | None, bool], list[tuple[str, str]]] = {}
        self._rbac: set[tuple[str, str, str | None]] | None = None  # None: every request is allowed
        self._stopping = threading.Event()
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query) of every request
        self.log: list[Request] = []  # the same requests, with verb, resource, namespace, time and status
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for crd in crds if crds is not None else DEFAULT_CRDS:
            plural, group = crd.split(".", 1)
            self.create("customresourcedefinitions", {"metadata": {"name": crd}, "spec": {
                "group": group, "names": {"plural": plural}, "scope": "Namespaced",
                "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}})

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> "FakeKube":
        fake = self

        class Handler(_Handler):
            kube = fake

        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakekube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.cut_watches()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeKube":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- time ----------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on: the watch cache ages and etcd compacts by it, with no waiting."""
        with self._lock:
            self._clock_offset += seconds
            self._tick()

    def _tick(self) -> None:
        """etcd compaction (lock held): every compaction_interval, compact to the revision of the last tick,
        as kube-apiserver's compactor does, so between one and two intervals of history stay."""
        when, revision = self._last_compaction
        now = self.now()
        if self.compaction_interval and now - when >= self.compaction_interval:
            if revision > self._floor:
                self._compact_to(revision)
            self._last_compaction = (now, self._rv)

    # --- the test API -------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _emit(self, resource: Resource, kind: str, obj: dict) -> None:
        """Record one change (lock held): the resource's watch cache, and every watcher that selects it."""
        history = self._history[resource]
        history.append((self._rv, kind, obj, self.now()))
        oldest_kept = self.now() - self.watch_cache_window
        while history and (len(history) > self.history_size
                           or (len(history) > max(self.watch_cache_min_events, 1) and history[0][3] < oldest_kept)):
            self._cache_floor[resource] = history.popleft()[0]
        for watcher in self._watchers:
            if self._selected(watcher, resource, obj):
                watcher.events.put((kind, obj))

    @staticmethod
    def _selected(watcher: Watcher, resource: Resource, obj: dict) -> bool:
        meta = obj.get("metadata", {})
        return (watcher.resource == resource
                and (watcher.namespace is None or meta.get("namespace") == watcher.namespace)
                and watcher.selects(meta.get("labels")))

    def _resource(self, plural_or_kind: str) -> Resource:
        return BY_PLURAL.get(plural_or_kind) or BY_KIND[plural_or_kind]

    def served(self, resource: Resource) -> bool:
        """Whether the server serves the resource now: built in, or its CRD exists and serves the version."""
        if resource.crd_name is None:
            return True
        with self._lock:
            crd = self._objects[BY_PLURAL["customresourcedefinitions"]].get(("", resource.crd_name))
        versions = ((crd or {}).get("spec") or {}).get("versions") or []
        return any(v.get("name") == resource.version and v.get("served", True) for v in versions)

    def create(self, plural: str, obj: dict, namespace: str | None = None) -> dict:
        resource = self._resource(plural)
        if not self.served(resource):
            raise KeyError(f"{resource.plural}.{resource.group}/{resource.version} is not served: "
                           f"create its CustomResourceDefinition {resource.crd_name} first")
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        with self._lock:
            if not meta.get("name"):
                meta["name"] = meta.get("generateName", "obj-") + uuid.uuid4().hex[:5]
            key = (meta.get("namespace", ""), meta["name"])
            if key in self._objects[resource]:
                raise KeyError(f"{resource.kind} {key} already exists")
            self._rv += 1
            obj.setdefault("apiVersion", resource.api_version)
            obj.setdefault("kind", resource.kind)
            meta.update(resourceVersion=str(self._rv), uid=meta.get("uid") or str(uuid.uuid4()),
                        generation=meta.get("generation", 1),
                        creationTimestamp=meta.get("creationTimestamp") or time.strftime("%Y-%m-%dT%H:%M:%SZ"))
            self._objects[resource][key] = obj
            self._emit(resource, "ADDED", obj)
            return copy.deepcopy(obj)

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            found = self._objects[self._resource(plural)].get((namespace or "", name))
            return copy.deepcopy(found)

    def items(self, plural: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects[self._resource(plural)].values()]

    def update(self, plural: str, namespace: str, name: str, change: dict | None = None, **patch) -> dict:
        """Merge-patch an object (a dict, or keyword arguments), as a controller would update it."""
        resource = self._resource(plural)
        with self._lock:
            key = (namespace or "", name)
            current = self._objects[resource][key]
            # A new object each time: history and open watches keep the versions they were given.
            obj = merge_patch(copy.deepcopy(current), change if change is not None else patch)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            if "spec" in (change or patch):
                obj["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            self._objects[resource][key] = obj
            self._emit(resource, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        """Delete an object. Deleting a CRD deletes its objects (each a DELETED event) and ends the watches
        of its resource, as the apiextensions server's finalizer does before the CRD is gone."""
        resource = self._resource(plural)
        with self._lock:
            obj = self._objects[resource].pop((namespace or "", name))
            self._rv += 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
            self._emit(resource, "DELETED", obj)
            if resource.plural == "customresourcedefinitions":
                for served in RESOURCES:
                    if served.crd_name == name:
                        for key in sorted(self._objects[served]):
                            self.delete(served.plural, *key)
                        for watcher in self._watchers:
                            if watcher.resource == served:
                                watcher.events.put(("END", None))

    def _compact_to(self, revision: int) -> None:
        """etcd compaction to ``revision`` (lock held): older revisions, and continue tokens and watch
        cache events from before it, can no longer be served."""
        self._floor = max(self._floor, revision)
        for resource, history in self._history.items():
            while history and history[0][0] <= self._floor:
                history.popleft()
            self._cache_floor[resource] = max(self._cache_floor[resource], self._floor)
        for snapshot_id, (list_rv, _) in list(self._snapshots.items()):
            if list_rv < self._floor:
                del self._snapshots[snapshot_id]

    def compact(self) -> None:
        """Forget the history window (etcd compaction): watches and lists from before now get 410."""
        with self._lock:
            self._compact_to(self._rv)
            self._snapshots.clear()

    def expire_watches(self) -> None:
        """Compact, and tell every open watch its resourceVersion is too old (ERROR 410), as after a long gap."""
        with self._lock:
            self.compact()
            for watcher in self._watchers:
                watcher.events.put(("ERROR", status_body(410, "Expired", "too old resource version")))

    def inject_event(self, plural: str, kind: str, obj: dict) -> None:
        """Deliver a raw event to the open watches of a resource, without touching the store."""
        resource = self._resource(plural)
        with self._lock:
            for watcher in self._watchers:
                if self._selected(watcher, resource, obj):
                    watcher.events.put((kind, copy.deepcopy(obj)))

    def bookmark(self) -> None:
        """A BOOKMARK now on every open watch that asked for them."""
        with self._lock:
            for watcher in self._watchers:
                watcher.events.put(("BOOKMARK", self._rv))

    # --- fault switches ----------------------------------------------------------------------

    def _add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(self, status: int, times: int | None = 1, match=None, retry_after: int | None = None,
             verb: str | None = None, resource: str | None = None, namespace: str | None = None) -> Fault:
        """The next ``times`` requests (None: until ``off()``) matching ``match(method, path, query)`` and the
        given verb/resource/namespace get ``status`` (429 as API Priority and Fairness sends it)."""
        return self._add_fault(Fault(status, times, match, retry_after, verb=verb, resource=resource,
                                     namespace=namespace))

    def throttle(self, retry_after: int = 1, times: int | None = 1, match=None, **where) -> Fault:
        """429 Too Many Requests with Retry-After, as API Priority and Fairness rejects a request."""
        return self.fail(429, times, match, retry_after, **where)

    def slow(self, seconds: float, times: int | None = 1, match=None, **where) -> Fault:
        return self._add_fault(Fault(0, times, match, delay=seconds, action="slow", **where))

    def end_watches(self, times: int | None = None, match=None, verb: str | None = "watch", **where) -> Fault:
        """Watches (by default) answered with the headers of a 200 and then a closed connection, as a proxy
        or load balancer that drops long requests does: the stream ends before its first event."""
        return self._add_fault(Fault(200, times, match, action="end", verb=verb, **where))

    def hang(self, times: int | None = None, match=None, **where) -> Fault:
        """Requests accepted and never answered (no status line, no close) until the fault is switched
        off or the server stops, as behind a black-holed route; then the connection closes."""
        return self._add_fault(Fault(0, times, match, action="hang", **where))

    def clear_faults(self) -> None:
        with self._lock:
            for fault in self._faults:
                fault.off()
            self._faults.clear()

    def cut_watches(self) -> None:
        """Close every open watch connection mid-stream (no terminating chunk), as a dying proxy does."""
        with self._lock:
            for watcher in self._watchers:
                watcher.cut.set()
                watcher.events.put(("CUT", None))

    @property
    def open_watches(self) -> int:
        with self._lock:
            return len(self._watchers)

    # --- RBAC ------------------------------------------------------------------------------

    def restrict(self) -> None:
        """Switch RBAC on with nothing granted: every resource request gets 403 until ``grant``."""
        with self._lock:
            self._rbac = set() if self._rbac is None else self._rbac

    def grant(self, verbs, resources, namespace: str | None = None) -> None:
        """Allow ``verbs`` on ``resources`` ("pods", "pods/log", "*") in ``namespace`` (a Role bound there)
        or, with None, everywhere including cluster scope (a ClusterRole bound by a ClusterRoleBinding).
        The first grant switches RBAC on."""
        verbs = [verbs] if isinstance(verbs, str) else verbs
        resources = [resources] if isinstance(resources, str) else resources
        with self._lock:
            self._rbac = self._rbac if self._rbac is not None else set()
            self._rbac.update((v, r, namespace) for v in verbs for r in resources)

    def revoke(self, namespace: str | None = None, verbs=None, resources=None) -> None:
        """Take back what was granted in ``namespace`` (None: the cluster-wide grants), all of it or only
        the given verbs/resources (a Role deleted or narrowed)."""
        verbs = [verbs] if isinstance(verbs, str) else verbs
        resources = [resources] if isinstance(resources, str) else resources
        with self._lock:
            if self._rbac is not None:
                self._rbac = {(v, r, ns) for v, r, ns in self._rbac
                              if not (ns == namespace and (verbs is None or v in verbs)
                                      and (resources is None or r in resources))}

    def allowed(self, verb: str, resource: str, namespace: str | None) -> bool:
        """RBAC's answer for a request; ``namespace`` "" or None for cluster scope (and all namespaces)."""
        with self._lock:
            if self._rbac is None:
                return True
            return any(v in (verb, "*") and r in (resource, "*") and (ns is None or (namespace and ns == namespace))
                       for v, r, ns in self._rbac)

    # --- the request log ---------------------------------------------------------------------

    def set_log(self, namespace: str, pod: str, text: str, container: str | None = None, previous: bool = False,
                start: str = "2026-01-01T00:00:00") -> None:
        """A container's log (``previous``: the one that ran before its last restart); each line gets a
        timestamp, one second apart from ``start`` (UTC), for ``timestamps`` and ``sinceTime``."""
        first = dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc)
        self._logs[(namespace, pod, container, previous)] = [
            ((first + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z"), line)
            for i, line in enumerate(text.splitlines(keepends=True))]

    def writes(self) -> list[tuple[str, str, dict]]:
        return [r for r in self.requests if r[0] not in ("GET", "HEAD")]

    def count(self, method: str = "GET", path_contains: str = "", watch: bool | None = None) -> int:
        return sum(1 for m, p, q in list(self.requests)
                   if m == method and path_contains in p
                   and (watch is None or (q.get("watch") in ("true", "1")) == watch))

    def requests_matching(self, verb: str | None = None, resource: str | None = None,
                          namespace: str | None = None, served_from: str | None = None,
                          since: float | None = None) -> list[Request]:
        """The logged requests with that verb/resource/namespace ("" for cluster scope), served from
        "cache" or "etcd", at or after ``since`` (the fake's clock)."""
        return [r for r in list(self.log)
                if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
                and (namespace is None or r.namespace == namespace)
                and (served_from is None or r.served_from == served_from)
                and (since is None or r.at >= since)]

    def request_count(self, verb: str | None = None, resource: str | None = None, namespace: str | None = None,
                      served_from: str | None = None, since: float | None = None) -> int:
        return len(self.requests_matching(verb, resource, namespace, served_from, since))

    def requests_per_minute(self, verb: str | None = None, resource: str | None = None,
                            namespace: str | None = None, since: float | None = None,
                            until: float | None = None) -> float:
        """Matching requests per minute between ``since`` (default: the first of them) and ``until``
        (default: now), on the fake's clock."""
        found = self.requests_matching(verb, resource, namespace, since=since)
        until = self.now() if until is None else until
        found = [r for r in found if r.at <= until]
        if not found:
            return 0.0
        start = found[0].at if since is None else since
        return len(found) * 60.0 / max(until - start, 1e-9)

    # --- used by the handler -------------------------------------------------------------

    def _take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in list(self._faults):
                if fault.times is not None and fault.times <= 0:
                    self._faults.remove(fault)
                elif fault.matches(request):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _list(self, resource: Resource, namespace: str | None, query: dict,
              request: Request | None = None) -> tuple[int, dict]:
        """A list as "API Concepts" (Resource Versions; Retrieving large results sets in chunks) tells it."""
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        requested = query.get("resourceVersion") or None
        match = query.get("resourceVersionMatch") or None
        if match is not None and requested is None:
            return 400, status_body(400, "BadRequest", "resourceVersionMatch is forbidden unless resourceVersion "
                                                       "is provided")
        if match not in (None, "Exact", "NotOlderThan"):
            return 400, status_body(400, "BadRequest", f'resourceVersionMatch: Unsupported value: "{match}": '
                                                       f'supported values: "Exact", "NotOlderThan"')
        if match == "Exact" and requested == "0":
            return 400, status_body(400, "BadRequest", 'resourceVersionMatch "exact" is forbidden for '
                                                       'resourceVersion "0"')
        if token and requested not in (None, "0"):
            return 400, status_body(400, "BadRequest", "specifying resource version is not allowed when using "
                                                       "continue")
        if requested is not None and not requested.isdigit():
            return 400, status_body(400, "BadRequest", f"invalid resource version: {requested}")
        with self._lock:
            self._tick()
            if token:
                served_from = "etcd"
                try:
                    snapshot_id, offset = json.loads(base64.urlsafe_b64decode(token))
                    list_rv, matching = self._snapshots[snapshot_id]
                except (ValueError, KeyError, TypeError):
                    return 410, status_body(410, "Expired", "The provided continue parameter is too old to display "
                                                            "a consistent list result. You can start a new list "
                                                            "without the continue parameter.")
            else:
                exact = match == "Exact" or (match is None and limit and requested not in (None, "0"))
                # unset: Most Recent, a quorum read; "0": Any; NotOlderThan (or a version with no limit):
                # Not older than -- both from the watch cache; Exact: from etcd, at that revision.
                served_from = "etcd" if requested is None or exact else "cache"
                if requested is not None and requested != "0":
                    if exact and int(requested) < self._floor:
                        return 410, status_body(410, "Expired",
                                                f"too old resource version: {requested} ({self._floor})")
                    if int(requested) > self._rv:
                        # "Unavailable resource versions": 504 with Retry-After, "Too large resource version".
                        return 504, status_body(504, "Timeout", f"Too large resource version: {requested}, "
                                                                f"current: {self._rv}",
                                                {"causes": [{"reason": "ResourceVersionTooLarge",
                                                             "message": "Too large resource version"}],
                                                 "retryAfterSeconds": 1})
                selects = parse_selector(query.get("labelSelector"))
                matching = [copy.deepcopy(obj) for (ns, _), obj in sorted(self._objects[resource].items())
                            if (namespace is None or ns == namespace)
                            and selects(obj["metadata"].get("labels"))]
                list_rv, snapshot_id, offset = self._rv, uuid.uuid4().hex, 0
            if request is not None:
                request.served_from = served_from
            page = matching[offset:offset + limit] if limit else matching[offset:]
            metadata = {"resourceVersion": str(list_rv)}
            if limit and offset + limit < len(matching):
                self._snapshots[snapshot_id] = (list_rv, matching)
                while len(self._snapshots) > 16:
                    self._snapshots.popitem(last=False)
                metadata["continue"] = base64.urlsafe_b64encode(
                    json.dumps([snapshot_id, offset + limit]).encode()).decode()
                metadata["remainingItemCount"] = len(matching) - offset - limit
            else:
                self._snapshots.pop(snapshot_id, None)
        return 200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                     "metadata": metadata, "items": page}

    def _open_watch(self, resource: Resource, namespace: str | None, query: dict):
        """Register a watcher and queue the replay; (None, status) when the resourceVersion is too old.

        "API Concepts", Resource Versions / Watch: unset or "0" starts with synthetic ADDED events
        for every object; a version starts right after it, from the watch cache, whose oldest event
        bounds how far back a watch can start (kube-apiserver answers older ones with 410 Expired).
        """
        watcher = Watcher(resource, namespace, parse_selector(query.get("labelSelector")))
        requested = query.get("resourceVersion") or None
        initial = query.get("sendInitialEvents") in ("true", "1")
        with self._lock:
            self._tick()
            if requested in (None, "0") or initial:
                # From "now": a real server first sends ADDED for every current object.
                for (ns, _), obj in sorted(self._objects[resource].items()):
                    if self._selected(watcher, resource, obj):
                        watcher.events.put(("ADDED", copy.deepcopy(obj)))
                if initial:
                    watcher.events.put(("INITIAL-END", self._rv))
            else:
                since = int(requested)
                floor = max(self._floor, self._cache_floor[resource])
                if since < floor:
                    return None, status_body(410, "Expired", f"too old resource version: {since} ({floor})")
                for rv, kind, obj, _ in self._history[resource]:
                    if rv > since and self._selected(watcher, resource, obj):
                        watcher.events.put((kind, obj))
            self._watchers.append(watcher)
        return watcher, None

    def _close_watch(self, watcher: Watcher) -> None:
        with self._lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kube: FakeKube

    def log_message(self, *args) -> None:  # the test output stays readable
        pass

    # --- plumbing -------------------------------------------------------------------------

    def _send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str, headers: dict | None = None) -> None:
        """A plain-text answer, as Go's http.Error writes it."""
        data = text.encode()
        self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, reason: str, message: str, headers: dict | None = None,
               details: dict | None = None) -> None:
        self._send_json(status, status_body(status, reason, message, details), headers)

    def _body(self) -> Any:
        return json.loads(self._raw or b"null")

    def _route(self):
        """(resource, namespace, name, subresource) of the request path, or None."""
        parts = [p for p in self._path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) in (1, 2) and rest[0] == "namespaces":
            namespace, rest = None, rest  # the namespaces resource itself
        if not rest or rest[0] not in BY_PLURAL:
            return None
        resource = BY_PLURAL[rest[0]]
        if (resource.group, resource.version) != (group, version):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return resource, namespace, name, sub

    def _describe(self, method: str, query: dict, route) -> None:
        """Fill the request record's Kubernetes verb, resource and namespace."""
        if route is None:
            return
        resource, namespace, name, sub = route
        record = self._record
        if method == "GET":
            record.verb = "get" if name else ("watch" if query.get("watch") in ("true", "1", "True") else "list")
        elif method == "DELETE":
            record.verb = "delete" if name else "deletecollection"
        else:
            record.verb = _VERBS.get(method, method.lower())
        record.resource = f"{resource.plural}/{sub}" if sub else resource.plural
        record.namespace = namespace or ""
        record.name = name

    def _forbidden(self, resource: Resource) -> None:
        """403 as the RBAC authorizer words it (apiserver: responsewriters.Forbidden)."""
        record, user = self._record, self.kube.user
        scope = f'in the namespace "{record.namespace}"' if record.namespace else "at the cluster scope"
        subject = f'{resource.plural} "{record.name}"' if record.name else resource.plural
        details = {"kind": resource.plural}
        if record.name:
            details["name"] = record.name
        if resource.group:
            details["group"] = resource.group
        self._error(403, "Forbidden", f'{subject} is forbidden: User "{user}" cannot {record.verb} resource '
                                      f'"{record.resource}" in API group "{resource.group}" {scope}',
                    details=details)

    def _hang(self, fault: Fault) -> None:
        """Hold the connection without a byte until the fault is switched off or the server stops."""
        while not fault.released.wait(0.05) and not self.kube._stopping.is_set():
            pass
        self._drop()

    def _drop(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    def _handle(self, method: str) -> None:
        # Read the body first, whatever the answer: left unread it would be taken for the next request.
        self._raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        self._path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        kube = self.kube
        self._record = Request(kube.now(), method, self._path, query)
        route = self._route()
        self._describe(method, query, route)
        kube.requests.append((method, self._path, query))
        kube.log.append(self._record)
        fault = kube._take_fault(self._record)
        if fault is not None and fault.action == "hang":
            return self._hang(fault)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if self.headers.get("Authorization") != f"Bearer {kube.token}":
            return self._error(401, "Unauthorized", "Unauthorized")
        if fault is not None and fault.action == "end":
            self._record.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            return self._drop()
        if fault is not None and fault.action == "status":
            return self._fault_status(fault)
        if method == "GET" and self._path == "/version":
            return self._send_json(200, {"major": "1", "minor": kube.git_version.split(".")[1],
                                         "gitVersion": kube.git_version, "platform": "linux/amd64"})
        if method == "GET" and self._path in ("/api", "/apis"):
            return self._send_json(200, self._discovery())
        if route is None:
            return self._error(404, "NotFound", NOT_FOUND, details={})
        resource, namespace, name, sub = route
        if not kube.allowed(self._record.verb, self._record.resource, self._record.namespace):
            return self._forbidden(resource)
        if not kube.served(resource):
            # No CRD serves the group/version: the request falls through to the API server's
            # NotFound handler (apiserver/pkg/util/notfoundhandler).
            return self._error(404, "NotFound", NOT_FOUND, details={})
        if method == "GET" and name is None:
            watch = self._record.verb == "watch"
            shape = _representation(self.headers.get("Accept"), "object" if watch else "list")
            if shape is None:
                return self._not_acceptable()
            if watch:
                return self._watch(resource, namespace, query, shape == "partial")
            status, body = kube._list(resource, namespace, query, self._record)
            if status == 200 and shape == "partial":
                body = {"kind": "PartialObjectMetadataList", "apiVersion": META_GROUP_VERSION,
                        "metadata": body["metadata"], "items": [partial_metadata(o) for o in body["items"]]}
            headers = {"Retry-After": "1"} if status == 504 else None
            return self._send_json(status, body, headers)
        if method == "GET" and sub == "log" and resource.kind == "Pod":
            return self._log(namespace, name, query)
        if method == "GET" and name is not None:
            shape = _representation(self.headers.get("Accept"), "object")
            if shape is None:
                return self._not_acceptable()
            obj = kube.get(resource.plural, namespace, name)
            if obj is None:
                return self._error(404, "NotFound", f'{resource.plural} "{name}" not found',
                                   details={"name": name, "kind": resource.plural})
            return self._send_json(200, partial_metadata(obj) if shape == "partial" else obj)
        if method == "POST" and name is None:
            body = self._body()
            if not isinstance(body, dict) or body.get("kind") not in (None, resource.kind):
                return self._error(400, "BadRequest", f"expected a {resource.kind}")
            try:
                return self._send_json(201, kube.create(resource.plural, body, namespace))
            except KeyError as exc:
                return self._error(409, "AlreadyExists", str(exc))
        if method == "PATCH" and name is not None:
            content_type = self.headers.get("Content-Type", "")
            if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                return self._error(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
            if kube.get(resource.plural, namespace, name) is None:
                return self._error(404, "NotFound", f'{resource.plural} "{name}" not found')
            return self._send_json(200, kube.update(resource.plural, namespace, name, self._body()))
        return self._error(405, "MethodNotAllowed", f"{method} is not supported here")

    def _fault_status(self, fault: Fault) -> None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        if fault.status == 429:
            # API Priority and Fairness (and max-in-flight) reject before any handler: Go's http.Error,
            # plain text, with Retry-After (apiserver/pkg/server/filters, tooManyRequests).
            return self._send_text(429, TOO_MANY_REQUESTS, {"Retry-After": str(fault.retry_after or 1)})
        reasons = {401: "Unauthorized", 403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable",
                   504: "Timeout"}
        message = f"injected {fault.status}"
        details = None
        if fault.status == 500:
            message, details = f"Internal error occurred: {message}", {"causes": [{"message": message}]}
        return self._error(fault.status, reasons.get(fault.status, "Error"), message, headers, details)

    def _not_acceptable(self) -> None:
        self._error(406, "NotAcceptable", "only the following media types are accepted: application/json, "
                                          "application/json;as=PartialObjectMetadata(List);g=meta.k8s.io;v=v1")

    def _discovery(self) -> dict:
        if self._path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        groups = sorted({(r.group, r.version) for r in RESOURCES if r.group and self.kube.served(r)})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
             "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]}

    def _log(self, namespace: str, name: str, query: dict) -> None:
        """GET pods/<name>/log with PodLogOptions: container, previous, sinceTime, timestamps, tailLines,
        limitBytes (applied in that order, as the kubelet does)."""
        if self.kube.get("pods", namespace, name) is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        previous = query.get("previous") == "true"
        container = query.get("container")
        logs = self.kube._logs
        entries = logs.get((namespace, name, container, previous), logs.get((namespace, name, None, previous)))
        if entries is None:
            if previous:
                return self._error(400, "BadRequest", f'previous terminated container "{container or name}" in pod '
                                                      f'"{name}" not found')
            entries = []
        if query.get("sinceTime"):
            since = dt.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
            entries = [e for e in entries if dt.datetime.fromisoformat(e[0][:26] + "+00:00") >= since]
        lines = [f"{stamp} {line}" if query.get("timestamps") == "true" else line for stamp, line in entries]
        if query.get("tailLines"):
            lines = lines[-int(query["tailLines"]):] if int(query["tailLines"]) else []
        text = "".join(lines)
        data = text.encode()
        if query.get("limitBytes"):
            data = data[: int(query["limitBytes"])]
        self._record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, resource: Resource, namespace: str | None, query: dict, partial: bool) -> None:
        kube = self.kube
        self._record.served_from = "cache"  # every watch is served from the watch cache
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        initial = query.get("sendInitialEvents") in ("true", "1")
        if query.get("resourceVersionMatch") and not initial:
            return self._error(400, "BadRequest", "resourceVersionMatch is forbidden for watch unless "
                                                  "sendInitialEvents is provided")
        if initial and (query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            return self._error(400, "BadRequest", "sendInitialEvents requires resourceVersionMatch=NotOlderThan "
                                                  "and allowWatchBookmarks=true")
        watcher, gone = kube._open_watch(resource, namespace, query)
        if watcher is None and kube.gone_as_response:
            return self._send_json(410, gone)
        self._record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if watcher is None:
            self._chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            self._chunk(b"")
            return
        started = time.monotonic()
        timeout = int(query.get("timeoutSeconds") or 1800)
        deadline = started + timeout
        # kube-apiserver's cacheWatcher.nextBookmarkTime: every bookmark interval, and 2 s before the deadline.
        next_bookmark = started + kube.bookmark_interval
        last_bookmark = deadline - 2 if timeout > 2 else None
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                due = min(next_bookmark, last_bookmark) if last_bookmark is not None else next_bookmark
                if now < due:
                    try:
                        kind, obj = watcher.events.get(timeout=min(deadline, due) - now)
                    except queue.Empty:
                        continue
                else:
                    # A bookmark promises every event up to its resourceVersion was sent: read the
                    # counter under the lock events are queued under, and only with nothing queued.
                    with kube._lock:
                        queued = not watcher.events.empty()
                        kind, obj = watcher.events.get_nowait() if queued else ("BOOKMARK", kube._rv)
                    if not queued:
                        if last_bookmark is not None and now >= last_bookmark:
                            last_bookmark = None
                        next_bookmark = now + kube.bookmark_interval
                if kind == "CUT" or watcher.cut.is_set():
                    # Mid-stream: half a line, then the socket closes without the terminating chunk.
                    self._chunk(b'{"type":"MODIFIED","object":{"kind":')
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if kind == "END":
                    break
                annotations = None
                if kind == "INITIAL-END":
                    # Streaming lists: the bookmark that closes the initial events carries this annotation.
                    kind, annotations = "BOOKMARK", {"k8s.io/initial-events-end": "true"}
                if kind == "BOOKMARK":
                    if not bookmarks:
                        continue
                    # "API Concepts", Watch bookmarks: an object of the requested type with only its resourceVersion.
                    obj = {"kind": resource.kind, "apiVersion": resource.api_version,
                           "metadata": {"resourceVersion": str(obj)}}
                    if annotations:
                        obj["metadata"]["annotations"] = annotations
                    if partial:
                        obj = {**obj, "kind": "PartialObjectMetadata", "apiVersion": META_GROUP_VERSION}
                elif partial and kind != "ERROR":
                    obj = partial_metadata(obj)
                self._chunk(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")
                if kind == "ERROR":
                    break
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            kube._close_watch(watcher)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def client_configuration(kube: FakeKube):
    """A kubernetes.client.Configuration pointing at the fake server with its bearer token."""
    from kubernetes.client import Configuration

    configuration = Configuration(host=kube.url, api_key={"authorization": kube.token},
                                  api_key_prefix={"authorization": "Bearer"})
    return configuration


__all__ = ["FakeKube", "Resource", "RESOURCES", "DEFAULT_CRDS", "Request", "Fault", "client_configuration",
           "merge_patch", "parse_selector", "partial_metadata", "status_body", "managed_fields",
           "realistic_application", "realistic_deployment", "realistic_pod", "realistic_crd"]
