"""The control plane's plan of a merge request: what deploying spec files would change, writing nothing.

The specs go through what a deploy starts from (gitops.deploy.plan_specs: each spec's
workspace found and authorized, rendered with its cluster's profile as the agent's live facts
adjust it, held to the workspace's isolation and to the routes of the cluster's other apps),
with ``app.read`` as the permission: a plan shows what a deploy would do, and does none of it.
Then gitops.plan compares the renderings with each cluster repository's tip. Nothing is
written: no version, no audit entry, no commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from contract.errors import SpecError
from renderer.render import Rendering

from gitops import plan
from gitops.deploy import plan_specs
from gitops.models import Cluster
from gitops.service_context import Context


def plan_files(ctx: Context, files: Iterable[tuple[str, str]], *, prune: bool = False) -> dict:
    """The plan document (gitops.plan) of (name, text) spec files; SpecError with every file's problems."""
    specs, problems = plan.load_files(files)
    try:
        planned = plan_specs(ctx, specs, permission="app.read")
    except SpecError as exc:
        problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    ctx.session.commit()  # the reads are done; on SQLite their transaction holds the write lock
    by_cluster: dict[int, tuple[Cluster, list[Rendering]]] = {}
    for item in planned:
        by_cluster.setdefault(item.cluster.id, (item.cluster, []))[1].append(item.rendering)
    return plan.plan(((cluster.name, ctx.repos.open(cluster).snapshot(), renderings)
                      for cluster, renderings in by_cluster.values()), prune)


__all__ = ["plan_files"]
