"""What the dashboard shows: clusters at a glance, the apps table with health, an app's events, what changed.

Reads only, each one a few indexed queries whatever the number of apps: the
apps table is a page of a filtered, ordered join (apps, their workspace and
cluster, their ArgoCD status), counted once; the overview groups counts in
the database. Everything is filtered by what the caller may read
(``reads.app_read_filter``), so a workspace viewer's counts are their
workspace's.

``health_word`` is the one place that turns an app's sync and health into
what a person reads: a failed sync is never shown as healthy, an app no
agent has reported yet is "Not reported", and a cluster whose agent went
quiet makes its apps' status "stale".

``fingerprint`` and ``tenant_fingerprint`` say, in one small query, whether
anything an open page shows may have changed: the pages poll them
(webapp.pages.live) and fetch themselves again only when they moved.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gitops import reads, status
from gitops.clusters import sees_cluster
from gitops.models import (
    Application,
    AppStatus,
    Cluster,
    ClusterObject,
    Command,
    JobRun,
    StatusEvent,
    Version,
    Workspace,
)
from gitops.policy import Scope
from gitops.service_context import Context

HEALTHS = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
# The filter values of the apps table: ArgoCD's healths, plus a failed sync and apps not reported yet.
HEALTH_FILTERS = (*HEALTHS, "SyncFailed", "NotReported")
FAILED_OPERATIONS = ("Failed", "Error")
PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True)
class Word:
    """A status as a person reads it: a word, and its tone (ok, busy, bad, quiet) for the colour beside it."""

    text: str
    tone: str
    detail: str | None = None


def health_word(health: str | None, sync: str | None, operation: str | None, message: str | None = None,
                stale: bool = False, reasons: list[str] = ()) -> Word:
    """One app's state: a failed sync first (whatever the old pods' health), then pods that crash or
    cannot start (``reasons``, where the caller has the pods), then ArgoCD's health."""
    if health is None and sync is None:
        return Word("Not reported", "quiet", "no agent has reported this app yet")
    if operation in FAILED_OPERATIONS:
        return Word("Sync failed", "bad", message)
    problems = [r for r in reasons if r in status.POD_PROBLEMS]
    if problems and health in ("Progressing", "Unknown") and not stale:
        # ArgoCD waits for its progress deadline (10 minutes by default) before it says Degraded
        return Word(f"Failing: {problems[0]}", "bad", message)
    tone = {"Healthy": "ok", "Progressing": "busy", "Degraded": "bad", "Missing": "bad",
            "Suspended": "quiet"}.get(health or "", "quiet")
    word = Word(health or "Unknown", tone, message if tone != "ok" else None)
    if stale:
        return Word(f"{word.text} (stale)", "quiet",
                    "the cluster's agent has not reported lately; this is what it last said")
    return word


def sync_word(sync: str | None, operation: str | None) -> Word:
    if operation in FAILED_OPERATIONS:
        return Word("Sync failed", "bad")
    if operation == "Running":
        return Word("Syncing", "busy")
    return {"Synced": Word("Synced", "ok"), "OutOfSync": Word("Out of sync", "busy")}.get(
        sync or "", Word(sync or "–", "quiet"))


def connectivity_word(connectivity: str) -> Word:
    return {"online": Word("Connected", "ok"), "stale": Word("Stale", "busy"),
            "offline": Word("Offline", "bad")}.get(connectivity, Word("Never connected", "quiet"))


# --- the overview ---------------------------------------------------------------------------------


@dataclass
class ClusterCard:
    name: str
    connectivity: Word
    last_seen_at: dt.datetime | None
    simulated: bool
    kubernetes_version: str | None
    agent_version: str | None
    addons: list[str]
    watch_faults: list[dict]
    health: dict[str, int] = field(default_factory=dict)  # health word -> apps
    apps: int = 0
    workspaces: dict[str, list[str]] = field(default_factory=dict)  # environment -> workspace names


@dataclass
class Change:
    """One line of the feed: a version made, or an app's status changed."""

    at: dt.datetime
    cluster: str
    workspace: str
    app: str
    what: str
    word: Word
    by: str | None = None


@dataclass
class Overview:
    clusters: list[ClusterCard]
    totals: dict[str, int]
    feed: list[Change]


def _readable_apps(ctx: Context, query):
    condition = reads.app_read_filter(ctx)
    query = query.where(Application.tenant_id == ctx.principal.tenant_id)
    return query if condition is None else query.where(condition)


def overview(ctx: Context, settings: status.StatusSettings, now: dt.datetime | None = None,
             feed_size: int = 20) -> Overview:
    session = ctx.session
    clusters = [c for c in session.scalars(select(Cluster).where(Cluster.tenant_id == ctx.principal.tenant_id)
                                           .order_by(Cluster.name)) if sees_cluster(ctx.principal, c)]
    cards: dict[int, ClusterCard] = {}
    for cluster in clusters:
        info = cluster.agent_info or {}
        cards[cluster.id] = ClusterCard(
            name=cluster.name, connectivity=connectivity_word(status.reachability(cluster.last_seen_at, settings, now)),
            last_seen_at=cluster.last_seen_at, simulated=bool(info.get("simulated")),
            kubernetes_version=info.get("kubernetes_version"), agent_version=info.get("agent_version"),
            addons=sorted(info.get("addons") or []), watch_faults=list(info.get("watch_faults") or []))
    counts = session.execute(_readable_apps(ctx, (
        select(Workspace.cluster_id, AppStatus.health, AppStatus.sync, AppStatus.operation, func.count())
        .select_from(Application)
        .join(Workspace, Application.workspace_id == Workspace.id)
        .join(Cluster, Workspace.cluster_id == Cluster.id)
        .outerjoin(AppStatus, AppStatus.application_id == Application.id)
        .where(Application.deleted.is_(False))
        .group_by(Workspace.cluster_id, AppStatus.health, AppStatus.sync, AppStatus.operation)))).all()
    totals: dict[str, int] = {}
    for cluster_id, health, sync, operation, count in counts:
        card = cards.get(cluster_id)
        if card is None:
            continue
        word = health_word(health, sync, operation).text
        card.health[word] = card.health.get(word, 0) + count
        card.apps += count
        totals[word] = totals.get(word, 0) + count
    workspaces = session.execute(select(Workspace.cluster_id, Workspace.id, Workspace.environment, Workspace.name)
                                 .where(Workspace.cluster_id.in_(list(cards))).order_by(Workspace.name)).all()
    for cluster_id, workspace_id, environment, name in workspaces:
        if ctx.principal.can("workspace.read", Scope(ctx.principal.tenant_id, cluster_id, workspace_id)):
            cards[cluster_id].workspaces.setdefault(environment, []).append(name)
    return Overview(clusters=list(cards.values()), totals=totals, feed=recent_changes(ctx, feed_size))


def recent_changes(ctx: Context, size: int = 20) -> list[Change]:
    """Versions made and status changes, newest first: the overview's feed."""
    versions = ctx.session.execute(_readable_apps(ctx, (
        select(Version.created_at, Version.committed_at, Version.number, Version.action, Version.state,
               Version.changed, Version.error, Version.author, Application.name, Workspace.name, Cluster.name)
        .join(Application, Version.application_id == Application.id)
        .join(Workspace, Application.workspace_id == Workspace.id)
        .join(Cluster, Workspace.cluster_id == Cluster.id)
        .order_by(Version.id.desc()).limit(size)))).all()
    events = ctx.session.execute(_readable_apps(ctx, (
        select(StatusEvent.at, StatusEvent.sync, StatusEvent.health, StatusEvent.message,
               Application.name, Workspace.name, Cluster.name)
        .join(Application, StatusEvent.application_id == Application.id)
        .join(Workspace, Application.workspace_id == Workspace.id)
        .join(Cluster, Workspace.cluster_id == Cluster.id)
        .order_by(StatusEvent.id.desc()).limit(size)))).all()
    changes = []
    for created, committed, number, action, state, changed, error, author, app, workspace, cluster in versions:
        what = f"version {number}: {action}"
        if state == "failed":
            word = Word("failed", "bad", error)
        elif state == "committed" and changed is False:
            word = Word("no change", "quiet", "the rendered manifests were already in the repository")
        else:
            word = Word(state, {"committed": "ok", "pending": "busy"}.get(state, "quiet"))
        changes.append(Change(committed or created, cluster, workspace, app, what, word, author))
    for at, sync, health, message, app, workspace, cluster in events:
        word = health_word(health, sync, None, message)
        changes.append(Change(at, cluster, workspace, app, f"{sync}, {health}", word))
    changes.sort(key=lambda c: c.at, reverse=True)
    return changes[:size]


# --- the apps table -------------------------------------------------------------------------------


@dataclass
class AppRow:
    cluster: str
    workspace: str
    name: str
    kind: str
    current_version: int | None
    live_version: int | None
    state: Word
    sync: Word
    changed_at: dt.datetime


@dataclass
class AppsPage:
    rows: list[AppRow]
    total: int
    page: int
    pages: int
    per_page: int


def apps_page(ctx: Context, settings: status.StatusSettings, *, cluster: str | None = None,
              workspace: str | None = None, health: str | None = None, text: str | None = None,
              page: int = 1, per_page: int = 50, now: dt.datetime | None = None) -> AppsPage:
    """One page of the apps the caller may read, by cluster, workspace and name, filtered."""
    query = (select(Application.name, Application.kind, Application.current_version, Application.updated_at,
                    Workspace.name, Cluster.name, Cluster.id, AppStatus.health, AppStatus.sync, AppStatus.operation,
                    AppStatus.message, AppStatus.live_version, AppStatus.updated_at)
             .select_from(Application)
             .join(Workspace, Application.workspace_id == Workspace.id)
             .join(Cluster, Workspace.cluster_id == Cluster.id)
             .outerjoin(AppStatus, AppStatus.application_id == Application.id)
             .where(Application.deleted.is_(False)))
    query = _readable_apps(ctx, query)
    if cluster:
        query = query.where(Cluster.name == cluster)
    if workspace:
        query = query.where(Workspace.name == workspace)
    if text:
        query = query.where(Application.name.contains(text.lower(), autoescape=True))
    if health == "SyncFailed":
        query = query.where(AppStatus.operation.in_(FAILED_OPERATIONS))
    elif health == "NotReported":
        query = query.where(AppStatus.id.is_(None))
    elif health in HEALTHS:
        query = query.where(AppStatus.health == health, or_(AppStatus.operation.is_(None),
                                                             AppStatus.operation.not_in(FAILED_OPERATIONS)))
    total = ctx.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = ctx.session.connection().execute(
        query.order_by(Cluster.name, Workspace.name, Application.name)
        .limit(per_page).offset((page - 1) * per_page)).all()
    stale = _stale_clusters(ctx.session, {row[6] for row in rows}, settings, now)
    out = []
    for (name, kind, current, updated, ws, cl, cluster_id, app_health, sync, operation, message, live,
         status_at) in rows:
        out.append(AppRow(cl, ws, name, kind, current, live,
                          health_word(app_health, sync, operation, message, stale=cluster_id in stale),
                          sync_word(sync, operation), max(updated, status_at) if status_at else updated))
    return AppsPage(out, total, page, pages, per_page)


def _stale_clusters(session: Session, ids: set[int], settings: status.StatusSettings,
                    now: dt.datetime | None) -> set[int]:
    if not ids:
        return set()
    clusters = session.scalars(select(Cluster).where(Cluster.id.in_(ids))).all()
    return {c.id for c in clusters if status.reachability(c.last_seen_at, settings, now) in ("stale", "offline")}


def filter_choices(ctx: Context) -> dict[str, list[str]]:
    """The clusters and workspaces the apps table can be filtered by (those with apps the caller reads)."""
    rows = ctx.session.execute(_readable_apps(ctx, (
        select(Cluster.name, Workspace.name).select_from(Application)
        .join(Workspace, Application.workspace_id == Workspace.id)
        .join(Cluster, Workspace.cluster_id == Cluster.id)
        .where(Application.deleted.is_(False)).distinct()))).all()
    return {"clusters": sorted({c for c, _ in rows}), "workspaces": sorted({w for _, w in rows})}


# --- an app's events ------------------------------------------------------------------------------

_REPLICASET_HASH = "[bcdfghjklmnpqrstvwxz2456789]{5,10}"


def app_events(session: Session, app: Application, pods: list[dict], runs: list[str] = (),
               limit: int = 50) -> list[dict]:
    """Kubernetes Events of the app's objects (its workload, ReplicaSets, pods, runs), newest first."""
    names = {f"Pod/{p['name']}" for p in pods} | {f"Deployment/{app.name}", f"Rollout/{app.name}",
                                                   f"CronJob/{app.name}", f"WorkflowTemplate/{app.name}",
                                                   f"ScaledObject/{app.name}",
                                                   f"HorizontalPodAutoscaler/{app.name}"}
    names |= {f"Workflow/{r}" for r in runs} | {f"Job/{r}" for r in runs}
    replicaset = re.compile(rf"ReplicaSet/{re.escape(app.name)}-{_REPLICASET_HASH}$")
    pod_of_app = re.compile(rf"Pod/{re.escape(app.name)}-{_REPLICASET_HASH}-[a-z0-9]{{5}}$")
    rows = session.execute(select(ClusterObject.name, ClusterObject.state).where(
        ClusterObject.cluster_id == app.workspace.cluster_id, ClusterObject.kind == "Event",
        ClusterObject.namespace == app.workspace.name)).all()
    events = []
    for name, state in rows:
        involved = state.get("object") or ""
        if involved in names or replicaset.match(involved) or pod_of_app.match(involved):
            events.append({"name": name, **state})
    events.sort(key=lambda e: e.get("last") or "", reverse=True)
    return events[:limit]


def app_workload(session: Session, app: Application) -> dict | None:
    """The app's Deployment or Rollout as the agent last reported it (replicas, ready, updated, step)."""
    rows = session.execute(select(ClusterObject.kind, ClusterObject.state).where(
        ClusterObject.cluster_id == app.workspace.cluster_id, ClusterObject.kind.in_(("Deployment", "Rollout")),
        ClusterObject.namespace == app.workspace.name)).all()
    for kind, state in rows:
        if state.get("app") == app.name:
            return {"kind": kind, **state}
    return None


# --- fingerprints ---------------------------------------------------------------------------------


NAMESPACE_KINDS = ("Pod", "Event", "Deployment", "Rollout", "Workflow", "Job")


def fingerprint(session: Session, app_id: int, settings: status.StatusSettings,
                now: dt.datetime | None = None) -> str:
    """Changes when anything an app's page shows may have: its versions, its ArgoCD status, the
    objects of its namespace (pods, events, workload, runs), its commands and runs, and whether its
    cluster's agent is heard from; not when other namespaces of a busy cluster change."""
    app = session.execute(select(Application.workspace_id, Workspace.cluster_id, Workspace.name)
                          .join(Workspace, Application.workspace_id == Workspace.id)
                          .where(Application.id == app_id)).first()
    if app is None:
        return "gone"
    _, cluster_id, namespace = app
    objects = (select(func.count(ClusterObject.id), func.max(ClusterObject.updated_at))
               .where(ClusterObject.cluster_id == cluster_id, ClusterObject.namespace == namespace,
                      ClusterObject.kind.in_(NAMESPACE_KINDS)))
    row = session.execute(
        select(Cluster.last_seen_at, Application.version_counter, Application.updated_at, Application.deleted,
               AppStatus.updated_at,
               select(func.max(Version.id)).where(Version.application_id == app_id).scalar_subquery(),
               select(func.count(Version.committed_at)).where(Version.application_id == app_id).scalar_subquery(),
               select(func.max(JobRun.id)).where(JobRun.application_id == app_id).scalar_subquery(),
               select(func.count(JobRun.finished_at)).where(JobRun.application_id == app_id).scalar_subquery(),
               select(func.max(func.coalesce(Command.done_at, Command.sent_at, Command.created_at)))
               .where(Command.application_id == app_id).scalar_subquery())
        .select_from(Application)
        .join(Workspace, Application.workspace_id == Workspace.id)
        .join(Cluster, Workspace.cluster_id == Cluster.id)
        .outerjoin(AppStatus, AppStatus.application_id == Application.id)
        .where(Application.id == app_id)).first()
    count, newest = session.execute(objects).first()
    reach = status.reachability(row[0], settings, now)
    return "|".join(str(v) for v in (reach, *row[1:], count, newest))


def _shown_agent_info(info: dict | None) -> str:
    """What the overview shows of an agent's heartbeat (not its times, which move every beat); a
    digest that is the same in every process, as every fingerprint must be."""
    info = info or {}
    shown = json.dumps([info.get(k) for k in ("agent_version", "kubernetes_version", "addons", "watch_faults",
                                              "simulated")], sort_keys=True, default=str)
    return hashlib.blake2b(shown.encode(), digest_size=6).hexdigest()


def tenant_fingerprint(session: Session, tenant_id: int, settings: status.StatusSettings,
                       now: dt.datetime | None = None) -> str:
    """Changes when anything the overview or the apps table shows may have, tenant-wide."""
    clusters = session.execute(select(Cluster.id, Cluster.stream, Cluster.stream_seq, Cluster.last_seen_at,
                                      Cluster.agent_info)
                               .where(Cluster.tenant_id == tenant_id).order_by(Cluster.id)).all()
    apps = session.execute(select(func.count(Application.id), func.max(Application.updated_at))
                           .where(Application.tenant_id == tenant_id)).first()
    newest = session.scalar(select(func.max(Version.id)).join(Application, Version.application_id == Application.id)
                            .where(Application.tenant_id == tenant_id))
    workspaces = session.scalar(select(func.count(Workspace.id)).where(Workspace.tenant_id == tenant_id))
    parts = [f"{c}:{stream}:{seq}:{status.reachability(seen, settings, now)}:{_shown_agent_info(info)}"
             for c, stream, seq, seen, info in clusters]
    return "|".join([*parts, str(apps[0]), str(apps[1]), str(newest), str(workspaces)])


__all__ = [
    "HEALTHS",
    "HEALTH_FILTERS",
    "PAGE_SIZES",
    "AppRow",
    "AppsPage",
    "Change",
    "ClusterCard",
    "Overview",
    "Word",
    "app_events",
    "apps_page",
    "connectivity_word",
    "filter_choices",
    "fingerprint",
    "health_word",
    "overview",
    "recent_changes",
    "sync_word",
    "tenant_fingerprint",
]
