"""How commands print: ``--output text|json|yaml``, documents for scripts, and rich consoles.

Text is for people and goes through rich (colour on a terminal, tables); with
``--output json`` a command prints one JSON document on stdout instead, for
scripts. Notes and progress go to stderr, so stdout stays what a script reads.

``--output yaml`` is the same document written as YAML. A command never tells the two
apart: the option hands it ``json`` for both (a document for scripts, not text for
people), keeps the encoding asked for in the click context's ``meta``, and
``print_json`` writes the document in it. So every command that prints a document,
and every failure shown as one (cli.exits), honours ``yaml`` without a branch of its own.
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

_ENCODING = "shipyard.document_encoding"  # the key of click's context meta that holds json or yaml


def _document_output(ctx: click.Context, param: click.Parameter, value: str) -> str:
    ctx.meta[_ENCODING] = value
    return "json" if value == "yaml" else value


output_option = click.option(
    "--output", "-o", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True,
    callback=_document_output, help="text for people; json or yaml for scripts.",
)


def document_encoding() -> str:
    """json or yaml: how the running command's --output asked for its documents (json outside a command)."""
    ctx = click.get_current_context(silent=True)
    return "yaml" if ctx is not None and ctx.meta.get(_ENCODING) == "yaml" else "json"


def print_json(payload: Any, *, encoding: str | None = None, in_stream: bool = False) -> None:
    """One document on stdout, in JSON or YAML (``encoding``, by default what --output asked for).

    ``in_stream``: one of several documents printed one after another (a --watch), which YAML
    separates with ``---`` and JSON prints back to back, as kubectl does."""
    if (encoding or document_encoding()) == "yaml":
        from renderer.manifest_yaml import dump_manifest  # YAML's libraries load only when asked for

        click.echo(("---\n" if in_stream else "") + dump_manifest(payload).decode(), nl=False)
    else:
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


def print_table(columns: tuple[str, ...], rows, *, widths: tuple[int, ...] | None = None, header: bool = True) -> None:
    """A table of plain-text rows on stdout, kubectl's way: headers, no borders, no wrapping.

    ``widths``: each column's least width, so that rows printed later (a --watch, without
    ``header``) line up under the first table."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_header=header)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=True, min_width=widths[index] if widths else None)
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
