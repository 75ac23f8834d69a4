"""``shipyard up``: the embedded default, and what its first start sets up.

SQLite and the cluster repositories in a data directory, a threaded server on
localhost, and on the first start the user ``admin``, the demo cluster
(``fixtures/clusters/demo.yaml``) with the workspaces of the examples, every
example deployed, and a simulated compute plane reporting for it (unless
``--no-simulate``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from cli.exits import EXIT_INTERNAL, EXIT_NOT_READY, Failure
from contract.errors import PermissionDenied, ShipyardError

if TYPE_CHECKING:
    from flask import Flask
from cli.server import ADMIN, data_option

ROOT = Path(__file__).resolve().parent.parent
DEMO_PROFILE = ROOT / "fixtures" / "clusters" / "demo.yaml"
DEMO_SPECS = ROOT / "fixtures" / "specs"
DEMO_CLUSTER = "demo"
# The examples' tfy-secret:// references name secret groups of the TrueFoundry tenant "acme": store
# paths acme/<group>, outside every workspace's own <workspace>/ (gitops.isolation). The demo
# cluster lets its workspaces use them, as a cluster-admin would.
DEMO_SECRET_PATHS = ["acme/"]


@dataclass
class Seeded:
    """What the first start of ``up`` created, to print once."""

    password: str
    read_token: str | None
    workspaces: list[str]
    versions: list[str]
    agent_token: str | None = None  # for the simulated compute plane of the demo cluster


def seed_first_start(plane, tenant_name: str, public_url: str) -> Seeded | None:
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
        new = clusters.create_cluster(ctx, DEMO_CLUSTER, demo_profile_text(public_url, tenant_name))
        isolation.set_cluster_secret_paths(ctx, new.cluster, DEMO_SECRET_PATHS)
        for name in workspaces:
            workspace_service.create_workspace(ctx, new.cluster, {"name": name})
        session.commit()
        from gitops import (
            deploy as deploy_service,  # it imports prometheus_client: see serve
        )

        versions = []
        for path in spec_files:
            for version in deploy_service.deploy(ctx, path.read_text(), filename=str(path.relative_to(ROOT)),
                                                 source="cli"):
                versions.append(f"{DEMO_CLUSTER}:{version.application.workspace.name}/"
                                f"{version.application.name} v{version.number} {version.state}")
        return Seeded(password, new.read_token, workspaces, versions, new.agent_token)


def demo_profile_text(public_url: str, tenant_name: str) -> str:
    """The demo profile with its repository where this server serves it: ``<public_url>/git/<tenant>/demo.git``.

    The profile's own text is kept (its comments included); only the value of ``git.repo_url``,
    which names the port and tenant of a default start, is replaced, and the ``agent`` section's
    ``url`` (the control plane its agent connects to) when the profile has one.
    """
    text = DEMO_PROFILE.read_text()
    address = public_url.rstrip("/")
    repo_url = f"{address}/git/{tenant_name}/{DEMO_CLUSTER}.git"
    replaced, count = re.subn(r"(?m)^(\s+repo_url:\s*)\S+", lambda match: match.group(1) + repo_url, text, count=1)
    if not count:
        raise ShipyardError(f"{DEMO_PROFILE} has no git.repo_url to point at this server")
    return re.sub(r"(?m)^(agent:[ \t]*\n(?:[ \t]*(?:#.*)?\n|[ \t]+\S.*\n)*?[ \t]+url:[ \t]*)\S+",
                  lambda match: match.group(1) + address, replaced, count=1)


def _seeded_address(repo_url: str, tenant_name: str) -> str | None:
    """The server address a demo profile's repository URL was written for (demo_profile_text), if any."""
    suffix = f"/git/{tenant_name}/{DEMO_CLUSTER}.git"
    return repo_url[: -len(suffix)] if repo_url.endswith(suffix) else None


def _local_address(url: str) -> bool:
    """Whether ``url`` is an address ``up`` derives from --host and --port (``http://<IP or localhost>:<port>``),
    rather than a public URL someone configured (SHIPYARD_PUBLIC_URL with a name, https or a path)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or port is None or parts.path or parts.query or parts.username is not None:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return False
    return True


def follow_new_address(plane, tenant_name: str, public_url: str) -> tuple[str, str | None] | None:
    """Point the demo cluster the first start seeded at this start's address; (the address it left, the commit).

    Only what Shipyard itself wrote: the cluster "demo" whose profile is exactly the text the
    first start gave it for its previous address (demo_profile_text; a profile anyone changed is
    left alone), and only when that address was a local one ``up`` derived (never a public URL
    someone configured). The new text, the same with this start's address, replaces it as the
    demo's admin, and what depends on it is written again (gitops.clusters.replace_profile);
    None when there was nothing to follow.
    """
    from sqlalchemy import select

    from gitops import accounts, clusters
    from gitops.models import Cluster, Tenant, User
    from gitops.service_context import Context

    new_address = public_url.rstrip("/")
    with plane.sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
        user = tenant and session.scalar(select(User).where(User.tenant_id == tenant.id, User.username == ADMIN))
        cluster = tenant and session.scalar(select(Cluster).where(Cluster.tenant_id == tenant.id,
                                                                  Cluster.name == DEMO_CLUSTER))
        if user is None or cluster is None or not DEMO_PROFILE.is_file():
            return None
        previous = _seeded_address(clusters.profile_of(cluster).repo_url, tenant_name)
        if previous is None or previous == new_address or not _local_address(previous):
            return None
        if cluster.profile_text != demo_profile_text(previous, tenant_name):
            return None  # not the seeded text: someone changed the profile, and it is theirs
        ctx = Context(session, accounts.principal_for(session, user), plane.repos, schemas=plane.schemas)
        try:
            result = clusters.replace_profile(ctx, cluster, demo_profile_text(new_address, tenant_name),
                                              {"by": "shipyard up", "address": {"from": previous, "to": new_address}})
        except PermissionDenied:
            return None  # the admin is no longer allowed to: leave the cluster alone
        session.commit()
        return previous, result.commit_id


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
@click.option("--simulated-poll", "simulated_poll", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="How often the simulated compute plane reads the repository unasked (default: ArgoCD's 180). "
                   "Commits reach it at once through the refresh the control plane sends its agent.")
def up(data_dir: Path, host: str, port: int, no_simulate: bool, simulated_poll: float | None) -> None:
    """Run the control plane on this machine: SQLite and git repositories in --data.

    The first start creates the user "admin" (its password is printed once), the
    cluster "demo" from fixtures/clusters/demo.yaml with the workspaces of
    fixtures/specs, and deploys those examples. Later starts reuse the data
    directory and create nothing. Unless --no-simulate, a SIMULATED compute
    plane (the simulation package: ArgoCD and a cluster played in this process) reads
    the demo cluster's repository over git and reports sync and health, so
    deploys go all the way to Healthy: at once after each commit, told by the
    refresh the control plane sends its agent, and every --simulated-poll
    seconds as ArgoCD polls. Ctrl-C stops the server.
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
            seeded = seed_first_start(plane, app.config["TENANT"], url)
            moved = follow_new_address(plane, app.config["TENANT"], url) if seeded is None else None
        except ShipyardError as exc:
            server.server_close()
            raise Failure(f"could not set up the demo: {exc}", EXIT_INTERNAL) from exc
        _announce(url, data_dir, app.config["TENANT"], seeded, reusing, moved)
        simulation = None if no_simulate else _start_simulation(app, data_dir, _display_url(host, port), url, seeded,
                                                                 simulated_poll)
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


def _start_simulation(app: Flask, data_dir: Path, url: str, public_url: str, seeded: Seeded | None,
                      poll_seconds: float | None = None):
    """The simulated compute plane of the demo cluster in a daemon thread; the event that stops it, or None.

    It needs the demo cluster's read and agent tokens, which exist in plain text only when
    they are made and are kept nowhere (only their hashes): the first start passes on the
    ones it created; a later start makes new ones (the read token printed before stops
    working, so the new one is printed; --no-simulate leaves the tokens alone). It reads the
    repository every ``poll_seconds`` (default: ArgoCD's), and at once on the refresh after a commit.
    """
    from gitops import clusters
    from simulation import ARGOCD_POLL_SECONDS, SimulationSettings, start_in_background

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
        poll_seconds=poll_seconds or ARGOCD_POLL_SECONDS, step_seconds=2.0, rollout_seconds=4.0, heartbeat_seconds=10.0,
        switch_file=data_dir / SIMULATION_SWITCHES,
        kubernetes_version=profile.kubernetes_version if profile else None,
        addons=sorted(profile.addons) if profile else [])
    # the server's access log already has each of the simulated agent's requests; httpx would log them twice
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _cluster, stop, _thread = start_in_background(settings)
    click.echo(f'Cluster "{DEMO_CLUSTER}" is SIMULATED: no Kubernetes, no ArgoCD. A simulated compute plane in this '
               "process reads its repository over git and reports sync and health as an agent would "
               "(--no-simulate turns it off). Each commit reaches it at once through the agent's refresh; "
               f"without one it would look only every {settings.poll_seconds:g} s, as ArgoCD polls "
               f"(--simulated-poll). Faults are switched on in {settings.switch_file}, e.g.")
    click.echo('  storefront/web: {pods: CrashLoopBackOff}   # or {health: Degraded, message: "..."}, '
               "{sync: Failed}, {rollout_seconds: 60}")
    return stop


def _announce(url: str, data_dir: Path, tenant: str, seeded: Seeded | None, reusing: bool,
              moved: tuple[str, str | None] | None = None) -> None:
    if seeded is None:
        click.echo(f"Reusing the data directory {data_dir}: nothing created.")
        click.echo(f"  log in at {url}/login (forgot the admin password? "
                   f"shipyard admin reset-password --data {data_dir})")
        if moved is not None:
            previous, commit = moved
            click.echo(f'  cluster "{DEMO_CLUSTER}" was set up for {previous}: its repository URL now names {url}'
                       + (f" (commit {commit[:12]})" if commit else ""))
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
