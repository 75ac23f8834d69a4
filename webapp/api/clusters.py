"""Clusters, their workspaces and the hosts routed in them."""

from __future__ import annotations

from contract.errors import InvalidRequest
from gitops import clusters, isolation, workspaces
from webapp.api.blueprint import bp
from webapp.api.requests import field, json_body, visible_cluster
from webapp.api.shapes import cluster_json, iso, workspace_json
from webapp.auth import requires
from webapp.plane import context

# --- clusters ---------------------------------------------------------------------------------


@bp.get("/clusters")
@requires("cluster.read")
def list_clusters():
    return {"clusters": [cluster_json(c) for c in clusters.list_clusters(context())]}


@bp.post("/clusters")
@requires("cluster.create")
def create_cluster():
    data = json_body()
    ctx = context()
    remote = {key: data[key] for key in clusters.REMOTE_FIELDS if key in data}
    new = clusters.create_cluster(ctx, field(data, "name", str), field(data, "profile", str), remote)
    ctx.session.commit()
    return {**cluster_json(new.cluster), "read_token": new.read_token, "agent_token": new.agent_token}, 201


@bp.get("/clusters/<cluster>")
@requires("cluster.read")
def get_cluster(cluster: str):
    return cluster_json(clusters.get_cluster(context(), cluster))


@bp.patch("/clusters/<cluster>")
@requires("cluster.update")
def update_cluster(cluster: str):
    data = json_body()
    unknown = set(data) - {"profile", "secret_paths", *clusters.REMOTE_FIELDS}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; "
                             "a cluster has profile, remote_url (with remote_username, remote_password, "
                             "remote_ssh_key, remote_ssh_passphrase, remote_known_hosts) and secret_paths")
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    field(data, "profile", str, required=False)
    if "secret_paths" in data:
        isolation.set_cluster_secret_paths(ctx, row, data.pop("secret_paths"))
    if data:
        clusters.update_cluster(ctx, row, data)
    ctx.session.commit()
    return cluster_json(row)


@bp.delete("/clusters/<cluster>")
@requires("cluster.delete")
def delete_cluster(cluster: str):
    """Delete the cluster; its repository is archived in the data directory, never served again."""
    ctx = context()
    archive = clusters.delete_cluster(ctx, clusters.get_cluster(ctx, cluster, "cluster.delete"))  # commits
    return {"deleted": cluster, "repository": "archived" if archive else "absent",
            "archive": ctx.repos.shown(archive) if archive else None}


@bp.post("/clusters/<cluster>/tokens/<kind>")
@requires("cluster.update")
def rotate_cluster_token(cluster: str, kind: str):
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    token = clusters.rotate_token(ctx, row, kind)
    ctx.session.commit()
    return {"cluster": row.name, "kind": kind, "token": token}, 201


# --- workspaces -------------------------------------------------------------------------------


@bp.get("/clusters/<cluster>/workspaces")
@requires("workspace.read")
def list_workspaces(cluster: str):
    ctx = context()
    row = visible_cluster(ctx.session, cluster)
    return {"workspaces": [workspace_json(w) for w in workspaces.list_workspaces(ctx, row)]}


@bp.post("/clusters/<cluster>/workspaces")
@requires("workspace.create")
def create_workspace(cluster: str):
    data = json_body()
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "workspace.create")
    workspace = workspaces.create_workspace(ctx, row, data)
    ctx.session.commit()
    return workspace_json(workspace), 201


@bp.get("/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.read")
def get_workspace(cluster: str, workspace: str):
    return workspace_json(workspaces.find_workspace(context(), cluster, workspace))


@bp.patch("/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.update")
def update_workspace(cluster: str, workspace: str):
    data = json_body()
    unknown = set(data) - {"environment", "labels", "quota", "secret_paths"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    ctx = context()
    row = workspaces.find_workspace(ctx, cluster, workspace, "workspace.update")
    workspaces.update_workspace(ctx, row, data)
    ctx.session.commit()
    return workspace_json(row)


@bp.delete("/clusters/<cluster>/workspaces/<workspace>")
@requires("workspace.delete")
def delete_workspace(cluster: str, workspace: str):
    ctx = context()
    workspaces.delete_workspace(ctx, workspaces.find_workspace(ctx, cluster, workspace, "workspace.delete"))
    ctx.session.commit()
    return "", 204


# --- host claims (gitops.isolation) ----------------------------------------------------------------


def host_claim_json(claim, workspace: str) -> dict:
    return {"host": claim.host, "workspace": workspace, "claimed_by": claim.claimed_by,
            "claimed_at": iso(claim.claimed_at)}


@bp.get("/clusters/<cluster>/hosts")
@requires("cluster.read")
def list_host_claims(cluster: str):
    """The hosts routed in the cluster, each held by one workspace"""
    ctx = context()
    row = clusters.get_cluster(ctx, cluster)
    return {"hosts": [host_claim_json(claim, name) for claim, name in isolation.list_claims(ctx, row)]}


@bp.put("/clusters/<cluster>/hosts/<host>")
@requires("cluster.update")
def move_host_claim(cluster: str, host: str):
    """Give a host to a workspace of the cluster (claim it, or move it from the workspace holding it)"""
    data = json_body()
    ctx = context()
    row = clusters.get_cluster(ctx, cluster, "cluster.update")
    claim, created = isolation.move_claim(ctx, row, host, field(data, "workspace", str))
    ctx.session.commit()
    return host_claim_json(claim, data["workspace"]), 201 if created else 200


@bp.delete("/clusters/<cluster>/hosts/<host>")
@requires("cluster.update")
def release_host_claim(cluster: str, host: str):
    """Release a host: the next workspace to route it claims it"""
    ctx = context()
    isolation.release_claim(ctx, clusters.get_cluster(ctx, cluster, "cluster.update"), host)
    ctx.session.commit()
    return "", 204
