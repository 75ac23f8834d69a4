"""The server's operator commands, ``db``, ``admin`` and ``agent``, and the settings every server command reads.

``shipyard db``             ``upgrade`` and ``current`` (Alembic, through gitops.db)
``shipyard admin``          ``create-admin``, the first tenant-admin; ``reset-password`` for a local user
``shipyard agent``          the cluster agent, the same process as ``python -m agent``

``shipyard up`` is cli.up, ``shipyard serve`` cli.serve. The server stack
(Flask, SQLAlchemy, Alembic, gunicorn, gitops' services) is imported inside the
functions that use it, never at the top: ``--help`` loads these modules to list
their commands, and ``serve`` must set PROMETHEUS_MULTIPROC_DIR before anything
imports prometheus_client.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.exits import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_NOT_READY, Failure
from cli.output import output_option, print_json
from contract.errors import NotFound, ShipyardError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

ADMIN = "admin"


# --- configuration shared by up, serve, db and admin -------------------------------------------


def server_settings(overrides: dict | None = None) -> dict:
    """The settings the app would run with (defaults, file, SHIPYARD_* env, ``overrides``).

    The one loader (webapp.config) decides, so the migration check of ``serve`` looks at
    exactly the database the workers will open.
    """
    from flask import Flask

    from webapp import config as config_module

    holder = Flask("shipyard")
    config_module.load(holder, overrides)
    return dict(holder.config)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_engine(url: str) -> Engine:
    from gitops import db

    return db.make_engine(url, pool_size=1)


def db_revisions(engine: Engine, url: str) -> tuple[str | None, str | None]:
    from sqlalchemy.exc import SQLAlchemyError

    from gitops import db

    try:
        return db.current_revision(engine), db.head_revision()
    except SQLAlchemyError as exc:
        raise Failure(f"cannot read the database {safe_url(url)}: {exc.__class__.__name__}: "
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


def check_migrated(settings: dict) -> None:
    """Refuse a database that is not at the head revision, unless AUTO_MIGRATE (SQLite's default) is on.

    Runs once, in gunicorn's master, before any worker opens the database: so N workers
    never race to migrate, and a PostgreSQL schema only ever changes through
    ``shipyard db upgrade``.
    """
    from gitops import db

    url = settings["DATABASE_URL"]
    engine = open_engine(url)
    try:
        current, head = db_revisions(engine, url)
        if current == head:
            return
        if settings["AUTO_MIGRATE"]:
            db.upgrade(engine)
            return
    finally:
        engine.dispose()
    state = "empty (never migrated)" if current is None else f"at revision {current}"
    raise Failure(
        f"the database {safe_url(url)} is {state}, not at the head revision {head}: "
        f"run `shipyard db upgrade` first (with SHIPYARD_DATABASE_URL set the same way)", EXIT_NOT_READY)


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

    settings = server_settings({"DATA_DIR": str(data_dir), **({"DATABASE_URL": database_url} if database_url else {})})
    url = settings["DATABASE_URL"]
    engine = open_engine(url)
    try:
        before, head = db_revisions(engine, url)
        if before == head:
            click.echo(f"{safe_url(url)}: already at {head}")
            return
        try:
            db.upgrade(engine)
        except SQLAlchemyError as exc:
            raise Failure(f"migration failed: {exc}", EXIT_NOT_READY) from exc
        click.echo(f"{safe_url(url)}: upgraded from {before or 'an empty database'} to {head}")
    finally:
        engine.dispose()


@db_group.command("current")
@database_url_option
@data_option
@output_option
def db_current(database_url: str | None, data_dir: Path, output: str) -> None:
    """Show the database's revision and the head revision of this Shipyard."""
    settings = server_settings({"DATA_DIR": str(data_dir), **({"DATABASE_URL": database_url} if database_url else {})})
    url = settings["DATABASE_URL"]
    engine = open_engine(url)
    try:
        current, head = db_revisions(engine, url)
    finally:
        engine.dispose()
    if output == "json":
        print_json({"database": safe_url(url), "current": current, "head": head, "up_to_date": current == head})
        return
    click.echo(f"database: {safe_url(url)}")
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
    from gitops import accounts

    password = _new_password(ask)
    with _migrated_session(database_url, data_dir) as (session, settings):
        accounts.reset_password(session, settings["TENANT"], username, password, by="shipyard admin reset-password")
    click.echo(f'password of "{username}" changed' if ask else f'new password of "{username}" (shown once): {password}')


@admin_group.command("create-admin")
@click.option("--username", default=ADMIN, show_default=True, help="The new tenant-admin.")
@click.option("--prompt", "ask", is_flag=True, help="Ask for the password instead of generating one.")
@database_url_option
@data_option
def create_admin(username: str, ask: bool, database_url: str | None, data_dir: Path) -> None:
    """Create the tenant's first local user, a tenant-admin, on a new `shipyard serve` install.

    `shipyard up` makes its own on its first start; with OIDC, OIDC_GROUP_ROLES gives the roles
    instead. Refused once the tenant has a user: they add the others (`shipyard users create`).
    Without --prompt a password is generated and printed once; only its hash is stored.
    """
    from sqlalchemy import select

    from gitops import accounts
    from gitops.models import User

    password = _new_password(ask)
    with _migrated_session(database_url, data_dir) as (session, settings):
        tenant = accounts.ensure_tenant(session, settings["TENANT"])
        if session.scalar(select(User.id).where(User.tenant_id == tenant.id).limit(1)) is not None:
            raise Failure(f'tenant "{tenant.name}" already has users: a tenant-admin among them adds more '
                          "(`shipyard users create`), and `shipyard admin reset-password` gives one a new password",
                          EXIT_INVALID)
        accounts.create_first_admin(session, tenant, username, password, by="shipyard admin create-admin")
    click.echo(f'tenant-admin "{username}" created' if ask
               else f'tenant-admin "{username}" created; password (shown once): {password}')


def _new_password(ask: bool) -> str:
    if ask:
        return click.prompt("New password", hide_input=True, confirmation_prompt=True)
    return secrets.token_urlsafe(18)


@contextmanager
def _migrated_session(database_url: str | None, data_dir: Path) -> Iterator[tuple[Session, dict]]:
    """A transaction on the server's database, which must be migrated; the service's errors as Failures."""
    from gitops import db

    settings = server_settings({"DATA_DIR": str(data_dir), **({"DATABASE_URL": database_url} if database_url else {})})
    url = settings["DATABASE_URL"]
    engine = open_engine(url)
    try:
        current, head = db_revisions(engine, url)
        if current is None:
            raise Failure(f"no Shipyard database at {safe_url(url)}; start `shipyard up` (or run "
                          "`shipyard db upgrade`) first", EXIT_NOT_FOUND)
        if current != head:
            raise Failure(f"the database is at {current}, not {head}: run `shipyard db upgrade`", EXIT_NOT_READY)
        with db.session_factory(engine).begin() as session:
            try:
                yield session, settings
            except NotFound as exc:
                raise Failure(str(exc), EXIT_NOT_FOUND) from exc
            except ShipyardError as exc:
                raise Failure.of(exc) from exc
    finally:
        engine.dispose()


@click.command("agent")
def agent_command() -> None:
    """Run the cluster agent (settings from SHIPYARD_URL, SHIPYARD_TENANT, SHIPYARD_CLUSTER, SHIPYARD_AGENT_TOKEN...).

    The same process as `python -m agent`; see agent/settings.py for every variable.
    """
    from agent.main import (
        main as agent_main,  # the agent never imports webapp; only this way round
    )

    sys.exit(agent_main())
