"""The agent's memory is bounded by what it keeps: lists read an object at a time, CRDs as metadata only,
and the rendered Deployment sized from the memory budget."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.kube import CRD, POD, KubeApi
from agent.listing import parse_list
from contract.addons import RELEASE_KEYS
from renderer.bootstrap import AGENT_FOLLOWED_OBJECTS, agent_memory, render_agent
from renderer.profiles import AgentProfile
from tests.fakekube import FakeKube, client_configuration


class Reads:
    """A response body handed out in small reads, counting how far it was read."""

    def __init__(self, data: bytes, size: int = 1000):
        self.body, self.size, self.at = io.BytesIO(data), size, 0

    def read(self, amount: int) -> bytes:
        chunk = self.body.read(min(amount, self.size))
        self.at += len(chunk)
        return chunk


def test_a_page_is_parsed_one_object_at_a_time_as_it_is_read():
    items = [{"metadata": {"name": f"pod-{i}"}, "spec": {"pad": "x" * 50_000}} for i in range(20)]
    data = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7", "continue": "c"},
                       "items": items}).encode()
    body = Reads(data, size=64 * 1024)
    done = []
    page = parse_list(body.read, on_done=lambda count, size: done.append((count, size)))
    assert page["metadata"] == {"resourceVersion": "7", "continue": "c"}  # known before the items
    assert body.at < 2 * 64 * 1024
    first = next(page["items"])
    assert first["metadata"]["name"] == "pod-0"
    assert body.at < 3 * 64 * 1024, "the first object was handed out before the rest of the page was read"
    assert [o["metadata"]["name"] for o in page["items"]] == [f"pod-{i}" for i in range(1, 20)]
    assert done == [(20, len(data))]


def test_metadata_after_the_items_fills_the_same_dict():
    page = parse_list(Reads(b'{"items": [{"a": 1}, {"a": 2}], "metadata": {"continue": "next"}}', 3).read)
    metadata = page["metadata"]
    assert [o["a"] for o in page["items"]] == [1, 2]
    assert metadata == {"continue": "next"}


@pytest.mark.parametrize("body", [b'{"items": [{"a": 1}', b'{"items": [{"a": 1} {"a": 2}]}', b'[]'])
def test_a_broken_list_response_is_a_value_error(body):
    with pytest.raises(ValueError):
        list(parse_list(Reads(body, 4).read)["items"])


class _CrdServer(BaseHTTPRequestHandler):
    """Answers the CRD list as an API server does for the Accept header it is sent (Kubernetes "API
    Concepts", "Receiving resources as Table or PartialObjectMetadata")."""

    protocol_version = "HTTP/1.1"
    accepts: list[str] = []
    crds: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        accept = self.headers.get("Accept", "")
        type(self).accepts.append(accept)
        if "as=PartialObjectMetadataList;g=meta.k8s.io;v=v1" in accept:
            body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {},
                    "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": crd["metadata"]} for crd in self.crds]}
        else:
            body = {"kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1", "metadata": {},
                    "items": self.crds}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_crds_are_listed_as_metadata_and_their_release_labels_kept():
    from kubernetes.client import Configuration

    big_schema = {"openAPIV3Schema": {"description": "x" * 200_000}}
    _CrdServer.accepts = []
    _CrdServer.crds = [
        {"metadata": {"name": "scaledobjects.keda.sh", "labels": {"app.kubernetes.io/version": "2.16.0"}},
         "spec": {"versions": [{"name": "v1alpha1", "schema": big_schema}]}},
        {"metadata": {"name": "httproutes.gateway.networking.k8s.io",
                      "annotations": {"gateway.networking.k8s.io/bundle-version": "v1.2.1"}},
         "spec": {"versions": [{"name": "v1", "schema": big_schema}]}},
    ]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CrdServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = KubeApi(Configuration(host=f"http://127.0.0.1:{server.server_address[1]}"))
        crds = api.crds(RELEASE_KEYS)
    finally:
        server.shutdown()
        server.server_close()
    assert crds == {"scaledobjects.keda.sh": {"app.kubernetes.io/version": "2.16.0"},
                    "httproutes.gateway.networking.k8s.io": {"gateway.networking.k8s.io/bundle-version": "v1.2.1"}}
    assert _CrdServer.accepts and all(
        a.startswith("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1") for a in _CrdServer.accepts)


def test_a_list_through_the_client_reads_pages_and_returns_the_connection():
    with FakeKube() as kube:
        for i in range(7):
            kube.create("pods", {"metadata": {"name": f"p{i}", "labels": {"a": "b"}}}, "shop")
        api = KubeApi(client_configuration(kube))
        names, token = [], None
        while True:
            page = api.list(POD, "shop", "a=b", limit=3, continue_token=token)
            names += [o["metadata"]["name"] for o in page["items"]]
            token = page["metadata"].get("continue")
            if not token:
                break
        assert names == [f"p{i}" for i in range(7)]
        assert sorted(api.crds()) == sorted(o["metadata"]["name"] for o in kube.items("customresourcedefinitions"))
        api.close()


def _profile(flavor: str = "eks", version: str = "1.33", **resources):
    from renderer.profiles import ClusterProfile

    return ClusterProfile(name="prod", flavor=flavor, kubernetes_version=version, repo_url="https://git.example/r.git",
                          agent=AgentProfile(url="https://shipyard.example.com", **resources))


def _deployment_resources(profile) -> dict:
    return render_agent(profile, ["shop"])["agent/30-deployment.yaml"]["spec"]["template"]["spec"]["containers"][0][
        "resources"]


def test_the_agent_is_sized_from_the_memory_budget():
    default = _deployment_resources(_profile())
    assert default["limits"]["memory"] == default["requests"]["memory"] == agent_memory(AGENT_FOLLOWED_OBJECTS)
    assert default["limits"]["cpu"] == "500m" and default["requests"]["cpu"] == "50m"
    bigger = _deployment_resources(_profile(followed_objects=200_000))
    assert bigger["limits"]["memory"] == agent_memory(200_000) and int(bigger["limits"]["memory"][:-2]) > 250
    assert _deployment_resources(_profile(memory="1Gi", cpu="1"))["limits"] == {"cpu": "1", "memory": "1Gi"}
    autopilot = _deployment_resources(_profile("gke-autopilot", "1.30"))
    assert autopilot["requests"] == autopilot["limits"]


def test_profile_agent_resources_are_validated(tmp_path):
    from contract.errors import ProfileError
    from renderer.profiles import load_profile

    def profile(resources: str) -> str:
        path = tmp_path / "prod.yaml"
        path.write_text("name: prod\nflavor: eks\ngit:\n  repo_url: https://git.example/r.git\n"
                        f"agent:\n  url: https://shipyard.example.com\n  resources: {resources}\n")
        return str(path)

    assert load_profile(profile("{followed_objects: 100000}")).agent.followed_objects == 100_000
    with pytest.raises(ProfileError, match="at least 64Mi"):
        load_profile(profile("{memory: 32Mi}"))
    with pytest.raises(ProfileError):
        load_profile(profile("{memory: 256MB}"))
