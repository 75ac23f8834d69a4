"""Webhook subscriptions and the event outbox (gitops.webhooks), on SQLite and PostgreSQL.

Who may manage and read a subscription follows its scope; its URL and secret are sealed at rest,
the secret shown once and the URL never repeated; URLs reaching what only the server reaches are
refused; a rotated secret keeps signing through its overlap; an event is recorded once, however
often and by however many sessions it is emitted; and nothing of a URL or secret reaches the audit log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
import time

import pytest
from sqlalchemy import func, select

from contract.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from gitops import webhooks
from gitops.models import (AuditEvent, Cluster, Tenant, WebhookAttempt, WebhookDelivery, WebhookEvent,
                           WebhookSubscription, Workspace, utcnow)
from gitops.policy import Grant, Principal, Scope
from gitops.repo_store import RepoStore
from gitops.service_context import Context
from tests.plane import add_cluster, add_workspace, deploy_yaml, make_user, service_spec

SLACK = "https://hooks.example.com/services/T0000/B0000/XXXXSECRETXXXX"
SLACK_SECRET = "XXXXSECRETXXXX"

# What the test resolver answers: the egress policy's real checks run on these addresses.
ADDRESSES = {
    "hooks.example.com": ["93.184.216.34"],
    "inside.test": ["10.1.2.3"],
    "loop.test": ["127.0.0.1"],
    "ula.test": ["fd00::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "192.168.1.10"],
}


def resolve(host: str, port: int) -> list[str]:
    if host not in ADDRESSES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return ADDRESSES[host]


@pytest.fixture
def world(plane_app):
    """Clusters demo and edge, demo's workspaces storefront and data, app web in storefront; one session
    that every principal's Context shares (on SQLite, a session per principal would queue on the write lock)."""
    admin = make_user(plane_app, "admin", "tenant-admin")
    add_cluster(admin, "demo")
    add_cluster(admin, "edge")
    for workspace in ("storefront", "data"):
        add_workspace(admin, "demo", workspace)
    response = deploy_yaml(admin, service_spec("web"))
    assert response.status_code in (200, 201), response.get_json()
    plane = plane_app.extensions["shipyard"]
    with plane.sessions() as session:
        tenant_id = session.scalar(select(Tenant.id))
        clusters = dict(session.execute(select(Cluster.name, Cluster.id)).all())
        workspaces = {name: (cluster_id, workspace_id) for name, cluster_id, workspace_id in session.execute(
            select(Workspace.name, Workspace.cluster_id, Workspace.id))}
    session = plane.sessions()
    yield {"app": plane_app, "plane": plane, "tenant_id": tenant_id, "clusters": clusters, "workspaces": workspaces,
           "session": session}
    session.close()


def context(world, role: str = "tenant-admin", cluster: str | None = None, workspace: str | None = None,
            name: str | None = None) -> Context:
    """A Context for someone bound to ``role`` at the scope named, with the test resolver."""
    plane, tenant_id = world["plane"], world["tenant_id"]
    cluster_id, workspace_id = world["workspaces"][workspace] if workspace else (world["clusters"].get(cluster), None)
    principal = Principal(tenant_id, 0, name or role, (Grant(role, Scope(tenant_id, cluster_id, workspace_id)),))
    repos = RepoStore(plane.repos.root, plane.repos.credentials_key, resolve=resolve)
    return Context(world["session"], principal, repos)


def subscribe(ctx: Context, name: str, url: str = SLACK, **options) -> webhooks.NewSubscription:
    options.setdefault("events", ["version.healthy", "version.degraded"])
    new = webhooks.create_subscription(ctx, name, url, **options)
    ctx.session.commit()
    return new


def audit_details(world) -> list[str]:
    with world["plane"].sessions() as session:
        return [json.dumps([e.action, e.target, e.detail]) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith("webhook.")).order_by(AuditEvent.id))]


# --- permissions ---------------------------------------------------------------------------------------


def test_each_scope_is_managed_and_read_by_whom_the_policy_says(world):
    admin = context(world)
    subscribe(admin, "everything", events=["cluster.offline", "version.committed"])
    cluster_admin = context(world, "cluster-admin", "demo")
    subscribe(cluster_admin, "demo-ops", cluster="demo", events=["cluster.offline", "cluster.online"])
    with pytest.raises(PermissionDenied):
        subscribe(cluster_admin, "mine-too")  # the tenant's: a tenant-admin's

    ws_admin = context(world, "workspace-admin", "demo", "storefront")
    subscribe(ws_admin, "shop", cluster="demo", workspace="storefront")
    web = subscribe(ws_admin, "shop-web", cluster="demo", workspace="storefront", app="web").subscription
    assert (web.cluster_id, web.workspace_id) != (None, None) and web.application_id is not None
    with pytest.raises(PermissionDenied):
        subscribe(ws_admin, "whole-cluster", cluster="demo")
    with pytest.raises(PermissionDenied):
        subscribe(ws_admin, "whole-tenant")
    with pytest.raises(NotFound):
        subscribe(ws_admin, "theirs", cluster="demo", workspace="data")
    with pytest.raises(NotFound):
        subscribe(ws_admin, "nowhere", cluster="edge")
    with pytest.raises(NotFound):
        subscribe(ws_admin, "no-app", cluster="demo", workspace="storefront", app="api")
    with pytest.raises(Conflict):
        subscribe(ws_admin, "shop", cluster="demo", workspace="storefront")
    with pytest.raises(InvalidRequest, match="about a cluster"):
        subscribe(ws_admin, "offline", cluster="demo", workspace="storefront", events=["cluster.offline"])
    with pytest.raises(InvalidRequest, match="with its cluster"):
        subscribe(ws_admin, "loose", workspace="storefront")
    for bad in ({"events": []}, {"events": ["version.exploded"]}, {"events": "version.healthy"},
                {"format": "discord"}):
        with pytest.raises(InvalidRequest):
            subscribe(ws_admin, "bad", cluster="demo", workspace="storefront", **bad)
    with pytest.raises(InvalidRequest):
        subscribe(ws_admin, "Bad Name!", cluster="demo", workspace="storefront")

    def names(ctx: Context) -> list[str]:
        return [sub.name for sub in webhooks.list_subscriptions(ctx)]

    assert names(admin) == ["demo-ops", "everything", "shop", "shop-web"]
    assert names(context(world, "cluster-viewer", "demo")) == ["demo-ops", "shop", "shop-web"]
    viewer = context(world, "workspace-viewer", "demo", "storefront")
    assert names(viewer) == ["shop", "shop-web"] == names(ws_admin)
    assert names(context(world, "workspace-admin", "demo", "data")) == []
    assert names(context(world, "cluster-admin", "edge")) == []

    # What a caller cannot read does not exist for them; what they read but may not manage is refused.
    for ctx, hidden in ((ws_admin, "demo-ops"), (ws_admin, "everything"),
                        (context(world, "workspace-admin", "demo", "data"), "shop")):
        with pytest.raises(NotFound):
            webhooks.get_subscription(ctx, hidden)
    shop = webhooks.get_subscription(viewer, "shop")
    for change in (lambda: webhooks.update_subscription(viewer, shop, {"format": "slack"}),
                   lambda: webhooks.rotate_secret(viewer, shop),
                   lambda: webhooks.delete_subscription(viewer, shop)):
        with pytest.raises(PermissionDenied):
            change()
    ops = webhooks.get_subscription(admin, "demo-ops")
    with pytest.raises(PermissionDenied):
        webhooks.update_subscription(context(world, "cluster-viewer", "demo"), ops, {"format": "teams"})

    shop = webhooks.get_subscription(ws_admin, "shop")
    webhooks.update_subscription(ws_admin, shop, {"format": "teams", "events": ["version.synced", "run.failed"]})
    ws_admin.session.commit()
    assert (shop.format, shop.events) == ("teams", ["version.synced", "run.failed"])
    with pytest.raises(InvalidRequest, match="can be changed"):
        webhooks.update_subscription(ws_admin, shop, {"name": "renamed"})
    webhooks.delete_subscription(ws_admin, webhooks.get_subscription(ws_admin, "shop-web"))
    ws_admin.session.commit()
    assert names(admin) == ["demo-ops", "everything", "shop"]


def test_a_person_pauses_and_resumes_a_subscription(world):
    ctx = context(world, "workspace-admin", "demo", "storefront", name="alice")
    sub = subscribe(ctx, "shop", cluster="demo", workspace="storefront").subscription
    webhooks.update_subscription(ctx, sub, {"state": "paused"})
    assert (sub.state, sub.paused_reason) == ("paused", "paused by alice")
    sub.paused_reason, sub.failing_since = "failing for 24 hours", utcnow() - dt.timedelta(days=1)  # as the worker
    webhooks.update_subscription(ctx, sub, {"state": "active"})
    assert (sub.state, sub.paused_reason, sub.failing_since) == ("active", None, None)
    with pytest.raises(InvalidRequest):
        webhooks.update_subscription(ctx, sub, {"state": "gone"})


# --- secrets and URLs ------------------------------------------------------------------------------------


def test_the_secret_is_shown_once_and_secret_and_url_are_sealed_at_rest(world):
    ctx = context(world)
    new = subscribe(ctx, "chat", SLACK + "?token=QUERYSECRET", format="slack")
    secret = new.secret
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert subscribe(ctx, "other").secret != secret

    with world["plane"].sessions() as session:
        row = session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == "chat"))
        stored = json.dumps({column.name: str(getattr(row, column.key)) for column in WebhookSubscription.__table__.c})
    for plain in (secret, secret.removeprefix("whsec_"), SLACK_SECRET, "QUERYSECRET", "T0000"):
        assert plain not in stored
    assert row.url_shown == "https://hooks.example.com/services/…?…"
    assert webhooks.open_url(ctx.repos, row) == SLACK + "?token=QUERYSECRET"
    assert webhooks.open_secrets(ctx.repos, row, utcnow()) == [secret]


REFUSED_URLS = [
    "http://hooks.example.com/hook",  # http, to a host nobody allowed
    "ftp://hooks.example.com/hook",
    "https://user:hunter2@hooks.example.com/hook",
    "https://token@hooks.example.com/hook",
    "https://hooks.example.com/hook#fragment",
    "https://hooks.example.com\\@loop.test/hook",
    "https://hooks.example.com:0/hook",
    "https://hooks.example.com:99999/hook",
    "https:///hook",
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://loop.test/hook",
    "https://10.0.0.1/hook",
    "https://inside.test/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://metadata.test/hook",
    "https://[fd00::1]/hook",
    "https://ula.test/hook",
    "https://[fd00:ec2::254]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://mapped.test/hook",
    "https://mixed.test/hook",  # one private answer among public ones
    "https://2130706433/hook",
    "https://0x7f.1/hook",
    "https://unknown.test/hook",
    "https://hooks.example.com/" + "a" * 2100,
    "",
    None,
]


def test_urls_that_reach_what_only_the_server_reaches_are_refused_without_repeating_them(world):
    ctx = context(world)
    for url in REFUSED_URLS:
        with pytest.raises(InvalidRequest) as refused:
            subscribe(ctx, "bad", url)
        message = str(refused.value)
        assert "hunter2" not in message and "/hook" not in message and "meta-data" not in message, url
        assert not url or url not in message
    assert webhooks.list_subscriptions(ctx) == []


def test_only_a_tenant_admin_lets_a_subscription_reach_a_private_host(world):
    admin = context(world)
    ws_admin = context(world, "workspace-admin", "demo", "storefront")
    internal = "http://inside.test:8080/hooks/deploys?key=K"
    with pytest.raises(PermissionDenied):
        subscribe(ws_admin, "inside", internal, cluster="demo", workspace="storefront", allowed_host="inside.test")
    sub = subscribe(admin, "inside", internal, cluster="demo", workspace="storefront",
                    allowed_host="Inside.Test").subscription
    assert (sub.allowed_host, sub.url_shown) == ("inside.test", "http://inside.test:8080/hooks/…?…")

    for host, url in (("hooks.example.com", internal),  # allowed_host is the url's own host
                      ("169.254.169.254", "https://169.254.169.254/x"), ("metadata.test", "https://metadata.test/x"),
                      ("10.0.0.0/8", "https://10.0.0.1/x"), ("fe80::1", "https://[fe80::1]/x")):
        with pytest.raises(InvalidRequest):
            subscribe(admin, "again", url, allowed_host=host)

    # Whoever manages it may move it on the allowed host, or off it by clearing allowed_host; only a
    # tenant-admin may point allowed_host elsewhere.
    sub = webhooks.get_subscription(ws_admin, "inside")
    webhooks.update_subscription(ws_admin, sub, {"url": "https://inside.test/hooks/other"})
    with pytest.raises(InvalidRequest, match="allowed_host is the url's host"):
        webhooks.update_subscription(ws_admin, sub, {"url": SLACK})
    with pytest.raises(InvalidRequest, match="not a public address"):
        webhooks.update_subscription(ws_admin, sub, {"allowed_host": None, "format": "slack"})
    assert (sub.url_shown, sub.allowed_host, sub.format) == ("https://inside.test/hooks/…", "inside.test", "shipyard")
    with pytest.raises(PermissionDenied):
        webhooks.update_subscription(ws_admin, sub, {"url": "http://loop.test/x", "allowed_host": "loop.test"})
    with pytest.raises(InvalidRequest, match="https"):
        webhooks.update_subscription(ws_admin, sub, {"url": "http://hooks.example.com/x", "allowed_host": None})
    webhooks.update_subscription(ws_admin, sub, {"url": SLACK, "allowed_host": None})
    ws_admin.session.commit()
    assert (sub.allowed_host, sub.url_shown) == (None, "https://hooks.example.com/services/…")
    assert webhooks.open_url(ws_admin.repos, sub) == SLACK


def test_a_rotated_secret_keeps_signing_until_its_overlap_ends(world):
    ctx = context(world)
    first = subscribe(ctx, "chat").secret
    sub = webhooks.get_subscription(ctx, "chat")
    second = webhooks.rotate_secret(ctx, sub, overlap_seconds=3600)
    ctx.session.commit()
    now = utcnow()
    assert webhooks.open_secrets(ctx.repos, sub, now) == [second, first]
    assert webhooks.open_secrets(ctx.repos, sub, now + dt.timedelta(seconds=3601)) == [second]
    third = webhooks.rotate_secret(ctx, sub, overlap_seconds=0)
    assert webhooks.open_secrets(ctx.repos, sub, now) == [third]
    fourth = webhooks.rotate_secret(ctx, sub)  # a day by default; the secret before the current stops now
    assert webhooks.open_secrets(ctx.repos, sub, now + dt.timedelta(hours=23)) == [fourth, third]
    for bad in (-1, 8 * 86400, "3600", True, 1.5):
        with pytest.raises(InvalidRequest):
            webhooks.rotate_secret(ctx, sub, overlap_seconds=bad)
    assert len({first, second, third, fourth}) == 4


# --- the outbox ---------------------------------------------------------------------------------------------


def event(tenant_id: int, key: str, type: str = "version.healthy", **scope) -> dict:
    return {"tenant_id": tenant_id, "type": type, "key": key, "cluster_id": scope.get("cluster_id"),
            "workspace_id": scope.get("workspace_id"), "application_id": scope.get("application_id"),
            "data": {"version": 3}, "occurred_at": utcnow()}


def test_an_event_is_recorded_once_however_often_it_is_emitted(world):
    sessions, tenant_id = world["plane"].sessions, world["tenant_id"]
    with sessions() as session:
        other = Tenant(name="other")
        session.add(other)
        session.commit()
        other_id = other.id
        made_before = session.scalar(select(func.coalesce(func.max(WebhookEvent.id), 0)))  # the fixture's deploy

    with sessions() as session:
        webhooks.emit(session, **event(tenant_id, "version/1/healthy/1"))
        webhooks.emit(session, **event(tenant_id, "version/1/healthy/1"))
        session.commit()
        webhooks.emit(session, **{**event(tenant_id, "version/1/healthy/1"), "data": {"version": 99}})
        webhooks.emit(session, **event(other_id, "version/1/healthy/1"))  # another tenant's key
        webhooks.emit_many(session, [event(tenant_id, "run/7/failed", "run.failed"),
                                     event(tenant_id, "run/7/failed", "run.failed"),
                                     event(tenant_id, "version/1/healthy/1"), event(tenant_id, "run/8/succeeded")])
        session.commit()
        webhooks.emit_many(session, [])
        webhooks.emit(session, **event(tenant_id, "version/2/healthy/5"))
        session.rollback()  # the outbox is the caller's transaction: no change, no event

    # Two sessions emitting one key at once: the second waits for the first and takes it as done.
    first = sessions()
    webhooks.emit(first, **event(tenant_id, "cluster/1/offline/x", "cluster.offline"))
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with sessions() as session:
                webhooks.emit(session, **event(tenant_id, "cluster/1/offline/x", "cluster.offline"))
                session.commit()
        except BaseException as exc:  # reported to the test below
            failures.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    first.commit()
    first.close()
    thread.join(timeout=60)
    assert failures == [] and not thread.is_alive()

    with sessions() as session:
        rows = session.execute(select(WebhookEvent.tenant_id, WebhookEvent.key, WebhookEvent.data,
                                      WebhookEvent.fanned_out).where(WebhookEvent.id > made_before)
                               .order_by(WebhookEvent.id)).all()
    assert [(t == other_id, key, fanned) for t, key, _, fanned in rows] == [
        (False, "version/1/healthy/1", False), (True, "version/1/healthy/1", False),
        (False, "run/7/failed", False), (False, "run/8/succeeded", False), (False, "cluster/1/offline/x", False)]
    assert rows[0].data == {"version": 3}  # the first emit's, kept


def test_a_subscription_hears_the_events_of_its_scope_and_types():
    def sub(cluster=None, workspace=None, app=None, events=("version.healthy", "cluster.offline")):
        return WebhookSubscription(tenant_id=1, cluster_id=cluster, workspace_id=workspace, application_id=app,
                                   events=list(events))

    def happened(type="version.healthy", cluster=None, workspace=None, app=None, tenant=1):
        return WebhookEvent(tenant_id=tenant, type=type, cluster_id=cluster, workspace_id=workspace,
                            application_id=app)

    app_event, offline = happened(cluster=1, workspace=10, app=100), happened("cluster.offline", cluster=1)
    assert webhooks.matches(sub(), app_event) and webhooks.matches(sub(), offline)
    assert not webhooks.matches(sub(), happened(cluster=1, workspace=10, app=100, tenant=2))
    assert not webhooks.matches(sub(), happened("version.degraded", cluster=1, workspace=10, app=100))
    assert webhooks.matches(sub(cluster=1), app_event) and webhooks.matches(sub(cluster=1), offline)
    assert not webhooks.matches(sub(cluster=2), app_event) and not webhooks.matches(sub(cluster=2), offline)
    assert webhooks.matches(sub(1, 10), app_event) and not webhooks.matches(sub(1, 11), app_event)
    assert not webhooks.matches(sub(1, 10), offline)
    assert webhooks.matches(sub(1, 10, 100), app_event)
    assert not webhooks.matches(sub(1, 10, 101), app_event)
    assert not webhooks.matches(sub(1, 10, 100), happened(cluster=1, workspace=10, app=None))


# --- the delivery log ---------------------------------------------------------------------------------------


def test_the_delivery_log_pages_and_a_finished_delivery_is_sent_again(world):
    ws_admin = context(world, "workspace-admin", "demo", "storefront", name="alice")
    sub = subscribe(ws_admin, "shop", cluster="demo", workspace="storefront").subscription
    other = subscribe(context(world), "everything").subscription
    session = ws_admin.session
    webhooks.emit_many(session, [event(world["tenant_id"], f"version/1/healthy/{n}") for n in range(3)])
    events = list(session.scalars(select(WebhookEvent).where(WebhookEvent.key.startswith("version/1/healthy/"))
                                  .order_by(WebhookEvent.id)))
    sent_at = utcnow() - dt.timedelta(hours=1)
    deliveries = [WebhookDelivery(subscription_id=sub.id, event_id=e.id, state=state, attempts=1, status_code=code,
                                  delivered_at=sent_at if state == "delivered" else None, next_attempt_at=sent_at)
                  for e, state, code in zip(events, ("delivered", "failed", "pending"), (204, 500, 503))]
    foreign = WebhookDelivery(subscription_id=other.id, event_id=events[0].id, state="delivered")
    session.add_all([*deliveries, foreign])
    session.flush()
    session.add(WebhookAttempt(delivery_id=deliveries[1].id, status_code=500, duration_ms=12, worker="w1"))
    session.add(WebhookAttempt(delivery_id=deliveries[1].id, status_code=500, duration_ms=15, worker="w2"))
    session.commit()

    page = webhooks.list_deliveries(ws_admin, sub, limit=2)
    assert [d.state for d in page] == ["pending", "failed"]
    assert [d.state for d in webhooks.list_deliveries(ws_admin, sub, limit=2, before_id=page[-1].id)] == ["delivered"]
    assert [a.worker for a in webhooks.attempts_of(ws_admin, page)[deliveries[1].id]] == ["w1", "w2"]
    assert {e.key for e in webhooks.events_of(ws_admin, page).values()} == {"version/1/healthy/2",
                                                                              "version/1/healthy/1"}
    for bad in ({"limit": 0}, {"limit": 5000}, {"limit": "10"}, {"before_id": "x"}):
        with pytest.raises(InvalidRequest):
            webhooks.list_deliveries(ws_admin, sub, **bad)
    with pytest.raises(NotFound):
        webhooks.get_delivery(ws_admin, sub, foreign.id)
    with pytest.raises(NotFound):
        webhooks.list_deliveries(context(world, "workspace-viewer", "demo", "data"), sub)

    delivered = webhooks.get_delivery(ws_admin, sub, deliveries[0].id)
    viewer = context(world, "workspace-viewer", "demo", "storefront")
    with pytest.raises(PermissionDenied):
        webhooks.redeliver(viewer, delivered)
    with pytest.raises(NotFound):
        webhooks.redeliver(context(world, "workspace-admin", "demo", "data"), delivered)
    before = utcnow()
    again = webhooks.redeliver(ws_admin, delivered)
    failed = webhooks.redeliver(ws_admin, webhooks.get_delivery(ws_admin, sub, deliveries[1].id))
    session.commit()
    for row in (again, failed):
        assert row.state == "pending" and row.next_attempt_at >= before and row.delivered_at is None
        assert row.claimed_by is None
    with pytest.raises(Conflict, match="pending already"):
        webhooks.redeliver(ws_admin, again)
    webhooks.update_subscription(ws_admin, sub, {"state": "paused"})
    again.state = "delivered"
    with pytest.raises(Conflict, match="paused"):
        webhooks.redeliver(ws_admin, again)
    session.rollback()

    webhooks.delete_subscription(ws_admin, sub)  # its deliveries and attempts go with it
    session.commit()
    assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
    assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0


def test_a_test_event_goes_to_its_subscription_alone(world):
    ws_admin = context(world, "workspace-admin", "demo", "storefront", name="alice")
    sub = subscribe(ws_admin, "shop", cluster="demo", workspace="storefront").subscription
    subscribe(context(world), "everything", events=list(webhooks.EVENT_TYPES))
    with pytest.raises(PermissionDenied):
        webhooks.send_test(context(world, "workspace-viewer", "demo", "storefront"), sub)
    delivery = webhooks.send_test(ws_admin, sub)
    ws_admin.session.commit()
    test_event = ws_admin.session.get(WebhookEvent, delivery.event_id)
    assert (test_event.type, test_event.fanned_out, delivery.state) == (webhooks.TEST_EVENT, True, "pending")
    assert test_event.data == {"tenant": "default", "subscription": "shop", "cluster": "demo",
                               "workspace": "storefront", "requested_by": "alice"}
    assert [d.id for d in webhooks.list_deliveries(ws_admin, sub)] == [delivery.id]
    assert ws_admin.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
    assert webhooks.send_test(ws_admin, sub).event_id != delivery.event_id  # each test is a new event
    webhooks.update_subscription(ws_admin, sub, {"state": "paused"})
    with pytest.raises(Conflict, match="paused"):
        webhooks.send_test(ws_admin, sub)


def test_the_audit_log_records_each_change_without_url_or_secret(world):
    ctx = context(world)
    new = subscribe(ctx, "chat", SLACK + "?sig=QUERYSECRET", format="slack")
    sub = webhooks.get_subscription(ctx, "chat")
    webhooks.update_subscription(ctx, sub, {"url": SLACK.replace("XXXX", "YYYY"), "events": ["run.failed"]})
    rotated = webhooks.rotate_secret(ctx, sub)
    webhooks.delete_subscription(ctx, sub)
    ctx.session.commit()
    details = audit_details(world)
    assert [json.loads(d)[0] for d in details] == ["webhook.create", "webhook.update", "webhook.rotate_secret",
                                                    "webhook.delete"]
    assert json.loads(details[0])[2]["events"] == ["version.healthy", "version.degraded"]
    for text in details:
        for secret in (new.secret, rotated, SLACK_SECRET, "YYYYSECRET", "QUERYSECRET", "T0000", "hooks.example.com"):
            assert secret not in text


def test_url_shown_keeps_the_scheme_host_port_and_first_segment():
    assert webhooks.url_shown("https://hooks.slack.com/services/T0/B0/SECRET") == "https://hooks.slack.com/services/…"
    assert (webhooks.url_shown("https://prod.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke"
                               "?api-version=2016-06-01&sig=SECRET")
            == "https://prod.westus.logic.azure.com:443/workflows/…?…")
    assert webhooks.url_shown("https://[2001:db8::1]/hook") == "https://[2001:db8::1]/hook"
    assert webhooks.url_shown("https://example.com") == "https://example.com/"
    assert len(webhooks.url_shown("https://example.com/" + "a" * 400)) == 300
