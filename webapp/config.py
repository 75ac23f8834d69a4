"""Configuration: defaults → file → ``SHIPYARD_*`` environment → test dict.

Every setting, its default and what it does:

=========================  ==================================================================
DATA_DIR                   where the embedded default keeps its SQLite file and repositories
DATABASE_URL               SQLAlchemy URL; default ``sqlite:///<DATA_DIR>/shipyard.db``;
                           production: ``postgresql+psycopg://user@host/db``
AUTO_MIGRATE               migrate the database on start (default: true for SQLite only)
SECRET_KEY                 signs sessions; default: generated once into DATA_DIR/secret_key
CREDENTIALS_KEY            seals the credentials of cluster git remotes at rest (32+ characters); default:
                           derived (HKDF, a label of its own) from SECRET_KEY, so changing SECRET_KEY then
                           makes stored remote credentials unreadable until they are set again
CREDENTIAL_FILES_DIR       a directory of credential files spec repositories may name instead of giving a token
                           or key (``<dir>/<tenant>/<name>``, e.g. mounted Secrets); unset: none are read
CLUSTER_REMOTE_REQUIRED    every cluster must have a git remote (``remote_url``), which its commits go to first and
                           ArgoCD reads from: for replicas that share no volume for the repositories (false)
GIT_CA_BUNDLE              a PEM file of CA certificates for https remotes with a private CA, trusted
                           besides the system's
CRD_SCHEMAS                a directory of CRD JSON Schemas (``<group>/<kind>_<version>.json``) that rendered
                           custom resources are validated against; unset: only core kinds are checked
TENANT                     the tenant local logins and OIDC logins belong to ("default")
PUBLIC_URL                 the URL people and ArgoCD reach this server at (for links, OIDC)
OIDC_ISSUER                an OIDC provider's issuer URL; enables "log in with ..." when set
OIDC_CLIENT_ID/SECRET      this server's client at that provider
OIDC_GROUPS_CLAIM          the ID-token claim holding group names ("groups")
OIDC_GROUP_ROLES           tenant-wide roles by group, e.g. ``{"platform": "tenant-admin"}``
RECONCILE_INTERVAL         seconds between reconciler passes; 0 disables the background thread
SPEC_REPO_WORKER_INTERVAL  seconds between the spec repositories' worker passes when no webhook wakes it;
                           0 disables the background thread
SPEC_REPO_POLL_SECONDS     each spec repository is fetched at least this often, webhooks or not (300);
                           0: only on webhooks and on demand
WEBHOOK_WORKER_INTERVAL    seconds between the status webhooks' delivery passes (0.25): an event waits at
                           most this long to go out (after the agent's 0.2 s batch, well inside the second a
                           state change should take to reach a receiver); an idle pass is two indexed reads;
                           0 disables the background thread
METRICS_TOKEN              when set, /metrics needs ``Authorization: Bearer <token>``; when unset,
                           /metrics is refused (401) unless METRICS_PUBLIC
METRICS_PUBLIC             serve /metrics to anyone when no METRICS_TOKEN is set (false; `shipyard up`,
                           the single-user demo on 127.0.0.1, sets it)
SESSION_COOKIE_SECURE      true unless PUBLIC_URL is plain http
MAX_CONTENT_LENGTH         largest request body in bytes (1 MiB)
MAX_SPECS_PER_REQUEST      most deploy specs (YAML documents, or items of a JSON list) one deploy or dry
                           run may hold (100); more: 413, split them into several requests
MAX_SPEC_BYTES             largest deploy spec, one YAML document, in bytes (256 KiB); larger: 413
LOG_FORMAT                 "json" (default) or "text"
TOKEN_CACHE_SECONDS        how long a worker reuses an API token's principal (1.0, the most it takes;
                           0: never): a revoked token or a changed role binding takes effect in
                           another worker within this
AGENT_TOKEN_GRACE          seconds a rotated-out agent token keeps working (3600)
AGENT_ONLINE_WITHIN        an agent heard from within this many seconds is online (60) ...
AGENT_STALE_WITHIN         ... within this many, stale: status shown as stale (600); older: offline
AGENT_MAX_BODY             largest agent request body after gzip decompression (16 MiB)
COMMAND_LEASE              seconds a command handed to an agent waits for its result before it is resent (120)
COMMAND_TTL                seconds a command may wait for an agent before it expires (900); a commit's refresh
                           (gitops.refreshes) waits however long: its agent gets it when it comes back
STATUS_HISTORY             status changes kept per app (500)
STATUS_GAP_WAIT            seconds a status batch that overtook the one before it waits for it (2.0)
AGENT_LONG_POLLS           command long-polls one process holds at once, each on a thread of its own (0: no
                           limit; `shipyard serve` keeps a quarter of its threads, at least 4, for other
                           requests); past it a poll is answered at once
AGENT_POLL_PAUSE           ... and the agent is told to poll again within this many seconds (10)
DASHBOARD_POLL_SECONDS     how often an open dashboard page asks whether what it shows changed (1.0); each
                           ask that finds nothing new is a signature check and a cached look-up
=========================  ==================================================================
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tomllib
from pathlib import Path

from flask import Flask

DEFAULTS = {
    "DATA_DIR": "data",
    "DATABASE_URL": None,
    "AUTO_MIGRATE": None,
    "TENANT": "default",
    "CREDENTIALS_KEY": None,
    "GIT_CA_BUNDLE": None,
    "CLUSTER_REMOTE_REQUIRED": False,
    "CREDENTIAL_FILES_DIR": None,
    "CRD_SCHEMAS": None,
    "PUBLIC_URL": "http://127.0.0.1:8080",
    "OIDC_ISSUER": None,
    "OIDC_CLIENT_ID": None,
    "OIDC_CLIENT_SECRET": None,
    "OIDC_GROUPS_CLAIM": "groups",
    "OIDC_GROUP_ROLES": {},
    "OIDC_SCOPES": "openid email profile",
    "RECONCILE_INTERVAL": 30.0,
    "SPEC_REPO_WORKER_INTERVAL": 1.0,
    "SPEC_REPO_POLL_SECONDS": 300.0,
    "WEBHOOK_WORKER_INTERVAL": 0.25,
    "METRICS_TOKEN": None,
    "METRICS_PUBLIC": False,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "MAX_SPECS_PER_REQUEST": 100,
    "MAX_SPEC_BYTES": 256 * 1024,
    "LOG_FORMAT": "json",
    "SESSION_COOKIE_HTTPONLY": True,
    # None: decided by PUBLIC_URL in load() (Flask's own default, False, would leave https cookies unmarked)
    "SESSION_COOKIE_SECURE": None,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "WTF_CSRF_TIME_LIMIT": None,
    "DB_POOL_SIZE": 20,
    "TOKEN_CACHE_SECONDS": 1.0,
    "AGENT_TOKEN_GRACE": 3600.0,
    "AGENT_ONLINE_WITHIN": 60.0,
    "AGENT_STALE_WITHIN": 600.0,
    "AGENT_MAX_BODY": 16 * 1024 * 1024,
    "COMMAND_LEASE": 120.0,
    "COMMAND_TTL": 900.0,
    "STATUS_HISTORY": 500,
    "STATUS_GAP_WAIT": 2.0,
    "AGENT_LONG_POLLS": 0,
    "AGENT_POLL_PAUSE": 10.0,
    "DASHBOARD_POLL_SECONDS": 1.0,
}


def load(app: Flask, test_config: dict | None) -> None:
    app.config.update(DEFAULTS)
    path = os.environ.get("SHIPYARD_CONFIG")
    if path:
        app.config.from_file(path, load=tomllib.load, text=False)
    app.config.from_prefixed_env("SHIPYARD")
    if test_config:
        app.config.update(test_config)
    data_dir = Path(app.config["DATA_DIR"]).resolve()
    app.config["DATA_DIR"] = str(data_dir)
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = f"sqlite:///{data_dir / 'shipyard.db'}"
    if app.config["AUTO_MIGRATE"] is None:
        app.config["AUTO_MIGRATE"] = app.config["DATABASE_URL"].startswith("sqlite")
    if isinstance(app.config["OIDC_GROUP_ROLES"], str):
        app.config["OIDC_GROUP_ROLES"] = json.loads(app.config["OIDC_GROUP_ROLES"])
    if app.config["SESSION_COOKIE_SECURE"] is None:
        app.config["SESSION_COOKIE_SECURE"] = app.config["PUBLIC_URL"].startswith("https://")
    app.config["REMEMBER_COOKIE_SECURE"] = app.config["SESSION_COOKIE_SECURE"]
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _stored_secret(data_dir)


def _stored_secret(data_dir: Path) -> str:
    """A signing key generated on first start and kept (owner-only) in the data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    # Written whole under a private name, then linked into place: workers starting together
    # all end up with the first one's key, never with a file another is still writing.
    key = secrets.token_urlsafe(48)
    partial = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        try:
            os.link(partial, path)
        except FileExistsError:
            key = path.read_text().strip()
    finally:
        os.unlink(partial)
    return key


_STANDARD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_FIELDS}


class TextFormatter(logging.Formatter):
    """Human-readable lines, with any ``extra`` fields as key=value after the message."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = _extra(record)
        return line + "".join(f" {k}={v}" for k, v in extra.items()) if extra else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(app: Flask) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_shipyard", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._shipyard = True  # type: ignore[attr-defined]
    if app.config["LOG_FORMAT"] == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level == logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)


__all__ = ["load", "configure_logging", "DEFAULTS"]
