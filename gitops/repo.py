"""Cluster repositories: git written straight into the object database.

A :class:`ClusterRepo` is a bare git repository. An update never touches a
working tree or an index: it reads the trees along the paths it changes,
rebuilds just those with ``TreeBuilder`` and writes a commit, so the cost of
a deploy depends on the size of the directories it touches, not on how many
apps the repository holds.

The branch moves by compare-and-swap. An update is a *function* of the tree it
starts from (``build(snapshot) -> changes``); when another writer (thread or
process) moved the branch first, the function runs again on the new tip and
the commit is rebuilt, so no writer ever loses another's update. With a
remote, the push is the compare-and-swap: a rejected push fetches the remote
tip and rebuilds on it.

How one fetch or push reaches the remote (the egress policy, the credentials,
pinned ssh host keys) is gitops.remote; this module decides what to fetch, push
and rebuild.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Union

import pygit2

from gitops.remote import Refused, Remote, connect, fetch_branch, remote_error
from contract.errors import RepoConflict, RepoError

log = logging.getLogger(__name__)

BLOB = pygit2.GIT_FILEMODE_BLOB
TREE = pygit2.GIT_FILEMODE_TREE

COMMITTER = ("Shipyard", "shipyard@localhost")
# A live writer holds the branch lock for the time of one small write and rename; one older than
# this was left by a writer that died (SIGKILL), and is cleared well within one RetryPolicy.
STALE_LOCK_SECONDS = 5


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()
"""Change value: remove the file or directory at this path."""


@dataclass(frozen=True)
class Directory:
    """Change value: the directory at this path becomes exactly these files."""

    files: Mapping[str, bytes]


Change = Union[bytes, Directory, _Delete]
Changes = Mapping[str, Change]


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between compare-and-swap attempts, with jitter."""

    attempts: int = 80  # with these delays, about 15 s in all: longer than STALE_LOCK_SECONDS
    first_delay: float = 0.002
    max_delay: float = 0.5

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield random.uniform(0, delay)
            delay = min(delay * 2, self.max_delay)


class Snapshot:
    """Read-only view of one tree of the repository (or of an empty one)."""

    def __init__(self, repo: pygit2.Repository, tree: pygit2.Tree | None, commit_id: pygit2.Oid | None):
        self._repo = repo
        self.tree = tree
        self.commit_id = commit_id

    def _entry(self, path: str) -> pygit2.Object | None:
        if self.tree is None:
            return None
        try:
            return self.tree / path
        except KeyError:
            return None

    def tree_id(self, path: str) -> pygit2.Oid | None:
        """Object id at ``path`` (a tree or a blob), None when absent."""
        entry = self._entry(path)
        return entry.id if entry is not None else None

    def read(self, path: str) -> bytes | None:
        entry = self._entry(path)
        if entry is None or entry.type != pygit2.GIT_OBJECT_BLOB:
            return None
        return entry.data

    def list_dir(self, path: str) -> list[str]:
        """Entry names of the directory at ``path`` ('' for the root)."""
        if self.tree is None:
            return []
        entry = self.tree if path in ("", ".") else self._entry(path)
        if entry is None or entry.type != pygit2.GIT_OBJECT_TREE:
            return []
        return [e.name for e in entry]

    def ids_in(self, path: str) -> dict[str, object]:
        """Entry name -> object id of the directory at ``path``: one read of the tree, for many lookups."""
        root = self.tree if path in ("", ".") else self._entry(path)
        if root is None or root.type != pygit2.GIT_OBJECT_TREE:
            return {}
        return {entry.name: entry.id for entry in root}

    def subtrees_at(self, tree_id: object | None) -> dict[str, object]:
        """Subdirectory name -> tree id of the tree ``tree_id``; {} for None."""
        if tree_id is None:
            return {}
        return {entry.name: entry.id for entry in self._repo[tree_id] if entry.type_str == "tree"}

    def files_at(self, tree_id: object, prefixes: tuple[str, ...]) -> list[object]:
        """Blob ids of the files of the tree ``tree_id`` whose names start with one of ``prefixes``."""
        return [entry.id for entry in self._repo[tree_id] if entry.name.startswith(prefixes) and entry.type_str == "blob"]

    def names_at(self, tree_id: object | None) -> list[str]:
        """Entry names of the tree ``tree_id`` (an id from :meth:`ids_in`); [] for None."""
        return [] if tree_id is None else [entry.name for entry in self._repo[tree_id]]

    def read_blob(self, blob_id) -> bytes:
        """The content of a file by its id (from :meth:`files_at`)."""
        return self._repo[blob_id].data

    def walk(self, path: str = "") -> dict[str, bytes]:
        """Every file under ``path`` with its content (for tests and tools)."""
        out: dict[str, bytes] = {}
        root = self.tree if path in ("", ".") else self._entry(path)
        if root is None:
            return out

        def visit(tree: pygit2.Tree, prefix: str) -> None:
            for entry in tree:
                name = f"{prefix}{entry.name}"
                obj = self._repo[entry.id]
                if obj.type == pygit2.GIT_OBJECT_TREE:
                    visit(obj, name + "/")
                else:
                    out[name] = obj.data

        if root.type == pygit2.GIT_OBJECT_TREE:
            visit(root, f"{path}/" if path not in ("", ".") else "")
        return out


@dataclass
class CommitResult:
    commit_id: str | None  # None when nothing changed
    base: Snapshot
    new: Snapshot
    attempts: int = 1
    pushed: bool = False

    @property
    def changed(self) -> bool:
        return self.commit_id is not None


@dataclass
class Author:
    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> "Author":
        """``Name <email>`` or a bare user name."""
        text = text.strip()
        if "<" in text and text.endswith(">"):
            name, _, email = text[:-1].partition("<")
            return cls(name.strip() or email, email.strip())
        return cls(text or "shipyard", f"{text or 'shipyard'}@localhost")


@dataclass
class _Nested:
    children: dict = field(default_factory=dict)


class ClusterRepo:
    """One cluster's repository (bare) and, optionally, the remote it pushes to."""

    def __init__(self, path: str | os.PathLike, branch: str = "main", remote_url: str | None = None,
                 retry: RetryPolicy | None = None, remote: Remote | None = None):
        self.path = Path(path)
        self.branch = branch
        self.ref_name = f"refs/heads/{branch}"
        self.remote = remote or (Remote(remote_url) if remote_url else None)
        self.remote_url = self.remote.url if self.remote else None
        self.retry = retry or RetryPolicy()
        try:
            if (self.path / "HEAD").exists() or (self.path / ".git").exists():
                self.repo = pygit2.Repository(str(self.path))
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.repo = pygit2.init_repository(str(self.path), bare=True, initial_head=branch)
        except pygit2.GitError as exc:
            raise RepoError(f"{self.path}: cannot open or create the repository: {exc}") from exc

    # --- reading ---------------------------------------------------------------

    def tip(self) -> pygit2.Oid | None:
        ref = self.repo.references.get(self.ref_name)
        return ref.target if ref is not None else None

    def snapshot(self, commit_id: pygit2.Oid | str | None = None) -> Snapshot:
        if commit_id is None:
            commit_id = self.tip()
        if commit_id is None:
            return Snapshot(self.repo, None, None)
        commit = self.repo[commit_id]
        return Snapshot(self.repo, commit.tree, commit.id)

    def log(self, limit: int = 1000) -> list[pygit2.Commit]:
        tip = self.tip()
        if tip is None:
            return []
        out = []
        for commit in self.repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL):
            out.append(commit)
            if len(out) >= limit:
                break
        return out

    def messages_since(self, horizon: float) -> Iterator[tuple[str, str]]:
        """(commit id, message) of the branch's commits, newest first by commit time, down to ``horizon``.

        ``horizon`` is seconds since the epoch; the walk stops at the first commit older than
        it. Lazy, so a caller that found what it looked for stops the walk early.
        """
        tip = self.tip()
        if tip is None:
            return
        for commit in self.repo.walk(tip, pygit2.enums.SortMode.TIME):
            if commit.commit_time < horizon:
                return
            yield str(commit.id), commit.message

    # --- writing ---------------------------------------------------------------

    def write_tree(self, base: pygit2.Tree | None, changes: Changes) -> pygit2.Oid:
        """New root tree: ``base`` with ``changes`` applied. Only touched paths are rebuilt."""
        root = _Nested()
        for path, change in changes.items():
            parts = [p for p in path.strip("/").split("/") if p]
            if not parts or any(p in (".", "..") or p.startswith(".git") for p in parts):
                raise RepoError(f"refusing to write outside the repository tree: {path!r}")
            node = root
            for part in parts[:-1]:
                child = node.children.get(part)
                if not isinstance(child, _Nested):
                    child = node.children[part] = _Nested()
                node = child
            node.children[parts[-1]] = change
        oid = self._update(base, root)
        if oid is None:
            oid = self.repo.TreeBuilder().write()
        return oid

    def _update(self, tree: pygit2.Tree | None, nested: _Nested) -> pygit2.Oid | None:
        """Apply ``nested`` to ``tree``; unchanged entries and subtrees keep their ids.

        Blobs are hashed before they are written, so a file whose bytes did not
        change costs a hash, not a write, and a directory none of whose entries
        changed keeps its tree id without a new tree object.
        """
        builder = self.repo.TreeBuilder(tree) if tree is not None else self.repo.TreeBuilder()
        changed = tree is None
        for name, change in nested.children.items():
            existing = builder.get(name)
            existing_tree = self.repo[existing.id] if existing is not None and existing.filemode == TREE else None
            if isinstance(change, _Nested):
                oid = self._update(existing_tree, change)
            elif change is DELETE:
                oid = None
            elif isinstance(change, Directory):
                oid = self._replace(existing_tree, change.files)
            else:
                oid = pygit2.hash(change)
                if existing is None or existing.id != oid:
                    oid = self.repo.create_blob(change)
            if oid is None:
                if existing is not None:
                    builder.remove(name)
                    changed = True
                continue
            mode = BLOB if isinstance(change, bytes) else TREE
            if existing is None or existing.id != oid or existing.filemode != mode:
                builder.insert(name, oid, mode)
                changed = True
        if len(builder) == 0:
            return None
        return builder.write() if changed else tree.id

    def _replace(self, tree: pygit2.Tree | None, files: Mapping[str, bytes]) -> pygit2.Oid | None:
        """A directory holding exactly ``files``, built on ``tree`` to reuse what is unchanged."""
        nested = _Nested()
        for path, content in files.items():
            node = nested
            parts = path.split("/")
            for part in parts[:-1]:
                node = node.children.setdefault(part, _Nested())
            node.children[parts[-1]] = content
        if tree is not None:
            _mark_stale(self.repo, tree, nested)
        return self._update(tree, nested)

    def commit(
        self,
        build: Callable[[Snapshot], Changes],
        message: Callable[[Snapshot, Snapshot], str] | str,
        author: Author | None = None,
    ) -> CommitResult:
        """Apply ``build(base)`` on the branch tip as one commit.

        ``build`` must depend only on the snapshot it gets: it runs again on
        the new tip whenever another writer got there first. Returns a result
        with ``commit_id=None`` when the changes leave the tree as it was.
        """
        if self.remote is not None:
            return self._commit_and_push(build, message, author)
        attempts = 0
        for delay in [*self.retry.delays(), None]:
            attempts += 1
            base = self.snapshot()
            result = self._prepare(base, build, message, author)
            if result.commit_id is None:
                result.attempts = attempts
                return result
            if self._swap(base.commit_id, pygit2.Oid(hex=result.commit_id)):
                result.attempts = attempts
                return result
            log.debug("branch %s moved during commit; rebuilding (attempt %d)", self.branch, attempts)
            if delay is not None:
                time.sleep(delay)
        raise RepoConflict(f"{self.path}: branch {self.branch} kept moving; gave up after {attempts} attempts")

    def _prepare(self, base: Snapshot, build, message, author: Author | None) -> CommitResult:
        changes = build(base)
        tree_id = self.write_tree(base.tree, changes)
        if base.tree is not None and tree_id == base.tree.id:
            return CommitResult(None, base, base)
        new = Snapshot(self.repo, self.repo[tree_id], None)
        text = message(base, new) if callable(message) else message
        who = author or Author(*COMMITTER)
        author_sig = pygit2.Signature(who.name, who.email)
        committer_sig = pygit2.Signature(*COMMITTER)
        parents = [base.commit_id] if base.commit_id is not None else []
        try:
            commit_id = self.repo.create_commit(None, author_sig, committer_sig, text, tree_id, parents)
        except pygit2.GitError as exc:
            raise RepoError(f"{self.path}: cannot write commit: {exc}") from exc
        new.commit_id = commit_id
        return CommitResult(str(commit_id), base, new)

    def _swap(self, expected: pygit2.Oid | None, new: pygit2.Oid) -> bool:
        """Move the branch from ``expected`` to ``new``; False when it moved first."""
        try:
            if expected is None:
                self.repo.references.create(self.ref_name, new, force=False)
                return True
            ref = self.repo.references.get(self.ref_name)
            if ref is None or ref.target != expected:
                return False
            ref.set_target(new, message="shipyard: commit")
            return True
        except (pygit2.GitError, pygit2.AlreadyExistsError, ValueError, OSError) as exc:
            # "old reference value does not match" or a held lock: another writer won
            log.debug("compare-and-swap on %s lost: %s", self.ref_name, exc)
            self._clear_stale_lock()
            return False

    def _clear_stale_lock(self) -> None:
        """Remove the branch's lock file when a writer died holding it (SIGKILL between lock and rename).

        A live writer holds the lock for milliseconds; one older than STALE_LOCK_SECONDS
        belongs to a process that is gone, and would otherwise block every later commit.
        """
        lock = Path(self.repo.path) / f"{self.ref_name}.lock"
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > STALE_LOCK_SECONDS:
            log.warning("removing stale lock %s (%.0f s old)", lock, age)
            lock.unlink(missing_ok=True)

    # --- remote ----------------------------------------------------------------

    def fetch(self) -> pygit2.Oid | None:
        """Fetch the remote branch; returns its tip (None for an empty remote)."""
        return fetch_branch(self.repo, self.remote, self.branch)

    def _push(self, commit_id: pygit2.Oid, base: pygit2.Oid | None) -> str | None:
        """Push ``commit_id`` to the remote branch; returns None or the rejection.

        A push that fails because the remote branch moved since ``base`` is a
        rejection to retry; any other failure is a RepoError.
        """
        temp = f"refs/shipyard/push/{uuid.uuid4().hex}"
        self.repo.references.create(temp, commit_id)
        try:
            with connect(self.remote, "push to") as connection:
                try:
                    self.repo.remotes.create_anonymous(connection.url).push(
                        [f"{temp}:{self.ref_name}"], callbacks=connection.callbacks)
                except (pygit2.GitError, Refused) as exc:
                    failed, error = exc, remote_error(self.remote, "push to", connection, exc)
                else:
                    rejected = connection.callbacks.rejected
                    return rejected[0] if rejected else None
            if self.fetch() != base:
                return str(error)
            raise error from failed
        finally:
            self.repo.references.delete(temp)

    def _commit_and_push(self, build, message, author) -> CommitResult:
        attempts = 0
        for delay in [*self.retry.delays(), None]:
            attempts += 1
            remote_tip = self.fetch()
            base = self.snapshot(remote_tip) if remote_tip is not None else self.snapshot()
            result = self._prepare(base, build, message, author)
            result.attempts = attempts
            target = pygit2.Oid(hex=result.commit_id) if result.commit_id else base.commit_id
            if result.commit_id is None and base.commit_id == remote_tip:
                self._follow(target)
                return result
            rejection = self._push(target, remote_tip)
            if rejection is None:
                self._follow(target)
                result.pushed = True
                return result
            log.info("push to remote rejected (%s); rebuilding on the new remote tip", rejection)
            if delay is not None:
                time.sleep(delay)
        raise RepoConflict(f"remote branch {self.branch} kept moving; gave up after {attempts} attempts")

    def _follow(self, target: pygit2.Oid | None) -> None:
        """Move the local branch forward to what the remote now has."""
        if target is None:
            return
        for _ in range(self.retry.attempts):
            current = self.tip()
            if current == target:
                return
            if current is not None and self.repo.descendant_of(current, target):
                return  # a later push already moved the local branch past this commit
            if self._swap(current, target):
                return

    # --- ancestry --------------------------------------------------------------
    # Commits are named by their hex ids here: ArgoCD reports revisions so, and versions record them so.

    def has_commit(self, commit: str) -> bool:
        """Whether the repository holds ``commit``; RepoError when it is not a commit id at all."""
        try:
            return commit in self.repo
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"{self.path}: {commit!r} is not a commit id: {exc}") from exc

    def is_ancestor(self, commit: str, revision: str) -> bool:
        """Whether ``commit`` is ``revision`` or in its history (as ``git merge-base --is-ancestor``).

        RepoError when the repository lacks either (not yet: a fetch may bring it).
        """
        try:
            # a short walk first: the commit is mostly a few commits back (ArgoCD moved on by one
            # deploy), and descendant_of computes a merge base, which walks the whole history
            return _within(self.repo, revision, commit, _NEAR) or self.repo.descendant_of(revision, commit)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"{self.path}: cannot tell whether {commit} is in the history of {revision}: {exc}") \
                from exc

    def ancestors_among(self, revision: str, commits: set[str]) -> set[str]:
        """Which of ``commits`` are ``revision`` or in its history, from one walk of that history.

        The walk ends when all of them are found, so pass only commits the repository has
        (``has_commit``): one it lacks keeps the walk going to the first commit. RepoError when
        the repository lacks ``revision``.
        """
        found: set[str] = set()
        if not commits:
            return found
        try:
            for commit in self.repo.walk(revision):
                if (name := str(commit.id)) in commits:
                    found.add(name)
                    if len(found) == len(commits):
                        break
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"{self.path}: cannot walk the history of {revision}: {exc}") from exc
        return found


_NEAR = 256  # commits walked back from a revision before asking for a merge base


def _within(git: pygit2.Repository, revision: str, commit: str, steps: int) -> bool:
    """Whether ``commit`` is among the ``steps`` newest commits of ``revision``'s history."""
    target = pygit2.Oid(hex=commit)
    for count, seen in enumerate(git.walk(revision)):
        if seen.id == target:
            return True
        if count >= steps:
            break
    return False


def _mark_stale(repo: pygit2.Repository, tree: pygit2.Tree, nested: _Nested) -> None:
    """Mark for deletion every entry of ``tree`` that ``nested`` does not name."""
    for entry in tree:
        child = nested.children.get(entry.name)
        if child is None:
            nested.children[entry.name] = DELETE
        elif isinstance(child, _Nested) and entry.filemode == TREE:
            _mark_stale(repo, repo[entry.id], child)


__all__ = [
    "ClusterRepo",
    "Remote",
    "CommitResult",
    "Snapshot",
    "Directory",
    "DELETE",
    "Author",
    "RetryPolicy",
]
