"""The ``shipyard`` click group: every command, each loaded only when it runs.

Commands live in modules by concern (``cli.offline``, ``cli.client``,
``cli.up``, ``cli.serve``, ``cli.server``); the group names them here and
imports a command's module only when that command runs (or ``--help`` lists
them). So ``shipyard --version``
imports click and nothing else of Shipyard, ``validate`` imports the renderer,
``deploy`` httpx, and only ``up``, ``serve``, ``db`` and ``admin`` the server
stack (Flask, SQLAlchemy, Alembic, gunicorn).

The base install (``pip install shipyard``) carries what the offline and client
commands need; the server commands need ``shipyard[server]`` and the agent
``shipyard[agent]`` (pyproject.toml). Run without them, a command says which
extra to install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib

import click

from cli.exits import EXIT_CODES_HELP, EXIT_USAGE, Failure

# name -> "module:attribute"; --help lists them in this order
COMMANDS = {
    "validate": "cli.offline:validate",
    "render": "cli.offline:render",
    "apply": "cli.offline:apply",
    "delete": "cli.history:delete",
    "up": "cli.up:up",
    "serve": "cli.serve:serve",
    "db": "cli.server:db_group",
    "admin": "cli.server:admin_group",
    "agent": "cli.server:agent_command",
    "login": "cli.client:login",
    "logout": "cli.client:logout",
    "contexts": "cli.contexts:contexts",
    "deploy": "cli.client:deploy",
    "plan": "cli.plan:plan",
    "rollback": "cli.client:rollback",
    "promote": "cli.client:promote",
    "apps": "cli.client:apps",
    "versions": "cli.client:versions",
    "status": "cli.client:status",
    "diff": "cli.history:diff",
    "trace": "cli.history:trace",
    "logs": "cli.operate:logs",
    "restart": "cli.operate:restart",
    "refresh": "cli.operate:refresh",
    "run": "cli.operate:run",
    "runs": "cli.operate:runs",
    "clusters": "cli.places:clusters_group",
    "workspaces": "cli.places:workspaces_group",
    "users": "cli.access:users_group",
    "bindings": "cli.access:bindings_group",
    "tokens": "cli.access:tokens_group",
    "audit": "cli.access:audit",
    "repos": "cli.repos:repos",
    "repo": "cli.repos:repo_group",
    "webhooks": "cli.webhooks:webhooks",
    "webhook": "cli.webhooks:webhook_group",
}

# the commands that need an extra of the install, by name
EXTRAS = {"up": "server", "serve": "server", "db": "server", "admin": "server", "agent": "agent"}
_OWN = frozenset(("cli", "contract", "renderer", "gitops", "webapp", "agent", "simulation"))


class LazyGroup(click.Group):
    """A group whose commands are imported by name when they are looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as error:
            command, missing = ctx.invoked_subcommand, (error.name or "").partition(".")[0]
            extra = EXTRAS.get(command or "")
            if extra is None or not missing or missing in _OWN:
                raise  # a library a base command needs, or a module of Shipyard's own: a bug
            raise Failure(f"`shipyard {command}` needs what `pip install 'shipyard[{extra}]'` installs "
                          f"({missing} is missing)", EXIT_USAGE) from error


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="shipyard")
def main() -> None:
    """Shipyard: deploy specs in, validated manifests committed for ArgoCD out.

    \b
    Offline:        validate, render, apply, delete (--repo)
    Control plane:  up (embedded), serve (production), db, admin
    API client:     login, logout, contexts, deploy, plan (also --offline), rollback, promote,
                    apps, versions, status, diff, trace, delete, logs, restart, refresh, run, runs,
                    clusters, workspaces, users, bindings, tokens, audit,
                    repos, repo (spec repositories: register, status, sync, delete),
                    webhooks, webhook (status webhooks: create, show, update, delete, rotate-secret,
                    deliveries, redeliver, test)
    """
