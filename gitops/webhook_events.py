"""Status events: each state change a webhook subscription may hear of, made where the change is recorded.

Every producer writes its events into the outbox (``WebhookEvent``, through ``emit_many``) in the
transaction that records the change itself, so an event exists exactly when its change was
committed: a transaction rolled back takes its events with it, and the retry that records the
change makes them again. An event's key names its subject and state, and the outbox keeps one
event per key, so a change recorded by two parties (a committer and the reconciler, two
processes, a report sent twice) is one event. Only the types some active subscription of the
tenant lists are recorded (one small read, ``_audience``): the delivery worker fans an event
out to the subscriptions active then, so nobody would be sent the others, and a tenant without
status webhooks costs the agents' hot path no write.

===================  ==================================================  ===========================================
event                made when                                           key (``<v>``: ``app/<app id>/version/<n>``)
===================  ==================================================  ===========================================
version.committed    a Version is marked committed (gitops.commit_step,  ``<v>/committed``
                     or the reconciler recording a commit it found)
version.rolled_back  ... and that Version is a rollback                  ``<v>/rolled_back``
version.promoted     ... or a promotion                                  ``<v>/promoted``
version.synced       ArgoCD reports the app Synced at a revision whose   ``<v>/synced/<batch>``
                     live version is this one, and it did not before
version.healthy      the live version is Healthy, and it was not         ``<v>/healthy/<batch>``
version.degraded     the live version is Degraded, and it was not        ``<v>/degraded/<batch>``
version.sync_failed  ArgoCD's sync operation Failed (or Error) at a      ``<v>/sync_failed/<batch>``
                     revision it had not failed at; about the version
                     that revision carries
run.succeeded        a job run reaches that state (gitops.commands)      ``run/<id>/succeeded``
run.failed           ... or fails (its Workflow, Job or command)         ``run/<id>/failed``
cluster.offline      the cluster's agent is offline (``find_offline``,   ``cluster/<id>/offline/<last seen>``
                     each pass of the delivery worker)
cluster.online       an agent calls after its cluster was offline        ``cluster/<id>/online/<last seen>``
===================  ==================================================  ===========================================

The status events come from gitops.ingest, the agents' hot path, by comparing each app's
AppStatus before and after the batch (``status_events``): made from what ingest holds in
memory, with the one read of who listens, in one insert per batch. So a version is named by its
app and number (not its row, which ingest does not read), and a status event tells what ArgoCD
said of the version, while its version.committed tells what the version is (its commit, who
deployed it, from where).
``<batch>`` is the batch's place in its agent's status stream (``<stream>.<seq>``), so a
version that leaves a state and comes back makes a new event (degraded, healthy, degraded:
three), while a state reported again (a snapshot after a resync, a batch sent twice) is no
change and makes none.

Offline is what the dashboard shows as offline (gitops.status ``reachability``): not heard
from for AGENT_STALE_WITHIN seconds. Both events of one absence carry the time the agent was
last seen before it: the agent's concurrent calls as it comes back make one online event, and
its first call makes the offline event too when no worker pass saw the absence, so a receiver
never hears "online" without "offline" first.

``envelope`` is an event in Shipyard's format, described by schemas/webhook-event.schema.json.

The outbox's insert (``emit``, ``emit_many``) lives here rather than with the subscriptions
(gitops.webhooks, which exports it too): the commit step records events and sits below the
services, so what it imports must not import them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from gitops.db import insert_many
from gitops.models import Cluster, JobRun, Tenant, Version, WebhookEvent, WebhookSubscription
from gitops.repo import ClusterRepo
from gitops.status import StatusSettings, live_versions, reachability

SCHEMA_VERSION = "1"  # the envelope's "version": what schemas/webhook-event.schema.json describes
MAX_MESSAGE = 2000  # characters of ArgoCD's or a run's message an event carries
FAILED_OPERATIONS = ("Failed", "Error")
_ACTION_EVENTS = {"rollback": "version.rolled_back", "promote": "version.promoted"}
# (event, AppStatus column, value): the live version's states an event is made for
_LIVE_STATES = (("version.synced", "sync", "Synced"), ("version.healthy", "health", "Healthy"),
                ("version.degraded", "health", "Degraded"))
_EVENT_COLUMNS = ("tenant_id", "key", "type", "cluster_id", "workspace_id", "application_id", "data", "occurred_at")


class VersionFacts(NamedTuple):
    """A committed Version as its events tell of it, and where it belongs."""

    application_id: int
    workspace_id: int
    workspace: str
    app: str
    number: int
    action: str  # deploy | rollback | promote | delete
    deployment_id: str
    commit: str | None
    changed: bool | None
    source_commit: str | None
    author: str
    origin: dict | None  # rollback_of / promoted_from


class AppPlace(NamedTuple):
    """Where an app is: its workspace (id and name) and its name."""

    workspace_id: int
    workspace: str
    app: str


class RunFacts(NamedTuple):
    """A job run that just finished, and where it belongs."""

    run: JobRun
    workspace_id: int
    workspace: str
    app: str


# --- the outbox ------------------------------------------------------------------------------------


def emit(session: Session, *, tenant_id: int, type: str, key: str, cluster_id: int | None,
         workspace_id: int | None, application_id: int | None, data: dict, occurred_at: dt.datetime) -> None:
    """Record one event in the caller's transaction; an event whose key the tenant has already is left as it is.

    An event names its subject's scope at every level (an app's event its workspace and cluster
    too): gitops.webhooks ``matches`` compares those ids alone."""
    emit_many(session, [{"tenant_id": tenant_id, "type": type, "key": key, "cluster_id": cluster_id,
                         "workspace_id": workspace_id, "application_id": application_id, "data": data,
                         "occurred_at": occurred_at}])


def emit_many(session: Session, rows: list[dict]) -> None:
    """Record events (dicts of ``emit``'s keyword arguments) in one statement, in the caller's transaction;
    those whose key the tenant has already (or that repeat one) are left out. Reads nothing."""
    if not rows:
        return
    insert_many(session.connection(), WebhookEvent.__table__, [{name: row[name] for name in _EVENT_COLUMNS}
                                                               for row in rows],
                common={"fanned_out": False}, conflict=("tenant_id", "key"))


def envelope(event: WebhookEvent) -> dict[str, Any]:
    """The event in Shipyard's format (schemas/webhook-event.schema.json): its key is its id."""
    return {"type": event.type, "id": event.key, "occurred_at": _iso(event.occurred_at), "version": SCHEMA_VERSION,
            "data": event.data}


# --- versions --------------------------------------------------------------------------------------


def facts_of(version: Version) -> VersionFacts:
    """The facts of a Version whose application (and its workspace) is loaded."""
    app = version.application
    return VersionFacts(version.application_id, app.workspace_id, app.workspace.name, app.name,
                        version.number, version.action, version.deployment_id, version.commit_id, version.changed,
                        version.source_commit, version.author, version.origin)


def versions_committed(session: Session, cluster: Cluster, versions: list[VersionFacts], at: dt.datetime) -> None:
    """version.committed for each Version just marked committed, and version.rolled_back or
    version.promoted for those a rollback or a promotion made."""
    if not versions:
        return
    tenant, heard = _audience(session, cluster.tenant_id)
    rows = []
    for facts in versions:
        place = AppPlace(facts.workspace_id, facts.workspace, facts.app)
        what = {"action": facts.action, "deployment_id": facts.deployment_id, "commit": facts.commit,
                "changed": facts.changed, "source_commit": facts.source_commit, "author": facts.author,
                "origin": _origin(facts.origin)}
        for event in ("version.committed", _ACTION_EVENTS.get(facts.action)):
            if event in heard:
                rows.append(_version_event(event, tenant, cluster, facts.application_id, place, facts.number, at,
                                           what))
    emit_many(session, rows)


def status_events(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The version events an app's status change makes (pure): ``old`` and ``new`` are its AppStatus
    columns (``sync``, ``health``, ``operation``, ``operation_revision``, ``revision``,
    ``live_version``) before and after a batch; ``old`` is None at the app's first report.

    The live version's Synced, Healthy and Degraded are each an event when the live version is in
    that state now and was not before (another version, or another state); a failed sync
    operation when it failed at a revision it had not failed at before.
    """
    live, events = new["live_version"], []
    if live is not None:
        for event, column, value in _LIVE_STATES:
            if new[column] == value and (old is None or old["live_version"] != live or old[column] != value):
                events.append(event)
    failed_at = _failed_at(new)
    if failed_at is not None and (old is None or _failed_at(old) != failed_at):
        events.append("version.sync_failed")
    return events


def status_changed(session: Session, cluster: Cluster, changes: dict[int, list[str]], places: dict[int, AppPlace],
                   statuses: dict[int, Mapping[str, Any]], repo: ClusterRepo | None, at: dt.datetime) -> None:
    """The events ``status_events`` found, by app id, each about the version it concerns: the live one
    (``statuses``, the apps' AppStatus after the batch), or for a failed sync the version the failing
    revision carries (by commit ancestry, so only with ``repo``). Called by gitops.ingest once the
    cluster's stream moved to this batch; one read, at most one insert."""
    tenant, heard = _audience(session, cluster.tenant_id)
    failing = {app_id: _failed_at(statuses[app_id]) for app_id, events in changes.items()
               if "version.sync_failed" in events and "version.sync_failed" in heard}
    tried = live_versions(session, repo, failing) if failing and repo is not None else {}
    batch = f"{cluster.stream}.{cluster.stream_seq}"
    rows = []
    for app_id, events in changes.items():
        status = statuses[app_id]
        for event in events:
            failed = event == "version.sync_failed"
            number = tried.get(app_id) if failed else status["live_version"]
            if number is None or event not in heard:
                continue
            rows.append(_version_event(event, tenant, cluster, app_id, places[app_id], number, at, {
                "sync": status["sync"], "health": status["health"], "operation": status["operation"],
                "revision": failing[app_id] if failed else status["revision"], "message": _bounded(status["message"])},
                batch))
    emit_many(session, rows)


def _failed_at(status: Mapping[str, Any]) -> str | None:
    """The revision a failed sync operation tried (the compared one when the agent does not say), else None."""
    if status["operation"] not in FAILED_OPERATIONS:
        return None
    return status["operation_revision"] or status["revision"]


def _version_event(event: str, tenant: str, cluster: Cluster, application_id: int, place: AppPlace, number: int,
                   at: dt.datetime, what: dict[str, Any], batch: str | None = None) -> dict[str, Any]:
    key = f"app/{application_id}/version/{number}/{event.split('.', 1)[1]}" + (f"/{batch}" if batch else "")
    data = {"tenant": tenant, "cluster": cluster.name, "workspace": place.workspace, "app": place.app,
            "version": number, **what}
    return _row(event, key, cluster.tenant_id, cluster.id, place.workspace_id, application_id, data, at)


def _origin(origin: dict | None) -> dict | None:
    """Where a rollback or promotion came from, without the promotion's overrides (the version holds those)."""
    if not isinstance(origin, dict):
        return None
    return {name: value for name, value in origin.items() if name in ("rollback_of", "promoted_from", "version")}


# --- job runs --------------------------------------------------------------------------------------


def runs_finished(session: Session, cluster: Cluster, runs: list[RunFacts], at: dt.datetime) -> None:
    """run.succeeded or run.failed for each run that just reached that state."""
    if not runs:
        return
    tenant, heard = _audience(session, cluster.tenant_id)
    emit_many(session, [_row(
        f"run.{facts.run.state}", f"run/{facts.run.id}/{facts.run.state}", cluster.tenant_id, cluster.id,
        facts.workspace_id, facts.run.application_id,
        {"tenant": tenant, "cluster": cluster.name, "workspace": facts.workspace, "app": facts.app,
         "run": facts.run.id, "state": facts.run.state, "message": _bounded(facts.run.message),
         "workflow": facts.run.workflow, "started_by": facts.run.created_by, "created_at": _iso(facts.run.created_at),
         "finished_at": _iso(facts.run.finished_at or at)}, at) for facts in runs if f"run.{facts.run.state}" in heard])


# --- the clusters' agents --------------------------------------------------------------------------


def agent_heard(session: Session, cluster: Cluster, last_seen: dt.datetime | None, now: dt.datetime,
                settings: StatusSettings) -> None:
    """An agent's call at ``now``, its previous one at ``last_seen``: cluster.online when the cluster was
    offline in between, after its cluster.offline (made here when no worker pass made it yet)."""
    if last_seen is None or reachability(last_seen, settings, now) != "offline":
        return
    tenant, heard = _audience(session, cluster.tenant_id)
    emit_many(session, [row for row in (
        _offline(cluster.tenant_id, tenant, cluster.id, cluster.name, last_seen, settings),
        _row("cluster.online", f"cluster/{cluster.id}/online/{_iso(last_seen)}", cluster.tenant_id, cluster.id,
             None, None, {"tenant": tenant, "cluster": cluster.name, "last_seen_at": _iso(now),
                          "previously_seen_at": _iso(last_seen)}, now)) if row["type"] in heard])


def find_offline(session: Session, now: dt.datetime, settings: StatusSettings) -> int:
    """cluster.offline for each cluster whose agent is offline at ``now`` and has no such event for the
    call it was last seen at, where an active subscription lists the type; returns how many were
    made. Run by the delivery worker each pass."""
    cutoff = now - dt.timedelta(seconds=settings.stale_within)
    rows = session.execute(select(Cluster.tenant_id, Tenant.name, Cluster.id, Cluster.name, Cluster.last_seen_at)
                           .join(Tenant, Cluster.tenant_id == Tenant.id).where(Cluster.last_seen_at < cutoff)).all()
    if not rows:
        return 0
    heard = {tenant_id for tenant_id, events in session.execute(
        select(WebhookSubscription.tenant_id, WebhookSubscription.events).where(
            WebhookSubscription.tenant_id.in_({row.tenant_id for row in rows}), WebhookSubscription.state == "active"))
        if "cluster.offline" in events}
    events = [_offline(*row, settings) for row in rows if row.tenant_id in heard]
    if not events:
        return 0
    made = set(session.execute(select(WebhookEvent.tenant_id, WebhookEvent.key).where(
        tuple_(WebhookEvent.tenant_id, WebhookEvent.key).in_([(e["tenant_id"], e["key"]) for e in events]))).all())
    new = [event for event in events if (event["tenant_id"], event["key"]) not in made]
    emit_many(session, new)
    return len(new)


def _offline(tenant_id: int, tenant: str, cluster_id: int, cluster: str, last_seen: dt.datetime,
             settings: StatusSettings) -> dict[str, Any]:
    """The cluster's agent went offline ``stale_within`` seconds after it was last seen."""
    return _row("cluster.offline", f"cluster/{cluster_id}/offline/{_iso(last_seen)}", tenant_id, cluster_id, None,
                None, {"tenant": tenant, "cluster": cluster, "last_seen_at": _iso(last_seen),
                       "offline_after": settings.stale_within},
                last_seen + dt.timedelta(seconds=settings.stale_within))


# --- rows ------------------------------------------------------------------------------------------


def _row(event: str, key: str, tenant_id: int, cluster_id: int, workspace_id: int | None,
         application_id: int | None, data: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "type": event, "key": key, "cluster_id": cluster_id, "workspace_id": workspace_id,
            "application_id": application_id, "data": data, "occurred_at": at}


def _audience(session: Session, tenant_id: int) -> tuple[str, set[str]]:
    """The tenant's name, and the event types its active subscriptions list, in one read."""
    rows = session.execute(
        select(Tenant.name, WebhookSubscription.events).select_from(Tenant)
        .outerjoin(WebhookSubscription, (WebhookSubscription.tenant_id == Tenant.id)
                   & (WebhookSubscription.state == "active"))
        .where(Tenant.id == tenant_id)).all()
    return rows[0].name, {event for row in rows for event in row.events or ()}


def _bounded(message: str | None) -> str | None:
    return message if message is None or len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 1] + "…"


def _iso(moment: dt.datetime) -> str:
    """A time in UTC to the microsecond: the same instant always reads the same, in keys too."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


__all__ = [
    "SCHEMA_VERSION",
    "emit",
    "emit_many",
    "VersionFacts",
    "AppPlace",
    "RunFacts",
    "envelope",
    "facts_of",
    "versions_committed",
    "status_events",
    "status_changed",
    "runs_finished",
    "agent_heard",
    "find_offline",
]
