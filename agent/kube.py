"""The agent's door to the Kubernetes API: the official client, raw JSON, nothing deserialized into models.

Every call goes through the ``kubernetes`` client's own request path
(``ApiClient``: configuration, bearer/exec auth, TLS, urllib3 pool, query
serialization, ``ApiException`` on non-2xx). Grouped resources (argoproj.io,
apps, batch, apiextensions) use ``CustomObjectsApi``, which serves any group;
the core group (pods, events, namespaces, pod logs, /version) and discovery
(/apis) are built with the same ``ApiClient.param_serialize``/``call_api`` the
generated ``CoreV1Api`` uses. Why not ``CoreV1Api``/``AppsV1Api``: importing them loads hundreds of
model modules, ~30 MB of resident memory (measured: 49 MB for
CustomObjectsApi alone, 69 MB with CoreV1Api), most of the agent's budget.
Every answer is parsed JSON (dicts), or the raw urllib3 response of a watch
so the watcher can read its lines as they come.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from agent.listing import parse_list


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


APPLICATION = Kind("Application", "argoproj.io", "v1alpha1", "applications")
ROLLOUT = Kind("Rollout", "argoproj.io", "v1alpha1", "rollouts")
WORKFLOW = Kind("Workflow", "argoproj.io", "v1alpha1", "workflows")
WORKFLOW_TEMPLATE = Kind("WorkflowTemplate", "argoproj.io", "v1alpha1", "workflowtemplates")
CRON_WORKFLOW = Kind("CronWorkflow", "argoproj.io", "v1alpha1", "cronworkflows")
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
JOB = Kind("Job", "batch", "v1", "jobs")
CRONJOB = Kind("CronJob", "batch", "v1", "cronjobs")
POD = Kind("Pod", "", "v1", "pods")
EVENT = Kind("Event", "", "v1", "events")
NAMESPACE = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
CRD = Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
KINDS = {k.kind: k for k in (APPLICATION, ROLLOUT, WORKFLOW, WORKFLOW_TEMPLATE, DEPLOYMENT, JOB, CRONJOB,
                             POD, EVENT, NAMESPACE, CRD)}


def keepalive_socket_options(idle: int, interval: int, count: int) -> list[tuple[int, int, int]]:
    """urllib3 socket options: its defaults (no Nagle) plus TCP keepalive, where the platform has them."""
    options = list(urllib3.connection.HTTPConnection.default_socket_options)
    options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


# Kubernetes "API Concepts", "Receiving resources as Table or PartialObjectMetadata": a list of
# PartialObjectMetadata, with plain JSON as the fallback (client-go k8s.io/client-go/metadata asks the same).
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"


def _closing(items, response):
    """The page's items; the response closed if the caller stops before their end (a connection
    with unread bytes cannot go back to the pool)."""
    finished = False
    try:
        yield from items
        finished = True
    finally:
        if not finished:
            response.close()


def is_gone(exc: ApiException) -> bool:
    return exc.status == 410


class KubeApi:
    """Raw-JSON list/watch/get/create/patch of the kinds the agent needs."""

    def __init__(self, configuration, request_timeout: float = 60.0, connections: int = 32):
        # One pooled connection per open watch plus some for lists, facts and commands: a pool smaller
        # than the connections in use opens the extra ones anyway and throws each away when it comes
        # back ("Connection pool is full, discarding connection"), so every reconnect pays a new
        # TCP (and TLS) handshake (urllib3 HTTPConnectionPool, maxsize and block=False).
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, connections)
        if configuration.socket_options is None:
            # A peer that vanished (node gone, NAT entry dropped) leaves a half-open connection that
            # no read notices until the read timeout; TCP keepalive probes it after 30 s idle and
            # drops it after 5 unanswered probes 10 s apart (client-go dials with a 30 s keepalive:
            # k8s.io/client-go transport/cache.go).
            configuration.socket_options = keepalive_socket_options(idle=30, interval=10, count=5)
        self.client = ApiClient(configuration)
        self.custom = CustomObjectsApi(self.client)
        self.request_timeout = request_timeout

    def close(self) -> None:
        self.client.close()

    # --- the core group, through the client's generic request path ------------------------

    def _core(self, method: str, path: str, query: list[tuple[str, Any]] | None = None,
              accept: str = "application/json", timeout: Any = None, stream: bool = False):
        request = self.client.param_serialize(
            method=method, resource_path=path, query_params=[(k, v) for k, v in query or [] if v is not None],
            header_params={"Accept": accept}, auth_settings=["BearerToken"])
        response = self.client.call_api(*request, _request_timeout=timeout or self.request_timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        if stream:
            return response.response
        return response.read()

    @staticmethod
    def _core_path(kind: Kind, namespace: str | None, name: str | None = None) -> str:
        path = "/api/v1" + (f"/namespaces/{namespace}" if namespace and kind.namespaced else "") + f"/{kind.plural}"
        return path + (f"/{name}" if name else "")

    # --- list and watch ---------------------------------------------------------------------

    def _list_call(self, kind: Kind, namespace: str | None, stream: bool, timeout, accept: str | None = None,
                   **params):
        if not kind.group:
            query = [("labelSelector", params.get("label_selector")), ("limit", params.get("limit")),
                     ("continue", params.get("_continue")), ("resourceVersion", params.get("resource_version")),
                     ("resourceVersionMatch", params.get("resource_version_match")),
                     ("allowWatchBookmarks", params.get("allow_watch_bookmarks")),
                     ("timeoutSeconds", params.get("timeout_seconds")), ("watch", params.get("watch"))]
            accept = accept or ("application/json;stream=watch" if params.get("watch") else "application/json")
            return self._core("GET", self._core_path(kind, namespace), query, accept, timeout, stream=stream)
        params = {k: v for k, v in params.items() if v is not None}
        if accept:
            params["_headers"] = {"Accept": accept}
        if namespace and kind.namespaced:
            response = self.custom.list_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural,
                _preload_content=False, _request_timeout=timeout, **params)
        else:
            response = self.custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural, _preload_content=False, _request_timeout=timeout, **params)
        return response if stream else response.data

    def list(self, kind: Kind, namespace: str | None, label_selector: str | None = None, limit: int = 500,
             continue_token: str | None = None, resource_version: str | None = None,
             resource_version_match: str | None = None, metadata_only: bool = False) -> dict:
        """One page of a list (``metadata.continue`` names the next): a dict whose ``items`` is an
        iterator, each object parsed off the connection as it is reached (agent.listing), so a page
        costs one object's dicts however large it is. Iterate the items to the end (the connection
        goes back to the pool then); one left unfinished is closed.

        ``resource_version``/``resource_version_match`` choose where the first page is read from
        (Kubernetes "API Concepts", resource versions: unset is a quorum read from etcd; "0", or a
        version with NotOlderThan, may be served from the API server's watch cache).
        ``metadata_only``: each item is a PartialObjectMetadata (apiVersion, kind, metadata), never
        the spec or status (Kubernetes "API Concepts", "Receiving resources as Table or
        PartialObjectMetadata"); a server that cannot, answers whole objects (the plain JSON the
        Accept header falls back to, as client-go's metadata client asks).
        """
        response = self._list_call(kind, namespace, True, self.request_timeout,
                                   PARTIAL_METADATA_LIST if metadata_only else None,
                                   label_selector=label_selector, limit=limit, _continue=continue_token,
                                   resource_version=resource_version, resource_version_match=resource_version_match)
        try:
            page = parse_list(response.read, on_done=lambda count, size: response.release_conn())
        except BaseException:
            response.close()
            raise
        return {**page, "items": _closing(page["items"], response)}

    def watch(self, kind: Kind, namespace: str | None, resource_version: str, label_selector: str | None = None,
              timeout_seconds: int = 300, read_timeout: float = 90.0):
        """An open watch from ``resource_version``: the urllib3 response, to be read line by line.

        ``read_timeout`` bounds the silence between two reads: the watch asks for bookmarks, which
        the API server sends about once a minute on a quiet watch, so a connection silent for longer
        (no bookmark, no event, no end) is dead and is replaced (agent.watch).
        """
        return self._list_call(kind, namespace, True, (10, read_timeout),
                               label_selector=label_selector, resource_version=resource_version,
                               allow_watch_bookmarks=True, timeout_seconds=timeout_seconds, watch=True)

    # --- single objects ---------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict:
        if not kind.group:
            return json.loads(self._core("GET", self._core_path(kind, namespace, name)))
        return json.loads(self.custom.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name,
            _preload_content=False, _request_timeout=self.request_timeout).data)

    def create(self, kind: Kind, namespace: str, body: dict) -> dict:
        return json.loads(self.custom.create_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, body,
            _preload_content=False, _request_timeout=self.request_timeout).data)

    def patch(self, kind: Kind, namespace: str, name: str, body: dict) -> dict:
        """A JSON merge patch (what CustomObjectsApi sends; maps merge as with a strategic merge)."""
        return json.loads(self.custom.patch_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, body,
            _preload_content=False, _request_timeout=self.request_timeout).data)

    def pod_log(self, namespace: str, name: str, container: str | None, tail_lines: int, limit_bytes: int,
                previous: bool = False, since_time: str | None = None, timestamps: bool = False) -> bytes:
        """GET pods/<name>/log (PodLogOptions: previous, the container before its last restart;
        sinceTime, RFC 3339; timestamps, each line prefixed with its RFC 3339 time)."""
        query = [("container", container), ("tailLines", tail_lines), ("limitBytes", limit_bytes),
                 ("previous", "true" if previous else None), ("sinceTime", since_time),
                 ("timestamps", "true" if timestamps else None)]
        return self._core("GET", self._core_path(POD, namespace, name) + "/log", query, accept="text/plain")

    def version(self) -> dict:
        return json.loads(self._core("GET", "/version"))

    def crd_names(self) -> list[str]:
        """Names of the installed CRDs (``<plural>.<group>``), read page by page."""
        return sorted(self.crds())

    def crds(self, keys: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
        """The installed CRDs by name (``<plural>.<group>``), each with those of ``keys`` its labels or
        annotations carry (where a project names the release it installed); read page by page as
        metadata only (a CRD's schema is 50-500 KB; 300 of them cost the agent 150 MB read whole),
        and nothing else of a CRD kept."""
        found: dict[str, dict[str, str]] = {}
        token = None
        while True:
            page = self.list(CRD, None, limit=500, continue_token=token, metadata_only=True)
            for item in page.get("items") or []:
                metadata = item["metadata"]
                tags = {**(metadata.get("annotations") or {}), **(metadata.get("labels") or {})}
                found[metadata["name"]] = {key: tags[key] for key in keys if isinstance(tags.get(key), str)}
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return found

    def served_versions(self) -> dict[str, list[str]]:
        """Each API group the server serves, with its served versions: discovery (``GET /apis``, an
        APIGroupList), which the system:discovery ClusterRole lets every authenticated client read
        (Kubernetes, "Using RBAC Authorization", API discovery roles)."""
        groups = json.loads(self._core("GET", "/apis")).get("groups") or []
        return {group["name"]: [version["version"] for version in group.get("versions") or []]
                for group in groups if group.get("name")}

    def namespace_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self.list(NAMESPACE, None, limit=500, continue_token=token)
            names.extend(item["metadata"]["name"] for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return sorted(names)


__all__ = ["Kind", "KubeApi", "KINDS", "APPLICATION", "ROLLOUT", "WORKFLOW", "WORKFLOW_TEMPLATE", "DEPLOYMENT",
           "JOB", "CRONJOB", "CRON_WORKFLOW", "POD", "EVENT", "NAMESPACE", "CRD", "ApiException", "is_gone"]
