"""The layers import one way, and no module imports itself back in a circle.

Read from the source (``ast``), so a wrong-way import fails here even in a code
path no other test runs. Imports inside functions count too: an import deferred
to dodge a cycle is still a cycle (webapp.api and webapp.agent_api once did
that). The command line is left out of the cycle check only: it defers imports
to start quickly, and nothing imports it back.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "renderer", "gitops", "webapp", "agent", "downloader", "simulation", "cli")

# What each package may import of the others (ARCHITECTURE.md, "Layers: imports go one way"); the
# contract is at the bottom, for all of them, and imports only the standard library.
MAY_IMPORT = {
    "contract": set(),
    "renderer": {"contract"},
    "gitops": {"contract", "renderer"},
    "webapp": {"contract", "renderer", "gitops"},
    "agent": {"contract"},
    "downloader": set(),  # runs alone in an app's init container: nothing of Shipyard
    "simulation": {"contract", "agent"},
    "cli": {"contract", "renderer", "gitops", "webapp", "agent", "simulation"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import of a file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if any((ROOT / Path(*base.split("."), f"{alias.name}.py")).exists() for alias in node.names):
                found += [(f"{base}.{alias.name}", id(node) in top_level) for alias in node.names]
            else:
                found.append((base, id(node) in top_level))
    return found


def _product_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
            if "migrations" not in path.parts}


def test_no_package_imports_a_layer_above_it():
    wrong = []
    for module, path in _product_modules().items():
        own = module.split(".")[0]
        for imported, _ in _imports(path):
            other = imported.split(".")[0]
            if other in PACKAGES and other != own and other not in MAY_IMPORT[own]:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_the_contract_imports_only_the_standard_library():
    outside = [f"{module} imports {imported}" for module, path in _product_modules().items()
               if module.split(".")[0] == "contract"
               for imported, _ in _imports(path)
               if imported.split(".")[0] not in sys.stdlib_module_names and imported.split(".")[0] != "contract"]
    assert outside == []


def test_no_import_cycles():
    modules = _product_modules()
    graph = {module: {imported for imported, _ in _imports(path) if imported in modules}
             for module, path in modules.items() if not module.startswith("cli")}
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for nxt in sorted(graph[module] & graph.keys()):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
