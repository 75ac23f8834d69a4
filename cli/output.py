"""How commands print: ``--output text|json``, JSON documents, and rich consoles.

Text is for people and goes through rich (colour on a terminal, tables); with
``--output json`` a command prints one JSON document on stdout instead, for
scripts. Notes and progress go to stderr, so stdout stays what a script reads.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class _Stderr:
    """rich's console on stderr, made when a command first prints to it: importing rich costs a
    start 30 ms, which a command that prints one plain line (or nothing) need not pay."""

    _console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


stderr = _Stderr()

output_option = click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text for people, json for scripts.",
)


def print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def stdout_console() -> Console:
    from rich.console import Console

    # Rich wraps at 80 columns when stdout is not a terminal; rows of a table are easier to
    # read and to grep whole.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def shown(value: Any) -> str:
    """A value put into a line printed with rich markup: brackets in it are text, never styles."""
    from rich.markup import escape

    return escape(str(value))


def add_text_row(table: Table, *cells: Any) -> None:
    """A table row of plain text: names, messages and authors from the server are never read as markup."""
    from rich.text import Text

    table.add_row(*(Text(str(cell)) for cell in cells))


def print_table(columns: tuple[str, ...], rows) -> None:
    """A table of plain-text rows on stdout, kubectl's way: headers, no borders, no wrapping."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        add_text_row(table, *row)
    stdout_console().print(table)


def note(subject: str, text: str) -> None:
    """``note: <subject>: <text>`` on stderr, the label in yellow on a terminal (plain click: no markup
    to read into the text, and no rich to import for one line)."""
    click.echo(f"{click.style('note:', fg='yellow')} {subject}: {text}", err=True)


def say(text: str, label: str | None = None, colour: str = "green") -> None:
    """One line for people on stderr, its leading ``label`` coloured on a terminal."""
    click.echo(f"{click.style(label, fg=colour)} {text}" if label else text, err=True)
