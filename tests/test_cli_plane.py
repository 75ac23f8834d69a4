"""The control plane's command line as people and CI use it: real processes on loopback.

``shipyard up`` runs as a subprocess on a free port with a temporary data
directory; the client commands run as subprocesses against it, with their
credentials under a temporary XDG_CONFIG_HOME; the demo repository is cloned
with the real ``git``. ``shipyard serve`` runs gunicorn against SQLite and a
throwaway PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from renderer.spec import load_spec_files

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "fixtures" / "specs"
STARTUP_LIMIT = 180.0  # seconds; only a bound on waiting for a server that never comes up

# Every app of the examples, as "<workspace>/<app>".
EXAMPLE_APPS = {f"{spec.workspace}/{spec.name}" for spec in load_spec_files([SPECS])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(config_home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k == "SHIPYARD_CRD_SCHEMAS"}
    return {**env, "XDG_CONFIG_HOME": str(config_home), "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra}


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /healthz:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class Embedded:
    url: str
    data: Path
    config_home: Path
    process: subprocess.Popen
    banner: str
    log: Path

    @property
    def password(self) -> str:
        return re.search(r"^  password\s+(\S+)$", self.banner, re.MULTILINE).group(1)

    @property
    def clone_url(self) -> str:
        return re.search(r"git clone (\S+)", self.banner).group(1)

    def cli(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", *args], input=stdin, capture_output=True,
                              text=True, cwd=ROOT, env=clean_env(self.config_home, **env))


def start_up(data: Path, config_home: Path, log: Path) -> Embedded:
    """``shipyard up`` in a subprocess; returns once it answers /healthz, with what it printed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--data", str(data), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=log.open("ab"), text=True, cwd=ROOT, env=clean_env(config_home))
    lines = []
    for line in process.stdout:  # everything up to this line is printed before serving
        lines.append(line)
        if line.startswith("Shipyard is running at"):
            break
    embedded = Embedded(url, data, config_home, process, "".join(lines), log)
    wait_healthy(url, process, log)
    return embedded


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    base = tmp_path_factory.mktemp("up")
    embedded = start_up(base / "data", base / "config", base / "server.log")
    yield embedded
    stop(embedded.process)


@pytest.fixture(scope="module")
def logged_in(plane):
    """The plane, with the CLI logged in as admin through `shipyard login`."""
    result = plane.cli("login", "--url", plane.url, stdin=f"admin\n{plane.password}\n")
    assert result.returncode == 0, result.stderr
    return plane


def stored_token(config_home: Path) -> str:
    """The token of the current context `shipyard login` stored."""
    stored = json.loads((config_home / "shipyard" / "credentials.json").read_text())
    return stored["contexts"][stored["current"]]["token"]


def api(plane: Embedded) -> httpx.Client:
    return httpx.Client(base_url=plane.url, headers={"Authorization": f"Bearer {stored_token(plane.config_home)}"},
                        timeout=60)


# --- shipyard up ------------------------------------------------------------------------------------


def test_first_start_prints_how_to_log_in_and_stores_only_the_hash(plane):
    assert "First start" in plane.banner
    assert f"log in at  {plane.url}/login" in plane.banner
    assert re.search(r"^  username\s+admin$", plane.banner, re.MULTILINE)
    assert len(plane.password) >= 12
    assert plane.clone_url.startswith("http://x:") and plane.clone_url.endswith(
        f"@127.0.0.1:{plane.url.rsplit(':', 1)[1]}/git/default/demo.git")
    with sqlite3.connect(plane.data / "shipyard.db") as connection:
        rows = connection.execute("SELECT username, password_hash FROM user_account").fetchall()
    assert [name for name, _ in rows] == ["admin"]
    assert rows[0][1] and plane.password not in rows[0][1]
    for path in plane.data.rglob("*"):  # neither the password nor the read token is kept anywhere
        if path.is_file():
            data = path.read_bytes()
            assert plane.password.encode() not in data, path
            assert plane.clone_url.split(":")[2].split("@")[0].encode() not in data, path


def test_first_start_deploys_every_example(plane):
    for app in EXAMPLE_APPS:
        assert f"demo:{app} v1 committed" in plane.banner


def test_the_embedded_demo_serves_metrics_without_a_token(plane):
    """`up` sets METRICS_PUBLIC (serve does not: tests/test_metrics.py), and its deploys are counted."""
    response = httpx.get(f"{plane.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert 'shipyard_deploys_total{outcome="committed"}' in response.text


def test_git_clone_with_the_printed_read_token_shows_the_examples(plane, tmp_path):
    clone = tmp_path / "demo"
    result = subprocess.run(["git", "clone", "-q", plane.clone_url, str(clone)], capture_output=True, text=True)
    assert result.returncode == 0, "git clone failed"
    found = {f"{ws.name}/{app.name}" for ws in (clone / "workspaces").iterdir() for app in ws.iterdir()
             if app.is_dir()}
    assert EXAMPLE_APPS <= found
    assert {ws.name for ws in (clone / "workspaces").iterdir()} == {a.split("/")[0] for a in EXAMPLE_APPS}
    assert (clone / "bootstrap" / "root.yaml").is_file()
    # ArgoCD is pointed at this server, on the port it was started with (not a default's 8080)
    served = f"{plane.url}/git/default/demo.git"
    for path in (clone / "bootstrap" / "root.yaml", clone / "apps" / "storefront" / "web.yaml"):
        assert yaml.safe_load(path.read_text())["spec"]["source"]["repoURL"] == served, path
    wrong = plane.clone_url.replace("http://x:", "http://x:not-the-token")
    refused = subprocess.run(["git", "clone", "-q", wrong, str(tmp_path / "no")], capture_output=True, text=True,
                             env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert refused.returncode != 0


# --- login --------------------------------------------------------------------------------------------


def test_login_stores_url_and_token_owner_only(logged_in):
    path = logged_in.config_home / "shipyard" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    host = logged_in.url.removeprefix("http://")
    assert stored["current"] == f"admin@{host}"
    assert stored["contexts"][f"admin@{host}"] == {"url": logged_in.url, "token": stored_token(logged_in.config_home),
                                                   "user": "admin", "role": "tenant-admin"}
    assert stored_token(logged_in.config_home).startswith("shy_")
    me = api(logged_in).get("/api/v1/me").json()
    assert me["user"]["username"] == "admin" and me["via_token"] is True
    assert logged_in.password not in path.read_text()


def test_login_with_a_wrong_password_exits_6(plane, tmp_path):
    result = plane.cli("login", "--url", plane.url, stdin="admin\nnot the password at all\n",
                       XDG_CONFIG_HOME=str(tmp_path))
    assert result.returncode == 6
    assert "wrong username or password" in result.stderr
    assert not (tmp_path / "shipyard" / "credentials.json").exists()


def test_login_with_a_token_checks_it_before_storing(logged_in, tmp_path):
    token = stored_token(logged_in.config_home)
    bad = logged_in.cli("login", "--url", logged_in.url, "--token", "shy_0000_nope", XDG_CONFIG_HOME=str(tmp_path))
    assert bad.returncode == 6
    assert not (tmp_path / "shipyard" / "credentials.json").exists()
    good = logged_in.cli("login", "--url", logged_in.url, "--token", token, XDG_CONFIG_HOME=str(tmp_path))
    assert good.returncode == 0, good.stderr
    (context,) = json.loads(logged_in.cli("contexts", "-o", "json", XDG_CONFIG_HOME=str(tmp_path)).stdout)["contexts"]
    assert (context["user"], context["role"], context["current"]) == ("admin", "tenant-admin", True)
    listed = logged_in.cli("apps", "--output", "json", XDG_CONFIG_HOME=str(tmp_path))
    assert listed.returncode == 0, listed.stderr


def test_contexts_hold_several_identities_switched_like_kubectl(logged_in, tmp_path):
    """One user with two workspaces logs in once per role, then switches without logging in again."""
    client = api(logged_in)
    assert client.post("/api/v1/users", json={"username": "dana", "password": "dana password 1"}).status_code == 201
    for workspace in ("storefront", "data"):
        assert client.post("/api/v1/role-bindings", json={"role": "workspace-editor", "subject": "dana",
                                                          "cluster": "demo", "workspace": workspace}).status_code == 201
    home = tmp_path / "dana"
    env = {"XDG_CONFIG_HOME": str(home)}
    host = logged_in.url.removeprefix("http://")
    # two role bindings and no terminal: which one is asked for, naming both
    several = logged_in.cli("login", "--url", logged_in.url, stdin="dana\ndana password 1\n", **env)
    assert several.returncode == 2
    assert "workspace-editor on demo:storefront" in several.stderr and "workspace-editor on demo:data" in several.stderr
    for workspace in ("storefront", "data"):  # --workspace alone narrows it to one binding
        login = logged_in.cli("login", "--url", logged_in.url, "--username", "dana", "--workspace", workspace,
                              stdin="dana password 1\n", **env)
        assert login.returncode == 0, login.stderr
        assert f"as context dana@{host}/demo:{workspace}" in login.stderr
    listed = json.loads(logged_in.cli("contexts", "--output", "json", **env).stdout)
    assert listed["current"] == f"dana@{host}/demo:data"
    assert [(c["name"], c["current"], c["role"], c["workspace"]) for c in listed["contexts"]] == [
        (f"dana@{host}/demo:data", True, "workspace-editor", "data"),
        (f"dana@{host}/demo:storefront", False, "workspace-editor", "storefront")]
    table = logged_in.cli("contexts", **env).stdout
    assert re.search(rf"^\*\s+dana@{re.escape(host)}/demo:data\s", table, re.MULTILINE) and "shy_" not in table

    spec = tmp_path / "ctx.yaml"
    spec.write_text("type: service\nname: ctx-web\nworkspace_fqn: demo:storefront\n"
                    "image: {type: image, image_uri: 'ghcr.io/acme/web:1.0'}\nports: [{port: 8000}]\n")
    # the current context is the data one, whose token does not even see the storefront workspace
    assert logged_in.cli("deploy", str(spec), **env).returncode == 4
    storefront = f"dana@{host}/demo:storefront"
    assert logged_in.cli("deploy", str(spec), "--context", storefront, **env).returncode == 0
    assert logged_in.cli("versions", "demo:storefront/ctx-web", **env, SHIPYARD_CONTEXT=storefront).returncode == 0
    missing = logged_in.cli("apps", "--context", "nope", **env)
    assert missing.returncode == 4 and storefront in missing.stderr
    used = logged_in.cli("contexts", "use", storefront, **env)
    assert used.returncode == 0 and logged_in.cli("versions", "demo:storefront/ctx-web", **env).returncode == 0

    # logout revokes the token of the context in use and forgets it; the other context still works
    token = json.loads((home / "shipyard" / "credentials.json").read_text())["contexts"][storefront]["token"]
    out = logged_in.cli("logout", **env)
    assert out.returncode == 0 and "forgotten and its token revoked" in out.stderr
    assert httpx.get(f"{logged_in.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert logged_in.cli("apps", **env).returncode == 2  # nothing current now
    assert logged_in.cli("apps", "--context", f"dana@{host}/demo:data", **env).returncode == 0


def test_a_credentials_file_from_before_contexts_still_works(logged_in, tmp_path):
    old = tmp_path / "old" / "shipyard" / "credentials.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"url": logged_in.url, "token": stored_token(logged_in.config_home)}))
    listed = logged_in.cli("apps", "--output", "json", XDG_CONFIG_HOME=str(tmp_path / "old"))
    assert listed.returncode == 0, listed.stderr


# --- deploy and its errors ----------------------------------------------------------------------------------


def test_apps_lists_the_examples(logged_in):
    result = logged_in.cli("apps", "--cluster", "demo", "--output", "json")
    assert result.returncode == 0, result.stderr
    apps = {f"{a['workspace']}/{a['name']}" for a in json.loads(result.stdout)["apps"]}
    assert EXAMPLE_APPS <= apps
    text = logged_in.cli("apps")
    assert text.returncode == 0 and "demo:storefront/web" in text.stdout


def test_deploy_prints_the_new_version(logged_in, tmp_path):
    spec = tmp_path / "api.yaml"
    spec.write_text("type: service\nname: cli-api\nworkspace_fqn: demo:storefront\n"
                    "image: {type: image, image_uri: 'ghcr.io/acme/api:1.0'}\nports: [{port: 8000}]\n")
    result = logged_in.cli("deploy", str(spec), "--source-commit", "abc123")
    assert result.returncode == 0, result.stderr
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("demo:storefront/cli-api"))
    assert row[1:4] == ["1", "deploy", "committed"] and re.fullmatch(r"[0-9a-f]{12}", row[4])
    versions = api(logged_in).get("/api/v1/apps/demo/storefront/cli-api/versions").json()["versions"]
    assert versions[0]["source"] == "cli" and versions[0]["source_commit"] == "abc123"
    assert versions[0]["commit"].startswith(row[4])

    again = logged_in.cli("deploy", str(spec), "--dry-run")
    assert again.returncode == 0 and again.stdout == "" and "cli-api: unchanged" in again.stderr
    spec.write_text(spec.read_text().replace("api:1.0", "api:1.1"))
    dry = logged_in.cli("deploy", str(spec), "--dry-run")
    assert dry.returncode == 0
    assert "-        image: ghcr.io/acme/api:1.0" in dry.stdout and "+        image: ghcr.io/acme/api:1.1" in dry.stdout
    assert len(api(logged_in).get("/api/v1/apps/demo/storefront/cli-api/versions").json()["versions"]) == 1

    # The same spec deployed again (as a pipeline does on every merge) makes no version and says so.
    spec.write_text(spec.read_text().replace("api:1.1", "api:1.0"))
    same = logged_in.cli("deploy", str(spec))
    assert same.returncode == 0, same.stderr
    row = next(line.split() for line in same.stdout.splitlines() if line.startswith("demo:storefront/cli-api"))
    assert row[1:4] == ["1", "deploy", "unchanged"]
    assert "cli-api: unchanged; version 1 already deploys this spec" in same.stderr
    as_json = json.loads(logged_in.cli("deploy", str(spec), "--output", "json").stdout)
    assert [(v["number"], v["unchanged"]) for v in as_json["files"][0]["versions"]] == [(1, True)]
    assert len(api(logged_in).get("/api/v1/apps/demo/storefront/cli-api/versions").json()["versions"]) == 1


def test_deploy_of_a_bad_spec_points_at_file_line_and_column(logged_in):
    bad = "fixtures/invalid/several-problems.yaml"
    result = logged_in.cli("deploy", bad, "fixtures/specs/web.yaml")
    assert result.returncode == 1
    offline = logged_in.cli("validate", bad)  # the same problems the offline check finds, same words
    expected = offline.stdout.splitlines()
    assert len(expected) == 5
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{bad}:")]
    assert problems == expected
    assert all(re.match(rf"^{re.escape(bad)}:\d+:\d+: .+ \(at /\S*\)$", line) for line in problems)
    assert "demo:storefront/web" in result.stdout  # the good file still went through

    as_json = logged_in.cli("deploy", bad, "--output", "json")
    assert as_json.returncode == 1
    payload = json.loads(as_json.stdout)
    assert payload["ok"] is False and payload["files"][0]["error"] == "spec_invalid"
    assert [(p["line"], p["column"]) for p in payload["files"][0]["problems"]] == [
        tuple(int(n) for n in line.split(":")[1:3]) for line in expected]


def test_not_authorized_and_unreachable_have_their_exit_codes(logged_in, tmp_path):
    spec = "fixtures/specs/web.yaml"
    wrong_token = logged_in.cli("deploy", spec, "--token", "shy_0000_nope")
    assert wrong_token.returncode == 6 and "not valid" in wrong_token.stderr
    # a workspace viewer logs in with their role (not tenant-admin), may read but not deploy
    client = api(logged_in)
    assert client.post("/api/v1/users", json={"username": "viewer", "password": "viewer password 1"}).status_code == 201
    assert client.post("/api/v1/role-bindings", json={"role": "workspace-viewer", "subject": "viewer",
                                                      "cluster": "demo", "workspace": "storefront"}).status_code == 201
    viewer_home = str(tmp_path / "viewer")
    # holding one role binding, the viewer is asked for no --role
    login = logged_in.cli("login", "--url", logged_in.url, stdin="viewer\nviewer password 1\n",
                          XDG_CONFIG_HOME=viewer_home)
    assert login.returncode == 0, login.stderr
    assert "a workspace-viewer on demo:storefront token" in login.stderr
    assert logged_in.cli("versions", "demo:storefront/web", XDG_CONFIG_HOME=viewer_home).returncode == 0
    forbidden = logged_in.cli("deploy", spec, XDG_CONFIG_HOME=viewer_home)
    assert forbidden.returncode == 6 and "may not app.deploy" in forbidden.stderr
    unreachable = logged_in.cli("apps", "--url", f"http://127.0.0.1:{free_port()}", "--token", "shy_1_x")
    assert unreachable.returncode == 3 and "cannot reach the control plane" in unreachable.stderr
    nothing = logged_in.cli("apps", XDG_CONFIG_HOME=str(tmp_path))
    assert nothing.returncode == 2 and "shipyard login" in nothing.stderr
    missing = logged_in.cli("versions", "demo:storefront/no-such-app")
    assert missing.returncode == 4
    usage = logged_in.cli("rollback", "storefront/web", "1")
    assert usage.returncode == 2


# --- rollback and promote -------------------------------------------------------------------------------------


def test_rollback_deploys_the_old_spec_as_a_new_version(logged_in, tmp_path):
    spec = tmp_path / "rb.yaml"
    spec.write_text("type: service\nname: rb\nworkspace_fqn: demo:payments\n"
                    "image: {type: image, image_uri: 'ghcr.io/acme/rb:1'}\nports: [{port: 8000}]\n")
    assert logged_in.cli("deploy", str(spec)).returncode == 0
    spec.write_text(spec.read_text().replace("rb:1", "rb:2"))
    assert logged_in.cli("deploy", str(spec)).returncode == 0

    result = logged_in.cli("rollback", "demo:payments/rb", "1")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^demo:payments/rb\s+3\s+rollback\s+committed\s+[0-9a-f]{12}", result.stdout, re.MULTILINE)
    client = api(logged_in)
    latest = client.get("/api/v1/apps/demo/payments/rb/versions/3").json()
    assert latest["spec"]["image"]["image_uri"] == "ghcr.io/acme/rb:1" and latest["origin"] == {"rollback_of": 1}
    listed = logged_in.cli("versions", "demo:payments/rb", "--output", "json")
    assert [v["number"] for v in json.loads(listed.stdout)["versions"]] == [3, 2, 1]
    assert logged_in.cli("rollback", "demo:payments/rb", "99").returncode == 4


def test_promote_with_overrides_from_dotted_keys(logged_in):
    # workspace ml has secrets and hosts of its own (gitops.isolation): storefront's are refused
    refused = logged_in.cli("promote", "demo:storefront/web", "--to", "demo:ml", "--version", "1")
    assert refused.returncode != 0 and 'secret path "storefront/db"' in refused.stdout + refused.stderr
    assert 'host "shop.example.com" is routed by workspace "storefront"' in refused.stdout + refused.stderr
    result = logged_in.cli("promote", "demo:storefront/web", "--to", "demo:ml", "--version", "1",
                           "--set", "replicas=3", "--set", "env.LOG_LEVEL=debug", "--set", "env.FLAG=no",
                           "--set", "env.DATABASE_PASSWORD=secret://ml/db#password",
                           "--set", "ports=[{port: 8000, expose: true, host: ml.example.com}]", "--output", "json")
    assert result.returncode == 0, result.stderr
    (created,) = json.loads(result.stdout)["versions"]
    assert created["app"] == "demo:ml/web" and created["state"] == "committed"
    version = api(logged_in).get(f"/api/v1/apps/demo/ml/web/versions/{created['number']}").json()
    spec = version["spec"]
    source = api(logged_in).get("/api/v1/apps/demo/storefront/web/versions/1").json()["spec"]
    assert spec["replicas"] == 3
    assert spec["env"]["LOG_LEVEL"] == "debug" and spec["env"]["FLAG"] == "no"  # YAML 1.2: "no" stays a string
    assert spec["env"]["DATABASE_PASSWORD"] == "secret://ml/db#password"
    changed = ("LOG_LEVEL", "FLAG", "DATABASE_PASSWORD")
    assert {k: v for k, v in spec["env"].items() if k not in changed} == {
        k: v for k, v in source["env"].items() if k not in changed}
    assert version["origin"] == {"promoted_from": "demo:storefront/web", "version": 1, "overrides": {
        "replicas": 3, "env": {"LOG_LEVEL": "debug", "FLAG": "no", "DATABASE_PASSWORD": "secret://ml/db#password"},
        "ports": [{"port": 8000, "expose": True, "host": "ml.example.com"}]}}
    bad = logged_in.cli("promote", "demo:storefront/web", "--to", "demo:ml", "--set", "replicas")
    assert bad.returncode == 2


# --- restart, reset-password -------------------------------------------------------------------------------------


def test_restart_reuses_the_data_directory(tmp_path):
    log = tmp_path / "server.log"
    first = start_up(tmp_path / "data", tmp_path / "config", log)
    try:
        assert "First start" in first.banner
    finally:
        assert stop(first.process) == 0  # Ctrl-C stops cleanly
    assert first.process.stdout.read().strip().endswith("stopped")

    second = start_up(tmp_path / "data", tmp_path / "config", log)
    try:
        assert "Reusing the data directory" in second.banner
        assert first.password not in second.banner and not re.search(r"^  password", second.banner, re.MULTILINE)
        assert "git clone" not in second.banner
        login = second.cli("login", "--url", second.url, stdin=f"admin\n{first.password}\n")
        assert login.returncode == 0, login.stderr
        client = api(second)
        assert [u["username"] for u in client.get("/api/v1/users").json()["users"]] == ["admin"]
        apps = client.get("/api/v1/apps").json()["apps"]
        assert {f"{a['workspace']}/{a['name']}" for a in apps} == EXAMPLE_APPS
        assert all(a["versions"] == 1 for a in apps)
        assert len(client.get("/api/v1/clusters").json()["clusters"]) == 1

        reset = second.cli("admin", "reset-password", "--data", str(second.data))
        assert reset.returncode == 0, reset.stderr
        new_password = reset.stdout.rsplit(": ", 1)[1].strip()
        assert new_password != first.password
        old = second.cli("login", "--url", second.url, stdin=f"admin\n{first.password}\n")
        assert old.returncode == 6
        new = second.cli("login", "--url", second.url, stdin=f"admin\n{new_password}\n")
        assert new.returncode == 0, new.stderr
        nobody = second.cli("admin", "reset-password", "--data", str(second.data), "--username", "nobody")
        assert nobody.returncode == 4
    finally:
        stop(second.process, signal.SIGTERM)


def test_up_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cli", "up", "--data", str(tmp_path / "data"), "--port", str(port)],
            capture_output=True, text=True, cwd=ROOT, env=clean_env(tmp_path), timeout=STARTUP_LIMIT)
    assert result.returncode == 7 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "password" not in result.stdout


# --- serve and db --------------------------------------------------------------------------------------------


def test_serve_refuses_an_unmigrated_database_until_db_upgrade(database_url, tmp_path):
    env = clean_env(tmp_path / "config", SHIPYARD_DATABASE_URL=database_url, SHIPYARD_AUTO_MIGRATE="false",
                    SHIPYARD_DATA_DIR=str(tmp_path / "data"), SHIPYARD_RECONCILE_INTERVAL="0")

    def shipyard(*args, **kwargs):
        return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, **kwargs)

    port = free_port()
    refused = shipyard("serve", "--bind", f"127.0.0.1:{port}", "--workers", "1", timeout=STARTUP_LIMIT)
    assert refused.returncode == 7
    assert "not at the head revision" in refused.stderr and "shipyard db upgrade" in refused.stderr
    current = shipyard("db", "current", "--output", "json")
    assert current.returncode == 0 and json.loads(current.stdout)["current"] is None

    upgraded = shipyard("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(shipyard("db", "current", "--output", "json").stdout)["up_to_date"] is True
    assert "already at" in shipyard("db", "upgrade").stdout

    log = tmp_path / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", "2"], stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, log)
        page = httpx.get(f"http://127.0.0.1:{port}/login")
        assert page.status_code == 200 and 'name="csrf_token"' in page.text
    finally:
        assert stop(server, signal.SIGTERM) == 0, log.read_text()[-4000:]


def test_workers_starting_together_share_one_complete_signing_key(tmp_path):
    """Every worker of `shipyard serve` reads or creates DATA_DIR/secret_key as it starts; none may
    read it half written (an empty key) or keep a different one."""
    from concurrent.futures import ThreadPoolExecutor

    from webapp.config import _stored_secret

    for attempt in range(20):
        data_dir = tmp_path / f"data{attempt}"
        with ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(lambda _: _stored_secret(data_dir), range(8)))
        (key,) = keys
        assert len(key) >= 48 and (data_dir / "secret_key").read_text() == key
        assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
        assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no partial files left


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_at_once_while_an_agent_waits_for_commands(sig, tmp_path):
    """An agent's command long-poll waits up to 30 s; stopping the server answers it instead of waiting it out."""
    from tests.plane import add_cluster, app_config, make_user
    from webapp import create_app

    database_url = f"sqlite:///{tmp_path / 'data' / 'shipyard.db'}"
    app = create_app(app_config(tmp_path / "data", database_url))
    cluster = add_cluster(make_user(app, "admin", "tenant-admin"), "demo")
    app.extensions["shipyard"].close()
    env = clean_env(tmp_path / "config", SHIPYARD_DATABASE_URL=database_url, SHIPYARD_DATA_DIR=str(tmp_path / "data"),
                    SHIPYARD_RECONCILE_INTERVAL="0", SHIPYARD_SECRET_KEY="test-secret-key")
    port, log = free_port(), tmp_path / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", "1"], stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, log)
        answer: dict = {}

        def long_poll() -> None:
            started = time.monotonic()
            response = httpx.get(f"http://127.0.0.1:{port}/agent/v1/default/demo/commands", params={"wait": 30},
                                 headers={"Authorization": f"Bearer {cluster['agent_token']}"}, timeout=60)
            answer.update(status=response.status_code, body=response.json(), seconds=time.monotonic() - started)

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(1.5)  # the poll is waiting in the server
        assert not answer
        stopping = time.monotonic()
        assert stop(server, sig) == 0, log.read_text()[-4000:]
        stopped = time.monotonic() - stopping
        poller.join(timeout=60)
    finally:
        stop(server, signal.SIGKILL)
    assert answer["status"] == 200 and answer["body"] == {"commands": []}
    assert answer["seconds"] < 10 and stopped < 10, (answer, stopped)  # not the 30 s the poll asked for
