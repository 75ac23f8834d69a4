"""A spec repository's settings after it is registered, and what the API reads of it.

``update_repo`` changes the branch, path globs, prune, credentials and where commit statuses go
(``commit_status``, gitops.commit_status) of a spec repository (gitops.spec_repos), checked as registering checks them and audited; the clone URL stays
what it was registered with: a repository somewhere else is a new one, deleted and
registered again, so that no sync compares commits of two different histories. A changed
branch or path globs take effect at the next sync, which reads what changed since the
commit last synced on the new branch (a sync as a whole deploys every spec file there).

``credential_fields`` is the one reading of a ``credentials`` object, for registering and
updating alike; ``repo_bindings`` and ``list_syncs`` are what the API shows of a repository:
where it may deploy, and its syncs newest first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from contract.errors import InvalidRequest
from gitops import egress
from gitops.accounts import scope_names
from gitops.audit import record
from gitops.commit_status import mode as commit_status_mode
from gitops.credential_files import auth_kind
from gitops.models import RoleBinding, SpecRepo, SpecSync
from gitops.policy import Scope
from gitops.service_context import Context
from gitops.spec_repos import (checked_branch, checked_globs, checked_prune, credential_fields, held_credentials,
                                require_manage)

SETTINGS = ("branch", "globs", "prune", "credentials", "commit_status")


def update_repo(ctx: Context, repo: SpecRepo, changes: dict[str, Any]) -> SpecRepo:
    """Change the settings of ``repo`` that ``changes`` names (SETTINGS; credentials null: none)."""
    require_manage(ctx, repo, "change")
    unknown = set(changes) - set(SETTINGS)
    if "url" in unknown:
        raise InvalidRequest("a spec repository's URL does not change: delete it and register the new one")
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; a spec repository's settings are "
                             f"{', '.join(SETTINGS)}")
    audited: dict[str, Any] = {}
    if "branch" in changes:
        repo.branch = audited["branch"] = checked_branch(changes["branch"])
    if "globs" in changes:
        repo.globs = audited["globs"] = checked_globs(changes["globs"])
    if "prune" in changes:
        repo.prune = audited["prune"] = checked_prune(changes["prune"])
    if "commit_status" in changes:
        repo.commit_status = audited["commit_status"] = commit_status_mode(changes["commit_status"])
    if "credentials" in changes:
        parsed, _ = egress.parse_remote_url(repo.url)
        held = held_credentials(ctx, repo.tenant_id, parsed, None, changes["credentials"])
        repo.credentials = ctx.repos.seal(held) if held else None
        repo.auth = audited["auth"] = auth_kind(held)
    record(ctx.session, ctx.principal, "spec_repo.update", repo.name, audited)
    return repo


def repo_bindings(ctx: Context, repo: SpecRepo) -> list[dict]:
    """Where the repository may deploy: its role bindings' roles and scopes, by id."""
    bindings = ctx.session.scalars(select(RoleBinding).where(
        RoleBinding.tenant_id == repo.tenant_id, RoleBinding.subject_kind == "repo",
        RoleBinding.subject == repo.name).order_by(RoleBinding.id))
    return [{"id": b.id, "role": b.role, **scope_names(ctx.session, Scope(b.tenant_id, b.cluster_id, b.workspace_id))}
            for b in bindings]


def list_syncs(ctx: Context, repo: SpecRepo, *, limit: int, before_id: int | None = None) -> list[SpecSync]:
    """The repository's syncs, newest first; ``before_id``: only those older than that sync (paging)."""
    query = select(SpecSync).where(SpecSync.repo_id == repo.id)
    if before_id is not None:
        query = query.where(SpecSync.id < before_id)
    return list(ctx.session.scalars(query.order_by(SpecSync.id.desc()).limit(limit)))


__all__ = ["update_repo", "credential_fields", "repo_bindings", "list_syncs", "SETTINGS"]
