"""Which spec files a list of FILE arguments names: a directory stands for its YAML files.

Its own module, importing nothing but the standard library, because the
client commands (``shipyard deploy DIR``) expand their arguments too and must
not pay for the YAML libraries and schema validators to do it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPEC_SUFFIXES = (".yaml", ".yml")


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Each path as given; each directory as its ``*.yaml``/``*.yml`` files, recursively, sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()))
        else:
            out.append(path)
    return out


__all__ = ["SPEC_SUFFIXES", "expand_paths"]
