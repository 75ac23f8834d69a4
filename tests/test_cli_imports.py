"""The offline and client commands never import the server stack, so they start at once.

Each case runs one ``shipyard`` command in a fresh interpreter (click's
CliRunner, in a subprocess so that nothing this test process imported counts)
and then lists which of the server's libraries are in ``sys.modules``. The
client commands run against a port nobody listens on: they go all the way to
sending the request (exit 3, cannot reach the control plane), so every import
on their path happens. ``--help`` loads every command's module, the server
commands' too: those import the server stack inside the command functions, and
``serve`` depends on it (it must set PROMETHEUS_MULTIPROC_DIR before anything
imports prometheus_client).

Beyond the server's libraries by name, every third-party library a client or
offline command loads must come with the base install (``pip install
shipyard``, no extras: pyproject.toml's ``dependencies`` and what they
require): a CI step that installs only that must be able to run them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from importlib import metadata
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "fixtures" / "specs" / "web.yaml")
DEMO = str(ROOT / "fixtures" / "clusters" / "demo.yaml")
SERVER_STACK = ("flask", "werkzeug", "sqlalchemy", "alembic", "kubernetes", "gunicorn", "prometheus_client")

PROBE = """
import json, sys
at_start = set(sys.modules)  # the interpreter's own start-up (site, .pth hooks) is no command's doing
from importlib import metadata
from click.testing import CliRunner

import cli

result = CliRunner().invoke(cli.main, json.loads(sys.argv[1]))
stack = set(json.loads(sys.argv[2]))
tops = {name.split(".")[0] for name in set(sys.modules) - at_start}
owners = metadata.packages_distributions()
print(json.dumps({"exit_code": result.exit_code, "output": result.output,
                  "exception": repr(result.exception) if result.exit_code not in (0, 1, 2, 3, 4) else None,
                  "loaded": sorted(tops & stack),
                  "distributions": sorted({d for top in tops for d in owners.get(top, ())} - {"shipyard"})}))
"""


def _name(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


def base_install() -> set[str]:
    """The distributions ``pip install shipyard`` brings: its dependencies without extras, and theirs."""
    found, todo = set(), [Requirement(r) for r in metadata.requires("shipyard") or []]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _name(requirement.name)
        if name in found:
            continue
        found.add(name)
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or []]
        for extra in requirement.extras:  # psycopg[binary] and the like
            todo += [Requirement(r) for r in metadata.requires(requirement.name) or []
                     if Requirement(r).marker is not None and Requirement(r).marker.evaluate({"extra": extra})]
    return found


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_command(args: list[str], tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k == "SHIPYARD_CRD_SCHEMAS"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    probe = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(SERVER_STACK)],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout.splitlines()[-1])


OFFLINE = {
    "version": (["--version"], 0),
    "help": (["--help"], 0),
    "validate": (["validate", SPEC], 0),
    "validate --cluster": (["validate", SPEC, "--cluster", DEMO], 0),
    "render": (["render", SPEC, "--cluster", DEMO], 0),
    "render --out": (["render", SPEC, "--cluster", DEMO, "--out", "{tmp}/out"], 0),
    "apply": (["apply", SPEC, "--cluster", DEMO, "--repo", "{tmp}/demo.git"], 0),
    "delete": (["delete", "nowhere/nothing", "--cluster", DEMO, "--repo", "{tmp}/demo.git"], 4),
    # rendered, then refused for want of a clone to plan against (exit 3): every import on its way happened
    "plan --offline": (["plan", SPEC, "--offline", "--cluster", DEMO, "--repo", "{tmp}/demo.git"], 3),
}

CLIENT = {
    "login": ["login", "--url", "{url}", "--token", "not-a-token"],
    "deploy": ["deploy", SPEC],
    "plan": ["plan", SPEC],
    "apps": ["apps"],
    "versions": ["versions", "demo:team/app"],
    "rollback": ["rollback", "demo:team/app", "1"],
    "promote": ["promote", "demo:team/app", "--to", "demo:other", "--set", "replicas=3"],
    "apps --watch": ["apps", "--watch"],
    "status": ["status", "demo:team/app"],
    "diff": ["diff", "demo:team/app", "1", "2"],
    "delete": ["delete", "demo:team/app", "--yes", "--output", "yaml"],
    "clusters": ["clusters"],
    "clusters install-agent": ["clusters", "install-agent", "demo"],
    "workspaces": ["workspaces", "--cluster", "demo"],
    "users": ["users"],
    "bindings": ["bindings"],
    "tokens": ["tokens"],
    "tokens create": ["tokens", "create", "ci", "--role", "workspace-viewer", "--username", "admin"],
    "audit": ["audit"],
}


def fill(args: list[str], tmp_path: Path, url: str = "") -> list[str]:
    return [arg.format(tmp=tmp_path, url=url) for arg in args]


@pytest.mark.parametrize("name", list(OFFLINE))
def test_offline_commands_leave_the_server_stack_alone(name: str, tmp_path: Path):
    args, expected_exit = OFFLINE[name]
    result = run_command(fill(args, tmp_path), tmp_path)
    assert result["exit_code"] == expected_exit, result
    assert result["loaded"] == [], f"shipyard {' '.join(args)} imported {result['loaded']}"
    outside = {_name(d) for d in result["distributions"]} - base_install()
    assert not outside, f"shipyard {' '.join(args)} needs {sorted(outside)}, which the base install lacks"


@pytest.mark.parametrize("name", list(CLIENT))
def test_client_commands_leave_the_server_stack_alone(name: str, tmp_path: Path):
    url = f"http://127.0.0.1:{unused_port()}"
    args = fill(CLIENT[name], tmp_path, url)
    if name != "login":
        args += ["--url", url, "--token", "not-a-token"]
    result = run_command(args, tmp_path)
    assert result["exit_code"] == 3 and "cannot reach the control plane" in result["output"], result
    assert result["loaded"] == [], f"shipyard {' '.join(args)} imported {result['loaded']}"
    outside = {_name(d) for d in result["distributions"]} - base_install()
    assert not outside, f"shipyard {' '.join(args)} needs {sorted(outside)}, which the base install lacks"


def test_the_base_install_holds_no_server_or_agent_library():
    assert not {_name(m) for m in ("Flask", "SQLAlchemy", "alembic", "gunicorn", "kubernetes", "psycopg")} & base_install()


BLOCKED = """
import json, sys
from importlib.abc import MetaPathFinder
from click.testing import CliRunner

class Missing(MetaPathFinder):  # as if the extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"flask", "werkzeug", "sqlalchemy", "kubernetes", "urllib3"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Missing())
import cli

result = CliRunner().invoke(cli.main, json.loads(sys.argv[1]))
print(json.dumps({"exit_code": result.exit_code, "output": result.output}))
"""


@pytest.mark.parametrize(("args", "extra"), [(["up", "--data", "{tmp}/data"], "server"), (["db", "current"], "server"),
                                             (["agent"], "agent")], ids=["up", "db", "agent"])
def test_a_command_without_its_extra_names_the_extra(args, extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    probe = subprocess.run([sys.executable, "-c", BLOCKED, json.dumps(fill(args, tmp_path))], capture_output=True,
                           text=True, cwd=ROOT, env=env, timeout=120)
    result = json.loads(probe.stdout.splitlines()[-1])
    assert result["exit_code"] == 2, result
    assert f"pip install 'shipyard[{extra}]'" in result["output"] and "Traceback" not in result["output"], result
