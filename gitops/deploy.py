"""Deploys that survive crashes and crowds: deploy, dry run, rollback, promote, delete.

Every change to an app is a Version, and goes through three steps:

1. **intent**: the Version is written ``pending`` (with its spec, number and
   deployment id) and the transaction committed; from here on the deploy is
   accepted and cannot be lost.
2. **commit**: the rendered files go into the cluster repository in a commit
   whose ``Shipyard-Deployment-Id`` trailer names the Version.
3. **record**: the Version is marked ``committed`` with that commit id.

A crash between 1 and 2 leaves a pending Version whose deployment id is in no
commit: the reconciler renders and commits it. A crash between 2 and 3 leaves
one whose id *is* in a commit: the reconciler only records it. So nothing
accepted is lost and nothing is committed twice. Pending Versions are claimed
(``claimed_by``/``claimed_until``) with a conditional UPDATE, so across any
number of processes one works on each at a time.

Ordering: steps 2 and 3 run in one database transaction that locks the apps'
rows, and a Version is ``superseded`` (not committed) when a higher-numbered
Version of its app is already committed. So the repository never goes back
to an older version of an app, whichever process gets there first.

Crowds: concurrent deploys to one cluster queue on a per-cluster
``Committers`` queue; whoever holds the cluster's lock commits everything
queued (one Version per app per commit) as one commit, and every Version
records the commit that carries it.

Where each step lives: the intent is written here (``_submit``); the commit step and its
recording are gitops.commit_step; the reconciler is gitops.reconciler; reading apps and
versions back is gitops.reads.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from contract.errors import InvalidRequest, NotFound, Problem, RenderError, ShipyardError, SpecError
from renderer.profiles import ClusterProfile
from renderer.render import Rendering, render
from renderer.spec import Spec, load_specs
from renderer.yamlio import pointer
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from gitops import isolation, routes
from gitops.agents import live_facts
from gitops.audit import record
from gitops.clusters import profile_of
from gitops.commit_step import Ticket
from gitops.models import Application, Cluster, Version, Workspace, utcnow
from gitops.plan import app_plan
from gitops.reads import get_version
from gitops.reconciler import LEASE
from gitops.service_context import Context
from gitops.workspaces import find_workspace, workspace_scope, workspace_settings

ACTIONS = ("deploy", "rollback", "promote", "delete")

# The statements every deploy's intent runs, built once: building and hashing a statement cost more
# than running it (SQLAlchemy caches the compiled form, keyed by the statement's structure).
_APP_BY_NAME = (select(Application).options(lazyload(Application.workspace))
                .where(Application.workspace_id == bindparam("workspace_id"), Application.name == bindparam("name")))
_APPS, _VERSIONS = Application.__table__, Version.__table__
_NEXT_NUMBER = (_APPS.update().where(_APPS.c.id == bindparam("app_id"))
                .values(version_counter=_APPS.c.version_counter + 1, updated_at=bindparam("now"))
                .returning(_APPS.c.version_counter))
_INSERT_VERSION = _VERSIONS.insert().returning(_VERSIONS.c.id)


# --- deploy, rollback, promote, delete -------------------------------------------------------


@dataclass
class Planned:
    spec: Spec | None
    cluster: Cluster
    workspace: Workspace
    profile: ClusterProfile
    rendering: Rendering | None
    name: str
    claims: list[isolation.Route] = field(default_factory=list)  # hosts it routes that nobody holds yet


def plan_specs(ctx: Context, specs: list[Spec], permission: str = "app.deploy") -> list[Planned]:
    """Find each spec's workspace (``permission`` required there) and render it for its cluster.

    A cluster whose agent has reported in is held to what it reported: rendered objects are
    validated against the Kubernetes version it runs, and a custom resource whose CRD it
    does not have, or whose API version or addon release it reported it does not serve, is
    refused, even where the profile lists the addon (gitops.agents.LiveFacts.problems).

    Each spec is held to what its workspace may claim in the shared cluster (gitops.isolation):
    the secret paths it references and the hosts it routes; and its routes to what the other
    apps of the cluster already route (gitops.routes), the batch's earlier specs included.
    """
    targets, profiles, facts = [], {}, {}
    for spec in specs:
        workspace = find_workspace(ctx, spec.cluster, spec.workspace, permission)
        if workspace.cluster_id not in profiles:
            live = facts[workspace.cluster_id] = live_facts(workspace.cluster)
            profile = profile_of(workspace.cluster)
            profiles[workspace.cluster_id] = live.apply_to(profile) if live else profile
        targets.append((spec, workspace))
    # On SQLite this read transaction holds the database's write lock (a write request's
    # BEGIN IMMEDIATE): end it before rendering. PostgreSQL's reads lock nothing, and going
    # on in the same transaction saves the intent its BEGIN, COMMIT and pool ping.
    if ctx.session.get_bind().dialect.name == "sqlite":
        ctx.session.commit()
    planned, problems = [], []
    for spec, workspace in targets:
        profile, live = profiles[workspace.cluster_id], facts[workspace.cluster_id]
        problems.extend(isolation.secret_problems(spec, workspace))
        try:
            rendering = render(spec, profile, ctx.schemas)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        except RenderError as exc:
            if live is None or live.kubernetes_version is None:
                raise  # a template's fault, not the spec's
            problems.append(spec.problem(
                f'cluster "{live.cluster}" runs Kubernetes {live.reported_version} (its agent reported at '
                f'{live.reported_at[:19]}Z), where this spec cannot run: {exc}'))
            continue
        if live is not None and (missing := live.problems(rendering)):
            problems.extend(missing)
            continue
        planned.append(Planned(spec, workspace.cluster, workspace, profile, rendering, spec.name))
    clashes = _route_clashes(ctx, planned)
    taken, claims = isolation.host_problems(ctx.session, [(item.workspace, item.rendering) for item in planned])
    for item, hosts in zip(planned, claims):
        item.claims = hosts
    problems.extend(taken)
    # a host another workspace holds is refused by its claim, which says what to do; one refusal per port
    held = {(p.file, p.line, p.column, p.path) for p in taken}
    problems.extend(p for p in clashes if (p.file, p.line, p.column, p.path) not in held)
    if problems:
        raise SpecError(problems)
    return planned


def _route_clashes(ctx: Context, planned: list[Planned]) -> list[Problem]:
    """Routes of the plan that another app of its cluster takes, read from the repository's tip.

    The commit checks again on the tree it is built on (gitops.apply); this check refuses a
    deploy before its intent is written, so a refused deploy leaves no failed Version.
    """
    by_cluster: dict[int, list[Planned]] = {}
    for item in planned:
        by_cluster.setdefault(item.cluster.id, []).append(item)
    problems: list[Problem] = []
    for items in by_cluster.values():
        renderings = [item.rendering for item in items]
        if routes.routes_anything(renderings):  # no repository read for a deploy that routes nothing
            problems += routes.clash_problems(ctx.repos.open(items[0].cluster).snapshot(), renderings)
    return problems


def _application(session: Session, workspace: Workspace, name: str, kind: str | None) -> Application | None:
    """The app ``name`` in ``workspace``, created on its first deploy (``kind`` None: never created).

    Loaded without its eager joins: the workspace (with its cluster) is at hand already.
    """
    where = {"workspace_id": workspace.id, "name": name}
    app = session.scalar(_APP_BY_NAME, where)
    if app is None and kind is not None:
        try:
            with session.begin_nested():
                app = Application(tenant_id=workspace.tenant_id, workspace_id=workspace.id, name=name, kind=kind)
                session.add(app)
        except IntegrityError:  # created by a concurrent deploy a moment ago
            app = session.scalar(_APP_BY_NAME, where)
    if app is None:
        return None
    set_committed_value(app, "workspace", workspace)
    if kind is not None:
        if app.kind != kind and not app.deleted and app.current_version:
            raise InvalidRequest(f'"{name}" is a {app.kind} in workspace "{workspace.name}"; it cannot become a {kind}')
        app.kind = kind
    return app


def _submit(ctx: Context, planned: list[Planned], *, action: str, source: str, source_commit: str | None,
            origin: dict | None) -> list[Version]:
    committers, worker = ctx.committing()  # before anything is written
    session, now = ctx.session, utcnow()
    try:  # in the intent's transaction, so a deploy refused here leaves no claim behind
        for item in planned:
            isolation.claim_hosts(session, item.spec, item.workspace, item.claims)
    except SpecError:
        session.rollback()
        raise
    versions: list[tuple[Planned, Version]] = []
    answers: list[Version] = []  # what the caller gets back, a version per planned app
    for item in sorted(planned, key=lambda p: (p.workspace.id, p.name)):
        app = _application(session, item.workspace, item.name, item.spec.kind if item.spec else None)
        target = f"{item.cluster.name}:{item.workspace.name}/{item.name}"
        render_digest = _render_digest(item.rendering)
        if (same := _same_as_newest(session, app, item.spec, render_digest)) is not None:
            # A redeploy that changes nothing makes no version; the request is still on record.
            record(session, ctx.principal, f"app.{action}", target,
                   {"version": same.number, "unchanged": True, "spec_digest": same.spec_digest})
            same.unchanged = True
            answers.append(same)
            continue
        # Core statements: the intent is a few rows, and the ORM's unit of work cost more than writing them.
        number = session.execute(_NEXT_NUMBER, {"app_id": app.id, "now": now}).scalar_one()
        values = dict(
            application_id=app.id, number=number, action=action, deployment_id=str(uuid.uuid4()),
            spec=item.spec.body if item.spec else None, spec_digest=item.spec.digest if item.spec else None,
            render_digest=render_digest, state="pending", author=ctx.principal.name,
            source=source, source_commit=source_commit, origin=origin,
            notes=list(item.rendering.notes) if item.rendering else [],
            claimed_by=worker, claimed_until=now + LEASE, created_at=now,
        )
        version_id = session.execute(_INSERT_VERSION, values).scalar_one()
        # what the caller gets back: the row as written, not attached to the session
        version = Version(id=version_id, commit_id=None, changed=None, error=None, committed_at=None, **values)
        set_committed_value(version, "application", app)
        record(session, ctx.principal, f"app.{action}", target,
               {"version": number, "spec_digest": version.spec_digest, "deployment_id": version.deployment_id})
        versions.append((item, version))
        answers.append(version)
    session.commit()  # the intent: from here on the deploy is accepted

    by_cluster: dict[int, list[tuple[Planned, Version]]] = {}
    for item, version in versions:
        by_cluster.setdefault(item.cluster.id, []).append((item, version))
    failures: list[ShipyardError] = []
    outcomes: dict[int, Ticket] = {}
    for pairs in by_cluster.values():
        cluster, profile = pairs[0][0].cluster, pairs[0][0].profile
        tickets = [
            Ticket(version.id, version.application_id, version.number, item.workspace.name, item.name,
                   version.deployment_id, ctx.principal.name, item.rendering, source_commit,
                   settings=workspace_settings(item.workspace), fresh=True)
            for item, version in pairs
        ]
        committers.run(cluster, profile, tickets)
        failures += [t.error for t in tickets if t.state == "failed" and t.error is not None]
        outcomes.update((t.version_id, t) for t in tickets)
    for index, version in enumerate(answers):  # what the committers wrote, without reading it back
        ticket = outcomes.get(version.id)
        if ticket is None:  # unchanged: no new version
            continue
        if ticket.elsewhere:
            answers[index] = session.get(Version, version.id, populate_existing=True)
            continue
        if ticket.state in ("pending", None):
            continue
        for name, value in (("state", ticket.state), ("commit_id", ticket.commit_id), ("changed", ticket.changed),
                            ("committed_at", ticket.committed_at), ("claimed_by", None), ("claimed_until", None),
                            ("error", str(ticket.error) if ticket.state == "failed" and ticket.error else None)):
            set_committed_value(version, name, value)
    if failures and all(v.state == "failed" for v in answers if v.id in outcomes):
        problems = [p for e in failures if isinstance(e, SpecError) for p in e.problems]
        if problems:
            raise SpecError(problems)
    return answers


_NEWEST = (select(Version).options(lazyload(Version.application))
           .where(Version.application_id == bindparam("app_id"), Version.number == bindparam("number")))


def _same_as_newest(session: Session, app: Application, spec: Spec | None, render_digest: str | None) -> Version | None:
    """The app's newest version when ``spec`` would deploy exactly it again (same spec, same manifests).

    Only a version on its way to the cluster or there counts: after a failed one (or a delete) the
    same spec is tried again as a new version. The manifests are compared, not only the spec, so a
    spec deployed again after its cluster's profile or live facts changed does make a new version.
    """
    if spec is None or app.deleted or not app.version_counter:
        return None
    newest = session.scalar(_NEWEST, {"app_id": app.id, "number": app.version_counter})
    if (newest is None or newest.state not in ("pending", "committed") or newest.spec_digest != spec.digest
            or newest.render_digest != render_digest):
        return None
    set_committed_value(newest, "application", app)
    return newest


def _render_digest(rendering: Rendering | None) -> str | None:
    if rendering is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(rendering.files):
        digest.update(name.encode() + b"\0" + rendering.files[name] + b"\0")
    digest.update(rendering.application_bytes)
    return "sha256:" + digest.hexdigest()


def deploy(ctx: Context, text: str | bytes, *, filename: str = "<request>", source: str = "api",
           source_commit: str | None = None, action: str = "deploy", origin: dict | None = None) -> list[Version]:
    """Validate, render and commit every spec in ``text``; one new Version per spec."""
    planned = plan_specs(ctx, load_specs(text, filename))
    return _submit(ctx, planned, action=action, source=source, source_commit=source_commit, origin=origin)


def deploy_files(ctx: Context, files: list[tuple[str, str | bytes]], *, source: str,
                 source_commit: str | None) -> tuple[list[Version], list[Problem]]:
    """Deploy the specs of several files, each file on its own merit: a file with problems is left out
    (its problems returned, against its path), the others go into one submit (one commit per cluster).

    Files are also held to each other (``_between_files``): an app two files define is refused in
    both, and a route a file takes from an earlier one (in the order given) is refused in the later.
    """
    by_file: list[tuple[str, list[Planned]]] = []
    problems: list[Problem] = []
    for name, text in files:
        try:
            by_file.append((name, plan_specs(ctx, load_specs(text, name))))
        except SpecError as exc:
            problems += exc.problems
        except ShipyardError as exc:  # a workspace not found, not permitted there
            problems.append(Problem(name, 0, 0, str(exc)))
    refused = _between_files(ctx, by_file)
    problems += refused
    left_out = {problem.file for problem in refused}
    planned = [item for name, items in by_file if name not in left_out for item in items]
    if not planned:
        return [], problems
    try:
        versions = _submit(ctx, planned, action="deploy", source=source, source_commit=source_commit, origin=None)
    except SpecError as exc:  # the commit refused every one of them (a clash with another app)
        return [], problems + exc.problems
    return versions, problems


def _between_files(ctx: Context, by_file: list[tuple[str, list[Planned]]]) -> list[Problem]:
    """What each file's plan, valid on its own, does to the others': apps defined twice, routes taken twice."""
    files_of: dict[tuple[int, int, str], list[str]] = {}
    for name, items in by_file:
        for item in items:
            files_of.setdefault((item.cluster.id, item.workspace.id, item.name), []).append(name)
    problems = []
    for name, items in by_file:
        for item in items:
            others = [other for other in files_of[(item.cluster.id, item.workspace.id, item.name)] if other != name]
            if others:
                problems.append(item.spec.problem(
                    f"{item.cluster.name}:{item.workspace.name}/{item.name} is defined in {', '.join(others)} as "
                    "well: an app is defined in one file; neither is deployed until one of them is removed"))
    twice = {problem.file for problem in problems}
    rest = [item for name, items in by_file if name not in twice for item in items]
    if sum(1 for name, items in by_file if name not in twice and items) > 1:
        problems += _route_clashes(ctx, rest)  # each file's against the repository were checked as it was planned
    return problems


@dataclass
class PlannedChange:
    cluster: str
    workspace: str
    app: str
    action: str  # created | updated | unchanged
    diff: str
    notes: list[str]


_DRY_RUN_WORDS = {"added": "created", "changed": "updated", "unchanged": "unchanged"}  # the API's words


def dry_run(ctx: Context, text: str | bytes, *, filename: str = "<request>") -> list[PlannedChange]:
    """What ``deploy`` would change in the repositories, as unified diffs; commits nothing."""
    changes = []
    planned = plan_specs(ctx, load_specs(text, filename))
    if ctx.session.get_bind().dialect.name == "sqlite":
        ctx.session.commit()  # the claims' read began a transaction, which on SQLite holds the write lock
    for item in planned:
        app = app_plan(ctx.repos.open(item.cluster).snapshot(), item.workspace.name, item.name, item.rendering)
        changes.append(PlannedChange(item.cluster.name, item.workspace.name, item.name, _DRY_RUN_WORDS[app["action"]],
                                     app["diff"], app["notes"]))
    return changes


def rollback(ctx: Context, app: Application, number: Any, *, source: str = "api") -> Version:
    """Deploy version ``number``'s spec again, as a new version (whatever the app's health)."""
    target = get_version(ctx, app, number)
    if target.spec is None:
        raise InvalidRequest(f"version {number} deleted the app; roll back to a version that deployed it")
    if target.state == "failed":
        raise InvalidRequest(f"version {number} failed and was never deployed; pick a committed version")
    ctx.principal.require("app.deploy", workspace_scope(app.workspace), f'app "{app.name}"')
    # ensure_ascii=False: YAML reads "\ud83d\ude00" as two lone surrogates, not one emoji
    text = json.dumps(target.spec, indent=2, ensure_ascii=False)
    (version,) = deploy(ctx, text, filename=f"version {number}", source=source, action="rollback",
                        origin={"rollback_of": number})
    return version


def promote(ctx: Context, app: Application, *, target: Any, number: Any = None, name: Any = None,
            overrides: Any = None, keep_overrides: bool = True, source: str = "api") -> Version:
    """Clone an app's version into another workspace or cluster, with overrides; remembers where from.

    The target's own overrides stay: when the app in the target was itself promoted with
    overrides, they apply again under the new ones (``keep_overrides=False`` starts from the
    source version alone). The overrides in force are kept in the new version's origin. A spec
    the overrides make invalid is reported against the source version and the override, not
    against the promoted text, which nobody wrote.
    """
    version = get_version(ctx, app, number if number is not None else app.current_version)
    if version.spec is None:
        raise InvalidRequest(f"version {version.number} deleted the app; promote a version that deployed it")
    if not isinstance(target, str) or target.count(":") != 1:
        raise InvalidRequest('target must be "<cluster>:<workspace>"')
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidRequest("overrides must be a mapping of spec fields")
    overrides = overrides or {}
    target_name = name if name is not None else app.name
    if keep_overrides:
        kept = _target_overrides(ctx, target, target_name)
        if kept:
            overrides = _merge_overrides(copy.deepcopy(kept), overrides)
    body = copy.deepcopy(version.spec)
    _merge(body, overrides)
    body["workspace_fqn"] = target
    if name is not None:
        body["name"] = name
    source_name = f"{app.workspace.cluster.name}:{app.workspace.name}/{app.name}"
    origin = {"promoted_from": source_name, "version": version.number}
    if overrides:
        origin["overrides"] = overrides
    try:
        (new,) = deploy(ctx, json.dumps(body, indent=2, ensure_ascii=False), filename=f"promotion of {source_name}",
                        source=source, action="promote", origin=origin)
    except SpecError as error:
        raise SpecError(_promotion_problems(error.problems, f"{source_name} v{version.number} promoted to {target}",
                                            overrides)) from error
    return new


def _target_overrides(ctx: Context, target: str, name: Any) -> dict:
    """The overrides the target app's current version was promoted with, if it was promoted."""
    cluster_name, workspace_name = target.split(":", 1)
    try:
        workspace = find_workspace(ctx, cluster_name, workspace_name)
    except ShipyardError:
        return {}  # the deploy says what is wrong with the target
    current = ctx.session.execute(
        select(Version.origin).join(Application, Version.application_id == Application.id)
        .where(Application.workspace_id == workspace.id, Application.name == name, Application.deleted.is_(False),
               Version.number == Application.current_version)).scalar()
    kept = (current or {}).get("overrides") if isinstance(current, dict) else None
    return kept if isinstance(kept, dict) else {}


def _merge_overrides(base: dict, newer: dict) -> dict:
    """Overrides on top of overrides: mappings merge key by key, anything else (None included) replaces."""
    for key, value in newer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_overrides(base[key], value)
        else:
            base[key] = value
    return base


def _override_paths(overrides: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in overrides.items():
        path = (*prefix, key)
        paths.append(path)
        if isinstance(value, dict):
            paths += _override_paths(value, path)
    return paths


def _promotion_problems(problems: list[Problem], where: str, overrides: dict) -> list[Problem]:
    """A promoted spec's problems named by the source version, and by the override behind each."""
    pointers = {pointer(path): ".".join(map(str, path)) for path in _override_paths(overrides)}
    out = []
    for problem in problems:
        behind = [dotted for at, dotted in pointers.items()
                  if problem.path == at or problem.path.startswith(at + "/")]
        message = problem.message + (f" (the override {max(behind, key=len)})" if behind else "")
        out.append(Problem(where, 0, 0, message, problem.path))
    return out


def _merge(body: dict, overrides: dict) -> None:
    """Deep-merge ``overrides`` into ``body``; a None value removes the field."""
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        elif isinstance(value, dict) and isinstance(body.get(key), dict):
            _merge(body[key], value)
        else:
            body[key] = value


def delete_app(ctx: Context, app: Application, *, source: str = "api") -> Version:
    """Remove the app from its cluster (its directory and Application, one commit); history stays."""
    workspace = app.workspace
    ctx.principal.require("app.delete", workspace_scope(workspace), f'app "{app.name}"')
    if app.deleted:
        raise NotFound(f'app "{app.name}" is already deleted')
    planned = Planned(None, workspace.cluster, workspace, profile_of(workspace.cluster), None, app.name)
    (version,) = _submit(ctx, [planned], action="delete", source=source, source_commit=None, origin=None)
    return version


__all__ = [
    "deploy_files",
    "Planned",
    "PlannedChange",
    "plan_specs",
    "deploy",
    "dry_run",
    "rollback",
    "promote",
    "delete_app",
]
