"""Apply and delete: rendered apps in, one commit in the cluster repository out.

Rendering happens before the commit loop (it is pure and may be slow); only
the cheap, tip-dependent parts (the bootstrap AppProject listing every
workspace, the clash checks: a Service name, a route another app takes) are
rebuilt when a concurrent writer moves the branch. ``rewrite_for_profile``
writes again what a changed profile decides beside the apps' manifests.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contract.errors import AppNotFound, SpecError
from contract.repository import app_dir, application_file
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.profiles import ClusterProfile
from renderer.render import Rendering, WorkspaceSettings

from gitops import layout, routes
from gitops.repo import Author, ClusterRepo, CommitResult, Snapshot

TRAILER_DEPLOYMENT = "Shipyard-Deployment-Id"
TRAILER_DIGEST = "Shipyard-Spec-Digest"
TRAILER_AUTHOR = "Shipyard-Author"
TRAILER_SOURCE = "Shipyard-Source-Commit"

MAX_SUMMARY_LINES = 50


@dataclass
class AppOutcome:
    workspace: str
    app: str
    action: str  # created | updated | unchanged | deleted
    digest: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.workspace}/{self.app}"


@dataclass
class ApplyResult:
    commit_id: str | None
    deployment_id: str
    apps: list[AppOutcome]
    cluster: str
    attempts: int = 1
    pushed: bool = False
    base_commit: str | None = None  # the tip the commit was built on (the tip, when nothing changed)

    @property
    def changed(self) -> bool:
        return self.commit_id is not None

    def as_dict(self) -> dict:
        return {
            "cluster": self.cluster,
            "commit": self.commit_id,
            "changed": self.changed,
            "deployment_id": self.deployment_id,
            "pushed": self.pushed,
            "apps": [
                {"app": a.key, "action": a.action, "digest": a.digest, "notes": a.notes} for a in self.apps
            ],
        }


def _outcomes(renderings: list[Rendering], base: Snapshot, new: Snapshot) -> list[AppOutcome]:
    out = []
    for r in renderings:
        path = app_dir(r.workspace, r.name)
        app_file = application_file(r.workspace, r.name)
        before, after = base.tree_id(path), new.tree_id(path)
        if before is None:
            action = "created"
        elif before != after or base.tree_id(app_file) != new.tree_id(app_file):
            action = "updated"
        else:
            action = "unchanged"
        out.append(AppOutcome(r.workspace, r.name, action, r.spec.digest, list(r.notes)))
    return out


def _message(title: str, outcomes: list[AppOutcome], trailers: list[tuple[str, str]]) -> str:
    changed = [o for o in outcomes if o.action not in ("unchanged", "absent")]
    lines = [f"{o.key}: {o.action}" for o in changed[:MAX_SUMMARY_LINES]]
    if len(changed) > MAX_SUMMARY_LINES:
        lines.append(f"... and {len(changed) - MAX_SUMMARY_LINES} more")
    body = "\n".join(lines)
    trailer_text = "\n".join(f"{k}: {v}" for k, v in trailers)
    return f"{title}\n\n{body}\n\n{trailer_text}\n" if body else f"{title}\n\n{trailer_text}\n"


def _title(verb: str, keys: list[str]) -> str:
    if len(keys) <= 3:
        return f"{verb} {', '.join(keys)}"
    return f"{verb} {len(keys)} apps"


def refuse_clashes(base: Snapshot, renderings: list[Rendering], deletions: Sequence[tuple[str, str]] = ()) -> None:
    """Refuse an object name another app of the workspace holds, and a route another app of the cluster
    takes (gitops.routes), on the tree the commit is built on; ``deletions`` free their routes."""
    names: dict[str, dict[str, set[tuple[str, str]]]] = {}
    for r in renderings:
        names.setdefault(r.workspace, {})[r.name] = set(layout.object_names(r))
    problems = []
    for r in renderings:
        for kind, name in layout.name_clashes(base, r, names[r.workspace]):
            problems.append(r.spec.problem(
                f'{kind} "{name}" would also belong to another app of workspace "{r.workspace}"; rename one of the apps',
                ("name",),
            ))
    problems += routes.clash_problems(base, renderings, leaving=deletions)
    if problems:
        raise SpecError(problems)


def apply(
    renderings: list[Rendering],
    profile: ClusterProfile,
    repo: ClusterRepo,
    *,
    author: str = "shipyard",
    source_commit: str | None = None,
    deployment_id: str | Sequence[str] | None = None,
    deletions: Sequence[tuple[str, str]] = (),
    workspace_settings: Mapping[str, WorkspaceSettings] | None = None,
    schemas: KubeSchemas = CORE_ONLY,
) -> ApplyResult:
    """Commit rendered apps (and their workspaces and bootstrap) as one commit.

    ``deletions`` (workspace, app) are removed in the same commit; one that is
    not in the repository is reported as "absent". Several deployment ids
    (one per deploy batched into this commit) each get their trailer.
    ``workspace_settings`` (labels, quota) are written for the workspaces
    they name, which need not have an app in this commit; workspaces without
    an entry get the defaults. The workspaces' and the bootstrap's objects are
    validated against ``schemas``.
    """
    if deployment_id is None or isinstance(deployment_id, str):
        deployment_ids = [deployment_id or str(uuid.uuid4())]
    else:
        deployment_ids = list(deployment_id)
    settings = workspace_settings or {}
    workspaces = sorted({r.workspace for r in renderings} | set(settings))
    fixed: dict[str, object] = {}
    for workspace in workspaces:
        fixed.update(layout.workspace_changes(profile, workspace, settings.get(workspace), schemas))
    for rendering in renderings:
        fixed.update(layout.rendering_changes(rendering))

    def build(base: Snapshot):
        refuse_clashes(base, renderings, deletions)
        known = set(layout.workspaces_in(base)) | set(workspaces)
        changes = {**layout.bootstrap_changes(profile, sorted(known), schemas, base, workspaces), **fixed}
        for workspace, app in deletions:
            if layout.app_exists(base, workspace, app):
                changes.update(layout.delete_app_changes(workspace, app))
        return changes

    trailers = [(TRAILER_DEPLOYMENT, d) for d in deployment_ids]
    trailers += [(TRAILER_DIGEST, f"{r.workspace}/{r.name} {r.spec.digest}") for r in renderings]
    trailers.append((TRAILER_AUTHOR, author))
    if source_commit:
        trailers.append((TRAILER_SOURCE, source_commit))

    def outcomes(base: Snapshot, new: Snapshot) -> list[AppOutcome]:
        out = _outcomes(renderings, base, new)
        for workspace, app in deletions:
            gone = layout.app_exists(base, workspace, app) and not layout.app_exists(new, workspace, app)
            out.append(AppOutcome(workspace, app, "deleted" if gone else "absent"))
        return out

    def message(base: Snapshot, new: Snapshot) -> str:
        done = outcomes(base, new)
        if done:
            title = _title("Delete" if not renderings else "Deploy", [o.key for o in done])
        elif workspaces:
            title = f"Configure workspace {', '.join(workspaces)}"
        else:
            title = f"Bootstrap cluster {profile.name}"
        return _message(title, done, trailers)

    result: CommitResult = repo.commit(build, message, Author.parse(author))
    return ApplyResult(
        commit_id=result.commit_id,
        deployment_id=deployment_ids[0],
        apps=outcomes(result.base, result.new),
        cluster=profile.name,
        attempts=result.attempts,
        pushed=result.pushed,
        base_commit=str(result.base.commit_id) if result.base.commit_id else None,
    )


def rewrite_for_profile(
    profile: ClusterProfile,
    repo: ClusterRepo,
    renderings: list[Rendering],
    *,
    title: str,
    author: str = "shipyard",
    workspace_settings: Mapping[str, WorkspaceSettings] | None = None,
    schemas: KubeSchemas = CORE_ONLY,
) -> ApplyResult:
    """Write again, in one commit, what a changed profile decides beside the apps' manifests: the
    bootstrap, the workspaces' files and each app's Application.

    ``renderings`` are the apps' current versions rendered with ``profile``. An app's Application
    is rewritten only while the tree the commit is built on holds exactly the rendering's manifests
    (the version it was rendered from): one whose directory differs (a deploy landed since, or the
    profile changes its manifests too) keeps its Application until its next deploy renders it whole,
    so this never puts an older version back.
    """
    deployment_id = str(uuid.uuid4())
    settings = workspace_settings or {}
    fixed: dict[str, object] = {}
    for workspace in sorted(settings):
        fixed.update(layout.workspace_changes(profile, workspace, settings[workspace], schemas))

    def build(base: Snapshot):
        known = set(layout.workspaces_in(base)) | set(settings)
        changes = {**layout.bootstrap_changes(profile, sorted(known), schemas), **fixed}
        for rendering in renderings:
            directory = app_dir(rendering.workspace, rendering.name)
            if base.walk(directory) == {f"{directory}/{name}": data for name, data in rendering.files.items()}:
                changes[application_file(rendering.workspace, rendering.name)] = rendering.application_bytes
        return changes

    trailers = [(TRAILER_DEPLOYMENT, deployment_id), (TRAILER_AUTHOR, author)]

    def outcomes(base: Snapshot, new: Snapshot) -> list[AppOutcome]:
        out = []
        for rendering in renderings:
            path = application_file(rendering.workspace, rendering.name)
            action = "updated" if base.tree_id(path) != new.tree_id(path) else "unchanged"
            out.append(AppOutcome(rendering.workspace, rendering.name, action, rendering.spec.digest))
        return out

    result = repo.commit(build, lambda base, new: _message(title, outcomes(base, new), trailers),
                         Author.parse(author))
    return ApplyResult(result.commit_id, deployment_id, outcomes(result.base, result.new), profile.name,
                       result.attempts, result.pushed,
                       str(result.base.commit_id) if result.base.commit_id else None)


def delete(
    profile: ClusterProfile,
    repo: ClusterRepo,
    workspace: str,
    app: str,
    *,
    author: str = "shipyard",
    deployment_id: str | None = None,
) -> ApplyResult:
    """Remove an app's directory and Application in one commit.

    The workspace (namespace) stays: other apps or people may use it.
    """
    deployment_id = deployment_id or str(uuid.uuid4())
    missing: list[bool] = []

    def build(base: Snapshot):
        if not layout.app_exists(base, workspace, app):
            missing.append(True)
            return {}
        missing.clear()
        return layout.delete_app_changes(workspace, app)

    trailers = [(TRAILER_DEPLOYMENT, deployment_id), (TRAILER_AUTHOR, author)]
    outcome = AppOutcome(workspace, app, "deleted")
    result = repo.commit(build, _message(f"Delete {workspace}/{app}", [outcome], trailers), Author.parse(author))
    if missing:
        raise AppNotFound(f'no app "{workspace}/{app}" in the repository of cluster "{profile.name}"')
    return ApplyResult(result.commit_id, deployment_id, [outcome], profile.name, result.attempts, result.pushed)


__all__ = ["apply", "rewrite_for_profile", "delete", "refuse_clashes", "ApplyResult", "AppOutcome"]
