"""The clusters' agents: who is calling, their heartbeats, and what they say the cluster can run.

An agent calls with its cluster's token; the previous token is accepted for a while after a
rotation, so an agent can be switched to the new one without a gap. Each heartbeat records what
the agent last saw of the cluster (its Kubernetes version, the CRDs installed, the API versions and
releases of its addons), which
``live_facts`` turns into what specs are checked against beside the cluster profile, and
answers how many commands wait for the agent (gitops.commands hands them out). Whether an agent
is there at all (online, stale, offline) is part of the status people read (gitops.status); every
call of an agent is recorded by ``seen``, which tells subscribers when a cluster that was offline
is back (gitops.webhook_events).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, lazyload

from gitops import webhook_events
from gitops.clusters import token_matches
from gitops.models import Cluster, Tenant, utcnow
from gitops.status import StatusSettings, pending_commands
from contract.addons import (ADDON_CRDS, ADDON_PROJECTS, ARGOCD, OLDEST_RELEASES, RELEASE_CHANGES, Release,
                             addon_groups, addon_of_crd, crd_of, parse_release, release_text)
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


def seen(session: Session, cluster: Cluster, settings: StatusSettings, now: dt.datetime | None = None) -> None:
    """A call of the cluster's agent, now: its last_seen_at, and cluster.online when it was offline."""
    now = now or utcnow()
    webhook_events.agent_heard(session, cluster, cluster.last_seen_at, now, settings)
    cluster.last_seen_at = now


def heartbeat(session: Session, cluster: Cluster, beat: Any, settings: StatusSettings | None = None,
              now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    cluster.agent_info = {**dataclasses.asdict(beat), "received_at": now.isoformat()}
    seen(session, cluster, settings or StatusSettings(), now)
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
    # API group -> the "<group>/<version>" it serves, for the groups of the addons the agent read discovery for
    served: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)
    releases: dict[str, str] = field(default_factory=dict, hash=False)  # addon -> release, where its CRDs name one

    def apply_to(self, profile: ClusterProfile) -> ClusterProfile:
        """The profile, validating against the Kubernetes version the cluster really runs."""
        if self.kubernetes_version is None or self.kubernetes_version == profile.kubernetes_version:
            return profile
        return dataclasses.replace(profile, kubernetes_version=self.kubernetes_version)

    def problems(self, rendering: Rendering) -> list[Problem]:
        """What the rendering needs that the cluster does not have: custom resources whose CRD the
        agent did not find, or of an API version the cluster does not serve, or that need a newer
        release of their addon than the one its CRDs are labelled with. The profile may say an addon
        is there, and which release; the cluster is what runs it."""
        if self.crds is None:
            return []
        missing, unserved, outdated = {}, {}, {}
        for obj in rendering.objects:
            api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            if is_core(api_version):
                continue
            crd = crd_of(api_version, kind)
            addon = addon_of_crd(crd)
            group = api_version.rpartition("/")[0]
            needed = _needed_release(rendering.profile, addon, kind)
            reported = parse_release(self.releases.get(addon))
            if crd not in self.crds:
                missing.setdefault(crd, kind)
            elif group in self.served and api_version not in self.served[group]:
                unserved.setdefault((api_version, kind), addon)
            elif needed is not None and reported is not None and reported < needed:
                outdated.setdefault(kind, (addon, needed))
        when = f"its agent reported at {self.reported_at[:19]}Z"
        problems = [rendering.spec.problem(
            f'cluster "{self.cluster}" cannot run a {kind}: {when} that '
            f'the CRD {crd} is not installed, although the cluster profile lists the addon; install it on '
            f'the cluster, or change the spec or the profile') for crd, kind in sorted(missing.items())]
        for (api_version, kind), addon in sorted(unserved.items()):
            group = api_version.rpartition("/")[0]
            serves = ", ".join(sorted(self.served[group])) or "no version"
            problems.append(rendering.spec.problem(
                f'cluster "{self.cluster}" cannot run {kind} {api_version}: {when} that it serves {serves}'
                f"{_unserved_remedy(addon, kind, api_version)}"))
        for kind, (addon, needed) in sorted(outdated.items()):
            project, release = ADDON_PROJECTS[addon], self.releases[addon]
            oldest = OLDEST_RELEASES.get(addon)
            remedy = (f"upgrade {project} on the cluster"
                      if oldest is not None and parse_release(release) < oldest.release
                      else f'set addons.{addon}.version: "{release}" in the cluster profile, or upgrade {project}')
            problems.append(rendering.spec.problem(
                f'cluster "{self.cluster}" cannot run the {kind} rendered for it: {when} that its {project} CRDs '
                f"are of release {release}, and it needs {release_text(needed)} or later; {remedy}"))
        return problems


def _needed_release(profile: ClusterProfile, addon: str | None, kind: str) -> Release | None:
    """The oldest release of ``addon`` the rendered ``kind`` runs on: the oldest Shipyard renders for,
    or the release of a change the profile's rendering took, whichever is newer; None: no such bound."""
    bounds = [OLDEST_RELEASES[addon].release] if addon in OLDEST_RELEASES else []
    bounds += [change.release for change in RELEASE_CHANGES
               if change.addon == addon and change.kind == kind and profile.takes(change)]
    return max(bounds, default=None)


def _unserved_remedy(addon: str | None, kind: str, api_version: str) -> str:
    """What to do about a kind rendered in an API version the cluster does not serve."""
    project = ADDON_PROJECTS.get(addon or "", "its addon")
    change = next((c for c in RELEASE_CHANGES if c.kind == kind and api_version in (c.before, c.after)), None)
    if change is None:
        return f"; upgrade {project} on the cluster to a release that serves it"
    since = release_text(change.release)
    if api_version == change.after:
        return (f"; the cluster runs {project} older than {since}: set addons.{addon}.version in the cluster "
                f"profile to the release it runs (before {since} Shipyard renders {change.before}), or upgrade "
                f"{project}")
    return (f"; addons.{addon}.version in the cluster profile names a release before {since}, which the cluster "
            f"does not run: set it to the release the cluster runs, or remove it for the current release line")


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
    served: dict[str, set[str]] = {}
    releases: dict[str, str] = {}
    addons = info.get("addon_versions")  # an agent older than the field sends none
    for addon, entry in (addons.items() if known and isinstance(addons, dict) else ()):
        if addon not in ADDON_CRDS or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("api_versions"), list):
            for group in addon_groups(addon):
                served.setdefault(group, set())
            for api_version in entry["api_versions"]:
                if isinstance(api_version, str) and api_version.rpartition("/")[0] in served:
                    served[api_version.rpartition("/")[0]].add(api_version)
        if isinstance(entry.get("release"), str) and parse_release(entry["release"]) is not None:
            releases[addon] = entry["release"]
    return LiveFacts(cluster.name, info["received_at"], version, reported, frozenset(crds) if known else None,
                     {group: frozenset(api_versions) for group, api_versions in served.items()}, releases)


__all__ = ["LiveFacts", "agent_cluster", "seen", "heartbeat", "live_facts"]
