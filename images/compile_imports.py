"""Compile what importing the named modules loads from this environment, for a read-only image.

    python images/compile_imports.py MODULE... [--only-imported PACKAGE...]

Each module the imports load from under ``sys.prefix`` (the virtual environment) gets its compiled file
next to its source as an *unchecked-hash* pyc (PEP 552): Python uses it without comparing the source's
modification time, which copying the environment from one build stage into another does not keep. The
image holds compiled code for exactly what runs at start; a module imported later is compiled in memory.

``--only-imported PACKAGE``: of the package's own modules (not its subpackages), delete those the imports
did not load. For packages that load their modules lazily, on first use of a name (PEP 562 module
``__getattr__``, as the Kubernetes client's generated ``api`` and ``models`` do): what is never used is
never loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import py_compile
import sys
from pathlib import Path


def main(arguments: list[str]) -> int:
    names, pruned = arguments, []
    if "--only-imported" in arguments:
        at = arguments.index("--only-imported")
        names, pruned = arguments[:at], arguments[at + 1:]
    for name in names:
        importlib.import_module(name)
    prefix = Path(sys.prefix).resolve()
    compiled = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or not Path(source).resolve().is_relative_to(prefix):
            continue
        py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        compiled += 1
    removed = 0
    for package in pruned:
        directory = Path(sys.modules[package].__file__).parent
        for source in directory.glob("*.py"):
            if source.name != "__init__.py" and f"{package}.{source.stem}" not in sys.modules:
                source.unlink()
                removed += 1
    print(f"compiled {compiled} modules; removed {removed} never imported", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
