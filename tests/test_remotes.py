"""Cluster git remotes: who may set one, where the control plane may connect, credentials, deletion.

Real parts throughout: a git server over TLS on loopback (real ``git http-backend``
behind a small Python server with basic auth and a throwaway self-signed
certificate made here), libgit2 through the egress gateway, a real sshd on
loopback where Debian's openssh-server is installed (skipped, saying so, where it
is not), and the git CLI cloning over /git. Where a test needs a name that DNS
does not know, the egress policy's name resolution (its seam) is a plain
function of the test.
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select, update

from gitops import egress
from gitops.credentials import CredentialsKey, password_credentials
from gitops.egress import EgressPolicy, parse_remote_url
from gitops.https_gateway import REDIRECTED, https_gateway, tls_context
from gitops.models import Cluster
from gitops.repo import ClusterRepo, Remote
from contract.errors import InvalidRequest, RepoError
from tests.gitserver import TOKEN, USER, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import (PROFILE, add_cluster, add_workspace, app_config, deploy_yaml, make_user,  # noqa: F401 - served
                         served, service_spec)
from webapp import create_app

API = "/api/v1"
# Words of libgit2's and the OS's own messages: an answer holding one turns the API into a port scanner.
LEAKY = ("status code", "unexpected http status", "errno", "connection refused", "failed to connect",
         "proxy returned", "timed out", "name or service", "ssl", "tls error")


@pytest.fixture
def plane_app(database_url, tmp_path, git_server):
    """The control plane trusting the test server's certificate (GIT_CA_BUNDLE)."""
    app = create_app(app_config(tmp_path / "data", database_url, GIT_CA_BUNDLE=str(git_server.cert)))
    yield app
    app.extensions["shipyard"].close()


def allow_loopback(admin) -> None:
    response = admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]})
    assert response.status_code == 200, response.get_json()


def cluster_row(app, name: str) -> Cluster:
    with app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(Cluster).where(Cluster.name == name))


def message(response) -> str:
    return response.get_json()["error"]["message"]


# --- the finding: a cluster-admin pointed a remote at another cluster's repository -------------------


def test_a_cluster_admin_cannot_push_into_another_clusters_repository(plane_app, admin):
    add_cluster(admin, "victim")
    add_workspace(admin, "victim", "storefront")
    assert deploy_yaml(admin, service_spec("web", cluster="victim")).status_code == 200
    add_cluster(admin, "attacker")
    victim = Path(cluster_row(plane_app, "victim").repo_path)
    before = subprocess.run(["git", "-C", str(victim), "log", "--format=%H %s", "main"], capture_output=True,
                            text=True, check=True).stdout
    mallory = make_user(plane_app, "mallory", "cluster-admin", cluster="attacker")

    for url in (str(victim), f"file://{victim}", f"{victim}/../victim.git"):
        response = mallory.patch(f"{API}/clusters/attacker", json={"remote_url": url})
        assert response.status_code == 403, response.get_json()
        assert "tenant-admin" in message(response)
        # nor may a tenant-admin: a local path is never a remote of the server
        response = admin.patch(f"{API}/clusters/attacker", json={"remote_url": url})
        assert response.status_code == 400, response.get_json()
        assert "https://host/path, ssh://user@host/path or user@host:path" in message(response)
    assert mallory.get(f"{API}/clusters/attacker").get_json()["remote_url"] is None

    add_workspace(mallory, "attacker", "loot")
    assert deploy_yaml(mallory, service_spec("web", workspace="loot", cluster="attacker")).status_code == 200
    after = subprocess.run(["git", "-C", str(victim), "log", "--format=%H %s", "main"], capture_output=True,
                           text=True, check=True).stdout
    assert after == before
    assert "loot" not in subprocess.run(["git", "-C", str(victim), "ls-tree", "-r", "--name-only", "main"],
                                        capture_output=True, text=True, check=True).stdout


# --- which URLs and hosts ------------------------------------------------------------------------


HOSTILE = [
    "/srv/shipyard/data/repos/default/victim.git",
    "../victim.git",
    "file:///srv/shipyard/data/repos/default/victim.git",
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "git://127.0.0.1/victim.git",
    "http://example.com/repo.git",
    "http://2130706433/repo.git",
    "ftp://example.com/repo.git",
    "https://127.0.0.1/repo.git",
    "https://localhost/repo.git",
    "https://[::1]/repo.git",
    "https://10.1.2.3/repo.git",
    "https://192.168.0.10/repo.git",
    "https://172.16.0.1/repo.git",
    "https://169.254.169.254/latest/meta-data",
    "https://[fd00:ec2::254]/repo.git",
    "https://[fe80::1]/repo.git",
    "https://100.64.0.1/repo.git",
    "https://0.0.0.0/repo.git",
    "https://224.0.0.1/repo.git",
    "https://2130706433/repo.git",
    "https://0x7f.1/repo.git",
    "https://017700000001/repo.git",
    "https://127.1/repo.git",
    "https://[::ffff:127.0.0.1]/repo.git",
    "https://[::ffff:7f00:1]/repo.git",
    "https://[64:ff9b::7f00:1]/repo.git",
    "ssh://git@127.0.0.1/repo.git",
    "git@10.0.0.1:repo.git",
    "ssh://git@127.0.0.1/-oProxyCommand=touch%20/tmp/pwned",
    "https://127.0.0.1:1/repo.git?x=1",
]


def test_hostile_remote_urls_are_refused(plane_app, admin, git_server):
    add_cluster(admin)
    here = git_server.new_repository()
    for url in [*HOSTILE, here, here.replace("127.0.0.1", "localhost")]:
        response = admin.patch(f"{API}/clusters/demo", json={"remote_url": url})
        assert response.status_code == 400, (url, response.get_json())
        text = message(response)
        assert "remote_url" in text, (url, text)
        assert not any(word in text.lower() for word in LEAKY), (url, text)
        if "localhost" in url:
            assert "127.0.0.1" not in text  # what a name resolved to is never told
    # the same at creation
    for url in ("https://169.254.169.254/latest/meta-data", here, "file:///etc"):
        response = admin.post(f"{API}/clusters", json={"name": "made", "profile": PROFILE.replace("name: demo",
                                                                                                  "name: made"),
                                                       "remote_url": url})
        assert response.status_code == 400, (url, response.get_json())
    assert admin.get(f"{API}/clusters/made").status_code == 404
    assert admin.get(f"{API}/clusters/demo").get_json()["remote_url"] is None
    assert git_server.requests == []  # nothing was connected to


def test_refused_urls_name_what_is_allowed(plane_app, admin):
    add_cluster(admin)
    for url, words in (("git://example.com/r.git", "git://"), ("http://example.com/r.git", "http://"),
                       ("/tmp/r.git", "local path"), ("https://169.254.169.254/r", "egress policy"),
                       ("https://0x7f.1/r.git", "numeric host"), ("ssh://example.com/r.git", "ssh login")):
        text = message(admin.patch(f"{API}/clusters/demo", json={"remote_url": url}))
        assert words in text, (url, text)
        assert "https://host/path, ssh://user@host/path or user@host:path" in text or words == "egress policy"


def test_the_parser_sees_what_libgit2_would():
    url, userinfo = parse_remote_url("https://x-access-token:t%40k@Git.Example.com:8443/org/repo.git")
    assert (url.scheme, url.host, url.port, url.path) == ("https", "git.example.com", 8443, "/org/repo.git")
    assert str(url) == "https://git.example.com:8443/org/repo.git" and userinfo == ("x-access-token", "t@k")
    url, userinfo = parse_remote_url("git@github.com:org/repo.git")
    assert (url.scheme, url.host, url.port, url.user, userinfo) == ("ssh", "github.com", 22, "git", None)
    assert url.at_address(ipaddress.ip_address("140.82.112.3")) == "git@140.82.112.3:org/repo.git"
    url, _ = parse_remote_url("ssh://git@[2001:db8::7]:2222/srv/repo.git")
    assert url.at_address(ipaddress.ip_address("2001:db8::7")) == "ssh://git@[2001:db8::7]:2222/srv/repo.git"
    for text in ("https://a b/", "https://example.com/r.git#x", "ssh://git:pw@example.com/r.git", "git@host:-x"):
        with pytest.raises(InvalidRequest):
            parse_remote_url(text)


def test_the_policy_judges_every_address_and_what_the_tenant_allows():
    answers = {"mixed.test": ["140.82.112.3", "10.0.0.8"], "inside.test": ["10.1.2.3"],
               "public.test": ["140.82.112.3", "2606:50c0:8000::153"], "mapped.test": ["::ffff:10.1.2.3"]}
    policy = EgressPolicy((), resolve=lambda host, port: answers[host])
    assert [str(a) for a in policy.addresses("public.test", 443)] == ["140.82.112.3", "2606:50c0:8000::153"]
    for host in ("mixed.test", "inside.test", "mapped.test"):  # one private address is enough to refuse
        with pytest.raises(RepoError, match="refused by the egress policy") as err:
            policy.addresses(host, 443)
        assert "10." not in str(err.value)
    allowed = EgressPolicy(tuple(egress.allowed_hosts(["Inside.Test.", "10.0.0.0/16"])), resolve=policy.resolve)
    assert [str(a) for a in allowed.addresses("inside.test", 443)] == ["10.1.2.3"]  # by name
    assert [str(a) for a in allowed.addresses("mixed.test", 443)] == ["140.82.112.3", "10.0.0.8"]  # by range
    assert [str(a) for a in allowed.addresses("10.0.255.1", 443)] == ["10.0.255.1"]
    with pytest.raises(RepoError, match="egress policy"):
        allowed.addresses("mapped.test", 443)  # 10.1.2.3 is outside 10.0.0.0/16 and the name is not listed
    with pytest.raises(RepoError, match="could not connect"):
        EgressPolicy(()).addresses("no-such-host.invalid", 443)
    for entry in ("*.example.com", "10.0.0.0/33", "2130706433", "", "a b"):
        with pytest.raises(InvalidRequest):
            egress.allowed_hosts([entry])


def test_no_allow_list_opens_the_cloud_metadata_service():
    """On a server shared by tenants, a tenant-admin cannot point it at its own cloud credentials."""
    answers = {"meta.test": ["169.254.169.254"], "meta6.test": ["fd00:ec2::254"], "mapped.test": ["::ffff:169.254.169.254"]}
    everything = EgressPolicy(tuple(egress.allowed_hosts(["0.0.0.0/0", "::/0", "meta.test", "meta6.test", "mapped.test"])),
                              resolve=lambda host, port: answers[host])
    for host in (*answers, "169.254.169.254", "100.100.100.200"):
        with pytest.raises(RepoError, match="refused by the egress policy"):
            everything.addresses(host, 443)
    assert [str(a) for a in everything.addresses("10.9.8.7", 443)] == ["10.9.8.7"]
    for entry in ("169.254.169.254", "169.254.0.0/16", "fe80::1", "fd00:ec2::254"):
        with pytest.raises(InvalidRequest, match="link-local or cloud metadata"):
            egress.allowed_hosts([entry])


# --- who may set a remote --------------------------------------------------------------------------


def test_only_a_tenant_admin_sets_a_remote_or_the_hosts_it_may_reach(plane_app, admin, git_server):
    add_cluster(admin)
    url = git_server.new_repository()
    operator = make_user(plane_app, "operator", "cluster-admin", cluster="demo")
    for body in ({"remote_url": url}, {"remote_url": url, "remote_username": USER, "remote_password": TOKEN},
                 {"remote_password": TOKEN}, {"remote_url": None}, {"profile": PROFILE, "remote_url": url}):
        response = operator.patch(f"{API}/clusters/demo", json=body)
        assert response.status_code == 403, (body, response.get_json())
    assert operator.patch(f"{API}/clusters/demo", json={"profile": PROFILE}).status_code == 200
    assert operator.get(f"{API}/tenant").status_code == 403
    assert operator.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]}).status_code == 403

    assert admin.get(f"{API}/tenant").get_json() == {"name": "default", "remote_allowed_hosts": []}
    response = admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["127.0.0.1", "10.0.0.0/8", "Git.Test."]})
    assert response.get_json()["remote_allowed_hosts"] == ["127.0.0.1", "10.0.0.0/8", "git.test"]
    assert admin.patch(f"{API}/tenant", json={"remote_allowed_hosts": ["*"]}).status_code == 400
    assert admin.patch(f"{API}/tenant", json={"colour": "blue"}).status_code == 400
    response = admin.patch(f"{API}/clusters/demo", json={"remote_url": url, "remote_username": USER,
                                                        "remote_password": TOKEN})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["remote_auth"] == "password"
    events = admin.get(f"{API}/audit").get_json()["events"]
    assert {"tenant.update", "cluster.update"} <= {e["action"] for e in events}
    # and back to none: the credentials go with the remote
    response = admin.patch(f"{API}/clusters/demo", json={"remote_url": None})
    assert response.get_json()["remote_url"] is None and response.get_json()["remote_auth"] is None
    assert cluster_row(plane_app, "demo").remote_credentials is None


# --- pushing over https, credentials kept apart -------------------------------------------------------


def test_a_deploy_is_pushed_over_https_with_sealed_credentials(plane_app, admin, git_server, caplog):
    url = git_server.new_repository()
    allow_loopback(admin)
    pasted = url.replace("https://", f"https://{USER}:{TOKEN}@")  # as people paste them
    response = admin.post(f"{API}/clusters", json={"name": "demo", "profile": PROFILE, "remote_url": pasted})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["remote_url"] == url and response.get_json()["remote_auth"] == "password"
    add_workspace(admin, "demo", "storefront")
    (version,) = deploy_yaml(admin, service_spec("web")).get_json()["versions"]
    assert git_server.git("remote.git", "rev-parse", "main") == version["commit"]
    files = git_server.git("remote.git", "ls-tree", "-r", "--name-only", "main").split()
    assert "apps/storefront/web.yaml" in files and any(f.startswith("workspaces/storefront/web/") for f in files)

    row = cluster_row(plane_app, "demo")
    assert row.remote_url == url and TOKEN not in row.remote_credentials and row.remote_auth == "password"
    viewer = make_user(plane_app, "viewer", "cluster-viewer", cluster="demo")
    for who, path in ((viewer, f"{API}/clusters/demo"), (viewer, f"{API}/clusters"), (admin, f"{API}/clusters/demo"),
                      (admin, f"{API}/clusters"), (admin, f"{API}/audit?limit=1000")):
        assert TOKEN not in who.get(path).get_data(as_text=True), path
    created = next(e for e in admin.get(f"{API}/audit").get_json()["events"] if e["action"] == "cluster.create")
    assert created["detail"]["remote_url"] == url

    # a wrong password is refused when set, plainly, and the password is not repeated
    wrong = "not-the-token-0815"
    response = admin.patch(f"{API}/clusters/demo", json={"remote_url": url, "remote_username": USER,
                                                        "remote_password": wrong})
    assert response.status_code == 400
    assert "did not accept the credentials" in message(response) and wrong not in message(response)
    assert not any(word in message(response).lower() for word in LEAKY)
    # ... and when the server stops taking them, a deploy waits for the reconciler, logged in the same words
    git_server.password = "rotated"
    with caplog.at_level(logging.INFO):
        response = deploy_yaml(admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    (version,) = response.get_json()["versions"]
    assert version["state"] == "pending" and TOKEN not in response.get_data(as_text=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("did not accept the credentials" in text for text in warnings)
    assert not any(TOKEN in r.getMessage() or "rotated" in r.getMessage() for r in caplog.records)


def test_a_name_is_connected_to_at_the_address_the_policy_checked(tmp_path, git_server):
    """libgit2 never looks the name up: the gateway connects to what the policy's resolver answered."""
    git_server.new_repository()
    url = f"https://git.test:{git_server.port}/remote.git"  # a name no DNS knows
    looked_up = []

    def resolve(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return ["127.0.0.1"] if host == "git.test" else []

    policy = EgressPolicy(("git.test",), resolve=resolve, tls=tls_context(str(git_server.cert)))
    repo = ClusterRepo(tmp_path / "local.git", remote=Remote(url, password_credentials(USER, TOKEN), policy))
    result = repo.commit(lambda snapshot: {"hello.txt": b"hello\n"}, "Hello")
    assert result.pushed and git_server.git("remote.git", "rev-parse", "main") == result.commit_id
    assert looked_up and set(looked_up) == {("git.test", git_server.port)}


def test_dns_rebinding_is_refused_by_the_proxy(tmp_path, git_server):
    """Public when the remote is set, loopback when libgit2 connects: the gateway checks again and refuses."""
    git_server.new_repository()
    answers = iter([["140.82.112.3"], ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    policy = EgressPolicy((), resolve=rebinding, tls=tls_context(str(git_server.cert)))
    assert [str(a) for a in policy.addresses("git.test", git_server.port)] == ["140.82.112.3"]  # when set
    repo = ClusterRepo(tmp_path / "local.git", remote=Remote(f"https://git.test:{git_server.port}/remote.git",
                                                              password_credentials(USER, TOKEN), policy))
    with pytest.raises(RepoError) as err:
        repo.fetch()
    assert "refused by the egress policy" in str(err.value)
    assert not any(word in str(err.value).lower() for word in LEAKY)
    assert git_server.requests == []


def test_the_gateway_forwards_only_git_requests_for_the_remote(git_server):
    policy = EgressPolicy(("git.test",), resolve=lambda host, port: ["127.0.0.1"],
                          tls=tls_context(str(git_server.cert)))
    remote, _ = parse_remote_url(f"https://git.test:{git_server.port}/remote.git")

    def ask(gateway_url: str, request: bytes) -> bytes:
        port = int(gateway_url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer

    with https_gateway(remote, policy) as gateway:
        assert gateway.url == f"http://127.0.0.1:{gateway.url.split(':')[2].split('/')[0]}/remote.git"
        for request in (b"CONNECT git.test:%d HTTP/1.1\r\n\r\n" % git_server.port,
                        b"CONNECT elsewhere.test:443 HTTP/1.1\r\n\r\n",
                        b"GET http://elsewhere.test/remote.git/info/refs HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n",
                        b"GET /other.git/info/refs HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"DELETE /remote.git/info/refs HTTP/1.1\r\nHost: x\r\n\r\n"):
            assert ask(gateway.url, request).startswith(b"HTTP/1.1 403 Forbidden"), request
        assert git_server.requests == []
        answer = ask(gateway.url, b"GET /remote.git/info/refs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Connection: keep-alive\r\n\r\n")
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.0 401") or head.startswith(b"http/1.1 401")  # the server itself answered
        assert b"connection: close" in head and b"keep-alive" not in head
    assert git_server.requests == [("GET", "/remote.git/info/refs")]

    # a redirect is not passed on: libgit2 would follow it wherever it points
    moved, _ = parse_remote_url(f"https://git.test:{git_server.port}/moved.git")
    with https_gateway(moved, policy) as gateway:
        answer = ask(gateway.url, b"GET /moved.git/info/refs HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 502") and b"Location" not in answer
        assert gateway.failure == REDIRECTED


def test_an_untrusted_certificate_is_refused_plainly(tmp_path, git_server):
    git_server.new_repository()
    policy = EgressPolicy(("127.0.0.1",))  # the system's CAs only: the test server's certificate is not among them
    repo = ClusterRepo(tmp_path / "local.git", remote=Remote(f"https://127.0.0.1:{git_server.port}/remote.git",
                                                              password_credentials(USER, TOKEN), policy))
    with pytest.raises(RepoError) as err:
        repo.fetch()
    assert "TLS certificate is not trusted" in str(err.value) and git_server.requests == []


# --- credentials at rest ------------------------------------------------------------------------------


def test_credentials_are_sealed_and_open_only_with_their_key():
    key = CredentialsKey.from_settings(None, "the secret key")
    sealed = key.seal(password_credentials(USER, TOKEN))
    assert TOKEN not in sealed and USER not in sealed and TOKEN not in repr(key.open(sealed))
    assert key.open(sealed).password == TOKEN
    for other in (CredentialsKey.from_settings(None, "another secret key"),
                  CredentialsKey.from_settings("x" * 32, "the secret key")):
        with pytest.raises(RepoError, match="CREDENTIALS_KEY"):
            other.open(sealed)
    with pytest.raises(RepoError):
        key.open(sealed[:-4] + "AAAA")  # tampered
    with pytest.raises(ValueError):
        CredentialsKey.from_settings("too short", "the secret key")


def test_credentials_stored_in_old_urls_are_sealed_at_start(plane_app, admin, git_server, tmp_path, database_url):
    """Rows from before credentials were kept apart: moved into sealed storage once, never shown, not lost."""
    url = git_server.new_repository()
    allow_loopback(admin)
    add_cluster(admin)
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        session.execute(update(Cluster).where(Cluster.name == "demo").values(
            remote_url=url.replace("https://", f"https://{USER}:{TOKEN}@")))
    assert admin.get(f"{API}/clusters/demo").get_json()["remote_url"] == url  # redacted even before

    for _ in range(2):  # a second start changes nothing
        restarted = create_app(app_config(tmp_path / "data", database_url, GIT_CA_BUNDLE=str(git_server.cert)))
        restarted.extensions["shipyard"].close()
        row = cluster_row(plane_app, "demo")
        assert row.remote_url == url and row.remote_auth == "password" and TOKEN not in row.remote_credentials
    opened = CredentialsKey.from_settings(None, "test-secret-key").open(row.remote_credentials)
    assert (opened.username, opened.password) == (USER, TOKEN)
    add_workspace(admin, "demo", "storefront")  # the sealed credentials still push
    assert git_server.git("remote.git", "ls-tree", "-r", "--name-only", "main").count("storefront") >= 1


# --- deleting a cluster ---------------------------------------------------------------------------------


def test_a_cluster_created_again_starts_from_an_empty_repository(plane_app, admin, served, tmp_path):
    first = add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    assert deploy_yaml(admin, service_spec("web")).status_code == 200
    old_history = subprocess.run(["git", "-C", str(Path(cluster_row(plane_app, "demo").repo_path)), "log",
                                  "--format=%H", "main"], capture_output=True, text=True, check=True).stdout.split()

    response = admin.delete(f"{API}/clusters/demo")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["deleted"] == "demo" and body["repository"] == "archived"
    archive = Path(plane_app.config["DATA_DIR"]) / body["archive"]
    assert body["archive"].startswith("repos/default/.archive/demo-") and archive.is_dir()
    assert subprocess.run(["git", "-C", str(archive), "log", "--format=%H", "main"], capture_output=True, text=True,
                          check=True).stdout.split() == old_history
    deleted = next(e for e in admin.get(f"{API}/audit").get_json()["events"] if e["action"] == "cluster.delete")
    assert deleted["detail"]["archive"] == body["archive"]

    second = add_cluster(admin)
    clone = tmp_path / "clone"
    git_url = served.replace("http://", f"http://x:{second['read_token']}@") + "/git/default/demo.git"
    subprocess.run(["git", "clone", "-q", git_url, str(clone)], check=True, capture_output=True)
    log = subprocess.run(["git", "-C", str(clone), "log", "--format=%H"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert len(log) == 1 and not set(log) & set(old_history)
    assert not (clone / "workspaces").exists() and (clone / "bootstrap").is_dir()
    old_token_url = git_url.replace(second["read_token"], first["read_token"])
    refused = subprocess.run(["git", "ls-remote", old_token_url], capture_output=True, text=True,
                             env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert refused.returncode != 0


def test_a_repository_left_at_the_path_is_archived_not_inherited(plane_app, admin):
    data = Path(plane_app.config["DATA_DIR"])
    leftover = data / "repos" / "default" / "demo.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(leftover)], check=True)
    work = data.parent / "work"
    subprocess.run(["git", "clone", "-q", str(leftover), str(work)], check=True, capture_output=True)
    (work / "secret.txt").write_text("from an older cluster\n")
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=old", "-c", "user.email=old@x", "commit", "-qm", "old"],
                   check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True, capture_output=True)

    add_cluster(admin)
    repo = ClusterRepo(leftover)
    assert len(repo.log()) == 1 and repo.snapshot().read("secret.txt") is None
    (archived,) = (data / "repos" / "default" / ".archive").iterdir()
    assert archived.name.startswith("demo-") and archived.name.endswith("-leftover.git")
    assert ClusterRepo(archived).snapshot().read("secret.txt") == b"from an older cluster\n"


def test_a_refused_creation_leaves_no_repository(plane_app, admin):
    response = admin.post(f"{API}/clusters", json={"name": "demo", "profile": PROFILE,
                                                   "remote_url": "https://10.0.0.1/repo.git"})
    assert response.status_code == 400
    assert not (Path(plane_app.config["DATA_DIR"]) / "repos" / "default" / "demo.git").exists()


# --- ssh, against a real sshd on loopback ---------------------------------------------------------------


def _keypair() -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


@pytest.fixture
def sshd(tmp_path):
    """sshd on 127.0.0.1 letting this user in with a fresh key; skipped where there is no sshd."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        # The README's test command installs it, so CI never skips this
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "no sshd here (Debian's openssh-server): the ssh remote is tested where it is installed")
    directory = tmp_path / "sshd"
    directory.mkdir()
    host_private, host_public = _keypair()
    client_private, client_public = _keypair()
    (directory / "host_key").write_text(host_private)
    (directory / "host_key").chmod(0o600)
    (directory / "authorized_keys").write_text(client_public + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (directory / "config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory}/host_key\nPidFile {directory}/sshd.pid\n"
        f"AuthorizedKeysFile {directory}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = open(directory / "log", "w")
    process = subprocess.Popen([binary, "-D", "-e", "-f", str(directory / "config")], stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-2.0"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"sshd did not start: {(directory / 'log').read_text()[-300:]}")
        time.sleep(0.05)
    yield {"port": port, "user": getpass.getuser(), "host_key": host_public, "client_key": client_private,
           "root": tmp_path}
    process.terminate()
    process.wait(timeout=10)
    log.close()


def test_a_deploy_is_pushed_over_ssh_with_the_host_key_pinned(plane_app, admin, sshd):
    remote = sshd["root"] / "over-ssh.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    url = f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{remote}"
    known_hosts = f"[127.0.0.1]:{sshd['port']} {sshd['host_key']}\n"
    allow_loopback(admin)
    base = {"name": "demo", "profile": PROFILE, "remote_url": url, "remote_ssh_key": sshd["client_key"]}

    response = admin.post(f"{API}/clusters", json=base)  # no host key given: never trusted blindly
    assert response.status_code == 400 and "remote_known_hosts" in message(response)
    _, stranger = _keypair()
    response = admin.post(f"{API}/clusters", json={**base, "remote_known_hosts": f"127.0.0.1 {stranger}"})
    assert response.status_code == 400 and "host key is not one of remote_known_hosts" in message(response)
    _, not_ours = _keypair()
    other_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    response = admin.post(f"{API}/clusters", json={**base, "remote_ssh_key": other_key,
                                                   "remote_known_hosts": known_hosts})
    assert response.status_code == 400 and "did not accept the credentials" in message(response)

    response = admin.post(f"{API}/clusters", json={**base, "remote_known_hosts": known_hosts})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["remote_auth"] == "ssh-key" and response.get_json()["remote_url"] == url
    assert "PRIVATE KEY" not in admin.get(f"{API}/clusters/demo").get_data(as_text=True)
    add_workspace(admin, "demo", "storefront")
    (version,) = deploy_yaml(admin, service_spec("web")).get_json()["versions"]
    tip = subprocess.run(["git", "-C", str(remote), "rev-parse", "main"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert tip == version["commit"]


def test_a_passphrase_protected_openssh_key_is_used_as_ssh_keygen_writes_it(plane_app, admin, sshd):
    key_file = sshd["root"] / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(key_file)], check=True)
    authorized = sshd["root"] / "sshd" / "authorized_keys"
    authorized.write_text(authorized.read_text() + (sshd["root"] / "id_ed25519.pub").read_text())
    remote = sshd["root"] / "over-ssh.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    allow_loopback(admin)
    body = {"name": "demo", "profile": PROFILE, "remote_url": f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{remote}",
            "remote_ssh_key": key_file.read_text(),
            "remote_known_hosts": f"[127.0.0.1]:{sshd['port']} {sshd['host_key']}"}
    response = admin.post(f"{API}/clusters", json={**body, "remote_ssh_passphrase": "wrong"})
    assert response.status_code == 400 and "pass phrase" not in message(response)
    response = admin.post(f"{API}/clusters", json={**body, "remote_ssh_passphrase": "pass phrase"})
    assert response.status_code == 201, response.get_json()


# --- CLUSTER_REMOTE_REQUIRED: replicas that share no repository volume -----------------------------------

def test_with_the_remote_required_replicas_without_a_shared_volume_lose_no_commit(database_url, tmp_path, git_server):
    """Two replicas, one database, each its own data directory (a pod's emptyDir): every cluster must have a
    remote, and deploys through either replica all land on it."""
    replicas = [create_app(app_config(tmp_path / f"data-{n}", database_url, GIT_CA_BUNDLE=str(git_server.cert),
                                      CLUSTER_REMOTE_REQUIRED=True)) for n in "ab"]
    try:
        first = make_user(replicas[0], "admin", "tenant-admin")
        second = make_user(replicas[1], "ops", "tenant-admin")
        allow_loopback(first)
        response = first.post(f"{API}/clusters", json={"name": "demo", "profile": PROFILE})
        assert response.status_code == 400 and "CLUSTER_REMOTE_REQUIRED" in message(response)
        url = git_server.new_repository()
        response = first.post(f"{API}/clusters", json={"name": "demo", "profile": PROFILE, "remote_url": url,
                                                       "remote_username": USER, "remote_password": TOKEN})
        assert response.status_code == 201, response.get_json()
        add_workspace(first, "demo", "storefront")
        response = second.patch(f"{API}/clusters/demo", json={"remote_url": None})
        assert response.status_code == 400 and "give remote_url" in message(response)

        commits = []
        for api, name in ((first, "web"), (second, "api"), (first, "worker"), (second, "web")):
            image = "ghcr.io/acme/web:2.0" if (api, name) == (second, "web") else "ghcr.io/acme/web:1.0"
            (version,) = deploy_yaml(api, service_spec(name, image=image)).get_json()["versions"]
            assert version["state"] == "committed", version
            commits.append(version["commit"])
        assert git_server.git("remote.git", "rev-parse", "main") == commits[-1]
        history = git_server.git("remote.git", "rev-list", "main").split()
        assert all(commit in history for commit in commits)
        files = git_server.git("remote.git", "ls-tree", "-r", "--name-only", "main").split()
        assert {"apps/storefront/web.yaml", "apps/storefront/api.yaml", "apps/storefront/worker.yaml"} <= set(files)
        deployment = git_server.git("remote.git", "show", "main:workspaces/storefront/web/deployment-web.yaml")
        assert "ghcr.io/acme/web:2.0" in deployment
    finally:
        for app in replicas:
            app.extensions["shipyard"].close()
