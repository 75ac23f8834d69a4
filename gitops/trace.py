"""A version's way from a spec to a running app, step by step, with the time of each.

    spec commit        the spec repository's commit it came from, and when its sync was asked for
                       (the push's webhook, a poll, a person); only for versions from a spec repository
    accepted           the version's intent written (gitops.deploy): the deploy was accepted
    committed          the manifest commit in the cluster repository that carries it
    refresh requested  the agent's answer to the refresh of the app's Application that commit
                       queued (gitops.refreshes), or a later commit's: ArgoCD asked to look now
                       rather than at its next poll (``refresh`` "skipped": ArgoCD had seen it)
    seen               the first status report of ArgoCD comparing against that commit or a later
                       one (status.sync.revision, set before it syncs), whatever made it look
    synced             the first status report of the app Synced at that commit or a later one
    healthy            the first report after that of it Synced and Healthy

Each step says when, what (commit ids, the sync's trigger) and how long after the step before
it; a step not reached yet is ``null``, so an app stuck between two steps shows where (ArgoCD
may see a commit before the refresh's answer is back, by its own poll, a webhook, or just as
the agent patched: then "seen" is a negative time after it). All of it is read from what is
stored already: the version, the spec repository's syncs, the agent's commands and the app's
status history (whose length is bounded: a version older than the history kept has no seen,
synced or healthy step left to show). The two steps between committed and synced are found
by gitops.status.arrivals, which the status answers (what ``deploy --wait`` reads) share.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gitops.models import Application, SpecRepo, SpecSync, StatusEvent, Version
from gitops.repo import ClusterRepo
from gitops.status import ancestry, arrivals

STEPS = ("spec commit", "accepted", "committed", "refresh requested", "seen", "synced", "healthy")


def version_trace(session: Session, repo: ClusterRepo | None, app: Application, version: Version) -> dict:
    """The steps of ``version`` of ``app`` (the module's docstring), in order."""
    found: dict[str, dict | None] = dict.fromkeys(STEPS)
    if version.source == "spec-repo" and version.source_commit and "@" in version.source_commit:
        name, _, commit = version.source_commit.rpartition("@")
        run = session.scalar(select(SpecSync).join(SpecRepo, SpecSync.repo_id == SpecRepo.id).where(
            SpecRepo.tenant_id == app.tenant_id, SpecRepo.name == name, SpecSync.new == commit)
            .order_by(SpecSync.id).limit(1))
        found["spec commit"] = {"at": run.started_at if run else None, "commit": commit, "repository": name,
                                "trigger": run.trigger if run else None}
    found["accepted"] = {"at": version.created_at, "source": version.source, "author": version.author}
    if version.commit_id and version.committed_at:
        found["committed"] = {"at": version.committed_at, "commit": version.commit_id}
        arrival = arrivals(session, [(app.workspace.cluster_id, repo, version)]).get(version.id)
        if arrival is not None and arrival.requested_at is not None:
            found["refresh requested"] = {"at": arrival.requested_at, "commit": arrival.requested_commit,
                                          "refresh": arrival.refresh}
        if arrival is not None and arrival.seen_at is not None:
            found["seen"] = {"at": arrival.seen_at, "revision": arrival.seen_revision}
        synced = healthy = None
        for event in session.scalars(select(StatusEvent).where(
                StatusEvent.application_id == app.id, StatusEvent.at >= version.committed_at).order_by(StatusEvent.id)):
            if event.sync != "Synced" or not event.revision or repo is None \
                    or not ancestry.reachable(repo, event.revision, version.commit_id):
                continue
            if synced is None:
                synced = event
            if event.health == "Healthy":
                healthy = event
                break
        if synced is not None:
            found["synced"] = {"at": synced.at, "revision": synced.revision}
        if healthy is not None:
            found["healthy"] = {"at": healthy.at, "revision": healthy.revision}
    steps, before = [], None
    for step in STEPS:
        entry = found[step]
        if entry is None:
            steps.append({"step": step, "at": None})
            continue
        at = entry.pop("at")
        after = (at - before).total_seconds() if at is not None and before is not None else None
        steps.append({"step": step, "at": _iso(at), "after_seconds": round(after, 3) if after is not None else None,
                      **entry})
        before = at or before
    return {"app": f"{app.workspace.cluster.name}:{app.workspace.name}/{app.name}", "version": version.number,
            "steps": steps}


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


__all__ = ["version_trace", "STEPS"]
