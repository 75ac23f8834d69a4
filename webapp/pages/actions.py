"""What people do from the dashboard: deploy, roll back, promote, delete, restart, refresh, run a job, read logs.

Every action calls the service the JSON API calls (gitops.deploy, gitops.commands) with the
caller's principal, under the same ``@requires`` declaration, so it is authorized and audited
exactly like the API; versions made here say ``source: dashboard``. Forms post back to the page
they came from: a refusal (a spec problem at its line, a name that does not exist, a role that
does not allow it) is shown there with everything typed kept, never as an error page. Destructive
actions are confirmed: deleting an app asks for its name.

Logs are read by the page's script through the API (a logs command, then its result), since a
logs command waits for the cluster's agent; ``follow`` asks again for what came after the last
line seen.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from contract.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, SpecError
from gitops import commands, deploy, reads
from gitops.models import Application, Cluster, Version, Workspace
from gitops.status import app_pods
from gitops.workspaces import workspace_scope
from renderer.yamlio import load_documents
from webapp.api.apps import check_spec_limits
from webapp.auth import requires
from webapp.pages.blueprint import bp
from webapp.plane import context, plane

REFUSALS = (SpecError, InvalidRequest, Conflict, NotFound, PermissionDenied, RequestEntityTooLarge)


def _message(exc: Exception) -> str:
    if isinstance(exc, RequestEntityTooLarge):
        return exc.description or "too large"
    problems = getattr(exc, "problems", None)
    if problems:
        return f"{len(problems)} problem(s): fix them and try again"
    return str(exc)


def _problems(exc: Exception) -> list[dict]:
    return [p.as_dict() for p in getattr(exc, "problems", None) or []]


def _app_url(app: Application) -> str:
    return url_for("pages.app_page", cluster=app.workspace.cluster.name, workspace=app.workspace.name, app=app.name)


def _version_flash(version: Version, what: str) -> None:
    if version.state == "failed":
        flash(f"{what}: version {version.number} failed: {version.error}")
    elif version.unchanged:
        flash(f"{what}: unchanged: version {version.number} already deploys this spec; no new version was made.")
    elif version.changed is False:
        flash(f"{what}: version {version.number} changed nothing: the rendered manifests were already there.")
    else:
        flash(f"{what}: version {version.number} is {version.state}; its status follows below.")


# --- deploy ---------------------------------------------------------------------------------------


@bp.route("/deploy", methods=["GET", "POST"])
@requires("app.deploy")
def deploy_page():
    ctx = context()
    text, filename = "", "spec.yaml"
    if request.method == "GET" and request.args.get("from"):
        cluster, _, rest = request.args["from"].partition(":")
        workspace, _, name = rest.partition("/")
        app = reads.get_app(ctx, cluster, workspace, name)
        latest = reads.list_versions(ctx, app, limit=20)
        spec_of = next((v for v in latest if v.spec is not None), None)
        text, filename = (reads.spec_text(spec_of) if spec_of else ""), f"{name}.yaml"
    changes, problems, error, status = None, [], None, 200
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is not None and upload.filename:
            filename = upload.filename[-200:]
            raw = upload.read(current_app.config["MAX_CONTENT_LENGTH"] + 1)
            text = raw.decode("utf-8", errors="replace")
        else:
            text = request.form.get("spec", "")
            filename = (request.form.get("filename") or filename)[-200:]
        try:
            if not text.strip():
                raise InvalidRequest("paste a spec or choose a file first")
            check_spec_limits(text, filename)
            if request.form.get("intent") == "deploy":
                versions = deploy.deploy(ctx, text, filename=filename, source="dashboard")
                for version in versions:
                    _version_flash(version, f"{version.application.name}")
                return redirect(_app_url(versions[0].application) if len(versions) == 1 else url_for("pages.apps"))
            changes = deploy.dry_run(ctx, text, filename=filename)
        except REFUSALS as exc:
            error, problems, status = _message(exc), _problems(exc), 422 if isinstance(exc, SpecError) else 400
    return render_template("deploy.html", text=text, filename=filename, changes=changes, problems=problems,
                           error=error, principal=ctx.principal), status


# --- on one app -----------------------------------------------------------------------------------


def _app(permission: str) -> tuple:
    ctx = context()
    args = request.view_args
    return ctx, reads.get_app(ctx, args["cluster"], args["workspace"], args["app"], permission)


@bp.post("/apps/<cluster>/<workspace>/<app>/rollback")
@requires("app.deploy")
def rollback_action(cluster: str, workspace: str, app: str):
    ctx, row = _app("app.deploy")
    number = request.form.get("version", "")
    try:
        version = deploy.rollback(ctx, row, int(number) if number.isdigit() else number, source="dashboard")
        _version_flash(version, f"Rolled back to version {number}")
    except REFUSALS as exc:
        flash(f"Not rolled back: {_message(exc)}")
    return redirect(_app_url(row))


@bp.route("/apps/<cluster>/<workspace>/<app>/promote", methods=["GET", "POST"])
@requires("app.deploy")
def promote_page(cluster: str, workspace: str, app: str):
    ctx, row = _app("app.read")
    numbers = [v.number for v in reads.list_versions(ctx, row, limit=100) if v.spec is not None]
    form = {"target": request.form.get("target", ""), "version": request.form.get("version", ""),
            "name": request.form.get("name", ""), "overrides": request.form.get("overrides", ""),
            "keep_overrides": request.method == "GET" or bool(request.form.get("keep_overrides"))}
    error, problems, status = None, [], 200
    if request.method == "POST":
        try:
            overrides = _overrides(form["overrides"])
            number = int(form["version"]) if form["version"].isdigit() else None
            version = deploy.promote(ctx, row, target=form["target"].strip(), number=number,
                                     name=form["name"].strip() or None, overrides=overrides,
                                     keep_overrides=form["keep_overrides"], source="dashboard")
            _version_flash(version, f"Promoted to {form['target'].strip()}")
            return redirect(_app_url(version.application))
        except REFUSALS as exc:
            error, problems, status = _message(exc), _problems(exc), 422 if isinstance(exc, SpecError) else 400
    targets = _deploy_targets(ctx, row)
    return render_template("promote.html", app=row, cluster=cluster, workspace=workspace, numbers=numbers,
                           targets=targets, form=form, error=error, problems=problems,
                           principal=ctx.principal), status


def _overrides(text: str) -> dict | None:
    """The overrides a promotion applies, as YAML (a mapping of spec fields), with line and column
    for anything wrong."""
    if not text.strip():
        return None
    documents = load_documents(text, "overrides")
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        raise InvalidRequest("overrides must be one YAML mapping of spec fields, e.g. replicas: 3")
    return documents[0].data


def _deploy_targets(ctx, row: Application) -> list[str]:
    """The workspaces (``cluster:workspace``) the caller may deploy into, for the promote form."""
    rows = ctx.session.scalars(select(Workspace).join(Cluster, Workspace.cluster_id == Cluster.id)
                               .where(Cluster.tenant_id == ctx.principal.tenant_id)
                               .order_by(Cluster.name, Workspace.name)).all()
    return [f"{ws.cluster.name}:{ws.name}" for ws in rows
            if ctx.principal.can("app.deploy", workspace_scope(ws)) and ws.id != row.workspace_id] + \
        [f"{row.workspace.cluster.name}:{row.workspace.name}"]


@bp.route("/apps/<cluster>/<workspace>/<app>/delete", methods=["GET", "POST"])
@requires("app.delete")
def delete_page(cluster: str, workspace: str, app: str):
    ctx, row = _app("app.delete")
    error = None
    if request.method == "POST":
        if request.form.get("confirm", "").strip() != row.name:
            error = f'type the app\'s name, "{row.name}", to delete it'
        else:
            try:
                version = deploy.delete_app(ctx, row, source="dashboard")
                _version_flash(version, f"Deleted {row.name}")
                return redirect(_app_url(row))
            except REFUSALS as exc:
                error = _message(exc)
    return render_template("delete.html", app=row, cluster=cluster, workspace=workspace, error=error,
                           principal=ctx.principal), 400 if error else 200


@bp.post("/apps/<cluster>/<workspace>/<app>/command")
@requires("app.deploy")
def command_action(cluster: str, workspace: str, app: str):
    """Restart (a service's pods, without a new version) or refresh (ArgoCD compares again now)."""
    ctx, row = _app("app.read")
    kind = request.form.get("type", "")
    try:
        if kind not in ("restart", "refresh"):
            raise InvalidRequest("the dashboard sends restart or refresh here")
        params = {"hard": True} if kind == "refresh" and request.form.get("hard") else {}
        command = commands.enqueue_command(ctx, row, kind, params)
        ctx.session.commit()
        plane().bell.ring(command.cluster_id)
        flash(f"{kind.capitalize()} sent to the cluster's agent (command {command.id}).")
    except REFUSALS as exc:
        flash(f"Not sent: {_message(exc)}")
    return redirect(_app_url(row))


@bp.route("/apps/<cluster>/<workspace>/<app>/run", methods=["GET", "POST"])
@requires("app.deploy")
def run_page(cluster: str, workspace: str, app: str):
    ctx, row = _app("app.deploy")
    if row.kind != "job":
        raise NotFound(f'app "{cluster}:{workspace}/{app}" is a service; only jobs run')
    latest = next((v for v in reads.list_versions(ctx, row, limit=20) if v.spec is not None), None)
    declared = [p for p in ((latest.spec or {}).get("params") or []) if isinstance(p, dict)] if latest else []
    values = {p["name"]: request.form.get(f"param.{p['name']}", "") for p in declared if "name" in p}
    error = None
    if request.method == "POST":
        given = {name: value for name, value in values.items() if value != ""}  # blank: the param's default
        try:
            run = commands.trigger_run(ctx, row, given)
            ctx.session.commit()
            plane().bell.ring(row.workspace.cluster_id)
            flash(f"Run {run.id} queued; it follows below.")
            return redirect(_app_url(row) + "#runs-title")
        except REFUSALS as exc:
            error = _message(exc)
    return render_template("run.html", app=row, cluster=cluster, workspace=workspace, declared=declared,
                           values=values, error=error, principal=ctx.principal), 400 if error else 200


@bp.get("/apps/<cluster>/<workspace>/<app>/logs")
@requires("app.read")
def logs_page(cluster: str, workspace: str, app: str):
    ctx, row = _app("app.read")
    pods = app_pods(ctx.session, row)
    run = request.args.get("run")
    of_run = [p["name"] for p in pods if run and p["name"].startswith(f"{run}-")]
    chosen = request.args.get("pod") or (of_run[0] if of_run else pods[0]["name"] if pods else None)
    return render_template("logs.html", app=row, cluster=cluster, workspace=workspace, pods=pods, chosen=chosen,
                           run=run, run_has_pods=bool(of_run), principal=ctx.principal)


def allowed_actions(ctx, row: Application) -> dict[str, bool]:
    """Which controls the app page shows: exactly what the services would allow."""
    scope = workspace_scope(row.workspace)
    deployable = ctx.principal.can("app.deploy", scope) and not row.deleted
    return {"deploy": deployable, "delete": ctx.principal.can("app.delete", scope) and not row.deleted,
            "restart": deployable and row.kind == "service", "refresh": deployable,
            "run": deployable and row.kind == "job", "logs": True}


__all__ = ["allowed_actions", "REFUSALS"]
