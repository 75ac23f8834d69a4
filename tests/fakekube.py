"""A fake Kubernetes API server that speaks the wire protocol the official client uses.

No API server can run on these machines, so the agent is tested against this
one: a real HTTP/1.1 server on loopback (a thread per connection), so the
``kubernetes`` client's own request code (urllib3, bearer auth, query
serialization, ApiException on non-2xx) runs unchanged.

What it does as the API server does:

- objects per resource (core v1 pods/events/namespaces, apps/v1 deployments,
  batch/v1 jobs/cronjobs, argoproj.io applications/rollouts/workflows/
  workflowtemplates, apiextensions CRDs), one global resourceVersion counter;
- list (namespaced and cluster-wide) as a ``<Kind>List`` envelope, label
  selectors (``k=v``, ``k!=v``, ``k``, ``!k``), ``limit`` + ``continue``
  pages served from a consistent snapshot taken by the first page;
- watch (``watch=true|1``) from a resourceVersion as a chunked stream of JSON
  lines, replaying the history window first, BOOKMARKs when asked for
  (``allowWatchBookmarks``), ``timeoutSeconds``;
- a bounded history window: a watch or list from a resourceVersion older
  than the window gets 410 Gone (an ERROR event on a watch, as a real server
  with a watch cache sends it; or a 410 response with ``gone_as_response``);
  so are continue tokens whose snapshot fell out of the window;
- create (POST, ``generateName``), get, merge/strategic-merge patch,
  pods/<name>/log with ``tailLines``/``limitBytes``/``container``, /version,
  /api and /apis discovery.

And what tests need: ``create``/``update``/``delete`` from Python (bumping
the resourceVersion and emitting watch events), ``compact`` (drop history),
``inject_event`` (a raw event, for duplicate and out-of-order delivery),
``fail`` (401/403/500/... responses, with Retry-After), ``slow``,
``cut_watches`` (connections closed mid-stream), and a request log.
"""

from __future__ import annotations

import base64
import collections
import copy
import json
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


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


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


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


@dataclass
class Fault:
    status: int
    times: int
    match: Any  # callable(method, path, query) -> bool, or None for every request
    retry_after: int | None = None
    delay: float = 0.0  # a slow response: sleep before answering


@dataclass
class Watcher:
    resource: Resource
    namespace: str | None
    selects: Any
    events: queue.Queue = field(default_factory=queue.Queue)
    cut: threading.Event = field(default_factory=threading.Event)


class FakeKube:
    """The server's state and the test API. Use as a context manager, or start()/stop()."""

    def __init__(self, token: str = "fake-token", history: int = 10_000, bookmark_interval: float = 1.0,
                 git_version: str = "v1.33.1", crds: tuple[str, ...] | None = None):
        self.token = token
        self.history_size = history
        self.bookmark_interval = bookmark_interval
        self.git_version = git_version
        self.gone_as_response = False  # 410 as an HTTP response to a watch instead of an ERROR event
        self._lock = threading.RLock()
        self._rv = 0
        self._objects: dict[Resource, dict[tuple[str, str], dict]] = {r: {} for r in RESOURCES}
        self._history: collections.deque = collections.deque()  # (rv, resource, type, object)
        self._floor = 0  # the oldest resourceVersion a watch may start from
        self._watchers: list[Watcher] = []
        self._snapshots: collections.OrderedDict[str, tuple[int, list[dict]]] = collections.OrderedDict()
        self._faults: list[Fault] = []
        self._logs: dict[tuple[str, str, str | None], str] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query) of every request
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for crd in crds if crds is not None else (
                "applications.argoproj.io", "rollouts.argoproj.io", "workflows.argoproj.io",
                "workflowtemplates.argoproj.io", "scaledobjects.keda.sh"):
            plural, group = crd.split(".", 1)
            self.create("customresourcedefinitions", {"metadata": {"name": crd}, "spec": {
                "group": group, "names": {"plural": plural}, "scope": "Namespaced",
                "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}})

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> "FakeKube":
        fake = self

        class Handler(_Handler):
            kube = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakekube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
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

    # --- the test API -------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _emit(self, resource: Resource, kind: str, obj: dict) -> None:
        """Record one change (lock held): history window, and every watcher that selects it."""
        self._history.append((self._rv, resource, kind, obj))
        while len(self._history) > self.history_size:
            self._floor = self._history.popleft()[0]
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

    def create(self, plural: str, obj: dict, namespace: str | None = None) -> dict:
        resource = self._resource(plural)
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
        resource = self._resource(plural)
        with self._lock:
            obj = self._objects[resource].pop((namespace or "", name))
            self._rv += 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
            self._emit(resource, "DELETED", obj)

    def compact(self) -> None:
        """Forget the history window (etcd compaction): watches and lists from before now get 410."""
        with self._lock:
            self._history.clear()
            self._floor = self._rv
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

    def fail(self, status: int, times: int = 1, match=None, retry_after: int | None = None) -> None:
        """The next ``times`` requests matching ``match(method, path, query)`` get ``status``."""
        with self._lock:
            self._faults.append(Fault(status, times, match, retry_after))

    def slow(self, seconds: float, times: int = 1, match=None) -> None:
        with self._lock:
            self._faults.append(Fault(0, times, match, delay=seconds))

    def clear_faults(self) -> None:
        with self._lock:
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

    def set_log(self, namespace: str, pod: str, text: str, container: str | None = None) -> None:
        self._logs[(namespace, pod, container)] = text

    def writes(self) -> list[tuple[str, str, dict]]:
        return [r for r in self.requests if r[0] not in ("GET", "HEAD")]

    def count(self, method: str = "GET", path_contains: str = "", watch: bool | None = None) -> int:
        return sum(1 for m, p, q in list(self.requests)
                   if m == method and path_contains in p
                   and (watch is None or (q.get("watch") in ("true", "1")) == watch))

    # --- used by the handler -------------------------------------------------------------

    def _take_fault(self, method: str, path: str, query: dict) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match is None or fault.match(method, path, query):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _list(self, resource: Resource, namespace: str | None, query: dict) -> tuple[int, dict]:
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with self._lock:
            if token:
                try:
                    snapshot_id, offset = json.loads(base64.urlsafe_b64decode(token))
                    list_rv, matching = self._snapshots[snapshot_id]
                except (ValueError, KeyError):
                    return 410, status_body(410, "Expired", "The provided continue parameter is too old "
                                                            "to display a consistent list result.")
            else:
                requested = query.get("resourceVersion")
                if requested not in (None, "", "0") and int(requested) < self._floor:
                    return 410, status_body(410, "Expired", f"too old resource version: {requested} ({self._floor})")
                selects = parse_selector(query.get("labelSelector"))
                matching = [copy.deepcopy(obj) for (ns, _), obj in sorted(self._objects[resource].items())
                            if (namespace is None or ns == namespace)
                            and selects(obj["metadata"].get("labels"))]
                list_rv, snapshot_id, offset = self._rv, uuid.uuid4().hex, 0
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
        """Register a watcher and queue the replay; (None, status) when the resourceVersion is too old."""
        watcher = Watcher(resource, namespace, parse_selector(query.get("labelSelector")))
        requested = query.get("resourceVersion")
        with self._lock:
            if requested in (None, "", "0"):
                # From "now": a real server first sends ADDED for every current object.
                for (ns, _), obj in sorted(self._objects[resource].items()):
                    if self._selected(watcher, resource, obj):
                        watcher.events.put(("ADDED", copy.deepcopy(obj)))
            else:
                since = int(requested)
                if since < self._floor:
                    return None, status_body(410, "Expired", f"too old resource version: {since} ({self._floor})")
                for rv, res, kind, obj in self._history:
                    if rv > since and self._selected(watcher, res, obj):
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
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, reason: str, message: str, headers: dict | None = None) -> None:
        self._send_json(status, status_body(status, reason, message), headers)

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

    def _handle(self, method: str) -> None:
        # Read the body first, whatever the answer: left unread it would be taken for the next request.
        self._raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        self._path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        kube = self.kube
        kube.requests.append((method, self._path, query))
        fault = kube._take_fault(method, self._path, query)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if self.headers.get("Authorization") != f"Bearer {kube.token}":
            return self._error(401, "Unauthorized", "Unauthorized")
        if fault is not None and fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            reasons = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests", 500: "InternalError",
                       503: "ServiceUnavailable"}
            return self._error(fault.status, reasons.get(fault.status, "Error"), f"injected {fault.status}", headers)
        if method == "GET" and self._path == "/version":
            return self._send_json(200, {"major": "1", "minor": kube.git_version.split(".")[1],
                                         "gitVersion": kube.git_version, "platform": "linux/amd64"})
        if method == "GET" and self._path in ("/api", "/apis"):
            return self._send_json(200, self._discovery())
        route = self._route()
        if route is None:
            return self._error(404, "NotFound", f"the server could not find the requested resource: {self._path}")
        resource, namespace, name, sub = route
        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1", "True"):
                return self._watch(resource, namespace, query)
            status, body = kube._list(resource, namespace, query)
            return self._send_json(status, body)
        if method == "GET" and sub == "log" and resource.kind == "Pod":
            return self._log(namespace, name, query)
        if method == "GET" and name is not None:
            obj = kube.get(resource.plural, namespace, name)
            if obj is None:
                return self._error(404, "NotFound", f'{resource.plural} "{name}" not found')
            return self._send_json(200, obj)
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

    def _discovery(self) -> dict:
        if self._path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        groups = sorted({(r.group, r.version) for r in RESOURCES if r.group})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
             "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]}

    def _log(self, namespace: str, name: str, query: dict) -> None:
        if self.kube.get("pods", namespace, name) is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        text = self.kube._logs.get((namespace, name, query.get("container")),
                                   self.kube._logs.get((namespace, name, None), ""))
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) else ""
        data = text.encode()
        if query.get("limitBytes"):
            data = data[: int(query["limitBytes"])]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, resource: Resource, namespace: str | None, query: dict) -> None:
        kube = self.kube
        watcher, gone = kube._open_watch(resource, namespace, query)
        if watcher is None and kube.gone_as_response:
            return self._send_json(410, gone)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if watcher is None:
            self._chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            self._chunk(b"")
            return
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        deadline = time.monotonic() + int(query.get("timeoutSeconds") or 1800)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    kind, obj = watcher.events.get(timeout=min(left, kube.bookmark_interval))
                except queue.Empty:
                    # A bookmark promises every event up to its resourceVersion was sent: read the
                    # counter under the lock events are queued under, and only with nothing queued.
                    with kube._lock:
                        if not watcher.events.empty():
                            continue
                        kind, obj = ("BOOKMARK", kube._rv)
                if kind == "CUT" or watcher.cut.is_set():
                    # Mid-stream: half a line, then the socket closes without the terminating chunk.
                    self._chunk(b'{"type":"MODIFIED","object":{"kind":')
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if kind == "BOOKMARK":
                    if not bookmarks:
                        continue
                    obj = {"kind": resource.kind, "apiVersion": resource.api_version,
                           "metadata": {"resourceVersion": str(obj),
                                        "annotations": {"k8s.io/initial-events-end": "true"}}}
                self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
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


__all__ = ["FakeKube", "Resource", "RESOURCES", "client_configuration", "merge_patch", "parse_selector"]
