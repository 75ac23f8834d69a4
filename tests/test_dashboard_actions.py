"""The dashboard's actions (webapp.pages.actions): each does what the API does, for whom the API allows it.

Driven through Flask's test client with a logged-in session, on SQLite and PostgreSQL: deploy (a
problem shown at its line with the text kept, a dry run's diff, a deploy recorded as made from the
dashboard, an upload), roll back, promote with YAML overrides, delete confirmed by name, restart,
refresh, run a job with its params, and the logs page. A workspace viewer sees none of the
controls and is refused when posting anyway; a post without the form's CSRF token is refused.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from gitops.models import Command, JobRun, Version
from gitops.refreshes import COMMIT_REFRESH
from tests.plane import add_cluster, add_workspace, deploy_yaml, make_user, service_spec
from tests.test_login import csrf_of, flashes, password_login

APP = "/apps/demo/storefront/web"
JOB = Path("fixtures/specs/job-manual.yaml").read_text()


@pytest.fixture
def world(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    add_workspace(admin, "demo", "data")
    assert deploy_yaml(admin, service_spec("web")).status_code == 200
    assert deploy_yaml(admin, service_spec("web", image="ghcr.io/acme/web:2.0")).status_code == 200
    make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    return plane_app


def browser(app, user: str):
    client = app.test_client()
    assert password_login(client, user).status_code == 302
    return client


def post(client, path: str, data: dict, **kwargs):
    """A form post as the page sends it: with the CSRF token of the page it came from."""
    page = client.get(kwargs.pop("page", APP))
    return client.post(path, data={"csrf_token": csrf_of(page.get_data(True)), **data}, **kwargs)


def versions(app) -> list[tuple[int, str, str]]:
    with app.extensions["shipyard"].sessions() as session:
        rows = session.execute(select(Version.number, Version.action, Version.source)
                               .order_by(Version.id)).all()
    return [tuple(r) for r in rows]


def test_deploy_shows_problems_at_their_line_then_diffs_then_deploys(world):
    client = browser(world, "admin")
    prefilled = client.get("/deploy", query_string={"from": "demo:storefront/web"}).get_data(True)
    assert "ghcr.io/acme/web:2.0" in prefilled and 'name="filename" value="web.yaml"' in prefilled

    broken = service_spec("web", image="ghcr.io/acme/web:3.0").replace("ports:", "portz:")
    refused = post(client, "/deploy", {"spec": broken, "filename": "web.yaml", "intent": "check"}, page="/deploy")
    text = refused.get_data(True)
    assert refused.status_code == 422
    assert re.search(r'data-goto-line="5"[^>]*>web\.yaml:5:1</button> unknown field &#34;portz&#34;', text), text
    assert "portz:" in text  # what was typed is kept

    fixed = service_spec("web", image="ghcr.io/acme/web:3.0")
    checked = post(client, "/deploy", {"spec": fixed, "intent": "check"}, page="/deploy").get_data(True)
    assert "demo:storefront/web" in checked and "updated" in checked
    assert re.search(r'<span class="add">\+.*ghcr.io/acme/web:3.0', checked)
    assert versions(world)[-1][0] == 2  # a check commits nothing

    deployed = post(client, "/deploy", {"spec": fixed, "intent": "deploy"}, page="/deploy")
    assert deployed.status_code == 302 and deployed.location.endswith(APP)
    assert versions(world)[-1] == (3, "deploy", "dashboard")
    assert any("version 3 is committed" in f for f in flashes(client.get(APP).get_data(True)))
    again = post(client, "/deploy", {"spec": fixed, "intent": "deploy"}, page="/deploy")
    assert again.status_code == 302 and versions(world)[-1] == (3, "deploy", "dashboard")
    assert any("unchanged: version 3 already deploys this spec" in f for f in flashes(client.get(APP).get_data(True)))

    uploaded = post(client, "/deploy", {"intent": "deploy", "spec": "",
                                        "file": (io.BytesIO(service_spec("web", image="ghcr.io/acme/web:4.0").encode()),
                                                 "web.yaml")}, page="/deploy", content_type="multipart/form-data")
    assert uploaded.status_code == 302 and versions(world)[-1][0] == 4


def test_rollback_promote_and_delete(world, admin):
    client = browser(world, "admin")
    rolled = post(client, f"{APP}/rollback", {"version": "1"})
    assert rolled.status_code == 302 and versions(world)[-1] == (3, "rollback", "dashboard")

    bad = post(client, f"{APP}/promote", {"target": "demo:data", "overrides": "replicas: [\n"}, page=f"{APP}/promote")
    assert bad.status_code == 422 and "overrides:" in bad.get_data(True) and "replicas: [" in bad.get_data(True)
    promoted = post(client, f"{APP}/promote", {"target": "demo:data", "overrides": "replicas: 3\n"},
                    page=f"{APP}/promote")
    assert promoted.status_code == 302 and promoted.location.endswith("/apps/demo/data/web")
    spec = admin.get("/api/v1/apps/demo/data/web/versions/1").get_json()["spec"]
    assert spec["replicas"] == 3 and spec["workspace_fqn"] == "demo:data"

    kept = post(client, "/apps/demo/data/web/delete", {"confirm": "wbe"}, page="/apps/demo/data/web/delete")
    assert kept.status_code == 400 and not admin.get("/api/v1/apps/demo/data/web").get_json()["deleted"]
    gone = post(client, "/apps/demo/data/web/delete", {"confirm": "web"}, page="/apps/demo/data/web/delete")
    assert gone.status_code == 302 and admin.get("/api/v1/apps/demo/data/web").get_json()["deleted"]


def test_restart_refresh_run_and_logs(world, admin):
    assert deploy_yaml(admin, JOB).status_code == 200
    client = browser(world, "admin")
    for kind in ("restart", "refresh"):
        assert post(client, f"{APP}/command", {"type": kind}).status_code == 302
    with world.extensions["shipyard"].sessions() as session:
        sent = session.execute(select(Command.type, Command.kind, Command.name).where(~COMMIT_REFRESH)  # the commits' own
                               .order_by(Command.id)).all()
    assert [tuple(c) for c in sent] == [("restart", "Deployment", "web"), ("refresh", "Application", "storefront.web")]

    form = client.get("/apps/demo/data/backfill/run").get_data(True)
    assert 'name="param.since"' in form and re.search(r'name="param.since" value="" required', form)
    missing = post(client, "/apps/demo/data/backfill/run", {"param.table": "orders"}, page="/apps/demo/data/backfill/run")
    assert missing.status_code == 400 and "since" in missing.get_data(True)
    ran = post(client, "/apps/demo/data/backfill/run", {"param.since": "2026-01-01", "param.table": "",
                                                        "param.dry_run": "false"}, page="/apps/demo/data/backfill/run")
    assert ran.status_code == 302
    with world.extensions["shipyard"].sessions() as session:
        assert session.scalars(select(JobRun.params)).all() == [{"since": "2026-01-01", "dry_run": "false"}]
    assert client.get(f"{APP}/run").status_code == 404  # a service does not run

    logs = client.get(f"{APP}/logs").get_data(True)
    assert "No pod of this app has been reported" in logs


def test_a_viewer_sees_no_controls_and_is_refused_anyway(world):
    viewer = browser(world, "viewer")
    page = viewer.get(APP).get_data(True)
    for control in ("Deploy a new version", "Promote or clone", "Restart", "Refresh", "Delete…", "Roll back to"):
        assert control not in page
    assert "Logs" in page  # reading logs is reading
    before = versions(world)
    for path, data in ((f"{APP}/rollback", {"version": "1"}), (f"{APP}/command", {"type": "restart"}),
                       (f"{APP}/delete", {"confirm": "web"}), (f"{APP}/promote", {"target": "demo:storefront"}),
                       ("/deploy", {"spec": service_spec("web"), "intent": "deploy"})):
        assert post(viewer, path, data).status_code == 403, path
    assert viewer.get("/deploy").status_code == 403
    assert versions(world) == before


def test_a_form_post_without_its_csrf_token_is_refused(world):
    client = browser(world, "admin")
    before = versions(world)
    assert client.post(f"{APP}/rollback", data={"version": "1"}).status_code == 403
    assert client.post(f"{APP}/rollback", data={"version": "1", "csrf_token": "forged"}).status_code == 403
    assert versions(world) == before


def test_commits_link_to_the_repository_browser_the_profile_names(plane_app, admin):
    from tests.plane import PROFILE

    hostile = PROFILE.replace("  branch: main\n", "  branch: main\n  browse_url: javascript:alert('{commit}')\n")
    refused = admin.post("/api/v1/clusters", json={"name": "demo", "profile": hostile})
    assert refused.status_code == 422 and "browse_url" in refused.get_data(True)
    without = PROFILE.replace("  branch: main\n", "  branch: main\n  browse_url: https://git.example.com/acme/demo\n")
    refused = admin.post("/api/v1/clusters", json={"name": "demo", "profile": without})
    assert refused.status_code == 422 and "must hold {commit}" in refused.get_data(True)
    profile = PROFILE.replace("  branch: main\n",
                              "  branch: main\n  browse_url: https://git.example.com/acme/demo/commit/{commit}\n")
    assert admin.post("/api/v1/clusters", json={"name": "demo", "profile": profile}).status_code == 201
    add_workspace(admin, "demo", "storefront")
    commit = deploy_yaml(admin, service_spec("web")).get_json()["versions"][0]["commit"]
    client = browser(plane_app, "admin")
    link = f'href="https://git.example.com/acme/demo/commit/{commit}"'
    assert link in client.get(APP).get_data(True) and link in client.get(f"{APP}/versions/1").get_data(True)
