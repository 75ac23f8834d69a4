"""What a command asks of the person at the terminal: a yes before a change that cannot be undone, a password.

A script has no one to ask. Without a terminal on stdin a change that needs a yes is
refused unless the command was given ``--yes`` (exit 2, nothing changed), and a password
is read as the first line of stdin, so that it never has to be a flag that shells keep in
their history and ``ps`` shows.
"""

from __future__ import annotations

import sys

import click

from cli.exits import EXIT_USAGE, Failure

yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")


def confirm(action: str, consequence: str, yes: bool, output: str) -> None:
    """Go on only when ``yes`` was given or the person, told the ``consequence``, answers yes to the
    ``action`` ("delete cluster edge"); otherwise fail with exit 2, nothing changed."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Failure(f"not confirmed: {action} (there is no terminal to ask on: give --yes to confirm); "
                      "nothing was changed", EXIT_USAGE, kind="not_confirmed", output=output)
    if not click.confirm(f"{action[:1].upper()}{action[1:]}? {consequence}", default=False, err=True):
        raise Failure(f"not confirmed: {action}; nothing was changed", EXIT_USAGE, kind="not_confirmed",
                      output=output)


def read_password(prompt: str, *, twice: bool = False) -> str:
    """A password typed without echo on a terminal (``twice``: typed again to check it), else stdin's first line."""
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, confirmation_prompt=twice, err=True)
    return sys.stdin.readline().rstrip("\r\n")


__all__ = ["confirm", "read_password", "yes_option"]
