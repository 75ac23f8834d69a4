"""The dashboard's pages through Flask's test client: what each shows, to whom, and the live poll behind them.

A tenant with two clusters and four apps, one in each state the apps table can be filtered
by: demo:storefront/web Healthy, demo:storefront/api Degraded (a pod in CrashLoopBackOff and
its BackOff event), demo:payments/ledger whose sync failed, other:storefront/cart that no agent
has reported. The demo cluster's reports go through the agent's own Reporter into the agent
API, in this process (httpx's WSGI transport), as a cluster would send them.

``/live`` answers from a per-process cache of fingerprints (0.5 s); the tests clear that cache
between steps instead of waiting for it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from agent import summaries
from agent.report import Outbox, Reporter, Tracker
from contract.protocol import Heartbeat
from contract.repository import application_name
from tests.plane import Api, add_cluster, add_workspace, deploy_yaml, make_user, service_spec
from tests.test_login import password_login
from webapp.pages.live import STATIC, TICKET_SECONDS

PASSWORD = "correct horse battery"
APP_ROW = re.compile(
    r'<tr>\s*<td><a href="/apps/(?P<path>[^"]+)">[^<]+</a></td>\s*'
    r'<td><span class="badge tone-(?P<tone>\w+)[^"]*"[^>]*><span class="dot" aria-hidden="true"></span>'
    r"(?P<word>[^<]+)</span>")
EVERY_APP = ["demo/payments/ledger", "demo/storefront/api", "demo/storefront/web", "other/storefront/cart"]
CRASHING_POD = "api-7d9f8b6c4-x2x7q"


# --- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    admin: Api
    demo: dict  # the demo cluster, with its tokens
    other: dict
    versions: dict[str, dict]  # app name -> its first version
    agent: Reporter  # the demo cluster's agent


def agent_of(app, cluster: dict, name: str) -> Reporter:
    """The agent's own Reporter, talking to the agent API of ``app`` in this process."""
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://shipyard.test")
    return Reporter(client, app.config["TENANT"], name, cluster["agent_token"], Tracker(), Outbox())


def observe(agent: Reporter, kind: str, namespace: str, name: str, state: dict | None) -> None:
    delta = agent.tracker.observe(kind, namespace, name, state)
    if delta is not None:
        agent.outbox.put(delta)


def application(workspace: str, app: str, sync: str, revision: str, health: str, operation: str = "Succeeded",
                message: str | None = None) -> dict:
    """An ArgoCD Application as the API server sends it, through the agent's summary of it."""
    return summaries.application({
        "metadata": {"name": application_name(workspace, app), "namespace": "argocd",
                     "labels": {"shipyard.dev/workspace": workspace, "shipyard.dev/app": app}},
        "status": {"sync": {"status": sync, "revision": revision},
                   "health": {"status": health, **({"message": message} if message else {})},
                   "operationState": {"phase": operation, **({"message": message} if message else {})}},
    })


def report_application(agent: Reporter, workspace: str, app: str, **status) -> None:
    observe(agent, "Application", "argocd", application_name(workspace, app), application(workspace, app, **status))
    agent.send_pending()


def deploy(admin: Api, spec: str) -> dict:
    response = deploy_yaml(admin, spec)
    assert response.status_code == 200, response.get_json()
    (version,) = response.get_json()["versions"]
    return version


@pytest.fixture
def world(plane_app, admin) -> Iterator[World]:
    demo, other = add_cluster(admin, "demo"), add_cluster(admin, "other")
    for cluster, workspace in (("demo", "storefront"), ("demo", "payments"), ("other", "storefront")):
        add_workspace(admin, cluster, workspace)
    versions = {
        "web": deploy(admin, service_spec("web", image="ghcr.io/acme/web:1.0")),
        "api": deploy(admin, service_spec("api", image="ghcr.io/acme/api:1.0")),
        "ledger": deploy(admin, service_spec("ledger", workspace="payments", image="ghcr.io/acme/ledger:1.0")),
        "cart": deploy(admin, service_spec("cart", cluster="other", image="ghcr.io/acme/cart:1.0")),
    }
    agent = agent_of(plane_app, demo, "demo")
    agent.heartbeat(Heartbeat("1.0", "1.33", simulated=True))
    observe(agent, "Pod", "storefront", CRASHING_POD, {
        "app": "api", "phase": "Running", "ready": False, "restarts": 6, "reasons": ["CrashLoopBackOff"],
        "message": "back-off 5m0s restarting failed container api"})
    observe(agent, "Event", "storefront", f"{CRASHING_POD}.17f3a", summaries.event({
        "involvedObject": {"kind": "Pod", "name": CRASHING_POD}, "type": "Warning", "reason": "BackOff",
        "message": "Back-off restarting failed container api", "count": 6, "lastTimestamp": "2026-01-02T03:04:05Z"}))
    observe(agent, "Application", "argocd", application_name("storefront", "web"), application(
        "storefront", "web", sync="Synced", revision=versions["web"]["commit"], health="Healthy"))
    observe(agent, "Application", "argocd", application_name("storefront", "api"), application(
        "storefront", "api", sync="Synced", revision=versions["api"]["commit"], health="Degraded",
        message='Deployment "api" exceeded its progress deadline'))
    observe(agent, "Application", "argocd", application_name("payments", "ledger"), application(
        "payments", "ledger", sync="OutOfSync", revision=versions["ledger"]["commit"], health="Missing",
        operation="Failed", message="one or more objects failed to apply"))
    agent.send_pending()
    world = World(admin, demo, other, versions, agent)
    yield world
    agent.client.close()


def logged_in(app, username: str = "admin"):
    client = app.test_client()
    response = password_login(client, username)
    assert response.status_code == 302, response.get_data(True)
    return client


def html_page(client, path: str, status: int = 200, **kw) -> str:
    """GET a page; it must be HTML with ``status``, and never a traceback."""
    response = client.get(path, **kw)
    text = response.get_data(as_text=True)
    assert response.status_code == status, (path, response.status_code, text[:800])
    assert response.mimetype == "text/html", (path, response.mimetype)
    assert "Traceback" not in text
    return text


def region(text: str, ident: str) -> str:
    """The live region ``ident`` of a page (up to the next live region or section)."""
    start = text.index(f'id="{ident}"')
    ends = [i for i in (text.find("data-live", start + 1), text.find("</section>", start)) if i != -1]
    return text[start:min(ends)] if ends else text[start:]


def app_rows(text: str) -> list[tuple[str, str, str]]:
    """The apps table's rows: (cluster/workspace/app, health word, tone)."""
    return [(m["path"], html.unescape(m["word"]), m["tone"]) for m in APP_ROW.finditer(region(text, "apps-table"))]


def listed(client, **query) -> list[str]:
    return [path for path, _, _ in app_rows(html_page(client, "/apps", query_string=query))]


def options(text: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}">(.*?)</select>', text, re.DOTALL).group(1)
    return [html.unescape(o) for o in re.findall(r"<option[^>]*>([^<]*)</option>", select)]


def meta(text: str, name: str) -> str:
    return html.unescape(re.search(rf'<meta name="{name}" content="([^"]*)">', text).group(1))


# --- the overview ---------------------------------------------------------------------------------


def test_overview_shows_each_cluster_the_counts_by_state_and_the_feed(plane_app, world):
    text = html_page(logged_in(plane_app), "/")
    demo = text[text.index('aria-label="cluster demo"'):text.index('aria-label="cluster other"')]
    assert re.search(r'class="badge tone-ok[^"]*"[^>]*><span class="dot" aria-hidden="true"></span>Connected<', demo)
    assert '<span class="tag"' in demo and ">simulated</span>" in demo
    assert "<dt>Kubernetes</dt><dd>1.33</dd>" in demo
    assert re.search(r"<dt>Workspaces</dt><dd><span class=\"env\">dev:</span> payments, storefront</dd>", demo)
    other = text[text.index('aria-label="cluster other"'):]
    assert "Never connected" in other and "bootstrap/root.yaml" in other

    totals = re.findall(r'<a class="total" href="([^"]+)">(\d+ [^<]+)</a>', region(text, "overview-totals"))
    assert [(html.unescape(href), words) for href, words in totals] == [
        ("/apps?health=Degraded", "1 Degraded"), ("/apps?health=Healthy", "1 Healthy"),
        ("/apps?health=NotReported", "1 Not reported"), ("/apps?health=SyncFailed", "1 Sync failed")]

    feed = region(text, "overview-feed")
    for app in ("web", "api", "ledger", "cart"):
        assert re.search(rf'>{app}</a> <span class="muted">[a-z]+:[a-z]+</span></td>\s*<td>version 1: deploy</td>',
                         feed), app
    degraded = re.search(r'>api</a>[^\n]*\n?\s*<td>Synced, Degraded</td><td><span class="badge tone-bad', feed)
    assert degraded and "exceeded its progress deadline" in feed
    assert re.search(r">ledger</a>.*?<td>OutOfSync, Missing</td>", feed, re.DOTALL)


# --- the apps table -------------------------------------------------------------------------------


def test_apps_table_shows_every_state_in_words_and_tones(plane_app, world):
    text = html_page(logged_in(plane_app), "/apps")
    assert app_rows(text) == [
        ("demo/payments/ledger", "Sync failed", "bad"), ("demo/storefront/api", "Degraded", "bad"),
        ("demo/storefront/web", "Healthy", "ok"), ("other/storefront/cart", "Not reported", "quiet")]
    table = region(text, "apps-table")
    assert "one or more objects failed to apply" in table and "exceeded its progress deadline" in table
    assert "4 apps" in table


FILTERS = [
    ({"cluster": "other"}, ["other/storefront/cart"]),
    ({"workspace": "storefront"}, ["demo/storefront/api", "demo/storefront/web", "other/storefront/cart"]),
    ({"cluster": "demo", "workspace": "storefront"}, ["demo/storefront/api", "demo/storefront/web"]),
    ({"health": "Healthy"}, ["demo/storefront/web"]),
    ({"health": "Degraded"}, ["demo/storefront/api"]),
    ({"health": "SyncFailed"}, ["demo/payments/ledger"]),
    ({"health": "NotReported"}, ["other/storefront/cart"]),
    ({"health": "Missing"}, []),  # the ledger's health is Missing, but its failed sync is what it shows
    ({"q": "LED"}, ["demo/payments/ledger"]),
    ({"q": "a"}, ["demo/storefront/api", "other/storefront/cart"]),
    ({"q": "%"}, []),
    ({"cluster": "demo", "health": "Degraded", "q": "ap"}, ["demo/storefront/api"]),
    ({"cluster": "nowhere"}, []),
]


def test_apps_table_filters(plane_app, world):
    client = logged_in(plane_app)
    for query, expected in FILTERS:
        text = html_page(client, "/apps", query_string=query)
        assert [path for path, _, _ in app_rows(text)] == expected, query
        if not expected:
            assert "No app matches these filters." in text, query
        if "health" in query:
            assert f'<option value="{query["health"]}" selected>' in text, query
        assert '<a href="/apps">Clear</a>' in text, query


def test_apps_table_pages_keep_their_filters(plane_app, world):
    client = logged_in(plane_app)
    first = html_page(client, "/apps", query_string={"per_page": 2})
    assert [row[0] for row in app_rows(first)] == EVERY_APP[:2]
    assert "4 apps, page 1 of 2" in first
    following = html.unescape(re.search(r'<a href="([^"]+)" rel="next">', first).group(1))
    assert "page=2" in following and "per_page=2" in following
    assert [row[0] for row in app_rows(html_page(client, following))] == EVERY_APP[2:]
    assert listed(client, per_page=2, page=9) == EVERY_APP[2:]  # past the last page: the last page

    filtered = html_page(client, "/apps", query_string={"per_page": 1, "workspace": "storefront"})
    assert "3 apps, page 1 of 3" in filtered
    following = html.unescape(re.search(r'<a href="([^"]+)" rel="next">', filtered).group(1))
    assert "workspace=storefront" in following
    assert listed(client, per_page=1, workspace="storefront", page=3) == ["other/storefront/cart"]


BAD_ARGUMENTS = [
    ({"page": "abc"}, "page"), ({"page": "0"}, "page"), ({"page": "-1"}, "page"), ({"page": "1.5"}, "page"),
    ({"per_page": "0"}, "per_page"), ({"per_page": "201"}, "per_page"), ({"per_page": "9" * 40}, "per_page"),
    ({"health": "Broken"}, "health"), ({"health": "healthy"}, "health"), ({"health": "<script>"}, "health"),
]


def test_bad_arguments_of_the_apps_table_are_a_400_page(plane_app, world):
    client = logged_in(plane_app)
    for query, name in BAD_ARGUMENTS:
        text = html_page(client, "/apps", status=400, query_string=query)
        assert "That request was not right" in text and "Error 400." in text, query
        assert f"{name} must be" in html.unescape(text), query
        assert "<script>" not in text, query


# --- an app, a version, a diff --------------------------------------------------------------------


def test_app_page_shows_health_pods_events_and_versions(plane_app, world):
    client = logged_in(plane_app)
    text = html_page(client, "/apps/demo/storefront/api")
    status = region(text, "app-status")
    assert re.search(r'class="badge tone-bad big"[^>]*><span class="dot" aria-hidden="true"></span>'
                     r"(Degraded|Failing: CrashLoopBackOff)<", status)
    assert re.search(r'<p class="problem" role="alert"><strong>CrashLoopBackOff</strong>: '
                     r"Deployment &#34;api&#34; exceeded its progress deadline", status)
    pods = region(text, "app-pods")
    assert f"<code>{CRASHING_POD}</code>" in pods and "CrashLoopBackOff" in pods and "<td>6</td>" in pods
    events = region(text, "app-events")
    assert re.search(r"<td>Warning</td><td>BackOff</td><td><code>Pod/" + CRASHING_POD, events)
    versions = region(text, "app-versions")
    assert re.search(r'<tr class="row-bad">\s*<td><a href="/apps/demo/storefront/api/versions/1">v1</a> '
                     r'<span class="tag tone-ok">live</span></td>.*?<span class="badge tone-bad">'
                     r'<span class="dot" aria-hidden="true"></span>degraded</span>', versions, re.DOTALL)
    assert meta(text, "live-ticket") and meta(text, "live-fingerprint")

    healthy = html_page(client, "/apps/demo/storefront/web")
    assert re.search(r'class="badge tone-ok big"[^>]*><span class="dot" aria-hidden="true"></span>Healthy<', healthy)
    assert "No pods reported." in healthy and "No events reported for this app" in healthy
    unreported = html_page(client, "/apps/other/storefront/cart")
    assert "Not reported" in unreported and "No agent has reported this app yet." in unreported


def test_version_and_diff_pages(plane_app, world):
    deploy(world.admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    client = logged_in(plane_app)
    version = html_page(client, "/apps/demo/storefront/web/versions/1")
    assert "<h1>web version 1</h1>" in version
    assert re.search(r'<pre class="code"[^>]*>[^<]*ghcr.io/acme/web:1.0', version)
    assert re.search(rf"<dt>Commit</dt><dd>[^\n]*{world.versions['web']['commit']}[^\n]*</dd>", version)

    diff = html_page(client, "/apps/demo/storefront/web/diff")
    assert "<h1>web: version 1 → 2</h1>" in diff
    manifests = diff[diff.index('aria-label="manifest diff"'):diff.index('aria-label="spec diff"')]
    assert re.search(r'<span class="del">-\s+image: ghcr.io/acme/web:1.0</span>', manifests)
    assert re.search(r'<span class="add">\+\s+image: ghcr.io/acme/web:2.0</span>', manifests)
    spec = diff[diff.index('aria-label="spec diff"'):]
    assert re.search(r'<span class="add">\+[^<]*web:2.0', spec) and re.search(r'<span class="del">-[^<]*web:1.0', spec)
    same = html_page(client, "/apps/demo/storefront/web/diff", query_string={"from": 2, "to": 2})
    assert "The rendered manifests are the same." in same and "The specs are the same." in same

    assert "Error 404." in html_page(client, "/apps/demo/storefront/web/versions/9", status=404)
    assert "Error 404." in html_page(client, "/apps/demo/storefront/web/diff", status=404, query_string={"from": 9})
    refused = html_page(client, "/apps/demo/storefront/web/diff", status=400, query_string={"from": "one"})
    assert "from must be a whole number" in refused
    assert "Error 404." in html_page(client, "/apps/demo/storefront/nope", status=404)


# --- what a workspace viewer sees -----------------------------------------------------------------


def test_a_viewer_of_one_workspace_sees_nothing_of_another(plane_app, world):
    make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    client = logged_in(plane_app, "viewer")
    overview = html_page(client, "/")
    totals = re.findall(r'<a class="total" href="[^"]+">(\d+ [^<]+)</a>', region(overview, "overview-totals"))
    assert totals == ["1 Degraded", "1 Healthy"]
    assert 'aria-label="cluster demo"' in overview and 'aria-label="cluster other"' not in overview
    assert re.search(r"<dt>Workspaces</dt><dd><span class=\"env\">dev:</span> storefront</dd>", overview)
    feed = region(overview, "overview-feed")
    assert ">web</a>" in feed and ">api</a>" in feed
    for hidden in ("ledger", "payments", "cart", "other:", "failed to apply"):
        assert hidden not in overview, hidden

    apps = html_page(client, "/apps")
    assert [row[0] for row in app_rows(apps)] == ["demo/storefront/api", "demo/storefront/web"]
    assert options(apps, "cluster") == ["all", "demo"] and options(apps, "workspace") == ["all", "storefront"]
    for query in ({"workspace": "payments"}, {"cluster": "other"}, {"health": "SyncFailed"}, {"q": "ledger"},
                  {"health": "NotReported"}):
        assert listed(client, **query) == [], query
    for path in ("/apps/demo/payments/ledger", "/apps/demo/payments/ledger/versions/1",
                 "/apps/demo/payments/ledger/diff", "/apps/other/storefront/cart"):
        assert "Error 404." in html_page(client, path, status=404), path
    assert html_page(client, "/apps/demo/storefront/api").count("CrashLoopBackOff") >= 1


# --- /live --------------------------------------------------------------------------------------


def fresh(app) -> None:
    """Forget the fingerprints read so far (they are kept FINGERPRINT_SECONDS), as time passing would."""
    app.extensions.pop("shipyard.fingerprints", None)


def live(client, ticket: str | None, seen: str | None = None):
    query = {k: v for k, v in (("t", ticket), ("seen", seen)) if v is not None}
    response = client.get("/live", query_string=query)
    assert response.headers["Cache-Control"] == "no-store"
    return response


def live_page(client, path: str) -> tuple[str, str]:
    """What an open page polls with: its ticket and the fingerprint it was rendered with."""
    text = html_page(client, path)
    return meta(text, "live-ticket"), meta(text, "live-fingerprint")


def test_live_answers_204_until_the_scope_changes_then_200_with_the_new_fingerprint(plane_app, world):
    client = logged_in(plane_app)
    ticket, seen = live_page(client, "/apps/demo/storefront/web")
    assert live(client, ticket, seen).status_code == 204
    assert live(plane_app.test_client(), ticket, seen).status_code == 204  # the ticket is enough: no session

    deploy(world.admin, service_spec("web", image="ghcr.io/acme/web:2.0"))
    fresh(plane_app)
    moved = live(client, ticket, seen)
    assert moved.status_code == 200 and moved.mimetype == "text/plain"
    after_deploy = moved.get_data(as_text=True)
    assert after_deploy and after_deploy != seen
    assert live(client, ticket, after_deploy).status_code == 204
    # the page fetched again carries what /live said
    assert live_page(client, "/apps/demo/storefront/web")[1] == after_deploy

    report_application(world.agent, "storefront", "web", sync="Synced", revision=world.versions["web"]["commit"],
                       health="Degraded", message="the simulated database is down")
    fresh(plane_app)
    reported = live(client, ticket, after_deploy)
    assert reported.status_code == 200 and reported.get_data(as_text=True) not in (seen, after_deploy)

    tenant_ticket, tenant_seen = live_page(client, "/")
    assert live(client, tenant_ticket, tenant_seen).status_code == 204
    deploy(world.admin, service_spec("ledger", workspace="payments", image="ghcr.io/acme/ledger:2.0"))
    fresh(plane_app)
    assert live(client, tenant_ticket, tenant_seen).status_code == 200


def test_the_overview_follows_what_heartbeats_say_but_not_their_beat(plane_app, world):
    client = logged_in(plane_app)
    ticket, seen = live_page(client, "/")
    world.agent.heartbeat(Heartbeat("1.0", "1.33", simulated=True))  # the same news, a beat later
    fresh(plane_app)
    assert live(client, ticket, seen).status_code == 204
    fault = {"kind": "Deployment", "namespace": "payments", "reason": "forbidden", "message": "cannot list"}
    world.agent.heartbeat(Heartbeat("1.0", "1.33", simulated=True, watch_faults=[fault]))
    fresh(plane_app)
    moved = live(client, ticket, seen)
    assert moved.status_code == 200
    assert "cannot list" in html_page(client, "/")


def test_the_fast_answer_says_only_what_live_said_and_never_past_a_tickets_life(plane_app, world, monkeypatch):
    client = logged_in(plane_app)
    ticket, seen = live_page(client, "/apps/demo/storefront/web")
    assert live(plane_app.test_client(), ticket, seen).status_code == 204  # through Flask: ticket checked
    # from now on Flask's view answers 418, so what it would have answered shows
    monkeypatch.setitem(plane_app.view_functions, "pages.live", lambda: ("", 418, {"Cache-Control": "no-store"}))
    again = live(plane_app.test_client(), ticket, seen)
    assert again.status_code == 204 and "Set-Cookie" not in again.headers  # answered before Flask
    assert live(plane_app.test_client(), ticket, "another").status_code == 418  # anything else goes to the view
    assert live(plane_app.test_client(), ticket[:-3] + "xyz", seen).status_code == 418
    monkeypatch.undo()
    deploy(world.admin, service_spec("web", image="ghcr.io/acme/web:3.0"))
    fresh(plane_app)
    assert live(plane_app.test_client(), ticket, seen).status_code == 200  # a change is never answered fast
    expired = {ticket: (0.0, "app:1")}
    plane_app.extensions["shipyard.live_tickets"].update(expired)  # remembered, but its life is over
    assert live(plane_app.test_client(), ticket, seen).status_code == 401


def test_a_ticket_is_bound_to_its_scope(plane_app, world):
    make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    viewer = logged_in(plane_app, "viewer")
    ticket, seen = live_page(viewer, "/apps/demo/storefront/web")
    admin = logged_in(plane_app)
    ledger_ticket, ledger_seen = live_page(admin, "/apps/demo/payments/ledger")

    # changes elsewhere: a new version of the ledger, a report from the other cluster
    deploy(world.admin, service_spec("ledger", workspace="payments", image="ghcr.io/acme/ledger:2.0"))
    other_agent = agent_of(plane_app, world.other, "other")
    try:
        report_application(other_agent, "storefront", "cart", sync="Synced",
                           revision=world.versions["cart"]["commit"], health="Healthy")
    finally:
        other_agent.client.close()
    fresh(plane_app)
    assert live(viewer, ticket, seen).status_code == 204  # says nothing of the ledger nor of the other cluster
    assert live(admin, ledger_ticket, ledger_seen).status_code == 200  # the ledger's own ticket does see it

    # a ticket cannot be pointed at another scope: its payload is signed
    repointed = ledger_ticket.partition(".")[0] + "." + ticket.partition(".")[2]
    assert live(viewer, repointed, seen).status_code == 401


def _ticket(secret: str, value, age: float = 0.0) -> str:
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(super().get_timestamp() - age)

    return URLSafeTimedSerializer(secret, salt="shipyard-live-page", signer=Past).dumps(value)


def test_live_refuses_missing_forged_and_expired_tickets(plane_app, world):
    client = logged_in(plane_app)
    ticket, seen = live_page(client, "/apps/demo/storefront/web")
    secret = plane_app.config["SECRET_KEY"]
    assert live(client, _ticket(secret, [1, "app:1"]), None).status_code == 200  # signed as the app signs

    # a changed signature (its first character: the last one also holds base64 padding bits, which a
    # change may leave the decoded signature without)
    payload, _, signature = ticket.rpartition(".")
    flipped = f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    for bad in (None, "", "not-a-ticket", flipped, _ticket("another key", [1, "app:1"]),
                _ticket(secret, [1, "app:1"], age=TICKET_SECONDS + 5), _ticket(secret, [1, "app:one"]),
                _ticket(secret, [1, {"app": 1}]), _ticket(secret, "app:1")):
        assert live(client, bad, seen).status_code == 401, bad
    assert live(client, _ticket(secret, [1, "app:1"], age=TICKET_SECONDS - 30), None).status_code == 200


# --- the pages' CSS and JS, and error pages -------------------------------------------------------


def test_assets_are_served_with_their_type_and_cached_only_under_their_digest(plane_app):
    login_page = html_page(plane_app.test_client(), "/login")
    css = re.search(r'<link rel="stylesheet" href="(/static/(\w+)/dashboard.css)">', login_page)
    js = re.search(r'<script src="(/static/(\w+)/dashboard.js)" defer>', login_page)
    client = plane_app.test_client()  # no session: the assets are public
    for (url, digest), name, mimetype in ((css.groups(), "dashboard.css", "text/css"),
                                          (js.groups(), "dashboard.js", "text/javascript")):
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == mimetype
        assert response.headers["Content-Type"].endswith("charset=utf-8")
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.data == (STATIC / name).read_bytes()
        # an old page asking for an asset that changed since gets today's, but may not keep it
        stale = client.get(f"/static/{'0' * len(digest)}/{name}")
        assert stale.status_code == 200 and stale.data == response.data
        assert not {"immutable", "max-age=31536000"} & set(re.split(r",\s*", stale.headers.get("Cache-Control", "")))
    for path in (f"/static/{css.group(2)}/app.py", f"/static/{css.group(2)}/..%2F__init__.py",
                 f"/static/{css.group(2)}/dashboard.css.map"):
        assert client.get(path).status_code == 404, path


def test_unknown_paths_are_html_for_browsers_and_json_for_the_api(plane_app, world):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    client = logged_in(plane_app)
    missing = html_page(client, "/no/such/page", status=404, headers=browser)
    assert '<header class="top">' in missing and "<h1>Not found</h1>" in missing
    assert 'aria-label="Main"' in missing  # in the layout, with the logged-in navigation
    anonymous = html_page(plane_app.test_client(), "/no/such/page", status=404, headers=browser)
    assert 'href="/login">Log in</a>' in anonymous

    for path, headers in (("/api/v1/no/such/thing", browser), ("/no/such/page", {"Accept": "application/json"}),
                          ("/static/0/none.css", browser)):
        response = client.get(path, headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/json", path
        assert response.get_json()["error"]["code"] == "not_found"
    # a page is a page whatever the Accept header says
    assert "Error 404." in html_page(client, "/apps/demo/storefront/nope", status=404,
                                headers={"Accept": "application/json"})
