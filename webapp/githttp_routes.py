"""Cluster repositories for ArgoCD over git smart HTTP, authorized by each cluster's read token.

``git clone https://x:<read token>@<control plane>/git/<tenant>/<cluster>.git``
(the username is ignored). The protocol itself is in webapp.githttp.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import select

from gitops.clusters import token_matches
from gitops.models import Cluster, Tenant
from webapp.auth import csrf, public
from webapp.githttp import git_http_blueprint
from webapp.plane import db_session


def _resolve(tenant: str, cluster: str, password: str | None) -> Path | None:
    row = db_session().scalar(
        select(Cluster).join(Tenant, Cluster.tenant_id == Tenant.id)
        .where(Tenant.name == tenant, Cluster.name == cluster))
    if row is None or not token_matches(password, row.read_token_hash):
        return None
    return Path(row.repo_path)


def init_app(app: Flask) -> None:
    bp = git_http_blueprint(_resolve)
    csrf.exempt(bp)  # git clients send no CSRF token; the routes are read-only and token-authorized
    app.register_blueprint(bp)
    reason = public("git smart HTTP for ArgoCD: read-only, authorized by the cluster's read token")
    for endpoint, view in app.view_functions.items():
        if endpoint.startswith(f"{bp.name}."):
            reason(view)


__all__ = ["init_app"]
