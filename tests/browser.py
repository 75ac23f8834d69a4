"""The harness of the dashboard's browser journeys: Debian's chromium through Playwright, a live plane.

* ``browser`` (session): ``/usr/bin/chromium`` headless through Playwright's sync API, with no
  browser download. Without chromium or the ``playwright`` package the fixture FAILS, naming the
  README's test command that installs both, so a machine lacking them cannot pass by skipping.
* ``live_plane``: a real control plane (SQLite in a temp dir) served on a loopback port in a
  thread, seeded as ``shipyard up`` seeds it -- the user ``admin``, the cluster ``demo``, a
  service (``storefront/web``) and a job (``data/backfill``) -- with a SIMULATED compute plane
  reading its repository over git and reporting to it, fast (steps of a fraction of a second).
  ``live_plane.inject("storefront/web", pods="CrashLoopBackOff")`` switches a fault on
  (simulation.switches: ``pods``, ``health``, ``sync="Failed"``, ``message``), ``clear`` off.
* ``page``: a fresh browser context (its own cookies) at desktop size on the live plane.
* ``login(page, user, password)``; ``expect`` is Playwright's, imported only when called.
* ``shot(page, name)`` saves a PNG at the current viewport under ``SHIPYARD_TEST_ARTIFACTS``
  (default: pytest's temp directory) and prints where; ``shot.desktop_and_phone(page, name)``
  takes the pair every journey keeps of its main page (1366x768 and 390x844).

Playwright is imported inside the fixtures and helpers, never at import time: a module of
journeys is always collected, and a missing package fails the journeys with the message above
rather than breaking the collection of every test.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from gitops import clusters
from simulation import SimulatedCluster, SimulationSettings
from tests.plane import PROFILE, Api, add_cluster, add_workspace, app_config, deploy_yaml, make_user, service_spec
from webapp import create_app

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS_VARIABLE = "SHIPYARD_TEST_ARTIFACTS"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
ADMIN_PASSWORD = "admin password for the journeys"
POLL_SECONDS = 0.25  # an open page asks /live this often (dashboard.js's minimum)
SETTLE_MS = 20_000  # how long a journey waits for the simulation to reach a state it asked for
EXPECT_MS = 10_000  # how long an expectation on a page waits by default
SEEDED_APPS = ("storefront/web", "data/backfill")


# --- the browser --------------------------------------------------------------------------------


def chromium_missing() -> str | None:
    """Why the journeys cannot drive a browser here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the Python package playwright is not installed ({exc})"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's chromium is not installed ({CHROMIUM} is missing)"
    return None


def readme_test_command() -> str:
    """The README's command that installs what the tests need (chromium, the test extras) and runs them."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"^.*apt-get .*chromium.*pytest.*$", readme, re.MULTILINE)
    return found.group(0).strip() if found else "the test command of README.md"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, for this test session (one per pytest-xdist worker)."""
    reason = chromium_missing()
    if reason:
        pytest.fail(f"The dashboard's browser journeys need chromium and Playwright: {reason}. "
                    f"The README's test command installs both:\n  {readme_test_command()}", pytrace=False)
    from playwright.sync_api import expect as playwright_expect
    from playwright.sync_api import sync_playwright

    playwright_expect.set_options(timeout=EXPECT_MS)

    # as root, chromium refuses to start with its sandbox; /dev/shm is small in containers
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


def expect(target: Any, message: str | None = None):
    """Playwright's ``expect`` (retrying assertions on a page or locator)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target, message)


@pytest.fixture
def page(browser, live_plane) -> Iterator[Page]:
    """A page of its own browser context (cookies, storage) at desktop size, on the live plane."""
    context = browser.new_context(base_url=live_plane.url, viewport=DESKTOP)
    context.set_default_timeout(SETTLE_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def login(page: Page, user: str, password: str) -> None:
    """Log in through the login form, as a person does; fails unless the session started."""
    page.goto("/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header.top .who")).to_contain_text(user)
    assert not page.url.split("?")[0].endswith("/login"), f"still on the login page: {page.url}"


# --- screenshots --------------------------------------------------------------------------------


@dataclass
class Screenshots:
    """Saves PNGs of pages into ``directory``, named after the test and the moment."""

    directory: Path
    prefix: str

    def __call__(self, page: Page, name: str) -> Path:
        """A screenshot at the page's current viewport."""
        path = self.directory / f"{self.prefix}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        page.screenshot(path=str(path))
        print(f"screenshot: {path}")
        return path

    def desktop_and_phone(self, page: Page, name: str) -> list[Path]:
        """One screenshot at desktop width (1366x768), one at phone width (390x844); the viewport is restored."""
        before = page.viewport_size
        try:
            paths = []
            for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
                page.set_viewport_size(size)
                paths.append(self(page, f"{name}-{label}"))
            return paths
        finally:
            page.set_viewport_size(before or DESKTOP)


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    """Where screenshots go: ``SHIPYARD_TEST_ARTIFACTS``, else a directory in pytest's temp path."""
    configured = os.environ.get(ARTIFACTS_VARIABLE)
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"screenshots of the dashboard's journeys go to {directory} ({ARTIFACTS_VARIABLE} sets it)")
    return directory


@pytest.fixture
def shot(artifacts_dir, request) -> Screenshots:
    return Screenshots(artifacts_dir, re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name))


# --- the live plane -----------------------------------------------------------------------------


@dataclass
class LivePlane:
    """A control plane served on loopback with a simulated cluster "demo" reporting to it."""

    url: str
    app: Flask
    admin: Api  # the admin's API token, through the app in this process
    cluster: SimulatedCluster
    admin_password: str = ADMIN_PASSWORD

    def inject(self, app: str, **fault: Any) -> None:
        """Switch a fault on for ``<workspace>/<app>``: ``pods="CrashLoopBackOff"``, ``sync="Failed"``, ..."""
        self.cluster.switches.set(app, **fault)

    def clear(self, app: str | None = None) -> None:
        """Switch the faults of ``app`` off, or every fault."""
        if app is None:
            self.cluster.switches.clear()
        else:
            self.cluster.switches.set(app)

    def add_user(self, username: str, role: str | None, cluster: str | None = None,
                 workspace: str | None = None, password: str = "correct horse battery") -> str:
        """A local user with ``role`` at the given scope; returns the password."""
        make_user(self.app, username, role, cluster=cluster, workspace=workspace, password=password)
        return password

    def deploy(self, spec: str) -> list[dict]:
        response = deploy_yaml(self.admin, spec)
        assert response.status_code in (200, 202), response.get_json()
        return response.get_json()["versions"]

    def status(self, workspace: str, app: str) -> dict:
        response = self.admin.get(f"/api/v1/apps/demo/{workspace}/{app}/status")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def wait_until(self, probe: Callable[[], Any], what: str, timeout: float = SETTLE_MS / 1000) -> Any:
        """Poll ``probe`` until it returns something truthy; fails naming ``what`` and the last value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")

    def wait_healthy(self, *apps: str) -> None:
        """Wait until each ``<workspace>/<app>`` (default: every seeded app) runs its newest version, Healthy."""
        for key in apps or SEEDED_APPS:
            workspace, name = key.split("/")

            def healthy(workspace=workspace, name=name):
                state = self.status(workspace, name)
                newest = state["versions"][0] if state["versions"] else {}
                return state["health"] == "Healthy" and newest.get("status") == "healthy" and state

            self.wait_until(healthy, f"{key} healthy")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        """The app logs every request itself (webapp.observability)."""


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """``app`` on a free loopback port, one thread per request; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="live-plane")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def seed(app: Flask) -> tuple[Api, dict]:
    """The admin, the demo cluster with workspaces storefront and data, a service and a job; (admin, tokens)."""
    admin = make_user(app, "admin", "tenant-admin", password=ADMIN_PASSWORD)
    tokens = add_cluster(admin, "demo")
    for workspace in ("storefront", "data"):
        add_workspace(admin, "demo", workspace)
    job = (ROOT / "fixtures" / "specs" / "job-manual.yaml").read_text()
    for spec in (service_spec("web", image="ghcr.io/acme/web:1.0", extra="replicas: 2\n"), job):
        response = deploy_yaml(admin, spec)
        assert response.status_code in (200, 202), response.get_json()
    return admin, tokens


@pytest.fixture
def live_plane(tmp_path) -> Iterator[LivePlane]:
    """The control plane on loopback, seeded, with its simulated cluster running; stopped afterwards."""
    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'shipyard.db'}",
                                DASHBOARD_POLL_SECONDS=POLL_SECONDS))
    try:
        admin, tokens = seed(app)
        profile = clusters.parse_profile(PROFILE, "demo")
        with serving(app) as url:
            settings = SimulationSettings(
                url=url, tenant=app.config["TENANT"], cluster="demo", agent_token=tokens["agent_token"],
                read_token=tokens["read_token"], mirror_dir=tmp_path / "simulated" / "demo.git",
                poll_seconds=0.2, step_seconds=0.2, rollout_seconds=0.4, heartbeat_seconds=1.0,
                command_wait_seconds=1.0, tick_seconds=0.05,
                kubernetes_version=profile.kubernetes_version, addons=sorted(profile.addons))
            cluster = SimulatedCluster(settings)
            stop = threading.Event()
            loop = threading.Thread(target=cluster.run, args=(stop,), daemon=True, name="simulated-demo")
            loop.start()
            try:
                yield LivePlane(url, app, admin, cluster)
            finally:
                stop.set()
                loop.join(settings.command_wait_seconds + 15)
                cluster.close()
    finally:
        app.extensions["shipyard"].close()

