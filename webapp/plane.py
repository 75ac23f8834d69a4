"""The control plane's shared machinery, attached to the Flask app.

One database engine, the cluster repositories, the per-cluster commit queues
and the reconciler thread live here, once per process. Each request gets its
own session (``db()``), closed in teardown.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from gitops import accounts, clusters, db, egress
from gitops.clusters import RepoStore
from gitops.credentials import CredentialsKey
from gitops.commit_step import Committers
from gitops.reconciler import Reconciler, worker_id
from gitops.service_context import Context
from renderer.kube import KubeSchemas

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
                               tls=egress.tls_context(config["GIT_CA_BUNDLE"]), sessions=self.read_sessions,
                               schemas=self.schemas)
        self.committers = Committers(self.sessions, self.repos)
        self.worker = worker_id()
        self.principals = accounts.PrincipalCache(float(config["TOKEN_CACHE_SECONDS"] or 0))
        self.reconciler = Reconciler(self.sessions, self.repos, self.committers, self.worker,
                                     float(config["RECONCILE_INTERVAL"] or 0), self.schemas)
        with self.sessions.begin() as session:
            accounts.ensure_tenant(session, config["TENANT"])
            clusters.seal_remote_userinfo(session, self.repos)
        app.extensions["shipyard"] = self
        app.teardown_appcontext(_close_session)
        if self.reconciler.interval > 0:
            self.reconciler.start()

    def close(self) -> None:
        self.reconciler.stop()
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
    return Context(db_session(), g.principal, control.repos, control.committers, control.worker, control.schemas)


def _close_session(_exc) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


__all__ = ["ControlPlane", "plane", "db_session", "context"]
