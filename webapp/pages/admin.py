"""The dashboard's admin pages: users, role bindings, API tokens, clusters and workspaces, the audit log.

Every page reads and every form changes through the gitops service the JSON API calls
(webapp.api.accounts, webapp.api.clusters), with the caller's principal: authorized and
audited exactly like the API. ``SECTIONS`` is the admin index, one entry per section with
the permission it needs somewhere; a new section (webhook subscriptions, spec repositories)
is a new entry and its views.

=========================================================  ==========================================
route                                                      what
=========================================================  ==========================================
``/admin``                                                 the sections the caller may use; the count of
                                                           status webhooks they read that are paused
``/admin/users``                                           users with their roles; add a local user
``/admin/bindings``, ``…/<id>/delete``                     role bindings; add one; remove one (confirmed)
``/admin/tokens``, ``…/<id>/revoke``                       API tokens; make one (shown once); revoke
``/admin/clusters``, ``/admin/register-cluster``           clusters; register one (tokens and install
                                                           steps shown once)
``/admin/clusters/<c>``, ``…/tokens/<read|agent>``         a cluster's status; a new token, shown once
``/admin/workspaces``, ``/admin/clusters/<c>/workspaces``  workspaces by cluster; add one
``…/workspaces/<w>``, ``…/workspaces/<w>/delete``          change its environment; remove it (confirmed)
``/admin/audit``                                           the audit log, filtered, in keyset pages
=========================================================  ==========================================

A form posts back and is redirected to a page (Post/Redirect/Get). A refusal (not allowed
there, not valid, a conflict, profile problems with their line and column) is shown on the
form's page with what was typed, never a password; someone who may not open a page at all
gets the 403 page. A secret (an API token, a cluster's read or agent token) is shown once,
on the page answering the post that made it, sent with ``Cache-Control: no-store``, and is
kept nowhere else: not in the session, a flash message or a log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app, flash, g, make_response, redirect, render_template, request, url_for
from sqlalchemy import select

from contract.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProfileError,
    RenderError,
    ShipyardError,
)
from gitops import accounts, audit, clusters, dashboard, status, tokens, webhooks, workspaces
from gitops.models import ApiToken, Cluster, RoleBinding, Workspace, utcnow
from gitops.policy import ROLES, Principal, Scope, may_grant
from renderer.install_steps import AGENT_TOKEN, READ_TOKEN, InstallSteps, agent_secret_command
from renderer.install_steps import install_steps as steps_for
from webapp.api.requests import scope_from, visible_cluster
from webapp.auth import AUTHENTICATED, requires
from webapp.errors import HTTP_STATUS
from webapp.pages.blueprint import bp
from webapp.plane import context, plane
from webapp.query_parameters import INT_MAX

AUDIT_PAGE = 50


# --- the index ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    title: str
    endpoint: str
    holds: str
    permission: str  # held somewhere, or AUTHENTICATED


SECTIONS = (
    Section("Users", "pages.admin_users", "who may log in, their roles; add a local user", "user.manage"),
    Section("Role bindings", "pages.admin_bindings", "who holds which role where; grant and take back roles",
            "binding.read"),
    Section("API tokens", "pages.admin_tokens", "tokens for the CLI and CI; make and revoke them", AUTHENTICATED),
    Section("Clusters", "pages.admin_clusters", "register a cluster, its agent's status, its tokens", "cluster.read"),
    Section("Workspaces", "pages.admin_workspaces", "each cluster's workspaces and their environments",
            "workspace.update"),
    Section("Spec repositories", "pages.admin_spec_repos", "git repositories of specs deployed on push: register "
            "one, its webhook, its syncs", "cluster.read"),
    Section("Status webhooks", "pages.admin_webhooks", "state changes sent to chat and other systems: subscribe, "
            "pause, test, the deliveries", "workspace.read"),
    Section("Audit log", "pages.admin_audit", "every change: who made it, when, to what", "audit.read"),
)


def sections_for(principal: Principal) -> list[Section]:
    return [s for s in SECTIONS if s.permission == AUTHENTICATED or principal.can_anywhere(s.permission)]


@bp.app_context_processor
def _admin_nav() -> dict:
    principal = g.get("principal")
    return {"admin_sections": sections_for(principal) if principal is not None else []}


@bp.get("/admin")
@requires(AUTHENTICATED)  # lists only the sections the caller may use
def admin_index():
    ctx = context()
    paused = [sub for sub in webhooks.list_subscriptions(ctx) if sub.state == "paused"]  # those the caller reads
    return _page("admin_index.html", sections=sections_for(ctx.principal), paused_webhooks=len(paused))


# --- what every page and form shares ----------------------------------------------------------------

_REFUSALS = (InvalidRequest, PermissionDenied, NotFound, Conflict, ProfileError, RenderError)


@dataclass(frozen=True)
class Refusal:
    """Why a form's change was refused, as its page shows it."""

    message: str
    problems: tuple[str, ...] = ()
    status: int = 400

    @classmethod
    def of(cls, exc: ShipyardError) -> Refusal:
        problems = tuple(str(p) for p in getattr(exc, "problems", None) or ())
        message = f"{len(problems)} problem(s) in the cluster profile" if problems else str(exc)
        return cls(message, problems, HTTP_STATUS.get(exc.code, 400))


def _page(template: str, refusal: Refusal | None = None, **values):
    return render_template(template, principal=g.principal, refusal=refusal, **values), (
        refusal.status if refusal else 200)


def _shown_once(template: str, **values):
    """The page that shows a new secret: answered once, never kept by a browser or a proxy."""
    response = make_response(render_template(template, principal=g.principal, **values), 201)
    response.headers["Cache-Control"] = "no-store"
    return response


def _fields(*names: str) -> dict[str, str]:
    return {name: request.form.get(name, "").strip() for name in names}


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _not_confirmed(what: str) -> Refusal:
    return Refusal(f"Tick the box to confirm that you want to {what}.")


def _done(ctx, message: str, endpoint: str, *, principals_changed: bool = False, **arguments):
    ctx.session.commit()
    if principals_changed:
        plane().principals.clear()  # cached token principals may hold what just changed
    flash(message)
    return redirect(url_for(endpoint, **arguments))


def _refused(ctx, exc: ShipyardError, show, *args, **values):
    ctx.session.rollback()
    return show(ctx, *args, refusal=Refusal.of(exc), **values)


def _scope_of_fields(form: dict[str, str]) -> Scope:
    """The scope the form names (cluster, workspace; both empty: the tenant), seen as the API sees it."""
    return scope_from({"cluster": form.get("cluster") or None, "workspace": form.get("workspace") or None})


def _where(session, scope: Scope) -> str:
    names = accounts.scope_names(session, scope)
    if names["workspace"]:
        return f"{names['cluster']}:{names['workspace']}"
    return f"cluster {names['cluster']}" if names["cluster"] else "the whole tenant"


# --- users --------------------------------------------------------------------------------------


def _users_page(ctx, refusal: Refusal | None = None, form: dict | None = None):
    users = accounts.list_users(ctx)
    bindings = accounts.list_bindings(ctx)
    roles = {}
    for user in users:
        groups = set(user.groups or ())
        roles[user.id] = [
            (b.role, _where(ctx.session, _binding_scope(b)), None if b.subject_kind == "user" else b.subject)
            for b in bindings
            if (b.subject_kind == "user" and b.subject == user.username)
            or (b.subject_kind == "group" and b.subject in groups)]
    return _page("admin_users.html", refusal, users=users, roles=roles, form=form or {},
                 min_password=accounts.MIN_PASSWORD)


@bp.get("/admin/users")
@requires("user.manage")
def admin_users():
    return _users_page(context())


@bp.post("/admin/users")
@requires("user.manage")
def admin_create_user():
    ctx = context()
    form = _fields("username", "display_name", "email")
    try:
        user = accounts.create_user(ctx, form["username"], request.form.get("password", ""),
                                    form["display_name"] or None, form["email"] or None)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _users_page, form=form)
    return _done(ctx, f'User "{user.username}" added: they log in with the password you gave them. '
                      "Give them a role under Role bindings.", "pages.admin_users", principals_changed=True)


# --- role bindings ------------------------------------------------------------------------------


def _binding_scope(binding: RoleBinding) -> Scope:
    return Scope(binding.tenant_id, binding.cluster_id, binding.workspace_id)


def _bindings_page(ctx, refusal: Refusal | None = None, form: dict | None = None):
    principal = ctx.principal
    rows = [(b, _where(ctx.session, _binding_scope(b)), may_grant(principal, b.role, _binding_scope(b)))
            for b in accounts.list_bindings(ctx)]
    return _page("admin_bindings.html", refusal, rows=rows, roles=list(ROLES), form=form or {},
                 may_grant_any=principal.can_anywhere("binding.manage"))


@bp.get("/admin/bindings")
@requires("binding.read")
def admin_bindings():
    return _bindings_page(context())


@bp.post("/admin/bindings")
@requires("binding.manage")
def admin_create_binding():
    ctx = context()
    form = _fields("role", "subject_kind", "subject", "cluster", "workspace")
    try:
        binding = accounts.create_binding(ctx, form["role"], form["subject_kind"] or "user", form["subject"],
                                          _scope_of_fields(form))
        where = _where(ctx.session, _binding_scope(binding))
    except _REFUSALS as exc:
        return _refused(ctx, exc, _bindings_page, form=form)
    return _done(ctx, f"{binding.subject_kind} {binding.subject} now holds {binding.role} at {where}.",
                 "pages.admin_bindings", principals_changed=True)


def _binding_delete_page(ctx, binding: RoleBinding, refusal: Refusal | None = None):
    return _page("admin_binding_delete.html", refusal, binding=binding,
                 where=_where(ctx.session, _binding_scope(binding)))


@bp.get("/admin/bindings/<int:binding_id>/delete")
@requires("binding.manage")
def admin_binding_delete(binding_id: int):
    ctx = context()
    return _binding_delete_page(ctx, accounts.get_binding(ctx, binding_id))


@bp.post("/admin/bindings/<int:binding_id>/delete")
@requires("binding.manage")
def admin_delete_binding(binding_id: int):
    ctx = context()
    binding = accounts.get_binding(ctx, binding_id)
    if not _confirmed():
        return _binding_delete_page(ctx, binding, _not_confirmed("remove this role binding"))
    what = f"{binding.subject_kind} {binding.subject} no longer holds {binding.role} at " \
           f"{_where(ctx.session, _binding_scope(binding))}."
    try:
        accounts.delete_binding(ctx, binding)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _binding_delete_page, binding)
    return _done(ctx, what, "pages.admin_bindings", principals_changed=True)


# --- API tokens ---------------------------------------------------------------------------------


def _token_state(token: ApiToken, now: dt.datetime) -> dashboard.Word:
    if token.revoked_at is not None:
        return dashboard.Word("Revoked", "quiet")
    if token.expires_at is not None and token.expires_at <= now:
        return dashboard.Word("Expired", "quiet")
    return dashboard.Word("Active", "ok")


def _tokens_page(ctx, refusal: Refusal | None = None, form: dict | None = None):
    now = utcnow()
    rows = [(t, _where(ctx.session, Scope(t.tenant_id, t.cluster_id, t.workspace_id)), _token_state(t, now))
            for t in tokens.list_tokens(ctx)]
    return _page("admin_tokens.html", refusal, rows=rows, roles=list(ROLES), form=form or {},
                 max_days=tokens.MAX_TOKEN_DAYS, all_of_tenant=ctx.principal.is_tenant_admin())


def _days(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 4:
        raise InvalidRequest(f"expires in days must be a whole number from 1 to {tokens.MAX_TOKEN_DAYS}")
    return int(text)


@bp.get("/admin/tokens")
@requires(AUTHENTICATED)  # the caller's own tokens; a tenant-admin's, all of the tenant's (as GET /api/v1/tokens)
def admin_tokens():
    return _tokens_page(context())


@bp.post("/admin/tokens")
@requires(AUTHENTICATED)  # tokens.create_token: only a role the caller holds at the scope, never by a token
def admin_create_token():
    ctx = context()
    form = _fields("name", "role", "cluster", "workspace", "expires_in_days")
    try:
        new = tokens.create_token(ctx, form["name"], form["role"], _scope_of_fields(form),
                                  _days(form["expires_in_days"] or "90"))
        where = _where(ctx.session, Scope(new.token.tenant_id, new.token.cluster_id, new.token.workspace_id))
    except _REFUSALS as exc:
        return _refused(ctx, exc, _tokens_page, form=form)
    ctx.session.commit()
    return _shown_once("admin_token_created.html", token=new.token, secret=new.secret, where=where)


@bp.post("/admin/tokens/<int:token_id>/revoke")
@requires(AUTHENTICATED)  # tokens.get_token: only a token the caller may see
def admin_revoke_token(token_id: int):
    ctx = context()
    token = tokens.get_token(ctx, token_id)
    tokens.revoke_token(ctx, token)
    return _done(ctx, f'Token "{token.name}" revoked: it no longer works.', "pages.admin_tokens",
                 principals_changed=True)


# --- clusters -----------------------------------------------------------------------------------


def _settings() -> status.StatusSettings:
    return status.StatusSettings.from_config(current_app.config)


def _connectivity(cluster: Cluster, settings: status.StatusSettings) -> dashboard.Word:
    return dashboard.connectivity_word(status.reachability(cluster.last_seen_at, settings))


def _served_url(cluster: Cluster) -> str:
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/git/{cluster.tenant.name}/{cluster.name}.git"


def install_steps(cluster: Cluster, read_token: str = READ_TOKEN, agent_token: str = AGENT_TOKEN) -> InstallSteps:
    """The steps that put ``cluster`` under Shipyard (renderer.install_steps), with the address this plane serves."""
    return steps_for(cluster.name, clusters.profile_of(cluster), _served_url(cluster), read_token, agent_token)


@bp.get("/admin/clusters")
@requires("cluster.read")
def admin_clusters():
    ctx = context()
    settings = _settings()
    rows = [(c, _connectivity(c, settings), c.agent_info or {}) for c in clusters.list_clusters(ctx)]
    return _page("admin_clusters.html", rows=rows, may_register=ctx.principal.can_anywhere("cluster.create"))


def _register_page(ctx, refusal: Refusal | None = None, form: dict | None = None):
    return _page("admin_cluster_register.html", refusal, form=form or {})


@bp.get("/admin/register-cluster")
@requires("cluster.create")
def admin_cluster_form():
    return _register_page(context())


@bp.post("/admin/register-cluster")
@requires("cluster.create")
def admin_register_cluster():
    ctx = context()
    # a textarea's lines arrive ending in CRLF (HTML's form encoding); the profile is kept as it was written
    form = {"name": request.form.get("name", "").strip(),
            "profile": request.form.get("profile", "").replace("\r\n", "\n")}
    try:
        new = clusters.create_cluster(ctx, form["name"], form["profile"])
    except _REFUSALS as exc:
        return _refused(ctx, exc, _register_page, form=form)
    ctx.session.commit()
    return _shown_once("admin_cluster_registered.html", cluster=new.cluster, read_token=new.read_token,
                       agent_token=new.agent_token,
                       steps=install_steps(new.cluster, new.read_token, new.agent_token))


def _cluster_page(ctx, row: Cluster, refusal: Refusal | None = None):
    settings = _settings()
    scope = Scope(row.tenant_id, row.id)
    return _page("admin_cluster.html", refusal, cluster=row, state=status.cluster_status(ctx.session, row, settings),
                 connectivity=_connectivity(row, settings), workspaces=workspaces.list_workspaces(ctx, row),
                 steps=install_steps(row), may_update=ctx.principal.can("cluster.update", scope),
                 may_manage_workspaces=ctx.principal.can_anywhere("workspace.update"),
                 grace_minutes=int(settings.token_grace // 60))


@bp.get("/admin/clusters/<cluster>")
@requires("cluster.read")
def admin_cluster(cluster: str):
    ctx = context()
    return _cluster_page(ctx, clusters.get_cluster(ctx, cluster))


@bp.post("/admin/clusters/<cluster>/tokens/<any(read, agent):kind>")
@requires("cluster.update")
def admin_rotate_token(cluster: str, kind: str):
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    if not _confirmed():
        return _cluster_page(ctx, row, _not_confirmed(f"replace the {kind} token"))
    token = clusters.rotate_token(ctx, row, kind)
    ctx.session.commit()
    profile = clusters.profile_of(row)
    steps = install_steps(row, read_token=token) if kind == "read" else None
    return _shown_once("admin_cluster_token.html", cluster=row, kind=kind, token=token, steps=steps,
                       profile=profile, grace_minutes=int(_settings().token_grace // 60),
                       agent_secret=agent_secret_command(profile, token, replace=True)
                       if kind == "agent" and profile.agent and profile.agent.token_ref is None else None)


# --- workspaces ---------------------------------------------------------------------------------


@dataclass
class WorkspaceGroup:
    cluster: Cluster
    workspaces: list[Workspace]
    may_create: bool


def _group(ctx, row: Cluster) -> WorkspaceGroup:
    return WorkspaceGroup(row, workspaces.list_workspaces(ctx, row),
                          ctx.principal.can("workspace.create", Scope(row.tenant_id, row.id)))


def _workspaces_page(ctx, groups: list[WorkspaceGroup], one_cluster: bool, refusal: Refusal | None = None,
                     form: dict | None = None):
    return _page("admin_workspaces.html", refusal, groups=groups, one_cluster=one_cluster, form=form or {},
                 environments=workspaces.ENVIRONMENTS, scope_of=workspaces.workspace_scope)


@bp.get("/admin/workspaces")
@requires("workspace.update")
def admin_workspaces():
    ctx = context()
    rows = ctx.session.scalars(select(Cluster).where(Cluster.tenant_id == ctx.principal.tenant_id)
                               .order_by(Cluster.name))
    groups = [_group(ctx, row) for row in rows if clusters.sees_cluster(ctx.principal, row)]
    return _workspaces_page(ctx, [g for g in groups if g.workspaces or g.may_create], one_cluster=False)


def _cluster_workspaces_page(ctx, cluster: str, refusal: Refusal | None = None, form: dict | None = None):
    return _workspaces_page(ctx, [_group(ctx, visible_cluster(ctx.session, cluster))], True, refusal, form)


@bp.get("/admin/clusters/<cluster>/workspaces")
@requires("workspace.update")
def admin_cluster_workspaces(cluster: str):
    return _cluster_workspaces_page(context(), cluster)


@bp.post("/admin/clusters/<cluster>/workspaces")
@requires("workspace.create")
def admin_create_workspace(cluster: str):
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "workspace.create")
    form = _fields("name", "environment")
    try:
        workspace = workspaces.create_workspace(ctx, row, form)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _cluster_workspaces_page, cluster, form=form)
    return _done(ctx, f'Workspace "{cluster}:{workspace.name}" ({workspace.environment}) added; its namespace '
                      "is in the cluster repository.", "pages.admin_cluster_workspaces", cluster=cluster)


def _workspace_page(ctx, row: Workspace, refusal: Refusal | None = None, form: dict | None = None):
    return _page("admin_workspace.html", refusal, workspace=row, form=form or {},
                 environments=workspaces.ENVIRONMENTS,
                 may_delete=ctx.principal.can("workspace.delete", workspaces.workspace_scope(row)))


@bp.get("/admin/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.update")
def admin_workspace(cluster: str, workspace: str):
    ctx = context()
    return _workspace_page(ctx, workspaces.find_workspace(ctx, cluster, workspace, "workspace.update"))


@bp.post("/admin/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.update")
def admin_update_workspace(cluster: str, workspace: str):
    ctx = context()
    row = workspaces.find_workspace(ctx, cluster, workspace, "workspace.update")
    form = _fields("environment")
    try:
        workspaces.update_workspace(ctx, row, form)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _workspace_page, row, form=form)
    return _done(ctx, f'Workspace "{cluster}:{workspace}" is now {row.environment}.',
                 "pages.admin_cluster_workspaces", cluster=cluster)


def _workspace_delete_page(ctx, row: Workspace, refusal: Refusal | None = None):
    return _page("admin_workspace_delete.html", refusal, workspace=row)


@bp.get("/admin/clusters/<cluster>/workspaces/<workspace>/delete")
@requires("workspace.delete")
def admin_workspace_delete(cluster: str, workspace: str):
    ctx = context()
    return _workspace_delete_page(ctx, workspaces.find_workspace(ctx, cluster, workspace, "workspace.delete"))


@bp.post("/admin/clusters/<cluster>/workspaces/<workspace>/delete")
@requires("workspace.delete")
def admin_delete_workspace(cluster: str, workspace: str):
    ctx = context()
    row = workspaces.find_workspace(ctx, cluster, workspace, "workspace.delete")
    if not _confirmed():
        return _workspace_delete_page(ctx, row, _not_confirmed("remove this workspace"))
    try:
        workspaces.delete_workspace(ctx, row)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _workspace_delete_page, row)
    return _done(ctx, f'Workspace "{cluster}:{workspace}" removed; ArgoCD prunes its namespace.',
                 "pages.admin_cluster_workspaces", principals_changed=True, cluster=cluster)


# --- the audit log ------------------------------------------------------------------------------


def _text_argument(name: str, limit: int) -> str | None:
    value = (request.args.get(name) or "").strip()
    if len(value) > limit:
        raise InvalidRequest(f"{name} is at most {limit} characters")
    return value or None


def _date_argument(name: str) -> dt.date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date like 2025-01-31, not {raw[:40]!r}") from None


def _audit_filters() -> dict:
    """The audit page's filters from its query string; InvalidRequest says which one is wrong."""
    before = (request.args.get("before") or "").strip()
    if before and not (before.isascii() and before.isdigit() and len(before) <= 10 and 1 <= int(before) <= INT_MAX):
        raise InvalidRequest(f"before must be an event number from 1 to {INT_MAX}")
    first, last = _date_argument("from"), _date_argument("to")
    if first and last and first > last:
        raise InvalidRequest("the range starts after it ends: from must be on or before to")
    midnight = dt.time(tzinfo=dt.timezone.utc)
    return {"actor": _text_argument("actor", 255), "action": _text_argument("action", 64),
            "target": _text_argument("target", 512), "before_id": int(before) if before else None,
            "since": dt.datetime.combine(first, midnight) if first else None,
            "until": dt.datetime.combine(last + dt.timedelta(days=1), midnight) if last else None}


@bp.get("/admin/audit")
@requires("audit.read")
def admin_audit():
    ctx = context()
    shown = {name: (request.args.get(name) or "").strip()[:512] for name in ("actor", "action", "target", "from", "to")}
    kept = {name: value for name, value in shown.items() if value}  # what the pager's links carry along
    try:
        filters = _audit_filters()
    except InvalidRequest as exc:
        return _page("admin_audit.html", Refusal.of(exc), events=[], older=None, shown=shown, kept=kept, paged=False)
    events = audit.list_events(ctx, limit=AUDIT_PAGE + 1, **filters)
    older = events[AUDIT_PAGE - 1].id if len(events) > AUDIT_PAGE else None
    return _page("admin_audit.html", events=events[:AUDIT_PAGE], older=older, shown=shown, kept=kept,
                 paged=filters["before_id"] is not None)


__all__ = ["SECTIONS", "Section", "sections_for", "install_steps"]
