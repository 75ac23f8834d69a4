"""Commit statuses after a spec repository's sync (gitops.commit_status), end to end.

The provider's API is played by a real HTTPS server on loopback: the git server of
tests/gitserver.py, whose POSTs below an API's path (``ProviderApi.PATHS``) are answered
here and recorded, since a provider serves its API on the host of its repositories. The
control plane trusts its certificate through GIT_CA_BUNDLE, as it does for fetches, and the
tenant allows 127.0.0.1 in its egress policy.

==========================================  ================================================
what                                        what is asserted
==========================================  ================================================
each self-hostable provider (GitHub         its endpoint, its authentication header with the
Enterprise, GitLab, Gitea, Bitbucket        repository's token, the state, context or key,
Server), the repository on its port         description and link of a good sync
github.com and Bitbucket Cloud              their fixed API hosts; Bitbucket Cloud's request
                                            sent to the loopback API to read it back
a spec file with problems, a rewritten      failure naming the first file:line; error; the
history, a sync with nothing new            same said again posts nothing
off, then a provider through PATCH          nothing posted, then a status
an API answering 500, 401 echoing the       recorded on the sync as failed, the sync itself
token, a redirect, or nothing at all        deployed and committed before the status is
                                            posted; a hanging API costs at most TIMEOUT
a host the egress policy refuses            no connection made, the refusal recorded
an ssh repository                           no status, said once in the sync's record
==========================================  ================================================

Throughout, the token appears in no sync row, no API answer and no log line.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import select

from gitops import commit_status, egress
from gitops.commit_status import NoStatus, Pending, Verdict
from gitops.models import SpecRepo, SpecSync
from gitops.push_hooks import Provider
from gitops.remote import RemoteCredentials
from tests.gitserver import TOKEN, USER, git, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import add_cluster, add_workspace, make_user, served, service_spec  # noqa: F401 - served: a fixture
from tests.test_remotes import sshd  # noqa: F401 - a fixture
from tests.test_spec_repos import plane_app, push  # noqa: F401 - plane_app: a fixture
from tests.test_spec_repos_api import shipyard

API = "/api/v1"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LINK = "http://127.0.0.1:8080/admin/spec-repos/specs"  # PUBLIC_URL's default
BROKEN = service_spec("broken").replace("ports:", "portz:")  # line 5, column 1


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lowercase names
    body: dict


class ProviderApi:
    """POSTs below a provider API's path, on the git server's port: recorded, then answered as set.

    ``mode`` is "answer" (``status`` and ``reply``), "redirect" (302 to another API path) or "hang"
    (no answer until the test ends); ``on_request`` runs as each request arrives.
    """

    PATHS = ("/api/v3/", "/api/v4/", "/api/v1/", "/rest/build-status/", "/2.0/repositories/")

    def __init__(self, server):
        self.received: list[Received] = []
        self.mode, self.status, self.reply = "answer", 201, b'{"id": 1}'
        self.on_request = None
        self.released = threading.Event()
        self.origin = f"https://127.0.0.1:{server.port}"
        api = self

        class Handler(server.httpd.RequestHandlerClass):
            def do_POST(self):
                if self.path.startswith(ProviderApi.PATHS):
                    api.serve(self)
                else:
                    super().do_POST()

        server.httpd.RequestHandlerClass = Handler

    def serve(self, handler) -> None:
        body = handler.body()
        self.received.append(Received(handler.path, {k.lower(): v for k, v in handler.headers.items()},
                                      json.loads(body) if body else {}))
        if self.on_request is not None:
            self.on_request()
        if self.mode == "hang":
            self.released.wait(timeout=60)
            handler.close_connection = True
            return
        status, reply, extra = self.status, self.reply, []
        if self.mode == "redirect":
            status, reply, extra = 302, b"", [("Location", f"{self.origin}/api/v3/elsewhere")]
        handler.send_response(status)
        for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(reply))), *extra]:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply)


@pytest.fixture
def api(git_server):  # noqa: F811
    played = ProviderApi(git_server)
    yield played
    played.released.set()


@pytest.fixture
def scene(plane_app, git_server, api, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    admin = make_user(plane_app, "admin", "tenant-admin")
    add_cluster(admin, "demo")
    add_workspace(admin, "demo", "storefront")
    assert admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 200
    return Scene(plane_app, admin, git_server, api, tmp_path)


@dataclass
class Scene:
    app: object
    admin: object
    server: object
    api: ProviderApi
    tmp_path: Path

    def repository(self, path: str, *, commit_status: str = "auto") -> Path:
        """A repository served over https at ``path``, registered as "specs" with the token; its work tree."""
        (self.server.root / path).parent.mkdir(parents=True, exist_ok=True)
        self.server.new_repository(path)
        self.register(f"https://127.0.0.1:{self.server.port}/{path}", commit_status,
                      {"username": USER, "password": TOKEN})
        return self.work_tree(self.server.root / path)

    def work_tree(self, bare: Path) -> Path:
        work = self.tmp_path / "work"
        git(self.tmp_path, "clone", "-q", str(bare), str(work))
        git(work, "checkout", "-q", "-b", "main")
        return work

    def register(self, url: str, commit_status: str, credentials: dict) -> None:
        """Register "specs" at ``url`` and bind it to deploy into demo:storefront."""
        response = self.admin.post(f"{API}/spec-repos", json={
            "name": "specs", "url": url, "globs": ["deploy/**/*.yaml"], "commit_status": commit_status,
            "credentials": credentials})
        assert response.status_code == 201, response.get_json()
        response = self.admin.post(f"{API}/role-bindings", json={
            "role": "workspace-editor", "subject_kind": "repo", "subject": "specs", "cluster": "demo",
            "workspace": "storefront"})
        assert response.status_code == 201, response.get_json()

    def sync(self, **body) -> dict:
        response = self.admin.post(f"{API}/spec-repos/specs/sync", json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def assert_no_token(self, caplog) -> None:
        """The token is in no sync row, no API answer and no log line, in clear or as Basic credentials."""
        basic = base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        with self.app.extensions["shipyard"].sessions() as session:
            rows = json.dumps([run.commit_status for run in session.scalars(select(SpecSync))])
        answers = "".join(self.admin.get(f"{API}{path}").get_data(as_text=True)
                          for path in ("/spec-repos", "/spec-repos/specs", "/spec-repos/specs/syncs"))
        for text in (rows, answers, caplog.text):
            assert TOKEN not in text and basic not in text


PROVIDERS = {
    # provider: (repository path, the API path it is posted to, its authentication header, the body but its link)
    "github": ("acme/specs.git", "/api/v3/repos/acme/specs/statuses/{sha}", ("authorization", f"Bearer {TOKEN}"),
               {"state": "success", "context": "shipyard/specs", "description": "deployed: 1 new version(s)"}),
    "gitlab": ("group/sub/specs.git", "/api/v4/projects/group%2Fsub%2Fspecs/statuses/{sha}",
               ("private-token", TOKEN),
               {"state": "success", "name": "shipyard/specs", "description": "deployed: 1 new version(s)"}),
    "gitea": ("acme/specs.git", "/api/v1/repos/acme/specs/statuses/{sha}", ("authorization", f"token {TOKEN}"),
              {"state": "success", "context": "shipyard/specs", "description": "deployed: 1 new version(s)"}),
    "bitbucket-server": ("scm/acme/specs.git", "/rest/build-status/1.0/commits/{sha}",
                         ("authorization", "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()),
                         {"key": "shipyard/specs", "state": "SUCCESSFUL", "name": "shipyard/specs",
                          "description": "deployed: 1 new version(s)"}),
}
LINK_FIELD = {"github": "target_url", "gitlab": "target_url", "gitea": "target_url", "bitbucket-server": "url"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_is_sent_its_own_request_with_the_repositorys_token(scene, provider, caplog):
    path, endpoint, (header, value), fields = PROVIDERS[provider]
    work = scene.repository(path, commit_status=provider)
    tip = push(work, {"deploy/web.yaml": service_spec("web")})
    run = scene.sync()
    assert run["state"] == "deployed"
    assert run["commit_status"] == {"provider": provider, "commit": tip, "state": "success",
                                    "description": "deployed: 1 new version(s)", "outcome": "posted",
                                    "detail": "HTTP 201"}
    (received,) = scene.api.received
    assert received.path == endpoint.format(sha=tip)
    assert received.headers[header] == value and received.headers["content-type"] == "application/json"
    assert received.headers["host"] == f"127.0.0.1:{scene.server.port}"
    assert received.body == {**fields, LINK_FIELD[provider]: LINK}
    shown = scene.admin.get(f"{API}/spec-repos/specs").get_json()
    assert (shown["commit_status"], shown["commit_status_provider"], shown["webhook_provider"]) == \
        (provider, provider, None)
    scene.assert_no_token(caplog)


def test_github_com_and_bitbucket_cloud_have_their_own_api_hosts(scene):
    said = Verdict("failure", "x" * 300)
    token = RemoteCredentials("password", username="ci", password="t0ken")
    github, _ = egress.parse_remote_url("https://github.com/acme/specs.git")
    request = commit_status.status_request(Provider.GITHUB, github, COMMIT, said, "shipyard/specs", LINK, token)
    assert request.url == f"https://api.github.com/repos/acme/specs/statuses/{COMMIT}"
    assert request.headers["Authorization"] == "Bearer t0ken" and len(request.body["description"]) == 140
    assert "t0ken" not in repr(request)
    assert commit_status.provider_for(_repo("https://github.com/acme/specs.git")) is Provider.GITHUB
    assert commit_status.provider_for(_repo("https://git.example.com/acme/specs.git")) is None
    assert commit_status.provider_for(_repo("https://git.example.com/a/s.git", provider="gitea")) is Provider.GITEA
    assert commit_status.provider_for(_repo("https://github.com/a/s.git", mode="off")) is None

    long_name = "shipyard/" + "a-spec-repository-with-a-rather-long-name"
    cloud, _ = egress.parse_remote_url("https://bitbucket.org/acme/specs.git")
    app_password = commit_status.status_request(Provider.BITBUCKET_CLOUD, cloud, COMMIT, said, long_name, LINK,
                                                token)
    assert app_password.url == f"https://api.bitbucket.org/2.0/repositories/acme/specs/commit/{COMMIT}/statuses/build"
    assert app_password.headers["Authorization"] == "Basic " + base64.b64encode(b"ci:t0ken").decode()
    assert len(app_password.body["key"]) == 40 and app_password.body["name"] == long_name
    access_token = commit_status.status_request(Provider.BITBUCKET_CLOUD, cloud, COMMIT, said, long_name, LINK,
                                                replace(token, username="x-token-auth"))
    assert access_token.headers["Authorization"] == "Bearer t0ken"
    with pytest.raises(NoStatus, match="link"):
        commit_status.status_request(Provider.BITBUCKET_CLOUD, cloud, COMMIT, said, "shipyard/specs", None, token)
    with pytest.raises(NoStatus, match="owner"):
        commit_status.status_request(Provider.GITHUB, egress.parse_remote_url("https://github.com/specs.git")[0],
                                     COMMIT, said, "shipyard/specs", LINK, token)

    # Bitbucket Cloud's request as the loopback API receives it
    at_loopback = replace(access_token, url=access_token.url.replace("https://api.bitbucket.org", scene.api.origin))
    policy = scene.app.extensions["shipyard"].repos.policy(["127.0.0.1"])
    record = commit_status.post(Pending({"provider": "bitbucket-cloud", "commit": COMMIT, "state": "failure",
                                         "description": "x" * 300}, at_loopback, policy))
    assert (record["outcome"], record["detail"]) == ("posted", "HTTP 201")
    (received,) = scene.api.received
    assert received.path == f"/2.0/repositories/acme/specs/commit/{COMMIT}/statuses/build"
    assert received.headers["authorization"] == "Bearer t0ken"
    assert received.body == {"key": access_token.body["key"], "state": "FAILED", "name": long_name, "url": LINK,
                             "description": "x" * 254 + "…"}


def test_what_a_sync_says_of_its_commit():
    def said(state: str, problems=(), versions=(), relation: str = "fast-forward") -> tuple[str, str]:
        verdict = commit_status.verdict(SpecSync(state=state, problems=list(problems), versions=list(versions),
                                                 relation=relation))
        return verdict.state, verdict.description

    problem = {"file": "deploy/a.yaml", "line": 3, "column": 1, "message": "bad"}
    assert said("deployed", versions=[{"unchanged": False}, {"unchanged": True}]) == \
        ("success", "deployed: 1 new version(s)")
    assert said("unchanged", versions=[{"unchanged": True}]) == ("success", "in sync: nothing new to deploy")
    assert said("partial", [problem, problem, {**problem, "file": "deploy/b.yaml"}]) == \
        ("failure", "2 spec file(s) with problems: deploy/a.yaml:3")
    assert said("failed", [{"file": "", "line": 0, "column": 0, "message": "no cluster"}]) == \
        ("failure", "1 problem(s): no cluster")
    assert said("refused", [{"message": "moved"}], relation="rewritten")[1].startswith("not deployed: the branch's")
    assert said("refused", [{"file": "", "message": "it holds no role binding"}]) == \
        ("error", "not deployed: it holds no role binding")


def _repo(url: str, mode: str = "auto", provider: str | None = None) -> SpecRepo:
    return SpecRepo(url=url, commit_status=mode, provider=provider)


def test_problems_are_a_failure_a_rewritten_history_an_error_and_nothing_is_said_twice(scene, caplog):
    work = scene.repository("acme/specs.git", commit_status="github")
    first = push(work, {"deploy/web.yaml": service_spec("web"), "deploy/broken.yaml": BROKEN})
    run = scene.sync()
    assert run["state"] == "partial"
    assert scene.api.received[-1].body["state"] == "failure"
    assert scene.api.received[-1].body["description"] == "1 spec file(s) with problems: deploy/broken.yaml:5"
    assert run["commit_status"]["commit"] == first and run["commit_status"]["outcome"] == "posted"

    again = scene.sync()  # nothing new: the last status said it all
    assert again["state"] == "unchanged" and again["commit_status"] is None and len(scene.api.received) == 1

    fixed = push(work, {"deploy/broken.yaml": service_spec("broken")})
    assert scene.sync()["commit_status"]["state"] == "success"
    assert scene.api.received[-1].path.endswith(f"/statuses/{fixed}")

    git(work, "reset", "-q", "--hard", "HEAD~1")
    rewritten = push(work, {"deploy/api.yaml": service_spec("api")}, force=True)
    refused = scene.sync()
    assert refused["state"] == "refused" and refused["commit_status"]["state"] == "error"
    assert scene.api.received[-1].path.endswith(f"/statuses/{rewritten}")
    assert scene.api.received[-1].body["state"] == "error" and "rewritten" in scene.api.received[-1].body["description"]
    scene.assert_no_token(caplog)


def test_off_posts_nothing_until_a_provider_is_set(scene):
    work = scene.repository("acme/specs.git", commit_status="off")
    push(work, {"deploy/web.yaml": service_spec("web")})
    run = scene.sync()
    assert run["state"] == "deployed" and run["commit_status"] is None and scene.api.received == []
    assert scene.admin.get(f"{API}/spec-repos/specs").get_json()["commit_status_provider"] is None

    refused = scene.admin.patch(f"{API}/spec-repos/specs", json={"commit_status": "jenkins"})
    assert refused.status_code == 400 and "commit_status is one of auto, off" in refused.get_json()["error"]["message"]
    changed = scene.admin.patch(f"{API}/spec-repos/specs", json={"commit_status": "gitea"})
    assert changed.status_code == 200 and changed.get_json()["commit_status_provider"] == "gitea"
    event = scene.admin.get(f"{API}/audit").get_json()["events"][0]
    assert (event["action"], event["detail"]) == ("spec_repo.update", {"commit_status": "gitea"})
    tip = push(work, {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    assert scene.sync()["commit_status"]["outcome"] == "posted"
    assert [r.path for r in scene.api.received] == [f"/api/v1/repos/acme/specs/statuses/{tip}"]


ANSWERS = {
    # mode and answer: what the sync's record says
    "500": (("answer", 500, b'{"message": "boom"}'), "the API answered HTTP 500"),
    "401 echoing the token": (("answer", 401, f'{{"message": "Bad credentials", "got": "Bearer {TOKEN}"}}'.encode()),
                              "the API answered HTTP 401: the token was not accepted"),
    "redirect": (("redirect", 0, b""), "the API answered HTTP 302, a redirect, which is not followed"),
    "hang": (("hang", 0, b""), f"the API did not answer within {commit_status.TIMEOUT:g} s"),
}


@pytest.mark.parametrize("answer", ANSWERS)
def test_an_api_that_fails_is_recorded_and_breaks_no_sync(scene, answer, caplog):
    (mode, status, reply), detail = ANSWERS[answer]
    scene.api.mode, scene.api.status, scene.api.reply = mode, status, reply
    committed_before_the_post: list[tuple[str, str | None]] = []
    arrived: list[float] = []

    def look():  # as the request arrives: the sync and its version are committed already
        arrived.append(time.monotonic())
        with scene.app.extensions["shipyard"].read_sessions() as session:
            run = session.scalars(select(SpecSync)).one()
            committed_before_the_post.append((run.state, run.commit_status))

    scene.api.on_request = look
    work = scene.repository("acme/specs.git", commit_status="github")
    push(work, {"deploy/web.yaml": service_spec("web")})
    run = scene.sync()
    answered = time.monotonic()
    assert run["state"] == "deployed" and [v["app"] for v in run["versions"]] == ["demo:storefront/web"]
    assert (run["commit_status"]["outcome"], run["commit_status"]["detail"]) == ("failed", detail)
    assert committed_before_the_post == [("deployed", None)]
    assert len(scene.api.received) == 1  # no redirect followed, no retry
    assert answered - arrived[0] < commit_status.TIMEOUT + 2
    assert scene.admin.get(f"{API}/spec-repos/specs").get_json()["state"] == "synced"
    scene.assert_no_token(caplog)


def test_the_egress_policy_decides_where_a_status_may_go(scene, caplog):
    said = Verdict("success", "deployed")
    token = RemoteCredentials("password", username=USER, password=TOKEN)
    loopback, _ = egress.parse_remote_url(f"{scene.api.origin}/acme/specs.git")
    request = commit_status.status_request(Provider.GITEA, loopback, COMMIT, said, "shipyard/specs", LINK, token)
    unallowed = scene.app.extensions["shipyard"].repos.policy([])
    record = commit_status.post(Pending({"provider": "gitea", "commit": COMMIT, "state": "success",
                                         "description": "deployed"}, request, unallowed))
    assert record["outcome"] == "failed" and egress.REFUSED in record["detail"] and scene.api.received == []

    # Bitbucket Cloud's API host, resolving to a private address: refused, the sync deployed all the same
    scene.app.extensions["shipyard"].repos.resolve = lambda host, port: ["10.20.30.40"]
    work = scene.repository("acme/specs.git", commit_status="bitbucket-cloud")
    push(work, {"deploy/web.yaml": service_spec("web")})
    run = scene.sync()
    assert run["state"] == "deployed" and run["commit_status"]["outcome"] == "failed"
    assert run["commit_status"]["detail"] == f'cannot reach the remote host "api.bitbucket.org": {egress.REFUSED}'
    scene.assert_no_token(caplog)


def test_an_ssh_repository_gets_no_status_and_is_told_so_once(scene, sshd, tmp_path):  # noqa: F811
    bare = sshd["root"] / "specs.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    scene.register(f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{bare}", "github",
                   {"ssh_key": sshd["client_key"], "known_hosts": f"[127.0.0.1]:{sshd['port']} {sshd['host_key']}"})
    tip = push(scene.work_tree(bare), {"deploy/web.yaml": service_spec("web")})
    run = scene.sync()
    assert run["state"] == "deployed" and run["new"] == tip
    assert run["commit_status"]["outcome"] == "skipped" and "ssh deploy key" in run["commit_status"]["detail"]
    assert scene.sync(whole=True)["commit_status"] is None  # said once for the commit
    assert scene.api.received == []


@pytest.mark.slow
def test_the_repo_commands_set_and_show_commit_statuses(scene, served, tmp_path):  # noqa: F811
    ops = make_user(scene.app, "ops", "cluster-admin", cluster="demo")

    def run(*args: str, stdin: str | None = None):
        return shipyard(served, ops.token, *args, home=tmp_path / "home", stdin=stdin)

    (scene.server.root / "acme").mkdir()
    scene.server.new_repository("acme/specs.git")
    url = f"https://127.0.0.1:{scene.server.port}/acme/specs.git"
    refused = run("repo", "register", "specs", url, "--commit-status", "jenkins")
    assert refused.returncode == 1 and "commit_status is one of auto, off, github" in refused.stderr, refused.stderr
    made = run("repo", "register", "specs", url, "--glob", "deploy/**/*.yaml", "--commit-status", "github",
               "--username", USER, "--password-stdin", stdin=f"{TOKEN}\n")
    assert made.returncode == 0, made.stderr
    assert scene.admin.post(f"{API}/role-bindings", json={
        "role": "workspace-editor", "subject_kind": "repo", "subject": "specs", "cluster": "demo",
        "workspace": "storefront"}).status_code == 201
    push(scene.work_tree(scene.server.root / "acme" / "specs.git"), {"deploy/web.yaml": service_spec("web")})
    scene.api.status = 403
    synced = run("repo", "sync", "specs")
    assert synced.returncode == 0, synced.stderr
    assert "commit status success on github failed: the API answered HTTP 403" in synced.stderr

    status = run("repo", "status", "specs")
    assert status.returncode == 0, status.stderr
    assert [line.split() for line in status.stdout.splitlines() if line.startswith("commit statuses")] == \
        [["commit", "statuses", "github"]]
    assert "success not posted" in status.stdout and "commit status success on github failed" in status.stdout
    listed = run("repos")
    assert listed.returncode == 0 and "COMMIT STATUSES" in listed.stdout and " github " in listed.stdout
    for shown in (synced.stderr, status.stdout, listed.stdout, run("repo", "status", "specs", "-o", "json").stdout):
        assert TOKEN not in shown
