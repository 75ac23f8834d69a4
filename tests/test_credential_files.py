"""Spec repository credentials read from files under CREDENTIAL_FILES_DIR (gitops.credential_files).

A tenant names files in its own directory only (nothing absolute, nothing climbing out, no
symlink leading out, no other tenant's); what they hold is checked when named, read again at
each fetch (a rotated token is used at once), never stored and never shown.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from contract.errors import InvalidRequest, RepoError
from gitops import credential_files, spec_repos
from gitops.models import SpecRepo, SpecSync
from tests.gitserver import TOKEN, USER, git, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import add_cluster, add_workspace, app_config, make_user, service_spec
from tests.test_spec_repos import API, bind, context, push, versions_of
from webapp import create_app


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "credentials"
    (root / "default").mkdir(parents=True)
    (root / "other").mkdir()
    return root


@pytest.fixture
def world(database_url, tmp_path, git_server, files):  # noqa: F811
    app = create_app(app_config(tmp_path / "data", database_url, GIT_CA_BUNDLE=str(git_server.cert),
                                CREDENTIAL_FILES_DIR=str(files)))
    admin = make_user(app, "admin", "tenant-admin")
    add_cluster(admin, "demo")
    add_workspace(admin, "demo", "storefront")
    assert admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 200
    url = git_server.new_repository("specs.git")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(git_server.root / "specs.git"), str(work))
    git(work, "checkout", "-q", "-b", "main")
    yield {"admin": admin, "url": url, "work": work, "app": app, "files": files}
    app.extensions["shipyard"].close()


def test_names_are_read_only_inside_the_tenants_own_directory(files, tmp_path):
    (files / "default" / "token").write_text(TOKEN + "\n")
    (files / "other" / "theirs").write_text("their-token")
    (tmp_path / "outside").write_text("not for tenants")
    (files / "default" / "escape").symlink_to(tmp_path / "outside")
    (files / "default" / "neighbour").symlink_to(files / "other" / "theirs")
    (files / "default" / "big").write_bytes(b"x" * (credential_files.MAX_BYTES + 1))
    (files / "default" / "empty").write_text("\n")
    (files / "default" / "folder").mkdir()
    os.mkfifo(files / "default" / "pipe")
    # Kubernetes' Secret volumes: <key> -> ..data/<key>, ..data -> ..<timestamp>: links inside are fine
    (files / "default" / "..2026_12_06").mkdir()
    (files / "default" / "..2026_12_06" / "mounted").write_text("mounted-token")
    (files / "default" / "..data").symlink_to("..2026_12_06")
    (files / "default" / "mounted").symlink_to("..data/mounted")

    assert credential_files.read_file(files, "default", "password_file", "token") == TOKEN
    assert credential_files.read_file(files, "default", "password_file", "mounted") == "mounted-token"
    refused = {"/etc/passwd": "without .. or a leading /", "../other/theirs": "without .. or a leading /",
               "escape": "leads out", "neighbour": "leads out", "missing": "no credential file",
               "big": "larger than 64 KiB", "empty": "is empty", "folder": "not a file", "pipe": "not a file",
               "": "is the name of a file",
               "a\\b": "is the name of a file"}
    for name, reason in refused.items():
        with pytest.raises(RepoError, match=reason) as caught:
            credential_files.read_file(files, "default", "password_file", name)
        assert "not for tenants" not in str(caught.value) and "their-token" not in str(caught.value)
    with pytest.raises(RepoError, match="CREDENTIAL_FILES_DIR"):
        credential_files.read_file(None, "default", "password_file", "token")


def test_a_token_file_is_read_at_each_fetch_and_never_stored_or_shown(world):
    token_file = world["files"] / "default" / "git-token"
    token_file.write_text(TOKEN + "\n")
    push(world["work"], {"deploy/web.yaml": service_spec("web")})
    ctx = context(world["app"])
    spec_repos.register(ctx, "specs", world["url"], globs=["deploy/**/*.yaml"],
                        credentials={"username": USER, "password_file": "git-token"})
    ctx.session.commit()
    bind(world)
    shown = world["admin"].get(f"{API}/spec-repos/specs").get_json()
    assert shown["auth"] == "password-file" and TOKEN not in str(shown)
    row = ctx.session.scalar(select(SpecRepo))
    assert TOKEN not in row.credentials and TOKEN not in ctx.repos.open_credentials(row.credentials).password
    assert ctx.repos.open_credentials(row.credentials).password_file == "git-token"

    run = spec_repos.sync(ctx, row, trigger="api", whole=True)
    assert run.state == "deployed", run.problems
    assert [v["source"] for v in versions_of(world, "web")] == ["spec-repo"]

    # rotated to a token the server refuses: the next fetch uses it, fails, says so without the token
    token_file.write_text("revoked-token-0000")
    push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    run = spec_repos.sync(ctx, row, trigger="api")
    assert run.state == "failed" and row.state == "failing"
    assert "revoked-token" not in str(run.problems) and "revoked-token" not in (row.last_error or "")
    token_file.unlink()
    run = spec_repos.sync(ctx, row, trigger="api")
    assert run.state == "failed" and 'no credential file "git-token"' in run.problems[0]["message"]
    token_file.write_text(TOKEN)
    run = spec_repos.sync(ctx, row, trigger="api")
    assert run.state == "deployed" and len(versions_of(world, "web")) == 2
    assert all("revoked-token" not in str(s.problems) for s in ctx.session.scalars(select(SpecSync)))
    ctx.session.close()


def test_naming_a_file_that_cannot_be_used_is_a_clear_400_and_keeps_nothing(world):
    (world["files"] / "other" / "theirs").write_text("their-token")
    (world["files"] / "default" / "not-a-key").write_text("hello")
    cases = [
        ({"username": USER, "password_file": "../other/theirs"}, "without .. or a leading /"),
        ({"username": USER, "password_file": "missing"}, 'no credential file "missing"'),
        ({"username": USER, "password": "x", "password_file": "missing"}, "give password or password_file"),
        ({"password_file": 7}, "each credential is a string"),
        ({"username": USER, "passwd_file": "x"}, "credentials take"),
    ]
    for credentials, reason in cases:
        answer = world["admin"].post(f"{API}/spec-repos", json={"name": "specs", "url": world["url"],
                                                                "credentials": credentials})
        assert answer.status_code == 400 and reason in answer.get_json()["error"]["message"], (credentials, answer.get_json())
        assert "their-token" not in answer.get_data(as_text=True)
    ssh = world["admin"].post(f"{API}/spec-repos", json={
        "name": "specs", "url": "ssh://git@127.0.0.1:2222/specs.git",
        "credentials": {"ssh_key_file": "not-a-key", "known_hosts": "127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"}})
    assert ssh.status_code == 400 and "not a private key" in ssh.get_json()["error"]["message"]
    assert world["admin"].get(f"{API}/spec-repos").get_json()["spec_repos"] == []


def test_a_server_without_a_credential_files_directory_reads_none(database_url, tmp_path, git_server):  # noqa: F811
    app = create_app(app_config(tmp_path / "data", database_url))
    try:
        admin = make_user(app, "admin", "tenant-admin")
        assert admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 200
        answer = admin.post(f"{API}/spec-repos", json={
            "name": "specs", "url": git_server.new_repository("specs.git"),
            "credentials": {"username": USER, "password_file": "token"}})
        assert answer.status_code == 400 and "CREDENTIAL_FILES_DIR" in answer.get_json()["error"]["message"]
        ctx = context(app)
        with ctx.session, pytest.raises(InvalidRequest):
            spec_repos.register(ctx, "specs", git_server.new_repository("more.git"),
                                credentials={"username": USER, "password_file": os.devnull})
    finally:
        app.extensions["shipyard"].close()
