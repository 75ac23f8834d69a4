"""What deploying a set of specs would change in the cluster repositories: the plan ``shipyard plan`` shows.

Pure apart from reading git: each cluster repository's Snapshot and the renderings aimed at it
in, one plain JSON document out. It imports nothing of the server (no database, no Flask), so
the control plane (gitops.planning, behind ``POST /api/v1/plan``) and the offline command (the
cluster's profile and a clone of its repository) build the document with the same code, and
for the same inputs the same document: one formatter shows both, and a test compares them.

Per cluster, each app a spec defines is **added** (the repository holds nothing of it),
**changed** (a file of its directory, or its Application, would differ) or **unchanged**. With
``prune``, each app the repository holds in a workspace that some spec names, but that no spec
defines, is **removed**: its files go to /dev/null. Prune reaches only those workspaces, so a
directory of one team's specs never plans away another team's apps, and an app of a workspace
no spec names is never counted removed.

A plan refuses what the commit would refuse (gitops.apply): an object name another app of the
workspace holds, a route another app of the cluster takes.

The document::

    {"prune": bool,
     "changes": int,                        apps added, changed or removed, in every cluster
     "clusters": [{"cluster": str,
                   "commit": str | null,    the repository's tip the plan was made against
                   "counts": {"added": int, "changed": int, "removed": int, "unchanged": int},
                   "apps": [{"app": "<workspace>/<app>",
                             "action": "added" | "changed" | "removed" | "unchanged",
                             "spec": str | null,        the file of its spec (null: removed)
                             "notes": [str],            what the renderer changed and why
                             "files": [{"path": str, "change": "added" | "modified" | "removed",
                                        "added": int, "removed": int}],   lines, per file
                             "diff": str}]}]}           unified diff, a/ and b/ as git writes them

Clusters are ordered by name and apps by workspace and name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

import pygit2

from contract.errors import Problem, RepoError, SpecError
from contract.repository import app_dir, application_file
from renderer.render import Rendering
from renderer.spec import Spec, duplicate_problems, load_specs

from gitops import layout
from gitops.apply import refuse_clashes  # the commit's own check: the same refusals
from gitops.repo import Snapshot

ACTIONS = ("added", "changed", "removed", "unchanged")


def load_files(files: Iterable[tuple[str, str | bytes]]) -> tuple[list[Spec], list[Problem]]:
    """The specs of (name, text) files, and every problem found loading them.

    A plan reports the problems of every file together with those of rendering the valid
    specs, so loading does not stop at the first file that has some.
    """
    specs: list[Spec] = []
    problems: list[Problem] = []
    for name, text in files:
        try:
            specs.extend(load_specs(text, name))
        except SpecError as exc:
            problems.extend(exc.problems)
    return specs, problems + duplicate_problems(specs)


def read_clone(path: str | Path, branch: str) -> Snapshot:
    """The tip of ``branch`` in a clone of a cluster repository (bare or not), read and never written.

    The clone's own branch, or when it has none (a clone that checked out another branch) the
    one it fetched from ``origin``.
    """
    try:
        repo = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    except pygit2.GitError as exc:
        raise RepoError(f"{path} is not a git repository: {exc}") from exc
    for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        if (found := repo.references.get(ref)) is not None:
            commit = repo[found.resolve().target]
            return Snapshot(repo, commit.tree, commit.id)
    raise RepoError(f'{path} has no branch "{branch}", the branch of its cluster profile')


def plan(targets: Iterable[tuple[str, Snapshot, Sequence[Rendering]]], prune: bool = False) -> dict:
    """The plan document of (cluster, its repository's snapshot, the renderings aimed at it) targets.

    Raises SpecError with the problems of every cluster: what the commit would refuse.
    """
    clusters, problems = [], []
    for cluster, snapshot, renderings in sorted(targets, key=lambda target: target[0]):
        try:
            clusters.append(plan_cluster(cluster, snapshot, renderings, prune))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    changes = sum(c["counts"][action] for c in clusters for action in ("added", "changed", "removed"))
    return {"prune": prune, "changes": changes, "clusters": clusters}


def plan_cluster(cluster: str, snapshot: Snapshot, renderings: Sequence[Rendering], prune: bool = False) -> dict:
    """One cluster's part of the plan: each app of ``renderings`` (and with ``prune`` each app of their
    workspaces that none of them defines) against the repository at ``snapshot``."""
    refuse_clashes(snapshot, list(renderings))
    apps = [app_plan(snapshot, rendering.workspace, rendering.name, rendering) for rendering in renderings]
    if prune:
        defined = {(r.workspace, r.name) for r in renderings}
        for workspace in sorted({r.workspace for r in renderings}):
            apps += [app_plan(snapshot, workspace, app, None) for app in layout.apps_in(snapshot, workspace)
                     if (workspace, app) not in defined]
    apps.sort(key=lambda app: app["app"])
    return {"cluster": cluster, "commit": str(snapshot.commit_id) if snapshot.commit_id else None,
            "counts": {action: sum(app["action"] == action for app in apps) for action in ACTIONS},
            "apps": apps}


def app_plan(snapshot: Snapshot, workspace: str, app: str, rendering: Rendering | None) -> dict:
    """One app's part of the plan: what deploying ``rendering`` (None: deleting the app) changes."""
    before = _files_in(snapshot, workspace, app)
    after = _rendered_files(rendering) if rendering is not None else {}
    files, diff = file_changes(before, after)
    if rendering is None:
        action = "removed"
    elif not before:
        action = "added"
    else:
        action = "changed" if files else "unchanged"
    return {"app": f"{workspace}/{app}", "action": action,
            "spec": rendering.spec.file if rendering is not None else None,
            "notes": list(rendering.notes) if rendering is not None else [], "files": files, "diff": diff}


def _files_in(snapshot: Snapshot, workspace: str, app: str) -> dict[str, bytes]:
    """The app's files in the repository: its directory and its Application, by path."""
    files = snapshot.walk(app_dir(workspace, app))
    if (application := snapshot.read(application_file(workspace, app))) is not None:
        files[application_file(workspace, app)] = application
    return files


def _rendered_files(rendering: Rendering) -> dict[str, bytes]:
    """The files a deploy of the rendering writes, by path (gitops.layout.rendering_changes)."""
    directory = app_dir(rendering.workspace, rendering.name)
    files = {f"{directory}/{name}": data for name, data in rendering.files.items()}
    files[application_file(rendering.workspace, rendering.name)] = rendering.application_bytes
    return files


def file_changes(before: dict[str, bytes], after: dict[str, bytes]) -> tuple[list[dict], str]:
    """Each file that differs, with the lines it gains and loses, and the unified diff of them all."""
    files, diff = [], []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        lines = list(difflib.unified_diff(
            _lines(old), _lines(new),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null"))
        body = lines[2:]  # past the ---/+++ header, a line of content may itself start with "---"
        files.append({"path": path, "change": "added" if old is None else "removed" if new is None else "modified",
                      "added": sum(line.startswith("+") for line in body),
                      "removed": sum(line.startswith("-") for line in body)})
        diff += [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]
    return files, "".join(diff)


def _lines(data: bytes | None) -> list[str]:
    """A file's lines, each with its newline: cut at newlines only, as git cuts them (str.splitlines
    would cut at a form feed or a U+2028 inside a quoted value too)."""
    *whole, last = (data or b"").decode("utf-8", "replace").split("\n")
    return [line + "\n" for line in whole] + ([last] if last else [])


__all__ = ["ACTIONS", "load_files", "read_clone", "plan", "plan_cluster", "app_plan", "file_changes"]
