"""The dashboard's spec repositories (webapp.pages.spec_repos), through Flask's test client as a logged-in
browser, against a real https git server on loopback (tests/gitserver.py), on SQLite and PostgreSQL.

Registering shows the webhook secret once, and it is the real one (a delivery signed with it
is taken, one signed otherwise is not); no other page shows it or the git password. A refused
form keeps what was typed but the secrets. "Sync now" deploys as the API's sync does, each
version linked and each problem at its file, line and column; a repository failing or behind
reads so, with why, and is never green. Settings change and deleting is confirmed, each audited
as the API audits it. Someone who may only read sees no form and is refused when posting anyway.
The journey through a real browser is at the end (slow).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from gitops.models import SpecRepo, SpecSync
from tests.browser import (ADMIN_PASSWORD, artifacts_dir, expect, login, page,  # noqa: F401 - fixtures
                           seed, serving, shot)
from tests.gitserver import TOKEN, USER, git, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import Api, app_config, make_user, service_spec
from tests.test_dashboard_admin import flashed, logged_in, shown_once, text_of
from tests.test_spec_repos import github_delivery, hook, plane_app, push, world  # noqa: F401 - fixtures
from webapp import create_app

API = "/api/v1"
BROKEN = service_spec("broken").replace("ports:", "portz:")  # line 5, column 1: an unknown field
PAGE = "/admin/spec-repos/specs"
BADGE = re.compile(r'<span class="badge tone-(\w+)[^"]*"[^>]*>'
                   r'<span class="dot" aria-hidden="true"></span>([^<]+)</span>')


def register_form(scene: dict, csrf: str, **fields) -> dict:
    return {"csrf_token": csrf, "name": "specs", "url": scene["url"], "branch": "main",
            "globs": "deploy/**/*.yaml\r\n", "username": USER, "password": TOKEN, **fields}


def register(client, scene: dict, csrf: str) -> str:
    """Register "specs" through the form; the webhook secret its answer shows."""
    made = client.post("/admin/register-spec-repo", data=register_form(scene, csrf))
    assert made.status_code == 201, text_of(made)[:2000]
    return shown_once(made, "the webhook secret")


def grant(client, csrf: str):
    """workspace-editor of demo:storefront for the repository, through the role bindings page's form."""
    return client.post("/admin/bindings", data={"csrf_token": csrf, "role": "workspace-editor",
                                                "subject_kind": "repo", "subject": "specs", "cluster": "demo",
                                                "workspace": "storefront"})


def badge_of(html: str, where: str) -> tuple[str, str]:
    """(tone, word) of the first badge after ``where`` in ``html``."""
    match = BADGE.search(html, html.index(where))
    assert match, f"no badge after {where!r}"
    return match.group(1), match.group(2)


def audit_actions(admin: Api, count: int) -> list[tuple[str, str, str]]:
    return [(e["action"], e["actor"], e["target"]) for e in admin.get(f"{API}/audit").get_json()["events"][:count]]


# --- registering --------------------------------------------------------------------------------------


def test_registering_shows_the_secret_once_and_a_refused_form_keeps_all_but_the_secrets(world):  # noqa: F811
    app, admin = world["app"], world["admin"]
    client, csrf = logged_in(app, "admin")
    assert "Spec repositories" in text_of(client.get("/admin"))
    assert "No spec repositories yet" in text_of(client.get("/admin/spec-repos"))
    assert "Clone URL" in text_of(client.get("/admin/register-spec-repo"))

    typed = register_form(world, csrf, url="file:///etc/specs", branch="release", prune="yes",
                          globs="deploy/**/*.yaml\r\napps/*.yml\r\n", known_hosts="git.test ssh-ed25519 AAAA\r\n",
                          ssh_passphrase="a passphrase typed")
    refused = client.post("/admin/register-spec-repo", data=typed)
    page_text = text_of(refused)
    assert refused.status_code == 400 and "remote_url uses the file:// transport" in page_text
    assert all(kept in page_text for kept in ('value="specs"', 'value="file:///etc/specs"', 'value="release"',
                                              "deploy/**/*.yaml\napps/*.yml", f'value="{USER}"',
                                              "git.test ssh-ed25519 AAAA"))
    assert re.search(r'name="prune" value="yes" checked', page_text)
    assert TOKEN not in page_text and "a passphrase typed" not in page_text

    # a password pasted into the URL is not sent back either
    pasted = client.post("/admin/register-spec-repo", data=register_form(
        world, csrf, name="Specs!", url=world["url"].replace("https://", f"https://{USER}:{TOKEN}@")))
    assert pasted.status_code == 400 and "lowercase letters, digits and dashes" in text_of(pasted)
    assert f'value="{world["url"]}"' in text_of(pasted) and TOKEN not in text_of(pasted)

    # a credential file's name is no secret: kept; this server reads no credential files, and says so
    named = client.post("/admin/register-spec-repo", data=register_form(world, csrf, password="",
                                                                        password_file="git-token"))
    assert named.status_code == 400 and "CREDENTIAL_FILES_DIR" in text_of(named)
    assert 'name="password_file" value="git-token"' in text_of(named)

    made = client.post("/admin/register-spec-repo", data=register_form(world, csrf))
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    secret = shown_once(made, "the webhook secret")
    assert shown_once(made, "the webhook URL") == "http://127.0.0.1:8080/hooks/default/specs"
    assert "application/json" in text_of(made) and "Secret token" in text_of(made)
    assert client.post("/admin/register-spec-repo", data=register_form(world, csrf)).status_code == 409

    # the secret shown is the repository's: a delivery signed with it is taken, one signed otherwise is not
    body, headers = github_delivery("0" * 40, "1" * 40, secret, "d-1", ref="refs/heads/feature")
    assert hook(app, body, headers).status_code == 200
    assert hook(app, *github_delivery("0" * 40, "1" * 40, "guessed", "d-2")).status_code == 401

    listed = client.get("/admin/spec-repos")
    assert f"<code>{world['url']}</code>" in text_of(listed)
    assert "<code>http://127.0.0.1:8080/hooks/default/specs</code>" in text_of(listed)
    assert badge_of(text_of(listed), "<td>main</td>") == ("quiet", "Never synced")
    for path in ("/admin/spec-repos", PAGE, "/admin", "/admin/audit", f"{PAGE}/delete"):
        shown = client.get(path).get_data(as_text=True)
        assert secret not in shown and TOKEN not in shown, path
    with client.session_transaction() as session:
        assert secret not in repr(dict(session))

    kept = admin.get(f"{API}/spec-repos/specs").get_json()
    assert (kept["url"], kept["branch"], kept["globs"], kept["prune"], kept["auth"], kept["created_by"]) == (
        world["url"], "main", ["deploy/**/*.yaml"], False, "password", "admin")
    assert audit_actions(admin, 1) == [("spec_repo.create", "admin", "specs")]


# --- who may do what ----------------------------------------------------------------------------------


def test_a_reader_sees_no_form_and_is_refused_when_posting_anyway(world):  # noqa: F811
    app, admin = world["app"], world["admin"]
    owner, csrf = logged_in(app, "admin")
    register(owner, world, csrf)
    make_user(app, "viewer", "cluster-viewer", cluster="demo")
    client, csrf = logged_in(app, "viewer")
    before = audit_actions(admin, 3)

    assert "Spec repositories" in text_of(client.get("/admin"))
    listed = text_of(client.get("/admin/spec-repos"))
    assert "specs" in listed and "Register" not in listed
    shown = text_of(client.get(PAGE))
    assert "Never synced" in shown and "/hooks/default/specs" in shown
    assert shown.count('name="csrf_token"') == 1  # the log-out button's form, nothing else
    assert not any(control in shown for control in ("Sync now", "Sync as a whole", "Save", "Delete", "Grant it"))
    for path in ("/admin/register-spec-repo", f"{PAGE}/delete"):
        assert client.get(path).status_code == 403, path
    posts = {"/admin/register-spec-repo": register_form(world, csrf, name="mine"), PAGE: {"branch": "other"},
             f"{PAGE}/sync": {}, f"{PAGE}/delete": {"confirm": "yes"}}
    refused = {path: client.post(path, data={**data, "csrf_token": csrf}) for path, data in posts.items()}
    wrong = {path: r.status_code for path, r in refused.items()
             if r.status_code != 403 or "viewer may not cluster.update" not in text_of(r)}
    assert wrong == {}, wrong
    forged = owner.post(f"{PAGE}/sync", data={})  # no CSRF token: refused whoever posts
    assert forged.status_code == 403 and "The CSRF token is missing" in text_of(forged)
    assert audit_actions(admin, 3) == before
    assert admin.get(f"{API}/spec-repos/specs/syncs").get_json()["syncs"] == []
    assert admin.get(f"{API}/spec-repos/specs").get_json()["branch"] == "main"

    # a workspace's roles read no spec repository: they are the tenant's, like its clusters
    make_user(app, "editor", "workspace-editor", cluster="demo", workspace="storefront")
    editor, _ = logged_in(app, "editor")
    assert "Spec repositories" not in text_of(editor.get("/admin"))
    assert editor.get("/admin/spec-repos").status_code == 403 and editor.get(PAGE).status_code == 403


# --- syncing ------------------------------------------------------------------------------------------


def test_sync_now_deploys_links_each_version_and_shows_each_problem_at_its_line(world):  # noqa: F811
    app, admin = world["app"], world["admin"]
    first = push(world["work"], {"deploy/web.yaml": service_spec("web"), "deploy/broken.yaml": BROKEN,
                                 "README.md": "not a spec\n"})
    client, csrf = logged_in(app, "admin")
    register(client, world, csrf)

    # without a role binding the repository deploys nowhere: failing, with why, and red
    synced = client.post(f"{PAGE}/sync", data={"csrf_token": csrf})
    assert synced.status_code == 302 and synced.location.endswith(PAGE)
    shown = flashed(client)
    assert re.search(rf"Sync \d+: refused at {first[:12]}; 1 problem\(s\)", shown), shown
    shown = text_of(client.get(PAGE))
    assert badge_of(shown, 'aria-label="Sync state"') == ("bad", "Failing")
    assert "spec repository specs holds no role binding, so it may deploy nowhere" in shown
    listed = text_of(client.get("/admin/spec-repos"))
    assert badge_of(listed, "<td>main</td>") == ("bad", "Failing") and "holds no role binding" in listed

    # the bindings page offers the repository as whom to grant to, named by the link from its page
    assert "/admin/bindings?subject_kind=repo&subject=specs#new-binding" in shown
    offered = text_of(client.get("/admin/bindings", query_string={"subject_kind": "repo", "subject": "specs"}))
    assert "<option selected>repo</option>" in offered and 'name="subject" value="specs"' in offered
    assert grant(client, csrf).status_code == 302
    assert "repo specs now holds workspace-editor at demo:storefront" in flashed(client)
    assert "workspace-editor at demo:storefront" in text_of(client.get(PAGE))

    # the files refused before are retried by a sync as a whole, confirmed
    unconfirmed = client.post(f"{PAGE}/sync", data={"csrf_token": csrf, "whole": "yes"})
    assert unconfirmed.status_code == 400 and "Tick the box to confirm" in text_of(unconfirmed)
    assert len(admin.get(f"{API}/spec-repos/specs/syncs").get_json()["syncs"]) == 1
    whole = client.post(f"{PAGE}/sync", data={"csrf_token": csrf, "whole": "yes", "confirm": "yes"})
    assert whole.status_code == 302
    assert re.search(r"Sync \d+: partly deployed at \w+; 1 version\(s\) made; 1 problem\(s\)", flashed(client))
    shown = text_of(client.get(PAGE))
    row = re.search(r'<tr id="sync-\d+">.*?</tr>', shown, re.DOTALL).group(0)  # the newest
    assert badge_of(row, "<td>") == ("bad", "Partly deployed") and "<td>dashboard</td>" in row
    assert '<a href="/apps/demo/storefront/web/versions/1">demo:storefront/web v1</a>' in row
    assert "<code>deploy/broken.yaml:5:1</code>: " in row and "portz" in row
    assert f"{first[:12]}</code> <span class=\"muted\">initial</span>" in row
    assert badge_of(shown, 'aria-label="Sync state"') == ("bad", "Failing")  # a file still has problems
    (version,) = admin.get(f"{API}/apps/demo/storefront/web/versions").get_json()["versions"]
    assert (version["source"], version["source_commit"]) == ("spec-repo", f"specs@{first}")
    assert "demo:storefront/web v1" in text_of(client.get(PAGE))
    assert client.get("/apps/demo/storefront/web/versions/1").status_code == 200

    fixed = push(world["work"], {"deploy/broken.yaml": service_spec("broken")})
    assert client.post(f"{PAGE}/sync", data={"csrf_token": csrf}).status_code == 302
    assert re.search(rf"Sync \d+: deployed at {fixed[:12]}; 1 version\(s\) made\.", flashed(client))
    shown = text_of(client.get(PAGE))
    assert badge_of(shown, 'aria-label="Sync state"') == ("ok", "Synced") and 'id="last-error"' not in shown
    assert f'{first[:12]}</code>..<code title="{fixed}">{fixed[:12]}</code> <span class="muted">fast-forward' in shown
    assert [s["trigger"] for s in admin.get(f"{API}/spec-repos/specs/syncs").get_json()["syncs"]] == ["dashboard"] * 3


def test_a_repository_behind_or_unreachable_reads_so_with_why_and_is_never_green(world, git_server):  # noqa: F811
    app = world["app"]
    push(world["work"], {"deploy/web.yaml": service_spec("web")})
    client, csrf = logged_in(app, "admin")
    register(client, world, csrf)
    assert grant(client, csrf).status_code == 302
    assert client.post(f"{PAGE}/sync", data={"csrf_token": csrf}).status_code == 302
    push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    assert client.post(f"{PAGE}/sync", data={"csrf_token": csrf}).status_code == 302
    assert badge_of(text_of(client.get(PAGE)), 'aria-label="Sync state"') == ("ok", "Synced")

    git(world["work"], "reset", "-q", "--hard", "HEAD~1")
    push(world["work"], {"deploy/api.yaml": service_spec("api")}, force=True)
    assert client.post(f"{PAGE}/sync", data={"csrf_token": csrf}).status_code == 302
    assert "refused" in flashed(client)
    for path, where in ((PAGE, 'aria-label="Sync state"'), ("/admin/spec-repos", "<td>main</td>")):
        shown = text_of(client.get(path))
        assert badge_of(shown, where) == ("bad", "Behind"), path
        assert "without" in shown and "force-push or a rewritten history" in shown, path
    assert world["admin"].get(f"{API}/apps/demo/storefront/api").status_code == 404

    git_server.password = "changed"  # the stored credentials no longer open the server
    assert client.post(f"{PAGE}/sync", data={"csrf_token": csrf}).status_code == 302
    shown = text_of(client.get("/admin/spec-repos"))
    assert badge_of(shown, "<td>main</td>") == ("bad", "Failing")
    reason = re.search(r'<div class="reason">([^<]+)</div>', shown).group(1)
    assert reason and TOKEN not in shown and "changed" not in reason


def test_the_syncs_are_paged_newest_first(world):  # noqa: F811
    app = world["app"]
    client, csrf = logged_in(app, "admin")
    register(client, world, csrf)
    with app.extensions["shipyard"].sessions.begin() as session:
        repo = session.scalar(select(SpecRepo))
        for number in range(25):
            session.add(SpecSync(repo_id=repo.id, trigger="poll", state="unchanged", new=f"{number:040x}",
                                 relation="same", problems=[], versions=[]))

    def shown_syncs(response) -> list[str]:
        return re.findall(r'<tr id="sync-\d+"><td>\d+</td>.*?<code title="(\w+)"', text_of(response), re.DOTALL)

    newest = client.get(PAGE)
    assert shown_syncs(newest) == [f"{n:040x}" for n in range(24, 4, -1)]
    older = re.search(r'href="([^"]+)" rel="next"', text_of(newest)).group(1)
    rest = client.get(older)
    assert shown_syncs(rest) == [f"{n:040x}" for n in range(4, -1, -1)]
    assert 'rel="next"' not in text_of(rest) and "← Newest" in text_of(rest)
    bad = client.get(PAGE, query_string={"before": "99999999999"})
    assert bad.status_code == 400 and "before must be a whole number" in text_of(bad)
    assert client.get("/admin/spec-repos/ghost").status_code == 404


# --- settings and deleting ----------------------------------------------------------------------------


def test_settings_change_keep_credentials_unseen_and_deleting_is_confirmed(world):  # noqa: F811
    app, admin = world["app"], world["admin"]
    client, csrf = logged_in(app, "admin")
    register(client, world, csrf)
    assert grant(client, csrf).status_code == 302
    settings = {"csrf_token": csrf, "branch": "main", "globs": "deploy/**/*.yaml"}

    assert client.post(PAGE, data=settings).status_code == 302
    assert "Nothing to save" in flashed(client)
    bad = client.post(PAGE, data={**settings, "branch": "a..b", "globs": "apps/*.yaml\r\nmore/*.yml",
                                  "prune": "yes", "password": "new token typed"})
    assert bad.status_code == 400 and "not a branch name git takes" in text_of(bad)
    assert 'value="a..b"' in text_of(bad) and "apps/*.yaml\nmore/*.yml" in text_of(bad)
    assert "new token typed" not in text_of(bad)
    assert admin.get(f"{API}/spec-repos/specs").get_json()["branch"] == "main"

    changed = client.post(PAGE, data={**settings, "branch": "release", "globs": "apps/*.yaml\r\n", "prune": "yes"})
    assert changed.status_code == 302 and 'Spec repository "specs" saved (branch, globs, prune)' in flashed(client)
    kept = admin.get(f"{API}/spec-repos/specs").get_json()
    assert (kept["branch"], kept["globs"], kept["prune"], kept["auth"]) == ("release", ["apps/*.yaml"], True,
                                                                          "password")
    event = admin.get(f"{API}/audit").get_json()["events"][0]
    assert (event["action"], event["actor"], event["detail"]) == (
        "spec_repo.update", "admin", {"branch": "release", "globs": ["apps/*.yaml"], "prune": True})

    assert "none yet" in text_of(client.get(PAGE))  # auto, and no webhook delivery has named the provider
    now = {**settings, "branch": "release", "globs": "apps/*.yaml", "prune": "yes"}
    wrong = client.post(PAGE, data={**now, "commit_status": "svn"})
    assert wrong.status_code == 400 and "commit_status is one of auto, off, github" in text_of(wrong)
    assert client.post(PAGE, data={**now, "commit_status": "gitlab"}).status_code == 302
    assert "saved (commit_status)" in flashed(client) and "posted to gitlab" in text_of(client.get(PAGE))
    assert admin.get(f"{API}/spec-repos/specs").get_json()["commit_status"] == "gitlab"

    both = client.post(PAGE, data={**settings, "clear_credentials": "yes", "username": USER, "password": "x"})
    assert both.status_code == 400 and "not both" in text_of(both)
    ssh = client.post(PAGE, data={**settings, "ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\r\n"})
    assert ssh.status_code == 400 and "are for ssh remotes" in text_of(ssh)
    assert re.search(r'name="ssh_key"[^>]*></textarea>', text_of(ssh))  # the key typed is not sent back
    assert client.post(PAGE, data={**settings, "clear_credentials": "yes"}).status_code == 302
    assert admin.get(f"{API}/spec-repos/specs").get_json()["auth"] is None
    assert "Remove the credentials" not in text_of(client.get(PAGE))  # none are kept: nothing to remove
    assert client.post(PAGE, data={**settings, "username": USER, "password": TOKEN}).status_code == 302
    assert admin.get(f"{API}/spec-repos/specs").get_json()["auth"] == "password"
    assert TOKEN not in client.get(PAGE).get_data(as_text=True)

    confirm = client.get(f"{PAGE}/delete")
    assert confirm.status_code == 200 and "workspace-editor at demo:storefront" in text_of(confirm)
    unconfirmed = client.post(f"{PAGE}/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box" in text_of(unconfirmed)
    assert admin.get(f"{API}/spec-repos/specs").status_code == 200
    deleted = client.post(f"{PAGE}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert deleted.status_code == 302 and deleted.location.endswith("/admin/spec-repos")
    assert 'Spec repository "specs" deleted' in flashed(client)
    assert admin.get(f"{API}/spec-repos/specs").status_code == 404 and client.get(PAGE).status_code == 404
    assert not any(b["subject"] == "specs" for b in admin.get(f"{API}/role-bindings").get_json()["role_bindings"])
    assert audit_actions(admin, 1) == [("spec_repo.delete", "admin", "specs")]


# --- the journey in a browser -------------------------------------------------------------------------


@dataclass
class SpecPlane:
    """A control plane served on loopback that trusts the test git server's certificate."""

    url: str
    admin: Api
    admin_password: str


@pytest.fixture
def live_plane(tmp_path, git_server):  # noqa: F811 - the browser's page opens this plane
    """The seeded control plane of the journeys (tests/browser.py), trusting the git server; no simulated
    cluster: a sync's versions are made and committed whether or not a cluster reports on them."""
    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'shipyard.db'}",
                                GIT_CA_BUNDLE=str(git_server.cert)))
    try:
        admin, _ = seed(app)
        assert admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 200
        with serving(app) as url:
            yield SpecPlane(url, admin, ADMIN_PASSWORD)
    finally:
        app.extensions["shipyard"].close()


@pytest.mark.slow
def test_journey_register_grant_sync_and_follow_a_version(page, live_plane, git_server, tmp_path, shot):  # noqa: F811
    url = git_server.new_repository("specs.git")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(git_server.root / "specs.git"), str(work))
    git(work, "checkout", "-q", "-b", "main")
    commit = push(work, {"deploy/shop.yaml": service_spec("shop"), "deploy/broken.yaml": BROKEN})
    login(page, "admin", live_plane.admin_password)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Spec repositories").click()
    page.get_by_role("link", name="Register a spec repository").click()
    page.get_by_label("Name", exact=True).fill("specs")
    page.get_by_label("Clone URL (https or ssh)").fill(url)
    page.get_by_label(re.compile("^Path globs")).fill("deploy/**/*.yaml")
    page.get_by_label("User name (https)").fill(USER)
    page.get_by_label("Password or token (https)").fill(TOKEN)
    page.get_by_role("button", name="Register").click()

    secret = page.get_by_label("the webhook secret")
    expect(secret).to_have_text(re.compile(r"^[A-Za-z0-9_-]{40,}$"))
    expect(page.get_by_label("the webhook URL")).to_have_text(re.compile(r"/hooks/default/specs$"))
    shown_secret = secret.inner_text()
    shot.desktop_and_phone(page, "registered")

    page.get_by_role("link", name="Grant it a role").click()
    grant_form = page.get_by_role("form", name="Grant a role")
    grant_form.get_by_role("combobox", name=re.compile("^Role")).select_option("workspace-editor")
    expect(grant_form.get_by_role("combobox", name=re.compile("^To a"))).to_have_value("repo")
    expect(page.get_by_label("Username, group or spec repository")).to_have_value("specs")
    page.get_by_label("Cluster", exact=True).fill("demo")
    page.get_by_label("Workspace", exact=True).fill("storefront")
    page.get_by_role("button", name="Grant").click()
    expect(page.locator(".flash")).to_contain_text("repo specs now holds workspace-editor at demo:storefront")

    page.goto("/admin/spec-repos")
    row = page.locator("#spec-repos tbody tr")
    expect(row.locator(".badge")).to_have_text("Never synced")
    row.get_by_role("link", name="specs").click()
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator(".flash")).to_contain_text("partly deployed")
    newest = page.locator("#spec-syncs tbody tr").first
    expect(newest.locator(".badge")).to_have_text("Partly deployed")
    expect(newest).to_contain_text(f"{commit[:12]} initial")
    expect(newest).to_contain_text("deploy/broken.yaml:5:1: ")
    expect(page.get_by_label("Sync state").locator(".badge")).to_have_text("Failing")
    assert shown_secret not in page.content()
    shot.desktop_and_phone(page, "synced")

    newest.get_by_role("link", name="demo:storefront/shop v1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("shop version 1")
    expect(page.locator("dl.facts")).to_contain_text(f"specs@{commit}")
    expect(page.locator("dl.facts")).to_contain_text("spec repository specs via spec-repo")

