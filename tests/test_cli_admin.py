"""The API's remaining capabilities on the command line: diff, delete, clusters, workspaces, users,
role bindings, tokens, the audit log, --watch and --output yaml.

The real ``shipyard`` command runs as a subprocess, as a person's shell or a CI job runs it (no
terminal), against a control plane on loopback with a SIMULATED cluster reporting to it
(tests/browser.py's ``live_plane``, no browser). Each journey checks what people read (tables),
what scripts read (JSON and YAML documents), and the exit codes: 4 for what does not exist, 6
for what a lesser role may not do, 2 for a change not confirmed. A secret is checked to be
printed once, and to work (a cluster's read token clones its repository, a new API token
lists apps) until it is revoked.

The loop of a --watch and the rule that ends a delete's --wait are checked directly too.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from cli import wait, watch
from tests.browser import live_plane  # noqa: F401 - the fixture
from tests.plane import PROFILE, make_user, service_spec

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
TOKEN = re.compile(r"^shy_\S+$")


def shipyard(plane, *args: str, home: Path, token: str | None = None, stdin: str | None = None,
             popen: bool = False):
    """``shipyard ARGS`` against ``plane`` with the admin's token (or ``token``), no terminal on stdin."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")},
           "SHIPYARD_URL": plane.url, "SHIPYARD_TOKEN": token or plane.admin.token, "XDG_CONFIG_HOME": str(home),
           "COLUMNS": "200"}
    if popen:
        return subprocess.Popen([SHIPYARD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
    return subprocess.run([SHIPYARD, *args], capture_output=True, text=True, env=env, timeout=120, input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None)


def rows(stdout: str) -> list[list[str]]:
    """A table's rows (header first), split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line.strip()]


def viewer_token(plane) -> str:
    """A workspace-viewer of demo:storefront: may read there, change nothing."""
    return make_user(plane.app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront").token


def agent_profile(name: str, url: str) -> str:
    return PROFILE.replace("name: demo", f"name: {name}") + f"agent:\n  url: {url}\n"


# --- clusters and workspaces ----------------------------------------------------------------------------


@pytest.mark.slow
def test_clusters_register_show_install_rotate_and_delete(live_plane, tmp_path):  # noqa: F811
    live_plane.wait_healthy()
    listed = shipyard(live_plane, "clusters", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert rows(listed.stdout)[0] == ["CLUSTER", "AGENT", "LAST SEEN", "KUBERNETES", "APPS", "REMOTE"]
    demo = next(row for row in rows(listed.stdout) if row[0] == "demo")
    assert demo[1] == "online (simulated)" and "2 Healthy" in demo[4]
    document = json.loads(shipyard(live_plane, "clusters", "-o", "json", home=tmp_path).stdout)
    assert [c["name"] for c in document["clusters"]] == ["demo"]
    assert document["clusters"][0]["status"]["connectivity"] == "online"

    shown = shipyard(live_plane, "clusters", "show", "demo", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    facts = dict(row for row in rows(shown.stdout) if len(row) == 2)
    assert facts["agent"].startswith("online (simulated), last heard ")
    assert facts["repository"] == f"{live_plane.url}/git/default/demo.git"
    assert "2 Healthy" in facts["apps"] and "Pod" in facts["objects followed"]
    assert shipyard(live_plane, "clusters", "show", "nowhere", home=tmp_path).returncode == 4

    # a profile with problems: each one at FILE:LINE:COL, and no cluster made
    bad = tmp_path / "bad.yaml"
    bad.write_text(agent_profile("edge", live_plane.url).replace("flavor: kind", "flavour: kind"))
    refused = shipyard(live_plane, "clusters", "register", "edge", "--profile", str(bad), home=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert re.search(rf"^{re.escape(str(bad))}:\d+:1: .*flavour", refused.stderr, re.MULTILINE), refused.stderr
    assert "Traceback" not in refused.stderr
    missing = shipyard(live_plane, "clusters", "register", "edge", "--profile", str(tmp_path / "none.yaml"),
                       home=tmp_path)
    assert missing.returncode == 1 and "cannot read cluster profile" in missing.stderr

    profile = tmp_path / "edge.yaml"
    profile.write_text(agent_profile("edge", live_plane.url))
    registered = shipyard(live_plane, "clusters", "register", "edge", "--profile", str(profile), home=tmp_path)
    assert registered.returncode == 0, registered.stderr
    assert "shown only this once" in registered.stderr
    read_token = re.search(r"^# read token .*: (\S+)$", registered.stdout, re.MULTILINE).group(1)
    agent_token = re.search(r"^# agent token .*: (\S+)$", registered.stdout, re.MULTILINE).group(1)
    assert "kubectl apply -f edge/bootstrap/root.yaml" in registered.stdout
    assert (f"kubectl -n shipyard-system create secret generic shipyard-agent-token "
            f"--from-literal=token={agent_token}") in registered.stdout
    # the clone command printed works with the read token it carries
    clone = re.search(r"^git clone (\S+)$", registered.stdout, re.MULTILINE).group(1)
    assert read_token in clone
    assert git_clone(clone, tmp_path / "edge").returncode == 0
    assert (tmp_path / "edge" / "bootstrap" / "agent").is_dir()

    steps = shipyard(live_plane, "clusters", "install-agent", "edge", home=tmp_path)
    assert steps.returncode == 0, steps.stderr
    assert "READ_TOKEN" in steps.stdout and "--from-literal=token=AGENT_TOKEN" in steps.stdout
    assert read_token not in steps.stdout and agent_token not in steps.stdout
    as_json = json.loads(shipyard(live_plane, "clusters", "install-agent", "edge", "-o", "json", home=tmp_path).stdout)
    assert as_json["install"]["apply_root"] == "kubectl apply -f edge/bootstrap/root.yaml"
    assert as_json["install"]["agent_namespace"] == "shipyard-system"

    # a new agent token: asked for a yes, shown once on stdout, and it is the one the agent endpoints take
    unconfirmed = shipyard(live_plane, "clusters", "rotate-token", "edge", home=tmp_path)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr and unconfirmed.stdout == ""
    rotated = shipyard(live_plane, "clusters", "rotate-token", "edge", "--yes", home=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    new_agent_token = rotated.stdout.strip()
    assert new_agent_token and "\n" not in new_agent_token and new_agent_token not in rotated.stderr
    assert "shown only this once" in rotated.stderr and "AGENT_TOKEN" in rotated.stderr
    commands = httpx.get(f"{live_plane.url}/agent/v1/default/edge/commands",
                         headers={"Authorization": f"Bearer {new_agent_token}"}, timeout=30)
    assert commands.status_code == 200, commands.text

    # a new read token: the old one stops at once, the new one clones
    read = shipyard(live_plane, "clusters", "rotate-token", "edge", "--kind", "read", "--yes", "-o", "json",
                    home=tmp_path)
    assert read.returncode == 0, read.stderr
    new_read_token = json.loads(read.stdout)["token"]
    assert git_clone(clone, tmp_path / "old").returncode != 0
    assert git_clone(clone.replace(read_token, new_read_token), tmp_path / "new").returncode == 0

    viewer = viewer_token(live_plane)
    assert shipyard(live_plane, "clusters", "register", "other", "--profile", str(profile), home=tmp_path,
                    token=viewer).returncode == 6
    rotate = shipyard(live_plane, "clusters", "rotate-token", "demo", "--yes", home=tmp_path, token=viewer)
    assert rotate.returncode == 6 and rotate.stdout == ""
    assert shipyard(live_plane, "clusters", "show", "edge", home=tmp_path, token=viewer).returncode == 6

    assert shipyard(live_plane, "clusters", "delete", "edge", home=tmp_path).returncode == 2
    deleted = shipyard(live_plane, "clusters", "delete", "edge", "--yes", home=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert "repository is archived" in deleted.stderr
    assert shipyard(live_plane, "clusters", "show", "edge", home=tmp_path).returncode == 4


def git_clone(url: str, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "clone", "-q", url, str(target)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def demo_clone(plane, target: Path) -> Path:
    """A clone of the demo cluster's repository, with the read token its simulated ArgoCD fetches with."""
    url = plane.url.replace("http://", f"http://x:{plane.cluster.settings.read_token}@") + "/git/default/demo.git"
    assert git_clone(url, target).returncode == 0
    return target


@pytest.mark.slow
def test_workspaces_list_create_update_and_delete(live_plane, tmp_path):  # noqa: F811
    listed = shipyard(live_plane, "workspaces", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert rows(listed.stdout)[0] == ["WORKSPACE", "ENVIRONMENT", "LABELS", "QUOTA", "CREATED"]
    assert [row[0] for row in rows(listed.stdout)[1:]] == ["demo:data", "demo:storefront"]

    created = shipyard(live_plane, "workspaces", "create", "demo:team", "--environment", "staging",
                       "--label", "team=a", "--quota", "requests.cpu=4", home=tmp_path)
    assert created.returncode == 0, created.stderr
    assert rows(created.stdout)[1][:4] == ["demo:team", "staging", "team=a", "requests.cpu=4"]
    repository = demo_clone(live_plane, tmp_path / "created")
    namespace = yaml.safe_load((repository / "workspaces" / "team" / "namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["team"] == "a"
    assert (repository / "workspaces" / "team" / "quota.yaml").is_file()
    updated = shipyard(live_plane, "workspaces", "update", "demo:team", "--environment", "prod", "-o", "json",
                       home=tmp_path)
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["environment"] == "prod" and json.loads(updated.stdout)["labels"] == {"team": "a"}
    assert shipyard(live_plane, "workspaces", "update", "demo:team", home=tmp_path).returncode == 2
    assert shipyard(live_plane, "workspaces", "create", "demo-team", home=tmp_path).returncode == 2
    conflict = shipyard(live_plane, "workspaces", "create", "demo:team", home=tmp_path)
    assert conflict.returncode == 1 and "already exists" in conflict.stderr
    wrong = shipyard(live_plane, "workspaces", "update", "demo:team", "--environment", "moon", home=tmp_path)
    assert wrong.returncode == 1 and "environment must be one of" in wrong.stderr

    viewer = viewer_token(live_plane)
    seen = shipyard(live_plane, "workspaces", "--cluster", "demo", home=tmp_path, token=viewer)
    assert seen.returncode == 0 and [row[0] for row in rows(seen.stdout)[1:]] == ["demo:storefront"]
    assert shipyard(live_plane, "workspaces", "create", "demo:mine", home=tmp_path, token=viewer).returncode == 6
    assert shipyard(live_plane, "workspaces", "delete", "demo:team", "--yes", home=tmp_path,
                    token=viewer).returncode == 4  # outside its scope: as absent as a missing one

    refused = shipyard(live_plane, "workspaces", "delete", "demo:team", home=tmp_path)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "demo:team" in shipyard(live_plane, "workspaces", home=tmp_path).stdout
    in_use = shipyard(live_plane, "workspaces", "delete", "demo:storefront", "--yes", home=tmp_path)
    assert in_use.returncode == 1 and "still has apps" in in_use.stderr
    deleted = shipyard(live_plane, "workspaces", "delete", "demo:team", "--yes", home=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert "demo:team" not in shipyard(live_plane, "workspaces", home=tmp_path).stdout
    assert not (demo_clone(live_plane, tmp_path / "deleted") / "workspaces" / "team").exists()
    assert shipyard(live_plane, "workspaces", "delete", "demo:team", "--yes", home=tmp_path).returncode == 4


# --- users, role bindings, tokens, the audit log ----------------------------------------------------------


@pytest.mark.slow
def test_users_bindings_tokens_and_the_audit_log(live_plane, tmp_path):  # noqa: F811
    password = "alice's long password"
    created = shipyard(live_plane, "users", "create", "alice", "--email", "alice@example.com", stdin=f"{password}\n",
                       home=tmp_path)
    assert created.returncode == 0, created.stderr
    assert password not in created.stdout + created.stderr
    users = rows(shipyard(live_plane, "users", home=tmp_path).stdout)
    assert users[0][:4] == ["USER", "NAME", "EMAIL", "LOGIN"]
    assert ["alice", "-", "alice@example.com", "local"] == next(row for row in users if row[0] == "alice")[:4]
    assert shipyard(live_plane, "users", "create", "alice", stdin=f"{password}\n", home=tmp_path).returncode == 1
    assert shipyard(live_plane, "users", "create", "bob", stdin="short\n", home=tmp_path).returncode == 1
    assert shipyard(live_plane, "users", "create", "bob", home=tmp_path).returncode == 2  # no password at all

    granted = shipyard(live_plane, "bindings", "create", "alice", "workspace-editor", "--cluster", "demo",
                       "--workspace", "storefront", "-o", "json", home=tmp_path)
    assert granted.returncode == 0, granted.stderr
    binding = json.loads(granted.stdout)
    assert (binding["role"], binding["subject"], binding["cluster"], binding["workspace"]) == (
        "workspace-editor", "alice", "demo", "storefront")
    listed = rows(shipyard(live_plane, "bindings", home=tmp_path).stdout)
    assert [str(binding["id"]), "workspace-editor", "user:alice", "demo:storefront"] in [row[:4] for row in listed]
    unknown = shipyard(live_plane, "bindings", "create", "alice", "emperor", home=tmp_path)
    assert unknown.returncode == 1 and "unknown role" in unknown.stderr

    # alice makes a token for CI with her password; it is printed once, on stdout
    made = shipyard(live_plane, "tokens", "create", "ci", "--role", "workspace-editor", "--cluster", "demo",
                    "--workspace", "storefront", "--username", "alice", stdin=f"{password}\n", home=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert TOKEN.match(token) and token not in made.stderr and "shown only this once" in made.stderr
    apps = shipyard(live_plane, "apps", "-o", "json", home=tmp_path, token=token)
    assert apps.returncode == 0, apps.stderr
    assert {a["workspace"] for a in json.loads(apps.stdout)["apps"]} == {"storefront"}
    assert shipyard(live_plane, "users", home=tmp_path, token=token).returncode == 6
    assert shipyard(live_plane, "audit", home=tmp_path, token=token).returncode == 6
    wrong = shipyard(live_plane, "tokens", "create", "x", "--role", "workspace-viewer", "--username", "alice",
                     stdin="not her password\n", home=tmp_path)
    assert wrong.returncode == 6 and "wrong username or password" in wrong.stderr
    beyond = shipyard(live_plane, "tokens", "create", "x", "--role", "tenant-admin", "--username", "alice",
                      stdin=f"{password}\n", home=tmp_path)
    assert beyond.returncode == 6 and beyond.stdout == ""

    tokens = json.loads(shipyard(live_plane, "tokens", "-o", "json", home=tmp_path).stdout)["tokens"]
    ci = next(t for t in tokens if t["name"] == "ci")
    assert (ci["user"], ci["role"], ci["revoked_at"]) == ("alice", "workspace-editor", None)
    table = rows(shipyard(live_plane, "tokens", home=tmp_path).stdout)
    assert next(row for row in table if row[0] == str(ci["id"]))[1:6] == [
        "ci", "alice", "workspace-editor", "demo:storefront", "Active"]
    revoked = shipyard(live_plane, "tokens", "revoke", str(ci["id"]), home=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert shipyard(live_plane, "apps", home=tmp_path, token=token).returncode == 6
    assert next(row for row in rows(shipyard(live_plane, "tokens", home=tmp_path).stdout)
                if row[0] == str(ci["id"]))[5] == "Revoked"
    assert shipyard(live_plane, "tokens", "revoke", "999999", home=tmp_path).returncode == 4

    unconfirmed = shipyard(live_plane, "bindings", "delete", str(binding["id"]), home=tmp_path)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    removed = shipyard(live_plane, "bindings", "delete", str(binding["id"]), "--yes", home=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "user alice no longer holds workspace-editor at demo:storefront" in removed.stderr
    assert shipyard(live_plane, "bindings", "delete", str(binding["id"]), "--yes", home=tmp_path).returncode == 4

    audit = shipyard(live_plane, "audit", "--limit", "3", home=tmp_path)
    assert audit.returncode == 0, audit.stderr
    events = rows(audit.stdout)
    assert events[0] == ["ID", "TIME", "ACTOR", "ACTION", "TARGET"] and len(events) == 4
    assert events[1][2:] == ["admin (token 1)", "binding.delete", "user:alice"]  # newest first
    assert f"shipyard audit --before {events[-1][0]}" in audit.stderr
    older = json.loads(shipyard(live_plane, "audit", "--before", events[-1][0], "-o", "json", home=tmp_path).stdout)
    actions = [e["action"] for e in older["events"]]
    assert "user.create" in actions and all(e["id"] < int(events[-1][0]) for e in older["events"])


# --- diff, delete --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_diff_between_versions_and_a_delete_followed_until_the_app_is_gone(live_plane, tmp_path):  # noqa: F811
    live_plane.wait_healthy()
    live_plane.deploy(service_spec("web", image="ghcr.io/acme/web:2.0", extra="replicas: 2\n"))
    changed = shipyard(live_plane, "diff", "demo:storefront/web", "1", home=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert "-        image: ghcr.io/acme/web:1.0" in changed.stdout
    assert "+        image: ghcr.io/acme/web:2.0" in changed.stdout
    assert "\x1b[" not in changed.stdout  # colour only on a terminal
    assert re.search(r"^--- a/workspaces/storefront/web/\S+\.yaml$", changed.stdout, re.MULTILINE)
    spec = shipyard(live_plane, "diff", "demo:storefront/web", "1", "2", "--spec", home=tmp_path)
    assert "-  image_uri: ghcr.io/acme/web:1.0" in spec.stdout and "--- version 1" in spec.stdout
    document = json.loads(shipyard(live_plane, "diff", "demo:storefront/web", "1", "-o", "json", home=tmp_path).stdout)
    assert (document["from"], document["to"]) == (1, 2) and document["manifests"] == changed.stdout
    same = shipyard(live_plane, "diff", "demo:storefront/web", "2", "2", home=tmp_path)
    assert same.returncode == 0 and same.stdout == "" and "have the same manifests" in same.stderr
    assert shipyard(live_plane, "diff", "demo:storefront/web", "1", "9", home=tmp_path).returncode == 4
    assert shipyard(live_plane, "diff", "demo:storefront/nothing", "1", home=tmp_path).returncode == 4
    assert shipyard(live_plane, "diff", "storefront/web", "1", home=tmp_path).returncode == 2

    viewer = viewer_token(live_plane)
    assert shipyard(live_plane, "diff", "demo:storefront/web", "1", home=tmp_path, token=viewer).returncode == 0
    assert shipyard(live_plane, "delete", "demo:storefront/web", "--yes", home=tmp_path, token=viewer).returncode == 6
    assert shipyard(live_plane, "delete", "demo:data/backfill", "--yes", home=tmp_path, token=viewer).returncode == 4

    unconfirmed = shipyard(live_plane, "delete", "demo:storefront/web", home=tmp_path)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert live_plane.status("storefront", "web")["versions"][0]["number"] == 2
    assert shipyard(live_plane, "delete", "demo:storefront/web", "--cluster", PROFILE, home=tmp_path).returncode == 2

    live_plane.wait_healthy("storefront/web")
    deleted = shipyard(live_plane, "delete", "demo:storefront/web", "--yes", "--wait", "--timeout", "60s",
                       home=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert re.search(r"^demo:storefront/web\s+3\s+delete\s+committed\s+[0-9a-f]{12}$", deleted.stdout, re.MULTILINE)
    assert "demo:storefront/web v3: gone from its cluster" in deleted.stderr
    gone = live_plane.status("storefront", "web")
    assert gone["health"] == "Missing" and gone["pods"] == []
    again = shipyard(live_plane, "delete", "demo:storefront/web", "--yes", home=tmp_path)
    assert again.returncode == 4 and "already deleted" in again.stderr


# --- --watch and --output yaml -------------------------------------------------------------------------------


class Lines:
    """The lines a running command prints on stdout, read as they come."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines = process, queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, found, timeout: float = 30.0) -> list[str]:
        """The lines read until one ``found`` accepts (that one included)."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if found(line):
                return seen
        raise AssertionError(f"not printed within {timeout} s; printed: {seen}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


@pytest.mark.slow
def test_watch_prints_the_table_then_each_change_and_ctrl_c_exits_0(live_plane, tmp_path):  # noqa: F811
    live_plane.wait_healthy()
    apps = Lines(shipyard(live_plane, "apps", "--watch", home=tmp_path, popen=True))
    status = Lines(shipyard(live_plane, "status", "demo:storefront/web", "-w", home=tmp_path, popen=True))
    try:
        first = apps.until(lambda line: line.startswith("demo:storefront/web"))
        assert first[0].split() == ["APP", "KIND", "HEALTH", "SYNC", "LIVE", "NEWEST", "UPDATED"]
        status.until(lambda line: "newest v1" in line)
        live_plane.deploy(service_spec("web", image="ghcr.io/acme/web:2.0"))
        change = apps.until(lambda line: re.match(r"^demo:storefront/web\s+service\s+Healthy\s+Synced\s+2\s+2\s", line))
        assert not any(line.startswith("APP") for line in change)  # rows only, under the first header
        column = first[0].index("HEALTH")
        assert change[-1].index("Healthy") == column  # in the first table's columns
        status.until(lambda line: "live v2   newest v2" in line)
    finally:
        assert apps.stop() == 0
        assert status.stop() == 0


@pytest.mark.slow
def test_output_yaml_is_the_json_document_in_yaml_errors_too(live_plane, tmp_path):  # noqa: F811
    as_json = json.loads(shipyard(live_plane, "workspaces", "-o", "json", home=tmp_path).stdout)
    as_yaml = shipyard(live_plane, "workspaces", "-o", "yaml", home=tmp_path)
    assert as_yaml.returncode == 0 and yaml.safe_load(as_yaml.stdout) == as_json
    missing = shipyard(live_plane, "versions", "demo:storefront/nothing", "-o", "yaml", home=tmp_path)
    assert missing.returncode == 4
    assert yaml.safe_load(missing.stdout) | {"message": None} == {"ok": False, "error": "not_found", "message": None,
                                                                   "problems": []}
    validated = shipyard(live_plane, "validate", "fixtures/specs/web.yaml", "-o", "yaml", home=tmp_path)
    assert validated.returncode == 0 and yaml.safe_load(validated.stdout)["specs"][0]["app"] == "storefront/web"


# --- the loops, without a server ----------------------------------------------------------------------------


def test_a_watch_shows_the_first_read_and_then_only_changes():
    reads = iter([{"a": 1}, {"a": 1}, {"a": 2}, {"a": 2, "b": 1}, {"a": 2, "b": 1}])
    shown, slept = [], []
    watch.follow(lambda: next(reads), lambda previous, current: shown.append((previous, current)), watch=True,
                 sleep=slept.append, rounds=5)
    assert shown == [(None, {"a": 1}), ({"a": 1}, {"a": 2}), ({"a": 2}, {"a": 2, "b": 1})]
    assert slept == [watch.POLL_SECONDS] * 4
    once = []
    watch.follow(lambda: {"a": 1}, lambda previous, current: once.append(current), watch=False, sleep=slept.append)
    assert once == [{"a": 1}] and len(slept) == 4  # without --watch: one read, no sleep
    stamped, seen = iter([{"a": 1, "at": 1}, {"a": 1, "at": 2}, {"a": 2, "at": 3}]), []
    watch.follow(lambda: next(stamped), lambda previous, current: seen.append(current), watch=True,
                 compared=lambda value: value["a"], sleep=lambda _: None, rounds=3)
    assert seen == [{"a": 1, "at": 1}, {"a": 2, "at": 3}]  # a new time alone is no change


def test_a_watch_ends_quietly_on_ctrl_c():
    def read():
        raise KeyboardInterrupt

    watch.follow(read, lambda previous, current: None, watch=True, sleep=lambda _: None)


def test_a_watched_listing_prints_changed_rows_under_the_first_columns(capsys):
    def app(name: str, health: str) -> tuple[str, ...]:
        return (f"demo:ws/{name}", "service", health, "Synced", "1", "1", "2025-01-01T00:00:00")

    shown = watch._AppsShown("text", watch=True)
    shown.show(None, {"demo:ws/a": app("a", "Healthy"), "demo:ws/b": app("b", "Healthy")})
    shown.show({"demo:ws/a": app("a", "Healthy"), "demo:ws/b": app("b", "Healthy")},
               {"demo:ws/a": app("a", "Degraded"), "demo:ws/c": app("c", "Progressing")})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["APP", "KIND", "HEALTH"], ["demo:ws/a", "service", "Healthy"], ["demo:ws/b", "service", "Healthy"],
        ["demo:ws/a", "service", "Degraded"], ["demo:ws/c", "service", "Progressing"],
        ["demo:ws/b", "service", "Deleted"]]
    assert len({line.index("service") for line in lines[1:]}) == 1

    events = watch._AppsShown("json", watch=True)
    events.show({"k": {"name": "a"}}, {"k": {"name": "a", "health": "Degraded"}})
    assert json.loads(capsys.readouterr().out) == {"type": "MODIFIED", "app": {"name": "a", "health": "Degraded"}}


def test_a_delete_waits_until_the_app_is_gone_from_its_cluster():
    def answer(**status) -> dict:
        return {"connectivity": "online", "known": True, "health": "Healthy", "revision": "abc",
                "versions": [{"number": 3, "state": "committed", "status": "committed"}], **status}

    item = wait.Followed("demo:ws/web", 3, action="delete")
    wait.observe(item, answer(), now=0.0)
    assert (item.status, item.end) == ("deleting", None)
    wait.observe(item, answer(health="Missing", sync="Unknown", revision=None), now=1.0)
    assert (item.status, item.end) == ("gone", "gone")
    never = wait.Followed("demo:ws/web", 3, action="delete")
    wait.observe(never, answer(known=False, health=None, revision=None), now=0.0)
    assert never.end == "gone"  # no agent ever reported it: nothing of it runs
    offline = wait.Followed("demo:ws/web", 3, action="delete")
    wait.observe(offline, answer(connectivity="offline"), now=0.0)
    assert offline.end == "offline"
    assert wait.ENDS["gone"][1] == 0
