"""fixtures/invalid: every kind of mistake, reported where it is, in words a user can act on.

Each file's header says what it must produce::

    # cluster: aks.yaml                       (optional: render for this profile)
    # expect: 12:9: <substring of the message>  (one line per problem)

Every expectation must be met by a problem at exactly that line and column,
and every problem reported must be expected, so a fixture documents all of
what its mistake produces.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from contract.errors import Problem, SpecError
from renderer.profiles import load_profile
from renderer.render import render_all
from renderer.spec import load_spec_files

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))

_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")
_CLUSTER = re.compile(r"^# cluster: (\S+)$")


@dataclass(frozen=True)
class Expectation:
    line: int
    column: int
    text: str

    def met_by(self, problem: Problem) -> bool:
        return (problem.line, problem.column) == (self.line, self.column) and self.text in problem.message

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.text}"


@dataclass(frozen=True)
class Case:
    path: Path
    cluster: Path | None
    expectations: tuple[Expectation, ...]


def read_case(path: Path) -> Case:
    expectations, cluster = [], None
    for line in path.read_text(errors="replace").splitlines():
        if match := _EXPECT.match(line):
            expectations.append(Expectation(int(match[1]), int(match[2]), match[3].strip()))
        elif match := _CLUSTER.match(line):
            cluster = FIXTURES / "clusters" / match[1]
    return Case(path, cluster, tuple(expectations))


CASES = [pytest.param(read_case(path), id=path.stem) for path in INVALID]


def reported_problems(case: Case) -> list[Problem]:
    try:
        specs = load_spec_files([case.path])
        if case.cluster is not None:
            render_all(specs, load_profile(case.cluster))
    except SpecError as error:
        return error.problems
    pytest.fail(f"{case.path.name} was accepted")


# The mistakes the examples must show (more may be added).
KINDS_OF_MISTAKE = {
    "unknown-field", "unknown-enum", "wrong-type", "missing-required", "name-uppercase", "name-path-escape",
    "name-too-long", "workspace-too-long", "bad-workspace-fqn", "duplicate-keys", "yaml-syntax", "yaml-tag",
    "alias-bomb", "image-build", "malformed-secret", "several-problems", "duplicate-app", "min-above-max",
    "canary-without-rollouts", "rps-without-keda", "secrets-without-store", "expose-without-router",
    "image-reference", "image-digest", "cpu-below-a-millicore", "cpu-finer-than-a-millicore", "quantity-too-large",
    "secret-path-traversal",
}


def test_there_is_a_fixture_for_every_kind_of_mistake():
    assert KINDS_OF_MISTAKE <= {path.stem for path in INVALID}


@pytest.mark.parametrize("case", CASES)
def test_fixture_header_declares_what_it_must_produce(case: Case):
    assert case.expectations, f"{case.path.name} has no '# expect: LINE:COL: message' line"
    if case.cluster is not None:
        assert case.cluster.is_file(), f"{case.path.name} names a missing cluster profile"


@pytest.mark.parametrize("case", CASES)
def test_every_problem_is_reported_at_its_line_and_column(case: Case):
    problems = reported_problems(case)
    shown = "\n".join(str(p) for p in problems)
    for expectation in case.expectations:
        assert any(expectation.met_by(p) for p in problems), f"expected {expectation}, got:\n{shown}"
    for problem in problems:
        assert problem.file == str(case.path)
        assert any(e.met_by(problem) for e in case.expectations), f"unexpected problem: {problem}"


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0].cluster is not None])
def test_cluster_problems_only_show_for_that_cluster(case: Case):
    # The spec itself is valid; only the named cluster cannot run it.
    assert load_spec_files([case.path])


def validate_command(case: Case) -> list[str]:
    arguments = ["validate", str(case.path)]
    if case.cluster is not None:
        arguments += ["--cluster", str(case.cluster)]
    return arguments


def assert_located_lines(case: Case, stdout: str) -> None:
    lines = stdout.splitlines()
    for expectation in case.expectations:
        prefix = f"{case.path}:{expectation.line}:{expectation.column}: "
        assert any(line.startswith(prefix) and expectation.text in line for line in lines), (
            f"no line {prefix}...{expectation.text} in:\n{stdout}"
        )


@pytest.mark.parametrize("case", CASES)
def test_cli_exits_1_and_prints_file_line_column(case: Case):
    result = CliRunner().invoke(cli.main, validate_command(case))
    assert result.exit_code == 1, result.output
    assert_located_lines(case, result.stdout)
    for line in result.stdout.splitlines():
        assert re.match(rf"{re.escape(str(case.path))}:\d+:\d+: ", line), line


@pytest.mark.parametrize("name", ["several-problems", "canary-without-rollouts"])
def test_the_installed_command_behaves_the_same(name: str):
    # One real process per kind of case (plain, and with --cluster) is enough;
    # the in-process runs above cover every fixture.
    [case] = [c.values[0] for c in CASES if c.id == name]
    script = Path(sys.executable).with_name("shipyard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli"]
    result = subprocess.run([*command, *validate_command(case)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_located_lines(case, result.stdout)
