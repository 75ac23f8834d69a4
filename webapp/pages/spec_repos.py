"""The dashboard's place for spec repositories: the list, registering one, a repository's own page.

Every page reads and every form changes through the services the JSON API calls
(webapp.api.spec_repos: gitops.spec_repos, gitops.spec_repo_settings) with the caller's
principal, so they are authorized and audited exactly as the API; forms, refusals and the
secret shown once work as on the other admin pages (webapp.pages.admin).

===============================================  =================================================
route                                            what
===============================================  =================================================
``/admin/spec-repos``                            the repositories: state, last sync, webhook URL
``/admin/register-spec-repo``                    register one; its webhook secret shown once
``/admin/spec-repos/<repo>``                     its settings (change them), role bindings, syncs
                                                 newest first (``?before=<sync id>``: older ones)
``…/<repo>/sync``                                sync it now; as a whole (confirmed)
``…/<repo>/delete``                              forget it (confirmed); its apps stay
===============================================  =================================================

Reading needs ``cluster.read`` somewhere, changing ``cluster.update`` (a tenant-admin or a
cluster-admin): someone who may only read sees no form. Credentials are typed, never shown:
a refused form comes back with everything typed but them (a URL with a password in it comes
back without the password). A sync asked for here runs as the API's does, in the request
(gitops.spec_repos.sync), and its page then shows what it made; a push's sync runs in the
background (webapp.hooks).

A repository's state is a word beside its colour, green only when its last sync deployed
every spec file: "Failing" (a fetch that failed, or spec files with problems) and "Behind"
(a rewritten history, nothing deployed until someone syncs it as a whole) are red, with why.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, redirect, request, url_for

from contract.errors import InvalidRequest
from gitops import commit_status, egress, spec_repo_settings, spec_repos
from gitops.dashboard import Word
from gitops.models import SpecRepo, SpecSync
from gitops.spec_changes import DEFAULT_GLOBS
from webapp.api.spec_repos import webhook_url
from webapp.auth import requires
from webapp.pages.admin import (
    _REFUSALS,
    Refusal,
    _confirmed,
    _done,
    _not_confirmed,
    _page,
    _refused,
    _shown_once,
)
from webapp.pages.blueprint import bp
from webapp.plane import context
from webapp.query_parameters import INT_MAX, WholeNumber

SYNC_PAGE = 20
TRIGGER = "dashboard"  # what a sync asked for here says moved it
# what a refused form shows again; a password, an ssh key and its passphrase never go back to the browser
KEPT_FIELDS = ("name", "url", "branch", "globs", "username", "known_hosts", "password_file", "ssh_key_file",
               "commit_status")
_BEFORE = WholeNumber(high=INT_MAX)

REPO_WORDS = {
    "new": Word("Never synced", "quiet", "no sync has run yet"),
    "synced": Word("Synced", "ok"),
    "failing": Word("Failing", "bad"),
    "behind": Word("Behind", "bad"),
}
SYNC_WORDS = {
    "queued": Word("Queued", "quiet"),
    "running": Word("Running", "busy"),
    "deployed": Word("Deployed", "ok"),
    "unchanged": Word("Unchanged", "quiet", "every spec file was deployed as it is already"),
    "partial": Word("Partly deployed", "bad", "some spec files had problems; the others were deployed"),
    "refused": Word("Refused", "bad", "nothing was deployed"),
    "failed": Word("Failed", "bad", "nothing was deployed"),
}


def repo_word(repo: SpecRepo) -> Word:
    """The repository's state as a person reads it; failing and behind carry their reason."""
    word = REPO_WORDS.get(repo.state, Word(repo.state, "quiet"))
    return Word(word.text, word.tone, repo.last_error or word.detail)


@dataclass(frozen=True)
class MadeVersion:
    """A version a sync made, with where its page is."""

    app: str  # cluster:workspace/app
    number: int
    action: str
    cluster: str
    workspace: str
    name: str


@dataclass(frozen=True)
class SyncRow:
    run: SpecSync
    word: Word
    made: list[MadeVersion]
    unchanged: int  # spec files deployed as they were: no version


def sync_row(run: SpecSync) -> SyncRow:
    made, unchanged = [], 0
    for version in run.versions or ():
        if version.get("unchanged"):
            unchanged += 1
            continue
        cluster, _, rest = version["app"].partition(":")
        workspace, _, name = rest.partition("/")
        made.append(MadeVersion(version["app"], version["number"], version["action"], cluster, workspace, name))
    return SyncRow(run, SYNC_WORDS.get(run.state, Word(run.state, "quiet")), made, unchanged)


# --- what the forms send ------------------------------------------------------------------------------


def _text(name: str) -> str:
    """A field as typed; a textarea's lines arrive ending in CRLF (HTML's form encoding)."""
    return request.form.get(name, "").replace("\r\n", "\n").strip()


def _globs(text: str) -> list[str]:
    """One path glob a line; none: every .yaml and .yml file, as the API's default."""
    return [line.strip() for line in text.splitlines() if line.strip()] or list(DEFAULT_GLOBS)


def _credentials() -> dict[str, str] | None:
    """The credentials typed (https: username, password or its file; ssh: key or its file, passphrase, known
    hosts), or None.

    A password or passphrase is taken as typed, spaces and all; a key and its known hosts as
    the files they were pasted from, ending in a newline."""
    typed = {"username": _text("username"), "password": request.form.get("password", ""),
             "ssh_passphrase": request.form.get("ssh_passphrase", ""), "password_file": _text("password_file"),
             "ssh_key_file": _text("ssh_key_file")}
    for key in ("ssh_key", "known_hosts"):
        typed[key] = f"{_text(key)}\n" if _text(key) else ""
    return {key: value for key, value in typed.items() if value} or None


def _kept() -> dict:
    """What a refused form shows again: everything typed but the secrets, the URL without a password."""
    kept = {name: _text(name) for name in KEPT_FIELDS}
    kept["url"] = egress.redact_url(kept["url"]) or ""
    kept["prune"] = request.form.get("prune") == "yes"
    return kept


# --- the list and registering -------------------------------------------------------------------------


@bp.get("/admin/spec-repos")
@requires("cluster.read")
def admin_spec_repos():
    ctx = context()
    rows = [(repo, repo_word(repo), webhook_url(repo)) for repo in spec_repos.list_repos(ctx)]
    return _page("admin_spec_repos.html", rows=rows, may_register=ctx.principal.can_anywhere("cluster.update"),
                 redact=egress.redact_url)


def _register_page(ctx, refusal: Refusal | None = None, form: dict | None = None):
    return _page("admin_spec_repo_register.html", refusal, form=form or {}, default_globs=DEFAULT_GLOBS,
                 status_modes=commit_status.MODES)


@bp.get("/admin/register-spec-repo")
@requires("cluster.update")
def admin_spec_repo_form():
    return _register_page(context())


@bp.post("/admin/register-spec-repo")
@requires("cluster.update")
def admin_register_spec_repo():
    ctx = context()
    try:
        new = spec_repos.register(ctx, _text("name"), _text("url"), branch=_text("branch") or "main",
                                  globs=_globs(_text("globs")), prune=request.form.get("prune") == "yes",
                                  credentials=_credentials(), commit_status=_text("commit_status") or "auto")
    except _REFUSALS as exc:
        return _refused(ctx, exc, _register_page, form=_kept())
    ctx.session.commit()
    return _shown_once("admin_spec_repo_registered.html", repo=new.repo, secret=new.webhook_secret,
                       webhook_url=webhook_url(new.repo), may_bind=ctx.principal.can_anywhere("binding.manage"))


# --- a repository -------------------------------------------------------------------------------------


def _repo_page(ctx, repo: SpecRepo, refusal: Refusal | None = None, form: dict | None = None,
               before: int | None = None):
    runs = spec_repo_settings.list_syncs(ctx, repo, limit=SYNC_PAGE + 1, before_id=before)
    older = runs[SYNC_PAGE - 1].id if len(runs) > SYNC_PAGE else None
    return _page("admin_spec_repo.html", refusal, repo=repo, word=repo_word(repo), webhook_url=webhook_url(repo),
                 redact=egress.redact_url, bindings=spec_repo_settings.repo_bindings(ctx, repo),
                 syncs=[sync_row(run) for run in runs[:SYNC_PAGE]], older=older, paged=before is not None,
                 form=form or {"branch": repo.branch, "globs": "\n".join(repo.globs), "prune": repo.prune,
                               "commit_status": repo.commit_status},
                 statuses_to=commit_status.provider_for(repo), status_modes=commit_status.MODES,
                 may_change=ctx.principal.can_anywhere("cluster.update"),
                 may_bind=ctx.principal.can_anywhere("binding.manage"))


@bp.get("/admin/spec-repos/<repo>")
@requires("cluster.read")
def admin_spec_repo(repo: str):
    ctx = context()
    return _repo_page(ctx, spec_repos.get_repo(ctx, repo), before=_BEFORE.parse("before", request.args.get("before")))


def _setting_changes(repo: SpecRepo) -> dict:
    """The settings the form changes (gitops.spec_repo_settings.SETTINGS): only those that differ."""
    typed = {"branch": _text("branch"), "globs": _globs(_text("globs")), "prune": request.form.get("prune") == "yes",
             "commit_status": _text("commit_status") or repo.commit_status}
    changes = {key: value for key, value in typed.items() if value != getattr(repo, key)}
    credentials = _credentials()
    if request.form.get("clear_credentials") == "yes":
        if credentials:
            raise InvalidRequest("either remove the credentials or give new ones, not both")
        changes["credentials"] = None
    elif credentials:
        changes["credentials"] = credentials
    return changes


@bp.post("/admin/spec-repos/<repo>")
@requires("cluster.update")
def admin_update_spec_repo(repo: str):
    ctx = context()
    row = spec_repos.get_repo(ctx, repo)
    try:
        changes = _setting_changes(row)
        if changes:
            spec_repo_settings.update_repo(ctx, row, changes)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _repo_page, row, form=_kept())
    if not changes:
        flash("Nothing to save: the settings are as they were.")
        return redirect(url_for("pages.admin_spec_repo", repo=repo))
    return _done(ctx, f'Spec repository "{repo}" saved ({", ".join(sorted(changes))}); the next sync follows it.',
                 "pages.admin_spec_repo", repo=repo)


def _sync_summary(run: SpecSync) -> str:
    row = sync_row(run)
    said = f"Sync {run.id}: {row.word.text.lower()}"
    if run.new:
        said += f" at {run.new[:12]}"
    if row.made:
        said += f"; {len(row.made)} version(s) made"
    if run.problems:
        said += f"; {len(run.problems)} problem(s), listed with the sync below"
    return said + "."


@bp.post("/admin/spec-repos/<repo>/sync")
@requires("cluster.update")
def admin_sync_spec_repo(repo: str):
    ctx = context()
    row = spec_repos.get_repo(ctx, repo)
    whole = request.form.get("whole") == "yes"
    if whole and not _confirmed():
        return _repo_page(ctx, row, _not_confirmed("deploy every spec file of the branch's tip as it is"))
    run = spec_repos.sync(ctx, row, trigger=TRIGGER, whole=whole)
    return _done(ctx, _sync_summary(run), "pages.admin_spec_repo", repo=repo)


def _delete_page(ctx, repo: SpecRepo, refusal: Refusal | None = None):
    return _page("admin_spec_repo_delete.html", refusal, repo=repo,
                 bindings=spec_repo_settings.repo_bindings(ctx, repo))


@bp.get("/admin/spec-repos/<repo>/delete")
@requires("cluster.update")
def admin_spec_repo_delete(repo: str):
    ctx = context()
    return _delete_page(ctx, spec_repos.get_repo(ctx, repo))


@bp.post("/admin/spec-repos/<repo>/delete")
@requires("cluster.update")
def admin_delete_spec_repo(repo: str):
    ctx = context()
    row = spec_repos.get_repo(ctx, repo)
    if not _confirmed():
        return _delete_page(ctx, row, _not_confirmed("delete this spec repository"))
    try:
        spec_repos.delete_repo(ctx, row)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _delete_page, row)
    return _done(ctx, f'Spec repository "{repo}" deleted, with its role bindings; the apps it deployed stay.',
                 "pages.admin_spec_repos")


__all__ = ["repo_word", "sync_row", "REPO_WORDS", "SYNC_WORDS", "SyncRow", "MadeVersion"]
