"""The ``shipyard`` command: the offline commands, the control plane's server, and its API client.

gitops.cli holds the commands that work on files and repositories alone
(validate, render, apply, delete); gitops must never import the web app, so
this module, one layer up, owns the top-level group and adds them to it,
together with:

``shipyard up``             the embedded default: SQLite and cluster repositories in a data
                            directory, a demo cluster on first start, a threaded server on
                            localhost
``shipyard serve``          production: gunicorn workers over ``create_app()``, configured by
                            ``SHIPYARD_*``; refuses a database that is not migrated
``shipyard db``             ``upgrade`` and ``current`` (Alembic, through gitops.db)
``shipyard admin``          ``reset-password`` for a local user
``shipyard login``          stores the server URL and an API token for the commands below
``shipyard deploy`` ...     ``rollback``, ``promote``, ``apps``, ``versions``: /api/v1 over httpx

Exit codes (the offline commands' codes, plus 6 and 7):

    0  success (including "nothing changed")
    1  invalid input: spec problems (FILE:LINE:COL: message), or a request the server refused
    2  usage error; also: no server URL or API token configured
    3  repository error, or the control plane cannot be reached
    4  not found: no such app, version, cluster or workspace (or not visible to you)
    5  internal error: a bug, on this side or the server's
    6  not authorized: no valid token or password, or your role does not allow it
    7  the server cannot start: database not at the head revision, address in use
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
from flask import Flask
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from gitops import accounts, audit, clusters, db, isolation
from gitops import cli as offline
from gitops.cli import EXIT_INTERNAL, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_REPO, EXIT_USAGE, output_option, stderr
from gitops.models import Cluster, RoleBinding, Tenant, User
from renderer.errors import Problem, ShipyardError, SpecError
from renderer.spec import expand_paths, load_spec_files
from renderer.yamlio import load_documents
from webapp import config as config_module

EXIT_UNAUTHORIZED = 6
EXIT_NOT_READY = 7

ROOT = Path(__file__).resolve().parent.parent
DEMO_PROFILE = ROOT / "fixtures" / "clusters" / "demo.yaml"
DEMO_SPECS = ROOT / "fixtures" / "specs"
DEMO_CLUSTER = "demo"
# The examples' tfy-secret:// references name secret groups of the TrueFoundry tenant "acme": store
# paths acme/<group>, outside every workspace's own <workspace>/ (gitops.isolation). The demo
# cluster lets its workspaces use them, as a cluster-admin would.
DEMO_SECRET_PATHS = ["acme/"]
ADMIN = "admin"

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (including "nothing changed")
  1  invalid input: spec problems (FILE:LINE:COL: message), or a request the server refused
  2  usage error; also: no server URL or API token configured
  3  repository error, or the control plane cannot be reached
  4  not found: no such app, version, cluster or workspace
  5  internal error (a bug)
  6  not authorized: no valid token or password, or your role does not allow it
  7  the server cannot start: database not at the head revision, address in use
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="shipyard")
def main() -> None:
    """Shipyard: deploy specs in, validated manifests committed for ArgoCD out.

    \b
    Offline:        validate, render, apply, delete
    Control plane:  up (embedded), serve (production), db, admin
    API client:     login, deploy, rollback, promote, apps, versions
    """


for _command in (offline.validate, offline.render, offline.apply, offline.delete):
    main.add_command(_command)


class Failure(click.ClickException):
    """A failure with its exit code; click's top-level handler prints it and exits with that code."""

    def __init__(self, message: str, exit_code: int, problems: list[Problem] | None = None,
                 kind: str = "error", output: str = "text"):
        super().__init__(message)
        self.exit_code = exit_code
        self.problems = problems or []
        self.kind = kind
        self.output = output

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        if self.output == "json":
            _print_json({"ok": False, "error": self.kind, "message": self.message,
                         "problems": [p.as_dict() for p in self.problems]})
            return
        for problem in self.problems:
            click.echo(str(problem), err=True)
        if self.problems:
            count = len(self.problems)
            stderr.print(f"[red]{count} problem{'s' if count != 1 else ''} found[/red]")
        else:
            stderr.print(f"[red]error:[/red] {self.message}", markup=True)


def _print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _stdout() -> Console:
    # Rich wraps at 80 columns when stdout is not a terminal; rows of a table are easier to
    # read and to grep whole.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


# --- configuration shared by up, serve, db and admin -------------------------------------------


def _settings(overrides: dict | None = None) -> dict:
    """The settings the app would run with (defaults, file, SHIPYARD_* env, ``overrides``).

    The one loader (webapp.config) decides, so the migration check of ``serve`` looks at
    exactly the database the workers will open.
    """
    holder = Flask("shipyard")
    config_module.load(holder, overrides)
    return dict(holder.config)


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _engine(url: str) -> Engine:
    return db.make_engine(url, pool_size=1)


def _revisions(engine: Engine, url: str) -> tuple[str | None, str | None]:
    try:
        return db.current_revision(engine), db.head_revision()
    except SQLAlchemyError as exc:
        raise Failure(f"cannot read the database {_safe_url(url)}: {exc.__class__.__name__}: "
                      f"{str(exc.orig if hasattr(exc, 'orig') else exc).strip()}", EXIT_NOT_READY) from exc


database_url_option = click.option(
    "--database-url", envvar="SHIPYARD_DATABASE_URL", show_envvar=True,
    help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in the data directory).",
)
data_option = click.option(
    "--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), envvar="SHIPYARD_DATA_DIR",
    show_envvar=True, default="data", show_default=True,
    help="Data directory: the SQLite database, the cluster repositories, the session key.",
)


# --- shipyard db ----------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Database migrations (Alembic). Production databases are migrated only by `db upgrade`."""


@db_group.command("upgrade")
@database_url_option
@data_option
def db_upgrade(database_url: str | None, data_dir: Path) -> None:
    """Migrate the database to the head revision (safe to run again: it then does nothing)."""
    settings = _settings({"DATA_DIR": str(data_dir), **({"DATABASE_URL": database_url} if database_url else {})})
    url = settings["DATABASE_URL"]
    engine = _engine(url)
    try:
        before, head = _revisions(engine, url)
        if before == head:
            click.echo(f"{_safe_url(url)}: already at {head}")
            return
        try:
            db.upgrade(engine)
        except SQLAlchemyError as exc:
            raise Failure(f"migration failed: {exc}", EXIT_NOT_READY) from exc
        click.echo(f"{_safe_url(url)}: upgraded from {before or 'an empty database'} to {head}")
    finally:
        engine.dispose()


@db_group.command("current")
@database_url_option
@data_option
@output_option
def db_current(database_url: str | None, data_dir: Path, output: str) -> None:
    """Show the database's revision and the head revision of this Shipyard."""
    settings = _settings({"DATA_DIR": str(data_dir), **({"DATABASE_URL": database_url} if database_url else {})})
    url = settings["DATABASE_URL"]
    engine = _engine(url)
    try:
        current, head = _revisions(engine, url)
    finally:
        engine.dispose()
    if output == "json":
        _print_json({"database": _safe_url(url), "current": current, "head": head, "up_to_date": current == head})
        return
    click.echo(f"database: {_safe_url(url)}")
    click.echo(f"current:  {current or '(empty: not migrated)'}")
    click.echo(f"head:     {head}" + ("" if current == head else "  (run `shipyard db upgrade`)"))


# --- shipyard admin ---------------------------------------------------------------------------------


@main.group("admin")
def admin_group() -> None:
    """Local administration that needs no running server."""


@admin_group.command("reset-password")
@click.option("--username", default=ADMIN, show_default=True, help="The local user.")
@click.option("--prompt", "ask", is_flag=True, help="Ask for the new password instead of generating one.")
@database_url_option
@data_option
def reset_password(username: str, ask: bool, database_url: str | None, data_dir: Path) -> None:
    """Give a local user a new password; it replaces the old one at once.

    Without --prompt a password is generated and printed once; only its hash is stored.
    """
    settings = _settings({"DATA_DIR": str(data_dir), **({"DATABASE_URL": database_url} if database_url else {})})
    url = settings["DATABASE_URL"]
    engine = _engine(url)
    try:
        current, head = _revisions(engine, url)
        if current is None:
            raise Failure(f"no Shipyard database at {_safe_url(url)}; start `shipyard up` (or run "
                          "`shipyard db upgrade`) first", EXIT_NOT_FOUND)
        if current != head:
            raise Failure(f"the database is at {current}, not {head}: run `shipyard db upgrade`", EXIT_NOT_READY)
        if ask:
            password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
        else:
            password = secrets.token_urlsafe(18)
        with db.session_factory(engine).begin() as session:
            user = session.scalar(select(User).join(Tenant).where(
                Tenant.name == settings["TENANT"], User.username == username))
            if user is None or user.oidc_subject is not None:
                raise Failure(f'no local user "{username}" in tenant "{settings["TENANT"]}"', EXIT_NOT_FOUND)
            try:
                accounts.set_password(user, password)
            except ShipyardError as exc:
                raise Failure(str(exc), EXIT_INVALID) from exc
            audit.record(session, accounts.principal_for(session, user), "user.reset-password", username,
                         {"by": "shipyard admin reset-password"})
    finally:
        engine.dispose()
    if ask:
        click.echo(f'password of "{username}" changed')
    else:
        click.echo(f'new password of "{username}" (shown once): {password}')


# --- shipyard up --------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the first start of ``up`` created, to print once."""

    password: str
    read_token: str | None
    workspaces: list[str]
    versions: list[str]
    agent_token: str | None = None  # for the simulated compute plane of the demo cluster


def seed_first_start(plane, tenant_name: str) -> Seeded | None:
    """On an empty tenant: the admin user, the demo cluster with its workspaces, the example apps.

    Returns None when the tenant already has users: then nothing is created again. The
    password and the cluster's read token exist only in the returned value (the database
    keeps their hashes).
    """
    with plane.sessions() as session:
        tenant = accounts.ensure_tenant(session, tenant_name)
        if session.scalar(select(User.id).where(User.tenant_id == tenant.id).limit(1)) is not None:
            return None
        password = secrets.token_urlsafe(18)
        user = accounts.create_local_user(session, tenant, ADMIN, password, display_name="Administrator")
        session.add(RoleBinding(tenant_id=tenant.id, role="tenant-admin", subject_kind="user", subject=ADMIN,
                                created_by="shipyard up"))
        session.flush()
        principal = accounts.principal_for(session, user)
        audit.record(session, principal, "user.create", ADMIN, {"by": "shipyard up", "role": "tenant-admin"})
        if not (DEMO_PROFILE.is_file() and DEMO_SPECS.is_dir()):
            session.commit()
            return Seeded(password, None, [], [])
        spec_files = expand_paths([DEMO_SPECS])
        workspaces = sorted({spec.workspace for spec in load_spec_files(spec_files)})
        new = clusters.create_cluster(session, plane.repos, principal, DEMO_CLUSTER, DEMO_PROFILE.read_text())
        isolation.set_cluster_secret_paths(session, principal, new.cluster, DEMO_SECRET_PATHS)
        for name in workspaces:
            clusters.create_workspace(session, plane.repos, principal, new.cluster, {"name": name})
        session.commit()
        from gitops import deploy as deploy_service  # it imports prometheus_client: see serve

        ctx = deploy_service.Context(session, principal, plane.repos, plane.committers, plane.worker)
        versions = []
        for path in spec_files:
            for version in deploy_service.deploy(ctx, path.read_text(), filename=str(path.relative_to(ROOT)),
                                                 source="cli"):
                versions.append(f"{DEMO_CLUSTER}:{version.application.workspace.name}/"
                                f"{version.application.name} v{version.number} {version.state}")
        return Seeded(password, new.read_token, workspaces, versions, new.agent_token)


def _display_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _stop_on_signals() -> None:
    """SIGTERM, and SIGINT even when the shell started us with it ignored (``cmd &``), stop cleanly."""

    def _raise(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)


@main.command()
@data_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-simulate", is_flag=True,
              help="Do not run the simulated compute plane for the demo cluster (for a real ArgoCD and agent).")
def up(data_dir: Path, host: str, port: int, no_simulate: bool) -> None:
    """Run the control plane on this machine: SQLite and git repositories in --data.

    The first start creates the user "admin" (its password is printed once), the
    cluster "demo" from fixtures/clusters/demo.yaml with the workspaces of
    fixtures/specs, and deploys those examples. Later starts reuse the data
    directory and create nothing. Unless --no-simulate, a SIMULATED compute
    plane (agent.simulate: ArgoCD and a cluster played in this process) reads
    the demo cluster's repository over git and reports sync and health, so
    deploys go all the way to Healthy. Ctrl-C stops the server.
    """
    from werkzeug.serving import WSGIRequestHandler, make_server

    from webapp import create_app

    data_dir = data_dir.resolve()
    url = os.environ.get("SHIPYARD_PUBLIC_URL") or _display_url(host, port)
    reusing = (data_dir / "shipyard.db").exists()
    overrides = {
        # The embedded default is SQLite in the data directory, whatever SHIPYARD_DATABASE_URL says.
        "DATA_DIR": str(data_dir), "DATABASE_URL": f"sqlite:///{data_dir / 'shipyard.db'}",
        "AUTO_MIGRATE": True, "PUBLIC_URL": url,
        # one person's demo, on 127.0.0.1 by default: /metrics needs no token here (METRICS_TOKEN still asks one)
        "METRICS_PUBLIC": True,
    }
    app = create_app(overrides)
    plane = app.extensions["shipyard"]

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:
            """The app logs every request itself (webapp.observability)."""

    try:
        # Bound here rather than by make_server, which prints and exits on its own when the port is taken.
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_NOT_READY) from exc
        with listener:  # make_server works on its own duplicate of the socket
            server = make_server(host, port, app, threaded=True, request_handler=QuietHandler,
                                 fd=listener.fileno())
        try:
            seeded = seed_first_start(plane, app.config["TENANT"])
        except ShipyardError as exc:
            server.server_close()
            raise Failure(f"could not set up the demo: {exc}", EXIT_INTERNAL) from exc
        _announce(url, data_dir, app.config["TENANT"], seeded, reusing)
        simulation = None if no_simulate else _start_simulation(app, data_dir, _display_url(host, port), url, seeded)
        _stop_on_signals()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if simulation is not None:
                simulation.set()
            server.server_close()
        click.echo("stopped")
    finally:
        plane.close()


SIMULATION_SWITCHES = "simulate.yaml"


def _rotate_demo_tokens(plane, tenant_name: str) -> tuple[str, str] | None:
    """New read and agent tokens of the demo cluster, as its admin: (read, agent), or None without either."""
    with plane.sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
        user = tenant and session.scalar(select(User).where(User.tenant_id == tenant.id, User.username == ADMIN))
        cluster = tenant and session.scalar(select(Cluster).where(Cluster.tenant_id == tenant.id,
                                                                  Cluster.name == DEMO_CLUSTER))
        if user is None or cluster is None:
            return None
        principal = accounts.principal_for(session, user)
        try:
            tokens = (clusters.rotate_token(session, principal, cluster, "read"),
                      clusters.rotate_token(session, principal, cluster, "agent"))
        except ShipyardError:
            return None  # the admin is no longer allowed to: leave the cluster alone
        session.commit()
        return tokens


def _start_simulation(app: Flask, data_dir: Path, url: str, public_url: str, seeded: Seeded | None):
    """The simulated compute plane of the demo cluster in a daemon thread; the event that stops it, or None.

    It needs the demo cluster's read and agent tokens, which exist in plain text only when
    they are made and are kept nowhere (only their hashes): the first start passes on the
    ones it created; a later start makes new ones (the read token printed before stops
    working, so the new one is printed; --no-simulate leaves the tokens alone).
    """
    from agent.simulate import SimulationSettings, start_in_background

    tenant = app.config["TENANT"]
    if seeded is not None and seeded.read_token and seeded.agent_token:
        read_token, agent_token = seeded.read_token, seeded.agent_token
    else:
        rotated = _rotate_demo_tokens(app.extensions["shipyard"], tenant)
        if rotated is None:
            click.echo(f'No SIMULATED compute plane: no cluster "{DEMO_CLUSTER}" with its admin "{ADMIN}" here')
            return None
        read_token, agent_token = rotated
        host_part = public_url.split("://", 1)[1].rstrip("/")
        click.echo(f'New tokens of cluster "{DEMO_CLUSTER}" for its simulated compute plane; the read token '
                   "printed before no longer works (--no-simulate keeps the tokens). Its repository:")
        click.echo(f"  git clone http://x:{read_token}@{host_part}/git/{tenant}/{DEMO_CLUSTER}.git")
    profile = clusters.parse_profile(DEMO_PROFILE.read_text(), DEMO_CLUSTER) if DEMO_PROFILE.is_file() else None
    settings = SimulationSettings(
        url=url, tenant=tenant, cluster=DEMO_CLUSTER, agent_token=agent_token, read_token=read_token,
        mirror_dir=data_dir / "simulated" / f"{DEMO_CLUSTER}.git",
        poll_seconds=2.0, step_seconds=2.0, rollout_seconds=4.0, heartbeat_seconds=10.0,
        switch_file=data_dir / SIMULATION_SWITCHES,
        kubernetes_version=profile.kubernetes_version if profile else None,
        addons=sorted(profile.addons) if profile else [])
    # the server's access log already has each of the simulated agent's requests; httpx would log them twice
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _cluster, stop, _thread = start_in_background(settings)
    click.echo(f'Cluster "{DEMO_CLUSTER}" is SIMULATED: no Kubernetes, no ArgoCD. A simulated compute plane in this '
               "process reads its repository over git every 2 s and reports sync and health as an agent would "
               f"(--no-simulate turns it off). Faults are switched on in {settings.switch_file}, e.g.")
    click.echo('  storefront/web: {pods: CrashLoopBackOff}   # or {health: Degraded, message: "..."}, '
               "{sync: Failed}, {rollout_seconds: 60}")
    return stop


def _announce(url: str, data_dir: Path, tenant: str, seeded: Seeded | None, reusing: bool) -> None:
    if seeded is None:
        click.echo(f"Reusing the data directory {data_dir}: nothing created.")
        click.echo(f"  log in at {url}/login (forgot the admin password? "
                   f"shipyard admin reset-password --data {data_dir})")
    else:
        click.echo(f"First start{' on an existing database' if reusing else ''}: data directory {data_dir}")
        click.echo(f"  log in at  {url}/login")
        click.echo(f"  username   {ADMIN}")
        click.echo(f"  password   {seeded.password}")
        click.echo("  (the password is shown only now; `shipyard admin reset-password` sets a new one)")
        click.echo(f"  CLI        shipyard login --url {url}")
        if seeded.read_token is None:
            click.echo(f"  no demo: {DEMO_PROFILE} or {DEMO_SPECS} is missing from this installation")
        else:
            click.echo(f'Demo cluster "{DEMO_CLUSTER}": workspaces {", ".join(seeded.workspaces)}')
            for line in seeded.versions:
                click.echo(f"  {line}")
            host_part = url.split("://", 1)[1].rstrip("/")
            click.echo("  its repository, as ArgoCD reads it (the read token is shown only now):")
            click.echo(f"  git clone http://x:{seeded.read_token}@{host_part}/git/{tenant}/{DEMO_CLUSTER}.git")
    click.echo(f"Shipyard is running at {url} (Ctrl-C stops it)")


# --- shipyard serve ------------------------------------------------------------------------------------


def check_migrated(settings: dict) -> None:
    """Refuse a database that is not at the head revision, unless AUTO_MIGRATE (SQLite's default) is on.

    Runs once, in gunicorn's master, before any worker opens the database: so N workers
    never race to migrate, and a PostgreSQL schema only ever changes through
    ``shipyard db upgrade``.
    """
    url = settings["DATABASE_URL"]
    engine = _engine(url)
    try:
        current, head = _revisions(engine, url)
        if current == head:
            return
        if settings["AUTO_MIGRATE"]:
            db.upgrade(engine)
            return
    finally:
        engine.dispose()
    state = "empty (never migrated)" if current is None else f"at revision {current}"
    raise Failure(
        f"the database {_safe_url(url)} is {state}, not at the head revision {head}: "
        f"run `shipyard db upgrade` first (with SHIPYARD_DATABASE_URL set the same way)", EXIT_NOT_READY)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for the workers (forked from here, they inherit it).

    glibc gives threads up to 8 arenas per core, each holding on to freed memory; a worker
    with dozens of request threads then keeps far more resident than it uses (a 1x64 worker
    under 200 clients peaked at 245 MB with the default, 191 MB with 2 arenas). The standard
    MALLOC_ARENA_MAX environment variable, when set, is left to decide.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl has no arenas to cap)
        return
    m_arena_max = -8  # <malloc.h>
    libc.mallopt(m_arena_max, arenas)


def _share_with_workers() -> None:
    """Load, before gunicorn forks the workers, what every worker would load for itself.

    The workers then share those pages with this process instead of each holding a copy:
    the app's modules, the spec validators and the Kubernetes schemas of the default
    version. ``gc.freeze`` keeps the collector of each worker from writing to (and so
    copying) every object it inherited.
    """
    import gc

    from renderer.render import warm_up
    from webapp import agent_api, api, githttp_routes, oidc, pages  # noqa: F401 - what create_app imports

    warm_up()
    gc.collect()
    gc.freeze()


def _private_metrics_directory() -> Path:
    """A new directory (mode 0700) for the workers' metrics, named in PROMETHEUS_MULTIPROC_DIR.

    A scrape of /metrics reaches one worker, which alone counted only its own requests. With
    the directory set, prometheus_client writes each worker's values to files in it and the
    worker that answers sums them all (gitops.metrics). prometheus_client chooses how it keeps
    values when it is first imported, so this runs before anything imports it, here in the
    master whose modules the workers inherit (webapp.cli imports the deploy service late for
    that). The directory is new on every start, so no earlier run's or other server's counts
    add in, and only this user can read it; serve removes it when it stops.
    """
    if "prometheus_client" in sys.modules:
        raise Failure("internal error: prometheus_client was imported before serve set PROMETHEUS_MULTIPROC_DIR, "
                      "so each worker would count on its own", EXIT_INTERNAL)
    directory = Path(tempfile.mkdtemp(prefix="shipyard-metrics-"))  # created empty, mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def _forget_dead_worker(_arbiter, worker) -> None:
    """gunicorn's child_exit hook, in the master: a worker ended (stopped, crashed, restarted).

    Its counters stay in the directory, so totals never go back when a worker is replaced;
    only live gauges (none so far) are dropped with it.
    """
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


KEEPALIVE_SECONDS = 30  # idle keep-alive connections cost a socket in the worker's poller, not a thread


def _worker_class():
    from gunicorn.workers.gthread import ThreadWorker

    class ShipyardWorker(ThreadWorker):
        """gunicorn's gthread worker whose graceful stop also ends the agents' command long-polls.

        A long-poll waits up to 30 s for a command; without this, a worker told to stop
        waited for every open one (the agent polls again, and reaches a worker that serves).
        """

        def handle_exit(self, sig, frame) -> None:  # SIGTERM: finish the requests in hand, then stop
            self._end_long_polls()
            super().handle_exit(sig, frame)

        def handle_quit(self, sig, frame) -> None:  # SIGINT, SIGQUIT: stop now (the interpreter still joins
            self._end_long_polls()                  # the request threads, long-polls among them)
            super().handle_quit(sig, frame)

        @staticmethod
        def _end_long_polls() -> None:
            from webapp.agent_api import bell

            # not in the signal handler itself: it may have interrupted a thread holding the bell's lock
            threading.Thread(target=bell.close, name="shipyard-stop", daemon=True).start()

    return ShipyardWorker


def _gunicorn(options: dict):
    from gunicorn.app.base import BaseApplication

    class ShipyardServer(BaseApplication):
        """gunicorn through its Python API; each worker builds its own app (engine, reconciler)."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from webapp import create_app

            return create_app()

    return ShipyardServer()


@main.command()
@click.option("--bind", default="0.0.0.0:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 1024),
              help="Threads per worker (concurrent deploys to a cluster share one commit; a connected agent's "
                   "command long-poll holds one).")
@click.option("--timeout", default=120, show_default=True, type=click.IntRange(10, 3600),
              help="Seconds a request may take before its worker is restarted.")
def serve(bind: str, workers: int, threads: int, timeout: int) -> None:
    """Run the control plane for production with gunicorn; settings from SHIPYARD_* (see README).

    A PostgreSQL database is never migrated here: when it is not at the head
    revision, serve refuses to start (exit 7) and asks for `shipyard db upgrade`.
    /metrics counts every worker, whichever one a scrape reaches (through a private
    temporary directory, made at start and removed at exit).
    """
    metrics_directory = _private_metrics_directory()
    master = os.getpid()
    try:
        settings = _settings()
        check_migrated(settings)
        stderr.print(f"serving on {bind} with {workers} worker(s), database {_safe_url(settings['DATABASE_URL'])}")
        # every agent's command long-poll holds a thread: keep a quarter of each worker's (at least 4) for
        # everything else
        os.environ.setdefault("SHIPYARD_AGENT_LONG_POLLS", str(max(1, threads - max(4, threads // 4))))
        _limit_malloc_arenas()
        _share_with_workers()
        _gunicorn({
            "bind": [bind], "workers": workers, "threads": threads, "worker_class": _worker_class(),
            "timeout": timeout, "graceful_timeout": 30, "accesslog": None, "errorlog": "-",
            # agents and CLIs reuse their connections; with gunicorn's 2 s a request sent on a connection
            # idle for 2-5 s (httpx keeps them 5 s) raced the server closing it, and failed
            "keepalive": KEEPALIVE_SECONDS,
            "proc_name": "shipyard",
            "child_exit": _forget_dead_worker,
        }).run()
    finally:
        # gunicorn's workers are forked inside run() and leave through this frame too (sys.exit)
        if os.getpid() == master:
            shutil.rmtree(metrics_directory, ignore_errors=True)


# --- the API client: settings and credentials -------------------------------------------------------------


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "shipyard" / "credentials.json"


def read_credentials() -> dict:
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot read {path}: {exc}; run `shipyard login` again", EXIT_USAGE) from exc
    return data if isinstance(data, dict) else {}


def write_credentials(url: str, token: str) -> Path:
    """Store URL and token readable by the owner only (0600), replacing the file atomically."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump({"url": url, "token": token}, handle)
    os.replace(partial, path)
    return path


def _normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--url")
    return url


@dataclass
class Client:
    """/api/v1 of one server, with one API token; every failure becomes a Failure with its exit code."""

    url: str
    token: str
    output: str = "text"

    def __post_init__(self) -> None:
        from importlib.metadata import version

        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(120.0, connect=10.0), headers={
            "Authorization": f"Bearer {self.token}", "User-Agent": f"shipyard-cli/{version('shipyard')}"})

    def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        return _send(self.http, self.url, method, path, **kwargs)

    def call(self, method: str, path: str, *, filename: str | None = None, **kwargs) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code >= 400:
            raise failure_of(response, self.output, filename)
        return response.json() if response.content else None


def _send(http: httpx.Client, url: str, method: str, path: str, **kwargs) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise Failure(f"cannot reach the control plane at {url}: {exc.__class__.__name__}: {exc}",
                      EXIT_REPO, kind="unreachable") from exc


_STATUS_EXITS = {400: EXIT_INVALID, 401: EXIT_UNAUTHORIZED, 403: EXIT_UNAUTHORIZED, 404: EXIT_NOT_FOUND,
                 409: EXIT_INVALID, 413: EXIT_INVALID, 415: EXIT_INVALID, 503: EXIT_REPO}


def failure_of(response: httpx.Response, output: str, filename: str | None = None) -> Failure:
    """The exit code and message of an API error (webapp.errors: ``{"error": {"code", "message"}}``)."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    code = error.get("code") or f"http_{response.status_code}"
    message = error.get("message") or f"{response.status_code} {response.reason_phrase}"
    problems = [Problem(p.get("file", filename or "<request>"), p.get("line", 0), p.get("column", 0),
                        p.get("message", ""), p.get("path", "")) for p in error.get("problems") or []]
    if code in ("spec_invalid", "profile_invalid"):
        exit_code = EXIT_INVALID
    elif code == "render_failed":
        exit_code = EXIT_INTERNAL
    else:
        exit_code = _STATUS_EXITS.get(response.status_code, EXIT_INTERNAL)
    if exit_code == EXIT_UNAUTHORIZED and response.status_code == 401:
        message += "; run `shipyard login` (or set SHIPYARD_TOKEN)"
    return Failure(message, exit_code, problems, kind=code, output=output)


def api_options(command):
    """--url, --token and --output for the commands that call the API."""
    command = click.option("--token", envvar="SHIPYARD_TOKEN", show_envvar=True,
                           help="API token (default: the one `shipyard login` stored).")(command)
    command = click.option("--url", envvar="SHIPYARD_URL", show_envvar=True,
                           help="Control plane URL (default: the one `shipyard login` stored).")(command)
    return output_option(command)


def client(url: str | None, token: str | None, output: str) -> Client:
    stored = read_credentials()
    url = _normalize_url(url) if url else stored.get("url")
    if not url:
        raise Failure("no control plane URL: run `shipyard login --url URL`, or set SHIPYARD_URL", EXIT_USAGE,
                      output=output)
    if not token and stored.get("url") == url:
        token = stored.get("token")  # a stored token goes only to the server it was made for
    if not token:
        raise Failure(f"no API token for {url}: run `shipyard login --url {url}`, or set SHIPYARD_TOKEN",
                      EXIT_USAGE, output=output)
    return Client(url, token, output)


# --- shipyard login -------------------------------------------------------------------------------------------


class _CsrfField(HTMLParser):
    """Finds the value of the form's hidden ``csrf_token`` input."""

    def __init__(self) -> None:
        super().__init__()
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("name") == "csrf_token" and self.value is None:
            self.value = fields.get("value")


def _csrf_token(html: str) -> str | None:
    parser = _CsrfField()
    parser.feed(html)
    return parser.value


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--url", envvar="SHIPYARD_URL", show_envvar=True, help="Control plane URL.")
@click.option("--token", "given_token", help="Store this API token (for CI) instead of logging in.")
@click.option("--username", help="Local user (asked when not given).")
@click.option("--role", help="The token's role (default: tenant-admin if you hold it, else required).")
@click.option("--cluster", help="The token's cluster, for a cluster or workspace role.")
@click.option("--workspace", help="The token's workspace, for a workspace role.")
@click.option("--expires-in-days", default=90, show_default=True, type=click.IntRange(1, 366))
def login(url: str | None, given_token: str | None, username: str | None, role: str | None, cluster: str | None,
          workspace: str | None, expires_in_days: int) -> None:
    """Log in with a local user and store an API token for the other commands.

    The token is created through the web login (password never stored) and kept
    with the URL in $XDG_CONFIG_HOME/shipyard/credentials.json (~/.config by
    default), readable by you only. The password is read from the terminal, or from
    stdin when that is not a terminal.
    """
    url = _normalize_url(url or read_credentials().get("url") or click.prompt("Control plane URL",
                                                                                default="http://127.0.0.1:8080"))
    if given_token:
        whoami = Client(url, given_token).call("GET", "/api/v1/me")
        path = write_credentials(url, given_token)
        stderr.print(f"token of {whoami['user']['username']} for {url} stored in {path}")
        return
    username = username or click.prompt("Username")
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True)
    else:  # piped in (scripts, tests): getpass would warn that it cannot hide what is not typed
        password = sys.stdin.readline().rstrip("\r\n")
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0, connect=10.0)) as http:
        page = _send(http, url, "GET", "/login")
        csrf = _csrf_token(page.text) if page.status_code == 200 else None
        if csrf is None:
            raise Failure(f"{url}/login did not serve the login form ({page.status_code}); is that a Shipyard "
                          "control plane?", EXIT_INTERNAL)
        response = _send(http, url, "POST", "/login",
                         data={"csrf_token": csrf, "username": username, "password": password})
        if response.status_code == 401:
            raise Failure("wrong username or password", EXIT_UNAUTHORIZED)
        if response.status_code not in (302, 303):
            raise failure_of(response, "text")
        # A login starts a new session with a new CSRF secret: take the token a logged-in page carries.
        csrf = _csrf_token(_checked_page(_send(http, url, "GET", "/account")))
        if csrf is None:
            raise Failure(f"{url}/account carries no CSRF token after the login", EXIT_INTERNAL)
        headers = {"X-CSRFToken": csrf}
        me = _checked(_send(http, url, "GET", "/api/v1/me"))
        if role is None:
            if not any(g["role"] == "tenant-admin" and not g.get("cluster") for g in me["grants"]):
                held = ", ".join(f"{g['role']}" + (f" on {g['cluster']}" if g.get("cluster") else "")
                                 + (f":{g['workspace']}" if g.get("workspace") else "") for g in me["grants"])
                raise Failure(f"{username} is not tenant-admin; choose the token's --role (and --cluster, "
                              f"--workspace) from what you hold: {held or 'no roles yet'}", EXIT_USAGE)
            role = "tenant-admin"
        body = {"name": f"shipyard login on {socket.gethostname()}", "role": role,
                "expires_in_days": expires_in_days, "cluster": cluster, "workspace": workspace}
        created = _checked(_send(http, url, "POST", "/api/v1/tokens", json=body, headers=headers))
        _send(http, url, "POST", "/logout", data={"csrf_token": csrf})
    path = write_credentials(url, created["token"])
    scope = f" on {cluster}" + (f":{workspace}" if workspace else "") if cluster else ""
    stderr.print(f"logged in to {url} as {username}; a {role}{scope} token (expires {created['expires_at'][:10]}) "
                 f"is stored in {path}")


def _checked_page(response: httpx.Response) -> str:
    if response.status_code >= 400:
        raise failure_of(response, "text")
    return response.text


def _checked(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        raise failure_of(response, "text")
    return response.json()


# --- shipyard deploy / rollback / promote / apps / versions --------------------------------------------------------

APP_REF = re.compile(r"^(?P<cluster>[^:/\s]+):(?P<workspace>[^:/\s]+)/(?P<app>[^:/\s]+)$")


def _app_path(ref: str) -> str:
    match = APP_REF.match(ref)
    if not match:
        raise click.BadParameter(f"{ref!r}: write the app as CLUSTER:WORKSPACE/APP", param_hint="APP")
    return "/api/v1/apps/" + "/".join(quote(match[part], safe="") for part in ("cluster", "workspace", "app"))


def _versions_table(versions: list[dict]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("APP", "VERSION", "ACTION", "STATE", "COMMIT"):
        table.add_column(column, no_wrap=True)
    for version in versions:
        state = version["state"]
        if state == "committed" and version.get("changed") is False:
            state = "committed (no change)"
        table.add_row(version["app"], str(version["number"]), version["action"], state,
                      (version.get("commit") or "-")[:12])
    _stdout().print(table)
    for version in versions:
        for note in version.get("notes") or []:
            stderr.print(f"[yellow]note:[/yellow] {version['app']}: {note}")
        if version["state"] == "pending":
            stderr.print(f"{version['app']} v{version['number']}: accepted; the repository could not be written "
                         "now, the reconciler commits it")
        elif version["state"] == "failed":
            stderr.print(f"[red]failed:[/red] {version['app']} v{version['number']}: {version.get('error')}")


def _exit_if_failed(versions: list[dict], output: str) -> None:
    """A version that failed in the repository (e.g. a Service name clash) fails the command."""
    failed = [v for v in versions if v["state"] == "failed"]
    if not failed:
        return
    if output == "json":
        sys.exit(EXIT_INVALID)  # the document already printed says which, with their errors
    raise Failure(f"{len(failed)} version(s) failed", EXIT_INVALID, kind="failed")


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("files", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would change, as diffs; change nothing.")
@click.option("--source-commit", help="Commit of the spec repository this deploy comes from.")
@api_options
def deploy(files: tuple[str, ...], dry_run: bool, source_commit: str | None, url, token, output: str) -> None:
    """Deploy spec FILES (or directories of them) through the control plane; one request per file.

    Prints each new version (app, number, state, commit), or with --dry-run the diff
    of what would change. Spec problems are printed as FILE:LINE:COL: message.
    """
    api = client(url, token, output)
    results, first_failure = [], None
    for path in expand_paths(files):
        try:
            data = path.read_bytes()
        except OSError as exc:
            failure = Failure(f"cannot read {path}", EXIT_INVALID,
                              [Problem(str(path), 0, 0, f"cannot read file: {exc.strerror}")], "invalid", output)
        else:
            params = {"filename": str(path), "source": "cli", "dry_run": "true" if dry_run else "false"}
            if source_commit:
                params["source_commit"] = source_commit
            try:
                body = api.call("PUT", "/api/v1/apps", filename=str(path), content=data, params=params,
                                headers={"Content-Type": "application/yaml"})
            except Failure as exc:
                if exc.exit_code in (EXIT_UNAUTHORIZED, EXIT_REPO) and exc.kind != "repo_unavailable":
                    raise  # no use trying the other files
                failure = exc
            else:
                failure = None
                results.append({"file": str(path), "ok": True, **body})
                if output == "text":
                    _show_deploy(body)
        if failure is not None:
            results.append({"file": str(path), "ok": False, "error": failure.kind, "message": failure.message,
                            "problems": [p.as_dict() for p in failure.problems]})
            if output == "text":
                failure.show()
            first_failure = first_failure or failure
    created = [v for r in results for v in r.get("versions", [])]
    if output == "json":
        ok = first_failure is None and all(v["state"] != "failed" for v in created)
        _print_json({"ok": ok, "dry_run": dry_run, "files": results})
    if first_failure is not None:
        sys.exit(first_failure.exit_code)
    _exit_if_failed(created, output)


def _show_deploy(body: dict) -> None:
    if not body.get("dry_run"):
        _versions_table(body["versions"])
        return
    for change in body["apps"]:
        stderr.print(f"{change['app']}: {change['action']}")
        for note in change.get("notes") or []:
            stderr.print(f"[yellow]note:[/yellow] {change['app']}: {note}")
        if change["diff"]:
            click.echo(change["diff"], nl=not change["diff"].endswith("\n"))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.argument("version", type=click.IntRange(1))
@api_options
def rollback(app: str, version: int, url, token, output: str) -> None:
    """Deploy APP (CLUSTER:WORKSPACE/APP) as it was at VERSION; a new version records it."""
    api = client(url, token, output)
    created = api.call("POST", f"{_app_path(app)}/rollback", json={"version": version, "source": "cli"})
    _show_versions([created], output)


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """``a.b=value`` pairs as a nested dict; values are YAML (``3`` is a number, ``null`` removes the field)."""
    overrides: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE, KEY may be dotted (resources.cpu_limit=2)",
                                     param_hint="--set")
        try:
            documents = load_documents(raw, f"--set {key}")
        except SpecError as exc:
            raise click.BadParameter(f"{pair!r}: {exc.problems[0].message}", param_hint="--set") from exc
        value = documents[0].data if documents else None
        target = overrides
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{pair!r}: {part} is set to a value already", param_hint="--set")
        target[parts[-1]] = value
    return overrides


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--to", "target", required=True, help="CLUSTER:WORKSPACE to promote into.")
@click.option("--version", "number", type=click.IntRange(1), help="The version to promote (default: current).")
@click.option("--name", help="The app's name in the target (default: the same).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change a field of the spec, e.g. --set replicas=3 --set env.LOG_LEVEL=debug (repeatable).")
@api_options
def promote(app: str, target: str, number: int | None, name: str | None, settings: tuple[str, ...], url, token,
            output: str) -> None:
    """Deploy a version of APP (CLUSTER:WORKSPACE/APP) into another workspace or cluster."""
    if target.count(":") != 1 or not all(target.split(":")):
        raise click.BadParameter(f"{target!r}: write the target as CLUSTER:WORKSPACE", param_hint="--to")
    body: dict[str, Any] = {"target": target, "source": "cli", "overrides": parse_overrides(settings)}
    if number is not None:
        body["version"] = number
    if name is not None:
        body["name"] = name
    api = client(url, token, output)
    _show_versions([api.call("POST", f"{_app_path(app)}/promote", json=body)], output)


def _show_versions(versions: list[dict], output: str) -> None:
    if output == "json":
        _print_json({"ok": True, "versions": versions})
    else:
        _versions_table(versions)
    _exit_if_failed(versions, output)


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--cluster", help="Only this cluster's apps.")
@click.option("--workspace", help="Only this workspace's apps (with --cluster).")
@api_options
def apps(cluster: str | None, workspace: str | None, url, token, output: str) -> None:
    """List the apps you may read, with their current version."""
    api = client(url, token, output)
    rows, after = [], None
    while True:
        params = {k: v for k, v in {"cluster": cluster, "workspace": workspace, "after": after}.items() if v}
        page = api.call("GET", "/api/v1/apps", params=params)
        rows.extend(page["apps"])
        after = page.get("next")
        if not after:
            break
    if output == "json":
        _print_json({"apps": rows})
        return
    table = Table(box=None, pad_edge=False)
    for column in ("APP", "KIND", "CURRENT", "VERSIONS", "UPDATED"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(f"{row['cluster']}:{row['workspace']}/{row['name']}", row["kind"],
                      str(row["current_version"] or "-"), str(row["versions"]), (row["updated_at"] or "")[:19])
    _stdout().print(table)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@api_options
def versions(app: str, limit: int, url, token, output: str) -> None:
    """List the versions of APP (CLUSTER:WORKSPACE/APP), newest first."""
    api = client(url, token, output)
    rows = api.call("GET", f"{_app_path(app)}/versions", params={"limit": limit})["versions"]
    if output == "json":
        _print_json({"versions": rows})
        return
    table = Table(box=None, pad_edge=False)
    for column in ("VERSION", "ACTION", "STATE", "COMMIT", "AUTHOR", "SOURCE", "CREATED"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(str(row["number"]), row["action"], row["state"], (row.get("commit") or "-")[:12],
                      row["author"], row["source"], (row["created_at"] or "")[:19])
    _stdout().print(table)


@main.command("agent")
def agent_command() -> None:
    """Run the cluster agent (settings from SHIPYARD_URL, SHIPYARD_TENANT, SHIPYARD_CLUSTER, SHIPYARD_AGENT_TOKEN...).

    The same process as `python -m agent`; see agent/settings.py for every variable.
    """
    from agent.main import main as agent_main  # the agent never imports webapp; only this way round

    sys.exit(agent_main())


if __name__ == "__main__":  # pragma: no cover
    main()
