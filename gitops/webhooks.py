"""Status webhooks: which events there are, the outbox they are written to, and the subscriptions that hear them.

An event is a state change recorded once (gitops.webhook_events makes them): ``emit`` inserts
it into the outbox (``WebhookEvent``) in the transaction that records the change itself, so an
event exists exactly when its change was committed. Its ``key`` names the subject and the
state (``app/7/version/3/healthy/<stream>.<seq>``), is unique per tenant, and a second insert
of it is taken as done: a retried request, a replayed status report or a second process emits
nothing twice. The key
is also what a receiver sees as the delivery's id and Idempotency-Key. The delivery worker
(gitops.webhook_delivery) fans each event out to the subscriptions it ``matches`` and sends it.

A subscription (``WebhookSubscription``) hears the events of a scope that it lists:

==========  ==================================================  ==================  ==============
scope       events heard                                        managed with        read with
==========  ==================================================  ==================  ==============
tenant      all of the tenant's                                 tenant.manage       cluster.read
cluster     the cluster's, its workspaces' and its apps'        cluster.update      cluster.read
workspace   the workspace's apps' (no cluster.* events)         workspace.update    workspace.read
app         the app's (no cluster.* events)                     workspace.update    workspace.read
==========  ==================================================  ==================  ==============

A subscription in a scope the caller cannot read answers as one that does not exist. A row
stores its scope with every level above it (an app's subscription holds its workspace and its
cluster), so permissions and matching read the row alone.

What a subscription keeps:

* **The URL**, sealed at rest, since for Slack and Teams the URL is the credential. It is https,
  or http to its ``allowed_host`` only; never with userinfo or a fragment. Its host must resolve to
  public addresses (gitops.egress: loopback, private, link-local and metadata addresses are
  refused), checked here when the URL is set and by the delivery worker at every attempt, since a
  DNS answer changes (rebinding). ``allowed_host`` (one host name or address, the URL's host, set
  by a tenant-admin only, cleared by whoever manages the subscription) lets it resolve to a
  private one; link-local and cloud metadata addresses are never allowed. The URL is kept as
  rebuilt from the parts checked, so the client that sends reads the host that was checked.
  People see ``url_shown``: the scheme, host, port and first path segment, never the rest of the
  path (Slack's holds the secret) nor the query (Power Automate's ``sig=``). No message repeats
  the URL.
* **The signing secret**: ``whsec_`` and the base64 of 32 random bytes (the Standard Webhooks
  form), sealed, and shown once, when made. ``rotate_secret`` makes a new one and keeps the old
  one signing as well until the overlap ends, so receivers can switch over without a gap.
* Its **state**: ``active``, or ``paused`` with why (by a person, or by the worker after a day of
  failures); setting it ``active`` again resumes it.

Every change is audited (gitops.audit) with names and settings, never the URL or a secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from contract.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, RepoError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gitops import egress
from gitops.audit import record
from gitops.clusters import sees_cluster
from gitops.models import (Application, Cluster, Tenant, WebhookAttempt, WebhookDelivery, WebhookEvent,
                           WebhookSubscription, Workspace, utcnow)
from gitops.policy import Scope
from gitops.reads import get_app
from gitops.repo_store import RepoStore
from gitops.service_context import Context
from gitops.webhook_events import emit, emit_many
from gitops.workspaces import find_workspace

EVENT_TYPES = (
    "version.committed",
    "version.synced",
    "version.healthy",
    "version.degraded",
    "version.sync_failed",
    "version.rolled_back",
    "version.promoted",
    "run.succeeded",
    "run.failed",
    "cluster.offline",
    "cluster.online",
)
CLUSTER_EVENTS = ("cluster.offline", "cluster.online")  # about a cluster: heard at tenant and cluster scope
TEST_EVENT = "webhook.test"  # sent to one subscription when asked (send_test), never fanned out
FORMATS = ("shipyard", "slack", "teams")
STATES = ("active", "paused")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_URL_LENGTH = 2048
MAX_OVERLAP = dt.timedelta(days=7)
MAX_DELIVERIES = 1000  # one page of a delivery log
MAX_ID = 2**31 - 1  # ids are 32-bit integers: a larger one is no row's, and PostgreSQL refuses to compare it
SECRET_PREFIX = "whsec_"
CHANGEABLE = ("url", "events", "format", "allowed_host", "state")


# --- who hears an event (the outbox, emit and emit_many, is gitops.webhook_events') -----------------


def matches(sub: WebhookSubscription, event: WebhookEvent) -> bool:
    """Whether ``sub`` hears ``event``: its type is listed, and it happened inside the subscription's scope."""
    return (event.tenant_id == sub.tenant_id and event.type in sub.events
            and all(wanted is None or wanted == got for wanted, got in (
                (sub.cluster_id, event.cluster_id), (sub.workspace_id, event.workspace_id),
                (sub.application_id, event.application_id))))


def open_url(repos: RepoStore, sub: WebhookSubscription) -> str:
    """The subscription's URL, unsealed: for the request that delivers to it, and nothing else."""
    return repos.open_text(sub.url)


def open_secrets(repos: RepoStore, sub: WebhookSubscription, now: dt.datetime) -> list[str]:
    """The secrets that sign a delivery at ``now``: the current one, and the previous one during a
    rotation's overlap."""
    opened = [repos.open_text(sub.secret)]
    if sub.previous_secret and sub.previous_secret_until is not None and now < sub.previous_secret_until:
        opened.append(repos.open_text(sub.previous_secret))
    return opened


def url_shown(url: str) -> str:
    """How people see ``url``: scheme, host, port and first path segment; the rest of the path and the query as …"""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{f':{parts.port}' if parts.port else ''}"
    first, _, rest = parts.path.lstrip("/").partition("/")
    shown += "/" + first + ("/…" if rest else "") + ("?…" if parts.query else "")
    return shown if len(shown) <= 300 else shown[:299] + "…"


# --- subscriptions ---------------------------------------------------------------------------------


@dataclass
class NewSubscription:
    subscription: WebhookSubscription
    secret: str  # shown once, when made


def create_subscription(ctx: Context, name: Any, url: Any, *, events: Any, format: Any = "shipyard",
                        cluster: Any = None, workspace: Any = None, app: Any = None,
                        allowed_host: Any = None) -> NewSubscription:
    """Subscribe ``url`` to ``events`` of a scope (the tenant, or the cluster, workspace or app named);
    its signing secret is answered once."""
    session, principal = ctx.session, ctx.principal
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidRequest("a webhook subscription's name is 1 to 63 lowercase letters, digits and dashes")
    row = WebhookSubscription(tenant_id=principal.tenant_id, name=name, created_by=principal.name, state="active")
    row.cluster_id, row.workspace_id, row.application_id = _scope_ids(ctx, cluster, workspace, app)
    _require_manage(ctx, row, "create")
    row.events = _events(events, row)
    row.format = _format(format)
    row.allowed_host = _allowed_host(ctx, allowed_host)
    row.url, row.url_shown = _sealed_url(ctx, url, row.allowed_host)
    secret = _new_secret()
    row.secret = ctx.repos.seal_text(secret)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f'a webhook subscription "{name}" exists already') from exc
    record(session, principal, "webhook.create", name, {**scope_names(session, row), "events": row.events,
                                                        "format": row.format, "allowed_host": row.allowed_host})
    return NewSubscription(row, secret)


def list_subscriptions(ctx: Context) -> list[WebhookSubscription]:
    """The tenant's subscriptions whose scope the caller may read, by name."""
    rows = ctx.session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.tenant_id == ctx.principal.tenant_id).order_by(WebhookSubscription.name))
    return [row for row in rows if _readable(ctx, row)]


def get_subscription(ctx: Context, name: Any) -> WebhookSubscription:
    """The subscription ``name``; NotFound when there is none, or none whose scope the caller may read."""
    row = ctx.session.scalar(select(WebhookSubscription).where(
        WebhookSubscription.tenant_id == ctx.principal.tenant_id, WebhookSubscription.name == str(name)))
    if row is None or not _readable(ctx, row):
        raise NotFound(f'no webhook subscription "{name}"')
    return row


def update_subscription(ctx: Context, sub: WebhookSubscription, changes: Any) -> WebhookSubscription:
    """Change ``url``, ``events``, ``format``, ``allowed_host`` (set by a tenant-admin; cleared by whoever
    manages the subscription) or ``state`` (``active`` resumes a paused subscription, ``paused`` pauses it).
    Every change is checked before any is made."""
    _require_manage(ctx, sub, "change")
    if not isinstance(changes, dict) or not changes:
        raise InvalidRequest(f"a change names one or more of {', '.join(CHANGEABLE)}")
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise InvalidRequest(f"a subscription's {', '.join(CHANGEABLE)} can be changed, not {', '.join(unknown)}")
    events = _events(changes["events"], sub) if "events" in changes else sub.events
    body_format = _format(changes["format"]) if "format" in changes else sub.format
    if "state" in changes and changes["state"] not in STATES:
        raise InvalidRequest(f"state is one of {', '.join(STATES)}")
    allowed, sealed, shown = sub.allowed_host, sub.url, sub.url_shown
    if "url" in changes or "allowed_host" in changes:
        if changes.get("allowed_host", allowed) != allowed:
            allowed = _allowed_host(ctx, changes["allowed_host"])
        sealed, shown = _sealed_url(ctx, changes["url"] if "url" in changes else open_url(ctx.repos, sub), allowed)
    sub.events, sub.format, sub.allowed_host, sub.url, sub.url_shown = events, body_format, allowed, sealed, shown
    if changes.get("state") == "active":
        sub.state, sub.paused_reason, sub.failing_since = "active", None, None
    elif changes.get("state") == "paused" and sub.state != "paused":
        sub.state, sub.paused_reason = "paused", f"paused by {ctx.principal.name}"
    record(ctx.session, ctx.principal, "webhook.update", sub.name,
           {"fields": sorted(changes), "events": sub.events, "format": sub.format, "allowed_host": sub.allowed_host,
            "state": sub.state})
    return sub


def delete_subscription(ctx: Context, sub: WebhookSubscription) -> None:
    """Forget the subscription, its deliveries and their attempts; the events stay for the others."""
    _require_manage(ctx, sub, "delete")
    ctx.session.delete(sub)
    record(ctx.session, ctx.principal, "webhook.delete", sub.name, {})


def rotate_secret(ctx: Context, sub: WebhookSubscription, overlap_seconds: Any = 86400) -> str:
    """A new signing secret, answered once; the current one keeps signing too for ``overlap_seconds``
    (0: not at all). A secret older than the current one stops signing now."""
    _require_manage(ctx, sub, "rotate the secret of")
    if (not isinstance(overlap_seconds, int) or isinstance(overlap_seconds, bool)
            or not 0 <= overlap_seconds <= MAX_OVERLAP.total_seconds()):
        raise InvalidRequest(f"overlap_seconds is a whole number from 0 to {int(MAX_OVERLAP.total_seconds())}")
    secret = _new_secret()
    if overlap_seconds:
        sub.previous_secret, sub.previous_secret_until = sub.secret, utcnow() + dt.timedelta(seconds=overlap_seconds)
    else:
        sub.previous_secret = sub.previous_secret_until = None
    sub.secret = ctx.repos.seal_text(secret)
    record(ctx.session, ctx.principal, "webhook.rotate_secret", sub.name, {"overlap_seconds": overlap_seconds})
    return secret


def scope_names(session: Session, sub: WebhookSubscription) -> dict[str, str | None]:
    """The names of the subscription's cluster, workspace and app (None for a level its scope is wider than)."""
    names: dict[str, str | None] = {"cluster": None, "workspace": None, "app": None}
    for key, model, row_id in (("cluster", Cluster, sub.cluster_id), ("workspace", Workspace, sub.workspace_id),
                               ("app", Application, sub.application_id)):
        if row_id is not None:
            names[key] = session.scalar(select(model.name).where(model.id == row_id))
    return names


# --- the delivery log ------------------------------------------------------------------------------


def list_deliveries(ctx: Context, sub: WebhookSubscription, limit: Any = 100,
                    before_id: Any = None) -> list[WebhookDelivery]:
    """The subscription's deliveries, newest first: ``limit`` of them, older than delivery ``before_id``."""
    if not _readable(ctx, sub):
        raise NotFound(f'no webhook subscription "{sub.name}"')
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DELIVERIES:
        raise InvalidRequest(f"limit is a whole number from 1 to {MAX_DELIVERIES}")
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
    if before_id is not None:
        if not isinstance(before_id, int) or isinstance(before_id, bool) or not 0 < before_id <= MAX_ID:
            raise InvalidRequest(f"before is a delivery's id, from 1 to {MAX_ID}")
        query = query.where(WebhookDelivery.id < before_id)
    return list(ctx.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def get_delivery(ctx: Context, sub: WebhookSubscription, delivery_id: Any) -> WebhookDelivery:
    """Delivery ``delivery_id`` of the subscription; NotFound when it has none of that id."""
    if not _readable(ctx, sub):
        raise NotFound(f'no webhook subscription "{sub.name}"')
    row = None
    if isinstance(delivery_id, int) and not isinstance(delivery_id, bool) and 0 < delivery_id <= MAX_ID:
        row = ctx.session.get(WebhookDelivery, delivery_id)
    if row is None or row.subscription_id != sub.id:
        raise NotFound(f'webhook subscription "{sub.name}" has no delivery {delivery_id}')
    return row


def events_of(ctx: Context, deliveries: list[WebhookDelivery]) -> dict[int, WebhookEvent]:
    """The event of each delivery, by the event's id (deliveries read through ``list_deliveries``)."""
    ids = {delivery.event_id for delivery in deliveries}
    return {event.id: event for event in ctx.session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids)))}


def attempts_of(ctx: Context, deliveries: list[WebhookDelivery]) -> dict[int, list[WebhookAttempt]]:
    """Each delivery's attempts, oldest first, by the delivery's id (deliveries read through ``list_deliveries``)."""
    attempts: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery in deliveries}
    for attempt in ctx.session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
                                       .order_by(WebhookAttempt.id)):
        attempts[attempt.delivery_id].append(attempt)
    return attempts


def redeliver(ctx: Context, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivered or given-up delivery again, now; Conflict while it is pending or its subscription paused."""
    sub = ctx.session.get(WebhookSubscription, delivery.subscription_id)
    if sub is None or sub.tenant_id != ctx.principal.tenant_id or not _readable(ctx, sub):
        raise NotFound(f"no webhook delivery {delivery.id}")
    _require_manage(ctx, sub, "redeliver to")
    if delivery.state == "pending":
        raise Conflict(f"delivery {delivery.id} is pending already: it is sent at its next attempt")
    if sub.state != "active":
        raise Conflict(f'webhook subscription "{sub.name}" is paused: resume it (state active) to redeliver')
    delivery.state, delivery.next_attempt_at, delivery.delivered_at = "pending", utcnow(), None
    delivery.claimed_by = delivery.claimed_until = None
    record(ctx.session, ctx.principal, "webhook.redeliver", sub.name, {"delivery": delivery.id})
    return delivery


def send_test(ctx: Context, sub: WebhookSubscription) -> WebhookDelivery:
    """A ``webhook.test`` event for ``sub`` alone, to be sent now as any delivery is (signed, retried, logged);
    Conflict while the subscription is paused."""
    _require_manage(ctx, sub, "send a test event to")
    if sub.state != "active":
        raise Conflict(f'webhook subscription "{sub.name}" is paused: resume it (state active) to test it')
    now = utcnow()
    tenant = ctx.session.scalar(select(Tenant.name).where(Tenant.id == sub.tenant_id))
    names = {key: name for key, name in scope_names(ctx.session, sub).items() if name is not None}
    event = WebhookEvent(tenant_id=sub.tenant_id, key=f"test/{sub.id}/{secrets.token_hex(8)}", type=TEST_EVENT,
                         data={"tenant": tenant, "subscription": sub.name, **names, "requested_by": ctx.principal.name},
                         occurred_at=now, fanned_out=True)  # its one delivery is made here
    ctx.session.add(event)
    ctx.session.flush()
    delivery = WebhookDelivery(subscription_id=sub.id, event_id=event.id, state="pending", next_attempt_at=now)
    ctx.session.add(delivery)
    ctx.session.flush()
    record(ctx.session, ctx.principal, "webhook.test", sub.name, {"delivery": delivery.id})
    return delivery


# --- checks --------------------------------------------------------------------------------------------


def _scope_ids(ctx: Context, cluster: Any, workspace: Any, app: Any) -> tuple[int | None, int | None, int | None]:
    """The ids of the named scope and the levels above it; NotFound for a scope the caller cannot read."""
    if (workspace is not None or app is not None) and cluster is None:
        raise InvalidRequest("a workspace or an app is named with its cluster")
    if app is not None and workspace is None:
        raise InvalidRequest("an app is named with its workspace")
    if not all(value is None or isinstance(value, str) for value in (cluster, workspace, app)):
        raise InvalidRequest("cluster, workspace and app are names")
    if app is not None:
        found = get_app(ctx, cluster, workspace, app)
        return found.workspace.cluster_id, found.workspace_id, found.id
    if workspace is not None:
        ws = find_workspace(ctx, cluster, workspace)
        return ws.cluster_id, ws.id, None
    if cluster is not None:
        row = ctx.session.scalar(select(Cluster).where(Cluster.tenant_id == ctx.principal.tenant_id,
                                                       Cluster.name == cluster))
        if row is None or not sees_cluster(ctx.principal, row):
            raise NotFound(f'no cluster "{cluster}"')
        return row.id, None, None
    return None, None, None


def _scope(sub: WebhookSubscription) -> Scope:
    return Scope(sub.tenant_id, sub.cluster_id, sub.workspace_id)


def _level(sub: WebhookSubscription) -> str:
    return "app" if sub.application_id is not None else _scope(sub).level


def _readable(ctx: Context, sub: WebhookSubscription) -> bool:
    scope = _scope(sub)
    return ctx.principal.can("workspace.read" if scope.level == "workspace" else "cluster.read", scope)


MANAGED_WITH = {"tenant": "tenant.manage", "cluster": "cluster.update", "workspace": "workspace.update"}


def may_manage(ctx: Context, sub: WebhookSubscription) -> bool:
    """Whether ``ctx``'s principal may change ``sub`` (this module's table): pages offer their forms by it."""
    scope = _scope(sub)
    return ctx.principal.can(MANAGED_WITH[scope.level], scope)


def _require_manage(ctx: Context, sub: WebhookSubscription, doing: str) -> None:
    scope = _scope(sub)
    permission = MANAGED_WITH[scope.level]
    if not ctx.principal.can(permission, scope):
        where = {"tenant": "the tenant", "cluster": "a cluster", "workspace": "a workspace"}[scope.level]
        raise PermissionDenied(f"{ctx.principal.name} may not {doing} webhook subscriptions of {where} "
                               f"(it takes {permission} there)")


def _events(value: Any, sub: WebhookSubscription) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(event, str) for event in value):
        raise InvalidRequest(f"events is a list of one or more of {', '.join(EVENT_TYPES)}")
    unknown = sorted(set(value) - set(EVENT_TYPES))
    if unknown:
        raise InvalidRequest(f"unknown event type(s) {', '.join(u[:60] for u in unknown[:5])}; "
                             f"events are {', '.join(EVENT_TYPES)}")
    level = _level(sub)
    if level in ("workspace", "app") and set(value) & set(CLUSTER_EVENTS):
        raise InvalidRequest(f"{' and '.join(CLUSTER_EVENTS)} are about a cluster: a subscription of the tenant "
                             f"or of a cluster hears them, not one of {'an' if level == 'app' else 'a'} {level}")
    return [event for event in EVENT_TYPES if event in value]


def _format(value: Any) -> str:
    if value not in FORMATS:
        raise InvalidRequest(f"format is one of {', '.join(FORMATS)}")
    return value


def _allowed_host(ctx: Context, value: Any) -> str | None:
    """``value`` checked as a subscription's allowed_host: one host name or IP address, set by a tenant-admin."""
    if value is None:
        return None
    if not ctx.principal.is_tenant_admin():
        raise PermissionDenied(f"{ctx.principal.name} may not set allowed_host: a tenant-admin lets a subscription "
                               "reach a private host")
    refusal = InvalidRequest("allowed_host is the url's host: one host name or IP address, not a range, and not a "
                             "link-local or cloud metadata address")
    if not isinstance(value, str) or "/" in value:
        raise refusal
    try:
        (host,) = egress.allowed_hosts([value])
    except InvalidRequest:
        raise refusal from None
    return host


def _sealed_url(ctx: Context, url: Any, allowed_host: str | None) -> tuple[str, str]:
    """``url`` checked (the module's docstring), rebuilt from its parts, sealed; and how it is shown.

    Rebuilt, so that what is checked here is what the worker's HTTP client reads: no two parsers
    disagree on where the host ends (a backslash, a second ``@``)."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest("url is a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"the url is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        raise InvalidRequest("the url must not hold spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest("the url has an invalid host or port") from exc
    if port == 0:
        raise InvalidRequest("the url has an invalid host or port")
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidRequest("the url is https:// (or http:// to its allowed_host)")
    if "@" in parts.netloc:
        raise InvalidRequest("the url must not hold a user name or password")
    if parts.fragment or "#" in url:
        raise InvalidRequest("the url must not have a fragment (#...)")
    if not parts.hostname:
        raise InvalidRequest("the url has no host")
    host = _host(parts.hostname)
    if allowed_host is not None and host != allowed_host:
        raise InvalidRequest("allowed_host is the url's host, which it lets resolve to a private address (to use "
                             "another host, set allowed_host to it or clear it)")
    if scheme == "http" and allowed_host is None:
        raise InvalidRequest("the url is https://; http:// only to a host a tenant-admin allows (allowed_host)")
    try:
        ctx.repos.policy((allowed_host,) if allowed_host else ()).addresses(host, port or (443 if scheme == "https"
                                                                                           else 80))
    except RepoError as exc:
        if egress.REFUSED in str(exc):
            raise InvalidRequest("the url's host is not a public address (loopback, private, link-local or cloud "
                                 "metadata): a tenant-admin can allow a private host for this subscription "
                                 "(allowed_host); link-local and metadata addresses never") from None
        raise InvalidRequest("the url's host cannot be resolved") from None
    bracketed = f"[{host}]" if ":" in host else host
    rebuilt = f"{scheme}://{bracketed}{f':{port}' if port is not None else ''}{parts.path or '/'}"
    rebuilt += f"?{parts.query}" if parts.query else ""
    return ctx.repos.seal_text(rebuilt), url_shown(rebuilt)


def _host(hostname: str) -> str:
    """A URL's host as a canonical IP address or a lowercase DNS name; numeric names resolvers read as
    addresses (``2130706433``, ``0x7f.1``) are refused."""
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    try:
        (name,) = egress.allowed_hosts([hostname])
    except InvalidRequest:
        raise InvalidRequest("the url's host is neither a DNS name nor an IP address") from None
    return name


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


__all__ = [
    "may_manage",
    "MANAGED_WITH",
    "MAX_ID",
    "EVENT_TYPES",
    "CLUSTER_EVENTS",
    "FORMATS",
    "emit",
    "emit_many",
    "matches",
    "open_url",
    "open_secrets",
    "url_shown",
    "NewSubscription",
    "create_subscription",
    "list_subscriptions",
    "get_subscription",
    "update_subscription",
    "delete_subscription",
    "rotate_secret",
    "scope_names",
    "list_deliveries",
    "get_delivery",
    "events_of",
    "attempts_of",
    "redeliver",
    "send_test",
    "TEST_EVENT",
]
