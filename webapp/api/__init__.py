"""REST API ``/api/v1``: thin views over the gitops services.

Each view parses its input (webapp.api.requests), declares and checks what it
needs (webapp.auth), builds the service Context, calls one service, commits and
shapes the JSON (webapp.api.shapes). The routes are grouped by what they are
about; the OpenAPI document (webapp.openapi) is built from the same route table.

=====================  =============================================================
module                 routes
=====================  =============================================================
``accounts``           /me, /users, /audit, /tenant, /role-bindings, /tokens
``clusters``           /clusters, their workspaces, tokens and host claims
``apps``               /apps: deploy, list, get, delete, versions, diff, rollback, promote
``live``               status of clusters and apps, commands, job runs
``plan``               /plan: what deploying spec files would change, nothing written
``spec_repos``         /spec-repos: register, read, change, sync, delete
``webhooks``           /webhooks: status webhooks, their secrets and deliveries
=====================  =============================================================
"""

from __future__ import annotations

from flask import current_app

from webapp.api import accounts, apps, clusters, live, plan, spec_repos, webhooks  # noqa: F401 - each adds routes to bp
from webapp.api.blueprint import bp
from webapp.auth import public


@bp.get("/openapi.json")
@public("the API's description; it holds no data")
def openapi():
    from webapp.openapi import document

    return document(current_app)


__all__ = ["bp"]
