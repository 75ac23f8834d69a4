"""``python -m cli``: the ``shipyard`` command, for a checkout with no console script installed."""

from cli.group import main

main(prog_name="shipyard")
