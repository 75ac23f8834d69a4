"""What a request to the API says: its JSON body, its fields, the scope and the app it names.

Every view reads its input through these, so a missing or mistyped field is the same
400 everywhere, and a cluster, workspace or app the caller may not see is as absent
(404) as one that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask import g, request
from sqlalchemy import select
from werkzeug.exceptions import UnsupportedMediaType

from contract.errors import InvalidRequest, NotFound
from gitops import accounts, clusters, reads, workspaces
from gitops.models import Application, Cluster
from gitops.policy import Scope
from webapp.plane import context
from webapp.query_parameters import SOURCES
from webapp.request_text import loads_storable

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def json_body() -> dict:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    data = loads_storable(request.get_data())
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


def field(data: dict, name: str, kind: type | tuple, required: bool = True, default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None:
        if required:
            raise InvalidRequest(f'"{name}" is required')
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidRequest(f'"{name}" must be a {expected}')
    return value


def source_field(data: dict) -> str:
    """What sent a deploy, rollback or promotion: one of SOURCES, as its column (32 characters) holds."""
    source = field(data, "source", str, required=False, default="api")
    if source not in SOURCES:
        raise InvalidRequest(f"source must be one of {', '.join(SOURCES)}")
    return source


def scope_from(data: dict) -> Scope:
    """The scope a body names; a cluster or workspace the caller may not see is as absent as a missing one.

    Otherwise a role binding or token asked for there would be refused (403) where a missing
    one is not found (404), telling the caller what exists outside its scope.
    """
    ctx = context()
    cluster, workspace = field(data, "cluster", str, required=False), field(data, "workspace", str, required=False)
    if cluster and workspace:
        return workspaces.workspace_scope(workspaces.find_workspace(ctx, cluster, workspace))
    if cluster:
        return Scope(ctx.principal.tenant_id, visible_cluster(ctx.session, cluster).id)
    return accounts.resolve_scope(ctx.session, ctx.principal.tenant_id, cluster, workspace)


def visible_cluster(session, name: str) -> Cluster:
    row = session.scalar(select(Cluster).where(Cluster.tenant_id == g.principal.tenant_id, Cluster.name == name))
    # a cluster the caller has no role in is as absent as one that does not exist
    if row is None or not clusters.sees_cluster(g.principal, row):
        raise NotFound(f'no cluster "{name}"')
    return row


def app_row(cluster: str, workspace: str, app: str, permission: str = "app.read") -> Application:
    return reads.get_app(context(), cluster, workspace, app, permission)
