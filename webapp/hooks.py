"""Push webhooks of spec repositories: ``POST /hooks/<tenant>/<repository>``.

Public: a git provider sends no Shipyard credentials. The repository's webhook secret is the
credential: gitops.push_hooks checks the provider's signature (or token) over the raw body in
constant time. An unknown tenant or repository is answered as a bad signature is (401), so the
route tells nobody which repositories exist.

A verified push to the tracked branch asks for a sync (gitops.spec_repos.enqueue: a queued row,
committed, so a restart loses nothing) and wakes this process's worker (gitops.spec_worker),
answered at once with 202; the deploys happen in the background. A delivery taken already is
answered 200 with nothing done again, as are a push to another branch, a ping, and other events.

Every verified delivery records its provider on the repository (``SpecRepo.provider``), where
commit statuses go by default (gitops.commit_status). A push whose payload names repository
URLs, none of them the registered one (gitops.push_hooks.names_repository), still asks for a
sync, harmless since a sync fetches only the registered URL (and a mirror's webhook works), but
its answer carries a ``warning`` naming both, for the provider's delivery log to show the
webhook set on the wrong repository.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, request
from sqlalchemy import select

from gitops import egress, push_hooks, spec_repos
from gitops.models import SpecRepo, Tenant
from webapp.auth import csrf, public
from webapp.plane import db_session, plane

log = logging.getLogger(__name__)

bp = Blueprint("hooks", __name__)
SHOWN_URLS = 4  # of a payload's repository URLs, named in a warning


@bp.post("/hooks/<tenant>/<repository>")
@public("a git provider's push webhook, authenticated by the repository's webhook secret (a signature over the body)")
def push_hook(tenant: str, repository: str):
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH bounds what is read
    session = db_session()
    repo = session.scalar(select(SpecRepo).join(Tenant, SpecRepo.tenant_id == Tenant.id)
                          .where(Tenant.name == tenant, SpecRepo.name == repository))
    secret = plane().repos.open_text(repo.webhook_secret) if repo is not None else None
    provider = push_hooks.verify(request.headers, body, secret)  # no secret: refused like a bad signature
    if repo.provider != provider.value:
        repo.provider = provider.value
        session.commit()
    branch = f"refs/heads/{repo.branch}"
    pushes = [push for push in push_hooks.read_pushes(provider, request.headers, body) if push.ref == branch]
    if not pushes:
        return {"accepted": False, "reason": f"no push to {repo.branch}: nothing to sync"}, 200
    warned = _other_repository(repo, pushes)
    run = spec_repos.enqueue(session, repo, trigger="webhook", delivery=pushes[0].delivery)
    if run is None:
        return {"accepted": False, "reason": "this delivery was taken already", **warned}, 200
    plane().spec_worker.wake()
    return {"accepted": True, "sync": run.id, **warned}, 202


def _other_repository(repo: SpecRepo, pushes: list[push_hooks.Push]) -> dict:
    """``{"warning": ...}`` when the pushes name repository URLs and none is the registered one; else {}."""
    urls = sorted({url for push in pushes for url in push.repository_urls})
    if not urls or push_hooks.names_repository(urls, repo.url):
        return {}
    named = ", ".join(egress.redact_url(url)[:200] for url in urls[:SHOWN_URLS])
    warning = (f"this delivery is for {named}, not the registered repository {egress.redact_url(repo.url)}: the "
               "sync fetches only the registered one; check that the webhook is set on that repository")
    log.info("webhook of spec repository %s (tenant %s): %s", repo.name, repo.tenant_id, warning)
    return {"warning": warning}


def init_app(app: Flask) -> None:
    csrf.exempt(bp)  # providers send no CSRF token; the signature authenticates each delivery
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
