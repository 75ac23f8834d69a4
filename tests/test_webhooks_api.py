"""Status webhooks through /api/v1/webhooks and the ``shipyard webhooks``/``webhook`` commands, on SQLite and
PostgreSQL; for the command line, the control plane served on a loopback port and the real ``shipyard`` run
as a subprocess.

Creating a subscription answers its signing secret once; no read shows it, nor the parts of the URL
that are a credential (Slack's path, a Teams workflow's ``sig=``), and no error echoes the URL. Who
may manage and read one follows its scope; bad input is a 400 that says what is wrong. A rotation
keeps the old secret signing through its overlap. The delivery log pages, a delivery is sent again
on demand, and a test event reaches its own subscription alone. A real delivery to a receiver on
loopback is verified with the README's snippet, run as written.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from cli import webhooks as cli_webhooks
from gitops import webhooks
from gitops.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription, utcnow
from tests.plane import add_cluster, add_workspace, deploy_yaml, make_user, served, service_spec  # noqa: F401
from tests.test_cli_imports import run_command, unused_port
from tests.test_spec_repos_api import shipyard

API = "/api/v1"
ROOT = Path(__file__).resolve().parent.parent
# A public address (creating a subscription resolves its host, and a literal address needs no DNS); the
# path past its first segment and the query are the credential, as in Slack's and Teams' URLs.
SECRET_PATH = "T0AAAAAAA/B0BBBBBBB/sekretsekretsekret"
RECEIVER = f"https://93.184.216.34/services/{SECRET_PATH}?sig=qqqsignature"
SHOWN = "https://93.184.216.34/services/…?…"


@pytest.fixture
def scene(plane_app):
    """Clusters demo and edge, workspaces demo:storefront (app web) and demo:data; a tenant-admin, the
    storefront's workspace-admin and viewer, demo's cluster-admin and the data workspace's admin."""
    admin = make_user(plane_app, "admin", "tenant-admin")
    for cluster in ("demo", "edge"):
        add_cluster(admin, cluster)
    for workspace in ("storefront", "data"):
        add_workspace(admin, "demo", workspace)
    assert deploy_yaml(admin, service_spec("web")).status_code == 200
    return {
        "app": plane_app, "admin": admin,
        "owner": make_user(plane_app, "owner", "workspace-admin", cluster="demo", workspace="storefront"),
        "viewer": make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront"),
        "ops": make_user(plane_app, "ops", "cluster-admin", cluster="demo"),
        "neighbour": make_user(plane_app, "neighbour", "workspace-admin", cluster="demo", workspace="data"),
    }


def subscribe(api, name: str = "deploys", url: str = RECEIVER, **extra):
    body = {"name": name, "url": url, "events": ["version.healthy", "version.degraded"],
            "cluster": "demo", "workspace": "storefront", **extra}
    return api.post(f"{API}/webhooks", json={k: v for k, v in body.items() if v is not None})


def created(api, name: str = "deploys", **extra) -> dict:
    response = subscribe(api, name, **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def message(response) -> str:
    return response.get_json()["error"]["message"]


def add_deliveries(app, name: str, outcomes: list[tuple[str, list[tuple[int | None, str | None]]]]) -> list[int]:
    """For each (state, [(status code, error), ...]) an event emitted through the outbox and its delivery to
    webhook ``name`` with those attempts, as the delivery worker records them; their ids, oldest first."""
    plane = app.extensions["shipyard"]
    ids = []
    with plane.sessions.begin() as session:
        sub = session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == name))
        for index, (state, attempts) in enumerate(outcomes):
            key = f"version/{sub.id}{index}/healthy/1.{index}"
            webhooks.emit(session, tenant_id=sub.tenant_id, type="version.healthy", key=key, cluster_id=sub.cluster_id,
                          workspace_id=sub.workspace_id, application_id=None, data={"index": index},
                          occurred_at=utcnow())
            event = session.scalar(select(WebhookEvent).where(WebhookEvent.key == key))
            event.fanned_out = True
            last_code, last_error = attempts[-1] if attempts else (None, None)
            delivery = WebhookDelivery(subscription_id=sub.id, event_id=event.id, state=state, attempts=len(attempts),
                                       status_code=last_code, error=last_error, duration_ms=12 if attempts else None,
                                       delivered_at=utcnow() if state == "delivered" else None)
            session.add(delivery)
            session.flush()
            session.add_all(WebhookAttempt(delivery_id=delivery.id, status_code=code, error=error, duration_ms=12,
                                           worker="test") for code, error in attempts)
            ids.append(delivery.id)
    return ids


# --- subscribing, reading, permissions ----------------------------------------------------------------------


def test_the_secret_is_answered_once_and_no_read_shows_it_or_the_urls_secret_parts(scene):
    owner, viewer, admin = scene["owner"], scene["viewer"], scene["admin"]
    made = created(owner, format="slack")
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert (made["name"], made["url"], made["cluster"], made["workspace"], made["app"], made["format"],
            made["state"], made["created_by"]) == ("deploys", SHOWN, "demo", "storefront", None, "slack", "active",
                                                   "owner")
    assert made["events"] == ["version.healthy", "version.degraded"]
    duplicate = subscribe(owner)
    assert duplicate.status_code == 409 and "exists already" in message(duplicate)

    for reader in (owner, viewer, admin, scene["ops"]):
        for path in ("/webhooks", "/webhooks/deploys", "/webhooks/deploys/deliveries"):
            response = reader.get(f"{API}{path}")
            assert response.status_code == 200, (reader.name, path, response.get_json())
            text = response.get_data(as_text=True)
            assert secret not in text and "whsec_" not in text and SECRET_PATH not in text \
                and "qqqsignature" not in text, (reader.name, path)
    assert [w["name"] for w in viewer.get(f"{API}/webhooks").get_json()["webhooks"]] == ["deploys"]

    with scene["app"].extensions["shipyard"].sessions() as session:  # sealed at rest, both of them
        row = session.scalar(select(WebhookSubscription))
        assert secret not in row.secret and SECRET_PATH not in row.url and row.url_shown == SHOWN
    audit = admin.get(f"{API}/audit").get_data(as_text=True)
    assert "webhook.create" in audit and SECRET_PATH not in audit and secret not in audit


def test_who_may_manage_and_read_follows_the_scope(scene):
    owner, viewer, ops, neighbour, admin = (scene[k] for k in ("owner", "viewer", "ops", "neighbour", "admin"))
    created(owner)
    app_hook = created(owner, "web-only", app="web")
    assert (app_hook["workspace"], app_hook["app"]) == ("storefront", "web")

    for call in (lambda c: subscribe(c, "mine"), lambda c: c.patch(f"{API}/webhooks/deploys", json={"format": "teams"}),
                 lambda c: c.post(f"{API}/webhooks/deploys/rotate-secret", json={}),
                 lambda c: c.post(f"{API}/webhooks/deploys/test"), lambda c: c.delete(f"{API}/webhooks/deploys")):
        assert call(viewer).status_code == 403  # a viewer reads, and no more
    # another workspace's admin does not see it: it answers as absent
    assert neighbour.get(f"{API}/webhooks/deploys").status_code == 404
    assert neighbour.delete(f"{API}/webhooks/deploys").status_code == 404
    assert neighbour.get(f"{API}/webhooks").get_json() == {"webhooks": []}

    # a cluster's webhooks are its admin's, and the tenant's a tenant-admin's
    refused = subscribe(owner, "cluster-wide", workspace=None)
    assert refused.status_code == 403 and "cluster.update" in message(refused)
    cluster_wide = created(ops, "cluster-wide", workspace=None, events=["cluster.offline", "version.healthy"])
    assert (cluster_wide["cluster"], cluster_wide["workspace"]) == ("demo", None)
    assert subscribe(ops, "everything", cluster=None, workspace=None).status_code == 403
    assert subscribe(ops, "at-edge", cluster="edge", workspace=None).status_code == 404
    assert created(admin, "everything", cluster=None, workspace=None)["cluster"] is None
    assert [w["name"] for w in owner.get(f"{API}/webhooks").get_json()["webhooks"]] == ["deploys", "web-only"]
    assert [w["name"] for w in ops.get(f"{API}/webhooks").get_json()["webhooks"]] == \
        ["cluster-wide", "deploys", "web-only"]
    assert len(admin.get(f"{API}/webhooks").get_json()["webhooks"]) == 4

    assert ops.patch(f"{API}/webhooks/deploys", json={"events": ["run.failed"]}).get_json()["events"] == ["run.failed"]
    assert owner.delete(f"{API}/webhooks/web-only").status_code == 204
    assert owner.get(f"{API}/webhooks/web-only").status_code == 404
    actions = [(e["action"], e["target"]) for e in admin.get(f"{API}/audit").get_json()["events"][:2]]
    assert actions == [("webhook.delete", "web-only"), ("webhook.update", "deploys")]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"url": "http://93.184.216.34/hook"}, 400, "http:// only to a host a tenant-admin allows"),
    ({"url": "https://127.0.0.1/services/hook-secret"}, 400, "not a public address"),
    ({"url": "https://10.1.2.3/hook-secret"}, 400, "not a public address"),
    ({"url": "https://169.254.169.254/latest/meta-data"}, 400, "not a public address"),
    ({"url": "https://[::ffff:127.0.0.1]/hook-secret"}, 400, "not a public address"),
    ({"url": "https://me:hook-secret@93.184.216.34/x"}, 400, "user name or password"),
    ({"url": "https://93.184.216.34/x#hook-secret"}, 400, "fragment"),
    ({"url": "ftp://93.184.216.34/hook-secret"}, 400, "https://"),
    ({"url": 7}, 400, '"url" must be a str'),
    ({"events": "version.healthy"}, 400, '"events" must be a list'),
    ({"events": []}, 400, "one or more of"),
    ({"events": ["version.exploded"]}, 400, "unknown event type"),
    ({"events": ["cluster.offline"]}, 400, "about a cluster"),
    ({"format": "discord"}, 400, "format is one of shipyard, slack, teams"),
    ({"name": "Deploys!"}, 400, "lowercase letters"),
    ({"secret": "whsec_mine"}, 400, "unknown field(s): secret"),
    ({"cluster": None}, 400, "named with its cluster"),
    ({"workspace": "elsewhere"}, 404, "elsewhere"),
    ({"allowed_host": "127.0.0.1", "url": "http://127.0.0.1:9/hook-secret"}, 403, "tenant-admin"),
])
def test_bad_input_is_a_clear_error_that_never_echoes_the_url(scene, body, status, words):
    response = subscribe(scene["owner"], **body)
    assert response.status_code == status and words in message(response), response.get_json()
    assert "hook-secret" not in response.get_data(as_text=True)
    assert scene["admin"].get(f"{API}/webhooks").get_json() == {"webhooks": []}


def test_changes_rotation_and_paging_refuse_bad_input(scene):
    owner = scene["owner"]
    created(owner)
    for body, words in (({}, "one or more of"), ({"name": "other"}, "can be changed, not name"),
                        ({"state": "deleted"}, "state is one of"), ({"events": ["nope"]}, "unknown event type"),
                        ({"url": "https://127.0.0.1/hook-secret"}, "not a public address")):
        response = owner.patch(f"{API}/webhooks/deploys", json=body)
        assert response.status_code == 400 and words in message(response), (body, response.get_json())
        assert "hook-secret" not in response.get_data(as_text=True)
    assert owner.get(f"{API}/webhooks/deploys").get_json()["url"] == SHOWN
    for overlap in (-1, 7 * 86400 + 1, "1h", True):
        response = owner.post(f"{API}/webhooks/deploys/rotate-secret", json={"overlap_seconds": overlap})
        assert response.status_code == 400 and "overlap_seconds" in message(response), overlap
    for query in ({"limit": 0}, {"limit": "ten"}, {"before": -1}, {"limit": 1001}):
        assert owner.get(f"{API}/webhooks/deploys/deliveries", query_string=query).status_code == 400, query
    assert owner.post(f"{API}/webhooks", data="name=x", content_type="text/plain").status_code == 415
    assert owner.get(f"{API}/webhooks/nothing-here").status_code == 404


def test_a_rotation_keeps_the_old_secret_signing_through_its_overlap(scene):
    owner, plane = scene["owner"], scene["app"].extensions["shipyard"]
    first = created(owner)["secret"]
    response = owner.post(f"{API}/webhooks/deploys/rotate-secret", json={"overlap_seconds": 3600})
    assert response.status_code == 201, response.get_json()
    rotated = response.get_json()
    second = rotated["secret"]
    assert second.startswith("whsec_") and second != first
    until = dt.datetime.fromisoformat(rotated["previous_secret_until"])
    assert abs((until - utcnow()).total_seconds() - 3600) < 60
    shown = owner.get(f"{API}/webhooks/deploys").get_data(as_text=True)
    assert first not in shown and second not in shown
    with plane.sessions() as session:
        row = session.scalar(select(WebhookSubscription))
        assert webhooks.open_secrets(plane.repos, row, utcnow()) == [second, first]
        assert webhooks.open_secrets(plane.repos, row, until + dt.timedelta(seconds=1)) == [second]

    third = owner.post(f"{API}/webhooks/deploys/rotate-secret", json={"overlap_seconds": 0}).get_json()
    assert third["previous_secret_until"] is None
    with plane.sessions() as session:
        assert webhooks.open_secrets(plane.repos, session.scalar(select(WebhookSubscription)), utcnow()) == \
            [third["secret"]]
    default = owner.post(f"{API}/webhooks/deploys/rotate-secret")  # no body: a day's overlap
    assert default.status_code == 201
    until = dt.datetime.fromisoformat(default.get_json()["previous_secret_until"])
    assert abs((until - utcnow()).total_seconds() - 86400) < 60


# --- the delivery log -----------------------------------------------------------------------------------------


def test_deliveries_page_newest_first_and_one_is_sent_again_on_demand(scene):
    owner, viewer, app = scene["owner"], scene["viewer"], scene["app"]
    created(owner)
    created(scene["ops"], "cluster-wide", workspace=None)
    delivered, failed, pending = add_deliveries(app, "deploys", [
        ("delivered", [(500, None), (204, None)]), ("failed", [(None, "timed out after 10 s")]), ("pending", [])])
    (elsewhere,) = add_deliveries(app, "cluster-wide", [("delivered", [(200, None)])])

    page = viewer.get(f"{API}/webhooks/deploys/deliveries", query_string={"limit": 2}).get_json()["deliveries"]
    assert [d["id"] for d in page] == [pending, failed]
    assert (page[0]["state"], page[0]["attempts"], page[0]["attempt_log"]) == ("pending", 0, [])
    assert page[0]["next_attempt_at"] is not None and page[1]["next_attempt_at"] is None
    assert (page[1]["state"], page[1]["status_code"], page[1]["error"]) == ("failed", None, "timed out after 10 s")
    older = viewer.get(f"{API}/webhooks/deploys/deliveries", query_string={"before": failed}).get_json()["deliveries"]
    assert [d["id"] for d in older] == [delivered]
    (shown,) = older
    assert shown["event"]["type"] == "version.healthy" and shown["event"]["key"].endswith("/healthy/1.0")
    assert [(a["status_code"], a["duration_ms"]) for a in shown["attempt_log"]] == [(500, 12), (204, 12)]
    assert (shown["state"], shown["attempts"], shown["status_code"]) == ("delivered", 2, 204)
    assert [d["id"] for d in viewer.get(f"{API}/webhooks/deploys").get_json()["deliveries"]] == \
        [pending, failed, delivered]

    path = f"{API}/webhooks/deploys/deliveries"
    assert viewer.post(f"{path}/{delivered}/redeliver").status_code == 403
    assert owner.post(f"{path}/{elsewhere}/redeliver").status_code == 404  # another subscription's
    assert owner.post(f"{path}/{2**40}/redeliver").status_code == 404
    busy = owner.post(f"{path}/{pending}/redeliver")
    assert busy.status_code == 409 and "pending already" in message(busy)
    again = owner.post(f"{path}/{delivered}/redeliver")
    assert again.status_code == 200, again.get_json()
    again = again.get_json()
    assert (again["id"], again["state"], again["delivered_at"]) == (delivered, "pending", None)
    assert again["next_attempt_at"] is not None and len(again["attempt_log"]) == 2  # the log stays

    assert owner.patch(f"{API}/webhooks/deploys", json={"state": "paused"}).get_json()["state"] == "paused"
    paused = owner.post(f"{path}/{failed}/redeliver")
    assert paused.status_code == 409 and "paused" in message(paused)
    resumed = owner.patch(f"{API}/webhooks/deploys", json={"state": "active"}).get_json()
    assert (resumed["state"], resumed["paused_reason"]) == ("active", None)
    assert owner.post(f"{path}/{failed}/redeliver").get_json()["state"] == "pending"


def test_a_test_event_goes_to_its_own_subscription_alone(scene):
    owner = scene["owner"]
    created(owner)
    every = [event for event in webhooks.EVENT_TYPES if event not in webhooks.CLUSTER_EVENTS]
    created(owner, "neighbour-hook", events=every)  # of the same scope, hearing every event it may
    response = owner.post(f"{API}/webhooks/deploys/test")
    assert response.status_code == 201, response.get_json()
    sent = response.get_json()
    assert (sent["event"]["type"], sent["state"], sent["attempts"]) == ("webhook.test", "pending", 0)
    assert [d["id"] for d in owner.get(f"{API}/webhooks/deploys/deliveries").get_json()["deliveries"]] == [sent["id"]]
    assert owner.get(f"{API}/webhooks/neighbour-hook/deliveries").get_json() == {"deliveries": []}
    second = owner.post(f"{API}/webhooks/deploys/test").get_json()  # each test is an event of its own
    assert second["event"]["key"] != sent["event"]["key"]


# --- a real delivery, verified with the README's snippet --------------------------------------------------------


def readme_verify():
    """The README's verification snippet (the first Python block of "Status webhooks"), run as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Status webhooks"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented code, as a reader copies it
    return namespace["verify"]


class Receiver:
    """An HTTP receiver on loopback that keeps what it was sent and answers 204."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/shipyard"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


# --- the command line -------------------------------------------------------------------------------------------


def test_the_command_line_offers_the_events_and_formats_the_server_takes():
    assert cli_webhooks.EVENT_TYPES == webhooks.EVENT_TYPES
    assert cli_webhooks.FORMATS == webhooks.FORMATS


@pytest.mark.parametrize("args", [["webhooks"], ["webhook", "deliveries", "deploys", "--limit", "5"],
                                  ["webhook", "create", "deploys", "https://93.184.216.34/x", "--event", "run.failed"]])
def test_the_webhook_commands_leave_the_server_stack_alone(args, tmp_path):
    result = run_command([*args, "--url", f"http://127.0.0.1:{unused_port()}", "--token", "shy_unused"], tmp_path)
    assert result["exit_code"] == 3, result  # as far as sending the request: every import on its way happened
    assert result["loaded"] == [], f"shipyard {' '.join(args)} imported {result['loaded']}"


def test_a_real_delivery_is_verified_with_the_readmes_snippet(scene, receiver):
    admin, plane = scene["admin"], scene["app"].extensions["shipyard"]
    verify = readme_verify()
    made = created(admin, "local", url=receiver.url, allowed_host="127.0.0.1", cluster=None, workspace=None,
                   events=["run.failed"])
    assert made["url"] == f"http://127.0.0.1:{receiver.server.server_port}/hooks/…"
    sent = admin.post(f"{API}/webhooks/local/test").get_json()
    assert plane.webhook_worker.run_once() == 1
    ((headers, body),) = receiver.received
    assert verify(made["secret"], headers, body)
    assert not verify(made["secret"], headers, body.replace(b"webhook.test", b"run.failed"))
    assert not verify("whsec_" + base64.b64encode(b"\0" * 32).decode(), headers, body)
    document = json.loads(body)
    assert (document["type"], document["version"], document["data"]["subscription"]) == ("webhook.test", "1", "local")
    assert document["id"] == sent["event"]["key"] == headers["webhook-id"] == headers["Idempotency-Key"]
    (logged,) = admin.get(f"{API}/webhooks/local/deliveries").get_json()["deliveries"]
    assert (logged["state"], logged["status_code"], logged["attempts"], len(logged["attempt_log"])) == \
        ("delivered", 204, 1, 1)

    # Through a rotation's overlap both secrets sign; a redelivery carries the same webhook-id.
    rotated = admin.post(f"{API}/webhooks/local/rotate-secret", json={"overlap_seconds": 600}).get_json()["secret"]
    assert admin.post(f"{API}/webhooks/local/deliveries/{sent['id']}/redeliver").status_code == 200
    assert plane.webhook_worker.run_once() == 1
    headers, body = receiver.received[1]
    assert len(headers["webhook-signature"].split()) == 2 and headers["webhook-id"] == document["id"]
    assert verify(made["secret"], headers, body) and verify(rotated, headers, body)


@pytest.mark.slow
def test_the_webhook_commands_create_show_change_rotate_and_deliver(scene, served, receiver, tmp_path):  # noqa: F811
    owner, viewer, admin = scene["owner"], scene["viewer"], scene["admin"]
    worker = scene["app"].extensions["shipyard"].webhook_worker

    def run(*args: str, token: str = owner.token, stdin: str | None = None):
        return shipyard(served, token, *args, home=tmp_path / "home", stdin=stdin)

    where = ("--cluster", "demo", "--workspace", "storefront")
    refused = run("webhook", "create", "deploys", RECEIVER, "--event", "version.healthy", *where, token=viewer.token)
    assert refused.returncode == 6, refused.stderr
    for args in (("--event", "version.exploded", *where), (*where,), ("--event", "run.failed", "--workspace", "x")):
        unusable = run("webhook", "create", "deploys", RECEIVER, *args)
        assert unusable.returncode == 2 and "Usage" in unusable.stderr, (args, unusable.stderr)
    private = run("webhook", "create", "deploys", "https://127.0.0.1/services/hook-secret", "--event", "run.failed",
                  *where)
    assert private.returncode == 1 and "not a public address" in private.stderr, private.stderr
    assert "hook-secret" not in private.stderr

    made = run("webhook", "create", "deploys", "--url-stdin", "--format", "slack", "--event",
               "version.healthy,version.degraded", *where, stdin=f"{RECEIVER}\n")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("whsec_") and "\n" not in secret
    assert "only this once" in made.stderr and SECRET_PATH not in made.stdout + made.stderr

    listed = run("webhooks", token=viewer.token)
    assert listed.returncode == 0, listed.stderr
    header, row = [line.split() for line in listed.stdout.splitlines()[:2]]
    assert header == ["NAME", "URL", "SCOPE", "FORMAT", "STATE", "EVENTS"]
    assert row == ["deploys", SHOWN, "demo:storefront", "slack", "active", "version.healthy,version.degraded"]
    for args in (("webhooks", "-o", "json"), ("webhook", "show", "deploys", "-o", "yaml"),
                 ("webhook", "show", "deploys")):
        shown = run(*args, token=viewer.token)
        assert shown.returncode == 0 and secret not in shown.stdout and SECRET_PATH not in shown.stdout, args
    assert json.loads(run("webhooks", "-o", "json").stdout)["webhooks"][0]["events"] == \
        ["version.healthy", "version.degraded"]

    changed = run("webhook", "update", "deploys", "--event", "version.synced", "--pause")
    assert changed.returncode == 0 and "paused" in changed.stderr, changed.stderr
    paused = run("webhooks")
    assert "paused by owner" in paused.stderr and "--resume" in paused.stderr
    assert "paused by owner" in run("webhook", "show", "deploys").stdout
    assert run("webhook", "update", "deploys", "--resume").returncode == 0
    assert run("webhook", "update", "deploys").returncode == 2  # nothing to change

    # A receiver on loopback, allowed by a tenant-admin: a test event, its log, a redelivery.
    local = run("webhook", "create", "local", receiver.url, "--allow-host", "127.0.0.1", "--event", "run.failed",
                token=admin.token)
    assert local.returncode == 0, local.stderr
    tested = run("webhook", "test", "local", token=admin.token)
    assert tested.returncode == 0 and "queued" in tested.stderr, tested.stderr
    assert worker.run_once() == 1
    deliveries = run("webhook", "deliveries", "local", token=admin.token)
    assert deliveries.returncode == 0, deliveries.stderr
    header, row = [line.split() for line in deliveries.stdout.splitlines()[:2]]
    assert header == ["ID", "EVENT", "KEY", "STATE", "ATTEMPTS", "LAST", "CODE", "DURATION", "WHEN"]
    assert row[1:6] == ["webhook.test", receiver.received[0][0]["webhook-id"], "delivered", "1", "204"]
    again = run("webhook", "redeliver", "local", row[0], token=admin.token)
    assert again.returncode == 0 and "goes out again" in again.stderr, again.stderr
    assert worker.run_once() == 1
    assert [headers["webhook-id"] for headers, _ in receiver.received] == [row[2], row[2]]
    assert run("webhook", "redeliver", "local", "999999", token=admin.token).returncode == 4

    rotated = run("webhook", "rotate-secret", "local", "--overlap", "1h", token=admin.token)
    assert rotated.returncode == 0 and "signs too until" in rotated.stderr, rotated.stderr
    new_secret = rotated.stdout.strip()
    assert new_secret.startswith("whsec_") and new_secret != local.stdout.strip()
    assert run("webhook", "rotate-secret", "local", "--overlap", "8d", token=admin.token).returncode == 1
    assert run("webhook", "rotate-secret", "local", "--overlap", "soon", token=admin.token).returncode == 2

    assert run("webhook", "show", "missing").returncode == 4
    unconfirmed = run("webhook", "delete", "deploys")
    assert unconfirmed.returncode == 2, unconfirmed.stderr
    assert run("webhook", "delete", "deploys", "--yes").returncode == 0
    assert json.loads(run("webhooks", "-o", "json").stdout) == {"webhooks": []}
