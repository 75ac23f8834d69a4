"""The spec repositories' worker: runs the syncs asked for (pushes, polls) in the background.

A sync asked for is a ``queued`` SpecSync row, committed before a webhook is answered
(gitops.spec_repos.enqueue), so a sync a restart interrupts is run by the next worker. Each
process of the control plane runs one worker thread (like the reconciler); a worker claims a
queued sync, or a running one whose claim ran out (its worker died), with a conditional UPDATE,
so across processes one runs each, and never two of one repository at a time.

Polling catches up what webhooks miss (providers do not redeliver a failed delivery): every
repository with no sync asked for within ``poll_seconds`` gets one (trigger ``poll``). A
repository whose branch did not move syncs as ``unchanged`` after one fetch.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gitops import spec_repos
from gitops.background import Passes
from gitops.spec_repos import LEASE
from gitops.models import SpecRepo, SpecSync, utcnow
from gitops.policy import Principal
from gitops.service_context import Context

log = logging.getLogger(__name__)

BATCH = 10


class SpecWorker(Passes):
    """Runs queued syncs and asks for polls; ``run_once`` is one pass (tests call it), ``start`` a thread."""

    thread_name = "spec-repos"

    def __init__(self, sessions: sessionmaker[Session], context_for: Callable[[Session, Principal], Context],
                 worker: str, interval: float, poll_seconds: float, read_sessions: sessionmaker[Session] | None = None):
        super().__init__(interval)
        self.sessions, self.context_for, self.worker = sessions, context_for, worker
        # a pass that finds nothing to do looks with these: on SQLite they take no write lock (gitops.db)
        self.read_sessions = read_sessions or sessions
        self.poll_seconds = poll_seconds

    def background_pass(self) -> None:
        self.run_once()

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Ask for the polls due, then run every sync that can be claimed; returns how many ran."""
        now = now or utcnow()
        if self.poll_seconds > 0:
            self._ask_polls(now)
        ran = 0
        while claimed := self._claim(now):
            for run_id in claimed:
                self._run(run_id)
                ran += 1
            now = utcnow()
        return ran

    def _ask_polls(self, now: dt.datetime) -> None:
        since = now - dt.timedelta(seconds=self.poll_seconds)
        due = select(SpecRepo.id).where(~exists().where(SpecSync.repo_id == SpecRepo.id, SpecSync.started_at > since))
        with self.read_sessions() as session:
            if not session.scalars(due).first():
                return
        with self.sessions() as session:
            for repo in session.scalars(select(SpecRepo).where(SpecRepo.id.in_(due))).all():
                spec_repos.enqueue(session, repo, trigger="poll")

    def _claim(self, now: dt.datetime) -> list[int]:
        """Queued syncs (or ones whose worker's claim ran out), at most one per repository, now this worker's."""
        open_ = or_(SpecSync.state == "queued", and_(SpecSync.state == "running", SpecSync.claimed_until < now))
        busy = select(SpecSync.repo_id).where(SpecSync.state == "running", SpecSync.claimed_until >= now)
        with self.read_sessions() as session:
            if session.scalar(select(SpecSync.id).where(open_).limit(1)) is None:
                return []
        with self.sessions.begin() as session:
            candidates = session.execute(select(SpecSync.id, SpecSync.repo_id).where(
                open_, SpecSync.repo_id.not_in(busy)).order_by(SpecSync.id).limit(BATCH)).all()
            claimed, repos = [], set()
            for run_id, repo_id in candidates:
                if repo_id in repos:
                    continue
                taken = session.execute(update(SpecSync).where(SpecSync.id == run_id, open_).values(
                    state="running", claimed_by=self.worker, claimed_until=now + LEASE))
                if taken.rowcount == 1:
                    claimed.append(run_id)
                    repos.add(repo_id)
            return claimed

    def _run(self, run_id: int) -> None:
        with self.sessions() as session:
            run = session.get(SpecSync, run_id)
            repo = session.get(SpecRepo, run.repo_id) if run is not None else None
            if repo is None:
                return
            principal = Principal(repo.tenant_id, 0, "spec repository worker")
            try:
                spec_repos.execute(self.context_for(session, principal), repo, run)
            except Exception:  # a bug: the sync is failed and said, the worker goes on
                log.exception("sync %s of spec repository %s failed", run_id, repo.name)
                session.rollback()
                session.execute(update(SpecSync).where(SpecSync.id == run_id).values(
                    state="failed", finished_at=utcnow(), claimed_by=None, claimed_until=None,
                    problems=[{"file": "", "line": 0, "column": 0, "message": "internal error; see the server's log",
                               "path": ""}]))
                session.commit()


__all__ = ["SpecWorker", "LEASE"]
