"""Exit codes of the ``shipyard`` command, and the one way a command fails with one.

Scripts and CI rely on the codes; they mean the same for every command, and
``EXIT_CODES`` below is the one table of them (``shipyard --help`` prints it,
the README repeats it for readers).

A command fails by raising ``Failure``: click's top-level handler calls its
``show`` (the one error printer: text on stderr, or with ``--output json`` or
``yaml`` one document on stdout) and exits with its code. The handler runs after
the command's click context has closed, so a failure notes the document encoding
asked for (cli.output) when it is made. This module imports click
alone, so that the group's help can carry the table without slowing
``shipyard --version``; rich is imported when a failure is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from contract.errors import Problem, ShipyardError

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_PLANNED_CHANGES = 2  # plan --detailed-exitcode: something would change (terraform plan's 2)
EXIT_REPO = 3
EXIT_NOT_FOUND = 4
EXIT_INTERNAL = 5
EXIT_UNAUTHORIZED = 6
EXIT_NOT_READY = 7
EXIT_SYNC_FAILED = 8
EXIT_DEGRADED = 9
EXIT_TIMEOUT = 10
EXIT_OFFLINE = 11
EXIT_RUN_FAILED = 12

# The one translation of Shipyard's error codes (contract.errors.ERROR_CODES) to exit codes: for an
# error raised here (offline commands) and for an API error answer (client commands) alike.
EXIT_OF_CODE = {
    "invalid_request": EXIT_INVALID,
    "unauthorized": EXIT_UNAUTHORIZED,
    "forbidden": EXIT_UNAUTHORIZED,
    "csrf_failed": EXIT_UNAUTHORIZED,
    "not_found": EXIT_NOT_FOUND,
    "method_not_allowed": EXIT_INTERNAL,
    "conflict": EXIT_INVALID,
    "payload_too_large": EXIT_INVALID,
    "unsupported_media_type": EXIT_INVALID,
    "spec_invalid": EXIT_INVALID,
    "profile_invalid": EXIT_INVALID,
    "render_failed": EXIT_INTERNAL,
    "repo_unavailable": EXIT_REPO,
    "internal": EXIT_INTERNAL,
}

EXIT_CODES = {
    EXIT_OK: 'success (including "nothing changed")',
    EXIT_INVALID: "invalid input: spec problems (FILE:LINE:COL: message), or a request the server refused",
    EXIT_USAGE: "usage error; also: no server URL or API token configured; plan --detailed-exitcode: changes",
    EXIT_REPO: "repository error, or the control plane cannot be reached",
    EXIT_NOT_FOUND: "not found: no such app, version, cluster or workspace",
    EXIT_INTERNAL: "internal error (a bug)",
    EXIT_UNAUTHORIZED: "not authorized: no valid token or password, or your role does not allow it",
    EXIT_NOT_READY: "the server cannot start: database not at the head revision, address in use",
    EXIT_SYNC_FAILED: "--wait: ArgoCD could not sync a version (its message is printed)",
    EXIT_DEGRADED: "--wait: a version is degraded: its pods crash or cannot start (their reasons are printed)",
    EXIT_TIMEOUT: "--wait: a version was not running before --timeout",
    EXIT_OFFLINE: "--wait: a cluster's agent is not reporting, so its status cannot be known",
    EXIT_RUN_FAILED: "run --wait: the job run failed",
}

# \b keeps click from rewrapping the table into one paragraph
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


def exit_of(code: str) -> int:
    """The exit code of an error code; one Shipyard does not know (a newer server's) is internal."""
    return EXIT_OF_CODE.get(code, EXIT_INTERNAL)


class Failure(click.ClickException):
    """A failure with its exit code; click's top-level handler prints it and exits with that code."""

    def __init__(self, message: str, exit_code: int, problems: list[Problem] | None = None,
                 kind: str = "error", output: str = "text"):
        super().__init__(message)
        self.exit_code = exit_code
        self.problems = problems or []
        self.kind = kind
        self.output = output
        self.encoding = None
        if output == "json":
            from cli.output import document_encoding

            self.encoding = document_encoding()

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        from cli.output import print_json, stderr

        if self.output == "json":
            print_json({"ok": False, "error": self.kind, "message": self.message,
                        "problems": [p.as_dict() for p in self.problems]}, encoding=self.encoding)
            return
        for problem in self.problems:
            click.echo(str(problem), err=True)
        if self.problems:
            count = len(self.problems)
            stderr.print(f"[red]{count} problem{'s' if count != 1 else ''} found[/red]")
        else:
            from rich.markup import escape

            stderr.print(f"[red]error:[/red] {escape(self.message)}", markup=True)  # brackets in it are text

    @classmethod
    def of(cls, error: ShipyardError, output: str = "text") -> Failure:
        """The failure of an error Shipyard raised: its code's exit code, its problems if it has some."""
        return cls(str(error), exit_of(error.code), getattr(error, "problems", None), error.code, output)
