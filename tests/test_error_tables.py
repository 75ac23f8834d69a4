"""Every error code has one HTTP status and one exit code, and every error of the tree has a code."""

from __future__ import annotations

import click
import pytest

import contract.errors as errors
from cli.exits import EXIT_CODES, EXIT_OF_CODE, Failure
from webapp.errors import HTTP_STATUS


def _tree(cls):
    yield cls
    for sub in cls.__subclasses__():
        yield from _tree(sub)


def test_each_edge_translates_every_code_once():
    assert set(HTTP_STATUS) == set(errors.ERROR_CODES)
    assert set(EXIT_OF_CODE) == set(errors.ERROR_CODES)
    assert set(EXIT_OF_CODE.values()) <= set(EXIT_CODES)


@pytest.mark.parametrize("cls", [c for c in _tree(errors.ShipyardError) if not c.__name__.startswith("_")],
                         ids=lambda c: c.__name__)
def test_every_error_of_the_tree_has_a_known_code(cls):
    assert cls.code in errors.ERROR_CODES
    assert cls is errors.ShipyardError or cls.code != "internal", "only the base is a bug"


def test_an_offline_failure_keeps_the_problems_and_the_code():
    problem = errors.Problem("web.yaml", 3, 7, "image is required")
    failure = Failure.of(errors.SpecError([problem]), "json")
    assert (failure.exit_code, failure.kind, failure.problems) == (EXIT_OF_CODE["spec_invalid"], "spec_invalid", [problem])
    assert isinstance(failure, click.ClickException)
    assert Failure.of(errors.AppNotFound("no app")).exit_code == EXIT_OF_CODE["not_found"] == 4


def test_a_message_with_brackets_is_printed_as_it_is(capsys):
    from rich.table import Table

    from cli.output import add_text_row, stdout_console

    Failure('label "team[a]" is not valid; install shipyard[server]', 1).show()
    assert 'label "team[a]" is not valid; install shipyard[server]' in capsys.readouterr().err
    table = Table()
    table.add_column("AUTHOR")
    add_text_row(table, "ci [bot]")
    stdout_console().print(table)
    assert "ci [bot]" in capsys.readouterr().out
