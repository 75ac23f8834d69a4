"""The server commands: ``up``, ``serve``, ``db``, ``admin``, and ``agent``.

``shipyard up``             the embedded default: SQLite and cluster repositories in a data
                            directory, a demo cluster on first start, a threaded server on
                            localhost
``shipyard serve``          production: gunicorn workers over ``create_app()``, configured by
                            ``SHIPYARD_*``; refuses a database that is not migrated
``shipyard db``             ``upgrade`` and ``current`` (Alembic, through gitops.db)
``shipyard admin``          ``reset-password`` for a local user
``shipyard agent``          the cluster agent, the same process as ``python -m agent``

The server stack (Flask, SQLAlchemy, Alembic, gunicorn, gitops' services) is
imported inside the functions that use it, never at the top: ``--help`` loads
this module to list its commands, and ``serve`` must set PROMETHEUS_MULTIPROC_DIR
before anything imports prometheus_client (see ``_private_metrics_directory``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.exits import EXIT_INTERNAL, EXIT_NOT_FOUND, EXIT_NOT_READY, Failure
from cli.output import output_option, print_json, stderr
from contract.errors import NotFound, ShipyardError

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent
DEMO_PROFILE = ROOT / "fixtures" / "clusters" / "demo.yaml"
DEMO_SPECS = ROOT / "fixtures" / "specs"
DEMO_CLUSTER = "demo"
# The examples' tfy-secret:// references name secret groups of the TrueFoundry tenant "acme": store
# paths acme/<group>, outside every workspace's own <workspace>/ (gitops.isolation). The demo
# cluster lets its workspaces use them, as a cluster-admin would.
DEMO_SECRET_PATHS = ["acme/"]
ADMIN = "admin"


# --- configuration shared by up, serve, db and admin -------------------------------------------


def _settings(overrides: dict | None = None) -> dict:
    """The settings the app would run with (defaults, file, SHIPYARD_* env, ``overrides``).

    The one loader (webapp.config) decides, so the migration check of ``serve`` looks at
    exactly the database the workers will open.
    """
    from flask import Flask

    from webapp import config as config_module

    holder = Flask("shipyard")
    config_module.load(holder, overrides)
    return dict(holder.config)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _engine(url: str) -> Engine:
    from gitops import db

    return db.make_engine(url, pool_size=1)


def _revisions(engine: Engine, url: str) -> tuple[str | None, str | None]:
    from sqlalchemy.exc import SQLAlchemyError

    from gitops import db

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


@click.group("db")
def db_group() -> None:
    """Database migrations (Alembic). Production databases are migrated only by `db upgrade`."""


@db_group.command("upgrade")
@database_url_option
@data_option
def db_upgrade(database_url: str | None, data_dir: Path) -> None:
    """Migrate the database to the head revision (safe to run again: it then does nothing)."""
    from sqlalchemy.exc import SQLAlchemyError

    from gitops import db

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
        print_json({"database": _safe_url(url), "current": current, "head": head, "up_to_date": current == head})
        return
    click.echo(f"database: {_safe_url(url)}")
    click.echo(f"current:  {current or '(empty: not migrated)'}")
    click.echo(f"head:     {head}" + ("" if current == head else "  (run `shipyard db upgrade`)"))


# --- shipyard admin ---------------------------------------------------------------------------------


@click.group("admin")
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
    from gitops import accounts, db

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
            try:
                accounts.reset_password(session, settings["TENANT"], username, password,
                                        by="shipyard admin reset-password")
            except NotFound as exc:
                raise Failure(str(exc), EXIT_NOT_FOUND) from exc
            except ShipyardError as exc:
                raise Failure.of(exc) from exc
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
    from sqlalchemy import select

    from gitops import accounts, clusters, isolation
    from gitops import workspaces as workspace_service
    from gitops.models import User
    from gitops.service_context import Context
    from renderer.paths import expand_paths
    from renderer.spec import load_spec_files

    with plane.sessions() as session:
        tenant = accounts.ensure_tenant(session, tenant_name)
        if session.scalar(select(User.id).where(User.tenant_id == tenant.id).limit(1)) is not None:
            return None
        password = secrets.token_urlsafe(18)
        principal = accounts.create_first_admin(session, tenant, ADMIN, password, by="shipyard up")
        if not (DEMO_PROFILE.is_file() and DEMO_SPECS.is_dir()):
            session.commit()
            return Seeded(password, None, [], [])
        ctx = Context(session, principal, plane.repos, committers=plane.committers, worker=plane.worker,
                      schemas=plane.schemas)
        spec_files = expand_paths([DEMO_SPECS])
        workspaces = sorted({spec.workspace for spec in load_spec_files(spec_files)})
        new = clusters.create_cluster(ctx, DEMO_CLUSTER, DEMO_PROFILE.read_text())
        isolation.set_cluster_secret_paths(ctx, new.cluster, DEMO_SECRET_PATHS)
        for name in workspaces:
            workspace_service.create_workspace(ctx, new.cluster, {"name": name})
        session.commit()
        from gitops import deploy as deploy_service  # it imports prometheus_client: see serve

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


@click.command()
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
    plane (the simulation package: ArgoCD and a cluster played in this process) reads
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
    from sqlalchemy import select

    from gitops import accounts, clusters
    from gitops.models import Cluster, Tenant, User
    from gitops.service_context import Context

    with plane.sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
        user = tenant and session.scalar(select(User).where(User.tenant_id == tenant.id, User.username == ADMIN))
        cluster = tenant and session.scalar(select(Cluster).where(Cluster.tenant_id == tenant.id,
                                                                  Cluster.name == DEMO_CLUSTER))
        if user is None or cluster is None:
            return None
        ctx = Context(session, accounts.principal_for(session, user), plane.repos)
        try:
            tokens = (clusters.rotate_token(ctx, cluster, "read"), clusters.rotate_token(ctx, cluster, "agent"))
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
    from simulation import SimulationSettings, start_in_background
    from gitops import clusters

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
    from gitops import db

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


def _share_with_workers(crd_schemas: str | None) -> None:
    """Load, before gunicorn forks the workers, what every worker would load for itself.

    The workers then share those pages with this process instead of each holding a copy:
    the app's modules, the spec validators and the Kubernetes schemas of the default
    version. ``gc.freeze`` keeps the collector of each worker from writing to (and so
    copying) every object it inherited.
    """
    import gc

    from renderer.kube import KubeSchemas
    from renderer.render import warm_up
    from webapp import agent_api, api, githttp_routes, oidc, pages  # noqa: F401 - what create_app imports

    warm_up(KubeSchemas.from_setting(crd_schemas))
    gc.collect()
    gc.freeze()


def _private_metrics_directory() -> Path:
    """A new directory (mode 0700) for the workers' metrics, named in PROMETHEUS_MULTIPROC_DIR.

    A scrape of /metrics reaches one worker, which alone counted only its own requests. With
    the directory set, prometheus_client writes each worker's values to files in it and the
    worker that answers sums them all (gitops.metrics). prometheus_client chooses how it keeps
    values when it is first imported, so this runs before anything imports it, here in the
    master whose modules the workers inherit (this module imports the server stack late for
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

        def _end_long_polls(self) -> None:
            # the worker's app (gunicorn sets wsgi when it loads it; a failed load has no extensions)
            control = getattr(getattr(self, "wsgi", None), "extensions", {}).get("shipyard")
            if control is not None:
                # not in the signal handler itself: it may have interrupted a thread holding the bell's lock
                threading.Thread(target=control.bell.close, name="shipyard-stop", daemon=True).start()

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


@click.command()
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
        _share_with_workers(settings["CRD_SCHEMAS"])
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


@click.command("agent")
def agent_command() -> None:
    """Run the cluster agent (settings from SHIPYARD_URL, SHIPYARD_TENANT, SHIPYARD_CLUSTER, SHIPYARD_AGENT_TOKEN...).

    The same process as `python -m agent`; see agent/settings.py for every variable.
    """
    from agent.main import main as agent_main  # the agent never imports webapp; only this way round

    sys.exit(agent_main())
