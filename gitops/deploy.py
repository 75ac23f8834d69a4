"""Deploys that survive crashes and crowds: deploy, rollback, promote, delete, reconcile.

Every change to an app is a Version, and goes through three steps:

1. **intent**: the Version is written ``pending`` (with its spec, number and
   deployment id) and the transaction committed; from here on the deploy is
   accepted and cannot be lost.
2. **commit**: the rendered files go into the cluster repository in a commit
   whose ``Shipyard-Deployment-Id`` trailer names the Version.
3. **record**: the Version is marked ``committed`` with that commit id.

A crash between 1 and 2 leaves a pending Version whose deployment id is in no
commit: the reconciler renders and commits it. A crash between 2 and 3 leaves
one whose id *is* in a commit: the reconciler only records it. So nothing
accepted is lost and nothing is committed twice. Pending Versions are claimed
(``claimed_by``/``claimed_until``) with a conditional UPDATE, so across any
number of processes one works on each at a time.

Ordering: steps 2 and 3 run in one database transaction that locks the apps'
rows, and a Version is ``superseded`` (not committed) when a higher-numbered
Version of its app is already committed. So the repository never goes back
to an older version of an app, whichever process gets there first.

Crowds: concurrent deploys to one cluster queue on a per-cluster
``Committers`` queue; whoever holds the cluster's lock commits everything
queued (one Version per app per commit) as one commit, and every Version
records the commit that carries it.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pygit2

from renderer.errors import InvalidRequest, NotFound, RenderError, RepoError, ShipyardError, SpecError
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.profiles import ClusterProfile
from renderer.render import Rendering, WorkspaceSettings, render
from renderer.spec import Spec, load_specs
from renderer.yamlio import dump_manifest
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from gitops import apply as apply_service
from gitops import isolation, layout, metrics
from gitops.audit import record
from gitops.clusters import RepoStore, find_workspace, profile_of, workspace_scope, workspace_settings
from gitops.models import Application, Cluster, Version, Workspace, utcnow
from gitops.policy import ROLES, Principal, Scope
from gitops.repo import ClusterRepo
from gitops.status import live_facts

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
MAX_BATCH = 200
ACTIONS = ("deploy", "rollback", "promote", "delete")


def worker_id() -> str:
    """This process's name in claims: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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


# The statements every deploy runs, built once: building and hashing a statement cost more
# than running it (SQLAlchemy caches the compiled form, keyed by the statement's structure).
_APP_BY_NAME = (select(Application).options(lazyload(Application.workspace))
                .where(Application.workspace_id == bindparam("workspace_id"), Application.name == bindparam("name")))
_APPS, _VERSIONS = Application.__table__, Version.__table__
_NEXT_NUMBER = (_APPS.update().where(_APPS.c.id == bindparam("app_id"))
                .values(version_counter=_APPS.c.version_counter + 1, updated_at=bindparam("now"))
                .returning(_APPS.c.version_counter))
_INSERT_VERSION = _VERSIONS.insert().returning(_VERSIONS.c.id)
_LOCK_APPS = (select(_APPS.c.id, _APPS.c.current_version).where(_APPS.c.id.in_(bindparam("app_ids", expanding=True)))
              .order_by(_APPS.c.id).with_for_update())
_BATCH_AND_PENDING = (
    select(_VERSIONS.c.id, _VERSIONS.c.application_id, _VERSIONS.c.number, _VERSIONS.c.state,
           _VERSIONS.c.deployment_id, _VERSIONS.c.created_at)
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

    def __init__(self, sessions: sessionmaker[Session], repos: RepoStore):
        self.sessions = sessions
        self.repos = repos
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
        with self.sessions.begin() as session:
            # Row locks (PostgreSQL) keep the commit and its record in order per app across
            # processes; SQLite's BEGIN IMMEDIATE already serializes writers. An app's
            # current_version is the number of its newest committed Version.
            # (Core: the tables' columns, not the ORM's attributes, so no ORM compilation per statement)
            newest = {app_id: number for app_id, number in session.execute(
                _LOCK_APPS, {"app_ids": app_ids}).all() if number}
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
                if row.state != "pending":  # finished elsewhere (the reconciler, another process)
                    ticket.state, ticket.elsewhere = row.state, True
                elif ticket.deployment_id in in_git:  # committed by one that died before recording it
                    records.committed(ticket, in_git[ticket.deployment_id][0], True)
                elif newest.get(ticket.application_id, 0) > ticket.number:
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
            records.write(session, newest)
        metrics.DEPLOYS.labels(outcome="committed").inc(len(records.tickets))


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
    for commit in _walk(repo):
        if commit.commit_time < horizon:
            break
        for line in commit.message.splitlines():
            if line.startswith(apply_service.TRAILER_DEPLOYMENT + ": "):
                deployment_id = line.split(": ", 1)[1].strip()
                if deployment_id in wanted and deployment_id not in found:
                    found[deployment_id] = (str(commit.id), *wanted[deployment_id])
        if recorded is not None:
            recorded.discard(str(commit.id))
            if not recorded:
                break
    return found


# --- deploy, rollback, promote, delete -------------------------------------------------------


@dataclass
class Context:
    """What a service call needs: the caller, their session, and the shared machinery."""

    session: Session
    principal: Principal
    repos: RepoStore
    committers: Committers
    worker: str
    schemas: KubeSchemas = CORE_ONLY  # what rendered objects are validated against (the app's CRD_SCHEMAS)


@dataclass
class _Planned:
    spec: Spec | None
    cluster: Cluster
    workspace: Workspace
    profile: ClusterProfile
    rendering: Rendering | None
    name: str
    claims: list[isolation.Route] = field(default_factory=list)  # hosts it routes that nobody holds yet


def _plan(ctx: Context, specs: list[Spec]) -> list[_Planned]:
    """Find each spec's workspace (authorized) and render it for its cluster.

    A cluster whose agent has reported in is held to what it reported: rendered objects are
    validated against the Kubernetes version it runs, and a custom resource whose CRD it
    does not have is refused, even where the profile lists the addon.

    Each spec is held to what its workspace may claim in the shared cluster (gitops.isolation):
    the secret paths it references and the hosts it routes.
    """
    targets, profiles, facts = [], {}, {}
    for spec in specs:
        workspace = find_workspace(ctx.session, ctx.principal, spec.cluster, spec.workspace, "app.deploy")
        if workspace.cluster_id not in profiles:
            live = facts[workspace.cluster_id] = live_facts(workspace.cluster)
            profile = profile_of(workspace.cluster)
            profiles[workspace.cluster_id] = live.apply_to(profile) if live else profile
        targets.append((spec, workspace))
    # On SQLite this read transaction holds the database's write lock (a write request's
    # BEGIN IMMEDIATE): end it before rendering. PostgreSQL's reads lock nothing, and going
    # on in the same transaction saves the intent its BEGIN, COMMIT and pool ping.
    if ctx.session.get_bind().dialect.name == "sqlite":
        ctx.session.commit()
    planned, problems = [], []
    for spec, workspace in targets:
        profile, live = profiles[workspace.cluster_id], facts[workspace.cluster_id]
        problems.extend(isolation.secret_problems(spec, workspace))
        try:
            rendering = render(spec, profile, ctx.schemas)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        except RenderError as exc:
            if live is None or live.kubernetes_version is None:
                raise  # a template's fault, not the spec's
            problems.append(spec.problem(
                f'cluster "{live.cluster}" runs Kubernetes {live.reported_version} (its agent reported at '
                f'{live.reported_at[:19]}Z), where this spec cannot run: {exc}'))
            continue
        if live is not None and (missing := live.problems(rendering)):
            problems.extend(missing)
            continue
        planned.append(_Planned(spec, workspace.cluster, workspace, profile, rendering, spec.name))
    taken, claims = isolation.host_problems(ctx.session, [(item.workspace, item.rendering) for item in planned])
    for item, routes in zip(planned, claims):
        item.claims = routes
    problems.extend(taken)
    if problems:
        raise SpecError(problems)
    return planned


def _application(session: Session, workspace: Workspace, name: str, kind: str | None) -> Application | None:
    """The app ``name`` in ``workspace``, created on its first deploy (``kind`` None: never created).

    Loaded without its eager joins: the workspace (with its cluster) is at hand already.
    """
    where = {"workspace_id": workspace.id, "name": name}
    app = session.scalar(_APP_BY_NAME, where)
    if app is None and kind is not None:
        try:
            with session.begin_nested():
                app = Application(tenant_id=workspace.tenant_id, workspace_id=workspace.id, name=name, kind=kind)
                session.add(app)
        except IntegrityError:  # created by a concurrent deploy a moment ago
            app = session.scalar(_APP_BY_NAME, where)
    if app is None:
        return None
    set_committed_value(app, "workspace", workspace)
    if kind is not None:
        if app.kind != kind and not app.deleted and app.current_version:
            raise InvalidRequest(f'"{name}" is a {app.kind} in workspace "{workspace.name}"; it cannot become a {kind}')
        app.kind = kind
    return app


def _submit(ctx: Context, planned: list[_Planned], *, action: str, source: str, source_commit: str | None,
            origin: dict | None) -> list[Version]:
    session, now = ctx.session, utcnow()
    try:  # in the intent's transaction, so a deploy refused here leaves no claim behind
        for item in planned:
            isolation.claim_hosts(session, item.spec, item.workspace, item.claims)
    except SpecError:
        session.rollback()
        raise
    versions: list[tuple[_Planned, Version]] = []
    for item in sorted(planned, key=lambda p: (p.workspace.id, p.name)):
        app = _application(session, item.workspace, item.name, item.spec.kind if item.spec else None)
        # Core statements: the intent is a few rows, and the ORM's unit of work cost more than writing them.
        number = session.execute(_NEXT_NUMBER, {"app_id": app.id, "now": now}).scalar_one()
        values = dict(
            application_id=app.id, number=number, action=action, deployment_id=str(uuid.uuid4()),
            spec=item.spec.body if item.spec else None, spec_digest=item.spec.digest if item.spec else None,
            render_digest=_render_digest(item.rendering), state="pending", author=ctx.principal.name,
            source=source, source_commit=source_commit, origin=origin,
            notes=list(item.rendering.notes) if item.rendering else [],
            claimed_by=ctx.worker, claimed_until=now + LEASE, created_at=now,
        )
        version_id = session.execute(_INSERT_VERSION, values).scalar_one()
        # what the caller gets back: the row as written, not attached to the session
        version = Version(id=version_id, commit_id=None, changed=None, error=None, committed_at=None, **values)
        set_committed_value(version, "application", app)
        record(session, ctx.principal, f"app.{action}",
               f"{item.cluster.name}:{item.workspace.name}/{item.name}",
               {"version": number, "spec_digest": version.spec_digest, "deployment_id": version.deployment_id})
        versions.append((item, version))
    session.commit()  # the intent: from here on the deploy is accepted

    by_cluster: dict[int, list[tuple[_Planned, Version]]] = {}
    for item, version in versions:
        by_cluster.setdefault(item.cluster.id, []).append((item, version))
    failures: list[ShipyardError] = []
    outcomes: dict[int, Ticket] = {}
    for pairs in by_cluster.values():
        cluster, profile = pairs[0][0].cluster, pairs[0][0].profile
        tickets = [
            Ticket(version.id, version.application_id, version.number, item.workspace.name, item.name,
                   version.deployment_id, ctx.principal.name, item.rendering, source_commit,
                   settings=workspace_settings(item.workspace), fresh=True)
            for item, version in pairs
        ]
        ctx.committers.run(cluster, profile, tickets)
        failures += [t.error for t in tickets if t.state == "failed" and t.error is not None]
        outcomes.update((t.version_id, t) for t in tickets)
    result = [version for _, version in versions]
    for index, version in enumerate(result):  # what the committers wrote, without reading it back
        ticket = outcomes[version.id]
        if ticket.elsewhere:
            result[index] = session.get(Version, version.id, populate_existing=True)
            continue
        if ticket.state in ("pending", None):
            continue
        for name, value in (("state", ticket.state), ("commit_id", ticket.commit_id), ("changed", ticket.changed),
                            ("committed_at", ticket.committed_at), ("claimed_by", None), ("claimed_until", None),
                            ("error", str(ticket.error) if ticket.state == "failed" and ticket.error else None)):
            set_committed_value(version, name, value)
    if failures and all(v.state == "failed" for v in result):
        problems = [p for e in failures if isinstance(e, SpecError) for p in e.problems]
        if problems:
            raise SpecError(problems)
    return result


def _render_digest(rendering: Rendering | None) -> str | None:
    if rendering is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(rendering.files):
        digest.update(name.encode() + b"\0" + rendering.files[name] + b"\0")
    digest.update(rendering.application_bytes)
    return "sha256:" + digest.hexdigest()


def deploy(ctx: Context, text: str | bytes, *, filename: str = "<request>", source: str = "api",
           source_commit: str | None = None, action: str = "deploy", origin: dict | None = None) -> list[Version]:
    """Validate, render and commit every spec in ``text``; one new Version per spec."""
    planned = _plan(ctx, load_specs(text, filename))
    return _submit(ctx, planned, action=action, source=source, source_commit=source_commit, origin=origin)


@dataclass
class PlannedChange:
    cluster: str
    workspace: str
    app: str
    action: str  # created | updated | unchanged
    diff: str
    notes: list[str]


def dry_run(ctx: Context, text: str | bytes, *, filename: str = "<request>") -> list[PlannedChange]:
    """What ``deploy`` would change in the repositories, as unified diffs; commits nothing."""
    changes = []
    planned = _plan(ctx, load_specs(text, filename))
    if ctx.session.get_bind().dialect.name == "sqlite":
        ctx.session.commit()  # the claims' read began a transaction, which on SQLite holds the write lock
    for item in planned:
        snapshot = ctx.repos.open(item.cluster).snapshot()
        rendering = item.rendering
        directory = layout.app_dir(rendering.workspace, rendering.name)
        before = snapshot.walk(directory)  # keyed by full path already
        app_file = layout.application_file(rendering.workspace, rendering.name)
        if (existing := snapshot.read(app_file)) is not None:
            before[app_file] = existing
        after = {f"{directory}/{name}": data for name, data in rendering.files.items()}
        after[app_file] = rendering.application_bytes
        diff = file_diff(before, after)
        action = "created" if not before else ("updated" if diff else "unchanged")
        changes.append(PlannedChange(item.cluster.name, item.workspace.name, item.name, action, diff,
                                     list(rendering.notes)))
    return changes


def file_diff(before: dict[str, bytes], after: dict[str, bytes]) -> str:
    """A unified diff of two sets of files, by path."""
    out = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        out.extend(difflib.unified_diff(
            (old or b"").decode().splitlines(keepends=True), (new or b"").decode().splitlines(keepends=True),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null"))
    return "".join(out)


# --- reading apps and versions ------------------------------------------------------------------


def get_app(ctx: Context, cluster: str, workspace: str, name: str, permission: str = "app.read") -> Application:
    ws = find_workspace(ctx.session, ctx.principal, cluster, workspace, "workspace.read")
    ctx.principal.require(permission, workspace_scope(ws), f'app "{cluster}:{workspace}/{name}"')
    app = ctx.session.scalar(select(Application).where(Application.workspace_id == ws.id, Application.name == name))
    if app is None:
        raise NotFound(f'no app "{name}" in workspace "{cluster}:{workspace}"')
    return app


def get_version(ctx: Context, app: Application, number: Any) -> Version:
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidRequest("a version is a whole number")
    if not 1 <= number < 2**31:  # outside the column's range: no such version (and no database overflow)
        raise NotFound(f'app "{app.name}" has no version {number}')
    version = ctx.session.scalar(select(Version).where(Version.application_id == app.id, Version.number == number))
    if version is None:
        raise NotFound(f'app "{app.name}" has no version {number}')
    return version


def list_versions(ctx: Context, app: Application, *, limit: int = 100, before: int | None = None) -> list[Version]:
    query = select(Version).where(Version.application_id == app.id)
    if before is not None:
        query = query.where(Version.number < before)
    return list(ctx.session.scalars(query.order_by(Version.number.desc()).limit(limit)))


class ListedApp(NamedTuple):
    """The columns of an app that a listing shows."""

    name: str
    kind: str
    current_version: int | None
    version_counter: int
    deleted: bool
    updated_at: dt.datetime


class ListedName(NamedTuple):
    """A listed app's workspace or cluster: its name."""

    name: str


def list_apps(ctx: Context, *, cluster: str | None = None, workspace: str | None = None,
              include_deleted: bool = False, limit: int = 1000,
              after: str | None = None) -> list[tuple[ListedApp, ListedName, ListedName]]:
    """Apps the caller may read, ordered by cluster, workspace and name; ``after`` pages on.

    Rows are (app, workspace, cluster) records of the listed columns, not ORM entities: a
    page holds up to 10,000 apps, and loading each with its eagerly joined workspace,
    cluster (and its profile text) and tenant made a listing 15-35x slower than the SELECT.
    """
    session, principal = ctx.session, ctx.principal
    query = (select(Application.name, Application.kind, Application.current_version, Application.version_counter,
                    Application.deleted, Application.updated_at, Workspace.name, Cluster.name)
             .join(Workspace, Application.workspace_id == Workspace.id)
             .join(Cluster, Workspace.cluster_id == Cluster.id)
             .where(Application.tenant_id == principal.tenant_id))
    if cluster:
        query = query.where(Cluster.name == cluster)
    if workspace:
        query = query.where(Workspace.name == workspace)
    if not include_deleted:
        query = query.where(Application.deleted.is_(False))
    if not any(g.scope.level == "tenant" and "app.read" in ROLES.get(g.role, ()) for g in principal.grants) \
            or principal.token is not None:
        readable = _readable_scopes(session, principal)
        query = query.where(or_(Cluster.id.in_(readable[0]), Workspace.id.in_(readable[1])))
    if after:
        parts = after.split("/")
        if len(parts) != 3:
            raise InvalidRequest("after must be <cluster>/<workspace>/<app> from the previous page")
        query = query.where(or_(Cluster.name > parts[0],
                            (Cluster.name == parts[0]) & (Workspace.name > parts[1]),
                            (Cluster.name == parts[0]) & (Workspace.name == parts[1]) & (Application.name > parts[2])))
    query = query.order_by(Cluster.name, Workspace.name, Application.name).limit(limit)
    # Core execution: plain columns need none of the ORM's per-row loading machinery
    return [(ListedApp(*row[:6]), ListedName(row[6]), ListedName(row[7]))
            for row in session.connection().execute(query).all()]


def _readable_scopes(session: Session, principal: Principal) -> tuple[list[int], list[int]]:
    """Cluster ids and workspace ids in which the caller may read apps."""
    clusters = session.scalars(select(Cluster).where(Cluster.tenant_id == principal.tenant_id)).all()
    cluster_ids = [c.id for c in clusters if principal.can("app.read", Scope(c.tenant_id, c.id))]
    workspace_ids = []
    candidate_clusters = {g.scope.cluster_id for g in principal.grants if g.scope.workspace_id is not None}
    if candidate_clusters:
        for ws in session.scalars(select(Workspace).where(Workspace.cluster_id.in_(candidate_clusters))):
            if ws.cluster_id not in cluster_ids and principal.can("app.read", workspace_scope(ws)):
                workspace_ids.append(ws.id)
    return cluster_ids, workspace_ids


def rollback(ctx: Context, app: Application, number: Any, *, source: str = "api") -> Version:
    """Deploy version ``number``'s spec again, as a new version (whatever the app's health)."""
    target = get_version(ctx, app, number)
    if target.spec is None:
        raise InvalidRequest(f"version {number} deleted the app; roll back to a version that deployed it")
    if target.state == "failed":
        raise InvalidRequest(f"version {number} failed and was never deployed; pick a committed version")
    ctx.principal.require("app.deploy", workspace_scope(app.workspace), f'app "{app.name}"')
    # ensure_ascii=False: YAML reads "\ud83d\ude00" as two lone surrogates, not one emoji
    text = json.dumps(target.spec, indent=2, ensure_ascii=False)
    (version,) = deploy(ctx, text, filename=f"version {number}", source=source, action="rollback",
                        origin={"rollback_of": number})
    return version


def promote(ctx: Context, app: Application, *, target: Any, number: Any = None, name: Any = None,
            overrides: Any = None, source: str = "api") -> Version:
    """Clone an app's version into another workspace or cluster, with overrides; remembers where from."""
    version = get_version(ctx, app, number if number is not None else app.current_version)
    if version.spec is None:
        raise InvalidRequest(f"version {version.number} deleted the app; promote a version that deployed it")
    if not isinstance(target, str) or target.count(":") != 1:
        raise InvalidRequest('target must be "<cluster>:<workspace>"')
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidRequest("overrides must be a mapping of spec fields")
    body = copy.deepcopy(version.spec)
    _merge(body, overrides or {})
    body["workspace_fqn"] = target
    if name is not None:
        body["name"] = name
    source_name = f"{app.workspace.cluster.name}:{app.workspace.name}/{app.name}"
    (new,) = deploy(ctx, json.dumps(body, indent=2, ensure_ascii=False), filename=f"promotion of {source_name}", source=source,
                    action="promote", origin={"promoted_from": source_name, "version": version.number})
    return new


def _merge(body: dict, overrides: dict) -> None:
    """Deep-merge ``overrides`` into ``body``; a None value removes the field."""
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        elif isinstance(value, dict) and isinstance(body.get(key), dict):
            _merge(body[key], value)
        else:
            body[key] = value


def delete_app(ctx: Context, app: Application, *, source: str = "api") -> Version:
    """Remove the app from its cluster (its directory and Application, one commit); history stays."""
    workspace = app.workspace
    ctx.principal.require("app.delete", workspace_scope(workspace), f'app "{app.name}"')
    if app.deleted:
        raise NotFound(f'app "{app.name}" is already deleted')
    planned = _Planned(None, workspace.cluster, workspace, profile_of(workspace.cluster), None, app.name)
    (version,) = _submit(ctx, [planned], action="delete", source=source, source_commit=None, origin=None)
    return version


def version_diff(ctx: Context, app: Application, a: Any, b: Any) -> dict:
    """Spec and manifest differences between two versions of an app."""
    older, newer = get_version(ctx, app, a), get_version(ctx, app, b)
    spec_diff = "".join(difflib.unified_diff(
        _spec_lines(older.spec), _spec_lines(newer.spec),
        fromfile=f"version {older.number}", tofile=f"version {newer.number}"))
    manifests = None
    if older.commit_id and newer.commit_id:
        repo = ctx.repos.open(app.workspace.cluster)
        directory = layout.app_dir(app.workspace.name, app.name)
        manifests = file_diff(_files_at(repo, older.commit_id, directory), _files_at(repo, newer.commit_id, directory))
    return {"from": older.number, "to": newer.number, "spec": spec_diff, "manifests": manifests}


def _spec_lines(spec: dict | None) -> list[str]:
    if spec is None:
        return []
    return dump_manifest(spec).decode().splitlines(keepends=True)


def _files_at(repo: ClusterRepo, commit_id: str, directory: str) -> dict[str, bytes]:
    try:
        files = repo.snapshot(commit_id).walk(directory)
    except (KeyError, ValueError) as exc:
        raise NotFound(f"commit {commit_id} is not in the cluster repository") from exc
    return files  # Snapshot.walk keys files by their full path


# --- the reconciler ------------------------------------------------------------------------------


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
    for commit in _walk(repo):
        if commit.commit_time < horizon:
            break
        for line in commit.message.splitlines():
            if line.startswith(apply_service.TRAILER_DEPLOYMENT + ": "):
                found.setdefault(line.split(": ", 1)[1].strip(), str(commit.id))
    return found


def _walk(repo: ClusterRepo) -> Iterable:
    tip = repo.tip()
    if tip is None:
        return []
    return repo.repo.walk(tip, pygit2.enums.SortMode.TIME)


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
    tickets, profile = [], None
    for version in pending:
        commit_id = in_log.get(version.deployment_id)
        if commit_id is not None:  # committed before a crash, never recorded
            with sessions.begin() as session:
                row = session.get(Version, version.id)
                if row.state == "pending":
                    row.state, row.commit_id, row.committed_at, row.changed = "committed", commit_id, utcnow(), True
                    row.claimed_by = row.claimed_until = None
                    app = row.application
                    if (app.current_version or 0) < row.number:
                        app.current_version, app.deleted = row.number, row.action == "delete"
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


__all__ = [
    "Context",
    "Committers",
    "Reconciler",
    "Ticket",
    "PlannedChange",
    "deploy",
    "dry_run",
    "rollback",
    "promote",
    "delete_app",
    "get_app",
    "get_version",
    "list_apps",
    "ListedApp",
    "ListedName",
    "list_versions",
    "version_diff",
    "reconcile",
    "deployments_in_log",
    "file_diff",
    "worker_id",
    "LEASE",
]
