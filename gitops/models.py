"""The control plane's data: tenants, people, clusters, workspaces, apps and every version.

::

    Tenant ─┬─ User ── ApiToken
            ├─ RoleBinding (role × subject × scope: tenant | cluster | workspace)
            ├─ Cluster ── Workspace ── Application ── Version (every deploy)
            │     │           └─ HostClaim (route hosts, one workspace each)
            │     │                        ├─ AppStatus, StatusEvent (live status, its history)
            │     │                        └─ JobRun (runs of a job app)
            │     ├─ ClusterObject (what the agent follows, compact)
            │     └─ Command (for the agent, claimed once)
            ├─ AuditEvent (every change and who made it)
            └─ WebhookSubscription ── WebhookDelivery ── WebhookAttempt
                       WebhookEvent (each state change, once) ─┘

A Version is the unit of the crash-safe deploy: it is written as ``pending``
(the intent) before the cluster repository is touched, and marked
``committed`` with the commit that carries it afterwards; the reconciler
(gitops.reconciler) finishes whatever a crash left in between. ``claimed_by`` and
``claimed_until`` make it a job that exactly one process works on at a time.

Secrets are never stored: specs hold references (``secret://...``) only, and
tokens are stored as SHA-256 hashes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or value.tzinfo is dt.timezone.utc:
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use utcnow()")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dt.datetime: UTCDateTime}


class Tenant(Base):
    __tablename__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # Hosts (names, addresses or CIDR ranges) that git remotes may reach although they are
    # loopback, private or link-local; set by a tenant-admin (gitops.egress).
    remote_allowed_hosts: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "user_account"
    __table_args__ = (
        UniqueConstraint("tenant_id", "username"),
        UniqueConstraint("tenant_id", "oidc_issuer", "oidc_subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    # None: no local password (OIDC only)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    oidc_issuer: Mapped[str | None] = mapped_column(String(512))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    # group names from the identity provider at the last login; role bindings to groups use them
    groups: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class RoleBinding(Base):
    """Gives ``role`` to a user or to an identity-provider group, at one scope.

    Scope: tenant-wide when ``cluster_id`` and ``workspace_id`` are both None;
    a cluster (and its workspaces) when only ``cluster_id`` is set; one
    workspace when ``workspace_id`` is set.
    """

    __tablename__ = "role_binding"
    __table_args__ = (Index("ix_role_binding_subject", "tenant_id", "subject_kind", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    subject_kind: Mapped[str] = mapped_column(String(8))  # "user" | "group" | "repo" (a spec repository)
    subject: Mapped[str] = mapped_column(String(255))  # username or group name
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))


class ApiToken(Base):
    """A bearer token for the CLI and CI: shown once, stored hashed.

    It acts for its user, narrowed to its own role at its own scope: a
    workspace-editor token of a tenant admin can deploy into that workspace
    and nothing else.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    token_id: Mapped[str] = mapped_column(String(32), unique=True)  # public part, for lookup
    secret_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the secret part
    role: Mapped[str] = mapped_column(String(32))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")


class Cluster(Base):
    __tablename__ = "cluster"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    profile_text: Mapped[str] = mapped_column(Text)  # the cluster profile YAML, as given
    repo_path: Mapped[str] = mapped_column(String(1024))
    remote_url: Mapped[str | None] = mapped_column(String(1024))  # never holds credentials
    # The remote's credentials, sealed (gitops.credentials) and never returned; remote_auth
    # says which kind they are ("password" or "ssh-key") without opening them.
    remote_credentials: Mapped[str | None] = mapped_column(Text)
    remote_auth: Mapped[str | None] = mapped_column(String(16))
    # Secret-store path prefixes every workspace of the cluster may reference (gitops.isolation).
    secret_paths: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    agent_token_hash: Mapped[str | None] = mapped_column(String(64))
    # After a rotation the previous agent token keeps working for a grace period, so the agent
    # can be given the new one without a gap (gitops.agents.agent_cluster).
    previous_agent_token_hash: Mapped[str | None] = mapped_column(String(64))
    agent_token_rotated_at: Mapped[dt.datetime | None]
    read_token_hash: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[dt.datetime | None]  # the agent's last call of any kind
    agent_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the last heartbeat, as sent
    # The agent's status stream the control plane follows, and the last batch applied (contract.protocol).
    stream: Mapped[str | None] = mapped_column(String(64))
    stream_seq: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class Workspace(Base):
    __tablename__ = "workspace"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))  # also the namespace
    environment: Mapped[str] = mapped_column(String(32), default="dev")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quota: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Secret-store path prefixes this workspace may reference besides its own "<name>/";
    # set by a cluster-admin (gitops.isolation).
    secret_paths: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    cluster: Mapped[Cluster] = relationship(lazy="joined")


class HostClaim(Base):
    """A host name routed into one workspace of a cluster: the first workspace to route it keeps it.

    Only a cluster-admin moves or releases a claim (gitops.isolation); deleting the
    workspace releases its claims.
    """

    __tablename__ = "host_claim"
    __table_args__ = (UniqueConstraint("cluster_id", "host"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(253))
    claimed_by: Mapped[str] = mapped_column(String(255))  # the app that first routed it, or the admin who moved it
    claimed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Application(Base):
    __tablename__ = "application"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))  # service | job
    # the last version number handed out; bumped atomically by UPDATE ... RETURNING
    version_counter: Mapped[int] = mapped_column(default=0)
    current_version: Mapped[int | None]  # the latest committed version's number
    deleted: Mapped[bool] = mapped_column(default=False)  # deleted from the cluster; history kept
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    workspace: Mapped[Workspace] = relationship(lazy="joined")


class Version(Base):
    """One deploy (or rollback, promote, delete) of one app: the intent and its outcome.

    state: pending → committed | superseded | failed. ``commit_id`` is the
    cluster repository commit that carries it (for a deploy that changed no
    bytes, the commit that already held them).
    """

    __tablename__ = "version"
    __table_args__ = (
        UniqueConstraint("application_id", "number"),
        Index("ix_version_pending", "state", "claimed_until"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    number: Mapped[int]
    action: Mapped[str] = mapped_column(String(16))  # deploy | rollback | promote | delete
    deployment_id: Mapped[str] = mapped_column(String(36), index=True)
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None for delete
    spec_digest: Mapped[str | None] = mapped_column(String(80))
    render_digest: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    commit_id: Mapped[str | None] = mapped_column(String(64))
    changed: Mapped[bool | None]  # whether its commit changed the app's files
    author: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))  # api | cli | ci | dashboard | reconciler
    source_commit: Mapped[str | None] = mapped_column(String(255))
    origin: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # rollback_of / promoted_from
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    committed_at: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[dt.datetime | None]

    application: Mapped[Application] = relationship(lazy="joined")

    # Not stored: set on the version a deploy answers with when it changed nothing (gitops.deploy),
    # which is the app's newest version, not a new one.
    unchanged = False


class SpecRepo(Base):
    """A git repository of deploy specs the control plane deploys from (gitops.spec_repos).

    It deploys as itself: its grants are the role bindings whose subject is its name
    (``subject_kind`` "repo"). ``credentials`` and ``webhook_secret`` are sealed at rest
    (gitops.credentials) and never shown; ``synced_commit`` is the branch's commit last synced.
    ``commit_status`` says where each sync's commit status goes (gitops.commit_status), and
    ``provider`` is the git provider whose webhook delivery was last verified for it.
    """

    __tablename__ = "spec_repo"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    url: Mapped[str] = mapped_column(String(2048))  # never holds credentials
    branch: Mapped[str] = mapped_column(String(255))
    globs: Mapped[list[Any]] = mapped_column(default=list)
    prune: Mapped[bool] = mapped_column(default=False)  # a deleted spec file deletes its apps
    credentials: Mapped[str | None] = mapped_column(Text)  # sealed
    auth: Mapped[str | None] = mapped_column(String(16))  # "password" | "ssh-key"
    webhook_secret: Mapped[str] = mapped_column(Text)  # sealed
    synced_commit: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[dt.datetime | None]
    state: Mapped[str] = mapped_column(String(16), default="new")  # new | synced | failing | behind
    last_error: Mapped[str | None] = mapped_column(Text)
    commit_status: Mapped[str] = mapped_column(String(16), default="auto",  # auto | off | a provider (push_hooks)
                                               server_default="auto")
    provider: Mapped[str | None] = mapped_column(String(16))  # gitops.push_hooks.Provider, from its webhook
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SpecSync(Base):
    """One sync of a spec repository: what moved it (a push's delivery, a poll, a person), from which
    commit to which, and what came of it: the versions made and each spec file's problems."""

    __tablename__ = "spec_sync"
    __table_args__ = (Index("ix_spec_sync_repo", "repo_id", "id"), UniqueConstraint("repo_id", "delivery"))

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("spec_repo.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))  # webhook | poll | api | dashboard
    delivery: Mapped[str | None] = mapped_column(String(128))  # the webhook delivery's id: each is taken once
    old: Mapped[str | None] = mapped_column(String(64))
    new: Mapped[str | None] = mapped_column(String(64))
    relation: Mapped[str | None] = mapped_column(String(16))  # gitops.spec_changes.RELATIONS
    # queued | running | deployed | partial | unchanged | refused | failed
    state: Mapped[str] = mapped_column(String(16), default="queued")
    problems: Mapped[list[Any]] = mapped_column(default=list)  # [{file, line, column, message, path}]
    versions: Mapped[list[Any]] = mapped_column(default=list)  # [{app, number, action, unchanged}]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)  # when it was asked for
    finished_at: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the worker running it (gitops.spec_worker)
    claimed_until: Mapped[dt.datetime | None]
    # what it said on its commit at the provider: {provider, commit, state, description, outcome, detail}
    commit_status: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))  # e.g. app.deploy, cluster.create
    target: Mapped[str] = mapped_column(String(512))  # e.g. demo/storefront/web
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ClusterObject(Base):
    """The newest compact state of one object an agent follows (agent.summaries), upserted per batch.

    ``stream`` is the status stream that last reported it: when a snapshot
    ends, the rows of older streams are the objects that are gone.
    """

    __tablename__ = "cluster_object"
    __table_args__ = (UniqueConstraint("cluster_id", "kind", "namespace", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(253))
    name: Mapped[str] = mapped_column(String(253))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AppStatus(Base):
    """What ArgoCD last said about one app, and the version that is live by it."""

    __tablename__ = "app_status"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"), unique=True)
    sync: Mapped[str] = mapped_column(String(32))  # ArgoCD: Synced | OutOfSync | Unknown
    health: Mapped[str] = mapped_column(String(32))  # Healthy | Progressing | Degraded | Suspended | Missing | Unknown
    operation: Mapped[str | None] = mapped_column(String(32))  # the sync operation's phase: Running | Failed | ...
    operation_revision: Mapped[str | None] = mapped_column(String(64))  # the revision that operation syncs
    revision: Mapped[str | None] = mapped_column(String(64))  # the revision ArgoCD compared against
    synced_revision: Mapped[str | None] = mapped_column(String(64))  # the last revision seen Synced
    message: Mapped[str | None] = mapped_column(Text)
    live_version: Mapped[int | None]
    events: Mapped[int] = mapped_column(default=0)  # StatusEvents kept, so trimming them costs nothing until due
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StatusEvent(Base):
    """One change of an app's sync, health, revision or message (bounded per app)."""

    __tablename__ = "status_event"
    __table_args__ = (Index("ix_status_event_app", "application_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sync: Mapped[str] = mapped_column(String(32))
    health: Mapped[str] = mapped_column(String(32))
    revision: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)


class Command(Base):
    """A command for a cluster's agent: queued → sent (claimed, with a lease) → done | failed | expired."""

    __tablename__ = "command"
    # ix_command_app: when an app's commits were refreshed (gitops.status.arrivals), one row per commit and
    # Application accruing with the deploys
    __table_args__ = (Index("ix_command_queue", "cluster_id", "state", "id"),
                      Index("ix_command_app", "application_id", "done_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("application.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(16))  # contract.protocol.COMMANDS
    kind: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(253))
    name: Mapped[str] = mapped_column(String(253))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    done_at: Mapped[dt.datetime | None]
    claimed_until: Mapped[dt.datetime | None]


class JobRun(Base):
    """One run of a job app, started by a run-job command; its state follows the command and the Workflow."""

    __tablename__ = "job_run"
    __table_args__ = (Index("ix_job_run_app", "application_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    command_id: Mapped[int | None] = mapped_column(ForeignKey("command.id", ondelete="SET NULL"))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    workflow: Mapped[str | None] = mapped_column(String(253), index=True)  # the Workflow or Job the agent created
    state: Mapped[str] = mapped_column(String(16), default="queued")
    message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class WebhookSubscription(Base):
    """Where status events go (gitops.webhooks): a receiver's URL, which events of which scope, in which
    format, signed with which secret.

    The scope is the tenant (no cluster), a cluster, a workspace or one app. ``url`` is sealed, since
    an incoming-webhook URL (Slack, Teams) is itself the credential, and shown as ``url_shown`` (its
    scheme, host and path's start). ``secret`` signs each delivery; after a rotation
    ``previous_secret`` signs too until ``previous_secret_until``. ``allowed_host`` is the host a
    tenant-admin let resolve to a private address for this subscription. A subscription failing
    since ``failing_since`` for long enough is ``paused``, with why.
    """

    __tablename__ = "webhook_subscription"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    url: Mapped[str] = mapped_column(Text)  # sealed
    url_shown: Mapped[str] = mapped_column(String(300))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("cluster.id", ondelete="CASCADE"))
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    events: Mapped[list[Any]] = mapped_column(default=list)  # event types (gitops.webhooks.EVENT_TYPES)
    format: Mapped[str] = mapped_column(String(16), default="shipyard")  # shipyard | slack | teams
    secret: Mapped[str] = mapped_column(Text)  # sealed
    previous_secret: Mapped[str | None] = mapped_column(Text)  # sealed
    previous_secret_until: Mapped[dt.datetime | None]
    allowed_host: Mapped[str | None] = mapped_column(String(253))
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    paused_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[dt.datetime | None]
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """One state change a subscription may hear of, recorded once: ``key`` (its subject and state, e.g.
    ``version/12/healthy/345``) is unique per tenant and is the deliveries' idempotency key.
    ``fanned_out``: its deliveries are made (one per matching subscription)."""

    __tablename__ = "webhook_event"
    __table_args__ = (UniqueConstraint("tenant_id", "key"), Index("ix_webhook_event_fan_out", "fanned_out", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(40))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("cluster.id", ondelete="SET NULL"))
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.id", ondelete="SET NULL"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("application.id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the event's facts (schemas/webhook-event)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    fanned_out: Mapped[bool] = mapped_column(default=False)


class WebhookDelivery(Base):
    """One event to one subscription, tried until its receiver answers 2xx or it is given up.

    ``state``: pending (``next_attempt_at`` says when), delivered, or failed (given up). A worker
    claims it (``claimed_by``/``claimed_until``) with a conditional UPDATE, so across processes one
    sends it at a time. The last attempt's answer is kept here; every attempt in WebhookAttempt.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id"),
                      Index("ix_webhook_delivery_due", "state", "next_attempt_at"),
                      Index("ix_webhook_delivery_subscription", "subscription_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_event.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[dt.datetime | None]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None]
    delivered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """One try of a delivery: when, what the receiver answered (or why there was no answer), how long."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_delivery.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str] = mapped_column(String(64))


class Lease(Base):
    """A named background job claimed through the database: one holder at a time."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime | None]
    runs: Mapped[int] = mapped_column(default=0)


__all__ = [
    "Base",
    "Tenant",
    "User",
    "RoleBinding",
    "ApiToken",
    "Cluster",
    "Workspace",
    "HostClaim",
    "Application",
    "Version",
    "AuditEvent",
    "Lease",
    "ClusterObject",
    "AppStatus",
    "StatusEvent",
    "Command",
    "JobRun",
    "WebhookSubscription",
    "WebhookEvent",
    "WebhookDelivery",
    "WebhookAttempt",
    "utcnow",
]
