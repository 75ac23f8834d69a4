"""The fake API server (tests/fakekube.py) held to what a real one does, on the wire.

Each test speaks HTTP to the fake (httpx, or the kubernetes client where the
agent uses it) and checks one behaviour of "API Concepts" (watch, bookmarks,
resourceVersion semantics, 410 Gone, pagination, PartialObjectMetadata), RBAC's
403, API Priority and Fairness' 429, or the kube-apiserver source the fake's
docstring names; and the test collector's handling of a batch that comes
ahead of its predecessor, as webapp.agent_api does.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from agent.summaries import SUMMARIES
from contract.protocol import Delta, StatusBatch, encode
from tests.agent_collector import Collector
from tests.fakekube import FakeKube, client_configuration
from tests.kube_objects import (
    realistic_application,
    realistic_crd,
    realistic_deployment,
    realistic_pod,
    size_of,
)

APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PARTIAL = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


@pytest.fixture
def kube():
    with FakeKube(bookmark_interval=0.1) as fake:
        yield fake


@pytest.fixture
def http(kube):
    with httpx.Client(base_url=kube.url, headers={"Authorization": f"Bearer {kube.token}"}, timeout=10) as client:
        yield client


def watch_lines(http: httpx.Client, path: str, until=None, **params) -> list[dict]:
    """The events of one watch, read until ``until(event)`` is true or the server ends the stream."""
    events = []
    with http.stream("GET", path, params={"watch": "true", **params}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                if until is not None and until(events[-1]):
                    break
    return events


def test_realistic_objects_have_real_sizes_and_summaries():
    sizes = {f.__name__: size_of(f(123)) / 1024 for f in (realistic_application, realistic_deployment, realistic_pod)}
    assert 12 <= sizes["realistic_application"] <= 14
    assert 6.5 <= sizes["realistic_deployment"] <= 7.5
    assert 6.8 <= sizes["realistic_pod"] <= 7.8
    assert 49 <= size_of(realistic_crd(1, 50)) / 1024 <= 52 and 499 <= size_of(realistic_crd(2, 500)) / 1024 <= 502
    for obj in (realistic_application(123), realistic_deployment(123), realistic_pod(123)):
        assert obj["metadata"]["managedFields"]
        assert SUMMARIES[obj["kind"]](obj)["app"] == "app123"


def test_a_custom_resource_is_served_only_while_its_crd_exists():
    with FakeKube(crds=()) as kube:
        api = CustomObjectsApi(ApiClient(client_configuration(kube)))
        for call in (lambda: api.list_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications"),
                     lambda: api.list_cluster_custom_object("argoproj.io", "v1alpha1", "applications", watch=True,
                                                            _preload_content=False)):
            with pytest.raises(ApiException) as refused:
                call()
            assert refused.value.status == 404
            assert json.loads(refused.value.body)["message"] == "the server could not find the requested resource"
        assert "argoproj.io" not in [g["name"] for g in httpx.get(
            kube.url + "/apis", headers={"Authorization": f"Bearer {kube.token}"}).json()["groups"]]
        kube.create("customresourcedefinitions", realistic_crd(0, 1) | {
            "metadata": {"name": "applications.argoproj.io"},
            "spec": {"group": "argoproj.io", "names": {"plural": "applications"}, "scope": "Namespaced",
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}})
        kube.create("applications", realistic_application(1), "argocd")
        listed = api.list_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications")
        assert [a["metadata"]["name"] for a in listed["items"]] == ["ws1.app1"]
        kube.delete("customresourcedefinitions", "", "applications.argoproj.io")  # its objects go with it
        assert kube.items("applications") == []
        with pytest.raises(ApiException) as refused:
            api.list_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications")
        assert refused.value.status == 404


def test_rbac_answers_403_per_namespace_until_the_role_exists(kube, http):
    kube.create("namespaces", {"metadata": {"name": "payments"}})  # the namespace before its Role
    kube.create("pods", realistic_pod(1, workspace="payments"), "payments")
    kube.grant(["list", "watch"], ["pods"], namespace="shop")
    refused = http.get("/api/v1/namespaces/payments/pods")
    assert refused.status_code == 403
    assert refused.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
        "message": f'pods is forbidden: User "{kube.user}" cannot list resource "pods" in API group "" '
                   f'in the namespace "payments"', "details": {"kind": "pods"}, "code": 403}
    assert http.get("/api/v1/namespaces/shop/pods").status_code == 200
    assert http.get("/api/v1/pods").json()["message"].endswith('in API group "" at the cluster scope')
    assert http.get("/api/v1/namespaces/shop/pods", params={"watch": "true", "timeoutSeconds": "1"}).status_code == 200
    kube.grant(["list"], ["pods"], namespace="payments")  # the Role arrives
    assert len(http.get("/api/v1/namespaces/payments/pods").json()["items"]) == 1
    kube.revoke("payments")
    assert http.get("/api/v1/namespaces/payments/pods").status_code == 403


def test_bookmarks_only_when_asked_and_again_and_again(kube, http):
    kube.create("applications", realistic_application(1), "argocd")
    rv = http.get(APPS).json()["metadata"]["resourceVersion"]
    bookmarks = []
    events = watch_lines(http, APPS, until=lambda e: e["type"] == "BOOKMARK" and bookmarks.append(e) is None
                         and len(bookmarks) == 3, resourceVersion=rv, allowWatchBookmarks="true")
    assert [e["type"] for e in events] == ["BOOKMARK"] * 3
    assert events[0]["object"] == {"kind": "Application", "apiVersion": "argoproj.io/v1alpha1",
                                   "metadata": {"resourceVersion": rv}}
    assert watch_lines(http, APPS, resourceVersion=rv, timeoutSeconds="1") == []  # none unasked


def test_a_watch_from_before_the_watch_cache_window_gets_410():
    with FakeKube(watch_cache_window=75, watch_cache_min_events=0) as kube, \
            httpx.Client(base_url=kube.url, headers={"Authorization": f"Bearer {kube.token}"}) as http:
        kube.create("applications", realistic_application(1), "argocd")
        old = str(kube.resource_version)
        kube.update("applications", "argocd", "ws1.app1", {"status": {"health": {"status": "Degraded"}}})
        replay = watch_lines(http, APPS, until=lambda e: True, resourceVersion=old)
        assert replay[0]["type"] == "MODIFIED"  # within the window: the change since
        kube.advance(76)
        kube.update("applications", "argocd", "ws1.app1", {"status": {"health": {"status": "Healthy"}}})
        gone = watch_lines(http, APPS, resourceVersion=old)
        assert [e["type"] for e in gone] == ["ERROR"] and gone[0]["object"]["code"] == 410
        assert gone[0]["object"]["reason"] == "Expired"


def test_lists_record_quorum_reads_and_watch_cache_reads(kube, http):
    kube.create("applications", realistic_application(1), "argocd")
    rv = http.get(APPS).json()["metadata"]["resourceVersion"]
    http.get(APPS, params={"resourceVersion": "0"})
    http.get(APPS, params={"resourceVersion": rv, "resourceVersionMatch": "NotOlderThan", "limit": "10"})
    assert kube.request_count("list", "applications", "argocd", served_from="etcd") == 1
    assert kube.request_count("list", "applications", "argocd", served_from="cache") == 2
    refused = http.get(APPS, params={"resourceVersionMatch": "NotOlderThan"})
    assert refused.status_code == 400 and "unless resourceVersion is provided" in refused.json()["message"]
    too_new = http.get(APPS, params={"resourceVersion": str(int(rv) + 50), "resourceVersionMatch": "NotOlderThan"})
    assert too_new.status_code == 504 and too_new.headers["Retry-After"] == "1"


def test_a_continue_token_from_before_a_compaction_gets_410(kube, http):
    for i in range(5):
        kube.create("applications", realistic_application(i, workspace="shop"), "argocd")
    first = http.get(APPS, params={"limit": "2"}).json()
    kube.create("applications", realistic_application(9, workspace="shop"), "argocd")
    second = http.get(APPS, params={"limit": "2", "continue": first["metadata"]["continue"]}).json()
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # one snapshot
    kube.advance(kube.compaction_interval)
    kube.advance(kube.compaction_interval)  # compacted past the list's revision
    expired = http.get(APPS, params={"limit": "2", "continue": second["metadata"]["continue"]})
    assert expired.status_code == 410 and expired.json()["reason"] == "Expired"


def test_partial_object_metadata_when_the_accept_header_asks(kube, http):
    kube.create("customresourcedefinitions", realistic_crd(1, 60))
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    listed = http.get(crds, headers={"Accept": f"application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;"
                                               f"g=meta.k8s.io;v=v1,{PARTIAL_LIST},application/json"})
    body = listed.json()
    assert body["kind"] == "PartialObjectMetadataList" and body["apiVersion"] == "meta.k8s.io/v1"
    assert {item["kind"] for item in body["items"]} == {"PartialObjectMetadata"}
    assert all(set(item) == {"kind", "apiVersion", "metadata"} for item in body["items"])
    assert len(listed.content) < 20_000  # the 60 KB schema is not sent
    one = http.get(f"{crds}/things1.example.com", headers={"Accept": PARTIAL}).json()
    assert one["kind"] == "PartialObjectMetadata" and one["metadata"]["name"] == "things1.example.com"
    with http.stream("GET", crds, params={"watch": "true", "resourceVersion": body["metadata"]["resourceVersion"]},
                     headers={"Accept": PARTIAL}) as response:
        kube.create("customresourcedefinitions", realistic_crd(2, 60))
        events = json.loads(next(response.iter_lines()))
    assert events["type"] == "ADDED" and set(events["object"]) == {"kind", "apiVersion", "metadata"}
    assert http.get(crds, headers={"Accept": "application/vnd.kubernetes.protobuf"}).status_code == 406
    assert http.get(crds, headers={"Accept": PARTIAL}).status_code == 406  # a list is no PartialObjectMetadata


def test_watches_that_end_at_once_and_connections_that_hang(kube, http):
    ended = kube.end_watches(resource="applications")
    api = CustomObjectsApi(ApiClient(client_configuration(kube)))
    for _ in range(2):
        response = api.list_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications",
                                                     watch=True, _preload_content=False)
        with pytest.raises(Exception) as cut:  # the stream ends before its first chunk
            b"".join(response.stream())
        assert "ProtocolError" in type(cut.value).__name__ or "ended" in str(cut.value).lower()
    assert http.get(APPS).status_code == 200  # lists are untouched
    ended.off()
    assert watch_lines(http, APPS, timeoutSeconds="1") == []  # a watch that lasts its time again
    hung = kube.hang(times=1, resource="applications")
    with pytest.raises(httpx.ReadTimeout):
        http.get(APPS, timeout=httpx.Timeout(5, read=0.3))
    assert hung.hits == 1
    hung.off()
    assert http.get(APPS).status_code == 200


def test_throttling_and_errors_for_some_requests_or_until_switched_off(kube, http):
    kube.throttle(retry_after=3, times=2, verb="list")
    for _ in range(2):
        throttled = http.get(APPS)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
        assert throttled.text == "Too many requests, please try again later.\n"
    assert http.get(APPS).status_code == 200
    broken = kube.fail(500, times=None, resource="applications", namespace="argocd")
    assert [http.get(APPS).status_code for _ in range(3)] == [500, 500, 500]
    assert http.get("/api/v1/namespaces/argocd/pods").status_code == 200
    broken.off()
    assert http.get(APPS).status_code == 200


def test_request_counters_per_verb_resource_and_namespace(kube, http):
    start = kube.now()
    for _ in range(4):
        http.get(APPS)
    http.get("/api/v1/namespaces/shop/pods", params={"watch": "1", "timeoutSeconds": "1"})
    assert kube.request_count("list", "applications", "argocd") == 4
    assert kube.request_count("watch", "pods", "shop") == 1
    assert kube.request_count("watch", "pods", "argocd") == 0
    kube.advance(60)  # the fake's clock: a minute since the first request
    assert kube.requests_per_minute("list", "applications", "argocd", since=start) == pytest.approx(4, rel=0.05)


def post_batch(collector: Collector, batch: StatusBatch) -> httpx.Response:
    return httpx.post(f"{collector.url}/agent/v1/acme/prod/status", content=encode(batch),
                      headers={"Authorization": "Bearer agent-token", "Content-Encoding": "gzip"}, timeout=30)


def test_the_collector_waits_for_a_batch_that_came_ahead_of_its_predecessor():
    collector = Collector(gap_wait=30).start()
    try:
        web = Delta("Deployment", "shop", "web", {"ready": 1})
        assert post_batch(collector, StatusBatch("s1", 1, True, [web], final=True)).status_code == 200
        answers = {}
        ahead = threading.Thread(target=lambda: answers.update(third=post_batch(
            collector, StatusBatch("s1", 3, False, [Delta("Deployment", "shop", "web", {"ready": 3})]))))
        ahead.start()
        while not collector.waited:
            ahead.join(0.01)
        second = post_batch(collector, StatusBatch("s1", 2, False, [Delta("Deployment", "shop", "web", {"ready": 2})]))
        ahead.join()
        assert second.json() == {"acked": 2, "duplicate": False}
        assert answers["third"].json() == {"acked": 3, "duplicate": False}
        assert collector.of_kind("Deployment") == {("shop", "web"): {"ready": 3}} and collector.conflicts == 0
        assert post_batch(collector, StatusBatch("s1", 3, False, [])).json() == {"acked": 3, "duplicate": True}
    finally:
        collector.stop()
    quick = Collector(gap_wait=0.05).start()
    try:
        post_batch(quick, StatusBatch("s1", 1, True, [], final=True))
        assert post_batch(quick, StatusBatch("s1", 5, False, [])).status_code == 409  # a gap that stays
    finally:
        quick.stop()
