"""Workspaces sharing a cluster stay apart: secret paths are scoped, route hosts are claimed.

Every test drives the real API (SQLite and PostgreSQL) as the people of the issue: an editor
of workspace "shop", an editor of workspace "pay", the cluster's admin and shop's
workspace-admin, and checks the refusal as a user sees it (the spec problem at its line and
column, naming what is in the way and what to do) and what is left behind (claims, the
repository, the audit log).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from gitops import isolation
from gitops.models import HostClaim, Workspace
from contract.errors import SpecError
from renderer.spec import load_specs
from tests.plane import Api, add_cluster, add_workspace, deploy_yaml, make_user, served  # noqa: F401 - served: a fixture

API = "/api/v1"


def routed(name: str, workspace: str, host: str | None = None, env: str = "", path: str | None = None) -> str:
    """A service of ``workspace`` with one exposed port (host on line 8, then path), and ``env`` lines after it."""
    text = (f"type: service\nname: {name}\nworkspace_fqn: demo:{workspace}\n"
            f"image: {{type: image, image_uri: 'ghcr.io/acme/{name}:1'}}\n"
            "ports:\n  - port: 8000\n    expose: true\n")
    if host is not None:
        text += f"    host: '{host}'\n"
    if path is not None:
        text += f"    path: '{path}'\n"
    if env:
        text += "env:\n" + "".join(f"  {line}\n" for line in env.splitlines())
    return text


def with_secret(name: str, workspace: str, ref: str) -> str:
    """A service of ``workspace`` whose env DB_PASSWORD (line 6, value at column 16) is ``ref``."""
    return (f"type: service\nname: {name}\nworkspace_fqn: demo:{workspace}\n"
            f"image: {{type: image, image_uri: 'ghcr.io/acme/{name}:1'}}\n"
            f"env:\n  DB_PASSWORD: {ref}\n")


def deployed(api: Api, text: str, **query) -> dict:
    response = deploy_yaml(api, text, **query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refused(api: Api, text: str, **query) -> list[dict]:
    response = deploy_yaml(api, text, **query)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()["error"]
    assert body["code"] == "spec_invalid"
    return body["problems"]


def only(problems: list[dict]) -> dict:
    assert len(problems) == 1, problems
    return problems[0]


@pytest.fixture
def people(plane_app, admin) -> dict[str, Api]:
    """Cluster demo with workspaces shop and pay, and who works in them."""
    add_cluster(admin)
    for workspace in ("shop", "pay"):
        add_workspace(admin, "demo", workspace)
    return {
        "admin": admin,
        "cluster-admin": make_user(plane_app, "carla", "cluster-admin", cluster="demo"),
        "shop-admin": make_user(plane_app, "sam", "workspace-admin", cluster="demo", workspace="shop"),
        "shop": make_user(plane_app, "shelly", "workspace-editor", cluster="demo", workspace="shop"),
        "pay": make_user(plane_app, "paul", "workspace-editor", cluster="demo", workspace="pay"),
    }


def claims(plane_app) -> dict[str, str]:
    with plane_app.extensions["shipyard"].sessions() as session:
        return dict(session.execute(select(HostClaim.host, Workspace.name)
                                    .join(Workspace, Workspace.id == HostClaim.workspace_id)).all())


def listed_hosts(api: Api) -> dict[str, str]:
    response = api.get(f"{API}/clusters/demo/hosts")
    assert response.status_code == 200, response.get_json()
    return {claim["host"]: claim["workspace"] for claim in response.get_json()["hosts"]}


# --- route hosts --------------------------------------------------------------------------------


def test_a_host_another_workspace_serves_is_refused_naming_its_owner(plane_app, people):
    deployed(people["pay"], routed("checkout", "pay", "pay.example.com", path="/checkout"))
    problem = only(refused(people["shop"], routed("web", "shop", "pay.example.com")))
    assert (problem["line"], problem["column"], problem["path"]) == (8, 11, "/ports/0/host")
    message = problem["message"]
    assert 'host "pay.example.com"' in message and 'workspace "pay"' in message
    assert "ask a cluster-admin to move the claim" in message
    assert claims(plane_app) == {"pay.example.com": "pay"}
    # the owner's other apps may share it (on paths of their own: gitops.routes), and redeploying
    # the first one is no claim of anything new
    deployed(people["pay"], routed("refunds", "pay", "pay.example.com", path="/refunds"))
    deployed(people["pay"], routed("checkout", "pay", "pay.example.com", path="/checkout").replace(":1'", ":2'"))
    assert claims(plane_app) == {"pay.example.com": "pay"}
    shown = people["cluster-admin"].get(f"{API}/clusters/demo/hosts").get_json()["hosts"]
    assert shown == [{**shown[0], "host": "pay.example.com", "workspace": "pay", "claimed_by": "pay/checkout"}]
    assert shown[0]["claimed_at"]


def test_a_derived_host_is_claimed_too(plane_app, people):
    # <app>-<workspace>.<base_domain> is ambiguous: app "web" of workspace "x-shop" and app "web-x"
    # of workspace "shop" both derive web-x-shop.demo.localtest.me
    add_workspace(people["admin"], "demo", "x-shop")
    deployed(people["admin"], routed("web", "x-shop"))
    assert claims(plane_app) == {"web-x-shop.demo.localtest.me": "x-shop"}
    problem = only(refused(people["shop"], routed("web-x", "shop")))
    assert (problem["line"], problem["path"]) == (7, "/ports/0/expose")
    assert 'host "web-x-shop.demo.localtest.me"' in problem["message"] and '"x-shop"' in problem["message"]


def test_dry_run_refuses_the_same_and_claims_nothing(plane_app, people):
    assert deployed(people["shop"], routed("web", "shop", "shop.example.com"), dry_run="true")["dry_run"] is True
    assert claims(plane_app) == {}  # a dry run claims nothing
    deployed(people["pay"], routed("checkout", "pay", "shop.example.com"))
    problem = only(refused(people["shop"], routed("web", "shop", "shop.example.com"), dry_run="true"))
    assert 'workspace "pay"' in problem["message"]


def test_claims_outlive_the_app_until_a_cluster_admin_releases_them(plane_app, people):
    deployed(people["pay"], routed("checkout", "pay", "pay.example.com"))
    assert people["pay"].delete(f"{API}/apps/demo/pay/checkout").status_code == 200
    assert listed_hosts(people["cluster-admin"]) == {"pay.example.com": "pay"}
    assert 'workspace "pay"' in only(refused(people["shop"], routed("web", "shop", "pay.example.com")))["message"]

    for who in ("shop", "pay", "shop-admin"):  # not theirs to give away
        assert people[who].delete(f"{API}/clusters/demo/hosts/pay.example.com").status_code in (403, 404)
    assert people["cluster-admin"].delete(f"{API}/clusters/demo/hosts/pay.example.com").status_code == 204
    assert people["cluster-admin"].delete(f"{API}/clusters/demo/hosts/pay.example.com").status_code == 404
    deployed(people["shop"], routed("web", "shop", "pay.example.com"))
    assert claims(plane_app) == {"pay.example.com": "shop"}
    events = people["admin"].get(f"{API}/audit").get_json()["events"]
    assert any(e["action"] == "host-claim.release" and e["target"] == "demo:pay.example.com"
               and e["detail"] == {"from": "pay"} for e in events)


def test_a_moved_claim_lets_the_new_workspace_deploy_and_refuses_the_old(plane_app, people):
    deployed(people["pay"], routed("checkout", "pay", "api.example.com"))
    for who in ("shop", "shop-admin"):
        response = people[who].put(f"{API}/clusters/demo/hosts/api.example.com", json={"workspace": "shop"})
        assert response.status_code == 403, response.get_json()
    moved = people["cluster-admin"].put(f"{API}/clusters/demo/hosts/API.Example.com", json={"workspace": "shop"})
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json() == {**moved.get_json(), "host": "api.example.com", "workspace": "shop",
                                "claimed_by": "carla"}
    # the old owner's app still takes the host's requests: the same route waits until it is gone
    assert 'app "pay/checkout"' in only(refused(people["shop"], routed("web", "shop", "api.example.com")))["message"]
    assert people["pay"].delete(f"{API}/apps/demo/pay/checkout").status_code == 200
    deployed(people["shop"], routed("web", "shop", "api.example.com"))
    problem = only(refused(people["pay"], routed("checkout", "pay", "api.example.com").replace(":1'", ":2'")))
    assert 'workspace "shop"' in problem["message"]
    assert claims(plane_app) == {"api.example.com": "shop"}

    # a host nobody holds yet is claimed for the workspace named; names are checked
    created = people["cluster-admin"].put(f"{API}/clusters/demo/hosts/new.example.com", json={"workspace": "pay"})
    assert created.status_code == 201
    assert people["cluster-admin"].put(f"{API}/clusters/demo/hosts/new.example.com",
                                       json={"workspace": "nowhere"}).status_code == 404
    assert people["cluster-admin"].put(f"{API}/clusters/demo/hosts/not_a_host",
                                       json={"workspace": "pay"}).status_code == 400
    assert listed_hosts(people["cluster-admin"]) == {"api.example.com": "shop", "new.example.com": "pay"}
    events = people["admin"].get(f"{API}/audit").get_json()["events"]
    assert any(e["action"] == "host-claim.move" and e["detail"] == {"from": "pay", "to": "shop"} for e in events)


def test_wildcard_hosts_overlap_the_names_below_them(plane_app, people):
    deployed(people["pay"], routed("checkout", "pay", "api.pay.example.com"))
    problem = only(refused(people["shop"], routed("web", "shop", "*.example.com")))
    assert 'host "*.example.com" (it overlaps "api.pay.example.com")' in problem["message"]
    deployed(people["shop"], routed("web", "shop", "*.shop.example.com"))
    problem = only(refused(people["pay"], routed("refunds", "pay", "deep.in.shop.example.com")))
    assert '(it overlaps "*.shop.example.com")' in problem["message"] and 'workspace "shop"' in problem["message"]
    deployed(people["shop"], routed("cart", "shop", "cart.shop.example.com"))  # below its own wildcard
    assert claims(plane_app) == {"api.pay.example.com": "pay", "*.shop.example.com": "shop",
                                 "cart.shop.example.com": "shop"}


def test_deleting_a_workspace_releases_its_claims(plane_app, people):
    deployed(people["pay"], routed("checkout", "pay", "pay.example.com"))
    assert people["pay"].delete(f"{API}/apps/demo/pay/checkout").status_code == 200
    assert people["admin"].delete(f"{API}/clusters/demo/workspaces/pay").status_code == 204
    assert claims(plane_app) == {}
    deployed(people["shop"], routed("web", "shop", "pay.example.com"))


def test_one_batch_cannot_route_a_host_from_two_workspaces(plane_app, people):
    batch = routed("web", "shop", "both.example.com") + "---\n" + routed("checkout", "pay", "both.example.com")
    problem = only(refused(people["admin"], batch))
    assert problem["line"] == 17 and 'workspace "shop"' in problem["message"]
    assert claims(plane_app) == {}


# --- secret paths -------------------------------------------------------------------------------


def test_a_workspace_references_only_its_own_secret_paths(plane_app, people):
    problem = only(refused(people["shop"], with_secret("web", "shop", "secret://pay/db#password")))
    assert (problem["line"], problem["column"], problem["path"]) == (6, 16, "/env/DB_PASSWORD")
    message = problem["message"]
    assert 'secret path "pay/db"' in message and 'workspace "shop"' in message
    assert "ask a cluster-admin to add it to the workspace's secret_paths" in message

    for ref in ("secret://shop/db#password", "secret://shop/nested/db#password",
                "tfy-secret://shop:db:password"):  # tfy-secret://<tenant>:<group>:<key> is the path <tenant>/<group>
        deployed(people["shop"], with_secret("web", "shop", ref))
    for ref in ("secret://shopx/db#k", "secret://shop#k", "tfy-secret://acme:shop:password"):
        assert 'is outside workspace "shop"' in only(refused(people["shop"], with_secret("web", "shop", ref)))["message"]
    # a path cannot climb out of the prefix that permits it
    problem = only(refused(people["shop"], with_secret("web", "shop", "secret://shop/../pay/db#password")))
    assert '".." segment' in problem["message"] and problem["line"] == 6


def test_a_cluster_admin_widens_a_workspace_with_secret_paths(plane_app, people):
    shared = with_secret("web", "shop", "secret://shared/db#password")
    assert "secret_paths" in only(refused(people["shop"], shared))["message"]
    response = people["cluster-admin"].patch(f"{API}/clusters/demo/workspaces/shop",
                                             json={"secret_paths": ["shared/", "acme/ml-models"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["secret_paths"] == ["acme/ml-models", "shared/"]
    deployed(people["shop"], shared)
    deployed(people["shop"], with_secret("models", "shop", "tfy-secret://acme:ml-models:hf-token"))
    for ref in ("secret://sharedx/db#k", "tfy-secret://acme:ml-models-2:hf-token", "secret://acme/ml-models/x#k"):
        refused(people["shop"], with_secret("other", "shop", ref))
    refused(people["pay"], with_secret("web", "pay", "secret://shared/db#password"))  # only shop's list
    events = people["admin"].get(f"{API}/audit").get_json()["events"]
    assert any(e["action"] == "workspace.set-secret-paths" and e["target"] == "demo:shop"
               and e["detail"] == {"before": [], "after": ["acme/ml-models", "shared/"]} for e in events)


def test_a_workspace_admin_cannot_change_secret_paths(plane_app, people):
    response = people["shop-admin"].patch(f"{API}/clusters/demo/workspaces/shop",
                                          json={"secret_paths": ["pay/"], "labels": {"team": "shop"}})
    assert response.status_code == 403, response.get_json()
    shown = people["shop-admin"].get(f"{API}/clusters/demo/workspaces/shop").get_json()
    assert shown["secret_paths"] == [] and shown["labels"] == {}  # nothing of the request was applied
    # the rest of the workspace is still theirs to change
    assert people["shop-admin"].patch(f"{API}/clusters/demo/workspaces/shop",
                                      json={"labels": {"team": "shop"}}).status_code == 200
    refused(people["shop"], with_secret("web", "shop", "secret://pay/db#password"))


@pytest.mark.parametrize("entries", [["../pay/"], ["shop//db"], [""], ["a/./b"], "shared/", [1], ["a b/"]])
def test_secret_path_entries_are_paths(plane_app, people, entries):
    for path in (f"{API}/clusters/demo/workspaces/shop", f"{API}/clusters/demo"):
        response = people["cluster-admin"].patch(path, json={"secret_paths": entries})
        assert response.status_code == 400, (path, response.get_json())


def test_cluster_secret_paths_apply_to_every_workspace(plane_app, people):
    spec = with_secret("models", "shop", "tfy-secret://acme:ml-models:hf-token")
    refused(people["shop"], spec)
    assert people["shop-admin"].patch(f"{API}/clusters/demo", json={"secret_paths": ["acme/"]}).status_code == 403
    response = people["cluster-admin"].patch(f"{API}/clusters/demo", json={"secret_paths": ["acme/"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["secret_paths"] == ["acme/"]
    assert people["cluster-admin"].get(f"{API}/clusters/demo").get_json()["secret_paths"] == ["acme/"]
    deployed(people["shop"], spec)
    deployed(people["pay"], spec.replace("demo:shop", "demo:pay"))
    events = people["admin"].get(f"{API}/audit").get_json()["events"]
    assert any(e["action"] == "cluster.set-secret-paths" and e["detail"] == {"before": [], "after": ["acme/"]}
               for e in events)


def test_a_rollback_to_a_path_no_longer_allowed_is_refused(plane_app, people):
    people["cluster-admin"].patch(f"{API}/clusters/demo/workspaces/shop", json={"secret_paths": ["shared/"]})
    deployed(people["shop"], with_secret("web", "shop", "secret://shared/db#password"))
    deployed(people["shop"], with_secret("web", "shop", "secret://shop/db#password"))
    people["cluster-admin"].patch(f"{API}/clusters/demo/workspaces/shop", json={"secret_paths": []})
    response = people["shop"].post(f"{API}/apps/demo/shop/web/rollback", json={"version": 1})
    assert response.status_code == 422, response.get_json()
    problem = only(response.get_json()["error"]["problems"])
    assert 'secret path "shared/db"' in problem["message"] and problem["file"] == "version 1"
    assert people["shop"].post(f"{API}/apps/demo/shop/web/rollback", json={"version": 2}).status_code == 201


def test_promotion_is_checked_against_the_target_workspace(plane_app, people):
    admin = people["admin"]
    deployed(people["pay"], routed("checkout", "pay", "pay.example.com", env="DB: secret://pay/db#password"))
    response = admin.post(f"{API}/apps/demo/pay/checkout/promote", json={"target": "demo:shop"})
    assert response.status_code == 422, response.get_json()
    messages = sorted(p["message"] for p in response.get_json()["error"]["problems"])
    assert len(messages) == 2
    assert 'secret path "pay/db" is outside workspace "shop"' in messages[0]
    assert 'host "pay.example.com" is routed by workspace "pay"' in messages[1]
    # with its own host and secret the promotion goes through
    response = admin.post(f"{API}/apps/demo/pay/checkout/promote", json={
        "target": "demo:shop", "overrides": {"env": {"DB": "secret://shop/db#password"},
                                             "ports": [{"port": 8000, "expose": True, "host": "shop.example.com"}]}})
    assert response.status_code == 201, response.get_json()
    assert claims(plane_app) == {"pay.example.com": "pay", "shop.example.com": "shop"}


# --- racing for a host -------------------------------------------------------------------------------


def test_a_claim_lost_to_a_concurrent_deploy_is_read_again_and_refused(plane_app, people):
    """Two transactions insert the same host: the second waits for the first (a row lock on
    PostgreSQL, the write lock on SQLite), loses the unique key, reads the winner and is refused."""
    plane = plane_app.extensions["shipyard"]
    (shop_spec,) = load_specs(routed("web", "shop", "race.example.com"))
    (pay_spec,) = load_specs(routed("checkout", "pay", "race.example.com"))
    route = isolation.Route("race.example.com", ("ports", 0, "host"))
    outcome: dict[str, object] = {}
    with plane.sessions() as first:
        pay = first.scalar(select(Workspace).where(Workspace.name == "pay"))
        isolation.claim_hosts(first, pay_spec, pay, [route])  # inserted, not committed

        def second_claim():
            with plane.sessions() as second:
                shop = second.scalar(select(Workspace).where(Workspace.name == "shop"))
                try:
                    isolation.claim_hosts(second, shop_spec, shop, [route])
                    outcome["result"] = "claimed"
                except SpecError as exc:
                    outcome["result"] = exc

        racer = threading.Thread(target=second_claim)
        racer.start()
        racer.join(timeout=1)
        assert racer.is_alive(), "the second claim did not wait for the first transaction"
        first.commit()
        racer.join(timeout=60)
    assert isinstance(outcome["result"], SpecError), outcome
    assert 'workspace "pay"' in str(outcome["result"])
    assert claims(plane_app) == {"race.example.com": "pay"}


def test_concurrent_deploys_of_one_host_from_two_workspaces_leave_one_owner(plane_app, people, served):
    threads = 6
    barrier = threading.Barrier(threads * 2)

    def deploy(job: tuple[str, int]) -> tuple[str, int]:
        workspace, index = job
        headers = {"Authorization": f"Bearer {people[workspace].token}", "Content-Type": "application/yaml"}
        with httpx.Client(base_url=served, headers=headers, timeout=120) as client:
            barrier.wait(timeout=60)
            response = client.put(f"{API}/apps", content=routed(f"app-{index}", workspace, "race.example.com",
                                                                path=f"/app-{index}"))
        assert response.status_code in (200, 422), response.text
        return workspace, response.status_code

    jobs = [(workspace, index) for index in range(threads) for workspace in ("shop", "pay")]
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = list(pool.map(deploy, jobs))
    winners = {workspace for workspace, status in outcomes if status == 200}
    assert len(winners) == 1, outcomes
    (winner,) = winners
    assert all(status == (200 if workspace == winner else 422) for workspace, status in outcomes), outcomes
    assert claims(plane_app) == {"race.example.com": winner}
    with plane_app.extensions["shipyard"].sessions() as session:
        assert session.scalar(select(func.count()).select_from(HostClaim)) == 1


def test_the_upgrade_claims_the_hosts_apps_already_route(plane_app, people):
    """Apps deployed before host claims existed keep their hosts: migration 0003 claims what each
    live app routes (explicit or derived), the oldest deploy first, so no other workspace can
    take a host that is already served."""
    from alembic import command

    from gitops import db

    deployed(people["pay"], routed("checkout", "pay", "pay.example.com"))
    deployed(people["shop"], routed("web", "shop"))  # derived: web-shop.<base_domain>
    deployed(people["shop"], routed("gone", "shop", "gone.example.com"))
    assert people["shop"].delete(f"{API}/apps/demo/shop/gone").status_code == 200
    before = claims(plane_app)
    engine = plane_app.extensions["shipyard"].engine
    config = db._alembic_config(engine)
    command.downgrade(config, "0002")
    command.upgrade(config, "head")
    after = claims(plane_app)
    assert after == {host: owner for host, owner in before.items() if host != "gone.example.com"}
    assert after["pay.example.com"] == "pay" and any(h.startswith("web-shop.") for h in after)
    problem = only(refused(people["shop"], routed("web2", "shop", "pay.example.com")))
    assert "pay" in problem["message"]
