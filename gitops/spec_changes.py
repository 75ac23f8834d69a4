"""What a push to a spec repository changes: the spec files it adds, changes and deletes.

A spec repository (issue "spec repositories") owns the spec files its path globs match. When
its tracked branch moves from the commit last synced (``old``) to a new tip (``new``), the
control plane deploys the files added or changed, and with prune removes the apps of the files
deleted. This module answers the git half of that, on a local clone (bare or not), reading and
never writing it:

``read_changes(repo, old, new, globs)``

    ``old`` None        the first sync: every matching file at ``new`` is added
    ``old`` == ``new``  nothing changed
    ``old`` an ancestor of ``new``   a fast-forward: the files whose blob differs between them
    otherwise           the branch was force-pushed or its history rewritten (``old`` is not
                        behind ``new``), or ``old`` is not in the clone at all: the change is
                        still read (tree against tree), and ``relation`` says which, so the
                        caller can refuse to deploy an older spec over a newer one

Paths match ``PathGlobs``: ``*`` within one directory level, ``?`` one character, ``**`` any
number of levels (``deploy/**/*.yaml`` matches ``deploy/web.yaml`` and ``deploy/a/b/web.yaml``).
A file is read as its blob's bytes; what a file means (its specs) is for the caller to load, so
that a file's problems are reported against its path and the source commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pygit2

from contract.errors import InvalidRequest, RepoError

DEFAULT_GLOBS = ("**/*.yaml", "**/*.yml")
MAX_GLOBS = 50
RELATIONS = ("initial", "same", "fast-forward", "rewritten", "unknown-old")


class PathGlobs:
    """Path globs of a spec repository: which of its files are specs it owns."""

    def __init__(self, globs: tuple[str, ...] | list[str] = DEFAULT_GLOBS):
        globs = tuple(globs)
        if not globs or len(globs) > MAX_GLOBS:
            raise InvalidRequest(f"a spec repository has from 1 to {MAX_GLOBS} path globs")
        for glob in globs:
            if not isinstance(glob, str) or not glob.strip() or glob.startswith("/") or "\\" in glob \
                    or any(part in ("..", ".") for part in glob.split("/")) or len(glob) > 255:
                raise InvalidRequest(f"{str(glob)[:100]!r} is not a path glob inside the repository "
                                     "(e.g. deploy/**/*.yaml: no leading /, no . or .. parts)")
        self.globs = globs
        self._pattern = re.compile("|".join(f"(?:{_regex(glob)})" for glob in globs))

    def match(self, path: str) -> bool:
        return self._pattern.fullmatch(path) is not None


def _regex(glob: str) -> str:
    out, index = [], 0
    while index < len(glob):
        if glob.startswith("**/", index):
            out.append("(?:[^/]+/)*")
            index += 3
        elif glob.startswith("**", index):
            out.append(".*")
            index += 2
        elif glob[index] == "*":
            out.append("[^/]*")
            index += 1
        elif glob[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(glob[index]))
            index += 1
    return "".join(out)


@dataclass(frozen=True)
class SpecFile:
    path: str
    action: str  # added | changed | deleted
    data: bytes | None  # the file at the new commit; None when deleted


@dataclass
class SpecChanges:
    old: str | None
    new: str
    relation: str  # one of RELATIONS
    files: list[SpecFile] = field(default_factory=list)

    @property
    def behind(self) -> bool:
        """Whether ``new`` may be older than what was synced: a rewritten history or an unknown ``old``."""
        return self.relation in ("rewritten", "unknown-old")


def read_changes(repo: pygit2.Repository, old: str | None, new: str, globs: PathGlobs) -> SpecChanges:
    """The spec files that differ between ``old`` and ``new`` (see the module's docstring)."""
    new_commit = _commit(repo, new)
    if new_commit is None:
        raise RepoError(f"the spec repository has no commit {new[:12]}: fetch it first")
    if old is None:
        return SpecChanges(None, str(new_commit.id), "initial", [
            SpecFile(path, "added", data) for path, data in sorted(_files(repo, new_commit.tree, globs).items())])
    old_commit = _commit(repo, old)
    if old_commit is None:
        relation = "unknown-old"
        before: dict[str, pygit2.Oid] = {}
    elif old_commit.id == new_commit.id:
        return SpecChanges(old, str(new_commit.id), "same")
    else:
        relation = "fast-forward" if repo.descendant_of(new_commit.id, old_commit.id) else "rewritten"
        before = _blob_ids(old_commit.tree, globs)
    after = _blob_ids(new_commit.tree, globs)
    files = []
    for path in sorted(set(before) | set(after)):
        if path not in after:
            files.append(SpecFile(path, "deleted", None))
        elif path not in before:
            files.append(SpecFile(path, "added", repo[after[path]].data))
        elif before[path] != after[path]:
            files.append(SpecFile(path, "changed", repo[after[path]].data))
    return SpecChanges(old, str(new_commit.id), relation, files)


def _commit(repo: pygit2.Repository, revision: str) -> pygit2.Commit | None:
    if not re.fullmatch(r"[0-9a-f]{4,64}", revision or ""):
        return None
    try:
        found = repo.revparse_single(revision)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return found.peel(pygit2.Commit) if isinstance(found, (pygit2.Commit, pygit2.Tag)) else None


def _blob_ids(tree: pygit2.Tree, globs: PathGlobs, prefix: str = "") -> dict[str, pygit2.Oid]:
    """Path -> blob id of every file of ``tree`` the globs match (symbolic links and submodules left out)."""
    found: dict[str, pygit2.Oid] = {}
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.type_str == "tree":
            found.update(_blob_ids(entry, globs, f"{path}/"))
        elif entry.type_str == "blob" and entry.filemode in (pygit2.GIT_FILEMODE_BLOB,
                                                               pygit2.GIT_FILEMODE_BLOB_EXECUTABLE) \
                and globs.match(path):
            found[path] = entry.id
    return found


def _files(repo: pygit2.Repository, tree: pygit2.Tree, globs: PathGlobs) -> dict[str, bytes]:
    return {path: repo[blob].data for path, blob in _blob_ids(tree, globs).items()}


__all__ = ["PathGlobs", "SpecFile", "SpecChanges", "read_changes", "DEFAULT_GLOBS", "RELATIONS"]
