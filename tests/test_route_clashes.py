"""Two apps of a cluster cannot take the same requests at its gateway (gitops.routes).

Through the real API (SQLite and PostgreSQL): deploy, dry run, a batch, promote and copy, and
deploys racing for one route, each refusal checked as a user sees it (the problem at the port's
host, naming the app that holds the route, its host and path, and what to do) and what is left
in the repository. The offline ``shipyard apply --repo`` as a process. And the routers' own
rules, on route objects written as Istio and the Gateway API document them: overlapping
prefixes clash on Istio (merged VirtualServices, no defined order) and not on the Gateway API
(the longest prefix wins).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from contract.errors import SpecError
from contract.repository import WORKSPACES_DIR
from gitops import apply as apply_service
from gitops import routes
from gitops.models import Cluster, Tenant
from gitops.repo import ClusterRepo
from renderer.render import render
from tests.plane import Api, add_cluster, add_workspace, deploy_yaml, served  # noqa: F401 - served: a fixture

API = "/api/v1"
ROOT = Path(__file__).resolve().parent.parent


def routed(name: str, workspace: str, host: str, path: str = "/", cluster: str = "demo", tag: str = "1",
           extra: str = "") -> str:
    """A service with one exposed port: its host on line 8, column 11, its path on line 9 (9 lines)."""
    return (f"type: service\nname: {name}\nworkspace_fqn: {cluster}:{workspace}\n"
            f"image: {{type: image, image_uri: 'ghcr.io/acme/{name}:{tag}'}}\n"
            f"ports:\n  - port: 8000\n    expose: true\n    host: '{host}'\n    path: '{path}'\n{extra}")


def deployed(api: Api, text: str, **query) -> dict:
    response = deploy_yaml(api, text, **query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refused(response) -> list[dict]:
    assert response.status_code == 422, response.get_json()
    body = response.get_json()["error"]
    assert body["code"] == "spec_invalid"
    return body["problems"]


def only(problems: list[dict]) -> dict:
    assert len(problems) == 1, problems
    return problems[0]


def routers_of(plane_app, host: str, cluster: str = "demo") -> list[str]:
    """The apps (workspace/app) whose VirtualService in the cluster's repository routes ``host``."""
    plane = plane_app.extensions["shipyard"]
    with plane.sessions() as session:
        row = session.scalar(select(Cluster).join(Tenant).where(Tenant.name == "default", Cluster.name == cluster))
        files = plane.repos.open(row).snapshot().walk(WORKSPACES_DIR)
    return sorted("/".join(path.split("/")[1:3]) for path, data in files.items()
                  if "/virtualservice-" in path and host in yaml.safe_load(data)["spec"]["hosts"])


@pytest.fixture
def shop(plane_app, admin) -> Api:
    """Cluster demo (Istio) with workspace shop, and its admin."""
    add_cluster(admin)
    add_workspace(admin, "demo", "shop")
    return admin


# --- through the API -------------------------------------------------------------------------------


def test_a_second_app_on_a_route_is_refused_naming_the_app_that_holds_it(plane_app, shop):
    # blue-green: its preview Service is no route of its own
    blue_green = "rollout_strategy: {type: blue_green}\n"
    deployed(shop, routed("web", "shop", "shop.example.com", extra=blue_green))
    for dry_run in ("true", "false"):
        problem = only(refused(deploy_yaml(shop, routed("web-copy", "shop", "shop.example.com"), dry_run=dry_run)))
        assert (problem["line"], problem["column"], problem["path"]) == (8, 11, "/ports/0/host")
        message = problem["message"]
        assert message.startswith('host "shop.example.com" path "/" is also routed by app "shop/web"')
        assert "use another host or path, or change or delete \"shop/web\" first" in message
    # refused before its intent: no app, no version
    assert shop.get(f"{API}/apps/demo/shop/web-copy").status_code == 404

    # the app itself may deploy its own route again
    deployed(shop, routed("web", "shop", "shop.example.com", tag="2", extra=blue_green))
    deployed(shop, routed("web-copy", "shop", "copy.example.com"))
    assert routers_of(plane_app, "shop.example.com") == ["shop/web"]


def test_a_prefix_below_another_apps_prefix_is_refused_on_istio(plane_app, shop):
    deployed(shop, routed("web", "shop", "shop.example.com"))
    problem = only(refused(deploy_yaml(shop, routed("api", "shop", "shop.example.com", "/api"))))
    assert problem["path"] == "/ports/0/host"
    # (Istio is given "/api" as the exact path and the prefix "/api/": renderer.routing)
    assert problem["message"].startswith('host "shop.example.com" ')
    assert '"/api" overlaps path "/" that app "shop/web" routes on this host' in problem["message"]
    assert "in no defined order" in problem["message"]
    # apart from "/", two apps' prefixes may share a host when neither contains the other
    deployed(shop, routed("web", "shop", "shop.example.com", "/store"))
    deployed(shop, routed("api", "shop", "shop.example.com", "/api"))
    assert routers_of(plane_app, "shop.example.com") == ["shop/api", "shop/web"]


def test_a_deleted_app_frees_its_routes(plane_app, shop):
    deployed(shop, routed("web", "shop", "shop.example.com"))
    refused(deploy_yaml(shop, routed("web-2", "shop", "shop.example.com")))
    assert shop.delete(f"{API}/apps/demo/shop/web").status_code == 200
    deployed(shop, routed("web-2", "shop", "shop.example.com"))
    assert routers_of(plane_app, "shop.example.com") == ["shop/web-2"]


def test_one_batch_cannot_route_one_path_twice(plane_app, shop):
    batch = routed("web", "shop", "shop.example.com") + "---\n" + routed("web-2", "shop", "shop.example.com")
    problem = only(refused(deploy_yaml(shop, batch)))
    assert (problem["line"], problem["path"]) == (9 + 1 + 8, "/ports/0/host")
    assert 'app "shop/web"' in problem["message"]
    assert routers_of(plane_app, "shop.example.com") == []  # the whole batch is refused


def test_promote_and_copy_cannot_route_what_their_source_routes(plane_app, shop):
    add_workspace(shop, "demo", "pay")
    add_cluster(shop, "prod")
    add_workspace(shop, "prod", "shop")
    deployed(shop, routed("web", "shop", "shop.example.com"))

    copy = shop.post(f"{API}/apps/demo/shop/web/promote", json={"target": "demo:shop", "name": "web-2"})
    problem = only(refused(copy))
    assert problem["file"] == "demo:shop/web v1 promoted to demo:shop" and problem["path"] == "/ports/0/host"
    assert 'is also routed by app "shop/web"' in problem["message"]
    # into another workspace of the cluster, the host claim refuses it and says what to do
    promoted = only(refused(shop.post(f"{API}/apps/demo/shop/web/promote", json={"target": "demo:pay"})))
    assert 'is routed by workspace "shop"' in promoted["message"]
    assert routers_of(plane_app, "shop.example.com") == ["shop/web"]

    # another cluster has a gateway of its own: the promotion is the first there, and a copy there is refused
    assert shop.post(f"{API}/apps/demo/shop/web/promote", json={"target": "prod:shop"}).status_code == 201
    again = only(refused(shop.post(f"{API}/apps/prod/shop/web/promote", json={"target": "prod:shop", "name": "web-2"})))
    assert 'app "shop/web"' in again["message"]
    # with a host of its own the copy goes through
    own = {"ports": [{"port": 8000, "expose": True, "host": "copy.example.com"}]}
    assert shop.post(f"{API}/apps/demo/shop/web/promote",
                     json={"target": "demo:shop", "name": "web-2", "overrides": own}).status_code == 201
    assert routers_of(plane_app, "shop.example.com") == ["shop/web"]
    assert routers_of(plane_app, "shop.example.com", "prod") == ["shop/web"]


def test_concurrent_deploys_of_one_route_leave_one_app(plane_app, shop, served):
    """Deploys that all plan before any commits are refused by the commit, which checks the tree it builds on."""
    threads = 6
    barrier = threading.Barrier(threads)

    def deploy(index: int) -> int:
        headers = {"Authorization": f"Bearer {shop.token}", "Content-Type": "application/yaml"}
        with httpx.Client(base_url=served, headers=headers, timeout=120) as client:
            barrier.wait(timeout=60)
            response = client.put(f"{API}/apps", content=routed(f"app-{index}", "shop", "race.example.com"))
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            (problem,) = response.json()["error"]["problems"]
            assert 'is also routed by app "shop/app-' in problem["message"]
        return response.status_code

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(deploy, range(threads)))
    assert sorted(outcomes) == [200] + [422] * (threads - 1)
    assert len(routers_of(plane_app, "race.example.com")) == 1


# --- offline -------------------------------------------------------------------------------------------


def test_offline_apply_refuses_a_route_another_app_of_the_repository_holds(tmp_path):
    repo = tmp_path / "demo.git"
    first, second = tmp_path / "web.yaml", tmp_path / "copy.yaml"
    first.write_text(routed("web", "shop", "shop.example.com"))
    second.write_text(routed("web-copy", "checkout", "shop.example.com", "/"))

    def shipyard(*files: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", "apply", *map(str, files), "--cluster",
                               str(ROOT / "fixtures/clusters/demo.yaml"), "--repo", str(repo)],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "300"})

    assert shipyard(first).returncode == 0
    result = shipyard(second)
    assert result.returncode == 1, result.stderr
    assert f"{second}:8:11" in result.stderr and 'app "shop/web"' in result.stderr
    assert "Traceback" not in result.stderr
    assert len(ClusterRepo(repo).log()) == 1
    assert shipyard(first).returncode == 0  # unchanged, and no clash with itself


@pytest.mark.parametrize("profile_name, clashes", [("demo", True), ("gke-standard", False)])
def test_overlapping_prefixes_clash_on_istio_and_not_on_the_gateway_api(tmp_path, cluster, specs_for,
                                                                       profile_name, clashes):
    profile = cluster(profile_name)
    repo = ClusterRepo(tmp_path / "repo.git")

    def apply(text: str):
        return apply_service.apply([render(spec, profile) for spec in specs_for(profile, text)], profile, repo)

    apply(routed("web", "shop", "shop.example.com", "/"))
    if clashes:
        with pytest.raises(SpecError, match='"/api" overlaps path "/" that app "shop/web"'):
            apply(routed("api", "shop", "shop.example.com", "/api"))
        return
    apply(routed("api", "shop", "shop.example.com", "/api"))  # the longest prefix wins: no clash
    # "/api/" is the PathPrefix "/api": a tie, which the older route would win
    with pytest.raises(SpecError) as refusal:
        apply(routed("api-2", "pay", "shop.example.com", "/api/"))
    (problem,) = refusal.value.problems
    assert problem.path == "/ports/0/host"
    assert 'host "shop.example.com" path "/api" is also routed by app "shop/api"' in problem.message
    assert len(repo.log()) == 2


def test_a_process_finds_the_same_clashes_searching_the_files_or_its_index(tmp_path, cluster, specs_for):
    """The first read of an app directory searches its route files for the hosts, the second indexes the
    names they hold, the third reads the apps' indexes and the fourth the workspace's merged one: all give
    the same answer, and a host that merely contains another ("a.example.com" in "shop-a.example.com") is
    told apart."""
    profile = cluster("demo")
    repo = ClusterRepo(tmp_path / "repo.git")
    for name, host in (("web", "shop-a.example.com"), ("api", "a.example.com"), ("docs", "docs.example.com")):
        apply_service.apply([render(spec, profile) for spec in specs_for(profile, routed(name, "shop", host))],
                            profile, repo)
    snapshot = repo.snapshot()
    mine = [render(spec, profile) for spec in specs_for(profile, routed("copy", "pay", "a.example.com", "/"))]
    answers = [[p.message for p in routes.clash_problems(snapshot, mine)] for _ in range(4)]
    assert answers[0] == answers[1] == answers[2] == answers[3]
    (message,) = answers[0]
    assert 'app "shop/api"' in message and "shop/web" not in message


def test_a_batch_of_many_hosts_finds_its_clash_as_one_host_does(tmp_path, cluster, specs_for):
    """A batch routing many hosts (a bulk deploy) searches the files by their names, not host by host."""
    profile = cluster("demo")
    repo = ClusterRepo(tmp_path / "repo.git")
    apply_service.apply([render(spec, profile) for spec in specs_for(profile, routed("api", "shop", "a.example.com"))],
                        profile, repo)
    batch = "---\n".join(routed(f"copy-{i}", "pay", f"h{i}.example.com") for i in range(12))
    batch += "---\n" + routed("copy-a", "pay", "a.example.com")
    mine = [render(spec, profile) for spec in specs_for(profile, batch)]
    for _ in range(3):
        (problem,) = routes.clash_problems(repo.snapshot(), mine)
        assert 'app "shop/api"' in problem.message and 'host "a.example.com"' in problem.message


# --- the routers' rules, on route objects as their documentation writes them ---------------------------------


def virtual_service(*http: dict, hosts=("shop.example.com",), gateways=("istio-system/ingressgateway",)) -> dict:
    spec = {"hosts": list(hosts), "http": list(http)}
    if gateways is not None:
        spec["gateways"] = list(gateways)
    return {"kind": "VirtualService", "metadata": {"name": "x", "namespace": "shop"}, "spec": spec}


def http_route(*matches: dict, hostnames=("shop.example.com",)) -> dict:
    return {"kind": "HTTPRoute", "metadata": {"name": "x", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "public", "namespace": "gateway-system"}], "hostnames": list(hostnames),
                     "rules": [{"matches": list(matches), "backendRefs": [{"name": "x", "port": 8000}]}]}}


def clashes(mine: dict, theirs: dict) -> bool:
    (a,), (b,) = routes.matches_of([mine]), routes.matches_of([theirs])
    return a.place == b.place and routes.clash(a, b)


def test_istio_matches_are_read_whatever_else_the_route_carries():
    # a canary's weighted destinations and a rewrite do not change which requests a match takes
    canary = {"match": [{"uri": {"prefix": "/api"}, "authority": {"exact": "Shop.Example.com"}}],
              "rewrite": {"uri": "/"},
              "route": [{"destination": {"host": "web", "port": {"number": 8000}}, "weight": 90},
                        {"destination": {"host": "web-canary", "port": {"number": 8000}}, "weight": 10}]}
    (match,) = routes.matches_of([virtual_service(canary, gateways=("ingressgateway",))])
    assert (match.gateway, match.host, match.path_type, match.path, match.port) == (
        "shop/ingressgateway", "shop.example.com", "prefix", "/api", 8000)
    # no match at all takes every request of every host of the VirtualService
    everything = routes.matches_of([virtual_service({"route": []}, hosts=("a.example.com", "b.example.com"))])
    assert [(m.host, m.path) for m in everything] == [("a.example.com", "/"), ("b.example.com", "/")]


def test_istio_clashes():
    def vs(match: dict, **kw) -> dict:
        return virtual_service({"match": [match]}, **kw)

    assert clashes(vs({"uri": {"prefix": "/"}}), vs({"uri": {"prefix": "/api"}}))
    assert clashes(vs({"uri": {"exact": "/api/v1"}}), vs({"uri": {"prefix": "/api"}}))
    assert clashes(vs({"uri": {"regex": "/a.*"}}), vs({"uri": {"prefix": "/b"}}))
    assert not clashes(vs({"uri": {"prefix": "/store"}}), vs({"uri": {"prefix": "/api"}}))
    assert not clashes(vs({"uri": {"exact": "/a"}}), vs({"uri": {"exact": "/b"}}))
    # a header with two exact values cannot be on one request; a header one of them ignores can
    canary = {"uri": {"prefix": "/"}, "headers": {"X-Canary": {"exact": "true"}}}
    assert not clashes(vs(canary), vs({"uri": {"prefix": "/"}, "headers": {"x-canary": {"exact": "false"}}}))
    assert clashes(vs(canary), vs({"uri": {"prefix": "/"}}))
    # the sidecars use one VirtualService per host, whatever the paths
    assert clashes(vs({"uri": {"prefix": "/a"}}, gateways=None), vs({"uri": {"prefix": "/b"}}, gateways=None))
    # another gateway, or another host (a wildcard included), is another place
    assert not clashes(vs({"uri": {"prefix": "/"}}), vs({"uri": {"prefix": "/"}}, gateways=("istio-system/private",)))
    assert not clashes(vs({"uri": {"prefix": "/"}}, hosts=("*.example.com",)), vs({"uri": {"prefix": "/"}}))


def test_gateway_api_clashes():
    def path(kind: str, value: str, **more) -> dict:
        return {"path": {"type": kind, "value": value}, **more}

    assert clashes(http_route(path("PathPrefix", "/api")), http_route(path("PathPrefix", "/api/")))
    assert clashes(http_route(path("Exact", "/api")), http_route(path("Exact", "/api")))
    assert clashes(http_route({}), http_route(path("PathPrefix", "/")))  # no path: PathPrefix "/"
    assert clashes(http_route(path("RegularExpression", "/a.*")), http_route(path("PathPrefix", "/b")))
    assert not clashes(http_route(path("PathPrefix", "/")), http_route(path("PathPrefix", "/api")))
    assert not clashes(http_route(path("Exact", "/api")), http_route(path("PathPrefix", "/api")))
    # a method or a header ranks a match above one without; equal counts of different values never meet
    canary = path("PathPrefix", "/", headers=[{"name": "X-Canary", "value": "true"}])
    assert not clashes(http_route(canary), http_route(path("PathPrefix", "/")))
    assert not clashes(http_route(canary), http_route(path("PathPrefix", "/", headers=[
        {"name": "x-canary", "value": "false"}])))
    assert clashes(http_route(canary), http_route(path("PathPrefix", "/", headers=[
        {"type": "Exact", "name": "x-canary", "value": "true"}])))
    assert not clashes(http_route(path("PathPrefix", "/"), hostnames=("*.example.com",)),
                       http_route(path("PathPrefix", "/")))
