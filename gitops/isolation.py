"""What one workspace may claim in a cluster it shares with others: secret paths and route hosts.

The workspaces of a cluster share its secret store and its gateway. Left alone, an editor of
one workspace could read another's secrets (an ExternalSecret names any store path) or take
its traffic (a route for a host it serves). Two rules stop that; the deploy service checks
both where it plans a deploy (``gitops.deploy.plan_specs``), so deploy, dry run, promote and
rollback all pass through them, each spec against its own target workspace:

============  ===========================================  =====================================
what          a spec in workspace W may use it when        who widens it
============  ===========================================  =====================================
secret path   it lies under ``W/``, or an entry of W's     a cluster-admin (cluster.update):
              ``secret_paths`` or of its cluster's         ``set_workspace_secret_paths``,
              ``secret_paths`` permits it                  ``set_cluster_secret_paths``
route host    no other workspace of the cluster holds it;  a cluster-admin moves or releases a
              the first deploy that routes it claims it    claim (``move_claim``,
              for W, and W keeps it after its apps go      ``release_claim``)
============  ===========================================  =====================================

Secret paths. ``tfy-secret://<tenant>:<group>:<key>`` is the store path ``<tenant>/<group>``
(renderer.spec), so it always needs an entry. An entry ending in ``/`` permits every path
below it (``shared/`` permits ``shared/db``, not ``sharedx/db``); one without permits that
one path (``acme/ml-models``). Entries and references have no ``.`` or ``..`` segments, so a
path cannot climb out of the prefix that permitted it. The workspace-admin, who may otherwise
change the workspace, may not change its ``secret_paths``: that would let it grant itself
any secret.

Route hosts. A host is claimed by the Version's intent transaction, in lowercase, so it
compares case-insensitively. The unique key (cluster, host) makes exact claims race-free: of
two workspaces claiming one host at once, the loser's INSERT fails, it reads the claim again
and is refused (or goes on, when the winner is its own workspace). A wildcard host
``*.example.com`` matches every name below ``example.com`` at any depth (Istio's and the
Gateway API's suffix match), so it overlaps those names: a wildcard is refused while another
workspace holds a name below it, and a name while another holds a wildcard above it. Overlaps
are checked when the deploy is planned (the unique key cannot see them), so two workspaces
racing for a wildcard and a name under it, within the same moment, can both win; exact hosts
cannot. Moving a claim does not touch the old owner's apps: their routes stay until their next
deploy, which is then refused while it still routes the host; and while they stay, the new
owner's routes that would take the same requests are refused naming them. A claim is per
workspace; which app takes which requests of a host, whatever its workspace, is
gitops.routes: two apps whose routes take the same requests are refused there.

Cost on the deploy path: the secret check reads only the workspace and cluster rows the deploy
has already loaded; the host check is one SELECT for every host a batch routes (none when it
routes none), and a claim an INSERT the first time a host is routed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from contract.errors import InvalidRequest, NotFound, Problem, SpecError
from renderer.render import Rendering
from renderer.spec import Spec, parse_secret_ref, port_exposed
from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gitops.audit import record
from gitops.models import Cluster, HostClaim, Workspace, utcnow
from gitops.policy import Scope
from gitops.service_context import Context

MAX_SECRET_PATHS = 100
_SEGMENT = r"[A-Za-z0-9._-]+"
_SECRET_PATH_ENTRY = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*/?$")
# The deploy spec schema's host grammar (ports/host), wildcard included.
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


# --- secret paths ---------------------------------------------------------------------------------


def check_secret_paths(value: Any) -> list[str]:
    """A ``secret_paths`` list as stored (sorted, without repeats); InvalidRequest says what is wrong."""
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise InvalidRequest('secret_paths must be a list of secret-store paths, such as ["shared/", "acme/ml-models"]')
    if len(value) > MAX_SECRET_PATHS:
        raise InvalidRequest(f"secret_paths holds at most {MAX_SECRET_PATHS} entries; use a shorter prefix")
    for entry in value:
        segments = entry.rstrip("/").split("/")
        if len(entry) > 255 or not _SECRET_PATH_ENTRY.match(entry) or any(s in (".", "..") for s in segments):
            raise InvalidRequest(
                f"secret_paths entry {entry!r} is not a secret path: use segments of letters, digits, '.', '_' and "
                "'-' separated by '/', none of them empty, '.' or '..'; end it with '/' to permit every path below")
    return sorted(set(value))


def secret_path_allowed(path: str, workspace: Workspace) -> bool:
    """Whether a spec in ``workspace`` may reference the store path ``path``."""
    entries = (f"{workspace.name}/", *workspace.secret_paths, *workspace.cluster.secret_paths)
    return any(path.startswith(entry) if entry.endswith("/") else path == entry for entry in entries)


def secret_problems(spec: Spec, workspace: Workspace) -> list[Problem]:
    """The spec's secret references that its workspace may not use, each located at its env value."""
    problems = []
    for name, value in (spec.body.get("env") or {}).items():
        ref = parse_secret_ref(value)  # the spec is valid: a secret-like value is a well-formed reference
        if ref is None or secret_path_allowed(ref.path, workspace):
            continue
        problems.append(spec.problem(
            f'env "{name}": secret path "{ref.path}" is outside workspace "{workspace.name}" (its secrets live '
            f'under "{workspace.name}/"); ask a cluster-admin to add it to the workspace\'s secret_paths',
            ("env", name)))
    return problems


def set_workspace_secret_paths(ctx: Context, workspace: Workspace, value: Any) -> None:
    """Replace the workspace's own secret path entries: a cluster-admin's call, never the workspace-admin's."""
    cluster = workspace.cluster
    ctx.principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id),
                      f'cluster "{cluster.name}" (secret_paths of workspace "{workspace.name}")')
    paths = check_secret_paths(value)
    if paths != (workspace.secret_paths or []):
        record(ctx.session, ctx.principal, "workspace.set-secret-paths", f"{cluster.name}:{workspace.name}",
               {"before": workspace.secret_paths or [], "after": paths})
        workspace.secret_paths = paths


def set_cluster_secret_paths(ctx: Context, cluster: Cluster, value: Any) -> None:
    """Replace the secret path entries every workspace of the cluster may use."""
    ctx.principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    paths = check_secret_paths(value)
    if paths != (cluster.secret_paths or []):
        record(ctx.session, ctx.principal, "cluster.set-secret-paths", cluster.name,
               {"before": cluster.secret_paths or [], "after": paths})
        cluster.secret_paths = paths


# --- route hosts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A host one spec routes, and where the spec asks for it (its host, or the expose of a derived one)."""

    host: str
    path: tuple


def routes_of(rendering: Rendering) -> list[Route]:
    """Every host the rendered app routes, read from its VirtualService or HTTPRoutes."""
    hosts: set[str] = set()
    for obj in rendering.objects:
        if obj["kind"] == "VirtualService" and set(obj["spec"].get("gateways") or ["mesh"]) != {"mesh"}:
            # a VirtualService bound only to the mesh (a canary's split of its own Service) routes no
            # gateway host; one without gateways is the mesh's too (Istio, VirtualService "gateways")
            hosts.update(obj["spec"]["hosts"])
        elif obj["kind"] == "HTTPRoute":
            hosts.update(obj["spec"]["hostnames"])
    if not hosts:
        return []
    exposed = [(index, port) for index, port in enumerate(rendering.spec.body.get("ports") or []) if port_exposed(port)]
    routes = []
    for host in sorted(hosts):
        written = [index for index, port in exposed if (port.get("host") or "").lower() == host.lower()]
        # a host no port names is the derived <app>-<workspace>.<base_domain> of a port without one
        path = ("ports", written[0], "host") if written else next(
            (("ports", index, "expose") for index, port in exposed if not port.get("host")), ("ports",))
        routes.append(Route(host.lower(), path))
    return routes


def _overlap(a: str, b: str) -> bool:
    """Whether the hosts ``a`` and ``b`` can match one request's host name."""
    return a == b or _below(a, b) or _below(b, a)


def _below(host: str, wildcard: str) -> bool:
    return wildcard.startswith("*.") and host.endswith(wildcard[1:])


def _candidates(host: str) -> list[str]:
    """The claims that can overlap ``host`` by name: itself and each wildcard above it."""
    labels = host.removeprefix("*.").split(".")
    return [host, *(f"*.{'.'.join(labels[i:])}" for i in range(1, len(labels) - 1))]


_CLAIMS, _WORKSPACES = HostClaim.__table__, Workspace.__table__
_CLAIMS_OF_HOSTS = (
    select(_CLAIMS.c.cluster_id, _CLAIMS.c.host, _CLAIMS.c.workspace_id, _WORKSPACES.c.name)
    .join(_WORKSPACES, _WORKSPACES.c.id == _CLAIMS.c.workspace_id)
    .where(_CLAIMS.c.cluster_id.in_(bindparam("cluster_ids", expanding=True))))
_BY_HOST = _CLAIMS.c.host.in_(bindparam("hosts", expanding=True))
_CLAIMS_BY_HOST = _CLAIMS_OF_HOSTS.where(_BY_HOST)
_INSERT_CLAIM = _CLAIMS.insert()


def _existing_claims(session: Session, cluster_ids: set[int], routes: Iterable[Route]) -> list[Any]:
    """Claims in these clusters that can overlap one of ``routes``: one statement."""
    hosts = sorted({candidate for route in routes for candidate in _candidates(route.host)})
    wildcards = sorted({route.host[1:] for route in routes if route.host.startswith("*.")})
    statement = _CLAIMS_BY_HOST
    if wildcards:  # rare: a wildcard overlaps every name below it, which only a suffix match finds
        statement = _CLAIMS_OF_HOSTS.where(or_(_BY_HOST, *(_CLAIMS.c.host.endswith(suffix, autoescape=True)
                                                          for suffix in wildcards)))
    return session.execute(statement, {"cluster_ids": sorted(cluster_ids), "hosts": hosts}).all()


def _taken_message(host: str, claim_host: str, owner: str) -> str:
    held = f'host "{host}"' if claim_host == host else f'host "{host}" (it overlaps "{claim_host}")'
    return (f'{held} is routed by workspace "{owner}" of this cluster; use another host, or ask a '
            f'cluster-admin to move the claim to this workspace (PUT /api/v1/clusters/<cluster>/hosts/{claim_host})')


def host_problems(session: Session, planned: Sequence[tuple[Workspace, Rendering]]
                  ) -> tuple[list[Problem], list[list[Route]]]:
    """Problems of the routes other workspaces hold, and for each (workspace, rendering) the routes to claim.

    One statement for the whole batch, none when it routes no host. Two specs of the batch
    routing one host from different workspaces are refused like a claim: the first one keeps it.
    """
    routes = [routes_of(rendering) for _, rendering in planned]
    if not any(routes):
        return [], [[] for _ in planned]
    claims = _existing_claims(session, {workspace.cluster_id for workspace, _ in planned},
                              [route for item_routes in routes for route in item_routes])
    held: list[tuple[int, str, int, str]] = [(row.cluster_id, row.host, row.workspace_id, row.name) for row in claims]
    problems: list[Problem] = []
    to_claim: list[list[Route]] = []
    for (workspace, rendering), item_routes in zip(planned, routes):
        mine = []
        for route in item_routes:
            overlapping = [(host, owner) for cluster_id, host, owner_id, owner in held
                           if cluster_id == workspace.cluster_id and owner_id != workspace.id
                           and _overlap(host, route.host)]
            if overlapping:
                claim_host, owner = overlapping[0]
                problems.append(rendering.spec.problem(_taken_message(route.host, claim_host, owner), route.path))
                continue
            if not any(cluster_id == workspace.cluster_id and host == route.host
                       for cluster_id, host, _, _ in held):
                mine.append(route)
                held.append((workspace.cluster_id, route.host, workspace.id, workspace.name))
        to_claim.append(mine)
    return problems, to_claim


def claim_hosts(session: Session, spec: Spec, workspace: Workspace, routes: Sequence[Route]) -> None:
    """Claim ``routes`` for the workspace, in the caller's transaction; SpecError when another won one.

    Each INSERT runs in a savepoint: one that loses the unique key to a concurrent deploy
    leaves the transaction usable, and the claim is read again to decide. A claim released
    between the two tries again.
    """
    for route in routes:
        for attempt in range(3):
            try:
                with session.begin_nested():
                    session.execute(_INSERT_CLAIM, {
                        "cluster_id": workspace.cluster_id, "workspace_id": workspace.id, "host": route.host,
                        "claimed_by": f"{workspace.name}/{spec.name}", "claimed_at": utcnow()})
                break
            except IntegrityError:
                owner = session.execute(_CLAIMS_BY_HOST, {"cluster_ids": [workspace.cluster_id],
                                                          "hosts": [route.host]}).first()
                if owner is not None and owner.workspace_id == workspace.id:
                    break  # a concurrent deploy of this workspace claimed it first
                if owner is not None:
                    raise SpecError([spec.problem(_taken_message(route.host, route.host, owner.name),
                                                  route.path)]) from None
                if attempt == 2:
                    raise


# --- what a cluster-admin does with claims --------------------------------------------------------


def check_host(host: Any) -> str:
    """A host as claims store it (lowercase); InvalidRequest when it is no host a spec could route."""
    if not isinstance(host, str) or len(host) > 253 or not _HOST.match(host.lower()):
        raise InvalidRequest(f"{host!r} is not a host: use a DNS name such as api.example.com (or *.example.com)")
    return host.lower()


def list_claims(ctx: Context, cluster: Cluster) -> list[tuple[HostClaim, str]]:
    """The cluster's claims with their workspaces' names, by host."""
    ctx.principal.require("cluster.read", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    return [(claim, name) for claim, name in ctx.session.execute(
        select(HostClaim, Workspace.name).join(Workspace, Workspace.id == HostClaim.workspace_id)
        .where(HostClaim.cluster_id == cluster.id).order_by(HostClaim.host))]


def _claim(session: Session, cluster: Cluster, host: str) -> HostClaim | None:
    return session.scalar(select(HostClaim).where(HostClaim.cluster_id == cluster.id, HostClaim.host == host))


def move_claim(ctx: Context, cluster: Cluster, host: Any, workspace_name: Any) -> tuple[HostClaim, bool]:
    """Give ``host`` to a workspace of the cluster (claiming it when nobody holds it); (claim, created)."""
    session, principal = ctx.session, ctx.principal
    principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    host = check_host(host)
    workspace = session.scalar(select(Workspace).where(Workspace.cluster_id == cluster.id,
                                                       Workspace.name == workspace_name))
    if workspace is None:
        raise NotFound(f'no workspace "{workspace_name}" in cluster "{cluster.name}"')
    claim = _claim(session, cluster, host)
    created = claim is None
    before = None
    if claim is None:
        claim = HostClaim(cluster_id=cluster.id, host=host)
        session.add(claim)
    else:
        before = session.scalar(select(Workspace.name).where(Workspace.id == claim.workspace_id))
    claim.workspace_id, claim.claimed_by, claim.claimed_at = workspace.id, principal.name, utcnow()
    session.flush()
    record(session, principal, "host-claim.move", f"{cluster.name}:{host}",
           {"from": before, "to": workspace.name})
    return claim, created


def release_claim(ctx: Context, cluster: Cluster, host: Any) -> None:
    """Forget the claim on ``host``: the next workspace to route it claims it."""
    session, principal = ctx.session, ctx.principal
    principal.require("cluster.update", Scope(cluster.tenant_id, cluster.id), f'cluster "{cluster.name}"')
    host = check_host(host)
    claim = _claim(session, cluster, host)
    if claim is None:
        raise NotFound(f'nobody holds host "{host}" in cluster "{cluster.name}"')
    owner = session.scalar(select(Workspace.name).where(Workspace.id == claim.workspace_id))
    record(session, principal, "host-claim.release", f"{cluster.name}:{host}", {"from": owner})
    session.delete(claim)


__all__ = [
    "Route",
    "check_secret_paths",
    "secret_path_allowed",
    "secret_problems",
    "set_workspace_secret_paths",
    "set_cluster_secret_paths",
    "routes_of",
    "host_problems",
    "claim_hosts",
    "check_host",
    "list_claims",
    "move_claim",
    "release_claim",
]
