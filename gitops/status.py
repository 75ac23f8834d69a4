"""Live status as people read it: a cluster's, an app's and its versions', with their history.

What the clusters' agents report is applied by gitops.ingest; this module reads it back, and
holds the settings of the whole conversation with the agents (``StatusSettings``).

ArgoCD Applications become each app's ``AppStatus`` (history in ``StatusEvent`` when something a
person reads changed). The synced git revision maps to versions: a version is synced when its
commit is that revision or an ancestor of it, and the live version is the highest such. The
cluster repository answers the ancestry questions (``ClusterRepo.is_ancestor``,
``ancestors_among``); the answers are cached here, once per process, since a commit never
changes its history.

How each version's commit reached ArgoCD (``arrivals``): when its refresh was asked for through
the agent (gitops.refreshes) and when ArgoCD was first seen comparing against it, the two steps
between committed and synced of the version's trace (gitops.trace).

Version status, as a user reads it::

    pending → committed → syncing → synced → healthy
                 │            └─→ failed (ArgoCD could not sync it)
                 │                  synced → degraded (ArgoCD's message, the pods' reasons)
                 └─ replaced (an older version, no longer live)

plus ``failed``/``superseded`` for deploys that never reached git. Status
is as fresh as the cluster's agent: when it has not been heard from for a
while the cluster is ``stale`` (then ``offline``) and status is flagged as
stale rather than shown as wrong.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, lazyload

from contract.errors import RepoError
from contract.repository import application_name
from gitops.models import (
    Application,
    AppStatus,
    Cluster,
    ClusterObject,
    Command,
    StatusEvent,
    Version,
    Workspace,
    utcnow,
)
from gitops.refreshes import COMMIT_REFRESH
from gitops.repo import ClusterRepo

# Pod reasons that say why an app is not healthy, worst first.
POD_PROBLEMS = ("OOMKilled", "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                "CreateContainerError", "InvalidImageName", "RunContainerError", "Error", "ContainerCannotRun")


@dataclass(frozen=True)
class StatusSettings:
    """How long things last; built from the app's config (webapp.config) or by a test."""

    token_grace: float = 3600.0  # seconds a rotated-out agent token still works
    online_within: float = 60.0
    stale_within: float = 600.0
    command_lease: float = 120.0  # seconds a sent command waits for its result before it is sent again
    command_ttl: float = 900.0  # seconds a queued command waits for an agent before it expires
    command_attempts: int = 3
    history_per_app: int = 500
    gap_wait: float = 2.0  # seconds a batch that came before its predecessor waits for it

    @classmethod
    def from_config(cls, config: Any) -> StatusSettings:
        return cls(token_grace=float(config.get("AGENT_TOKEN_GRACE", 3600)),
                   online_within=float(config.get("AGENT_ONLINE_WITHIN", 60)),
                   stale_within=float(config.get("AGENT_STALE_WITHIN", 600)),
                   command_lease=float(config.get("COMMAND_LEASE", 120)),
                   command_ttl=float(config.get("COMMAND_TTL", 900)),
                   history_per_app=int(config.get("STATUS_HISTORY", 500)),
                   gap_wait=float(config.get("STATUS_GAP_WAIT", 2.0)))


# --- are the agents there, and is anything waiting for them -----------------------------------


def connectivity(cluster: Cluster, settings: StatusSettings, now: dt.datetime | None = None) -> str:
    """online | stale | offline, by when the cluster's agent was last heard from."""
    return reachability(cluster.last_seen_at, settings, now) if cluster.last_seen_at else "offline"


def reachability(last_seen: dt.datetime | None, settings: StatusSettings, now: dt.datetime | None = None) -> str:
    """online | stale | offline by the time of an agent's last call; never when it has made none."""
    if last_seen is None:
        return "never"
    age = ((now or utcnow()) - last_seen).total_seconds()
    if age <= settings.online_within:
        return "online"
    return "stale" if age <= settings.stale_within else "offline"


def pending_commands(session: Session, cluster: Cluster) -> int:
    return session.scalar(select(func.count()).select_from(Command).where(
        Command.cluster_id == cluster.id, Command.state == "queued")) or 0


# --- revisions → versions ------------------------------------------------------------------------


class _Ancestry:
    """Whether commit B is reachable from revision A, cached: commits never change their history."""

    def __init__(self, size: int = 100_000):
        self._known: OrderedDict[tuple[str, str, str], bool] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def reachable(self, repo: ClusterRepo, revision: str, commit: str) -> bool:
        if revision == commit:
            return True
        key = (str(repo.path), revision, commit)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
        try:
            result = repo.is_ancestor(commit, revision)
        except RepoError:
            return False  # not in this repository (yet): not cached, a fetch may bring it
        with self._lock:
            self._known[key] = result
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return result

    def learn(self, repo: ClusterRepo, revision: str, commits: set[str], at_least: int = 8) -> None:
        """Find out which of ``commits`` ``revision`` reaches with one walk of its history.

        Worth it from ``at_least`` unknown commits on (a snapshot, a branch moved back): each
        ``reachable`` would walk that history again. Commits not in the repository are left
        unknown.
        """
        prefix = str(repo.path)
        with self._lock:
            unknown = {c for c in commits if c != revision and (prefix, revision, c) not in self._known}
        try:
            unknown = {c for c in unknown if repo.has_commit(c)}
            if len(unknown) < at_least:
                return
            found = repo.ancestors_among(revision, unknown)
        except RepoError:
            return
        with self._lock:
            for commit in unknown:
                self._known[(prefix, revision, commit)] = commit in found
            while len(self._known) > self._size:
                self._known.popitem(last=False)


ancestry = _Ancestry()


def live_versions(session: Session, repo: ClusterRepo, revisions: dict[int, str],
                  before: dict[int, tuple[str, int]] | None = None,
                  newest: dict[int, int | None] | None = None) -> dict[int, int]:
    """For each app id, the highest committed version whose commit is reachable from its revision.

    ``before`` gives, where known, the revision an app was synced at until now and the version
    live there; ``newest``, where known, the number of the app's newest committed version.
    ArgoCD moves every Application to each new commit, so most apps move from the same old
    revision to the same new one: when the new revision descends from the old (one walk for
    that pair, cached and shared by all those apps) and nothing newer was committed, the old
    live version is still live, and nothing is read. Only the other apps' versions are read
    and walked to, many commits from one revision in one walk.
    """
    before, newest = before or {}, newest or {}
    live: dict[int, int] = {}
    rest: dict[int, str] = {}
    for app_id, revision in revisions.items():
        old = before.get(app_id)
        if (old is not None and app_id in newest and (newest[app_id] or 0) <= old[1]
                and ancestry.reachable(repo, revision, old[0])):
            live[app_id] = old[1]
        else:
            rest[app_id] = revision
    if not rest:
        return live
    rows = session.execute(
        select(Version.application_id, Version.number, Version.commit_id)
        .where(Version.application_id.in_(rest), Version.state == "committed", Version.commit_id.is_not(None))
        .order_by(Version.application_id, Version.number.desc())).all()
    wanted: dict[str, set[str]] = {}
    for app_id, _, commit in rows:
        wanted.setdefault(rest[app_id], set()).add(commit)
    for revision, commits in wanted.items():
        ancestry.learn(repo, revision, commits)
    for app_id, number, commit in rows:
        if app_id in live:
            continue
        old = before.get(app_id)
        if old is not None and number <= old[1] and ancestry.reachable(repo, rest[app_id], old[0]):
            live[app_id] = old[1]
        elif ancestry.reachable(repo, rest[app_id], commit):
            live[app_id] = number
    return live


def version_statuses(status: AppStatus | None, versions: list[Version], repo: ClusterRepo | None,
                     pods: list[dict] | None = None) -> dict[int, dict]:
    """Each version's status (module docstring) and why, as ``{number: {"status", "message", "reasons"}}``."""
    out: dict[int, dict] = {}
    pods = pods or []
    reasons = sorted({r for p in pods for r in p["reasons"]}, key=_problem_rank)
    live = status.live_version if status else None
    if status is not None and repo is not None and status.synced_revision:
        # a version newer than the recorded live one whose commit is already synced (a deploy that
        # changed no bytes records the commit that held them) is the live one now
        for version in sorted(versions, key=lambda v: -v.number):
            if version.number <= (live or 0):
                break
            if version.state == "committed" and version.commit_id and ancestry.reachable(
                    repo, status.synced_revision, version.commit_id):
                live = version.number
                break
    for version in versions:
        entry: dict[str, Any] = {"status": None, "message": None, "reasons": []}
        if version.state in ("pending", "failed", "superseded"):
            entry["status"], entry["message"] = version.state, version.error
        elif status is None or repo is None or version.commit_id is None:
            entry["status"] = "committed"
        elif status.synced_revision and ancestry.reachable(repo, status.synced_revision, version.commit_id):
            if version.number == live:
                entry.update(_live_status(status, reasons, pods))
            else:
                entry["status"] = "replaced"
        elif status.revision and ancestry.reachable(repo, status.revision, version.commit_id):
            if status.operation in ("Failed", "Error") and _operation_reaches(repo, status, version):
                entry["status"], entry["message"] = "failed", status.message
            elif status.operation == "Running" or status.sync == "OutOfSync":
                entry["status"] = "syncing"
            else:
                entry["status"] = "committed"
        else:
            entry["status"] = "committed"
        out[version.number] = entry
    return out


@dataclass(frozen=True)
class Arrival:
    """How a version's commit reached ArgoCD; None where it has not (yet)."""

    requested_at: dt.datetime | None = None  # the agent's answer to a refresh at the commit or a later one
    requested_commit: str | None = None  # the commit that refresh named
    refresh: str | None = None  # what the agent did: "normal" (it patched), "skipped" (ArgoCD had seen it)
    seen_at: dt.datetime | None = None  # the first report of ArgoCD comparing against the commit or a later one
    seen_revision: str | None = None


def arrivals(session: Session, wanted: list[tuple[int, ClusterRepo | None, Version]]) -> dict[int, Arrival]:
    """How the commit of each of ``wanted`` (its cluster's id and repository, a version) reached ArgoCD,
    by version id.

    Refresh requested: the first result, from the version's commit on, of a commit's refresh of
    its app's Application that names its commit or a later one (a burst's refreshes move on to
    the newest commit, gitops.refreshes). Seen: the first status report of the Application, from
    the commit on, whose revision (status.sync.revision: what ArgoCD compared against, set
    before it syncs) is the commit or a later one, whatever made ArgoCD look (the refresh, its
    own poll, a webhook). Two reads for all of them, each app's from its oldest wanted
    version's commit on.
    """
    wanted = [item for item in wanted if item[1] is not None and item[2].commit_id and item[2].committed_at]
    if not wanted:
        return {}
    since: dict[int, dt.datetime] = {}
    for _, _, version in wanted:
        if version.application_id not in since or version.committed_at < since[version.application_id]:
            since[version.application_id] = version.committed_at
    clusters = {cluster_id for cluster_id, _, _ in wanted}
    refreshes: dict[int, list[Any]] = {}
    for row in session.execute(
            select(Command.application_id, Command.done_at, Command.params, Command.result)
            .where(Command.cluster_id.in_(clusters), Command.state == "done", COMMIT_REFRESH,
                   or_(*(and_(Command.application_id == app_id, Command.done_at >= at)
                         for app_id, at in since.items())))
            .order_by(Command.done_at, Command.id)):
        refreshes.setdefault(row.application_id, []).append(row)
    events: dict[int, list[Any]] = {}
    for row in session.execute(
            select(StatusEvent.application_id, StatusEvent.at, StatusEvent.revision)
            .where(StatusEvent.revision.is_not(None),
                   or_(*(and_(StatusEvent.application_id == app_id, StatusEvent.at >= at)
                         for app_id, at in since.items())))
            .order_by(StatusEvent.id)):
        events.setdefault(row.application_id, []).append(row)
    out: dict[int, Arrival] = {}
    for _, repo, version in wanted:
        request = next((row for row in refreshes.get(version.application_id, ())
                        if row.done_at >= version.committed_at and isinstance(row.params.get("commit"), str)
                        and ancestry.reachable(repo, row.params["commit"], version.commit_id)), None)
        seen = next((row for row in events.get(version.application_id, ())
                     if row.at >= version.committed_at and ancestry.reachable(repo, row.revision, version.commit_id)),
                    None)
        out[version.id] = Arrival(
            request.done_at if request else None, request.params["commit"] if request else None,
            (request.result or {}).get("refresh") if request else None,
            seen.at if seen else None, seen.revision if seen else None)
    return out


def _operation_reaches(repo: ClusterRepo, status: AppStatus, version: Version) -> bool:
    """Whether ArgoCD's last sync operation tried ``version``: ArgoCD keeps a failed operation's state
    after it compares a newer revision, until its next sync starts, and that failure is not the newer
    version's. An agent that does not report the operation's revision leaves it to the compared one."""
    return status.operation_revision is None or ancestry.reachable(repo, status.operation_revision, version.commit_id)


def _problem_rank(reason: str) -> tuple[int, str]:
    return (POD_PROBLEMS.index(reason) if reason in POD_PROBLEMS else len(POD_PROBLEMS), reason)


def _live_status(status: AppStatus, reasons: list[str], pods: list[dict]) -> dict:
    health = status.health
    # A failed sync operation is about the revision ArgoCD tried to apply, a newer version than the
    # one still live: its message belongs to that version, never to a healthy or synced one.
    own_message = None if status.operation in ("Failed", "Error") else status.message
    if health == "Healthy":
        return {"status": "healthy", "message": own_message, "reasons": reasons}
    crashing = [p for p in pods if any(r in POD_PROBLEMS for r in p["reasons"])]
    if health in ("Degraded", "Missing") or crashing:
        # pods that crash or cannot start fail the version now, not when ArgoCD's progress deadline
        # (10 minutes by default) turns the health Degraded
        message = status.message
        troubled = [p for p in pods if p["reasons"]]
        if troubled:
            worst = troubled[0]
            detail = f"{', '.join(worst['reasons'])} (pod {worst['name']}" + (
                f": {worst['message']})" if worst.get("message") else ")")
            message = f"{message}; {detail}" if message else detail
        return {"status": "degraded", "message": message, "reasons": reasons}
    return {"status": "synced", "message": own_message, "reasons": reasons}


def workspace_pods(session: Session, cluster_id: int, namespace: str) -> dict[str, list[dict]]:
    """The pods of a workspace's namespace as the agent last reported them, by their app, troubled ones first.

    One read for every app of the workspace: a status of many apps (POST /apps/status) reads the
    namespace once, not once per app.
    """
    rows = session.execute(select(ClusterObject.name, ClusterObject.state).where(
        ClusterObject.cluster_id == cluster_id, ClusterObject.kind == "Pod", ClusterObject.namespace == namespace))
    by_app: dict[str, list[dict]] = {}
    for name, state in rows:
        if state.get("app"):
            by_app.setdefault(state["app"], []).append({
                "name": name, "phase": state.get("phase"), "ready": bool(state.get("ready")),
                "restarts": int(state.get("restarts") or 0), "reasons": list(state.get("reasons") or []),
                "message": state.get("message")})
    for pods in by_app.values():
        pods.sort(key=lambda p: (not p["reasons"], [_problem_rank(r) for r in p["reasons"]], p["name"]))
    return by_app


def app_pods(session: Session, app: Application) -> list[dict]:
    """The app's pods as the agent last reported them, troubled ones first."""
    return workspace_pods(session, app.workspace.cluster_id, app.workspace.name).get(app.name, [])


def statuses_for(session: Session, repo: ClusterRepo | None, app: Application, versions: list[Version]) -> dict[int, dict] | None:
    """Each version's status, or None while no agent has said anything about the app."""
    status = session.scalar(select(AppStatus).where(AppStatus.application_id == app.id))
    if status is None:
        return None
    return version_statuses(status, versions, repo, app_pods(session, app))


def app_status(session: Session, repo: ClusterRepo | None, app: Application, settings: StatusSettings,
               versions: list[Version], now: dt.datetime | None = None) -> dict:
    """Everything about an app's live state, as plain data for the API."""
    status = session.scalar(select(AppStatus).where(AppStatus.application_id == app.id))
    reachability = connectivity(app.workspace.cluster, settings, now)
    (document,) = _status_documents(session, [_Known(app, status, app_pods(session, app), versions, repo,
                                                     reachability)])
    return document


def apps_status(session: Session, repos, apps: list[Application], settings: StatusSettings, versions: int,
                now: dt.datetime | None = None) -> list[dict]:
    """``app_status`` of each of ``apps``, in their order, with one read of each kind for all of them:
    their statuses, their ``versions`` most recent versions, each workspace's pods and the versions'
    arrivals (``repos``: the process's cluster repositories, gitops.repo_store)."""
    ids = [app.id for app in apps]
    statuses = {row.application_id: row for row in session.scalars(
        select(AppStatus).where(AppStatus.application_id.in_(ids)))}
    ranked = (select(Version.id, func.row_number().over(partition_by=Version.application_id,
                                                        order_by=Version.number.desc()).label("rank"))
              .where(Version.application_id.in_(ids)).subquery())
    recent: dict[int, list[Version]] = {}
    for version in session.scalars(select(Version).options(lazyload(Version.application))
                                   .join(ranked, ranked.c.id == Version.id).where(ranked.c.rank <= versions)
                                   .order_by(Version.application_id, Version.number.desc())):
        recent.setdefault(version.application_id, []).append(version)
    pods: dict[tuple[int, str], dict[str, list[dict]]] = {}
    known = []
    for app in apps:
        workspace, cluster = app.workspace, app.workspace.cluster
        if (where := (cluster.id, workspace.name)) not in pods:
            pods[where] = workspace_pods(session, *where)
        known.append(_Known(app, statuses.get(app.id), pods[where].get(app.name, []), recent.get(app.id, []),
                          repos.open(cluster), connectivity(cluster, settings, now)))
    return _status_documents(session, known)


@dataclass
class _Known:
    """What is known of one app for its status document."""

    app: Application
    status: AppStatus | None
    pods: list[dict]
    versions: list[Version]
    repo: ClusterRepo | None
    reachability: str


def _status_documents(session: Session, known: list[_Known]) -> list[dict]:
    """The apps' status documents; the arrivals (``arrivals``) of their versions on their way or live
    in one go (a replaced version's are in its trace)."""
    _learn_ancestry(known)
    per_app = [version_statuses(one.status, one.versions, one.repo, one.pods) for one in known]
    arrived = arrivals(session, [
        (one.app.workspace.cluster_id, one.repo, version) for one, per_version in zip(known, per_app)
        for version in one.versions
        if version.state == "committed" and per_version[version.number]["status"] != "replaced"])
    return [_status_document(one, per_version, arrived) for one, per_version in zip(known, per_app)]


def _learn_ancestry(known: list[_Known]) -> None:
    """Which versions each revision the apps are at reaches, one walk per revision for all of them.

    ArgoCD moves every Application of a cluster to each commit it fetches, so the apps share a few
    revisions; while deploys land one after another (each commit refreshed at once), each is new,
    and asking version by version walked its history once per app and version (50 apps of 10
    versions: 500 walks a status request, 3 s of a 50-app ``deploy --wait`` beyond Healthy).
    """
    by_revision: dict[tuple[str, str], tuple[ClusterRepo, set[str]]] = {}
    for one in known:
        if one.status is None or one.repo is None:
            continue
        commits = {version.commit_id for version in one.versions if version.commit_id}
        for revision in {one.status.synced_revision, one.status.revision} - {None}:
            by_revision.setdefault((str(one.repo.path), revision), (one.repo, set()))[1].update(commits)
    for (_, revision), (repo, commits) in by_revision.items():
        ancestry.learn(repo, revision, commits)


def _status_document(known: _Known, per_version: dict[int, dict], arrived: dict[int, Arrival]) -> dict:
    app, status, pods = known.app, known.status, known.pods
    cluster = app.workspace.cluster
    return {
        "app": f"{cluster.name}:{app.workspace.name}/{app.name}",
        "kind": app.kind,
        "application": application_name(app.workspace.name, app.name),
        "connectivity": known.reachability,
        "stale": known.reachability != "online",
        "known": status is not None,
        "sync": status.sync if status else None,
        "health": status.health if status else None,
        "operation": status.operation if status else None,
        "revision": status.revision if status else None,
        "synced_revision": status.synced_revision if status else None,
        "message": status.message if status else None,
        "live_version": status.live_version if status else None,
        "updated_at": status.updated_at.isoformat() if status else None,
        "reasons": sorted({r for p in pods for r in p["reasons"]}, key=_problem_rank),
        "pods": pods,
        "versions": [{"number": v.number, "commit": v.commit_id, "state": v.state, **per_version[v.number],
                      "committed_at": _iso(v.committed_at),
                      "refresh_requested_at": _iso(arrived[v.id].requested_at) if v.id in arrived else None,
                      "seen_at": _iso(arrived[v.id].seen_at) if v.id in arrived else None}
                     for v in known.versions],
    }


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def status_history(session: Session, app: Application, limit: int = 100, before: int | None = None) -> list[StatusEvent]:
    query = select(StatusEvent).where(StatusEvent.application_id == app.id)
    if before is not None:
        query = query.where(StatusEvent.id < before)
    return list(session.scalars(query.order_by(StatusEvent.id.desc()).limit(limit)))


def cluster_status(session: Session, cluster: Cluster, settings: StatusSettings, now: dt.datetime | None = None) -> dict:
    objects = dict(session.execute(select(ClusterObject.kind, func.count()).where(
        ClusterObject.cluster_id == cluster.id).group_by(ClusterObject.kind)).all())
    health = dict(session.execute(
        select(AppStatus.health, func.count()).join(Application, AppStatus.application_id == Application.id)
        .join(Workspace).where(Workspace.cluster_id == cluster.id).group_by(AppStatus.health)).all())
    sync = dict(session.execute(
        select(AppStatus.sync, func.count()).join(Application, AppStatus.application_id == Application.id)
        .join(Workspace).where(Workspace.cluster_id == cluster.id).group_by(AppStatus.sync)).all())
    info = cluster.agent_info or {}
    return {
        "cluster": cluster.name,
        "connectivity": connectivity(cluster, settings, now),
        "last_seen_at": cluster.last_seen_at.isoformat() if cluster.last_seen_at else None,
        "simulated": bool(info.get("simulated")),
        "agent": info or None,
        "stream": {"id": cluster.stream, "seq": cluster.stream_seq},
        "objects": objects,
        "apps": {"health": health, "sync": sync},
        "commands_pending": pending_commands(session, cluster),
    }


__all__ = [
    "Arrival",
    "POD_PROBLEMS",
    "StatusSettings",
    "ancestry",
    "app_pods",
    "apps_status",
    "arrivals",
    "workspace_pods",
    "app_status",
    "cluster_status",
    "connectivity",
    "live_versions",
    "pending_commands",
    "reachability",
    "status_history",
    "statuses_for",
    "version_statuses",
]
