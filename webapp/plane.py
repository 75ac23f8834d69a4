"""The control plane's shared machinery, attached to the Flask app.

One database engine, the cluster repositories, the per-cluster commit queues,
the background threads (the reconciler, the spec repositories' worker, the
status webhooks' delivery), the principal cache, and the agents' command bell and
long-poll budget live here, once per process; nothing of the kind is kept in a
module global. Each request gets its own session (``db()``), closed in
teardown.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from gitops import accounts, clusters, db
from gitops.credentials import CredentialsKey
from gitops.https_gateway import tls_context
from gitops.commit_step import Committers
from gitops.reconciler import Reconciler, worker_id
from gitops.policy import Principal
from gitops.repo_store import RepoStore
from gitops.service_context import Context
from gitops.spec_worker import SpecWorker
from gitops.status import StatusSettings
from gitops.webhook_delivery import WebhookWorker
from renderer.kube import KubeSchemas
from webapp.command_bell import CommandBell, CommandWatch

log = logging.getLogger(__name__)

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ControlPlane:
    def init_app(self, app: Flask) -> None:
        config = app.config
        self.engine = db.make_engine(config["DATABASE_URL"], pool_size=config["DB_POOL_SIZE"])
        if config["AUTO_MIGRATE"]:
            db.upgrade(self.engine)
        self.sessions = db.session_factory(self.engine)
        # Reads need no write lock on SQLite (see gitops.db): they get their own factory.
        self.read_sessions = db.session_factory(self.engine.execution_options(sqlite_deferred=True))
        self.schemas = KubeSchemas.from_setting(config["CRD_SCHEMAS"])
        self.repos = RepoStore(Path(config["DATA_DIR"]) / "repos",
                               CredentialsKey.from_settings(config["CREDENTIALS_KEY"], config["SECRET_KEY"]),
                               tls=tls_context(config["GIT_CA_BUNDLE"]), sessions=self.read_sessions,
                               schemas=self.schemas,
                               credential_files=Path(config["CREDENTIAL_FILES_DIR"]) if config["CREDENTIAL_FILES_DIR"]
                               else None, remote_required=bool(config["CLUSTER_REMOTE_REQUIRED"]))
        # the agents' command long-polls: woken by the bell, each holding a thread, at most AGENT_LONG_POLLS;
        # a commit's refreshes (gitops.refreshes) ring it too
        self.bell = CommandBell()
        self.command_watch = CommandWatch(self.read_sessions, self.bell)
        self.committers = Committers(self.sessions, self.repos, on_refresh=self.bell.ring)
        self.worker = worker_id()
        self.principals = accounts.PrincipalCache(float(config["TOKEN_CACHE_SECONDS"] or 0))
        self.reconciler = Reconciler(self.sessions, self.repos, self.committers, self.worker,
                                     float(config["RECONCILE_INTERVAL"] or 0), self.schemas)
        self.spec_worker = SpecWorker(self.sessions, self.system_context, self.worker,
                                      float(config["SPEC_REPO_WORKER_INTERVAL"] or 0),
                                      float(config["SPEC_REPO_POLL_SECONDS"] or 0), self.read_sessions)
        self.webhook_worker = WebhookWorker(self.sessions, self.repos, self.worker,
                                            float(config["WEBHOOK_WORKER_INTERVAL"] or 0),
                                            StatusSettings.from_config(config), read_sessions=self.read_sessions)
        self._config = config
        self._long_polls: threading.BoundedSemaphore | None = None
        self._long_polls_lock = threading.Lock()
        with self.sessions.begin() as session:
            accounts.ensure_tenant(session, config["TENANT"])
            clusters.seal_remote_userinfo(session, self.repos)
        app.extensions["shipyard"] = self
        app.teardown_appcontext(_close_session)
        if self.reconciler.interval > 0:
            self.reconciler.start()
        if self.spec_worker.interval > 0:
            self.spec_worker.start()
        if self.webhook_worker.interval > 0:
            self.webhook_worker.start()

    def system_context(self, session: Session, principal: Principal) -> Context:
        """A Context for work the control plane does on its own (a spec repository's sync)."""
        return Context(session, principal, self.repos, committers=self.committers, worker=self.worker,
                       schemas=self.schemas, public_url=self._config["PUBLIC_URL"])

    @property
    def long_polls(self) -> threading.BoundedSemaphore:
        """The budget of waiting command long-polls (AGENT_LONG_POLLS, 0: no bound), set on first use."""
        with self._long_polls_lock:
            if self._long_polls is None:
                self._long_polls = threading.BoundedSemaphore(int(self._config["AGENT_LONG_POLLS"]) or 1_000_000)
            return self._long_polls

    def close(self) -> None:
        self.bell.close()
        self.reconciler.stop()
        self.spec_worker.stop()
        self.webhook_worker.stop()
        self.engine.dispose()


def plane() -> ControlPlane:
    return current_app.extensions["shipyard"]


def db_session() -> Session:
    """This request's session (created on first use)."""
    if "db" not in g:
        factory = plane().read_sessions if request and request.method in _SAFE_METHODS else plane().sessions
        g.db = factory()
    return g.db


def context() -> Context:
    """What a service call needs, for the principal of this request."""
    control = plane()
    return Context(db_session(), g.principal, control.repos, committers=control.committers, worker=control.worker,
                   schemas=control.schemas, public_url=current_app.config["PUBLIC_URL"])


def _close_session(_exc) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


__all__ = ["ControlPlane", "plane", "db_session", "context"]
