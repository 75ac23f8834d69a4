"""Spec repositories synced from a real git server (https on loopback, basic auth: tests/gitserver.py).

The repository deploys as itself, with the role binding it is given; each push's added and
changed spec files are deployed (a bad file blocking no other), deleted ones delete their apps
only with prune, a rewritten history deploys nothing, a delivery is taken once, and a remote that
cannot be reached changes nothing and names no secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from contract.errors import Conflict, InvalidRequest, PermissionDenied
from gitops import spec_repos
from gitops.models import SpecRepo, SpecSync, Tenant, Version, utcnow
from gitops.policy import Grant, Principal, Scope
from gitops.service_context import Context
from tests.gitserver import TOKEN, USER, git, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import add_cluster, add_workspace, app_config, make_user, service_spec
from webapp import create_app

API = "/api/v1"
ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture
def plane_app(database_url, tmp_path, git_server):  # noqa: F811
    app = create_app(app_config(tmp_path / "data", database_url, GIT_CA_BUNDLE=str(git_server.cert)))
    yield app
    app.extensions["shipyard"].close()


@pytest.fixture
def world(plane_app, git_server, tmp_path):  # noqa: F811
    admin = make_user(plane_app, "admin", "tenant-admin")
    add_cluster(admin, "demo")
    for workspace in ("storefront", "data"):
        add_workspace(admin, "demo", workspace)
    assert admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 200
    url = git_server.new_repository("specs.git")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(git_server.root / "specs.git"), str(work))
    git(work, "checkout", "-q", "-b", "main")
    return {"admin": admin, "url": url, "work": work, "app": plane_app}


def push(work: Path, files: dict[str, str | None], message: str = "change", force: bool = False) -> str:
    for path, text in files.items():
        if text is None:
            (work / path).unlink()
        else:
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    git(work, "push", "-q", *(["--force"] if force else []), "origin", "main")
    return git(work, "rev-parse", "HEAD")


def context(app) -> Context:
    """A tenant-admin's Context, as a request's would be."""
    plane = app.extensions["shipyard"]
    session = plane.sessions()
    tenant = session.scalar(select(Tenant))
    principal = Principal(tenant.id, 0, "admin", (Grant("tenant-admin", Scope(tenant.id)),))
    return Context(session, principal, plane.repos, committers=plane.committers, worker=plane.worker,
                   schemas=plane.schemas)


def register(world, **options) -> spec_repos.NewSpecRepo:
    ctx = context(world["app"])
    new = spec_repos.register(ctx, "specs", world["url"], credentials={"username": USER, "password": TOKEN},
                              globs=["deploy/**/*.yaml"], **options)
    ctx.session.commit()
    return new


def sync(world, **options):
    ctx = context(world["app"])
    repo = ctx.session.scalar(select(SpecRepo).where(SpecRepo.name == "specs"))
    run = spec_repos.sync(ctx, repo, trigger="api", **options)
    return run, repo


def bind(world, workspace: str = "storefront") -> None:
    response = world["admin"].post(f"{API}/role-bindings", json={
        "role": "workspace-editor", "subject_kind": "repo", "subject": "specs", "cluster": "demo",
        "workspace": workspace})
    assert response.status_code == 201, response.get_json()


def versions_of(world, app: str, workspace: str = "storefront") -> list[dict]:
    return world["admin"].get(f"{API}/apps/demo/{workspace}/{app}/versions").get_json().get("versions", [])


def test_registering_checks_what_it_is_given_and_keeps_secrets_sealed(world):
    new = register(world)
    assert len(new.webhook_secret) >= 40
    ctx = context(world["app"])
    row = ctx.session.scalar(select(SpecRepo))
    assert TOKEN not in (row.credentials or "") and new.webhook_secret not in row.webhook_secret
    assert row.url == world["url"] and row.auth == "password" and row.state == "new"
    with pytest.raises(Conflict):
        spec_repos.register(ctx, "specs", world["url"])
    for bad in ({"name": "Specs!"}, {"branch": "a..b"}, {"globs": ["/etc/*"]}, {"url": "file:///etc"},
                {"url": "https://169.254.169.254/x.git"}, {"prune": "yes"}):
        arguments = {"name": "other", "url": world["url"], **bad}
        with pytest.raises(InvalidRequest):
            spec_repos.register(ctx, arguments.pop("name"), arguments.pop("url"), **arguments)
    viewer = Principal(row.tenant_id, 0, "viewer", ())
    with pytest.raises(PermissionDenied):
        spec_repos.register(Context(ctx.session, viewer, ctx.repos), "mine", world["url"])


def test_a_push_deploys_its_specs_as_the_repository_and_one_bad_file_blocks_no_other(world):
    first = push(world["work"], {"deploy/web.yaml": service_spec("web"), "README.md": "not a spec\n",
                                 "deploy/broken.yaml": service_spec("broken").replace("ports:", "portz:")})
    register(world)
    run, repo = sync(world)  # no role binding yet: nothing is tried, and the repository is not moved on
    assert run.state == "refused" and repo.state == "failing" and repo.synced_commit is None
    assert "holds no role binding" in run.problems[0]["message"] and versions_of(world, "web") == []

    bind(world)
    run, repo = sync(world)
    assert world["app"].extensions["shipyard"].spec_worker.run_once() == 0  # run by the request alone
    assert run.state == "partial" and run.relation == "initial" and repo.synced_commit == run.new == first
    assert [v["app"] for v in run.versions] == ["demo:storefront/web"]
    assert [(p["file"], p["line"], p["column"]) for p in run.problems] == [("deploy/broken.yaml", 5, 1)]
    (web,) = versions_of(world, "web")
    assert (web["source"], web["source_commit"], web["author"]) == ("spec-repo", f"specs@{run.new}",
                                                                    "spec repository specs")

    # A change to one file deploys that file alone; a deleted file keeps its app without prune.
    second = push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0"),
                                  "deploy/broken.yaml": None, "deploy/api.yaml": service_spec("api")})
    run, repo = sync(world)
    assert run.state == "deployed" and repo.state == "synced" and repo.synced_commit == second
    assert sorted(v["app"] for v in run.versions) == ["demo:storefront/api", "demo:storefront/web"]
    assert [v["number"] for v in versions_of(world, "web")] == [2, 1]
    again, _ = sync(world)
    assert again.state == "unchanged" and again.versions == []  # nothing new on the branch

    with context(world["app"]).session as session:
        session.get(SpecRepo, repo.id).prune = True
        session.commit()
    push(world["work"], {"deploy/api.yaml": None})
    run, _ = sync(world)
    assert [(v["app"], v["action"]) for v in run.versions] == [("demo:storefront/api", "delete")]
    assert world["admin"].get(f"{API}/apps/demo/storefront/api").get_json()["deleted"] is True


def test_files_of_one_push_are_held_to_each_other_and_the_rest_deploys(world):
    def routed(name: str, host: str) -> str:
        return service_spec(name).replace("ports: [{port: 8000}]",
                                          f"ports: [{{port: 8000, expose: true, host: '{host}'}}]")

    push(world["work"], {"deploy/a-shop.yaml": routed("shop", "shop.example.com"),
                         "deploy/b-copy.yaml": routed("copy", "shop.example.com"),
                         "deploy/c-twice.yaml": service_spec("twice"),
                         "deploy/d-twice.yaml": service_spec("twice", image="ghcr.io/acme/web:2.0"),
                         "deploy/e-web.yaml": service_spec("web")})
    register(world)
    bind(world)
    run, repo = sync(world, whole=True)
    assert run.state == "partial" and repo.state == "failing"
    assert sorted(v["app"] for v in run.versions) == ["demo:storefront/shop", "demo:storefront/web"]
    named = {p["file"]: p["message"] for p in run.problems}
    assert set(named) == {"deploy/b-copy.yaml", "deploy/c-twice.yaml", "deploy/d-twice.yaml"}
    assert "shop.example.com" in named["deploy/b-copy.yaml"] and "storefront/shop" in named["deploy/b-copy.yaml"]
    assert "defined in deploy/d-twice.yaml as well" in named["deploy/c-twice.yaml"]
    assert "defined in deploy/c-twice.yaml as well" in named["deploy/d-twice.yaml"]
    assert versions_of(world, "twice") == [] and versions_of(world, "copy") == []

    push(world["work"], {"deploy/d-twice.yaml": None})  # one definition left: it deploys when its file changes
    push(world["work"], {"deploy/c-twice.yaml": service_spec("twice", image="ghcr.io/acme/web:3.0")})
    run, _ = sync(world)
    assert [v["app"] for v in run.versions] == ["demo:storefront/twice"] and run.problems == []


def test_a_sync_asked_for_while_another_runs_is_refused(world):
    push(world["work"], {"deploy/web.yaml": service_spec("web")})
    register(world)
    bind(world)
    with context(world["app"]).session as session:
        repo = session.scalar(select(SpecRepo))
        spec_repos.enqueue(session, repo, trigger="webhook", running_by="another-process")
    answer = world["admin"].post(f"{API}/spec-repos/specs/sync", json={})
    assert answer.status_code == 409 and "(asked by webhook) is running" in answer.get_json()["error"]["message"]
    with context(world["app"]).session as session:  # its worker died: once its lease runs out, a sync may run
        session.execute(update(SpecSync).values(claimed_until=utcnow() - dt.timedelta(seconds=1)))
        session.commit()
    assert world["admin"].post(f"{API}/spec-repos/specs/sync", json={}).get_json()["state"] == "deployed"


def test_a_public_repository_needs_no_credentials(world, git_server):  # noqa: F811
    git_server.public.add("specs.git")
    push(world["work"], {"deploy/web.yaml": service_spec("web")})
    ctx = context(world["app"])
    spec_repos.register(ctx, "specs", world["url"], globs=["deploy/**/*.yaml"])
    ctx.session.commit()
    bind(world)
    run, repo = sync(world, whole=True)
    assert run.state == "deployed" and repo.auth is None and [v["app"] for v in run.versions] == ["demo:storefront/web"]
    git_server.public.clear()  # made private: the fetch is refused, and said so
    push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    run, repo = sync(world)
    assert run.state == "failed" and repo.state == "failing" and "credentials" in run.problems[0]["message"]
    ctx.session.close()


def test_a_rewritten_history_deploys_nothing_until_a_person_accepts_it(world):
    push(world["work"], {"deploy/web.yaml": service_spec("web")})
    register(world)
    bind(world)
    run, _ = sync(world)
    newer = push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    sync(world)
    git(world["work"], "reset", "-q", "--hard", "HEAD~1")
    rewritten = push(world["work"], {"deploy/api.yaml": service_spec("api")}, force=True)
    run, repo = sync(world)
    assert (run.state, run.relation, repo.state, repo.synced_commit) == ("refused", "rewritten", "behind", newer)
    assert "force-push" in run.problems[0]["message"] and versions_of(world, "api") == []
    run, repo = sync(world, whole=True)
    assert run.state == "deployed" and repo.synced_commit == rewritten and repo.state == "synced"
    ctx = context(world["app"])
    web = ctx.session.scalars(select(Version).where(Version.source_commit == f"specs@{rewritten}")).all()
    assert sorted(v.spec["name"] for v in web) == ["api", "web"]  # the tip as it is, the older web included


def test_a_delivery_is_taken_once_and_an_unreachable_remote_changes_nothing(world, git_server):  # noqa: F811
    push(world["work"], {"deploy/web.yaml": service_spec("web")})
    register(world)
    bind(world)
    first, _ = sync(world, delivery="d-1")
    replayed, _ = sync(world, delivery="d-1")
    assert replayed.id == first.id and len(versions_of(world, "web")) == 1

    git_server.password = "changed"  # the stored credentials no longer open the server
    push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    run, repo = sync(world)
    assert run.state == "failed" and repo.state == "failing" and len(versions_of(world, "web")) == 1
    assert TOKEN not in run.problems[0]["message"] and "changed" not in repo.last_error


# --- pushes through the webhook, the background worker, polling ------------------------------------------------


def github_delivery(before: str, after: str, secret: str, delivery: str, ref: str = "refs/heads/main"):
    """A GitHub push delivery (fixtures/webhooks/github-push.json) for these commits, signed as GitHub signs it."""
    payload = json.loads((ROOT / "fixtures" / "webhooks" / "github-push.json").read_text())
    payload.update(ref=ref, before=before, after=after)
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
                  "X-Hub-Signature-256": signature, "User-Agent": "GitHub-Hookshot/7f3c2a1"}


def hook(app, body: bytes, headers: dict, path: str = "/hooks/default/specs"):
    return app.test_client().post(path, data=body, headers=headers)


def syncs(app) -> list[SpecSync]:
    with app.extensions["shipyard"].sessions() as session:
        return session.scalars(select(SpecSync).order_by(SpecSync.id)).all()


def test_a_signed_push_is_answered_at_once_and_deployed_by_the_worker_even_across_a_restart(world, database_url,
                                                                                              tmp_path, git_server):  # noqa: F811
    app = world["app"]
    first = push(world["work"], {"deploy/web.yaml": service_spec("web")})
    secret = register(world).webhook_secret
    bind(world)
    body, headers = github_delivery("0" * 40, first, secret, "d-1")

    for refused in (hook(app, body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}),
                    hook(app, body[:-1] + b" ", headers), hook(app, body, headers, "/hooks/default/nope"),
                    hook(app, body, headers, "/hooks/elsewhere/specs")):
        assert refused.status_code == 401 and secret not in refused.get_data(as_text=True)
    assert syncs(app) == []  # nothing asked for, nothing deployed
    other_branch = hook(app, *github_delivery("0" * 40, first, secret, "d-0", ref="refs/heads/feature"))
    assert other_branch.status_code == 200 and other_branch.get_json()["accepted"] is False

    accepted = hook(app, body, headers)
    assert accepted.status_code == 202 and accepted.get_json()["accepted"] is True
    assert hook(app, body, headers).status_code == 200  # the provider's redelivery: taken once
    assert [s.state for s in syncs(app)] == ["queued"]

    # The control plane restarts before the worker ran: the next one runs what was asked for.
    app.extensions["shipyard"].close()
    again = create_app(app_config(tmp_path / "data", database_url, GIT_CA_BUNDLE=str(git_server.cert)))
    try:
        assert again.extensions["shipyard"].spec_worker.run_once() == 1
        assert [(s.trigger, s.delivery, s.state) for s in syncs(again)] == [("webhook", "d-1", "deployed")]
        admin = admin_of(again)
        (version,) = versions_of({"admin": admin}, "web")
        assert version["source_commit"] == f"specs@{first}"
        steps = {s["step"]: s for s in admin.get(f"{API}/apps/demo/storefront/web/trace").get_json()["steps"]}
        assert (steps["spec commit"]["commit"], steps["spec commit"]["trigger"]) == (first, "webhook")
        assert steps["committed"]["at"] is not None and steps["synced"]["at"] is None  # no agent reports here

        # Polling catches up a push whose webhook never came.
        second = push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
        worker = again.extensions["shipyard"].spec_worker
        worker.poll_seconds = 300
        assert worker.run_once() == 0  # a sync was asked for within the last 5 minutes
        later = utcnow() + dt.timedelta(seconds=301)
        assert worker.run_once(now=later) == 1
        assert [(s.trigger, s.new, s.state) for s in syncs(again)][-1] == ("poll", second, "deployed")
    finally:
        again.extensions["shipyard"].close()


def admin_of(app):
    """An admin API client of ``app`` (another process's app, after the restart)."""
    return make_user(app, "admin-again", "tenant-admin")
