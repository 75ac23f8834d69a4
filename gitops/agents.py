"""The clusters' agents: who is calling, their heartbeats, and what they say the cluster can run.

An agent calls with its cluster's token; the previous token is accepted for a while after a
rotation, so an agent can be switched to the new one without a gap. Each heartbeat records what
the agent last saw of the cluster (its Kubernetes version, the CRDs installed), which
``live_facts`` turns into what specs are checked against beside the cluster profile, and
answers how many commands wait for the agent (gitops.commands hands them out). Whether an agent
is there at all (online, stale, offline) is part of the status people read (gitops.status).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, lazyload

from gitops.clusters import token_matches
from gitops.models import Cluster, Tenant, utcnow
from gitops.status import StatusSettings, pending_commands
from contract.addons import ADDON_CRDS, ARGOCD, crd_of
from contract.errors import Problem
from renderer.kube import is_core, supported_kubernetes_versions
from renderer.profiles import ClusterProfile
from renderer.render import Rendering

# --- who is calling, and what they last said --------------------------------------------------


def agent_cluster(session: Session, tenant: str, cluster: str, token: str | None, settings: StatusSettings,
                  now: dt.datetime | None = None) -> Cluster | None:
    """The cluster whose agent token this is, or None (unknown cluster and wrong token look alike).

    The previous token is accepted for ``token_grace`` seconds after a rotation, so an agent can be
    switched to the new token without a gap.
    """
    # every agent call asks: the profile and the last heartbeat load only where they are read
    row = session.scalar(select(Cluster).join(Tenant, Cluster.tenant_id == Tenant.id)
                         .where(Tenant.name == tenant, Cluster.name == cluster)
                         .options(defer(Cluster.profile_text), defer(Cluster.agent_info), lazyload(Cluster.tenant)))
    if row is None or not token:
        return None
    if token_matches(token, row.agent_token_hash):
        return row
    now = now or utcnow()
    rotated = row.agent_token_rotated_at
    if (rotated is not None and now - rotated <= dt.timedelta(seconds=settings.token_grace)
            and token_matches(token, row.previous_agent_token_hash)):
        return row
    return None


def heartbeat(session: Session, cluster: Cluster, beat: Any, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    cluster.agent_info = {**dataclasses.asdict(beat), "received_at": now.isoformat()}
    cluster.last_seen_at = now
    return {"commands": pending_commands(session, cluster)}


# --- what the agent says the cluster can run --------------------------------------------------------


@dataclass(frozen=True)
class LiveFacts:
    """A cluster as its agent last described it: what specs are checked against, beside its profile."""

    cluster: str
    reported_at: str
    kubernetes_version: str | None  # "1.31": the agent's /version, when the renderer has that version's schemas
    reported_version: str | None  # the gitVersion as reported ("v1.31.4-eks-...")
    crds: frozenset[str] | None  # None: the agent could not list them (it always sees ArgoCD's own)

    def apply_to(self, profile: ClusterProfile) -> ClusterProfile:
        """The profile, validating against the Kubernetes version the cluster really runs."""
        if self.kubernetes_version is None or self.kubernetes_version == profile.kubernetes_version:
            return profile
        return dataclasses.replace(profile, kubernetes_version=self.kubernetes_version)

    def problems(self, rendering: Rendering) -> list[Problem]:
        """What the rendering needs that the cluster does not have: custom resources whose CRD the
        agent did not find. The profile may say an addon is there; the cluster is what runs it."""
        if self.crds is None:
            return []
        missing = {}
        for obj in rendering.objects:
            api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            if is_core(api_version):
                continue
            crd = crd_of(api_version, kind)
            if crd not in self.crds:
                missing.setdefault(crd, kind)
        return [rendering.spec.problem(
            f'cluster "{self.cluster}" cannot run a {kind}: its agent reported at {self.reported_at[:19]}Z that '
            f'the CRD {crd} is not installed, although the cluster profile lists the addon; install it on '
            f'the cluster, or change the spec or the profile') for crd, kind in sorted(missing.items())]


_GIT_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def live_facts(cluster: Cluster) -> LiveFacts | None:
    """What the cluster's agent last reported in a heartbeat, or None when it never did."""
    info = cluster.agent_info or {}
    if not info.get("received_at"):
        return None
    reported = info.get("kubernetes_version") or None
    match = _GIT_VERSION.match(reported or "")
    version = f"{match.group(1)}.{int(match.group(2))}" if match else None
    if version not in supported_kubernetes_versions():
        version = None
    crds = info.get("crds")
    known = isinstance(crds, list) and ADDON_CRDS[ARGOCD][0] in crds
    return LiveFacts(cluster.name, info["received_at"], version, reported, frozenset(crds) if known else None)


__all__ = ["LiveFacts", "agent_cluster", "heartbeat", "live_facts"]
