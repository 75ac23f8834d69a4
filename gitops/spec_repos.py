"""Spec repositories: git repositories of deploy specs that the control plane deploys from.

**Registering** one (``register``, a tenant-admin or a cluster-admin): its clone URL (https or
ssh, held to the tenant's egress policy like a cluster's remote, gitops.egress), branch, path
globs (the spec files it owns, gitops.spec_changes.PathGlobs), credentials (sealed at rest and
never shown, or the names of the tenant's credential files, read at each fetch:
gitops.credential_files), prune (whether deleting a spec file deletes its apps; off by
default), and a webhook secret made here, sealed, and shown once. A spec repository deploys as itself: its
grants are the role bindings whose subject is its name (``subject_kind`` "repo"), so where it
may deploy is decided as for anyone (``principal_of``); without a binding it deploys nowhere.

**Syncing** one (``sync``) brings the deployed apps to its branch's tip:

1. fetch the branch into the repository's bare mirror (``<DATA_DIR>/spec-repos/<tenant id>/<id>.git``),
   through the egress policy with its credentials (gitops.remote);
2. read what changed since the commit last synced (gitops.spec_changes);
3. a rewritten history, or a last-synced commit the branch no longer holds, deploys nothing:
   the sync is ``refused`` and the repository ``behind``, since the tip may hold older specs than
   those running; ``whole`` (a person's decision) syncs the tip as a whole instead: every spec
   file deployed, those unchanged making no version (also the way to retry files refused before,
   say for want of a role binding);
4. deploy the added and changed files (gitops.deploy.deploy_files: each file on its own merit,
   one bad file blocking no other, the good ones in one commit per cluster), each version tagged
   with source ``spec-repo`` and source commit ``<repository>@<commit>`` (the manifest commit's
   ``Shipyard-Source-Commit`` trailer); a file deployed unchanged makes no version;
5. with prune, delete the apps each deleted file defined at the old commit;
6. record it all in a ``SpecSync`` (versions made, each problem with its file, line and column)
   and move ``synced_commit`` to the tip, even past a file with problems: that file is tried
   again when a later commit changes it;
7. once that is committed, post a commit status on the tip at the git provider where a token
   allows (gitops.commit_status), and record what came of it on the sync.

A fetch that fails (an unreachable remote, refused credentials) is recorded on the sync and
the repository (``failing``) and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pygit2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from contract.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, Problem, RepoError, ShipyardError, SpecError
from renderer.spec import load_specs

from gitops import credential_files, egress
from gitops.audit import record
from gitops.commit_status import mode as commit_status_mode
from gitops.commit_status import post as post_commit_status, prepare as prepare_commit_status
from gitops.deploy import delete_app, deploy_files
from gitops.models import RoleBinding, SpecRepo, SpecSync, Tenant, utcnow
from gitops.policy import Grant, Principal, Scope
from gitops.reads import get_app
from gitops.remote import Remote, RemoteCredentials, fetch_branch
from gitops.repo_store import RepoStore
from gitops.service_context import Context
from gitops.spec_changes import DEFAULT_GLOBS, PathGlobs, SpecChanges, read_changes

# how long a sync may run before another worker takes it as its worker's died: a thousand spec files take a while
LEASE = dt.timedelta(minutes=10)
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CREDENTIAL_FIELDS = ("username", "password", "ssh_key", "ssh_passphrase", "known_hosts", "password_file",
                     "ssh_key_file", "ssh_passphrase_file")


@dataclass
class NewSpecRepo:
    repo: SpecRepo
    webhook_secret: str  # shown once, when registered


def register(ctx: Context, name: Any, url: Any, *, branch: Any = "main", globs: Any = DEFAULT_GLOBS,
             prune: Any = False, credentials: dict | None = None, commit_status: Any = "auto") -> NewSpecRepo:
    """Register a spec repository (see the module's docstring); its webhook secret is answered once."""
    session, principal = ctx.session, ctx.principal
    if not principal.can_anywhere("cluster.update"):
        raise PermissionDenied(f"{principal.name} may not register a spec repository: a tenant-admin or a "
                               "cluster-admin does")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidRequest("a spec repository's name is 1 to 63 lowercase letters, digits and dashes")
    branch, globs, prune = checked_branch(branch), checked_globs(globs), checked_prune(prune)
    statuses = commit_status_mode(commit_status)
    parsed, userinfo = egress.parse_remote_url(url)
    tenant = session.get(Tenant, principal.tenant_id)
    try:
        ctx.repos.policy(tenant.remote_allowed_hosts or ()).addresses(parsed.host, parsed.port)
    except RepoError as exc:
        raise InvalidRequest(f"cannot use {egress.redact_url(str(url))}: {exc}") from exc
    sealed_credentials = held_credentials(ctx, tenant.id, parsed, userinfo, credentials)
    secret = secrets.token_urlsafe(32)
    row = SpecRepo(tenant_id=principal.tenant_id, name=name, url=str(parsed), branch=branch,
                   globs=globs, prune=prune, commit_status=statuses,
                   credentials=ctx.repos.seal(sealed_credentials) if sealed_credentials else None,
                   auth=credential_files.auth_kind(sealed_credentials),
                   webhook_secret=ctx.repos.seal_text(secret), created_by=principal.name)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f'a spec repository "{name}" exists already') from exc
    record(session, principal, "spec_repo.create", name,
           {"url": row.url, "branch": branch, "globs": row.globs, "prune": prune, "auth": row.auth,
            "commit_status": statuses})
    return NewSpecRepo(row, secret)


def checked_branch(branch: Any) -> str:
    if not isinstance(branch, str) or not branch or not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
        raise InvalidRequest(f"{str(branch)[:100]!r} is not a branch name git takes")
    return branch


def checked_globs(globs: Any) -> list[str]:
    if not isinstance(globs, (list, tuple)):
        raise InvalidRequest("globs is a list of path globs, e.g. [\"deploy/**/*.yaml\"]")
    return list(PathGlobs(list(globs)).globs)


def checked_prune(prune: Any) -> bool:
    if not isinstance(prune, bool):
        raise InvalidRequest("prune is true or false")
    return prune


def credential_fields(credentials: Any) -> dict[str, str]:
    """``credentials`` ({username, password} or {ssh_key, ssh_passphrase?, known_hosts}, each secret value
    or instead its ``*_file``: gitops.credential_files) as ``remote_*`` fields; InvalidRequest for anything
    else."""
    if credentials is None:
        return {}
    if not isinstance(credentials, dict):
        raise InvalidRequest("credentials is an object: {username, password} for https, "
                             "{ssh_key, ssh_passphrase, known_hosts} for ssh")
    unknown = set(credentials) - set(CREDENTIAL_FIELDS)
    if unknown:
        raise InvalidRequest(f"credentials take {', '.join(CREDENTIAL_FIELDS)}, not {', '.join(sorted(unknown))}")
    if not all(isinstance(value, str) for value in credentials.values()):
        raise InvalidRequest("each credential is a string")
    return {f"remote_{key}": value for key, value in credentials.items()}


def held_credentials(ctx: Context, tenant_id: int, url: egress.RemoteURL, userinfo: tuple[str, str] | None,
                     credentials: Any) -> RemoteCredentials | None:
    """What a repository keeps of ``credentials`` (values, or references to the tenant's credential files:
    gitops.credential_files), checked; None when it needs none."""
    tenant = ctx.session.get(Tenant, tenant_id)
    return credential_files.credentials(url, userinfo, credential_fields(credentials), ctx.repos.credential_files,
                                        tenant.name)


def list_repos(ctx: Context) -> list[SpecRepo]:
    if not ctx.principal.can_anywhere("cluster.read"):
        raise PermissionDenied(f"{ctx.principal.name} may not read spec repositories")
    return list(ctx.session.scalars(select(SpecRepo).where(SpecRepo.tenant_id == ctx.principal.tenant_id)
                                    .order_by(SpecRepo.name)))


def get_repo(ctx: Context, name: Any) -> SpecRepo:
    if not ctx.principal.can_anywhere("cluster.read"):
        raise NotFound(f'no spec repository "{name}"')
    row = ctx.session.scalar(select(SpecRepo).where(SpecRepo.tenant_id == ctx.principal.tenant_id,
                                                    SpecRepo.name == name))
    if row is None:
        raise NotFound(f'no spec repository "{name}"')
    return row


def delete_repo(ctx: Context, repo: SpecRepo) -> None:
    """Forget the repository, its role bindings and its mirror; the apps it deployed stay."""
    require_manage(ctx, repo, "delete")
    for binding in ctx.session.scalars(select(RoleBinding).where(
            RoleBinding.tenant_id == repo.tenant_id, RoleBinding.subject_kind == "repo",
            RoleBinding.subject == repo.name)):
        ctx.session.delete(binding)
    ctx.session.delete(repo)
    record(ctx.session, ctx.principal, "spec_repo.delete", repo.name, {})
    shutil.rmtree(mirror_path(ctx.repos, repo), ignore_errors=True)


def require_manage(ctx: Context, repo: SpecRepo, doing: str) -> None:
    """Changing a repository (its settings, deleting it, syncing it as a whole) is for someone who may
    change every cluster it may deploy to: a cluster-admin elsewhere cannot turn a repository another
    cluster trusts to a branch of their choosing. Without role bindings, any registrar may."""
    if not ctx.principal.can_anywhere("cluster.update"):
        raise PermissionDenied(f"{ctx.principal.name} may not {doing} a spec repository")
    for binding in ctx.session.scalars(select(RoleBinding).where(
            RoleBinding.tenant_id == repo.tenant_id, RoleBinding.subject_kind == "repo",
            RoleBinding.subject == repo.name)):
        if not ctx.principal.can("cluster.update", Scope(repo.tenant_id, binding.cluster_id)):
            where = "the whole tenant" if binding.cluster_id is None else "a cluster you do not administer"
            raise PermissionDenied(f"{ctx.principal.name} may not {doing} spec repository {repo.name}: it may "
                                   f"deploy to {where} (a role binding); an admin of every place it deploys to may")


def principal_of(ctx: Context, repo: SpecRepo) -> Principal:
    """The repository as a principal: the grants of the role bindings whose subject it is."""
    grants = tuple(Grant(b.role, Scope(b.tenant_id, b.cluster_id, b.workspace_id)) for b in ctx.session.scalars(
        select(RoleBinding).where(RoleBinding.tenant_id == repo.tenant_id, RoleBinding.subject_kind == "repo",
                                  RoleBinding.subject == repo.name)))
    return Principal(repo.tenant_id, 0, f"spec repository {repo.name}", grants)


def mirror_path(repos: RepoStore, repo: SpecRepo) -> Path:
    return repos.data_dir / "spec-repos" / str(repo.tenant_id) / f"{repo.id}.git"


def enqueue(session, repo: SpecRepo, *, trigger: str, delivery: str | None = None,
            running_by: str | None = None) -> SpecSync | None:
    """A sync of ``repo`` asked for and committed, to be run (``execute``, gitops.spec_worker); None when
    ``delivery`` was taken already: a provider's redelivery, or a replay, syncs nothing again.
    ``running_by``: claimed by that worker from the start, since it runs the sync itself (no other does)."""
    run = SpecSync(repo_id=repo.id, trigger=trigger, delivery=delivery, state="queued", problems=[], versions=[])
    if running_by is not None:
        run.state, run.claimed_by, run.claimed_until = "running", running_by, utcnow() + LEASE
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        session.rollback()  # ends the transaction (on SQLite it holds the write lock)
        return None
    session.commit()
    return run


def sync(ctx: Context, repo: SpecRepo, *, trigger: str, delivery: str | None = None,
         whole: bool = False) -> SpecSync:
    """Sync ``repo`` now, in this request (the module's docstring); Conflict while another sync of it runs.
    A delivery taken already is answered with the sync it made, doing nothing again. ``whole`` is for
    someone who may change the repository (``require_manage``)."""
    if whole:
        require_manage(ctx, repo, "sync as a whole")
    running = ctx.session.scalar(select(SpecSync).where(SpecSync.repo_id == repo.id, SpecSync.state == "running",
                                                        SpecSync.claimed_until >= utcnow()).limit(1))
    if running is not None:
        ctx.session.rollback()
        raise Conflict(f"sync {running.id} of spec repository {repo.name} (asked by {running.trigger}) is running: "
                       "see it with its syncs, or ask again once it is done")
    run = enqueue(ctx.session, repo, trigger=trigger, delivery=delivery, running_by=ctx.worker or "request")
    if run is None:
        taken = ctx.session.scalar(select(SpecSync).where(SpecSync.repo_id == repo.id, SpecSync.delivery == delivery))
        ctx.session.commit()
        return taken
    return execute(ctx, repo, run, whole=whole)


def execute(ctx: Context, repo: SpecRepo, run: SpecSync, *, whole: bool = False) -> SpecSync:
    """Run a sync asked for: ``ctx``'s principal is whoever runs it, the deploys are the repository's own."""
    run.old = repo.synced_commit
    try:
        mirror = _mirror(mirror_path(ctx.repos, repo))
        remote = _remote(ctx, repo)
        tip = fetch_branch(mirror, remote, repo.branch)
        if tip is None:
            raise RepoError(f'the repository has no branch "{repo.branch}"')
        changes = read_changes(mirror, None if whole else repo.synced_commit, str(tip), PathGlobs(repo.globs))
    except RepoError as exc:
        return _finish(ctx, repo, run, "failed", [Problem("", 0, 0, str(exc))], [], failing=str(exc))
    run.new, run.relation = changes.new, changes.relation
    if changes.behind:
        reason = (f"the branch {repo.branch} moved from {(changes.old or '')[:12]} to {changes.new[:12]} without "
                  f"{(changes.old or '')[:12]} in its history (a force-push or a rewritten history): nothing was "
                  "deployed, since its specs may be older than those running; sync it as a whole to deploy the tip "
                  "as it is")
        return _finish(ctx, repo, run, "refused", [Problem("", 0, 0, reason)], [], behind=reason,
                       credentials=remote.credentials)
    as_repo = replace(ctx, principal=principal_of(ctx, repo))
    if not as_repo.principal.grants:  # not moved on: once it is given a role binding, the next sync deploys
        reason = (f"spec repository {repo.name} holds no role binding, so it may deploy nowhere: give it a role "
                  f"where its specs deploy (subject_kind repo; shipyard bindings create {repo.name} ROLE --repo "
                  "--cluster CLUSTER [--workspace WORKSPACE]), then sync it")
        return _finish(ctx, repo, run, "refused", [Problem("", 0, 0, reason)], [], failing=reason,
                       credentials=remote.credentials)
    files = [(f.path, f.data) for f in changes.files if f.action != "deleted"]
    versions, problems = deploy_files(as_repo, files, source="spec-repo", source_commit=f"{repo.name}@{changes.new}")
    made = [_made(v) for v in versions]
    if repo.prune:
        pruned, prune_problems = _prune(as_repo, mirror, changes)
        made += pruned
        problems += prune_problems
    if problems:
        state = "partial" if made else "failed"
    else:
        state = "deployed" if any(not v["unchanged"] for v in made) else "unchanged"
    return _finish(ctx, repo, run, state, problems, made, synced=changes.new, credentials=remote.credentials)


def _made(version) -> dict:
    app = version.application
    return {"app": f"{app.workspace.cluster.name}:{app.workspace.name}/{app.name}", "number": version.number,
            "action": version.action, "state": version.state, "unchanged": bool(version.unchanged)}


def _prune(ctx: Context, mirror: pygit2.Repository, changes: SpecChanges) -> tuple[list[dict], list[Problem]]:
    """Delete the apps each deleted file defined at the old commit."""
    made, problems = [], []
    old = mirror.revparse_single(changes.old).peel(pygit2.Commit) if changes.old else None
    for spec_file in (f for f in changes.files if f.action == "deleted"):
        if old is None:
            continue
        try:
            specs = load_specs(old.tree[spec_file.path].data, spec_file.path)
        except (SpecError, KeyError):
            continue  # it was not a valid spec: it deployed nothing to delete
        for spec in specs:
            try:
                app = get_app(ctx, spec.cluster, spec.workspace, spec.name, "app.delete")
                if not app.deleted:
                    made.append(_made(delete_app(ctx, app, source="spec-repo")))
            except NotFound:
                continue  # gone already
            except ShipyardError as exc:
                problems.append(Problem(spec_file.path, 0, 0, f"cannot delete {spec.cluster}:{spec.workspace}/"
                                                              f"{spec.name}: {exc}"))
    return made, problems


def _finish(ctx: Context, repo: SpecRepo, run: SpecSync, state: str, problems: list[Problem], made: list[dict], *,
            synced: str | None = None, failing: str | None = None, behind: str | None = None,
            credentials: RemoteCredentials | None = None) -> SpecSync:
    """Record the sync and commit it; then post its commit status, which only a slow provider waits for."""
    now = utcnow()
    run.state, run.finished_at, run.versions = state, now, made
    run.claimed_by = run.claimed_until = None
    run.problems = [problem.as_dict() for problem in problems]
    if synced is not None:
        repo.synced_commit, repo.synced_at = synced, now
        repo.state = "failing" if problems else "synced"
        repo.last_error = f"{len(problems)} problem(s) at {synced[:12]}: see its last sync" if problems else None
    else:
        repo.state, repo.last_error = ("behind", behind) if behind else ("failing", failing)
    status = prepare_commit_status(ctx, repo, run, credentials)
    ctx.session.commit()
    if status is not None:
        run.commit_status = post_commit_status(status)
        ctx.session.commit()
    return run


def _mirror(path: Path) -> pygit2.Repository:
    if path.exists():
        return pygit2.Repository(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return pygit2.init_repository(str(path), bare=True)


def _remote(ctx: Context, repo: SpecRepo) -> Remote:
    tenant = ctx.session.get(Tenant, repo.tenant_id)
    held = credential_files.resolve(ctx.repos.open_credentials(repo.credentials), ctx.repos.credential_files,
                                    tenant.name)
    return Remote(repo.url, held, ctx.repos.policy(tenant.remote_allowed_hosts or ()))


__all__ = ["register", "checked_branch", "checked_globs", "checked_prune", "credential_fields", "held_credentials", "list_repos", "get_repo", "delete_repo",
           "principal_of", "require_manage", "enqueue", "sync", "execute", "mirror_path", "NewSpecRepo", "NAME", "LEASE"]
