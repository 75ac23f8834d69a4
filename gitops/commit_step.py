"""The commit step of a deploy: group commit per cluster, and the recording of what each commit carries.

Steps 2 and 3 of the crash protocol (see gitops.deploy): concurrent deploys to one cluster
queue on a per-cluster ``Committers`` queue; whoever holds the cluster's lock commits
everything queued (one Version per app per commit) as one commit, and every Version records
the commit that carries it. The commit and its record run in one database transaction that
locks the apps' rows, and a Version is ``superseded`` (not committed) when a higher-numbered
Version of its app is already committed, so the repository never goes back to an older
version of an app, whichever process gets there first. The same transaction records each
committed Version's status events (gitops.webhook_events) and queues the refreshes of the
Applications the commit touched (gitops.refreshes); once it commits, ``on_refresh`` wakes the
cluster's agent.

What becomes of each pending Version is decided by ``next_step``, a pure function; the rest
of this module is the I/O around it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contract.errors import RepoError, ShipyardError, SpecError
from contract.repository import application_name
from renderer.profiles import ClusterProfile
from renderer.render import Rendering, WorkspaceSettings
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gitops import apply as apply_service
from gitops import metrics, refreshes, webhook_events
from gitops.models import Application, Cluster, Version, utcnow
from gitops.repo import ClusterRepo
from gitops.repo_store import RepoStore

log = logging.getLogger(__name__)

MAX_BATCH = 200


# --- the per-cluster commit queue ------------------------------------------------------------


@dataclass
class Ticket:
    """One pending Version on its way into the repository."""

    version_id: int
    application_id: int
    number: int
    workspace: str
    app: str
    deployment_id: str
    author: str
    rendering: Rendering | None  # None: delete the app
    source_commit: str | None = None
    settings: WorkspaceSettings | None = None  # the workspace's labels and quota, rewritten with the app
    # True until a commit was attempted for it: a fresh Version cannot be in any commit yet
    fresh: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    state: str | None = None  # committed | superseded | failed | pending (left for the reconciler)
    error: ShipyardError | None = None
    commit_id: str | None = None  # once committed: the commit that carries it
    changed: bool | None = None
    committed_at: dt.datetime | None = None
    elsewhere: bool = False  # its final state was written by another committer


# The statements every commit runs, built once: building and hashing a statement cost more
# than running it (SQLAlchemy caches the compiled form, keyed by the statement's structure).
_APPS, _VERSIONS = Application.__table__, Version.__table__
_LOCK_APPS = (select(_APPS.c.id, _APPS.c.current_version, _APPS.c.workspace_id)
              .where(_APPS.c.id.in_(bindparam("app_ids", expanding=True))).order_by(_APPS.c.id).with_for_update())
_BATCH_AND_PENDING = (
    select(_VERSIONS.c.id, _VERSIONS.c.application_id, _VERSIONS.c.number, _VERSIONS.c.state,
           _VERSIONS.c.deployment_id, _VERSIONS.c.created_at, _VERSIONS.c.action, _VERSIONS.c.origin)
    .where(_VERSIONS.c.application_id.in_(bindparam("app_ids", expanding=True)),
           or_(_VERSIONS.c.id.in_(bindparam("batch_ids", expanding=True)), _VERSIONS.c.state == "pending")))
_MOVE_CURRENT = (_APPS.update().where(_APPS.c.id == bindparam("app_id"))
                 .values(current_version=bindparam("number"), deleted=bindparam("deleted"), updated_at=bindparam("now")))


@functools.lru_cache(maxsize=8)
def _record_statement(columns: tuple[str, ...]):
    """UPDATE the Versions ``ids`` (expanding) to the given columns' values, their claim released."""
    return (_VERSIONS.update().where(_VERSIONS.c.id.in_(bindparam("ids", expanding=True)))
            .values({**{name: bindparam(f"v_{name}") for name in columns}, "claimed_by": None, "claimed_until": None}))



@dataclass
class _ClusterQueue:
    tickets: list[Ticket] = field(default_factory=list)
    queue_lock: threading.Lock = field(default_factory=threading.Lock)
    commit_lock: threading.Lock = field(default_factory=threading.Lock)


class Committers:
    """Group commit per cluster, and the recording of what each commit carries."""

    def __init__(self, sessions: sessionmaker[Session], repos: RepoStore,
                 on_refresh: Callable[[int], None] | None = None):
        self.sessions = sessions
        self.repos = repos
        # called with the cluster's id once a commit's refreshes are queued (and committed):
        # the control plane rings the agent's long-poll (webapp.command_bell)
        self.on_refresh = on_refresh
        self._queues: dict[int, _ClusterQueue] = {}
        self._lock = threading.Lock()

    def _queue(self, cluster_id: int) -> _ClusterQueue:
        with self._lock:
            return self._queues.setdefault(cluster_id, _ClusterQueue())

    def run(self, cluster: Cluster, profile: ClusterProfile, tickets: list[Ticket]) -> None:
        """Commit and record ``tickets``; returns when each one has its final (or pending) state."""
        queue = self._queue(cluster.id)
        with queue.queue_lock:
            queue.tickets.extend(tickets)
        while not all(t.done.is_set() for t in tickets):
            with queue.commit_lock:
                with queue.queue_lock:
                    batch, seen = [], set()
                    for ticket in queue.tickets:
                        key = (ticket.workspace, ticket.app)
                        if key not in seen and len(batch) < MAX_BATCH:
                            seen.add(key)
                            batch.append(ticket)
                    for ticket in batch:
                        queue.tickets.remove(ticket)
                if batch:
                    self._commit(cluster, profile, batch)

    def _commit(self, cluster: Cluster, profile: ClusterProfile, batch: list[Ticket]) -> None:
        try:
            self._commit_and_record(cluster, profile, batch)
        except SpecError as exc:
            if len(batch) > 1:  # one app's problem (a Service clash) must not fail the others
                for ticket in batch:
                    self._commit(cluster, profile, [ticket])
                return
            self._fail(batch[0], exc)
        except RepoError as exc:
            log.warning("commit to cluster %s failed, left for the reconciler: %s", cluster.name, exc)
            for ticket in batch:
                ticket.state, ticket.error, ticket.fresh = "pending", exc, False
        except Exception:  # noqa: BLE001 - a ticket must never wait forever; the error goes up
            for ticket in batch:
                ticket.state, ticket.fresh = "pending", False
            raise
        finally:
            for ticket in batch:
                ticket.done.set()

    def _fail(self, ticket: Ticket, exc: ShipyardError) -> None:
        with self.sessions.begin() as session:
            session.execute(update(Version).where(Version.id == ticket.version_id, Version.state == "pending").values(
                state="failed", error=str(exc), claimed_by=None, claimed_until=None))
        ticket.state, ticket.error = "failed", exc
        metrics.DEPLOYS.labels(outcome="failed").inc()

    def _commit_and_record(self, cluster: Cluster, profile: ClusterProfile, batch: list[Ticket]) -> None:
        repo = self.repos.open(cluster)
        app_ids = sorted({t.application_id for t in batch})
        batch_ids = {t.version_id for t in batch}
        refreshed: set[str] = set()
        with self.sessions.begin() as session:
            # Row locks (PostgreSQL) keep the commit and its record in order per app across
            # processes; SQLite's BEGIN IMMEDIATE already serializes writers. An app's
            # current_version is the number of its newest committed Version.
            # (Core: the tables' columns, not the ORM's attributes, so no ORM compilation per statement)
            locked = session.execute(_LOCK_APPS, {"app_ids": app_ids}).all()
            newest = {row.id: row.current_version for row in locked if row.current_version}
            workspaces = {row.id: row.workspace_id for row in locked}
            rows = session.execute(_BATCH_AND_PENDING, {"app_ids": app_ids, "batch_ids": list(batch_ids)}).all()
            current = {row.id: row for row in rows if row.id in batch_ids}
            fresh = {t.version_id for t in batch if t.fresh}
            in_git = _unrecorded_in_git(session, repo, app_ids, newest,
                                        [row for row in rows if row.state == "pending" and row.id not in fresh])
            for _, app_id, number in in_git.values():
                newest[app_id] = max(newest.get(app_id, 0), number)
            records = _Records(utcnow())
            live = []
            for ticket in batch:
                row = current[ticket.version_id]
                step = next_step(row.state, ticket.deployment_id in in_git, ticket.number,
                                 newest.get(ticket.application_id, 0))
                if step == "elsewhere":  # finished by the reconciler or another process
                    ticket.state, ticket.elsewhere = row.state, True
                elif step == "record":
                    records.committed(ticket, in_git[ticket.deployment_id][0], True)
                elif step == "supersede":
                    records.superseded(ticket)
                else:
                    live.append(ticket)
            if live:
                authors = sorted({t.author for t in live})
                sources = {t.source_commit for t in live}
                started = time.perf_counter()
                result = apply_service.apply(
                    [t.rendering for t in live if t.rendering is not None], profile, repo,
                    author=authors[0] if len(authors) == 1 else "shipyard",
                    source_commit=sources.pop() if len(sources) == 1 else None,
                    deployment_id=[t.deployment_id for t in live],
                    deletions=[(t.workspace, t.app) for t in live if t.rendering is None],
                    workspace_settings={t.workspace: t.settings for t in live if t.settings is not None},
                    schemas=self.repos.schemas,
                )
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                commit_id = result.commit_id or result.base_commit
                actions = {(o.workspace, o.app): o.action for o in result.apps}
                for ticket in live:
                    records.committed(ticket, commit_id, actions.get((ticket.workspace, ticket.app))
                                      not in ("unchanged", "absent"))
                refreshed |= refreshes.queue_commit_refreshes(session, cluster, profile, repo, result.commit_id,
                                                              result.base_commit, _application_ids(live), records.now)
            # a commit a dead committer made and never recorded never queued its refreshes either
            for commit in {in_git[t.deployment_id][0] for t in records.tickets if t.deployment_id in in_git}:
                refreshed |= refreshes.queue_recorded_commit(session, cluster, profile, repo, commit,
                                                             _application_ids(batch))
            records.write(session, newest)
            webhook_events.versions_committed(session, cluster, [
                _facts(t, current[t.version_id], workspaces[t.application_id]) for t in records.tickets], records.now)
        metrics.DEPLOYS.labels(outcome="committed").inc(len(records.tickets))
        if refreshed and self.on_refresh is not None:
            self.on_refresh(cluster.id)



class _Records:
    """What one commit decided for its Versions, written in a few statements rather than one per row."""

    def __init__(self, now: dt.datetime):
        self.now = now
        self.versions: dict[int, dict[str, Any]] = {}
        self.tickets: list[Ticket] = []  # the committed ones

    def committed(self, ticket: Ticket, commit_id: str, changed: bool) -> None:
        ticket.state, ticket.commit_id, ticket.changed, ticket.committed_at = "committed", commit_id, changed, self.now
        self.versions[ticket.version_id] = {"state": "committed", "commit_id": commit_id, "changed": changed,
                                            "committed_at": self.now}
        self.tickets.append(ticket)

    def superseded(self, ticket: Ticket) -> None:
        ticket.state = "superseded"
        self.versions[ticket.version_id] = {"state": "superseded"}

    def write(self, session: Session, newest: dict[int, int]) -> None:
        """Record the Versions, and move each app's current_version up to its newest committed one.

        Core statements on the tables: nothing here needs the ORM's bookkeeping, and on the
        deploy path it cost more than the statements themselves.
        """
        outcomes: dict[tuple, list[int]] = {}
        for version_id, values in self.versions.items():
            outcomes.setdefault(tuple(sorted(values.items())), []).append(version_id)
        for values, ids in outcomes.items():
            session.execute(_record_statement(tuple(name for name, _ in values)),
                            {**{f"v_{name}": value for name, value in values}, "ids": ids})
        latest: dict[int, Ticket] = {}
        for ticket in self.tickets:
            if ticket.application_id not in latest or latest[ticket.application_id].number < ticket.number:
                latest[ticket.application_id] = ticket
        moved = [{"app_id": app_id, "number": t.number, "deleted": t.rendering is None, "now": self.now}
                 for app_id, t in latest.items() if newest.get(app_id, 0) <= t.number]
        if moved:  # one executemany
            session.execute(_MOVE_CURRENT, moved)



def _application_ids(batch: list[Ticket]) -> dict[str, int]:
    """The batch's apps by their Applications' names."""
    return {application_name(t.workspace, t.app): t.application_id for t in batch}


def _facts(ticket: Ticket, row: Any, workspace_id: int) -> webhook_events.VersionFacts:
    """A committed ticket's Version as its events tell of it (``row``: its _BATCH_AND_PENDING row)."""
    return webhook_events.VersionFacts(
        ticket.application_id, workspace_id, ticket.workspace, ticket.app, ticket.number, row.action,
        ticket.deployment_id, ticket.commit_id, ticket.changed, ticket.source_commit, ticket.author, row.origin)


def _unrecorded_in_git(session: Session, repo: ClusterRepo, app_ids: list[int], newest: dict[int, int],
                       pending: list[Any]) -> dict[str, tuple[str, int, int]]:
    """Pending Versions of these apps that a commit already carries: deployment id -> (commit, app, number).

    A committer that died after its git commit, or whose database commit failed, leaves such
    Versions. Their claim may not have run out, so whoever commits next for these apps (a live
    request in another process, a reconciler that read the log before that death) must look:
    otherwise it commits the deploy a second time, or commits a lower version over a higher one
    and the repository goes back. Under the apps' row locks nobody is between the two steps, so
    what the log holds now is final. Each such commit is newer than its app's last recorded one
    (nothing commits below a higher version), so the walk stops once it passed those, or at the
    pending Versions' age (with the same slack for clock skew as the reconciler). ``pending``
    leaves out fresh Versions (this process wrote their intent and never tried to commit them):
    they are in no commit, so in the common case (no crash, no other deploy of these apps
    waiting) there is no walk.
    """
    if not pending:
        return {}
    wanted = {row.deployment_id: (row.application_id, row.number) for row in pending}
    recorded = {row.commit_id for row in session.execute(
        select(Version.commit_id).where(or_(*(
            (Version.application_id == app_id) & (Version.number == number) for app_id, number in newest.items()))))
    } if newest and len(newest) == len(app_ids) else None  # an app with no recorded commit: walk to the horizon
    horizon = (min(row.created_at for row in pending) - dt.timedelta(minutes=10)).timestamp()
    found: dict[str, tuple[str, int, int]] = {}
    for commit_id, message in repo.messages_since(horizon):
        for deployment_id in deployment_ids(message):
            if deployment_id in wanted and deployment_id not in found:
                found[deployment_id] = (commit_id, *wanted[deployment_id])
        if recorded is not None:
            recorded.discard(commit_id)
            if not recorded:
                break
    return found


def next_step(state: str, in_git: bool, number: int, newest_committed: int) -> str:
    """Which step a Version on its way into the repository needs, decided from what is known of it.

    ``state`` is its row's state, ``in_git`` whether a commit already names its deployment id,
    ``newest_committed`` the number of its app's newest committed Version (0: none):

    | its state | what it needs |
    |---|---|
    | no longer ``pending`` | ``elsewhere``: another committer finished it |
    | ``pending``, in a commit | ``record``: committed by one that died before recording it |
    | ``pending``, a higher Version committed | ``supersede``: committing it would go back |
    | ``pending`` otherwise | ``commit`` |
    """
    if state != "pending":
        return "elsewhere"
    if in_git:
        return "record"
    if newest_committed > number:
        return "supersede"
    return "commit"


def deployment_ids(message: str) -> list[str]:
    """The deployment ids a commit message's trailers name."""
    prefix = apply_service.TRAILER_DEPLOYMENT + ": "
    return [line.split(": ", 1)[1].strip() for line in message.splitlines() if line.startswith(prefix)]


__all__ = ["Committers", "Ticket", "next_step", "deployment_ids", "MAX_BATCH"]
