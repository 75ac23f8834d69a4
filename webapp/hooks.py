"""Push webhooks of spec repositories: ``POST /hooks/<tenant>/<repository>``.

Public: a git provider sends no Shipyard credentials. The repository's webhook secret is the
credential: gitops.push_hooks checks the provider's signature (or token) over the raw body in
constant time. An unknown tenant or repository is answered as a bad signature is (401), so the
route tells nobody which repositories exist.

A verified push to the tracked branch asks for a sync (gitops.spec_repos.enqueue: a queued row,
committed, so a restart loses nothing) and wakes this process's worker (gitops.spec_worker),
answered at once with 202; the deploys happen in the background. A delivery taken already is
answered 200 with nothing done again, as are a push to another branch, a ping, and other events.
"""

from __future__ import annotations

from flask import Blueprint, Flask, request
from sqlalchemy import select

from gitops import push_hooks, spec_repos
from gitops.models import SpecRepo, Tenant
from webapp.auth import csrf, public
from webapp.plane import db_session, plane

bp = Blueprint("hooks", __name__)


@bp.post("/hooks/<tenant>/<repository>")
@public("a git provider's push webhook, authenticated by the repository's webhook secret (a signature over the body)")
def push_hook(tenant: str, repository: str):
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH bounds what is read
    session = db_session()
    repo = session.scalar(select(SpecRepo).join(Tenant, SpecRepo.tenant_id == Tenant.id)
                          .where(Tenant.name == tenant, SpecRepo.name == repository))
    secret = plane().repos.open_text(repo.webhook_secret) if repo is not None else None
    provider = push_hooks.verify(request.headers, body, secret)  # no secret: refused like a bad signature
    branch = f"refs/heads/{repo.branch}"
    pushes = [push for push in push_hooks.read_pushes(provider, request.headers, body) if push.ref == branch]
    if not pushes:
        return {"accepted": False, "reason": f"no push to {repo.branch}: nothing to sync"}, 200
    run = spec_repos.enqueue(session, repo, trigger="webhook", delivery=pushes[0].delivery)
    if run is None:
        return {"accepted": False, "reason": "this delivery was taken already"}, 200
    plane().spec_worker.wake()
    return {"accepted": True, "sync": run.id}, 202


def init_app(app: Flask) -> None:
    csrf.exempt(bp)  # providers send no CSRF token; the signature authenticates each delivery
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
