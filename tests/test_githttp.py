"""webapp.githttp against the real git CLI, over a real HTTP server on loopback.

Each test gets a bare repository with a few commits (made with the git CLI,
as Shipyard's own repositories are plain bare repositories), a tiny Flask app
with the blueprint and a dict of read tokens, and a werkzeug server in a
thread. Every request the app answers is recorded, so the tests can check
what git saw (401, 403, gzip bodies, the protocol version), not only that a
git command failed.
"""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import flask
import httpx
import pytest
from werkzeug.serving import make_server

from webapp.githttp import MAX_REQUEST_BYTES, git_http_blueprint

TOKEN = "read-token-acme-demo"
OTHER_TOKEN = "read-token-acme-other"


@dataclass
class Served:
    base: str                      # http://127.0.0.1:PORT/git
    bare: Path                     # the served repository (acme/demo)
    work: Path                     # a working clone that pushes into ``bare`` on disk
    git: Callable[..., subprocess.CompletedProcess]
    requests: list[dict] = field(default_factory=list)

    def url(self, token: str | None = TOKEN, repo: str = "acme/demo") -> str:
        authority = self.base.replace("http://", f"http://x:{token}@") if token is not None else self.base
        return f"{authority}/{repo}.git"

    def commit(self, name: str, content: str | bytes) -> str:
        """Commit a file in the working clone and push it into the bare repository, bypassing HTTP."""
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        self.git("add", name, cwd=self.work)
        self.git("commit", "-q", "-m", f"add {name}", cwd=self.work)
        self.git("push", "-q", str(self.bare), "HEAD:main", cwd=self.work)
        return self.git("rev-parse", "HEAD", cwd=self.work).stdout.strip()

    def statuses(self, method: str, path_end: str) -> list[int]:
        return [r["status"] for r in self.requests if r["method"] == method and r["path"].endswith(path_end)]


@pytest.fixture
def served(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # An empty HOME and no terminal prompt: no credential helper or prompt
    # can rescue a clone the server refused.
    environment = {
        "PATH": os.environ["PATH"], "HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com", "LC_ALL": "C",
    }

    def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result

    bare = tmp_path / "repos" / "acme" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))

    tokens = {("acme", "demo", TOKEN): bare, ("acme", "other", OTHER_TOKEN): tmp_path / "repos" / "acme" / "other.git"}

    def resolve(owner: str, repo: str, password: str | None) -> Path | None:
        return tokens.get((owner, repo, password))

    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024  # the blueprint sets its own bound for git bodies
    app.register_blueprint(git_http_blueprint(resolve))
    recorded: list[dict] = []

    @app.after_request
    def record(response):
        recorded.append({
            "method": flask.request.method, "path": flask.request.path, "service": flask.request.args.get("service"),
            "status": response.status_code, "git_protocol": flask.request.headers.get("Git-Protocol"),
            "content_encoding": flask.request.headers.get("Content-Encoding"),
        })
        return response

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    result = Served(base=f"http://127.0.0.1:{server.server_port}/git", bare=bare, work=work, git=git,
                    requests=recorded)
    result.commit("apps/web/deployment.yaml", "kind: Deployment\n")
    result.commit("apps/web/service.yaml", "kind: Service\n")
    result.commit("README.md", "cluster repo\n")
    try:
        yield result
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def tree(git, repo: Path, rev: str) -> str:
    return git("-C", str(repo), "ls-tree", "-r", rev).stdout


def refs(git, repo: Path) -> str:
    return git("-C", str(repo), "for-each-ref", "--format=%(objectname) %(refname)").stdout


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def v2_fetch_request(oid: str) -> bytes:
    return pkt(b"command=fetch\n") + b"0001" + pkt(f"want {oid}\n".encode()) + pkt(b"no-progress\n") \
        + pkt(b"done\n") + b"0000"


V2 = {"Git-Protocol": "version=2", "Content-Type": "application/x-git-upload-pack-request"}


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_gives_exactly_the_files(served, tmp_path, version):
    clone = tmp_path / "clone"
    served.git("-c", f"protocol.version={version}", "clone", "-q", served.url(), str(clone))

    assert tree(served.git, clone, "HEAD") == tree(served.git, served.bare, "main")
    assert sorted(p.relative_to(clone).as_posix() for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts) \
        == ["README.md", "apps/web/deployment.yaml", "apps/web/service.yaml"]
    protocols = {r["git_protocol"] for r in served.requests}
    assert protocols == ({"version=2"} if version == "2" else {None})
    # Git asks without credentials first and sends the ones in the URL after the 401.
    assert served.statuses("GET", "/info/refs")[-1] == 200
    assert set(served.statuses("GET", "/info/refs")) <= {401, 200}
    assert served.statuses("POST", "/git-upload-pack") and set(served.statuses("POST", "/git-upload-pack")) == {200}


@pytest.mark.parametrize("version", ["0", "2"])
def test_fetch_gets_a_new_commit(served, tmp_path, version):
    clone = tmp_path / "clone"
    served.git("-c", f"protocol.version={version}", "clone", "-q", served.url(), str(clone))
    new = served.commit("apps/jobs/cron.yaml", "kind: CronJob\n")

    served.git("-C", str(clone), "-c", f"protocol.version={version}", "fetch", "-q", "origin")

    assert served.git("-C", str(clone), "rev-parse", "origin/main").stdout.strip() == new
    assert tree(served.git, clone, "origin/main") == tree(served.git, served.bare, "main")


def test_ls_remote_lists_the_refs(served):
    served.git("-C", str(served.work), "tag", "v1")
    served.git("-C", str(served.work), "push", "-q", str(served.bare), "v1")

    for version in ("0", "2"):
        remote = served.git("-c", f"protocol.version={version}", "ls-remote", served.url()).stdout
        assert remote == served.git("ls-remote", str(served.bare)).stdout
        assert "refs/tags/v1" in remote


def test_advertisement_framing_follows_the_protocol_version(served):
    v0 = httpx.get(f"{served.base}/acme/demo.git/info/refs?service=git-upload-pack", auth=("x", TOKEN))
    assert v0.status_code == 200
    assert v0.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert "no-cache" in v0.headers["cache-control"]
    assert v0.content.startswith(b"001e# service=git-upload-pack\n0000")
    assert b"refs/heads/main" in v0.content

    v2 = httpx.get(f"{served.base}/acme/demo.git/info/refs?service=git-upload-pack", auth=("x", TOKEN),
                   headers={"Git-Protocol": "version=2"})
    assert v2.status_code == 200
    assert v2.content.startswith(b"000eversion 2\n")
    assert b"ls-refs" in v2.content and b"# service" not in v2.content


@pytest.mark.parametrize("token", ["wrong-token", OTHER_TOKEN, None])
def test_clone_without_the_right_token_fails_with_401(served, tmp_path, caplog, token):
    caplog.set_level(logging.DEBUG)
    clone = tmp_path / "clone"
    result = served.git("clone", "-q", served.url(token), str(clone), check=False)

    assert result.returncode != 0
    assert not (clone / "README.md").exists()
    assert served.statuses("GET", "/info/refs") and set(served.statuses("GET", "/info/refs")) == {401}
    assert served.statuses("POST", "/git-upload-pack") == []
    assert "git read of acme/demo refused" in caplog.text
    if token is not None:
        assert token not in caplog.text


def test_401_is_the_same_whether_or_not_the_repository_exists(served):
    answers = []
    for repo, auth in [("acme/demo", ("x", "wrong")), ("acme/nope", ("x", TOKEN)), ("ghost/demo", None)]:
        response = httpx.get(f"{served.base}/{repo}.git/info/refs?service=git-upload-pack", auth=auth)
        answers.append((response.status_code, response.headers["www-authenticate"], response.text))
        post = httpx.post(f"{served.base}/{repo}.git/git-upload-pack", auth=auth, headers=V2,
                          content=v2_fetch_request("0" * 40))
        answers.append((post.status_code, post.headers["www-authenticate"], post.text))

    assert {a[:2] for a in answers} == {(401, 'Basic realm="shipyard"')}
    assert len({a[2] for a in answers}) == 1
    assert TOKEN not in answers[0][2]


def test_push_is_refused_and_the_repository_is_unchanged(served, tmp_path):
    clone = tmp_path / "clone"
    served.git("clone", "-q", served.url(), str(clone))
    (clone / "evil.yaml").write_text("kind: Pod\n")
    served.git("-C", str(clone), "add", "evil.yaml")
    served.git("-C", str(clone), "commit", "-q", "-m", "sneak in")
    before_refs = refs(served.git, served.bare)
    before_objects = sorted(p.name for p in (served.bare / "objects").rglob("*") if p.is_file())

    result = served.git("-C", str(clone), "push", "origin", "HEAD:main", check=False)

    assert result.returncode != 0
    assert "403" in result.stderr
    assert served.statuses("GET", "/info/refs")[-1] == 403
    assert [r["service"] for r in served.requests if r["status"] == 403] == ["git-receive-pack"]
    assert refs(served.git, served.bare) == before_refs
    assert sorted(p.name for p in (served.bare / "objects").rglob("*") if p.is_file()) == before_objects

    direct = httpx.post(f"{served.base}/acme/demo.git/git-receive-pack", auth=("x", TOKEN), content=b"0000",
                        headers={"Content-Type": "application/x-git-receive-pack-request"})
    assert direct.status_code == 403
    assert "read-only: Shipyard writes it" in direct.text


def test_dumb_http_and_other_services_are_refused(served):
    dumb = httpx.get(f"{served.base}/acme/demo.git/info/refs", auth=("x", TOKEN))
    assert dumb.status_code == 403
    assert "smart HTTP" in dumb.text
    other = httpx.get(f"{served.base}/acme/demo.git/info/refs?service=git-upload-archive", auth=("x", TOKEN))
    assert other.status_code == 403
    assert "read-only" in other.text
    # Files of the repository are not served as such.
    assert httpx.get(f"{served.base}/acme/demo.git/HEAD", auth=("x", TOKEN)).status_code == 404


def test_git_sends_gzip_bodies_when_there_are_many_wants(served, tmp_path):
    # Git compresses a request body over 1 KiB: 40 branches on 40 commits make
    # the clone's want list about 2 KiB.
    for index in range(40):
        served.git("-C", str(served.work), "commit", "-q", "--allow-empty", "-m", f"c{index}")
        served.git("-C", str(served.work), "branch", f"b{index}")
    served.git("-C", str(served.work), "push", "-q", str(served.bare), "--all")

    for version in ("0", "2"):
        served.requests.clear()
        clone = tmp_path / f"clone{version}"
        served.git("-c", f"protocol.version={version}", "clone", "-q", served.url(), str(clone))

        assert refs(served.git, clone).count("refs/remotes/origin/b") == 40
        gzipped = [r for r in served.requests if r["content_encoding"] == "gzip"]
        assert gzipped and {r["status"] for r in gzipped} == {200}


def test_crafted_gzip_and_chunked_requests(served, tmp_path):
    main = served.git("-C", str(served.bare), "rev-parse", "main").stdout.strip()
    url = f"{served.base}/acme/demo.git/git-upload-pack"

    compressed = httpx.post(url, auth=("x", TOKEN), headers={**V2, "Content-Encoding": "gzip"},
                            content=gzip.compress(v2_fetch_request(main)))
    assert compressed.status_code == 200
    assert compressed.headers["content-type"] == "application/x-git-upload-pack-result"
    assert_pack_holds_main(served, tmp_path / "from-gzip.git", compressed.content)

    # No Content-Length: the body arrives with Transfer-Encoding: chunked, as git sends large ones.
    chunked = httpx.post(url, auth=("x", TOKEN), headers=V2, content=iter([v2_fetch_request(main)]))
    assert chunked.status_code == 200
    assert_pack_holds_main(served, tmp_path / "from-chunked.git", chunked.content)


def assert_pack_holds_main(served, repo: Path, response: bytes) -> None:
    """Take the pack out of a v2 fetch response and check that it holds the whole of ``main``."""
    pack, position, in_packfile = bytearray(), 0, False
    while position < len(response):
        length = int(response[position:position + 4], 16)
        if length < 4:  # flush/delim packets
            position += 4
            continue
        payload = response[position + 4:position + length]
        position += length
        if in_packfile and payload[:1] == b"\x01":  # side-band channel 1: pack data
            pack += payload[1:]
        in_packfile = in_packfile or payload == b"packfile\n"
    assert pack.startswith(b"PACK")
    served.git("init", "-q", "--bare", str(repo))
    subprocess.run(["git", "-C", str(repo), "index-pack", "--stdin", "--fix-thin"], input=bytes(pack), check=True,
                   capture_output=True)
    main = served.git("-C", str(served.bare), "rev-parse", "main").stdout.strip()
    assert tree(served.git, repo, main) == tree(served.git, served.bare, main)


def test_bad_bodies_get_short_text_errors(served):
    url = f"{served.base}/acme/demo.git/git-upload-pack"
    auth = ("x", TOKEN)

    bomb = gzip.compress(b"0" * (MAX_REQUEST_BYTES + 1))
    assert len(bomb) < 64 * 1024
    too_big = httpx.post(url, auth=auth, headers={**V2, "Content-Encoding": "gzip"}, content=bomb)
    assert too_big.status_code == 413 and too_big.headers["content-type"].startswith("text/plain")

    plain_too_big = httpx.post(url, auth=auth, headers=V2, content=b"0" * (MAX_REQUEST_BYTES + 1))
    assert plain_too_big.status_code == 413

    not_gzip = httpx.post(url, auth=auth, headers={**V2, "Content-Encoding": "gzip"}, content=b"0000")
    assert not_gzip.status_code == 400 and "gzip" in not_gzip.text

    truncated = httpx.post(url, auth=auth, headers={**V2, "Content-Encoding": "gzip"},
                           content=gzip.compress(b"0000" * 100)[:-10])
    assert truncated.status_code == 400

    wrong_type = httpx.post(url, auth=auth, headers={"Content-Type": "application/json"}, content=b"{}")
    assert wrong_type.status_code == 415

    # A request git rejects: an error status or an error inside the protocol, never a traceback.
    garbage = httpx.post(url, auth=auth, headers=V2, content=b"this is not pkt-line")
    assert "Traceback" not in garbage.text


def test_a_broken_repository_is_a_500_not_a_truncated_answer(served, tmp_path):
    served.bare.rename(tmp_path / "moved.git")

    response = httpx.get(f"{served.base}/acme/demo.git/info/refs?service=git-upload-pack", auth=("x", TOKEN))

    assert response.status_code == 500
    assert response.text == "the repository could not be read\n"


def _processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` (upload-pack and its pack-objects)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory:
                    found.append(int(entry.name))
            except OSError:
                pass  # gone, a zombie, or not ours
    return found


def _zombie_children() -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                zombies.append(int(entry.name))
    return zombies


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_a_client_going_away_mid_pack_stops_git(served, caplog):
    caplog.set_level(logging.INFO, logger="webapp.githttp")
    # Random bytes do not compress: a pack far larger than the socket and pipe
    # buffers, so git is still writing when the client hangs up.
    # (Stored and sent without compression: it would not shrink, and zlib would only slow the test.)
    for repo in (served.work, served.bare):
        served.git("-C", str(repo), "config", "core.compression", "0")
    main = served.commit("big.bin", os.urandom(32 * 1024 * 1024))
    bare = served.bare.resolve()

    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{served.base}/acme/demo.git/git-upload-pack", auth=("x", TOKEN),
                           headers=V2, content=v2_fetch_request(main)) as response:
            assert response.status_code == 200
            next(response.iter_raw())
            assert _processes_in(bare), "git should still be sending the pack"

    deadline = time.monotonic() + 15
    while (_processes_in(bare) or _zombie_children()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(bare) == []
    assert _zombie_children() == []
    # Killed because the client left, not by the guard against a git that hangs after its output.
    assert "stopped: the client went away" in caplog.text
    assert "killed: still running" not in caplog.text
