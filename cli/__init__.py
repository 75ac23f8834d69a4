"""The ``shipyard`` command line: one click group, three kinds of commands.

    cli.group     the group, which loads each command's module when it runs
    cli.exits     the exit-code table and ``Failure``, the one error printer
    cli.output    --output text|json, JSON documents, plain lines, rich tables
    cli.offline   validate, render, apply, delete: files and repositories alone
    cli.client    login, deploy, rollback, promote, apps, versions: /api/v1 over httpx
    cli.up        up: the embedded control plane, its first start, the simulated cluster
    cli.serve     serve: gunicorn workers for production
    cli.server    db, admin, agent, and the settings every server command reads

It sits above every other layer (it may import renderer, gitops, webapp and
agent), but the offline and client commands never import the server stack, so
they start at once; tests/test_cli_imports.py holds them to it.
"""

from cli.group import main

__all__ = ["main"]
