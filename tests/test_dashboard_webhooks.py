"""The dashboard's status webhooks (webapp.pages.webhooks), through Flask's test client as a logged-in browser,
on SQLite and PostgreSQL; deliveries sent for real by the delivery worker to a receiver on loopback.

Subscribing shows the signing secret once, and it is the real one (the test event the page
sends is signed with it, and after a rotation with both); no page, no refused form and no
session holds the secret or the URL, which is shown only as its scheme, host and first path
segment. A refused form keeps everything typed but the URL. Who sees what and who may change
what follows the subscription's scope; a reader sees no form and is refused when posting
anyway. Pause, resume, rotate, test, redeliver and delete are audited as the API audits them.
A subscription the worker paused reads so, in red with why, on its page, in the list and as a
notice on the admin index, for whoever may read it. The journey through a real browser is at
the end (slow).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

import pytest
from flask import Flask

from gitops.models import utcnow
from gitops.webhook_payloads import verify
from tests.browser import (ADMIN_PASSWORD, artifacts_dir, expect, login, page,  # noqa: F401 - fixtures
                           seed, serving, shot)
from tests.plane import Api, app_config, deploy_yaml, make_user, service_spec
from tests.test_cli_imports import unused_port
from tests.test_dashboard_admin import flashed, logged_in, shown_once, text_of
from tests.test_dashboard_spec_repos import badge_of
from tests.test_webhooks_api import RECEIVER, SECRET_PATH, SHOWN, add_deliveries, receiver, scene  # noqa: F401
from webapp import create_app

API = "/api/v1"
PAGE = "/admin/webhooks/deploys"
CREATE = "/admin/create-webhook"
URL_SECRETS = (SECRET_PATH, "qqqsignature")  # the parts of RECEIVER that are its credential


def create_form(csrf: str, **fields) -> dict:
    return {"csrf_token": csrf, "name": "deploys", "url": RECEIVER, "events": ["version.healthy", "version.degraded"],
            "format": "slack", "cluster": "demo", "workspace": "storefront", **fields}


def subscribe(client, csrf: str, **fields) -> str:
    """Subscribe through the form; the signing secret its answer shows."""
    made = client.post(CREATE, data=create_form(csrf, **fields))
    assert made.status_code == 201, text_of(made)[:2000]
    return shown_once(made, "the signing secret")


def webhook_audit(admin: Api) -> list[tuple[str, str, str]]:
    """(action, actor, target) of the webhook events of the audit log, oldest first."""
    events = admin.get(f"{API}/audit").get_json()["events"]
    return [(e["action"], e["actor"], e["target"]) for e in reversed(events) if e["action"].startswith("webhook.")]


def delivery_row(html: str, delivery: int | str = r"\d+") -> re.Match:
    """The delivery's row of the log (the newest when none is named): it ends its line; the rows of its
    attempts' table end theirs in that same line."""
    row = re.search(rf'<tr id="delivery-({delivery})">.*?</tr>\n', html, re.DOTALL)
    assert row, f"no row of delivery {delivery}"
    return row


def holds_no_secret(text: str, *secrets: str) -> bool:
    return not any(secret in text for secret in (*URL_SECRETS, *secrets))


# --- subscribing --------------------------------------------------------------------------------------


def test_subscribing_shows_the_secret_once_and_a_refused_form_keeps_all_but_the_url(scene):  # noqa: F811
    app, admin = scene["app"], scene["admin"]
    client, csrf = logged_in(app, "owner")
    assert "Status webhooks" in text_of(client.get("/admin"))
    assert "No status webhooks yet" in text_of(client.get("/admin/webhooks"))
    form = text_of(client.get(CREATE))
    assert 'type="password" name="url"' in form and 'value="version.sync_failed"' in form
    assert 'name="allowed_host"' not in form  # a tenant-admin's field
    assert 'name="allowed_host"' in text_of(logged_in(app, "admin")[0].get(CREATE))

    refusals = {
        "lowercase letters, digits and dashes": {"name": "Deploys!"},
        "are about a cluster": {"events": ["cluster.offline", "version.healthy"]},
        "not a public address": {"url": f"https://10.1.2.3/services/{SECRET_PATH}"},
        "may not set allowed_host": {"allowed_host": "127.0.0.1"},
        "events is a list of one or more": {"events": []},
        'no workspace "elsewhere"': {"workspace": "elsewhere"},
    }
    for words, fields in refusals.items():
        refused = client.post(CREATE, data=create_form(csrf, **fields))
        shown = text_of(refused)
        assert refused.status_code in (400, 403, 404) and words in shown, (words, shown[:3000])
        assert holds_no_secret(shown) and 'name="url" required' in shown and "type it again" in shown, words
        assert 'name="cluster" value="demo"' in shown and 'name="workspace" value="' in shown, words
        assert '<option value="slack" selected>' in shown, words
    kept = text_of(client.post(CREATE, data=create_form(csrf, name="Deploys!", events=["version.synced", "run.failed"])))
    assert 'value="Deploys!"' in kept and 'value="version.synced" checked' in kept
    assert 'value="run.failed" checked' in kept and 'value="version.healthy" checked' not in kept
    assert admin.get(f"{API}/webhooks").get_json() == {"webhooks": []}

    made = client.post(CREATE, data=create_form(csrf))
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    secret = shown_once(made, "the signing secret")
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    shown = text_of(made)
    assert SHOWN in shown and "demo:storefront" in shown and holds_no_secret(shown)
    assert '"Status webhooks"' in shown and "webhook-signature" in shown
    assert client.post(CREATE, data=create_form(csrf)).status_code == 409

    listed = text_of(client.get("/admin/webhooks"))
    assert badge_of(listed, 'id="webhook-deploys"') == ("ok", "Active")
    assert all(text in listed for text in (SHOWN, "demo:storefront", "Slack incoming webhook", "version.degraded",
                                           "none yet"))
    for path in ("/admin/webhooks", PAGE, "/admin", "/admin/audit", f"{PAGE}/delete", CREATE):
        assert holds_no_secret(client.get(path).get_data(as_text=True), secret, "whsec_"), path
    with client.session_transaction() as session:
        assert holds_no_secret(repr(dict(session)), secret)

    kept = admin.get(f"{API}/webhooks/deploys").get_json()
    assert (kept["url"], kept["cluster"], kept["workspace"], kept["format"], kept["events"], kept["created_by"]) == (
        SHOWN, "demo", "storefront", "slack", ["version.healthy", "version.degraded"], "owner")
    assert webhook_audit(admin) == [("webhook.create", "owner", "deploys")]


# --- who may do what ----------------------------------------------------------------------------------


def test_a_reader_sees_no_form_and_is_refused_when_posting_anyway(scene):  # noqa: F811
    app, admin = scene["app"], scene["admin"]
    owner, csrf = logged_in(app, "owner")
    subscribe(owner, csrf)
    (delivered,) = add_deliveries(app, "deploys", [("delivered", [(204, None)])])
    admin_client, admin_csrf = logged_in(app, "admin")
    subscribe(admin_client, admin_csrf, name="demo-ops", workspace="", events=["cluster.offline"])
    client, csrf = logged_in(app, "viewer")
    before = webhook_audit(admin)

    assert "Status webhooks" in text_of(client.get("/admin"))
    listed = text_of(client.get("/admin/webhooks"))
    assert "deploys" in listed and "demo-ops" not in listed and "Subscribe" not in listed
    shown = text_of(client.get(PAGE))
    assert "Delivered" in shown and SHOWN in shown
    assert shown.count('name="csrf_token"') == 1  # the log-out button's form, nothing else
    assert not any(control in shown for control in ("Pause", "Send a test event", "Save", "Rotate", "Redeliver",
                                                    "Delete"))
    for path in (CREATE, f"{PAGE}/delete"):
        assert client.get(path).status_code == 403, path
    posts = {CREATE: create_form(csrf, name="mine"), PAGE: {"format": "teams"}, f"{PAGE}/state": {"state": "paused"},
             f"{PAGE}/rotate-secret": {"confirm": "yes"}, f"{PAGE}/test": {},
             f"{PAGE}/deliveries/{delivered}/redeliver": {}, f"{PAGE}/delete": {"confirm": "yes"}}
    refused = {path: client.post(path, data={**data, "csrf_token": csrf}) for path, data in posts.items()}
    wrong = {path: r.status_code for path, r in refused.items()
             if r.status_code != 403 or "viewer may not workspace.update" not in text_of(r)}
    assert wrong == {}, wrong
    forged = owner.post(f"{PAGE}/test", data={})  # no CSRF token: refused whoever posts
    assert forged.status_code == 403 and "The CSRF token is missing" in text_of(forged)
    assert webhook_audit(admin) == before

    # another workspace's admin sees neither: they answer as absent
    neighbour, csrf = logged_in(app, "neighbour")
    assert "No status webhooks yet" in text_of(neighbour.get("/admin/webhooks"))
    assert neighbour.get(PAGE).status_code == 404
    assert neighbour.post(f"{PAGE}/delete", data={"csrf_token": csrf, "confirm": "yes"}).status_code == 404
    # the cluster's admin manages both; the storefront's reads and manages its own alone
    ops, _ = logged_in(app, "ops")
    assert "Rotate the secret" in text_of(ops.get(PAGE)) and "Rotate the secret" in text_of(
        ops.get("/admin/webhooks/demo-ops"))
    assert owner.get("/admin/webhooks/demo-ops").status_code == 404
    make_user(app, "watcher", "cluster-viewer", cluster="demo")
    watcher, _ = logged_in(app, "watcher")
    shown = text_of(watcher.get("/admin/webhooks/demo-ops"))
    assert "cluster demo" in shown and shown.count('name="csrf_token"') == 1
    assert webhook_audit(admin) == before
    assert admin.get(f"{API}/webhooks/deploys").get_json()["format"] == "slack"


# --- settings -----------------------------------------------------------------------------------------


def test_settings_change_and_a_refused_change_keeps_all_but_the_url(scene):  # noqa: F811
    app, admin = scene["app"], scene["admin"]
    client, csrf = logged_in(app, "owner")
    subscribe(client, csrf)
    settings = {"csrf_token": csrf, "events": ["version.healthy", "version.degraded"], "format": "slack"}

    assert client.post(PAGE, data=settings).status_code == 302
    assert "Nothing to save" in flashed(client)
    private = f"https://10.1.2.3/services/{SECRET_PATH}"
    bad = client.post(PAGE, data={**settings, "events": ["version.synced"], "format": "teams", "url": private})
    shown = text_of(bad)
    assert bad.status_code == 400 and "not a public address" in shown and holds_no_secret(shown)
    assert 'value="version.synced" checked' in shown and 'value="version.healthy" checked' not in shown
    assert '<option value="teams" selected>' in shown
    assert admin.get(f"{API}/webhooks/deploys").get_json()["format"] == "slack"

    changed = client.post(PAGE, data={**settings, "events": ["version.synced", "version.sync_failed"],
                                      "format": "teams"})
    assert changed.status_code == 302 and 'Webhook "deploys" saved (events, format)' in flashed(client)
    kept = admin.get(f"{API}/webhooks/deploys").get_json()
    assert (kept["events"], kept["format"]) == (["version.synced", "version.sync_failed"], "teams")
    replaced = client.post(PAGE, data={**settings, "events": kept["events"], "format": "teams",
                                       "url": "https://93.184.216.34/workflows/abc/triggers/run?sig=zzzsig"})
    assert replaced.status_code == 302 and "saved (url)" in flashed(client)
    shown = text_of(client.get(PAGE))
    assert "https://93.184.216.34/workflows/…?…" in shown and "zzzsig" not in shown and SHOWN not in shown
    assert 'name="allowed_host"' not in shown  # a tenant-admin's field, and there is none to clear
    assert "zzzsig" not in admin.get(f"{API}/audit").get_data(as_text=True)

    # a tenant-admin lets the host be private; clearing it with the URL private still is refused, as the API does
    admin_client, admin_csrf = logged_in(app, "admin")
    local = {**settings, "csrf_token": admin_csrf, "events": kept["events"], "format": "teams"}
    allowed = admin_client.post(PAGE, data={**local, "url": "http://127.0.0.1:9/hooks/x", "allowed_host": "127.0.0.1"})
    assert allowed.status_code == 302, text_of(allowed)[:2000]
    assert 'value="127.0.0.1"' in text_of(admin_client.get(PAGE))
    cleared = admin_client.post(PAGE, data={**local, "allowed_host": ""})
    assert cleared.status_code == 400 and "https://" in text_of(cleared)
    assert admin.get(f"{API}/webhooks/deploys").get_json()["allowed_host"] == "127.0.0.1"
    # whoever manages the subscription may clear it, with a public URL
    shown = text_of(client.get(PAGE))
    assert '<input type="checkbox" name="allowed_host" value=""> Clear the allowed host' in shown
    public = client.post(PAGE, data={**settings, "events": kept["events"], "format": "teams", "allowed_host": "",
                                     "url": RECEIVER})
    assert public.status_code == 302 and "saved (allowed_host, url)" in flashed(client)
    assert admin.get(f"{API}/webhooks/deploys").get_json()["allowed_host"] is None
    assert [action for action, _, _ in webhook_audit(admin)] == ["webhook.create"] + ["webhook.update"] * 4


# --- pause, resume, rotate, test, redeliver, delete --------------------------------------------------


def test_test_redeliver_rotate_pause_resume_and_delete_through_a_real_receiver(scene, receiver):  # noqa: F811
    app, admin = scene["app"], scene["admin"]
    worker = app.extensions["shipyard"].webhook_worker
    client, csrf = logged_in(app, "admin")
    local = "/admin/webhooks/local"
    secret = subscribe(client, csrf, name="local", url=receiver.url, allowed_host="127.0.0.1", format="shipyard",
                       cluster="", workspace="", events=["run.failed"])

    sent = client.post(f"{local}/test", data={"csrf_token": csrf})
    assert sent.status_code == 302 and sent.location.endswith(local)
    assert re.search(r'A webhook.test event is on its way to "local" \(delivery \d+\)', flashed(client))
    assert badge_of(text_of(client.get(local)), '<tr id="delivery-') == ("busy", "Pending")
    assert worker.run_once() == 1
    ((headers, body),) = receiver.received
    assert verify(secret, headers, body)  # the secret shown once is the one that signs
    shown = text_of(client.get(local))
    row = delivery_row(shown)
    delivery = row.group(1)
    assert badge_of(row.group(0), "<td>") == ("ok", "Delivered")
    assert "<code>webhook.test</code>" in row.group(0) and f"<code>{headers['webhook-id']}</code>" in row.group(0)
    assert "HTTP 204" in row.group(0) and "1 attempt(s)" in row.group(0)

    assert client.post(f"{local}/deliveries/{delivery}/redeliver", data={"csrf_token": csrf}).status_code == 302
    assert f"Delivery {delivery} is sent again now" in flashed(client)
    assert worker.run_once() == 1
    assert receiver.received[1][0]["webhook-id"] == headers["webhook-id"]
    assert "2 attempt(s)" in text_of(client.get(local))

    unconfirmed = client.post(f"{local}/rotate-secret", data={"csrf_token": csrf, "overlap": "3600"})
    assert unconfirmed.status_code == 400 and "Tick the box" in text_of(unconfirmed)
    odd = client.post(f"{local}/rotate-secret", data={"csrf_token": csrf, "overlap": "99", "confirm": "yes"})
    assert odd.status_code == 400 and "the overlap is one of" in text_of(odd)
    rotated = client.post(f"{local}/rotate-secret", data={"csrf_token": csrf, "overlap": "3600", "confirm": "yes"})
    assert rotated.status_code == 201 and rotated.headers["Cache-Control"] == "no-store"
    second = shown_once(rotated, "the signing secret")
    assert second != secret and "keeps signing too until" in text_of(rotated)
    assert "the one before it signs too until" in text_of(client.get(local))
    client.post(f"{local}/test", data={"csrf_token": csrf})
    assert worker.run_once() == 1
    headers, body = receiver.received[2]
    assert verify(secret, headers, body) and verify(second, headers, body)

    assert client.post(f"{local}/state", data={"csrf_token": csrf, "state": "paused"}).status_code == 302
    assert 'Webhook "local" paused' in flashed(client)
    shown = text_of(client.get(local))
    assert badge_of(shown, 'aria-label="Subscription state"') == ("bad", "Paused")
    assert "paused by admin" in shown and "Redeliver" not in shown and ">Resume</button>" in shown
    refused = client.post(f"{local}/test", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "is paused: resume it" in text_of(refused)
    assert client.post(f"{local}/state", data={"csrf_token": csrf, "state": "active"}).status_code == 302
    assert 'Webhook "local" resumed' in flashed(client)
    assert badge_of(text_of(client.get(local)), 'aria-label="Subscription state"') == ("ok", "Active")
    wrong = client.post(f"{local}/state", data={"csrf_token": csrf, "state": "gone"})
    assert wrong.status_code == 400 and "state is one of" in text_of(wrong)

    assert "forgets the subscription" in text_of(client.get(f"{local}/delete"))
    unconfirmed = client.post(f"{local}/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box" in text_of(unconfirmed)
    deleted = client.post(f"{local}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert deleted.status_code == 302 and deleted.location.endswith("/admin/webhooks")
    assert 'Webhook "local" deleted' in flashed(client)
    assert admin.get(f"{API}/webhooks/local").status_code == 404 and client.get(local).status_code == 404

    assert webhook_audit(admin) == [(action, "admin", "local") for action in (
        "webhook.create", "webhook.test", "webhook.redeliver", "webhook.rotate_secret", "webhook.test",
        "webhook.update", "webhook.update", "webhook.delete")]
    audit = admin.get(f"{API}/audit").get_data(as_text=True)
    assert secret not in audit and second not in audit and "/hooks/shipyard" not in audit


# --- the delivery log ---------------------------------------------------------------------------------


def test_the_deliveries_are_paged_newest_first_each_with_its_attempts(scene):  # noqa: F811
    app = scene["app"]
    client, csrf = logged_in(app, "owner")
    subscribe(client, csrf)
    ids = add_deliveries(app, "deploys", [("delivered", [(204, None)])] * 22 + [
        ("failed", [(None, "timed out after 10 s"), (503, None)]), ("pending", [(500, None)]), ("pending", [])])

    def rows(response) -> list[str]:
        return re.findall(r'<tr id="delivery-(\d+)">', text_of(response))

    newest = client.get(PAGE)
    shown = text_of(newest)
    assert rows(newest) == [str(i) for i in reversed(ids[-20:])]
    assert badge_of(shown, f'<tr id="delivery-{ids[-1]}">') == ("busy", "Pending")
    assert badge_of(shown, f'<tr id="delivery-{ids[-2]}">') == ("bad", "Retrying")
    failed = delivery_row(shown, ids[-3]).group(0)
    assert badge_of(failed, "<td>") == ("bad", "Failed") and "HTTP 503" in failed
    assert "<summary>2 attempt(s)</summary>" in failed and "timed out after 10 s" in failed
    assert "Redeliver" in delivery_row(shown, ids[-3]).group(0) and "Redeliver" not in delivery_row(shown).group(0)
    older = re.search(r'href="([^"]+)" rel="next"', shown).group(1)
    rest = client.get(older)
    assert rows(rest) == [str(i) for i in reversed(ids[:5])]
    assert 'rel="next"' not in text_of(rest) and "← Newest" in text_of(rest)

    listed = text_of(client.get("/admin/webhooks"))
    assert badge_of(listed, 'id="webhook-deploys"') == ("ok", "Active")
    last = re.search(r'id="webhook-deploys".*?</tr>', listed, re.DOTALL).group(0)
    assert last.count("tone-busy") == 1 and "Pending" in last and "version.healthy" in last

    pending = client.post(f"{PAGE}/deliveries/{ids[-1]}/redeliver", data={"csrf_token": csrf})
    assert pending.status_code == 409 and "pending already" in text_of(pending)
    assert client.post(f"{PAGE}/deliveries/{2**40}/redeliver", data={"csrf_token": csrf}).status_code == 404
    bad = client.get(PAGE, query_string={"before": "99999999999"})
    assert bad.status_code == 400 and "before must be a whole number" in text_of(bad)
    assert client.get("/admin/webhooks/ghost").status_code == 404


# --- a paused subscription, where its owner looks --------------------------------------------------


def test_a_subscription_the_worker_paused_is_shown_in_red_with_why_where_its_readers_look(scene):  # noqa: F811
    app = scene["app"]
    worker = app.extensions["shipyard"].webhook_worker
    admin_client, csrf = logged_in(app, "admin")
    # a receiver that is gone: every attempt is refused its connection
    subscribe(admin_client, csrf, url=f"http://127.0.0.1:{unused_port()}/hook", allowed_host="127.0.0.1")
    assert admin_client.post(f"{PAGE}/test", data={"csrf_token": csrf}).status_code == 302
    start = utcnow()
    assert worker.run_once(start) == 1
    owner, owner_csrf = logged_in(app, "owner")
    shown = text_of(owner.get(PAGE))
    assert badge_of(shown, 'aria-label="Subscription state"') == ("bad", "Failing")
    assert badge_of(shown, '<tr id="delivery-') == ("bad", "Retrying")
    assert "paused-webhooks" not in text_of(owner.get("/admin"))

    assert worker.run_once(start + dt.timedelta(hours=25)) == 1  # a day later: given up, and paused
    for user in ("owner", "viewer", "admin"):
        client, _ = logged_in(app, user)
        index = text_of(client.get("/admin"))
        assert '<a href="/admin/webhooks">1 webhook subscription(s) paused</a>' in index, user
        listed = text_of(client.get("/admin/webhooks"))
        assert badge_of(listed, 'id="webhook-deploys"') == ("bad", "Paused"), user
        assert re.search(r'<div class="reason">paused by Shipyard: no delivery succeeded for 24 hours', listed), user
        shown = text_of(client.get(PAGE))
        assert badge_of(shown, 'aria-label="Subscription state"') == ("bad", "Paused"), user
        assert re.search(r'<p class="problem" id="paused-reason">paused by Shipyard: no delivery succeeded', shown)
        assert badge_of(shown, '<tr id="delivery-') == ("bad", "Failed"), user
    neighbour, _ = logged_in(app, "neighbour")
    assert "paused-webhooks" not in text_of(neighbour.get("/admin"))

    assert owner.post(f"{PAGE}/state", data={"csrf_token": owner_csrf, "state": "active"}).status_code == 302
    assert "paused-webhooks" not in flashed(owner)
    assert badge_of(text_of(owner.get(PAGE)), 'aria-label="Subscription state"') == ("ok", "Active")
    actions = [(action, actor) for action, actor, _ in webhook_audit(scene["admin"])]
    assert actions[-2:] == [("webhook.pause", "webhook delivery worker"), ("webhook.update", "owner")]


# --- the journey in a browser -------------------------------------------------------------------------


@dataclass
class HookPlane:
    """A control plane served on loopback whose delivery worker runs, as in production."""

    url: str
    app: Flask
    admin: Api
    admin_password: str


@pytest.fixture
def live_plane(tmp_path):  # the browser's page opens this plane
    """The seeded control plane of the journeys (tests/browser.py) with its webhook worker's thread passing every
    tenth of a second; no simulated cluster: a deploy's version is committed whether or not a cluster reports."""
    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'shipyard.db'}",
                                WEBHOOK_WORKER_INTERVAL=0.1))
    try:
        admin, _ = seed(app)
        with serving(app) as url:
            yield HookPlane(url, app, admin, ADMIN_PASSWORD)
    finally:
        app.extensions["shipyard"].close()


def wait_for(probe, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_journey_subscribe_hear_a_deploy_test_pause_and_resume(page, live_plane, receiver, shot):  # noqa: F811
    login(page, "admin", live_plane.admin_password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Status webhooks").click()
    page.get_by_role("link", name="Subscribe a receiver").click()
    form = page.get_by_role("form", name="Subscribe a receiver")
    form.get_by_label("Name", exact=True).fill("deploys")
    form.get_by_label("URL", exact=True).fill(receiver.url)
    form.get_by_label("version.committed").check()
    form.get_by_label("Cluster", exact=True).fill("demo")
    form.get_by_label("Workspace", exact=True).fill("storefront")
    form.get_by_label(re.compile("^Allowed host")).fill("127.0.0.1")
    shot.desktop_and_phone(page, "subscribe")
    form.get_by_role("button", name="Subscribe").click()

    secret = page.get_by_label("the signing secret")
    expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    shown_secret = secret.inner_text()
    shot.desktop_and_phone(page, "secret")

    # a deploy's commit is an event the subscription hears, sent by the worker in the background
    response = deploy_yaml(live_plane.admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    assert response.status_code in (200, 202), response.get_json()
    headers, body = wait_for(lambda: receiver.received and receiver.received[0], "the version.committed delivery")
    assert verify(shown_secret, headers, body) and b'"version.committed"' in body

    page.get_by_role("link", name="Go to deploys").click()
    newest = page.locator("#webhook-deliveries tbody tr").first
    expect(newest.locator(".badge")).to_have_text("Delivered")
    expect(newest).to_contain_text("version.committed")
    newest.get_by_text("1 attempt(s)").click()
    expect(newest.locator("table.attempts")).to_contain_text("HTTP 204")

    page.get_by_role("button", name="Send a test event").click()
    expect(page.locator(".flash")).to_contain_text("webhook.test event is on its way")
    wait_for(lambda: len(receiver.received) == 2, "the test delivery")
    page.reload()
    expect(page.locator("#webhook-deliveries tbody tr").first).to_contain_text("webhook.test")
    expect(page.locator("#webhook-deliveries tbody tr").first.locator(".badge")).to_have_text("Delivered")
    shot.desktop_and_phone(page, "deliveries")

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_label("Subscription state").locator(".badge")).to_have_text("Paused")
    expect(page.locator("#paused-reason")).to_contain_text("paused by admin")
    page.goto("/admin")
    page.get_by_role("link", name="1 webhook subscription(s) paused").click()
    listed = page.locator("#webhook-deploys")
    expect(listed.locator(".badge").first).to_have_text("Paused")
    expect(listed.locator(".reason")).to_have_text("paused by admin")
    shot.desktop_and_phone(page, "paused")
    page.get_by_role("link", name="deploys").click()
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_label("Subscription state").locator(".badge")).to_have_text("Active")
    assert shown_secret not in page.content() and "/hooks/shipyard" not in page.content()
