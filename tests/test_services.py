"""The services' calling convention (gitops.service_context): a function that acts for a caller takes ``ctx``.

Read from the source (``ast``), like tests/test_layers.py: a service written the old
way, ``(session, principal, ...)``, fails here before anyone calls it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gitops.service_context import Context

GITOPS = Path(__file__).resolve().parent.parent / "gitops"

# Public functions that take a Principal and are no service: they act for nobody, they only answer.
NOT_SERVICES = {
    "audit.record",  # writes what a service did, for the principal it names
    "clusters.sees_cluster",  # whether a principal may know a cluster exists
    "policy.may_grant",  # the policy's own rule
}


def _annotation(arg: ast.arg) -> str:
    return ast.unparse(arg.annotation) if arg.annotation is not None else ""


def test_every_function_that_acts_for_a_principal_takes_the_context_first():
    wrong = []
    for path in sorted(GITOPS.glob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            name = f"{path.stem}.{node.name}"
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            takes_principal = any(_annotation(a) == "Principal" or a.arg == "principal" for a in args)
            if takes_principal and name not in NOT_SERVICES:
                wrong.append(f"{name} takes a principal: take ctx: Context first instead")
            elif args and args[0].arg == "ctx" and _annotation(args[0]) != "Context":
                wrong.append(f"{name}: ctx must be a Context")
    assert wrong == []


def test_a_context_without_the_commit_queues_refuses_to_commit():
    with pytest.raises(RuntimeError, match="without committers"):
        Context(None, None, None).committing()
    committers = object()
    assert Context(None, None, None, committers=committers, worker="w1").committing() == (committers, "w1")
