"""A commit reaches the cluster at once: each commit asks ArgoCD, through the cluster's agent, to refresh
exactly the Applications it touched.

ArgoCD polls a repository every 180 s by default; its faster path, a git webhook into the ArgoCD
server, needs a route into the cluster. The agent's outbound link is already there, and its
``refresh`` command (contract.protocol) patches an Application's ``argocd.argoproj.io/refresh``
annotation, which makes ArgoCD compare it with the branch's tip now. So whoever commits to a
cluster repository (the commit step, a workspace's or a profile's commit) queues, in the
transaction that records the commit, one refresh command per Application the commit touched:
the paths the commit changed, by the repository layout (contract.repository.touched_applications),
each command naming the commit (``params: {"commit": <id>, "reason": "commit"}``, by ``shipyard``).
The agent's long-poll is woken once that transaction commits.

A commit's refresh of an Application that already has one

| that has one that is | becomes |
|---|---|
| queued (not yet sent) | that command, now naming the newer commit: no new row |
| sent (in flight) | a new queued command beside it |

so a burst of commits leaves at most one refresh in flight and one queued per Application, each
at the newest commit it knew of, and the agent patches each Application once per claim. Commit
refreshes never expire while queued (gitops.commands.claim_commands): an agent offline for hours
refreshes what it missed when it comes back, one command per Application whatever the number of
commits. A first commit (a new cluster's bootstrap) refreshes nothing: nothing of it is in the
cluster yet, and ArgoCD reads it when the root is applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

import pygit2
from renderer.profiles import ClusterProfile
from sqlalchemy import and_, bindparam, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from contract.errors import RepoError
from contract.protocol import COMMIT_REFRESH_REASON
from contract.repository import parse_application_name, touched_applications
from gitops.models import Application, Cluster, Command, Workspace, utcnow
from gitops.repo import TREE, ClusterRepo

SYSTEM = "shipyard"  # who queues them: the control plane itself

_COMMANDS = Command.__table__
# A refresh queued for a commit (a person's refresh takes only "hard"): never NULL, so NOT of it holds
# for every other command.
COMMIT_REFRESH = and_(_COMMANDS.c.type == "refresh",
                      func.coalesce(_COMMANDS.c.params["reason"].as_string(), "") == COMMIT_REFRESH_REASON)
_QUEUED = (select(_COMMANDS.c.id, _COMMANDS.c.name, _COMMANDS.c.params)
           .where(_COMMANDS.c.cluster_id == bindparam("cluster_id"), _COMMANDS.c.state == "queued",
                  _COMMANDS.c.kind == "Application", _COMMANDS.c.namespace == bindparam("namespace"),
                  _COMMANDS.c.name.in_(bindparam("names", expanding=True)), COMMIT_REFRESH)
           # locked: no agent claims one between this read and its update (claims skip locked rows)
           .order_by(_COMMANDS.c.id).with_for_update())
_RENAME_COMMIT = (update(_COMMANDS).where(_COMMANDS.c.id == bindparam("command_id"))
                  .values(params=bindparam("new_params", type_=_COMMANDS.c.params.type)))
_INSERT = insert(_COMMANDS)


def changed_paths(repo: ClusterRepo, base: str, commit: str) -> list[str]:
    """The files ``commit`` added, changed or removed since ``base``.

    Only the trees whose ids differ are read: a deploy's diff costs the width of the directories
    along its paths, not the size of the repository. (pygit2's Diff of two root trees visits every
    entry of both: 16 ms against this walk's 0.6 ms in a repository of 20,000 apps.)
    """
    return list(_changed(repo.snapshot(base).tree, repo.snapshot(commit).tree, ""))


def _changed(old: pygit2.Tree | None, new: pygit2.Tree | None, prefix: str) -> Iterator[str]:
    before = {entry.name: entry for entry in old} if old is not None else {}
    after = {entry.name: entry for entry in new} if new is not None else {}
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name), after.get(name)
        if was is not None and now is not None and was.id == now.id and was.filemode == now.filemode:
            continue
        was_tree = was is not None and was.filemode == TREE
        now_tree = now is not None and now.filemode == TREE
        if was_tree or now_tree:
            yield from _changed(was if was_tree else None, now if now_tree else None, f"{prefix}{name}/")
        if (was is not None and not was_tree) or (now is not None and not now_tree):
            yield f"{prefix}{name}"


def queue_commit_refreshes(session: Session, cluster: Cluster, profile: ClusterProfile, repo: ClusterRepo,
                           commit: str | None, base: str | None, apps: Mapping[str, int] | None = None,
                           now: dt.datetime | None = None) -> set[str]:
    """Queue (or move on to ``commit``) the refreshes of the Applications ``commit`` touched since ``base``.

    ``apps`` maps the Application names of apps the caller knows to their rows' ids; the others
    are looked up. Returns the names refreshed: empty when the commit changed nothing, or is the
    first (``base`` None).
    """
    if commit is None or base is None or commit == base:
        return set()
    names = touched_applications(changed_paths(repo, base, commit), cluster.name)
    if names:
        _queue(session, cluster, profile.argocd_namespace, repo, commit, names, apps or {}, now or utcnow())
    return names


def queue_recorded_commit(session: Session, cluster: Cluster, profile: ClusterProfile, repo: ClusterRepo,
                          commit: str, apps: Mapping[str, int] | None = None) -> set[str]:
    """``queue_commit_refreshes`` for a commit made earlier by a committer that died before recording it:
    the refreshes of what it changed since its parent, which were never queued."""
    try:
        parents = repo.repo[commit].parent_ids
    except (KeyError, ValueError) as exc:
        raise RepoError(f"{repo.path}: no commit {commit}: {exc}") from exc
    return queue_commit_refreshes(session, cluster, profile, repo, commit, str(parents[0]) if parents else None,
                                  apps)


def _queue(session: Session, cluster: Cluster, namespace: str, repo: ClusterRepo, commit: str, names: set[str],
           apps: Mapping[str, int], now: dt.datetime) -> None:
    queued: dict[str, list] = {}
    for row in session.execute(_QUEUED, {"cluster_id": cluster.id, "namespace": namespace, "names": sorted(names)}):
        queued.setdefault(row.name, []).append(row)
    new, moved = sorted(names - queued.keys()), []
    for rows in queued.values():
        for row in rows:
            if row.params.get("commit") != commit and _descends(repo, commit, row.params.get("commit")):
                moved.append({"command_id": row.id, "new_params": {**row.params, "commit": commit}})
    if moved:  # one executemany
        session.execute(_RENAME_COMMIT, moved)
    if new:
        ids = _application_ids(session, cluster, [name for name in new if name not in apps])
        session.execute(_INSERT, [
            {"cluster_id": cluster.id, "application_id": apps.get(name, ids.get(name)), "type": "refresh",
             "kind": "Application", "namespace": namespace, "name": name,
             "params": {"commit": commit, "reason": COMMIT_REFRESH_REASON}, "state": "queued", "attempts": 0,
             "created_by": SYSTEM, "created_at": now} for name in new])


def _descends(repo: ClusterRepo, commit: str, older: str | None) -> bool:
    """Whether ``commit`` comes after ``older`` (a commit recorded late must not take a queued refresh back).

    By their commit times, which the branch's commits follow: two lookups, where walking the history
    between them cost as much as the commits since the Application's refresh was queued (an agent
    away for long, or none installed). Within the same second, by ancestry, a walk of a few commits.
    """
    if not older:
        return True
    try:
        made, queued = repo.repo[commit].commit_time, repo.repo[older].commit_time
        return made > queued or (made == queued and repo.is_ancestor(older, commit))
    except (KeyError, ValueError, RepoError):  # the queued one is gone from the history (rewritten)
        return True


def _application_ids(session: Session, cluster: Cluster, names: list[str]) -> dict[str, int]:
    """The rows of the apps among ``names`` (Applications of apps, ``<ws>.<app>``) in one read."""
    pairs = [pair for name in names if (pair := parse_application_name(name))]
    if not pairs:
        return {}
    rows = session.execute(select(Application.id, Workspace.name, Application.name)
                           .join(Workspace, Application.workspace_id == Workspace.id)
                           .where(Workspace.cluster_id == cluster.id,
                                  tuple_(Workspace.name, Application.name).in_(pairs)))
    return {f"{workspace}.{app}": app_id for app_id, workspace, app in rows}


__all__ = ["COMMIT_REFRESH", "SYSTEM", "changed_paths", "queue_commit_refreshes", "queue_recorded_commit"]
