"""The pages people keep open: the overview, the apps table, an app's page, a version's spec, a diff.

Each view reads the scope's fingerprint before its data (webapp.pages.live), so a change
that lands while the page is being rendered makes the open page fetch itself again rather
than miss it.
"""

from __future__ import annotations

from flask import current_app, render_template, request

from contract.errors import InvalidRequest
from gitops import commands, dashboard, reads, status
from gitops.clusters import profile_of
from gitops.models import Application
from webapp.auth import AUTHENTICATED, current_principal, requires
from webapp.pages.actions import allowed_actions
from webapp.pages.blueprint import bp
from webapp.pages.live import scope_fingerprint, ticket
from webapp.plane import context


def _settings() -> status.StatusSettings:
    return status.StatusSettings.from_config(current_app.config)


def _live(scope: str) -> dict:
    """What a live page carries: its ticket, the fingerprint it shows, how often to ask."""
    principal = current_principal()
    return {"ticket": ticket(principal.user_id, scope), "fingerprint": scope_fingerprint(scope),
            "poll": current_app.config["DASHBOARD_POLL_SECONDS"]}


def _int_argument(name: str, default: int, low: int = 1, high: int = 1_000_000) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}, not {raw[:40]!r}")
    return int(raw)


def _choice_argument(name: str, choices) -> str | None:
    raw = request.args.get(name) or None
    if raw is not None and raw not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}, not {raw[:40]!r}")
    return raw


@bp.get("/")
@requires(AUTHENTICATED)  # shows only what the caller may read
def overview():
    ctx = context()
    live = _live(f"tenant:{ctx.principal.tenant_id}")
    data = dashboard.overview(ctx, _settings())
    return render_template("overview.html", overview=data, live=live, principal=ctx.principal,
                           may_add_cluster=ctx.principal.can_anywhere("cluster.create"))


@bp.get("/apps")
@requires(AUTHENTICATED)  # lists only what the caller may read; someone with no role yet sees an empty page
def apps():
    ctx = context()
    live = _live(f"tenant:{ctx.principal.tenant_id}")
    filters = {
        "cluster": (request.args.get("cluster") or "").strip() or None,
        "workspace": (request.args.get("workspace") or "").strip() or None,
        "health": _choice_argument("health", dashboard.HEALTH_FILTERS),
        "text": (request.args.get("q") or "").strip()[:63] or None,
    }
    per_page = _int_argument("per_page", 50, 1, max(dashboard.PAGE_SIZES))
    page = dashboard.apps_page(ctx, _settings(), page=_int_argument("page", 1), per_page=per_page, **filters)
    return render_template("apps.html", page=page, filters=filters, choices=dashboard.filter_choices(ctx),
                           health_filters=dashboard.HEALTH_FILTERS, page_sizes=dashboard.PAGE_SIZES,
                           live=live, principal=ctx.principal)


def _origin_text(origin: dict | None) -> str | None:
    if not origin:
        return None
    if "rollback_of" in origin:
        return f"rollback to version {origin['rollback_of']}"
    if "promoted_from" in origin:
        text = f"promoted from {origin['promoted_from']} version {origin.get('version')}"
        if origin.get("overrides"):
            text += " with overrides"
        return text
    return None


@bp.get("/apps/<cluster>/<workspace>/<app>")
@requires("app.read")
def app_page(cluster: str, workspace: str, app: str):
    ctx = context()
    row = reads.get_app(ctx, cluster, workspace, app)
    live = _live(f"app:{row.id}")
    versions = reads.list_versions(ctx, row, limit=_int_argument("versions", 50, 1, 500))
    repo = ctx.repos.open(row.workspace.cluster)
    state = status.app_status(ctx.session, repo, row, _settings(), versions)
    runs = commands.list_runs(ctx.session, row, limit=20) if row.kind == "job" else []
    events = dashboard.app_events(ctx.session, row, state["pods"], [r.workflow for r, _ in runs if r.workflow])
    return render_template(
        "app.html", app=row, cluster=cluster, workspace=workspace, state=state, versions=versions,
        statuses={v["number"]: v for v in state["versions"]}, origin_text=_origin_text, runs=runs, events=events,
        workload=dashboard.app_workload(ctx.session, row),
        word=dashboard.health_word(state["health"], state["sync"], state["operation"], state["message"],
                                   stale=state["connectivity"] in ("stale", "offline") and state["known"],
                                   reasons=state["reasons"]),
        sync=dashboard.sync_word(state["sync"], state["operation"]),
        connectivity=dashboard.connectivity_word(status.reachability(row.workspace.cluster.last_seen_at, _settings())),
        browse_url=profile_of(row.workspace.cluster).browse_url, actions=allowed_actions(ctx, row), live=live,
        principal=ctx.principal)


@bp.get("/apps/<cluster>/<workspace>/<app>/versions/<int:number>")
@requires("app.read")
def version_page(cluster: str, workspace: str, app: str, number: int):
    ctx = context()
    row = reads.get_app(ctx, cluster, workspace, app)
    version = reads.get_version(ctx, row, number)
    spec = reads.spec_text(version)
    return render_template("version.html", app=row, cluster=cluster, workspace=workspace, version=version,
                           spec=spec, origin=_origin_text(version.origin),
                           browse_url=profile_of(row.workspace.cluster).browse_url, principal=ctx.principal)


@bp.get("/apps/<cluster>/<workspace>/<app>/diff")
@requires("app.read")
def diff_page(cluster: str, workspace: str, app: str):
    ctx = context()
    row: Application = reads.get_app(ctx, cluster, workspace, app)
    newest = row.version_counter or 1
    older = _int_argument("from", max(1, newest - 1), 1, 2**31 - 1)
    newer = _int_argument("to", newest, 1, 2**31 - 1)
    diff = reads.version_diff(ctx, row, older, newer)
    numbers = [v.number for v in reads.list_versions(ctx, row, limit=500)]
    return render_template("diff.html", app=row, cluster=cluster, workspace=workspace, diff=diff,
                           numbers=numbers, principal=ctx.principal)


__all__ = ["overview", "apps", "app_page", "version_page", "diff_page"]
