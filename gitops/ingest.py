"""Status batches from the clusters' agents, applied in order (contract.protocol).

- ``ingest`` applies one status batch of a cluster's stream: the next seq is
  applied, a duplicate is acknowledged without applying it, a gap or an
  unknown stream asks for a resync (the agent then sends a snapshot, whose
  final batch removes every object it no longer reports). Objects are
  upserted in bulk (one INSERT ... ON CONFLICT per batch), since this is the
  hot path of every cluster.
- ArgoCD Applications in a batch become each app's ``AppStatus`` (history in
  ``StatusEvent`` when something a person reads changed), in bulk too; a newly
  synced revision moves the app's live version (gitops.status.live_versions),
  and a job's newly live version may start a run (gitops.commands.runs_on_deploy).
- Workflows and Jobs in a batch move the job runs they belong to (gitops.commands).
- The state changes among them become status events (gitops.webhook_events), in the
  batch's transaction, and so does the agent's return after it was offline.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from contract.repository import parse_application_name
from gitops import webhook_events
from gitops.commands import RUN_KINDS, runs_on_deploy, update_runs_from_workflows
from gitops.db import insert_many, update_many
from gitops.models import Application, AppStatus, Cluster, ClusterObject, StatusEvent, Workspace, utcnow
from gitops.repo import ClusterRepo
from gitops.status import StatusSettings, live_versions

_UPSERT_CHUNK = 500


class IngestResult(NamedTuple):
    outcome: str  # applied | duplicate | ahead (a batch before it is missing) | resync
    acked: int | None


def ingest(session: Session, cluster: Cluster, batch: Any, repo: ClusterRepo | None = None,
           settings: StatusSettings | None = None, now: dt.datetime | None = None) -> IngestResult:
    """Apply one status batch of the cluster's stream (contract.protocol), or say why not.

    ``repo`` (the cluster repository) maps synced revisions to live versions; without it the
    live version is left as it was.
    """
    settings = settings or StatusSettings()
    now = now or utcnow()
    # One batch of a cluster at a time: the UPDATE takes the row lock, under which the stream
    # position is read and moved. The cluster's tenant and name come with it, for status events:
    # the caller may pass a cluster of which it loaded the id alone.
    table = Cluster.__table__
    last_seen = cluster.last_seen_at
    stream, seq, tenant_id, name = session.execute(
        update(table).where(table.c.id == cluster.id).values(last_seen_at=now)
        .returning(table.c.stream, table.c.stream_seq, table.c.tenant_id, table.c.name)).one()
    for attribute, value in (("last_seen_at", now), ("tenant_id", tenant_id), ("name", name)):
        set_committed_value(cluster, attribute, value)
    webhook_events.agent_heard(session, cluster, last_seen, now, settings)
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
        elif delta.kind in RUN_KINDS and delta.state is not None:
            workflows[(delta.namespace, delta.name)] = delta.state
    if applications:
        _update_app_statuses(session, cluster, applications, repo, settings, now)
    if workflows:
        update_runs_from_workflows(session, cluster, workflows, now)
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
    return parse_application_name(name)


_GONE = {"sync": "Unknown", "health": "Missing", "operation": None, "operation_revision": None, "revision": None,
         "message": "the ArgoCD Application is gone from the cluster"}
_COMPARED = ("sync", "health", "revision", "message")  # a change in any of them is a StatusEvent


def _status_values(state: dict | None) -> dict[str, Any]:
    if state is None:
        return dict(_GONE)
    return {"sync": str(state.get("sync") or "Unknown")[:32], "health": str(state.get("health") or "Unknown")[:32],
            "operation": (str(state["operation"])[:32] if state.get("operation") else None),
            "operation_revision": (str(state["operation_revision"])[:64] if state.get("operation_revision") else None),
            "revision": (str(state["revision"])[:64] if state.get("revision") else None),
            "message": state.get("message")}


def _update_app_statuses(session: Session, cluster: Cluster, applications: dict[str, dict | None],
                         repo: ClusterRepo | None, settings: StatusSettings, now: dt.datetime) -> None:
    """Each reported Application into its app's AppStatus (a StatusEvent when it changed), in bulk."""
    wanted = {pair: state for name, state in applications.items() if (pair := _app_of(name, state))}
    if not wanted:
        return
    ids: dict[tuple[str, str], int] = {}
    workspace_ids: dict[int, int] = {}
    current = {}  # app id -> its AppStatus columns, where it has one
    newest: dict[int, int | None] = {}  # app id -> its newest committed version
    for row in session.execute(
            select(Application.id, Application.workspace_id, Workspace.name.label("workspace"), Application.name,
                   Application.current_version, AppStatus.id.label("status"),
                   AppStatus.sync, AppStatus.health, AppStatus.revision, AppStatus.message, AppStatus.synced_revision,
                   AppStatus.live_version, AppStatus.events, AppStatus.operation, AppStatus.operation_revision)
            .join(Workspace, Application.workspace_id == Workspace.id)
            .outerjoin(AppStatus, AppStatus.application_id == Application.id)
            .where(Workspace.cluster_id == cluster.id, Workspace.name.in_({w for w, _ in wanted}),
                   Application.name.in_({a for _, a in wanted}))):
        if (row.workspace, row.name) in wanted:
            ids[(row.workspace, row.name)] = row.id
            workspace_ids[row.id] = row.workspace_id
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
        # a version just live may start its job (trigger_on_deploy)
        runs_on_deploy(session, cluster, {app_id: number for app_id, number in live.items()
                                          if number > ((current[app_id].live_version or 0) if app_id in current else 0)})
    changes = {app_id: found for app_id, row in rows.items()
               if (found := webhook_events.status_events(current[app_id]._mapping if app_id in current else None, row))}
    if changes:
        places = {app_id: webhook_events.AppPlace(workspace_ids[app_id], *pair) for pair, app_id in ids.items()
                  if app_id in changes}
        webhook_events.status_changed(session, cluster, changes, places, rows, repo, now)
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


__all__ = ["IngestResult", "ingest"]
