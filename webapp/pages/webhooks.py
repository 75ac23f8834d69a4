"""The dashboard's place for status webhooks: the subscriptions, making one, a subscription's own page.

Every page reads and every form changes through the service the JSON API calls
(webapp.api.webhooks: gitops.webhooks) with the caller's principal, so they are authorized
and audited exactly as the API; forms, refusals and the secret shown once work as on the
other admin pages (webapp.pages.admin).

==================================================  ==============================================
route                                               what
==================================================  ==============================================
``/admin/webhooks``                                 the subscriptions: scope, events, format, URL
                                                    as shown, state, the last delivery
``/admin/create-webhook``                           make one; its signing secret shown once
``/admin/webhooks/<webhook>``                       its settings (change them), state, deliveries
                                                    newest first (``?before=<delivery id>``: older
                                                    ones), each with its attempts
``…/<webhook>/state``                               pause it, or resume it
``…/<webhook>/rotate-secret``                       a new secret, shown once (confirmed), the old
                                                    one signing through the overlap chosen
``…/<webhook>/test``                                a ``webhook.test`` event to it alone
``…/<webhook>/deliveries/<id>/redeliver``           send a delivered or given-up delivery again
``…/<webhook>/delete``                              forget it and its deliveries (confirmed)
==================================================  ==============================================

The routes let in whoever may read (``workspace.read``) or manage (``workspace.update``) a
subscription somewhere; the service then decides by the subscription's scope (its module's
table), and one in a scope the caller cannot read is a 404. Someone who may only read a
subscription sees no form on its page. Only a tenant-admin sets the allowed host; whoever manages
the subscription may clear it.

The URL is the credential of a Slack or Teams incoming webhook, so it is typed into a password
field, never sent back (a refused form keeps everything else typed), and shown only as
``url_shown``. The signing secret is shown on the page answering the post that made it, and
nowhere else.

A subscription's state is a word beside its colour: "Active" is green; "Paused" red, with why
(by whom, or the worker after a day of failures); "Failing" red too while an active one has
delivered nothing since its last success. The admin index counts the paused ones for those who
may read them (webapp.pages.admin), so an owner sees a pause without opening this section.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import flash, redirect, request, url_for
from sqlalchemy.orm import Session

from contract.errors import InvalidRequest, PermissionDenied
from gitops import webhooks
from gitops.dashboard import Word
from gitops.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription, utcnow
from gitops.service_context import Context
from gitops.webhook_delivery import GIVE_UP_AFTER, PAUSE_AFTER
from webapp.auth import requires
from webapp.pages.admin import (
    _REFUSALS,
    Refusal,
    _confirmed,
    _done,
    _fields,
    _not_confirmed,
    _page,
    _refused,
    _shown_once,
)
from webapp.pages.blueprint import bp
from webapp.plane import context
from webapp.query_parameters import INT_MAX, WholeNumber

DELIVERY_PAGE = 20
# what a refused form to make a subscription shows again: all but the URL, which may be the credential
KEPT_FIELDS = ("name", "format", "cluster", "workspace", "app", "allowed_host")
# the rotation's overlaps offered: how long the old secret keeps signing, by seconds as the form sends them
OVERLAPS = {"0": "none: the old secret stops signing now", "3600": "an hour", "86400": "a day",
            "604800": "7 days"}
DEFAULT_OVERLAP = "86400"
FORMAT_NAMES = {"shipyard": "Shipyard JSON", "slack": "Slack incoming webhook", "teams": "Microsoft Teams workflow"}
_BEFORE = WholeNumber(high=INT_MAX)


def _hours(span: dt.timedelta) -> int:
    return int(span.total_seconds() // 3600)


def _moment(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def subscription_word(sub: WebhookSubscription) -> Word:
    """The subscription's state as a person reads it; paused carries why, failing since when."""
    if sub.state == "paused":
        return Word("Paused", "bad", sub.paused_reason or "paused: nothing is sent to it until it is resumed")
    if sub.failing_since is not None:
        return Word("Failing", "bad", f"no delivery has succeeded since {_moment(sub.failing_since)}; it is paused "
                                      f"after {_hours(PAUSE_AFTER)} hours of that")
    return Word("Active", "ok")


def delivery_word(delivery: WebhookDelivery) -> Word:
    if delivery.state == "delivered":
        return Word("Delivered", "ok")
    if delivery.state == "failed":
        return Word("Failed", "bad", f"given up: no attempt succeeded within {_hours(GIVE_UP_AFTER)} hours of the "
                                     "event")
    if delivery.attempts:
        return Word("Retrying", "bad", f"attempt {delivery.attempts} failed; the next at "
                                       f"{_moment(delivery.next_attempt_at)}")
    return Word("Pending", "busy", "sent at its next attempt")


def scope_text(session: Session, sub: WebhookSubscription) -> str:
    """Where the subscription listens: the whole tenant, a cluster, a workspace or an app."""
    names = webhooks.scope_names(session, sub)
    if names["app"]:
        return f"{names['cluster']}:{names['workspace']}/{names['app']}"
    if names["workspace"]:
        return f"{names['cluster']}:{names['workspace']}"
    return f"cluster {names['cluster']}" if names["cluster"] else "the whole tenant"


@dataclass(frozen=True)
class DeliveryRow:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]  # oldest first
    word: Word

    @property
    def at(self) -> dt.datetime:
        """When it was last tried, or made when it was not yet."""
        return self.attempts[-1].at if self.attempts else self.delivery.created_at


def delivery_rows(ctx: Context, deliveries: list[WebhookDelivery]) -> list[DeliveryRow]:
    events, attempts = webhooks.events_of(ctx, deliveries), webhooks.attempts_of(ctx, deliveries)
    return [DeliveryRow(d, events[d.event_id], attempts[d.id], delivery_word(d)) for d in deliveries]


@dataclass(frozen=True)
class SubscriptionRow:
    sub: WebhookSubscription
    word: Word
    scope: str
    last: DeliveryRow | None


# --- the list and making one --------------------------------------------------------------------------


@bp.get("/admin/webhooks")
@requires("workspace.read")  # lists only the subscriptions whose scope the caller may read
def admin_webhooks():
    ctx = context()
    subs = webhooks.list_subscriptions(ctx)
    last = {row.delivery.subscription_id: row for row in delivery_rows(ctx, [
        delivery for sub in subs for delivery in webhooks.list_deliveries(ctx, sub, limit=1)])}
    rows = [SubscriptionRow(sub, subscription_word(sub), scope_text(ctx.session, sub), last.get(sub.id))
            for sub in subs]
    return _page("admin_webhooks.html", rows=rows, format_names=FORMAT_NAMES,
                 may_create=ctx.principal.can_anywhere("workspace.update"))


def _create_page(ctx, refusal: Refusal | None = None, form: dict | None = None):
    return _page("admin_webhook_create.html", refusal, form=form or {}, event_types=webhooks.EVENT_TYPES,
                 cluster_events=webhooks.CLUSTER_EVENTS, formats=webhooks.FORMATS, format_names=FORMAT_NAMES,
                 may_allow_hosts=ctx.principal.is_tenant_admin())


def _typed() -> dict:
    """What the form to make a subscription sent but its URL: what a refused one shows again."""
    return {**_fields(*KEPT_FIELDS), "events": request.form.getlist("events")}


@bp.get("/admin/create-webhook")
@requires("workspace.update")
def admin_webhook_form():
    return _create_page(context())


@bp.post("/admin/create-webhook")
@requires("workspace.update")
def admin_create_webhook():
    ctx = context()
    typed = _typed()
    try:
        new = webhooks.create_subscription(
            ctx, typed["name"], request.form.get("url", "").strip(), events=typed["events"],
            format=typed["format"] or "shipyard", cluster=typed["cluster"] or None,
            workspace=typed["workspace"] or None, app=typed["app"] or None,
            allowed_host=typed["allowed_host"] or None)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _create_page, form=typed)
    ctx.session.commit()
    return _shown_once("admin_webhook_secret.html", sub=new.subscription, secret=new.secret, rotated=False,
                       scope=scope_text(ctx.session, new.subscription))


# --- a subscription -----------------------------------------------------------------------------------


def _settings_form(sub: WebhookSubscription) -> dict:
    return {"events": sub.events, "format": sub.format, "allowed_host": sub.allowed_host or ""}


def _webhook_page(ctx, sub: WebhookSubscription, refusal: Refusal | None = None, form: dict | None = None,
                  before: int | None = None):
    deliveries = webhooks.list_deliveries(ctx, sub, limit=DELIVERY_PAGE + 1, before_id=before)
    older = deliveries[DELIVERY_PAGE - 1].id if len(deliveries) > DELIVERY_PAGE else None
    rotating = sub.previous_secret_until if sub.previous_secret_until and sub.previous_secret_until > utcnow() \
        else None
    return _page("admin_webhook.html", refusal, sub=sub, word=subscription_word(sub),
                 scope=scope_text(ctx.session, sub), rotating_until=rotating,
                 deliveries=delivery_rows(ctx, deliveries[:DELIVERY_PAGE]), older=older, paged=before is not None,
                 form=form or _settings_form(sub), event_types=webhooks.EVENT_TYPES,
                 cluster_events=webhooks.CLUSTER_EVENTS, formats=webhooks.FORMATS, format_names=FORMAT_NAMES,
                 overlaps=OVERLAPS, default_overlap=DEFAULT_OVERLAP, may_manage=webhooks.may_manage(ctx, sub),
                 may_allow_hosts=ctx.principal.is_tenant_admin())


@bp.get("/admin/webhooks/<webhook>")
@requires("workspace.read")
def admin_webhook(webhook: str):
    ctx = context()
    return _webhook_page(ctx, webhooks.get_subscription(ctx, webhook),
                         before=_BEFORE.parse("before", request.args.get("before")))


def _setting_changes(sub: WebhookSubscription) -> dict:
    """The settings the form changes: only those that differ; the URL only when a new one is typed."""
    changes: dict = {}
    events = request.form.getlist("events")
    if set(events) != set(sub.events):
        changes["events"] = events
    body_format = _fields("format")["format"]
    if body_format and body_format != sub.format:
        changes["format"] = body_format
    url = request.form.get("url", "").strip()
    if url:
        changes["url"] = url
    if "allowed_host" in request.form:  # a tenant-admin's field, or the box that clears it; empty: clear it
        allowed = _fields("allowed_host")["allowed_host"] or None
        if allowed != sub.allowed_host:
            changes["allowed_host"] = allowed
    return changes


@bp.post("/admin/webhooks/<webhook>")
@requires("workspace.update")
def admin_update_webhook(webhook: str):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    changes = _setting_changes(sub)
    if not changes:
        flash("Nothing to save: the settings are as they were.")
        return redirect(url_for("pages.admin_webhook", webhook=webhook))
    try:
        webhooks.update_subscription(ctx, sub, changes)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _webhook_page, sub,
                        form={"events": request.form.getlist("events"), **_fields("format", "allowed_host")})
    return _done(ctx, f'Webhook "{webhook}" saved ({", ".join(sorted(changes))}).', "pages.admin_webhook",
                 webhook=webhook)


@bp.post("/admin/webhooks/<webhook>/state")
@requires("workspace.update")
def admin_webhook_state(webhook: str):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    state = request.form.get("state", "")
    try:
        webhooks.update_subscription(ctx, sub, {"state": state})
    except _REFUSALS as exc:
        return _refused(ctx, exc, _webhook_page, sub)
    said = (f'Webhook "{webhook}" resumed: its pending deliveries go out, and it hears new events again.'
            if state == "active" else
            f'Webhook "{webhook}" paused: nothing is sent to it, and it hears no new events, until it is resumed.')
    return _done(ctx, said, "pages.admin_webhook", webhook=webhook)


def _overlap() -> int:
    chosen = request.form.get("overlap", DEFAULT_OVERLAP)
    if chosen not in OVERLAPS:
        raise InvalidRequest(f"the overlap is one of {', '.join(OVERLAPS)} seconds")
    return int(chosen)


@bp.post("/admin/webhooks/<webhook>/rotate-secret")
@requires("workspace.update")
def admin_rotate_webhook_secret(webhook: str):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    if not _confirmed():
        return _webhook_page(ctx, sub, _not_confirmed("replace the signing secret"))
    try:
        secret = webhooks.rotate_secret(ctx, sub, _overlap())
    except _REFUSALS as exc:
        return _refused(ctx, exc, _webhook_page, sub)
    ctx.session.commit()
    return _shown_once("admin_webhook_secret.html", sub=sub, secret=secret, rotated=True,
                       scope=scope_text(ctx.session, sub))


@bp.post("/admin/webhooks/<webhook>/test")
@requires("workspace.update")
def admin_test_webhook(webhook: str):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    try:
        delivery = webhooks.send_test(ctx, sub)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _webhook_page, sub)
    return _done(ctx, f'A {webhooks.TEST_EVENT} event is on its way to "{webhook}" (delivery {delivery.id}): its '
                      "outcome shows in the deliveries below.", "pages.admin_webhook", webhook=webhook)


@bp.post("/admin/webhooks/<webhook>/deliveries/<int:delivery_id>/redeliver")
@requires("workspace.update")
def admin_redeliver_webhook(webhook: str, delivery_id: int):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    delivery = webhooks.get_delivery(ctx, sub, delivery_id)
    try:
        webhooks.redeliver(ctx, delivery)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _webhook_page, sub)
    return _done(ctx, f"Delivery {delivery_id} is sent again now, with the same webhook-id.", "pages.admin_webhook",
                 webhook=webhook)


def _delete_page(ctx, sub: WebhookSubscription, refusal: Refusal | None = None):
    return _page("admin_webhook_delete.html", refusal, sub=sub, scope=scope_text(ctx.session, sub))


@bp.get("/admin/webhooks/<webhook>/delete")
@requires("workspace.update")
def admin_webhook_delete(webhook: str):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    if not webhooks.may_manage(ctx, sub):
        raise PermissionDenied(f"{ctx.principal.name} may not delete webhook {webhook}")
    return _delete_page(ctx, sub)


@bp.post("/admin/webhooks/<webhook>/delete")
@requires("workspace.update")
def admin_delete_webhook(webhook: str):
    ctx = context()
    sub = webhooks.get_subscription(ctx, webhook)
    if not _confirmed():
        return _delete_page(ctx, sub, _not_confirmed("delete this webhook subscription"))
    try:
        webhooks.delete_subscription(ctx, sub)
    except _REFUSALS as exc:
        return _refused(ctx, exc, _delete_page, sub)
    return _done(ctx, f'Webhook "{webhook}" deleted, with its delivery log: nothing more is sent to it.',
                 "pages.admin_webhooks")


__all__ = ["subscription_word", "delivery_word", "scope_text", "delivery_rows", "DeliveryRow",
           "SubscriptionRow", "FORMAT_NAMES"]
