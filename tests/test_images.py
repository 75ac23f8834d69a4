"""The control plane's and the agent's images: built from images/*.Containerfile by images/build.sh, inspected
with skopeo, run with podman on loopback (tests/images.py says how, on this machine).

One journey, so that one test worker builds them (xdist's groups do not hold with this pytest): about
three minutes with the bases, marked slow. Each check is a function of its own, called in order.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cli.client import web_session
from renderer.profiles import default_agent_image
from tests.fakekube import FakeKube
from tests.images import RUN_FLAGS, ImageLab, ImageToolMissing, project_version
from tests.plane import PROFILE
from tests.test_agent_watch import write_kubeconfig

pytestmark = pytest.mark.slow

AGENT_UID = 65532  # templates/agent/deployment.yaml.j2 runAsUser


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    try:
        lab = ImageLab(tmp_path_factory.mktemp("images"))
    except ImageToolMissing as missing:
        pytest.fail(str(missing))
    try:
        lab.make_bases()
        yield lab
    finally:
        lab.reset()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float = 60, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class ControlPlane:
    """The control-plane image running `shipyard serve` on a loopback port, its data dir a host directory."""

    def __init__(self, lab: ImageLab, image: str, data: Path, name: str):
        self.lab, self.name, self.port = lab, name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data.mkdir()
        data.chmod(0o750)
        os.chown(data, AGENT_UID, AGENT_UID)
        self.data = data
        lab.podman("run", "--detach", "--name", name, *RUN_FLAGS, "--read-only", "--tmpfs", "/tmp",
                   "--volume", f"{data}:/var/lib/shipyard", "--env", f"SHIPYARD_PUBLIC_URL={self.url}",
                   image, "serve", "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "8")

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200

    def exec(self, *command: str) -> str:
        return self.lab.podman("exec", self.name, *command).stdout

    def logs(self) -> str:
        result = self.lab.podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.lab.podman("rm", "--force", "--time", "0", self.name, check=False)


@contextmanager
def running_control_plane(lab: ImageLab, image: str, directory: Path):
    plane = ControlPlane(lab, image, directory / "data", f"shipyard-{directory.name}"[:60])
    try:
        wait_for(plane.healthy, what=f"the control plane's /healthz\n{plane.logs()}")
        yield plane
    finally:
        plane.remove()


def test_the_images_build_inspect_and_run(lab, tmp_path):
    control_plane_image, agent_image = lab.build("control-plane").image, lab.build("agent").image
    check_labels_user_and_process(lab, control_plane_image, agent_image)
    (tmp_path / "first").mkdir()
    with running_control_plane(lab, control_plane_image, tmp_path / "first") as control_plane:
        check_control_plane_serves_and_stops_on_sigterm(lab, control_plane)
    (tmp_path / "second").mkdir()
    with running_control_plane(lab, control_plane_image, tmp_path / "second") as control_plane:
        check_a_new_install_gets_its_first_admin(control_plane)
    (tmp_path / "third").mkdir()
    with running_control_plane(lab, control_plane_image, tmp_path / "third") as control_plane:
        check_the_agent_reports_to_the_control_plane(lab, control_plane, agent_image, tmp_path / "third")
    check_the_agent_image_holds_the_agent_and_the_downloader_only(lab, agent_image)


def check_labels_user_and_process(lab, control_plane_image: str, agent_image: str) -> None:
    revision = lab.run("git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD").stdout.strip()
    for image, title, entrypoint, cmd, port in (
        (control_plane_image, "Shipyard control plane",
         ["/opt/shipyard/bin/dumb-init", "--", "/opt/shipyard/bin/shipyard"], ["serve", "--bind", "0.0.0.0:8080"],
         "8080/tcp"),
        (agent_image, "Shipyard agent", ["python", "-m", "agent"], None, "9090/tcp"),
    ):
        config = lab.config(image)["config"]
        labels = config["Labels"]
        assert labels["org.opencontainers.image.title"] == title
        assert labels["org.opencontainers.image.version"] == project_version()
        assert labels["org.opencontainers.image.revision"] == revision
        assert labels["org.opencontainers.image.source"].startswith("https://")
        assert config["User"] == f"{AGENT_UID}:{AGENT_UID}"
        assert config["Entrypoint"] == entrypoint
        assert config.get("Cmd") == cmd
        assert list(config["ExposedPorts"]) == [port]
        assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    assert lab.config(control_plane_image)["config"]["Volumes"] == {"/var/lib/shipyard": {}}
    # the image cluster profiles render into the bootstrap is the one the build tags
    assert default_agent_image() == agent_image


def check_control_plane_serves_and_stops_on_sigterm(lab, control_plane: ControlPlane) -> None:
    """It migrated its SQLite data directory on start, serves the login page, writes nowhere but its volume
    and /tmp, and stops within 2 s of SIGTERM."""
    login = httpx.get(f"{control_plane.url}/login", timeout=5)
    assert login.status_code == 200 and 'name="password"' in login.text
    with sqlite3.connect(control_plane.data / "shipyard.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision  # migrated on start (SQLite)
    assert (control_plane.data / "secret_key").stat().st_uid == AGENT_UID
    # nothing but the data directory and /tmp is writable
    denied = lab.podman("exec", control_plane.name, "python3", "-c", "open('/opt/shipyard/x', 'w')", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr

    started = time.monotonic()
    lab.podman("kill", "--signal", "TERM", control_plane.name)
    code = lab.podman("wait", control_plane.name).stdout.strip()
    stopped = time.monotonic() - started
    assert code == "0", control_plane.logs()
    assert stopped < 2, f"stopped {stopped:.1f} s after SIGTERM"


def check_a_new_install_gets_its_first_admin(control_plane: ControlPlane) -> None:
    created = control_plane.exec("shipyard", "admin", "create-admin")
    password = created.rpartition(": ")[2].strip()
    with web_session(control_plane.url, "admin", password, "text") as session:
        assert session.call("GET", "/api/v1/me")["user"]["username"] == "admin"
    again = control_plane.lab.podman("exec", control_plane.name, "shipyard", "admin", "create-admin", check=False)
    assert again.returncode == 1 and "already has users" in again.stderr


def check_the_agent_reports_to_the_control_plane(lab, control_plane: ControlPlane, agent_image: str,
                                                tmp_path: Path) -> None:
    """Both images together: the agent, against a fake API server on loopback, sends its heartbeat and a status
    batch to the control plane, which shows the cluster online with what the agent follows."""
    password = control_plane.exec("shipyard", "admin", "create-admin").rpartition(": ")[2].strip()
    with web_session(control_plane.url, "admin", password, "text") as session:
        token = session.call("POST", "/api/v1/tokens", json={"name": "test", "role": "tenant-admin"})["token"]
    api = httpx.Client(base_url=control_plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    registered = api.post("/api/v1/clusters", json={"name": "kind", "profile": PROFILE.replace("name: demo", "name: kind")})
    assert registered.status_code == 201, registered.text
    (tmp_path / "token").write_text(registered.json()["agent_token"] + "\n")

    with FakeKube() as kube:
        kube.create("applications", {"metadata": {"name": "shop.web", "labels": {"app.kubernetes.io/managed-by": "shipyard"}},
                                     "spec": {"project": "shipyard"}}, "argocd")
        write_kubeconfig(kube, tmp_path / "kubeconfig")
        for name in ("token", "kubeconfig"):
            (tmp_path / name).chmod(0o644)
        agent = f"agent-{tmp_path.name}"[:60]
        lab.podman("run", "--detach", "--name", agent, *RUN_FLAGS, "--read-only", "--tmpfs", "/tmp",
                   "--volume", f"{tmp_path / 'token'}:/var/run/secrets/shipyard/token:ro",
                   "--volume", f"{tmp_path / 'kubeconfig'}:/etc/shipyard/kubeconfig:ro",
                   "--env", "KUBECONFIG=/etc/shipyard/kubeconfig",
                   "--env", f"SHIPYARD_URL={control_plane.url}", "--env", "SHIPYARD_TENANT=default",
                   "--env", "SHIPYARD_CLUSTER=kind", "--env", "SHIPYARD_AGENT_TOKEN_FILE=/var/run/secrets/shipyard/token",
                   "--env", "ARGOCD_NAMESPACE=argocd", "--env", "SHIPYARD_NAMESPACES=shop",
                   "--env", f"SHIPYARD_METRICS_PORT={free_port()}", agent_image)
        try:
            def reported():
                status = api.get("/api/v1/clusters/kind/status").json()
                return status if status["connectivity"] == "online" and status["objects"].get("Application") else None

            status = wait_for(reported, timeout=90, what="the agent's report\n" + lab.podman("logs", agent, check=False).stderr)
            assert status["agent"]["kubernetes_version"] == "v1.33.1"
            assert status["simulated"] is False
            started = time.monotonic()
            lab.podman("kill", "--signal", signal.SIGTERM.name.removeprefix("SIG"), agent)
            assert lab.podman("wait", agent).stdout.strip() == "0"
            # inside the 30 s the bootstrap's Deployment gives it (Kubernetes' default grace period)
            assert time.monotonic() - started < 10
            logs = lab.podman("logs", agent).stdout + lab.podman("logs", agent).stderr
            assert registered.json()["agent_token"] not in logs
        finally:
            lab.podman("rm", "--force", "--time", "0", agent, check=False)


def check_the_agent_image_holds_the_agent_and_the_downloader_only(lab, agent_image: str) -> None:
    def python(code: str):
        return lab.podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "python", agent_image, "-c", code, check=False)

    assert python("import agent.main, agent.commands, downloader.huggingface").returncode == 0
    for server_only in ("flask", "sqlalchemy", "jinja2", "pygit2"):
        assert python(f"import {server_only}").returncode != 0, server_only
    usage = lab.podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "python", agent_image, "-m", "downloader", "--help")
    assert "huggingface" in usage.stdout
