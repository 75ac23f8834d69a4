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
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException


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


def is_gone(exc: ApiException) -> bool:
    return exc.status == 410


class KubeApi:
    """Raw-JSON list/watch/get/create/patch of the kinds the agent needs."""

    def __init__(self, configuration, request_timeout: float = 60.0):
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

    def _list_call(self, kind: Kind, namespace: str | None, stream: bool, timeout, **params):
        if not kind.group:
            query = [("labelSelector", params.get("label_selector")), ("limit", params.get("limit")),
                     ("continue", params.get("_continue")), ("resourceVersion", params.get("resource_version")),
                     ("allowWatchBookmarks", params.get("allow_watch_bookmarks")),
                     ("timeoutSeconds", params.get("timeout_seconds")), ("watch", params.get("watch"))]
            accept = "application/json;stream=watch" if params.get("watch") else "application/json"
            return self._core("GET", self._core_path(kind, namespace), query, accept, timeout, stream=stream)
        params = {k: v for k, v in params.items() if v is not None}
        if namespace and kind.namespaced:
            response = self.custom.list_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural,
                _preload_content=False, _request_timeout=timeout, **params)
        else:
            response = self.custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural, _preload_content=False, _request_timeout=timeout, **params)
        return response if stream else response.data

    def list(self, kind: Kind, namespace: str | None, label_selector: str | None = None, limit: int = 500,
             continue_token: str | None = None) -> dict:
        """One page of a list (``metadata.continue`` names the next), as parsed JSON."""
        return json.loads(self._list_call(kind, namespace, False, self.request_timeout,
                                          label_selector=label_selector, limit=limit, _continue=continue_token))

    def watch(self, kind: Kind, namespace: str | None, resource_version: str, label_selector: str | None = None,
              timeout_seconds: int = 300):
        """An open watch from ``resource_version``: the urllib3 response, to be read line by line.

        The read timeout outlives the server's timeoutSeconds by a margin, so a connection that
        went silent (no bookmark, no event, no end) is noticed and replaced.
        """
        return self._list_call(kind, namespace, True, (10, timeout_seconds + 30),
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

    def pod_log(self, namespace: str, name: str, container: str | None, tail_lines: int, limit_bytes: int) -> bytes:
        return self._core("GET", self._core_path(POD, namespace, name) + "/log",
                          [("container", container), ("tailLines", tail_lines), ("limitBytes", limit_bytes)],
                          accept="text/plain")

    def version(self) -> dict:
        return json.loads(self._core("GET", "/version"))

    def crd_names(self) -> list[str]:
        """Names of the installed CRDs (``<plural>.<group>``), read page by page."""
        return sorted(self.crds())

    def crds(self, keys: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
        """The installed CRDs by name (``<plural>.<group>``), each with those of ``keys`` its labels or
        annotations carry (where a project names the release it installed); read page by page, and
        nothing else of a CRD kept."""
        found: dict[str, dict[str, str]] = {}
        token = None
        while True:
            page = self.list(CRD, None, limit=100, continue_token=token)
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
