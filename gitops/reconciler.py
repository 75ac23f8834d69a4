"""The reconciler: finishes the pending Versions a crash (or a failed commit) left behind.

Step by step in the crash protocol (see gitops.deploy): a pending Version whose deployment
id is in no commit is rendered and committed again; one whose id *is* in a commit is only
recorded, with the refreshes that commit never queued (gitops.refreshes). Pending Versions
are claimed (``claimed_by``/``claimed_until``, for ``LEASE``) with a conditional UPDATE, so
across any number of processes one works on each at a time; a live deploy writes its
intent already claimed, so the reconciler leaves it alone while the request is still at work.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from contract.errors import ShipyardError, SpecError
from contract.repository import application_name
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.render import render
from renderer.spec import load_specs
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gitops import metrics, refreshes, webhook_events
from gitops.clusters import profile_of
from gitops.commit_step import Committers, Ticket, deployment_ids
from gitops.models import Cluster, Version, utcnow
from gitops.repo import ClusterRepo
from gitops.repo_store import RepoStore
from gitops.workspaces import workspace_settings

log = logging.getLogger(__name__)

# How long a claim keeps other workers off a pending Version: a live deploy's intent is written
# claimed for this long, so the reconciler repairs it only once the request has had its chance.
LEASE = dt.timedelta(seconds=60)


def worker_id() -> str:
    """This process's name in claims: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claim(sessions: sessionmaker[Session], worker: str, now: dt.datetime, limit: int) -> list[int]:
    with sessions.begin() as session:
        candidates = session.scalars(
            select(Version.id).where(Version.state == "pending",
                                     or_(Version.claimed_until.is_(None), Version.claimed_until < now))
            .order_by(Version.id).limit(limit)).all()
        claimed = []
        for version_id in candidates:
            taken = session.execute(
                update(Version).where(Version.id == version_id, Version.state == "pending",
                                      or_(Version.claimed_until.is_(None), Version.claimed_until < now))
                .values(claimed_by=worker, claimed_until=now + LEASE))
            if taken.rowcount == 1:
                claimed.append(version_id)
        return claimed



def deployments_in_log(repo: ClusterRepo, since: dt.datetime) -> dict[str, str]:
    """Deployment ids named by commits made since ``since`` (with slack for clock skew) -> commit id."""
    found: dict[str, str] = {}
    horizon = (since - dt.timedelta(minutes=10)).timestamp()
    for commit_id, message in repo.messages_since(horizon):
        for deployment_id in deployment_ids(message):
            found.setdefault(deployment_id, commit_id)
    return found


def reconcile(sessions: sessionmaker[Session], repos: RepoStore, committers: Committers, worker: str, *,
              now: Callable[[], dt.datetime] = utcnow, limit: int = 500, schemas: KubeSchemas = CORE_ONLY) -> int:
    """Finish pending Versions whose claim has run out; returns how many were repaired."""
    claimed = _claim(sessions, worker, now(), limit)
    if not claimed:
        return 0
    repaired = 0
    with sessions() as session:
        versions = session.scalars(select(Version).where(Version.id.in_(claimed))
                                   .order_by(Version.application_id, Version.number)).all()
        by_cluster: dict[int, list[Version]] = {}
        for version in versions:
            by_cluster.setdefault(version.application.workspace.cluster_id, []).append(version)
        clusters = {cluster_id: session.get(Cluster, cluster_id) for cluster_id in by_cluster}
    # Closed before committing: on SQLite this session's transaction holds the write lock
    # (BEGIN IMMEDIATE) that every recording transaction below waits for.
    for cluster_id, pending in by_cluster.items():
        repaired += _reconcile_cluster(sessions, repos, committers, clusters[cluster_id], pending, schemas)
    metrics.RECONCILER_REPAIRS.inc(repaired)
    return repaired


def _reconcile_cluster(sessions, repos: RepoStore, committers: Committers, cluster: Cluster,
                       pending: list[Version], schemas: KubeSchemas) -> int:
    repo = repos.open(cluster)
    in_log = deployments_in_log(repo, min(v.created_at for v in pending))
    repaired = 0
    tickets, profile, refreshed = [], None, False
    for version in pending:
        commit_id = in_log.get(version.deployment_id)
        if commit_id is not None:  # committed before a crash, never recorded
            profile = profile or profile_of(cluster)
            with sessions.begin() as session:
                row = session.get(Version, version.id)
                if row.state == "pending":
                    row.state, row.commit_id, row.committed_at, row.changed = "committed", commit_id, utcnow(), True
                    row.claimed_by = row.claimed_until = None
                    app = row.application
                    if (app.current_version or 0) < row.number:
                        app.current_version, app.deleted = row.number, row.action == "delete"
                    webhook_events.versions_committed(session, cluster, [webhook_events.facts_of(row)],
                                                      row.committed_at)
                    refreshed |= bool(refreshes.queue_recorded_commit(
                        session, cluster, profile, repo, commit_id,
                        {application_name(app.workspace.name, app.name): app.id}))
                    repaired += 1
            log.info("reconciler: version %s of app %s was in commit %s; recorded it",
                     version.number, version.application.name, commit_id[:12])
            continue
        try:
            profile = profile or profile_of(cluster)
            rendering = None
            if version.spec is not None:
                (spec,) = load_specs(json.dumps(version.spec, indent=2, ensure_ascii=False), f"version {version.number}")
                rendering = render(spec, profile, schemas)
        except SpecError as exc:  # the cluster's profile changed under a pending deploy
            with sessions.begin() as session:
                session.execute(update(Version).where(Version.id == version.id).values(
                    state="failed", error=str(exc), claimed_by=None, claimed_until=None))
            repaired += 1
            continue
        app = version.application
        tickets.append(Ticket(version.id, version.application_id, version.number, app.workspace.name, app.name,
                              version.deployment_id, version.author, rendering, version.source_commit,
                              settings=workspace_settings(app.workspace)))
    if refreshed and committers.on_refresh is not None:
        committers.on_refresh(cluster.id)
    if tickets:
        committers.run(cluster, profile, tickets)
        repaired += sum(t.state in ("committed", "superseded", "failed") for t in tickets)
        log.info("reconciler: committed %d pending version(s) to cluster %s", len(tickets), cluster.name)
    return repaired


class Reconciler:
    """Runs ``reconcile`` on start and then every ``interval`` seconds, until stopped."""

    def __init__(self, sessions, repos: RepoStore, committers: Committers, worker: str, interval: float,
                 schemas: KubeSchemas = CORE_ONLY):
        self.sessions, self.repos, self.committers = sessions, repos, committers
        self.worker, self.interval, self.schemas = worker, interval, schemas
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        try:
            return reconcile(self.sessions, self.repos, self.committers, self.worker, schemas=self.schemas)
        except ShipyardError as exc:
            log.warning("reconciler pass failed: %s", exc)
            return 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="shipyard-reconciler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


__all__ = ["reconcile", "Reconciler", "deployments_in_log", "worker_id", "LEASE"]
