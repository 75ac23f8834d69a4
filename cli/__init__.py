"""The ``shipyard`` command line: one click group, three kinds of commands.

    cli.group     the group, which loads each command's module when it runs
    cli.exits     the exit-code table and ``Failure``, the one error printer
    cli.output    --output text|json|yaml, documents for scripts, plain lines, rich tables
    cli.prompts   what a command asks at the terminal: a yes before a change, a password
    cli.offline   validate, render, apply, delete: files and repositories alone
    cli.client    login, deploy, rollback, promote, apps, versions, status: /api/v1 over httpx
    cli.watch     the apps and status views, and their -w/--watch
    cli.wait      --wait: follow new versions until their clusters run them (or the app is gone)
    cli.plan      plan: what a merge request would change, from the control plane or --offline;
                  cli.plan_format shows it as text, or as Markdown for the merge request
    cli.operate   logs, restart, refresh, run, runs: acting on a running app
    cli.history   diff of two versions; delete, through the control plane or offline
    cli.places    clusters (register, install steps, tokens) and workspaces
    cli.access    users, role bindings, API tokens, the audit log
    cli.up        up: the embedded control plane, its first start, the simulated cluster
    cli.serve     serve: gunicorn workers for production
    cli.server    db, admin, agent, and the settings every server command reads

It sits above every other layer (it may import renderer, gitops, webapp and
agent), but the offline and client commands never import the server stack, so
they start at once; tests/test_cli_imports.py holds them to it.
"""

from cli.group import main

__all__ = ["main"]
