"""Status webhooks: subscribe a receiver to status events, read and change a subscription, rotate its
secret, read its deliveries, send one again, send a test event.

=================================================  ================================================
route                                              what
=================================================  ================================================
POST /webhooks                                     subscribe (gitops.webhooks.create_subscription);
                                                   the answer holds the signing secret, this once
GET /webhooks, /webhooks/<webhook>                 the subscriptions; one with its last deliveries
PATCH /webhooks/<webhook>                          url, events, format, allowed_host, state
                                                   ("active" resumes a paused one, "paused" pauses)
DELETE /webhooks/<webhook>                         forget it and its delivery log
POST /webhooks/<webhook>/rotate-secret             a new secret, answered this once; the old one
                                                   signs too for ``overlap_seconds`` (a day)
GET /webhooks/<webhook>/deliveries                 its deliveries, newest first, each with its event
                                                   and attempts (``limit``, ``before``: paging)
POST .../deliveries/<delivery_id>/redeliver        send a delivered or given-up delivery again, now
POST /webhooks/<webhook>/test                      a ``webhook.test`` event to this subscription only
=================================================  ================================================

A subscription's scope decides who may do what, in the service: managing one takes
``tenant.manage`` for the tenant's, ``cluster.update`` for a cluster's, ``workspace.update``
for a workspace's or an app's; reading, ``cluster.read`` or ``workspace.read`` there; one the
caller cannot read answers as not existing (404). So the routes let in whoever may read
(``workspace.read``) or manage (``workspace.update``) some subscription. The URL is sealed at
rest and answered as ``url``, its scheme, host and first path segment only (Slack's and Teams'
URLs carry their secret in the rest); the signing secret is answered where it is made, never
again.
"""

from __future__ import annotations

from flask import request

from contract.errors import InvalidRequest
from gitops import webhooks
from gitops.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription, utcnow
from webapp.api.blueprint import bp
from webapp.api.requests import field, json_body
from webapp.api.shapes import iso
from webapp.auth import requires
from webapp.plane import context
from webapp.query_parameters import argument

RECENT_DELIVERIES = 5  # how many of its last deliveries a subscription's own answer shows
CREATE_FIELDS = ("name", "url", "events", "format", "cluster", "workspace", "app", "allowed_host")


def webhook_json(sub: WebhookSubscription, with_deliveries: bool = False) -> dict:
    """A subscription: its URL as shown, never whole, and never its secrets. ``previous_secret_until``:
    while a rotation's overlap lasts, when the old secret stops signing."""
    ctx = context()
    rotating = sub.previous_secret_until is not None and sub.previous_secret_until > utcnow()
    out = {
        "name": sub.name,
        "url": sub.url_shown,
        **webhooks.scope_names(ctx.session, sub),
        "events": sub.events,
        "format": sub.format,
        "allowed_host": sub.allowed_host,
        "state": sub.state,
        "paused_reason": sub.paused_reason,
        "failing_since": iso(sub.failing_since),
        "previous_secret_until": iso(sub.previous_secret_until) if rotating else None,
        "created_by": sub.created_by,
        "created_at": iso(sub.created_at),
    }
    if with_deliveries:
        out["deliveries"] = deliveries_json(webhooks.list_deliveries(ctx, sub, limit=RECENT_DELIVERIES))
    return out


def deliveries_json(deliveries: list[WebhookDelivery]) -> list[dict]:
    ctx = context()
    events, attempts = webhooks.events_of(ctx, deliveries), webhooks.attempts_of(ctx, deliveries)
    return [delivery_json(d, events[d.event_id], attempts[d.id]) for d in deliveries]


def delivery_json(delivery: WebhookDelivery, event: WebhookEvent, attempts: list[WebhookAttempt]) -> dict:
    """One event to one subscription: its state, the last answer (``status_code``, or ``error`` when
    there was none), ``attempts`` made so far and each in ``attempt_log``; ``next_attempt_at`` while
    pending."""
    return {
        "id": delivery.id,
        "event": {"type": event.type, "key": event.key, "occurred_at": iso(event.occurred_at)},
        "state": delivery.state,
        "attempts": delivery.attempts,
        "status_code": delivery.status_code,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
        "delivered_at": iso(delivery.delivered_at),
        "created_at": iso(delivery.created_at),
        "attempt_log": [{"at": iso(a.at), "status_code": a.status_code, "error": a.error,
                         "duration_ms": a.duration_ms} for a in attempts],
    }


def _one_delivery_json(delivery: WebhookDelivery) -> dict:
    (shown,) = deliveries_json([delivery])
    return shown


@bp.get("/webhooks")
@requires("workspace.read")
def list_webhooks():
    """The status webhooks whose scope the caller may read"""
    return {"webhooks": [webhook_json(s) for s in webhooks.list_subscriptions(context())]}


@bp.post("/webhooks")
@requires("workspace.update")
def create_webhook():
    """Subscribe a receiver to status events; its signing secret is answered this once"""
    data = json_body()
    unknown = set(data) - set(CREATE_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}; a webhook has "
                             f"{', '.join(CREATE_FIELDS)}")
    ctx = context()
    new = webhooks.create_subscription(
        ctx, field(data, "name", str), field(data, "url", str), events=field(data, "events", list),
        format=field(data, "format", str, required=False, default="shipyard"),
        cluster=field(data, "cluster", str, required=False), workspace=field(data, "workspace", str, required=False),
        app=field(data, "app", str, required=False), allowed_host=field(data, "allowed_host", str, required=False))
    ctx.session.commit()
    return {**webhook_json(new.subscription), "secret": new.secret}, 201


@bp.get("/webhooks/<webhook>")
@requires("workspace.read")
def get_webhook(webhook: str):
    """A status webhook, with its last deliveries"""
    return webhook_json(webhooks.get_subscription(context(), webhook), with_deliveries=True)


@bp.patch("/webhooks/<webhook>")
@requires("workspace.update")
def update_webhook(webhook: str):
    """Change a status webhook's URL, events, format or allowed host; pause or resume it"""
    data = json_body()
    ctx = context()
    row = webhooks.update_subscription(ctx, webhooks.get_subscription(ctx, webhook), data)
    ctx.session.commit()
    return webhook_json(row)


@bp.delete("/webhooks/<webhook>")
@requires("workspace.update")
def delete_webhook(webhook: str):
    """Forget a status webhook and its delivery log"""
    ctx = context()
    webhooks.delete_subscription(ctx, webhooks.get_subscription(ctx, webhook))
    ctx.session.commit()
    return "", 204


@bp.post("/webhooks/<webhook>/rotate-secret")
@requires("workspace.update")
def rotate_webhook_secret(webhook: str):
    """A new signing secret, answered this once; the old one signs too until the overlap ends"""
    data = json_body() if request.get_data() else {}
    overlap = field(data, "overlap_seconds", int, required=False, default=86400)
    ctx = context()
    row = webhooks.get_subscription(ctx, webhook)
    secret = webhooks.rotate_secret(ctx, row, overlap)
    ctx.session.commit()
    return {**webhook_json(row), "secret": secret}, 201


@bp.get("/webhooks/<webhook>/deliveries")
@requires("workspace.read")
def list_webhook_deliveries(webhook: str):
    """A status webhook's deliveries, newest first, each with its event and attempts"""
    limit, before = argument("limit"), argument("before")  # a bad parameter is a 400 whatever the webhook
    ctx = context()
    rows = webhooks.list_deliveries(ctx, webhooks.get_subscription(ctx, webhook), limit=limit, before_id=before)
    return {"deliveries": deliveries_json(rows)}


@bp.post("/webhooks/<webhook>/deliveries/<int:delivery_id>/redeliver")
@requires("workspace.update")
def redeliver_webhook_delivery(webhook: str, delivery_id: int):
    """Send a delivered or given-up delivery again, now"""
    ctx = context()
    row = webhooks.redeliver(ctx, webhooks.get_delivery(ctx, webhooks.get_subscription(ctx, webhook), delivery_id))
    ctx.session.commit()
    return _one_delivery_json(row)


@bp.post("/webhooks/<webhook>/test")
@requires("workspace.update")
def test_webhook(webhook: str):
    """Send a webhook.test event to this status webhook only"""
    ctx = context()
    row = webhooks.send_test(ctx, webhooks.get_subscription(ctx, webhook))
    ctx.session.commit()
    return _one_delivery_json(row), 201
