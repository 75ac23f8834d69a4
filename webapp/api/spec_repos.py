"""Spec repositories: register one, read it and its syncs, change its settings, sync it now, delete it.

====================================  =====================================================
route                                 what
====================================  =====================================================
POST /spec-repos                      register (gitops.spec_repos.register); the answer holds
                                      the webhook secret and URL, the secret this once
GET /spec-repos, /spec-repos/<repo>   the repositories; one with its role bindings and last syncs
PATCH /spec-repos/<repo>              branch, globs, prune, credentials, commit_status
                                      (gitops.spec_repo_settings)
DELETE /spec-repos/<repo>             forget it, its role bindings and its mirror; its apps stay
POST /spec-repos/<repo>/sync          sync it now ({"whole": true}: the tip as a whole)
GET /spec-repos/<repo>/syncs          its syncs, newest first, each problem with file, line, column,
                                      and the commit status it posted (gitops.commit_status)
====================================  =====================================================

Registering, changing, syncing and deleting need ``cluster.update`` somewhere (a tenant-admin or
a cluster-admin), reading ``cluster.read``; the services check it again. Credentials and the
webhook secret are sealed at rest and never answered, but for the secret in the answer that
registers the repository. A repository deploys as itself, where its role bindings (POST
/role-bindings with ``subject_kind`` "repo") let it.
"""

from __future__ import annotations

from flask import current_app, request

from contract.errors import InvalidRequest
from gitops import commit_status, egress, spec_repo_settings, spec_repos
from gitops.models import SpecRepo, SpecSync, Tenant
from gitops.spec_changes import DEFAULT_GLOBS
from webapp.api.blueprint import bp
from webapp.api.requests import field, json_body
from webapp.api.shapes import iso
from webapp.auth import requires
from webapp.plane import context
from webapp.query_parameters import argument

RECENT_SYNCS = 5  # how many of its last syncs a repository's own answer shows


def spec_repo_json(repo: SpecRepo, with_syncs: bool = False) -> dict:
    """A spec repository: never its credentials (``auth`` names their kind) nor its webhook secret.
    ``commit_status`` is the setting, ``commit_status_provider`` where it sends statuses now (null: nowhere),
    ``webhook_provider`` the provider whose webhook delivery was last verified."""
    ctx = context()
    out = {
        "name": repo.name,
        "url": egress.redact_url(repo.url),
        "branch": repo.branch,
        "globs": repo.globs,
        "prune": repo.prune,
        "auth": repo.auth,
        "commit_status": repo.commit_status,
        "commit_status_provider": provider.value if (provider := commit_status.provider_for(repo)) else None,
        "webhook_provider": repo.provider,
        "state": repo.state,
        "last_error": repo.last_error,
        "synced_commit": repo.synced_commit,
        "synced_at": iso(repo.synced_at),
        "created_by": repo.created_by,
        "created_at": iso(repo.created_at),
        "bindings": spec_repo_settings.repo_bindings(ctx, repo),
    }
    if with_syncs:
        out["syncs"] = [sync_json(s) for s in spec_repo_settings.list_syncs(ctx, repo, limit=RECENT_SYNCS)]
    return out


def sync_json(run: SpecSync) -> dict:
    return {"id": run.id, "trigger": run.trigger, "delivery": run.delivery, "old": run.old, "new": run.new,
            "relation": run.relation, "state": run.state, "problems": run.problems, "versions": run.versions,
            "commit_status": run.commit_status, "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at)}


def webhook_url(repo: SpecRepo) -> str:
    tenant = context().session.get(Tenant, repo.tenant_id)
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/hooks/{tenant.name}/{repo.name}"


@bp.get("/spec-repos")
@requires("cluster.read")
def list_spec_repos():
    return {"spec_repos": [spec_repo_json(r) for r in spec_repos.list_repos(context())]}


@bp.post("/spec-repos")
@requires("cluster.update")
def register_spec_repo():
    """Register a spec repository; its webhook secret is answered this once"""
    data = json_body()
    unknown = set(data) - {"name", "url", "branch", "globs", "prune", "credentials", "commit_status"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; a spec repository has name, url, "
                             "branch, globs, prune, credentials and commit_status")
    ctx = context()
    credentials = data.get("credentials")
    new = spec_repos.register(ctx, field(data, "name", str), field(data, "url", str),
                              branch=field(data, "branch", str, required=False, default="main"),
                              globs=field(data, "globs", list, required=False, default=list(DEFAULT_GLOBS)),
                              prune=field(data, "prune", bool, required=False, default=False),
                              credentials=credentials,
                              commit_status=field(data, "commit_status", str, required=False, default="auto"))
    ctx.session.commit()
    return {**spec_repo_json(new.repo), "webhook_url": webhook_url(new.repo),
            "webhook_secret": new.webhook_secret}, 201


@bp.get("/spec-repos/<repo>")
@requires("cluster.read")
def get_spec_repo(repo: str):
    """A spec repository, its role bindings and its last syncs"""
    return spec_repo_json(spec_repos.get_repo(context(), repo), with_syncs=True)


@bp.patch("/spec-repos/<repo>")
@requires("cluster.update")
def update_spec_repo(repo: str):
    """Change a spec repository's branch, path globs, prune, credentials or commit statuses (not its URL)"""
    data = json_body()
    ctx = context()
    row = spec_repo_settings.update_repo(ctx, spec_repos.get_repo(ctx, repo), data)
    ctx.session.commit()
    return spec_repo_json(row)


@bp.delete("/spec-repos/<repo>")
@requires("cluster.update")
def delete_spec_repo(repo: str):
    """Forget a spec repository and its role bindings; the apps it deployed stay"""
    ctx = context()
    spec_repos.delete_repo(ctx, spec_repos.get_repo(ctx, repo))
    ctx.session.commit()
    return "", 204


@bp.post("/spec-repos/<repo>/sync")
@requires("cluster.update")
def sync_spec_repo(repo: str):
    """Sync a spec repository now: fetch its branch and deploy what changed (whole: every spec file)"""
    data = json_body() if request.get_data() else {}
    whole = field(data, "whole", bool, required=False, default=False)
    ctx = context()
    run = spec_repos.sync(ctx, spec_repos.get_repo(ctx, repo), trigger="api", whole=whole)
    return sync_json(run), 201


@bp.get("/spec-repos/<repo>/syncs")
@requires("cluster.read")
def list_spec_repo_syncs(repo: str):
    """A spec repository's syncs, newest first"""
    limit, before = argument("limit"), argument("before")  # a bad parameter is a 400 whatever the repository
    ctx = context()
    runs = spec_repo_settings.list_syncs(ctx, spec_repos.get_repo(ctx, repo), limit=limit, before_id=before)
    return {"syncs": [sync_json(s) for s in runs]}
