"""Spec repositories through /api/v1/spec-repos and the ``shipyard repos``/``repo`` commands, against
a real https git server on loopback (tests/gitserver.py) and, for the command line, the control
plane served on a loopback port with the real ``shipyard`` run as a subprocess.

Registering answers the webhook secret once and no read shows it, nor the git password; a
viewer may not register and a cluster-admin may; a repository deploys where its role binding
lets it, its versions tagged ``spec-repo``, a bad file's problems named FILE:LINE:COL; a sync
is read back newest first; its settings change but not its URL; deleting it forgets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitserver import TOKEN, USER, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import add_cluster, make_user, served, service_spec  # noqa: F401 - served: a fixture
from tests.test_spec_repos import plane_app, push, world  # noqa: F401 - plane_app, world: fixtures

API = "/api/v1"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
BROKEN = service_spec("broken").replace("ports:", "portz:")  # line 5, column 1: an unknown field


def register_body(scene: dict, **extra) -> dict:
    return {"name": "specs", "url": scene["url"], "globs": ["deploy/**/*.yaml"],
            "credentials": {"username": USER, "password": TOKEN}, **extra}


def bind(scene: dict) -> dict:
    response = scene["admin"].post(f"{API}/role-bindings", json={
        "role": "workspace-editor", "subject_kind": "repo", "subject": "specs", "cluster": "demo",
        "workspace": "storefront"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_register_bind_sync_and_read_back_through_the_api(world):  # noqa: F811
    app, admin = world["app"], world["admin"]
    viewer = make_user(app, "viewer", "cluster-viewer", cluster="demo")
    response = viewer.post(f"{API}/spec-repos", json=register_body(world))
    assert response.status_code == 403, response.get_json()

    ops = make_user(app, "ops", "cluster-admin", cluster="demo")
    response = ops.post(f"{API}/spec-repos", json=register_body(world))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    secret = created["webhook_secret"]
    assert len(secret) >= 40 and created["webhook_url"] == "http://127.0.0.1:8080/hooks/default/specs"
    assert (created["url"], created["branch"], created["globs"], created["prune"], created["auth"], created["state"]) \
        == (world["url"], "main", ["deploy/**/*.yaml"], False, "password", "new")
    assert ops.post(f"{API}/spec-repos", json=register_body(world)).status_code == 409

    binding = bind(world)
    first = push(world["work"], {"deploy/web.yaml": service_spec("web"), "deploy/broken.yaml": BROKEN,
                                 "README.md": "not a spec\n"})
    response = ops.post(f"{API}/spec-repos/specs/sync", json={})
    assert response.status_code == 201, response.get_json()
    run = response.get_json()
    assert (run["trigger"], run["state"], run["new"], run["relation"]) == ("api", "partial", first, "initial")
    assert [v["app"] for v in run["versions"]] == ["demo:storefront/web"]
    assert [(p["file"], p["line"], p["column"]) for p in run["problems"]] == [("deploy/broken.yaml", 5, 1)]
    (version,) = admin.get(f"{API}/apps/demo/storefront/web/versions").get_json()["versions"]
    assert (version["source"], version["source_commit"]) == ("spec-repo", f"specs@{first}")

    push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    second = ops.post(f"{API}/spec-repos/specs/sync", json={"whole": False}).get_json()
    assert second["state"] == "deployed" and second["old"] == first

    syncs = viewer.get(f"{API}/spec-repos/specs/syncs", query_string={"limit": 5}).get_json()["syncs"]
    assert [s["id"] for s in syncs] == [second["id"], run["id"]]
    assert [s["id"] for s in viewer.get(f"{API}/spec-repos/specs/syncs",
                                        query_string={"before": second["id"]}).get_json()["syncs"]] == [run["id"]]
    assert viewer.get(f"{API}/spec-repos/specs/syncs", query_string={"limit": 0}).status_code == 400

    shown = viewer.get(f"{API}/spec-repos/specs").get_json()
    assert shown["state"] == "synced" and shown["synced_commit"] == second["new"]
    assert shown["bindings"] == [{"id": binding["id"], "role": "workspace-editor", "cluster": "demo",
                                  "workspace": "storefront"}]
    assert [s["id"] for s in shown["syncs"]] == [second["id"], run["id"]]
    for path in ("/spec-repos", "/spec-repos/specs", "/spec-repos/specs/syncs"):
        text = viewer.get(f"{API}{path}").get_data(as_text=True)
        assert secret not in text and TOKEN not in text and "webhook_secret" not in text, path

    # A workspace role reads no spec repository: they are the tenant's, like its clusters.
    editor = make_user(app, "editor", "workspace-editor", cluster="demo", workspace="storefront")
    assert editor.get(f"{API}/spec-repos/specs").status_code == 403
    assert editor.post(f"{API}/spec-repos/specs/sync", json={}).status_code == 403


def test_settings_change_but_not_the_url_and_bad_input_is_a_clear_400(world):  # noqa: F811
    ops = make_user(world["app"], "ops", "cluster-admin", cluster="demo")
    for body, words in (({"credentials": "deploy:token"}, "credentials is an object"),
                        ({"credentials": {"token": "x"}}, "credentials take"),
                        ({"credentials": {"username": USER, "password": 4711}}, "each credential is a string"),
                        ({"globs": "deploy/*.yaml"}, "must be a list"),
                        ({"globs": ["../etc/*"]}, "not a path glob"),
                        ({"prune": "yes"}, "must be a bool"),
                        ({"name": "Specs!"}, "lowercase"),
                        ({"webhook_secret": "mine"}, "unknown field")):
        response = ops.post(f"{API}/spec-repos", json=register_body(world, **body))
        assert response.status_code == 400 and words in response.get_json()["error"]["message"], (body, response.json)
    assert ops.post(f"{API}/spec-repos", json=register_body(world)).status_code == 201

    for body, words in (({"url": "https://127.0.0.1/other.git"}, "delete it and register"),
                        ({"branch": "a..b"}, "not a branch name"), ({"prune": 1}, "true or false"),
                        ({"globs": []}, "from 1 to"), ({"credentials": {"ssh_key": "k"}}, "ssh"),
                        ({"owner": "me"}, "unknown field")):
        response = ops.patch(f"{API}/spec-repos/specs", json=body)
        assert response.status_code == 400 and words in response.get_json()["error"]["message"], (body, response.json)

    response = ops.patch(f"{API}/spec-repos/specs", json={"branch": "release", "prune": True,
                                                          "globs": ["apps/*.yaml"], "credentials": None})
    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert (changed["branch"], changed["prune"], changed["globs"], changed["auth"]) == \
        ("release", True, ["apps/*.yaml"], None)
    events = world["admin"].get(f"{API}/audit").get_json()["events"]
    assert [(e["action"], e["target"]) for e in events[:2]] == [("spec_repo.update", "specs"),
                                                                ("spec_repo.create", "specs")]

    assert ops.delete(f"{API}/spec-repos/specs").status_code == 204
    assert ops.get(f"{API}/spec-repos/specs").status_code == 404
    assert ops.get(f"{API}/spec-repos").get_json() == {"spec_repos": []}


def test_only_an_admin_of_every_place_a_repository_deploys_to_may_change_it(world):  # noqa: F811
    add_cluster(world["admin"], "edge")
    ops = make_user(world["app"], "ops", "cluster-admin", cluster="demo")
    elsewhere = make_user(world["app"], "edge-ops", "cluster-admin", cluster="edge")
    assert elsewhere.post(f"{API}/spec-repos", json=register_body(world)).status_code == 201
    bind(world)  # it now deploys to demo, which edge's admin does not administer
    for call in (lambda c: c.patch(f"{API}/spec-repos/specs", json={"branch": "mine"}),
                 lambda c: c.post(f"{API}/spec-repos/specs/sync", json={"whole": True}),
                 lambda c: c.delete(f"{API}/spec-repos/specs")):
        refused = call(elsewhere)
        assert refused.status_code == 403 and "an admin of every place" in refused.get_json()["error"]["message"]
    assert world["admin"].get(f"{API}/spec-repos/specs").get_json()["branch"] == "main"
    assert elsewhere.post(f"{API}/spec-repos/specs/sync", json={}).status_code == 201  # as a poll would
    assert ops.patch(f"{API}/spec-repos/specs", json={"prune": True}).status_code == 200

    tenant_wide = world["admin"].post(f"{API}/role-bindings", json={
        "role": "workspace-viewer", "subject_kind": "repo", "subject": "specs"})
    assert tenant_wide.status_code == 201, tenant_wide.get_json()
    assert ops.delete(f"{API}/spec-repos/specs").status_code == 403
    assert world["admin"].delete(f"{API}/spec-repos/specs").status_code == 204


# --- the command line -------------------------------------------------------------------------------------


def shipyard(base_url: str, token: str, *args: str, home: Path, stdin: str | None = None):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")},
           "SHIPYARD_URL": base_url, "SHIPYARD_TOKEN": token, "XDG_CONFIG_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([SHIPYARD, *args], capture_output=True, text=True, env=env, timeout=120, input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None)


@pytest.mark.slow
def test_the_repos_commands_register_sync_show_and_delete(world, served, git_server, tmp_path):  # noqa: F811
    ops = make_user(world["app"], "ops", "cluster-admin", cluster="demo")
    viewer = make_user(world["app"], "viewer", "cluster-viewer", cluster="demo")

    def run(*args: str, token: str = ops.token, stdin: str | None = None):
        return shipyard(served, token, *args, home=tmp_path / "home", stdin=stdin)

    refused = run("repo", "register", "specs", world["url"], token=viewer.token)
    assert refused.returncode == 6, refused.stderr
    no_files = run("repo", "register", "specs", world["url"], "--username", USER, "--password-file", "git-token")
    assert no_files.returncode == 1 and "CREDENTIAL_FILES_DIR" in no_files.stderr, no_files.stderr
    assert run("repo", "register", "specs", world["url"], "--password-file", "git-token").returncode == 2
    made = run("repo", "register", "specs", world["url"], "--glob", "deploy/**/*.yaml", "--username", USER,
               "--password-stdin", stdin=f"{TOKEN}\n")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert len(secret) >= 40 and "\n" not in secret
    assert "/hooks/default/specs" in made.stderr and "only this once" in made.stderr and TOKEN not in made.stderr

    granted = run("bindings", "create", "specs", "workspace-editor", "--repo", "--cluster", "demo",
                  "--workspace", "storefront")
    assert granted.returncode == 0 and "repo specs now holds workspace-editor" in granted.stderr, granted.stderr
    first = push(world["work"], {"deploy/web.yaml": service_spec("web"), "deploy/broken.yaml": BROKEN})
    synced = run("repo", "sync", "specs")
    assert synced.returncode == 1, synced.stderr
    assert "deploy/broken.yaml:5:1: " in synced.stderr and "demo:storefront/web v1 (deploy)" in synced.stderr

    listed = run("repos", token=viewer.token)
    assert listed.returncode == 0, listed.stderr
    header, row = [line.split() for line in listed.stdout.splitlines()[:2]]
    assert header[:5] == ["NAME", "URL", "BRANCH", "STATE", "SYNCED"]
    assert row[:5] == ["specs", world["url"], "main", "failing", first[:12]]
    status = run("repo", "status", "specs", token=viewer.token)
    assert status.returncode == 0, status.stderr
    assert "workspace-editor on demo:storefront" in status.stdout
    assert "deploy/broken.yaml:5:1: " in status.stdout
    for args in (("repos", "-o", "json"), ("repo", "status", "specs", "-o", "yaml")):
        shown = run(*args)
        assert shown.returncode == 0 and secret not in shown.stdout and TOKEN not in shown.stdout, args
    assert json.loads(run("repos", "-o", "json").stdout)["spec_repos"][0]["name"] == "specs"

    push(world["work"], {"deploy/broken.yaml": service_spec("broken")})
    fixed = run("repo", "sync", "specs", "-o", "json")
    assert fixed.returncode == 0, fixed.stderr
    assert [v["app"] for v in json.loads(fixed.stdout)["versions"]] == ["demo:storefront/broken"]

    git_server.password = "changed"  # the registered token no longer works: the fetch fails
    failed = run("repo", "sync", "specs", "--whole")
    assert failed.returncode == 3, failed.stderr
    assert "failed" in failed.stderr and TOKEN not in failed.stderr

    assert run("repo", "status", "missing").returncode == 4
    unconfirmed = run("repo", "delete", "specs")
    assert unconfirmed.returncode == 2, unconfirmed.stderr
    assert run("repo", "delete", "specs", "--yes").returncode == 0
    assert run("repos", "-o", "json").stdout.strip() == json.dumps({"spec_repos": []}, indent=2)
