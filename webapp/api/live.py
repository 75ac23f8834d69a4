"""What runs on the clusters: cluster and app status, commands to the agents, job runs."""

from __future__ import annotations

import re

from flask import current_app

from contract.errors import InvalidRequest

from gitops import clusters, commands, dashboard, reads, status, trace
from gitops.models import Command
from webapp.api.blueprint import bp
from webapp.api.requests import app_row, field, json_body
from webapp.api.shapes import iso
from webapp.auth import requires
from webapp.plane import context, db_session, plane
from webapp.query_parameters import argument


def _status_settings() -> status.StatusSettings:
    return status.StatusSettings.from_config(current_app.config)


@bp.get("/clusters/<cluster>/status")
@requires("cluster.read")
def cluster_status(cluster: str):
    """The cluster's agent: connectivity, what it last said, counts of what it follows"""
    ctx = context()
    return status.cluster_status(ctx.session, clusters.get_cluster(ctx, cluster), _status_settings())


@bp.get("/apps/<cluster>/<workspace>/<app>/status")
@requires("app.read")
def app_status(cluster: str, workspace: str, app: str):
    """Sync, health and the live version, each recent version's status, the pods' reasons"""
    row = app_row(cluster, workspace, app)
    versions = reads.list_versions(context(), row, limit=argument("versions"))
    return status.app_status(db_session(), context().repos.open(row.workspace.cluster), row, _status_settings(),
                             versions)


MAX_APPS_PER_STATUS = 100
_APP_NAME = re.compile(r"^(?P<cluster>[^:/]+):(?P<workspace>[^:/]+)/(?P<app>[^:/]+)$")


@bp.post("/apps/status")
@requires("app.read")
def apps_status():
    """The status of several apps in one answer, each as GET .../status gives it: what a pipeline's wait asks"""
    data = json_body()
    names = field(data, "apps", list)
    versions = field(data, "versions", int, required=False, default=10)
    if not 1 <= len(names) <= MAX_APPS_PER_STATUS:
        raise InvalidRequest(f'"apps" names from 1 to {MAX_APPS_PER_STATUS} apps; ask again for more')
    if not 1 <= versions <= 100:
        raise InvalidRequest('"versions" must be a whole number from 1 to 100')
    wanted = []
    for name in names:
        match = _APP_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise InvalidRequest(f'"apps" holds {str(name)[:100]!r}: name each app as <cluster>:<workspace>/<app>')
        wanted.append((match["cluster"], match["workspace"], match["app"]))
    ctx = context()
    return {"apps": status.apps_status(ctx.session, ctx.repos, reads.get_apps(ctx, wanted), _status_settings(),
                                       versions)}


@bp.get("/apps/<cluster>/<workspace>/<app>/status/history")
@requires("app.read")
def app_status_history(cluster: str, workspace: str, app: str):
    """Changes of the app's sync, health, revision or message, newest first"""
    row = app_row(cluster, workspace, app)
    events = status.status_history(db_session(), row, limit=argument("limit"), before=argument("before"))
    return {"events": [{"id": e.id, "at": iso(e.at), "sync": e.sync, "health": e.health, "revision": e.revision,
                        "message": e.message} for e in events]}


@bp.get("/apps/<cluster>/<workspace>/<app>/trace")
@requires("app.read")
def app_trace(cluster: str, workspace: str, app: str):
    """A version's way from its spec commit to Healthy: each step's time and how long after the one before"""
    number = argument("version")
    ctx = context()
    row = app_row(cluster, workspace, app)
    version = reads.get_version(ctx, row, number if number is not None else row.current_version or row.version_counter)
    return trace.version_trace(ctx.session, ctx.repos.open(row.workspace.cluster), row, version)


@bp.get("/apps/<cluster>/<workspace>/<app>/events")
@requires("app.read")
def app_events(cluster: str, workspace: str, app: str):
    """Kubernetes Events of the app's objects (its workload, ReplicaSets, pods, a job's runs), newest first"""
    ctx = context()
    row = app_row(cluster, workspace, app)
    runs = commands.list_runs(ctx.session, row, limit=20) if row.kind == "job" else []
    return {"events": dashboard.app_events(ctx.session, row, status.app_pods(ctx.session, row),
                                           [run.workflow for run, _ in runs if run.workflow], limit=argument("limit"))}


def _ring(cluster_id: int) -> None:
    plane().bell.ring(cluster_id)  # a long-poll of this cluster's agent in this process takes it now


@bp.post("/apps/<cluster>/<workspace>/<app>/commands")
@requires("app.read")
def create_command(cluster: str, workspace: str, app: str):
    """Send the app's agent a command: refresh, restart (app.deploy) or logs (app.read)"""
    data = json_body()
    ctx = context()
    row = app_row(cluster, workspace, app)
    command = commands.enqueue_command(ctx, row, field(data, "type", str),
                                       field(data, "params", dict, required=False, default={}))
    ctx.session.commit()
    _ring(command.cluster_id)
    return commands.command_json(command), 201


@bp.get("/commands/<int:command_id>")
@requires("app.read")
def get_command(command_id: int):
    """A command and, once the agent answered, its result"""
    return commands.command_json(commands.get_command(context(), command_id))


@bp.post("/apps/<cluster>/<workspace>/<app>/runs")
@requires("app.deploy")
def create_run(cluster: str, workspace: str, app: str):
    """Run a job now, with params"""
    data = json_body()
    ctx = context()
    row = app_row(cluster, workspace, app, "app.deploy")
    run = commands.trigger_run(ctx, row, field(data, "params", dict, required=False, default={}))
    ctx.session.commit()
    _ring(row.workspace.cluster_id)
    return commands.run_json(run, ctx.session.get(Command, run.command_id)), 201


@bp.get("/apps/<cluster>/<workspace>/<app>/runs")
@requires("app.read")
def list_runs(cluster: str, workspace: str, app: str):
    """A job's runs with their state, newest first"""
    row = app_row(cluster, workspace, app)
    return {"runs": [commands.run_json(run, command) for run, command in
                     commands.list_runs(db_session(), row, limit=argument("limit"))]}
