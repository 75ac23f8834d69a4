"""Every URL a user can set, walked with hostile values: local paths, file://, other transports,
credentials, and loopback, private and metadata addresses.

A user sets URLs in three places: a cluster's git remote (``remote_url``: the control plane
fetches and pushes there itself, tests/test_remotes.py has the transport in depth), a spec
repository's clone URL (``url``: the control plane fetches it, tests/test_spec_repos.py), and the
URLs of a cluster profile (rendered into the cluster repository for ArgoCD, KEDA and the
agent; the control plane never connects to them). The lists of fields come from the profile
schema and the OpenAPI document, so a URL field added later is walked too.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path

import pytest
import yaml

from renderer.profiles import URL_FIELDS
from tests.plane import PROFILE, add_workspace, deploy_yaml, make_user

API = "/api/v1"
SCHEMA = json.loads(Path("schemas/cluster-profile.schema.json").read_text())
SECRET = "s3cr3t-in-the-url"

NOWHERE = ["file:///etc/passwd", "/var/lib/shipyard/repos/default/victim.git", "../victim.git",
           "ext::sh -c id", "gopher://example.com/x", "C:\\repos\\victim.git"]
WITH_CREDENTIALS = [f"https://ci:{SECRET}@git.example.com/a.git", f"http://{SECRET}@prometheus.monitoring:9090"]
INTERNAL = ["http://127.0.0.1:{port}/x", "http://localhost:{port}/x", "http://[::1]:{port}/x", "http://10.0.0.1/x",
            "http://192.168.1.1/x", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]:{port}/x"]


# What libgit2 or the socket layer says of a connection: a port scanner's answer, never to be echoed.
LIBRARY_ERROR = re.compile(r"(?i)status code|failed to (connect|resolve)|connection refused|errno|timed out")


def _url_properties(schema: dict, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths of the string properties in ``schema`` that hold URLs (by name or by pattern)."""
    found = set()
    if "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    for branch in ("then", "else"):
        if isinstance(schema.get(branch), dict):
            found |= _url_properties(schema[branch], path)
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        here = (*path, name)
        pattern = sub.get("pattern", "")
        if "string" in str(sub.get("type")) and ("url" in name.lower() or "https?://" in pattern):
            found.add(here)
        found |= _url_properties(sub, here)
    return found


def profile_with(path: tuple[str, ...], value: str, name: str = "demo") -> str:
    data = yaml.safe_load(PROFILE)
    data["name"] = name
    data["agent"] = {"url": "https://shipyard.example.com"}
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def listener():
    """A TCP port on loopback counting the connections made to it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[tuple] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connection, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_every_url_field_of_the_profile_schema_is_checked():
    assert _url_properties(SCHEMA) == set(URL_FIELDS), "a URL field of the profile has no rule in renderer.profiles"


def test_api_url_fields_are_known(plane_app):
    document = plane_app.test_client().get(f"{API}/openapi.json").get_json()
    fields = {name for item in document["paths"].values() for operation in item.values()
              for content in operation.get("requestBody", {}).get("content", {}).values()
              for name in content["schema"].get("properties", {}) if "url" in name.lower()}
    # remote_url: a cluster's git remote; url: a spec repository's clone URL (both walked below)
    assert fields == {"remote_url", "url"}, "a URL field of the API that this test does not walk"


@pytest.mark.parametrize("path", sorted(URL_FIELDS), ids=".".join)
def test_profile_urls_refuse_local_paths_other_transports_and_credentials(plane_app, admin, path):
    for value in NOWHERE + WITH_CREDENTIALS:
        response = admin.post(f"{API}/clusters", json={"name": "demo", "profile": profile_with(path, value)})
        assert response.status_code == 422, (value, response.get_json())
        problems = response.get_json()["error"]["problems"]
        assert [p["path"] for p in problems] == ["/" + "/".join(path)], (value, problems)
        assert SECRET not in response.get_data(as_text=True)
    assert admin.get(f"{API}/clusters").get_json()["clusters"] == []


def test_the_control_plane_never_connects_to_a_profile_url(plane_app, admin, listener):
    """In-cluster and loopback addresses are the cluster's to reach, not the server's: every
    profile URL may name one, and registering, deploying and dry-running make no connection."""
    port, accepted = listener
    data = yaml.safe_load(profile_with(("agent", "url"), f"http://127.0.0.1:{port}/"))
    for path in URL_FIELDS:
        node = data
        for key in path[:-1]:
            node = node[key]
        commit = "/{commit}" if path == ("git", "browse_url") else ""  # a commit's page names the commit
        node[path[-1]] = f"http://127.0.0.1:{port}/{'/'.join(path)}{commit}"
    response = admin.post(f"{API}/clusters", json={"name": "demo", "profile": yaml.safe_dump(data)})
    assert response.status_code == 201, response.get_json()
    add_workspace(admin, "demo", "storefront")
    spec = ("type: service\nname: web\nworkspace_fqn: demo:storefront\n"
            "image: {type: image, image_uri: 'ghcr.io/acme/web:1'}\nports: [{port: 8000}]\n"
            "replicas: {min_replicas: 1, max_replicas: 3, metrics: [{type: rps, value: 50}]}\n")
    assert deploy_yaml(admin, spec, dry_run="true").status_code == 200
    assert deploy_yaml(admin, spec).status_code == 200
    assert accepted == []


@pytest.mark.parametrize("value", NOWHERE + WITH_CREDENTIALS + INTERNAL)
def test_remote_url_refuses_every_hostile_value_without_connecting(plane_app, admin, listener, value):
    port, accepted = listener
    value = value.format(port=port)
    cluster_admin = make_user(plane_app, "carla", "cluster-admin")
    created = admin.post(f"{API}/clusters", json={"name": "demo", "profile": PROFILE})
    assert created.status_code == 201
    for api, status in ((admin, 400), (cluster_admin, 403)):
        response = api.patch(f"{API}/clusters/demo", json={"remote_url": value})
        body = response.get_data(as_text=True)
        assert response.status_code == status, (value, body)
        message = response.get_json()["error"]["message"]
        assert SECRET not in body and not LIBRARY_ERROR.search(message), message
        if "localhost" in value:
            assert "127.0.0.1" not in message  # what a name resolved to is never told
    assert admin.get(f"{API}/clusters/demo").get_json()["remote_url"] is None
    assert accepted == []


@pytest.mark.parametrize("value", NOWHERE + WITH_CREDENTIALS + INTERNAL)
def test_a_spec_repository_url_refuses_every_hostile_value_without_connecting(plane_app, admin, listener, value):
    port, accepted = listener
    value = value.format(port=port)
    response = admin.post(f"{API}/spec-repos", json={"name": "specs", "url": value})
    body = response.get_data(as_text=True)
    assert response.status_code == 400, (value, body)
    message = response.get_json()["error"]["message"]
    assert SECRET not in body and not LIBRARY_ERROR.search(message), message
    if "localhost" in value:
        assert "127.0.0.1" not in message  # what a name resolved to is never told
    assert admin.get(f"{API}/spec-repos").get_json()["spec_repos"] == []
    assert accepted == []
