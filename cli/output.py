"""How commands print: ``--output text|json``, JSON documents, and rich consoles.

Text is for people and goes through rich (colour on a terminal, tables); with
``--output json`` a command prints one JSON document on stdout instead, for
scripts. Notes and progress go to stderr, so stdout stays what a script reads.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

output_option = click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text for people, json for scripts.",
)


def print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def stdout_console() -> Console:
    # Rich wraps at 80 columns when stdout is not a terminal; rows of a table are easier to
    # read and to grep whole.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def shown(value: Any) -> str:
    """A value put into a line printed with rich markup: brackets in it are text, never styles."""
    return escape(str(value))


def add_text_row(table: Table, *cells: Any) -> None:
    """A table row of plain text: names, messages and authors from the server are never read as markup."""
    table.add_row(*(Text(str(cell)) for cell in cells))
