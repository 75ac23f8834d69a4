"""Live status from the clusters' agents: ingest, app status by version, commands, job runs.

What an agent reports (agent.protocol) lands here:

- ``ingest`` applies one status batch of a cluster's stream: the next seq is
  applied, a duplicate is acknowledged without applying it, a gap or an
  unknown stream asks for a resync (the agent then sends a snapshot, whose
  final batch removes every object it no longer reports). Objects are
  upserted in bulk (one INSERT ... ON CONFLICT per batch), since this is the
  hot path of every cluster.
- ArgoCD Applications in a batch become each app's ``AppStatus`` (history in
  ``StatusEvent`` when something a person reads changed). The synced git
  revision maps to versions: a version is synced when its commit is that
  revision or an ancestor of it, and the live version is the highest such.
- Commands for agents are queued in the database and claimed with a lease
  (row locks on PostgreSQL, the write lock on SQLite), so any number of
  control plane processes hand each one out once; an unanswered one is sent
  again when its lease ends, and expires when no agent takes it in time.

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

import dataclasses
import datetime as dt
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import pygit2
from sqlalchemy import and_, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, defer, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from gitops.clusters import profile_of, token_matches, workspace_scope
from gitops.db import insert_many, update_many
from gitops.models import (
    Application,
    AppStatus,
    Cluster,
    ClusterObject,
    Command,
    JobRun,
    StatusEvent,
    Tenant,
    Version,
    Workspace,
    utcnow,
)
from gitops.policy import Principal, Scope
from gitops.repo import ClusterRepo
from renderer.errors import Conflict, InvalidRequest, NotFound, Problem
from renderer.kube import is_core, supported_kubernetes_versions
from renderer.profiles import ClusterProfile
from renderer.render import Rendering, application_name

# The commands of agent.protocol that people send through the API (jobs run through /runs),
# and the bounds of a logs command. The control plane does not import the agent package
# (layers: webapp/agent_api.py decodes the agent's messages); tests/test_status.py checks
# that these agree with agent.protocol.
USER_COMMANDS = ("refresh", "restart", "logs")
MAX_LOG_LINES = 2000
MAX_LOG_BYTES = 256 * 1024

# Pod reasons that say why an app is not healthy, worst first.
POD_PROBLEMS = ("OOMKilled", "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                "CreateContainerError", "InvalidImageName", "RunContainerError", "Error", "ContainerCannotRun")
RUN_STATES = ("queued", "sent", "running", "succeeded", "failed", "expired")
_WORKFLOW_PHASES = {"Pending": "running", "Running": "running", "Succeeded": "succeeded", "Failed": "failed",
                    "Error": "failed"}
_RUN_KINDS = ("Workflow", "Job")  # what a run-job command starts; a run follows its state
_UPSERT_CHUNK = 500


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
    def from_config(cls, config: Any) -> "StatusSettings":
        return cls(token_grace=float(config.get("AGENT_TOKEN_GRACE", 3600)),
                   online_within=float(config.get("AGENT_ONLINE_WITHIN", 60)),
                   stale_within=float(config.get("AGENT_STALE_WITHIN", 600)),
                   command_lease=float(config.get("COMMAND_LEASE", 120)),
                   command_ttl=float(config.get("COMMAND_TTL", 900)),
                   history_per_app=int(config.get("STATUS_HISTORY", 500)),
                   gap_wait=float(config.get("STATUS_GAP_WAIT", 2.0)))


# --- agents: who is calling, and are they there -----------------------------------------------


def agent_cluster(session: Session, tenant: str, cluster: str, token: str | None, settings: StatusSettings,
                  now: dt.datetime | None = None) -> Cluster | None:
    """The cluster whose agent token this is, or None (unknown cluster and wrong token look alike).

    The previous token is accepted for ``token_grace`` seconds after a rotation, so an agent can be
    switched to the new token without a gap.
    """
    # every agent call asks: the profile and the last heartbeat load only where they are read
    row = session.scalar(select(Cluster).join(Tenant, Cluster.tenant_id == Tenant.id)
                         .where(Tenant.name == tenant, Cluster.name == cluster)
                         .options(defer(Cluster.profile_text), defer(Cluster.agent_info), lazyload(Cluster.tenant)))
    if row is None or not token:
        return None
    if token_matches(token, row.agent_token_hash):
        return row
    now = now or utcnow()
    rotated = row.agent_token_rotated_at
    if (rotated is not None and now - rotated <= dt.timedelta(seconds=settings.token_grace)
            and token_matches(token, row.previous_agent_token_hash)):
        return row
    return None


def connectivity(cluster: Cluster, settings: StatusSettings, now: dt.datetime | None = None) -> str:
    """online | stale | offline, by when the cluster's agent was last heard from."""
    if cluster.last_seen_at is None:
        return "offline"
    age = ((now or utcnow()) - cluster.last_seen_at).total_seconds()
    if age <= settings.online_within:
        return "online"
    return "stale" if age <= settings.stale_within else "offline"


def heartbeat(session: Session, cluster: Cluster, beat: Any, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    cluster.agent_info = {**dataclasses.asdict(beat), "received_at": now.isoformat()}
    cluster.last_seen_at = now
    return {"commands": pending_commands(session, cluster)}


# --- what the agent says the cluster can run --------------------------------------------------------


@dataclass(frozen=True)
class LiveFacts:
    """A cluster as its agent last described it: what specs are checked against, beside its profile."""

    cluster: str
    reported_at: str
    kubernetes_version: str | None  # "1.31": the agent's /version, when the renderer has that version's schemas
    reported_version: str | None  # the gitVersion as reported ("v1.31.4-eks-...")
    crds: frozenset[str] | None  # None: the agent could not list them (it always sees ArgoCD's own)

    def apply_to(self, profile: ClusterProfile) -> ClusterProfile:
        """The profile, validating against the Kubernetes version the cluster really runs."""
        if self.kubernetes_version is None or self.kubernetes_version == profile.kubernetes_version:
            return profile
        return dataclasses.replace(profile, kubernetes_version=self.kubernetes_version)

    def problems(self, rendering: Rendering) -> list[Problem]:
        """What the rendering needs that the cluster does not have: custom resources whose CRD the
        agent did not find. The profile may say an addon is there; the cluster is what runs it."""
        if self.crds is None:
            return []
        missing = {}
        for obj in rendering.objects:
            api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            if is_core(api_version):
                continue
            crd = f"{kind.lower()}s.{api_version.partition('/')[0]}"  # the plural of every kind rendered
            if crd not in self.crds:
                missing.setdefault(crd, kind)
        return [rendering.spec.problem(
            f'cluster "{self.cluster}" cannot run a {kind}: its agent reported at {self.reported_at[:19]}Z that '
            f'the CRD {crd} is not installed, although the cluster profile lists the addon; install it on '
            f'the cluster, or change the spec or the profile') for crd, kind in sorted(missing.items())]


_GIT_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def live_facts(cluster: Cluster) -> LiveFacts | None:
    """What the cluster's agent last reported in a heartbeat, or None when it never did."""
    info = cluster.agent_info or {}
    if not info.get("received_at"):
        return None
    reported = info.get("kubernetes_version") or None
    match = _GIT_VERSION.match(reported or "")
    version = f"{match.group(1)}.{int(match.group(2))}" if match else None
    if version not in supported_kubernetes_versions():
        version = None
    crds = info.get("crds")
    known = isinstance(crds, list) and "applications.argoproj.io" in crds
    return LiveFacts(cluster.name, info["received_at"], version, reported, frozenset(crds) if known else None)


# --- status ingest -------------------------------------------------------------------------------


class IngestResult(NamedTuple):
    outcome: str  # applied | duplicate | ahead (a batch before it is missing) | resync
    acked: int | None


def ingest(session: Session, cluster: Cluster, batch: Any, repo: ClusterRepo | None = None,
           settings: StatusSettings | None = None, now: dt.datetime | None = None) -> IngestResult:
    """Apply one status batch of the cluster's stream (agent.protocol), or say why not.

    ``repo`` (the cluster repository) maps synced revisions to live versions; without it the
    live version is left as it was.
    """
    settings = settings or StatusSettings()
    now = now or utcnow()
    # One batch of a cluster at a time: the UPDATE takes the row lock, under which the stream
    # position is read and moved.
    table = Cluster.__table__
    stream, seq = session.execute(update(table).where(table.c.id == cluster.id).values(last_seen_at=now)
                                  .returning(table.c.stream, table.c.stream_seq)).one()
    set_committed_value(cluster, "last_seen_at", now)
    if batch.stream == stream and batch.seq <= seq:
        return IngestResult("duplicate", batch.seq)
    starts = batch.snapshot and batch.seq == 1
    follows = batch.stream == stream and batch.seq == seq + 1
    if not (starts or follows):
        # a batch sent while its predecessor was still on the way (the agent keeps two in flight)
        # may get here first: the caller may wait for it, then ask for a resync
        ahead = batch.seq > seq + 1 if batch.stream == stream else batch.snapshot and batch.seq > 1
        return IngestResult("ahead" if ahead else "resync", None)
    session.execute(update(table).where(table.c.id == cluster.id).values(stream=batch.stream, stream_seq=batch.seq))
    set_committed_value(cluster, "stream", batch.stream)
    set_committed_value(cluster, "stream_seq", batch.seq)
    _apply_objects(session, cluster.id, batch, now)
    applications: dict[str, dict | None] = {}
    if batch.snapshot and batch.final:
        # what the snapshot did not mention is gone from the cluster, Applications included
        for name in session.scalars(select(ClusterObject.name).where(
                ClusterObject.cluster_id == cluster.id, ClusterObject.kind == "Application",
                ClusterObject.stream != batch.stream)):
            applications[name] = None
        session.execute(delete(ClusterObject).where(ClusterObject.cluster_id == cluster.id,
                                                    ClusterObject.stream != batch.stream))
    workflows = {}
    for delta in batch.deltas:
        if delta.kind == "Application":
            applications[delta.name] = delta.state
        elif delta.kind in _RUN_KINDS and delta.state is not None:
            workflows[(delta.namespace, delta.name)] = delta.state
    if applications:
        _update_app_statuses(session, cluster, applications, repo, settings, now)
    if workflows:
        _update_runs_from_workflows(session, cluster, workflows, now)
    return IngestResult("applied", batch.seq)


def _apply_objects(session: Session, cluster_id: int, batch: Any, now: dt.datetime) -> None:
    latest = {}
    for delta in batch.deltas:  # within a batch the last word on an object wins
        latest[(delta.kind, delta.namespace, delta.name)] = delta
    rows = [{"kind": k[0], "namespace": k[1], "name": k[2], "state": d.state, "digest": d.digest}
            for k, d in latest.items() if d.state is not None]
    gone = [k for k, d in latest.items() if d.state is None]
    insert_many(session.connection(), ClusterObject.__table__, rows,
                common={"cluster_id": cluster_id, "stream": batch.stream, "updated_at": now},
                conflict=("cluster_id", "kind", "namespace", "name"), update=("state", "digest", "stream", "updated_at"))
    for start in range(0, len(gone), _UPSERT_CHUNK):
        session.execute(delete(ClusterObject).where(
            ClusterObject.cluster_id == cluster_id,
            tuple_(ClusterObject.kind, ClusterObject.namespace, ClusterObject.name).in_(gone[start:start + _UPSERT_CHUNK])))


def _app_of(name: str, state: dict | None) -> tuple[str, str] | None:
    """(workspace, app) of an ArgoCD Application: its labels, else its name ``<workspace>.<app>``."""
    if state and state.get("workspace") and state.get("app"):
        return str(state["workspace"]), str(state["app"])
    workspace, dot, app = name.partition(".")
    return (workspace, app) if dot and workspace and app else None


_GONE = {"sync": "Unknown", "health": "Missing", "operation": None, "revision": None,
         "message": "the ArgoCD Application is gone from the cluster"}
_COMPARED = ("sync", "health", "revision", "message")  # a change in any of them is a StatusEvent


def _status_values(state: dict | None) -> dict[str, Any]:
    if state is None:
        return dict(_GONE)
    return {"sync": str(state.get("sync") or "Unknown")[:32], "health": str(state.get("health") or "Unknown")[:32],
            "operation": (str(state["operation"])[:32] if state.get("operation") else None),
            "revision": (str(state["revision"])[:64] if state.get("revision") else None),
            "message": state.get("message")}


def _update_app_statuses(session: Session, cluster: Cluster, applications: dict[str, dict | None],
                         repo: ClusterRepo | None, settings: StatusSettings, now: dt.datetime) -> None:
    """Each reported Application into its app's AppStatus (a StatusEvent when it changed), in bulk."""
    wanted = {pair: state for name, state in applications.items() if (pair := _app_of(name, state))}
    if not wanted:
        return
    ids: dict[tuple[str, str], int] = {}
    current = {}  # app id -> its AppStatus columns, where it has one
    newest: dict[int, int | None] = {}  # app id -> its newest committed version
    for row in session.execute(
            select(Application.id, Workspace.name.label("workspace"), Application.name, Application.current_version,
                   AppStatus.id.label("status"),
                   AppStatus.sync, AppStatus.health, AppStatus.revision, AppStatus.message, AppStatus.synced_revision,
                   AppStatus.live_version, AppStatus.events)
            .join(Workspace, Application.workspace_id == Workspace.id)
            .outerjoin(AppStatus, AppStatus.application_id == Application.id)
            .where(Workspace.cluster_id == cluster.id, Workspace.name.in_({w for w, _ in wanted}),
                   Application.name.in_({a for _, a in wanted}))):
        if (row.workspace, row.name) in wanted:
            ids[(row.workspace, row.name)] = row.id
            newest[row.id] = row.current_version
            if row.status is not None:
                current[row.id] = row
    if not ids:
        return
    rows: dict[int, dict[str, Any]] = {}  # app id -> its AppStatus row as it will be
    events: list[dict[str, Any]] = []
    moved: dict[int, str] = {}
    before: dict[int, tuple[str, int]] = {}  # app id -> (synced revision, live version) before this batch
    for pair, app_id in ids.items():
        values = _status_values(wanted[pair])
        old = current.get(app_id)
        row = {"application_id": app_id, **values,
               "synced_revision": old.synced_revision if old else None,
               "live_version": old.live_version if old else None,
               "events": (old.events or 0) if old else 0}
        if values["sync"] == "Synced" and values["revision"] and values["revision"] != row["synced_revision"]:
            if row["synced_revision"] and row["live_version"] is not None:
                before[app_id] = (row["synced_revision"], row["live_version"])
            row["synced_revision"] = moved[app_id] = values["revision"]
        if old is None or any(getattr(old, k) != values[k] for k in _COMPARED):
            events.append({"application_id": app_id, "sync": values["sync"], "health": values["health"],
                           "revision": values["revision"], "message": values["message"]})
            row["events"] += 1
        rows[app_id] = row
    if moved and repo is not None:
        live = live_versions(session, repo, moved, before, newest)
        for app_id in moved:
            rows[app_id]["live_version"] = live.get(app_id)
    connection = session.connection()
    insert_many(connection, StatusEvent.__table__, events, common={"at": now})
    for row in rows.values():
        # trimmed in steps, so keeping the history bounded costs one query per 50 events of an app
        if row["events"] > settings.history_per_app + 50:
            cutoff = session.scalar(select(StatusEvent.id).where(StatusEvent.application_id == row["application_id"])
                                    .order_by(StatusEvent.id.desc()).offset(settings.history_per_app).limit(1))
            if cutoff is not None:
                session.execute(delete(StatusEvent).where(StatusEvent.application_id == row["application_id"],
                                                          StatusEvent.id <= cutoff))
            row["events"] = settings.history_per_app
    update_many(connection, AppStatus.__table__, "application_id",
                [row for app_id, row in rows.items() if app_id in current], common={"updated_at": now})
    insert_many(connection, AppStatus.__table__, [row for app_id, row in rows.items() if app_id not in current],
                common={"updated_at": now})


def _update_runs_from_workflows(session: Session, cluster: Cluster, workflows: dict[tuple[str, str], dict],
                                now: dt.datetime) -> None:
    runs = session.execute(
        select(JobRun, Workspace.name).join(Application, JobRun.application_id == Application.id).join(Workspace)
        .where(Workspace.cluster_id == cluster.id, JobRun.workflow.in_({name for _, name in workflows}))).all()
    for run, namespace in runs:
        state = workflows.get((namespace, run.workflow))
        if state is not None:
            _follow(run, state, now)


def _follow(run: JobRun, state: dict, now: dt.datetime) -> None:
    """A run takes the state of its Workflow or Job (agent.summaries: phase and message)."""
    new = _WORKFLOW_PHASES.get(str(state.get("phase")), run.state)
    if new != run.state or state.get("message") != run.message:
        run.state, run.message = new, state.get("message")
        if new in ("succeeded", "failed") and run.finished_at is None:
            run.finished_at = now


# --- revisions → versions ------------------------------------------------------------------------


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
            # a short walk first: the commit is mostly a few commits back (ArgoCD moved on by one
            # deploy), and descendant_of computes a merge base, which walks the whole history
            result = _within(repo.repo, revision, commit, _NEAR) or repo.repo.descendant_of(revision, commit)
        except (KeyError, ValueError, pygit2.GitError):
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
            unknown = {c for c in unknown if c in repo.repo}
            if len(unknown) < at_least:
                return
            found: set[str] = set()
            for commit in repo.repo.walk(revision):
                if (name := str(commit.id)) in unknown:
                    found.add(name)
                    if len(found) == len(unknown):
                        break
        except (KeyError, ValueError, pygit2.GitError):
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
            if status.operation in ("Failed", "Error"):
                entry["status"], entry["message"] = "failed", status.message
            elif status.operation == "Running" or status.sync == "OutOfSync":
                entry["status"] = "syncing"
            else:
                entry["status"] = "committed"
        else:
            entry["status"] = "committed"
        out[version.number] = entry
    return out


def _problem_rank(reason: str) -> tuple[int, str]:
    return (POD_PROBLEMS.index(reason) if reason in POD_PROBLEMS else len(POD_PROBLEMS), reason)


def _live_status(status: AppStatus, reasons: list[str], pods: list[dict]) -> dict:
    health = status.health
    if health == "Healthy":
        return {"status": "healthy", "message": status.message, "reasons": reasons}
    if health in ("Degraded", "Missing"):
        message = status.message
        troubled = [p for p in pods if p["reasons"]]
        if troubled:
            worst = troubled[0]
            detail = f"{', '.join(worst['reasons'])} (pod {worst['name']}" + (
                f": {worst['message']})" if worst.get("message") else ")")
            message = f"{message}; {detail}" if message else detail
        return {"status": "degraded", "message": message, "reasons": reasons}
    return {"status": "synced", "message": status.message, "reasons": reasons}


def app_pods(session: Session, app: Application) -> list[dict]:
    """The app's pods as the agent last reported them, troubled ones first."""
    rows = session.execute(select(ClusterObject.name, ClusterObject.state).where(
        ClusterObject.cluster_id == app.workspace.cluster_id, ClusterObject.kind == "Pod",
        ClusterObject.namespace == app.workspace.name)).all()
    pods = [{"name": name, "phase": state.get("phase"), "ready": bool(state.get("ready")),
             "restarts": int(state.get("restarts") or 0), "reasons": list(state.get("reasons") or []),
             "message": state.get("message")}
            for name, state in rows if state.get("app") == app.name]
    return sorted(pods, key=lambda p: (not p["reasons"], [_problem_rank(r) for r in p["reasons"]], p["name"]))


def statuses_for(session: Session, repo: ClusterRepo | None, app: Application, versions: list[Version]) -> dict[int, dict] | None:
    """Each version's status, or None while no agent has said anything about the app."""
    status = session.scalar(select(AppStatus).where(AppStatus.application_id == app.id))
    if status is None:
        return None
    return version_statuses(status, versions, repo, app_pods(session, app))


def app_status(session: Session, repo: ClusterRepo | None, app: Application, settings: StatusSettings,
               versions: list[Version], now: dt.datetime | None = None) -> dict:
    """Everything about an app's live state, as plain data for the API."""
    cluster = app.workspace.cluster
    status = session.scalar(select(AppStatus).where(AppStatus.application_id == app.id))
    pods = app_pods(session, app)
    reachability = connectivity(cluster, settings, now)
    per_version = version_statuses(status, versions, repo, pods)
    return {
        "app": f"{cluster.name}:{app.workspace.name}/{app.name}",
        "application": application_name(app.workspace.name, app.name),
        "connectivity": reachability,
        "stale": reachability != "online",
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
        "versions": [{"number": v.number, "commit": v.commit_id, "state": v.state, **per_version[v.number]}
                     for v in versions],
    }


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


# --- commands --------------------------------------------------------------------------------------


def pending_commands(session: Session, cluster: Cluster) -> int:
    return session.scalar(select(func.count()).select_from(Command).where(
        Command.cluster_id == cluster.id, Command.state == "queued")) or 0


def _object_exists(session: Session, cluster_id: int, kind: str, namespace: str, name: str) -> bool:
    return session.scalar(select(ClusterObject.id).where(
        ClusterObject.cluster_id == cluster_id, ClusterObject.kind == kind, ClusterObject.namespace == namespace,
        ClusterObject.name == name)) is not None


def _check_namespace(session: Session, cluster: Cluster, namespace: str) -> None:
    if session.scalar(select(Workspace.id).where(Workspace.cluster_id == cluster.id, Workspace.name == namespace)) is None:
        raise InvalidRequest(f'namespace "{namespace}" is not a workspace of cluster "{cluster.name}"')


def _whole(params: dict, name: str, low: int, high: int, default: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return value


def enqueue_command(session: Session, principal: Principal, app: Application, kind_of_command: str,
                    params: dict | None) -> Command:
    """Queue a refresh, restart or logs command for the app's cluster (run-job: ``trigger_run``)."""
    params = dict(params or {})
    workspace, cluster = app.workspace, app.workspace.cluster
    what = f'app "{cluster.name}:{workspace.name}/{app.name}"'
    if kind_of_command == "refresh":
        principal.require("app.deploy", workspace_scope(workspace), what)
        unknown = set(params) - {"hard"}
        if unknown or not isinstance(params.get("hard", False), bool):
            raise InvalidRequest('refresh takes only "hard" (true or false)')
        target = ("Application", profile_of(cluster).argocd_namespace, application_name(workspace.name, app.name))
    elif kind_of_command == "restart":
        principal.require("app.deploy", workspace_scope(workspace), what)
        if app.kind != "service":
            raise InvalidRequest(f"{what} is a job; only services have pods to restart")
        if params:
            raise InvalidRequest("restart takes no params")
        # a Rollout when the app is rendered as one (Argo Rollouts strategies), else its Deployment
        rollout = _object_exists(session, cluster.id, "Rollout", workspace.name, app.name)
        target = ("Rollout" if rollout else "Deployment", workspace.name, app.name)
    elif kind_of_command == "logs":
        principal.require("app.read", workspace_scope(workspace), what)
        unknown = set(params) - {"pod", "container", "tail_lines", "limit_bytes"}
        if unknown:
            raise InvalidRequest(f"unknown logs param(s): {', '.join(sorted(unknown))}")
        pods = app_pods(session, app)
        names = [p["name"] for p in pods]
        pod = params.pop("pod", None)
        if pod is None:
            if not names:
                raise Conflict(f"the agent has reported no pod of {what} yet")
            pod = names[0]  # troubled pods sort first: their logs are the ones wanted
        elif pod not in names:
            raise NotFound(f'no pod "{pod}" of {what}')
        params["tail_lines"] = _whole(params, "tail_lines", 1, MAX_LOG_LINES, 200)
        params["limit_bytes"] = _whole(params, "limit_bytes", 1, MAX_LOG_BYTES, MAX_LOG_BYTES)
        if "container" in params and not isinstance(params["container"], str):
            raise InvalidRequest("container must be a string")
        target = ("Pod", workspace.name, pod)
    else:
        choices = ", ".join(USER_COMMANDS)
        raise InvalidRequest(f'command type must be one of {choices} (jobs run through /runs)')
    if target[0] != "Application":
        _check_namespace(session, cluster, target[1])
    command = Command(cluster_id=cluster.id, application_id=app.id, type=kind_of_command, kind=target[0],
                      namespace=target[1], name=target[2], params=params, state="queued", attempts=0,
                      created_by=principal.name, created_at=utcnow())
    session.add(command)
    session.flush()
    return command


def get_command(session: Session, principal: Principal, command_id: int) -> Command:
    """A command the caller may read: one of an app they can read (or, without an app, of a cluster)."""
    command = session.get(Command, command_id) if 1 <= command_id < 2**31 else None
    if command is not None:
        if command.application_id is not None:
            app = session.get(Application, command.application_id)
            if app is not None and principal.can("app.read", workspace_scope(app.workspace)):
                return command
        else:
            cluster = session.get(Cluster, command.cluster_id)
            if cluster is not None and principal.can("cluster.read", Scope(cluster.tenant_id, cluster.id)):
                return command
    raise NotFound(f"no command {command_id}")


def claimable_clusters(session: Session, cluster_ids: list[int], now: dt.datetime | None = None) -> set[int]:
    """Which of these clusters have commands a claim would hand out: one read for them all."""
    now = now or utcnow()
    return set(session.scalars(select(Command.cluster_id).distinct().where(
        Command.cluster_id.in_(cluster_ids),
        or_(Command.state == "queued", and_(Command.state == "sent", Command.claimed_until < now)))))


def claim_commands(session: Session, cluster_id: int, settings: StatusSettings, now: dt.datetime | None = None,
                   limit: int = 20) -> list[Command]:
    """Hand out the cluster's queued commands (and those whose lease ran out) to one agent call.

    Rows are locked (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's write lock serializes the
    whole transaction), so two control plane processes never hand out the same command.
    """
    now = now or utcnow()
    session.execute(update(Command).where(
        Command.cluster_id == cluster_id, Command.state == "queued",
        Command.created_at < now - dt.timedelta(seconds=settings.command_ttl))
        .values(state="expired", done_at=now, error="no agent took the command in time"))
    session.execute(update(Command).where(
        Command.cluster_id == cluster_id, Command.state == "sent", Command.claimed_until < now,
        Command.attempts >= settings.command_attempts)
        .values(state="expired", done_at=now, error=f"no result after {settings.command_attempts} attempts"))
    commands = list(session.scalars(
        select(Command).where(
            Command.cluster_id == cluster_id,
            or_(Command.state == "queued", and_(Command.state == "sent", Command.claimed_until < now)))
        .order_by(Command.id).limit(limit).with_for_update(skip_locked=True)))
    for command in commands:
        command.state, command.sent_at, command.attempts = "sent", now, command.attempts + 1
        command.claimed_until = now + dt.timedelta(seconds=settings.command_lease)
    _expire_runs(session, cluster_id)
    return commands


def _expire_runs(session: Session, cluster_id: int) -> None:
    expired = select(Command.id).where(Command.cluster_id == cluster_id, Command.state == "expired")
    session.execute(update(JobRun).where(JobRun.command_id.in_(expired), JobRun.state.in_(("queued", "sent")))
                    .values(state="expired", message="no agent took the run in time"))


def record_result(session: Session, cluster: Cluster, command_id: int, result: Any,
                  now: dt.datetime | None = None) -> Command:
    """Record what the agent says a command did; a repeated report changes nothing."""
    now = now or utcnow()
    command = session.scalar(select(Command).where(Command.id == command_id, Command.cluster_id == cluster.id)
                             .with_for_update()) if 1 <= command_id < 2**31 else None
    if command is None:
        raise NotFound(f"no command {command_id} for this cluster")
    if command.state in ("done", "failed"):
        return command
    command.state = "done" if result.ok else "failed"
    command.result, command.error, command.done_at, command.claimed_until = result.result, result.error, now, None
    run = session.scalar(select(JobRun).where(JobRun.command_id == command.id))
    if run is not None:
        if result.ok:
            name = result.result.get("workflow") or result.result.get("job") or result.result.get("name")
            run.workflow = str(name)[:253] if name else None
            run.state = "running" if run.state in ("queued", "sent", "expired") else run.state
            # the agent may have reported the Workflow or Job (even its end) before this result
            reported = session.scalar(select(ClusterObject.state).where(
                ClusterObject.cluster_id == cluster.id, ClusterObject.kind.in_(_RUN_KINDS),
                ClusterObject.namespace == command.namespace, ClusterObject.name == run.workflow)
                .limit(1)) if run.workflow else None
            if reported:
                _follow(run, reported, now)
        else:
            run.state, run.message, run.finished_at = "failed", result.error, now
    return command


def command_json(command: Command) -> dict:
    return {"id": command.id, "type": command.type, "kind": command.kind, "namespace": command.namespace,
            "name": command.name, "params": command.params, "state": command.state, "attempts": command.attempts,
            "result": command.result, "error": command.error, "created_by": command.created_by,
            "created_at": _iso(command.created_at), "sent_at": _iso(command.sent_at), "done_at": _iso(command.done_at)}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- job runs --------------------------------------------------------------------------------------


def trigger_run(session: Session, principal: Principal, app: Application, params: Any) -> JobRun:
    """Run a job app now: a run-job command for its WorkflowTemplate (or CronWorkflow, or CronJob)."""
    workspace, cluster = app.workspace, app.workspace.cluster
    principal.require("app.deploy", workspace_scope(workspace), f'app "{cluster.name}:{workspace.name}/{app.name}"')
    if app.kind != "job":
        raise InvalidRequest(f'app "{app.name}" is a service; only jobs have runs')
    if app.deleted or app.current_version is None:
        raise Conflict(f'job "{app.name}" has no committed version to run')
    params = params or {}
    if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in params.items()):
        raise InvalidRequest("params must map parameter names to strings or numbers")
    version = session.scalar(select(Version).where(Version.application_id == app.id,
                                                   Version.number == app.current_version))
    spec = (version.spec if version else None) or {}
    declared = {p.get("name") for p in spec.get("params") or [] if isinstance(p, dict)}
    unknown = set(params) - declared
    if unknown:
        raise InvalidRequest(f"job {app.name} has no param(s) {', '.join(sorted(unknown))}")
    if profile_of(cluster).has("argo_workflows"):
        scheduled = (spec.get("trigger") or {}).get("type") == "scheduled"
        kind = "CronWorkflow" if scheduled else "WorkflowTemplate"
    else:
        if params:
            raise InvalidRequest(f'cluster "{cluster.name}" has no Argo Workflows: a job runs with its defaults')
        kind = "CronJob"
    _check_namespace(session, cluster, workspace.name)
    command = Command(cluster_id=cluster.id, application_id=app.id, type="run-job", kind=kind,
                      namespace=workspace.name, name=app.name,
                      params={"parameters": {k: str(v) for k, v in params.items()}}, state="queued", attempts=0,
                      created_by=principal.name, created_at=utcnow())
    session.add(command)
    session.flush()
    run = JobRun(application_id=app.id, command_id=command.id, params=dict(params), state="queued",
                 created_by=principal.name, created_at=utcnow())
    session.add(run)
    session.flush()
    return run


def list_runs(session: Session, app: Application, limit: int = 50) -> list[tuple[JobRun, Command | None]]:
    rows = session.execute(select(JobRun, Command).outerjoin(Command, JobRun.command_id == Command.id)
                           .where(JobRun.application_id == app.id).order_by(JobRun.id.desc()).limit(limit)).all()
    return [(run, command) for run, command in rows]


def run_json(run: JobRun, command: Command | None) -> dict:
    state = run.state
    if state == "queued" and command is not None and command.state in ("sent", "expired"):
        state = command.state
    return {"id": run.id, "state": state, "params": run.params, "workflow": run.workflow, "message": run.message,
            "command": command.id if command else None, "created_by": run.created_by,
            "created_at": _iso(run.created_at), "finished_at": _iso(run.finished_at)}


__all__ = [
    "StatusSettings", "IngestResult", "LiveFacts", "agent_cluster", "connectivity", "heartbeat", "ingest",
    "live_facts",
    "live_versions", "version_statuses", "statuses_for", "app_pods", "app_status", "status_history", "cluster_status",
    "pending_commands", "enqueue_command", "get_command", "claimable_clusters", "claim_commands", "record_result",
    "command_json", "trigger_run", "list_runs", "run_json", "ancestry", "POD_PROBLEMS",
    "USER_COMMANDS", "MAX_LOG_LINES", "MAX_LOG_BYTES",
]
