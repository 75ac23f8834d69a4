"""Commands for the clusters' agents (refresh, restart, logs, run-job) and the job runs they start.

Commands for agents are queued in the database and claimed with a lease
(row locks on PostgreSQL, the write lock on SQLite), so any number of
control plane processes hand each one out once; an unanswered one is sent
again when its lease ends, and expires when no agent takes it in time, but for
a commit's refreshes (gitops.refreshes), which wait for their agent however long.

A job run is a run-job command and the Workflow (or Job) it starts: the run
takes that workload's state as the agent reports it (gitops.ingest), from the
command's result on. People start runs through the API (``trigger_run``); a
job with trigger_on_deploy gets one when a new version of it is live
(``runs_on_deploy``). A run that succeeds or fails is a status event (gitops.webhook_events), in
the transaction that records it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from gitops import webhook_events
from gitops.audit import record
from gitops.clusters import profile_of
from gitops.models import Application, Cluster, ClusterObject, Command, JobRun, Version, Workspace, utcnow
from gitops.policy import Scope
from gitops.refreshes import COMMIT_REFRESH
from gitops.service_context import Context
from gitops.status import StatusSettings, app_pods
from gitops.workspaces import workspace_scope
from contract.errors import Conflict, InvalidRequest, NotFound
from contract.protocol import COMMANDS, MAX_LOG_BYTES, MAX_LOG_LINES
from contract.repository import application_name

# The commands of the protocol that people send through the API (jobs run through /runs).
USER_COMMANDS = tuple(name for name in COMMANDS if name != "run-job")
RUN_STATES = ("queued", "sent", "running", "succeeded", "failed", "expired")
_WORKFLOW_PHASES = {"Pending": "running", "Running": "running", "Succeeded": "succeeded", "Failed": "failed",
                    "Error": "failed"}
RUN_KINDS = ("Workflow", "Job")  # what a run-job command starts; a run follows its state


# --- commands --------------------------------------------------------------------------------------


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


def enqueue_command(ctx: Context, app: Application, kind_of_command: str, params: dict | None) -> Command:
    """Queue a refresh, restart or logs command for the app's cluster (run-job: ``trigger_run``)."""
    session, principal = ctx.session, ctx.principal
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
        unknown = set(params) - {"pod", "container", "tail_lines", "limit_bytes", "previous", "since_time", "timestamps"}
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
        for flag in ("previous", "timestamps"):
            if not isinstance(params.get(flag, False), bool):
                raise InvalidRequest(f"{flag} must be true or false")
        if "since_time" in params:
            params["since_time"] = _rfc3339(params["since_time"])
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
    record(session, principal, f"app.command.{command.type}", f"{cluster.name}:{workspace.name}/{app.name}",
           {"command": command.id})
    return command


def _rfc3339(value: Any) -> str:
    """An RFC 3339 time as the API server's sinceTime takes it (UTC, ``Z``)."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidRequest("since_time must be an RFC 3339 time with its offset, e.g. 2026-01-01T12:00:00Z")
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def get_command(ctx: Context, command_id: int) -> Command:
    """A command the caller may read: one of an app they can read (or, without an app, of a cluster)."""
    session, principal = ctx.session, ctx.principal
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
        Command.created_at < now - dt.timedelta(seconds=settings.command_ttl), ~COMMIT_REFRESH)
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
        finished = False
        if result.ok:
            name = result.result.get("workflow") or result.result.get("job") or result.result.get("name")
            run.workflow = str(name)[:253] if name else None
            run.state = "running" if run.state in ("queued", "sent", "expired") else run.state
            # the agent may have reported the Workflow or Job (even its end) before this result
            reported = session.scalar(select(ClusterObject.state).where(
                ClusterObject.cluster_id == cluster.id, ClusterObject.kind.in_(RUN_KINDS),
                ClusterObject.namespace == command.namespace, ClusterObject.name == run.workflow)
                .limit(1)) if run.workflow else None
            finished = bool(reported) and _follow(run, reported, now)
        else:
            finished = run.state != "failed"
            run.state, run.message, run.finished_at = "failed", result.error, now
        if finished:
            app = session.get(Application, run.application_id)
            webhook_events.runs_finished(session, cluster, [
                webhook_events.RunFacts(run, app.workspace_id, app.workspace.name, app.name)], now)
    return command


def command_json(command: Command) -> dict:
    return {"id": command.id, "type": command.type, "kind": command.kind, "namespace": command.namespace,
            "name": command.name, "params": command.params, "state": command.state, "attempts": command.attempts,
            "result": command.result, "error": command.error, "created_by": command.created_by,
            "created_at": _iso(command.created_at), "sent_at": _iso(command.sent_at), "done_at": _iso(command.done_at)}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- job runs --------------------------------------------------------------------------------------


def trigger_run(ctx: Context, app: Application, params: Any) -> JobRun:
    """Run a job app now: a run-job command for its WorkflowTemplate (or CronWorkflow, or CronJob)."""
    session, principal = ctx.session, ctx.principal
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
    # a param without a default has no value unless the run gives one: Argo would fail the Workflow
    # ("parameter ... was not supplied"), so the run is refused here, before anything is queued
    missing = sorted(p["name"] for p in spec.get("params") or []
                     if isinstance(p, dict) and "default" not in p and p.get("name") not in params)
    if missing:
        raise InvalidRequest(f"job {app.name} needs a value for param(s) {', '.join(missing)}: "
                             "they have no default; pass them in params")
    if params and not profile_of(cluster).has("argo_workflows"):
        raise InvalidRequest(f'cluster "{cluster.name}" has no Argo Workflows: a job runs with its defaults')
    _check_namespace(session, cluster, workspace.name)
    run = _queue_run(session, app, cluster, spec, params, principal.name)
    record(session, principal, "app.run", f"{cluster.name}:{workspace.name}/{app.name}", {"run": run.id})
    return run


def _queue_run(session: Session, app: Application, cluster: Cluster, spec: dict, params: dict,
               created_by: str) -> JobRun:
    """A run-job command for the job's WorkflowTemplate (or CronWorkflow, or CronJob), and its run."""
    if profile_of(cluster).has("argo_workflows"):
        scheduled = (spec.get("trigger") or {}).get("type") == "scheduled"
        kind = "CronWorkflow" if scheduled else "WorkflowTemplate"
    else:
        kind = "CronJob"
    command = Command(cluster_id=cluster.id, application_id=app.id, type="run-job", kind=kind,
                      namespace=app.workspace.name, name=app.name,
                      params={"parameters": {k: str(v) for k, v in params.items()}}, state="queued", attempts=0,
                      created_by=created_by, created_at=utcnow())
    session.add(command)
    session.flush()
    run = JobRun(application_id=app.id, command_id=command.id, params=dict(params), state="queued",
                 created_by=created_by, created_at=utcnow())
    session.add(run)
    session.flush()
    return run


def runs_on_deploy(session: Session, cluster: Cluster, newly_live: dict[int, int]) -> list[JobRun]:
    """A run, with its params' defaults, of each job whose newly live version says trigger_on_deploy.

    ``newly_live`` maps app ids to the version that just became live: ArgoCD reported the app synced
    at a revision holding it (gitops.ingest, in the transaction that records it). The live version
    only moves forward, so a version starts at most one run, and only once its objects are on the
    cluster; a deploy that changed no file starts none. Not an ArgoCD PostSync hook: a hook is part
    of the sync operation, which waits for it (a long job holds back the next deploy; Argo CD's v1.3
    to 1.4 upgrade notes: long-running jobs are not meant to be sync hooks) and fails with it (and
    Shipyard's Applications retry a failed sync), and every manual sync runs it again (Argo CD,
    "Resource Hooks", "Sync Phases and Waves"). Each run is named after the deploy that caused it.
    """
    if not newly_live:
        return []
    rows = session.execute(
        select(Application, Version).join(Version, Version.application_id == Application.id)
        .where(Application.id.in_(newly_live), Application.kind == "job", Application.deleted.is_(False),
               Version.number.in_(set(newly_live.values())))).all()
    runs = []
    for app, version in rows:
        spec = version.spec or {}
        if version.number == newly_live[app.id] and spec.get("trigger_on_deploy") is True:
            runs.append(_queue_run(session, app, cluster, spec, {},
                                   f"{version.author} (deploy of v{version.number})"[:255]))
    return runs


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


def update_runs_from_workflows(session: Session, cluster: Cluster, workflows: dict[tuple[str, str], dict],
                               now: dt.datetime) -> None:
    """Each reported Workflow or Job (by namespace and name) into the runs it started."""
    runs = session.execute(
        select(JobRun, Workspace.id, Workspace.name, Application.name)
        .join(Application, JobRun.application_id == Application.id).join(Workspace)
        .where(Workspace.cluster_id == cluster.id, JobRun.workflow.in_({name for _, name in workflows}))).all()
    finished = []
    for run, workspace_id, namespace, app in runs:
        state = workflows.get((namespace, run.workflow))
        if state is not None and _follow(run, state, now):
            finished.append(webhook_events.RunFacts(run, workspace_id, namespace, app))
    webhook_events.runs_finished(session, cluster, finished, now)


def _follow(run: JobRun, state: dict, now: dt.datetime) -> bool:
    """A run takes the state of its Workflow or Job (agent.summaries: phase and message); whether it
    just succeeded or failed."""
    new = _WORKFLOW_PHASES.get(str(state.get("phase")), run.state)
    finished = new != run.state and new in ("succeeded", "failed")
    if new != run.state or state.get("message") != run.message:
        run.state, run.message = new, state.get("message")
        if new in ("succeeded", "failed") and run.finished_at is None:
            run.finished_at = now
    return finished


__all__ = [
    "USER_COMMANDS", "RUN_STATES", "RUN_KINDS",
    "enqueue_command", "get_command", "claimable_clusters", "claim_commands", "record_result", "command_json",
    "trigger_run", "runs_on_deploy", "list_runs", "run_json", "update_runs_from_workflows",
]
