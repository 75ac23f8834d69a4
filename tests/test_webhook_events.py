"""Status events are made where each change is recorded, once per change (gitops.webhook_events).

Runs on SQLite and PostgreSQL against the real paths: deploys, rollbacks and promotions through
the API; a commit whose recording failed, finished by the reconciler while another process's
committer races it; status batches from the agent's real Reporter over a loopback server; job
runs through the agent endpoints; an agent that goes offline and comes back through each kind of
call. A subscription listening to every event type is made through the API first (nothing
delivers here: the worker is off in tests); events no active subscription lists are not made.
Every event's envelope is validated against schemas/webhook-event.schema.json.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import select, update

from contract.errors import RepoError
from contract.protocol import CommandResult, Heartbeat
from contract.repository import application_name
from gitops import commit_step, webhook_events
from gitops.webhooks import EVENT_TYPES
from gitops.clusters import profile_of
from gitops.commit_step import Committers, Ticket
from gitops.models import Cluster, Version, WebhookEvent, utcnow
from gitops.reconciler import LEASE, reconcile, worker_id
from gitops.status import StatusSettings
from renderer.render import render
from renderer.spec import load_specs
from tests.plane import served  # noqa: F401 - a fixture, for client
from tests.plane import (add_cluster, add_workspace, answer_commit_refreshes, app_config, deploy_yaml, make_user,
                         service_spec)
from tests.test_status import JOB, argocd_application, observe, reporter
from webapp import create_app

API = "/api/v1"
SCHEMA = json.loads(Path("schemas/webhook-event.schema.json").read_text())
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    return not isinstance(value, str) or dt.datetime.fromisoformat(value).tzinfo is not None


VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FORMATS)
STATUS_EVENTS = ("version.synced", "version.healthy", "version.degraded", "version.sync_failed")


@pytest.fixture
def plane_app(database_url, tmp_path):
    app = create_app(app_config(tmp_path / "data", database_url))
    yield app
    app.extensions["shipyard"].close()


@pytest.fixture
def client(request):
    """An HTTP client of the app served on a loopback port (``served``), as the agent talks to it."""
    with httpx.Client(base_url=request.getfixturevalue("served"), timeout=60) as http:
        yield http


def subscribe(admin, name: str = "everything", events: tuple[str, ...] = EVENT_TYPES) -> None:
    response = admin.post(f"{API}/webhooks", json={"name": name, "url": "http://127.0.0.1:9/hook",
                                                   "allowed_host": "127.0.0.1", "events": list(events)})
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def unheard(plane_app):
    """The demo cluster and its storefront workspace, and no subscription."""
    admin = make_user(plane_app, "admin", "tenant-admin")
    demo = add_cluster(admin, "demo")
    add_workspace(admin, "demo", "storefront")
    return {"admin": admin, "demo": demo, "app": plane_app}


@pytest.fixture
def world(unheard):
    """The same, with a subscription of the tenant to every event type."""
    subscribe(unheard["admin"])
    return unheard


def events(plane_app, *types: str) -> list[dict]:
    """The events so far (of ``types``, or all), oldest first, as the envelope a receiver gets; every
    one checked against the schema."""
    with plane_app.extensions["shipyard"].sessions() as session:
        rows = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
    out = []
    for row in rows:
        body = webhook_events.envelope(row)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(body)]
        assert not errors, (body, errors)
        assert json.loads(json.dumps(body)) == body  # plain JSON, as it is sent
        if not types or body["type"] in types:
            out.append(body)
    return out


def scope_of(plane_app, key: str) -> tuple[int | None, int | None, int | None]:
    with plane_app.extensions["shipyard"].sessions() as session:
        event = session.scalar(select(WebhookEvent).where(WebhookEvent.key == key))
        return event.cluster_id, event.workspace_id, event.application_id


def version_of(plane_app, deployment_id: str) -> Version:
    with plane_app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(Version).where(Version.deployment_id == deployment_id))


def deploy(world, image: str, name: str = "web") -> dict:
    response = deploy_yaml(world["admin"], service_spec(name, image=image))
    assert response.status_code == 200, response.get_json()
    (version,) = response.get_json()["versions"]
    answer_commit_refreshes(world["app"])  # the agent has refreshed the commit's Applications
    return version


# --- versions committed, rolled back, promoted -----------------------------------------------------


def test_deploys_rollbacks_and_promotions_are_each_one_event(plane_app, world):
    admin = world["admin"]
    first = deploy(world, "ghcr.io/acme/web:1")
    v1 = version_of(plane_app, first["deployment_id"])
    (committed,) = events(plane_app)
    assert (committed["type"], committed["id"], committed["version"]) == (
        "version.committed", f"app/{v1.application_id}/version/1/committed", "1")
    assert committed["data"] == {
        "tenant": "default", "cluster": "demo", "workspace": "storefront", "app": "web", "version": 1,
        "action": "deploy", "deployment_id": first["deployment_id"], "commit": first["commit"], "changed": True,
        "source_commit": None, "author": "admin", "origin": None}
    assert dt.datetime.fromisoformat(committed["occurred_at"]) == v1.committed_at
    assert scope_of(plane_app, committed["id"]) == (v1.application.workspace.cluster_id,
                                                    v1.application.workspace_id, v1.application_id)

    deploy(world, "ghcr.io/acme/web:1")  # the same spec again: no version, no event
    assert len(events(plane_app)) == 1
    deploy(world, "ghcr.io/acme/web:2")
    rolled = admin.post(f"{API}/apps/demo/storefront/web/rollback", json={"version": 1})
    assert rolled.status_code == 201, rolled.get_json()
    add_workspace(admin, "demo", "checkout")
    promoted = admin.post(f"{API}/apps/demo/storefront/web/promote",
                          json={"target": "demo:checkout", "overrides": {"replicas": 3}})
    assert promoted.status_code == 201, promoted.get_json()

    assert [(e["type"], e["data"]["workspace"], e["data"]["version"]) for e in events(plane_app)] == [
        ("version.committed", "storefront", 1), ("version.committed", "storefront", 2),
        ("version.committed", "storefront", 3), ("version.rolled_back", "storefront", 3),
        ("version.committed", "checkout", 1), ("version.promoted", "checkout", 1)]
    v3 = version_of(plane_app, rolled.get_json()["deployment_id"])
    (back,) = events(plane_app, "version.rolled_back")
    assert back["id"] == f"app/{v3.application_id}/version/3/rolled_back"
    assert (back["data"]["action"], back["data"]["origin"], back["data"]["commit"]) == (
        "rollback", {"rollback_of": 1}, rolled.get_json()["commit"])
    promotion = version_of(plane_app, promoted.get_json()["deployment_id"])
    (forward,) = events(plane_app, "version.promoted")
    assert forward["id"] == f"app/{promotion.application_id}/version/1/promoted"
    # where it came from; its overrides stay with the version
    assert forward["data"]["origin"] == {"promoted_from": "demo:storefront/web", "version": 3}  # the rollback
    assert scope_of(plane_app, forward["id"]) == (v1.application.workspace.cluster_id,
                                                  promotion.application.workspace_id, promotion.application_id)
    assert promotion.application.workspace_id != v1.application.workspace_id


def test_a_commit_recorded_after_a_failure_while_another_process_races_is_one_event(plane_app, world, monkeypatch):
    """The git commit lands and recording it fails: the reconciler records it later, while a committer
    of another process finds the same commit under the apps' row locks. One version.committed in all."""
    control = plane_app.extensions["shipyard"]
    real_apply = commit_step.apply_service.apply

    def commit_then_fail(*args, **kwargs):
        real_apply(*args, **kwargs)
        raise RepoError("the database went away after the git commit")

    monkeypatch.setattr(commit_step.apply_service, "apply", commit_then_fail)
    response = deploy_yaml(world["admin"], service_spec("web", image="ghcr.io/acme/web:1"))
    assert response.status_code == 202, response.get_json()  # accepted, left for the reconciler
    monkeypatch.setattr(commit_step.apply_service, "apply", real_apply)
    assert events(plane_app) == []  # the transaction that failed took its event along

    with control.sessions() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == "demo"))
    version = version_of(plane_app, response.get_json()["versions"][0]["deployment_id"])
    assert version.state == "pending"
    profile = profile_of(cluster)
    (spec,) = load_specs(service_spec("web", image="ghcr.io/acme/web:1"))
    ticket = Ticket(version.id, version.application_id, 1, "storefront", "web", version.deployment_id, "admin",
                    render(spec, profile))
    later = utcnow() + LEASE + dt.timedelta(minutes=1)
    repaired: list[int] = []
    racers = [threading.Thread(target=lambda: repaired.append(reconcile(
                  control.sessions, control.repos, control.committers, worker_id(), now=lambda: later))),
              threading.Thread(target=lambda: Committers(control.sessions, control.repos).run(
                  cluster, profile, [ticket]))]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(120)
    assert ticket.state == "committed" and repaired in ([0], [1])
    assert reconcile(control.sessions, control.repos, control.committers, worker_id(), now=lambda: later) == 0

    recorded = version_of(plane_app, version.deployment_id)
    (committed,) = events(plane_app)
    assert committed["id"] == f"app/{version.application_id}/version/1/committed"
    assert recorded.state == "committed" and committed["data"]["commit"] == recorded.commit_id


# --- status: synced, healthy, degraded, sync failed ------------------------------------------------


def report_app(rep, **status) -> None:
    observe(rep, "Application", "argocd", application_name("storefront", "web"),
            argocd_application("storefront", "web", **status))
    rep.send_pending()


def test_only_the_types_an_active_subscription_lists_are_made(plane_app, unheard, client):
    admin = unheard["admin"]
    rep = reporter(client, unheard["demo"])
    first = deploy(unheard, "ghcr.io/acme/web:1")
    report_app(rep, sync="Synced", revision=first["commit"], health="Progressing")
    assert events(plane_app) == []  # nobody listens: nothing is written

    subscribe(admin, "health", ("version.healthy", "version.degraded"))
    deploy(unheard, "ghcr.io/acme/web:2")
    second = deploy(unheard, "ghcr.io/acme/web:3")
    report_app(rep, sync="Synced", revision=second["commit"], health="Healthy")
    assert [(e["type"], e["data"]["version"]) for e in events(plane_app)] == [("version.healthy", 3)]

    assert admin.patch(f"{API}/webhooks/health", json={"state": "paused"}).status_code == 200
    report_app(rep, sync="Synced", revision=second["commit"], health="Degraded")
    assert len(events(plane_app)) == 1  # paused: it would be sent nothing, so nothing is made
    assert admin.patch(f"{API}/webhooks/health", json={"state": "active"}).status_code == 200
    report_app(rep, sync="Synced", revision=second["commit"], health="Healthy")
    assert [e["type"] for e in events(plane_app)] == ["version.healthy", "version.healthy"]


def test_each_status_change_of_a_version_is_one_event(plane_app, world, client):
    rep = reporter(client, world["demo"])
    first = deploy(world, "ghcr.io/acme/web:1")
    app_id = version_of(plane_app, first["deployment_id"]).application_id
    report_app(rep, sync="OutOfSync", revision=first["commit"], health="Missing", operation="Running")
    assert events(plane_app, *STATUS_EVENTS) == []  # nothing live yet
    report_app(rep, sync="Synced", revision=first["commit"], health="Progressing")
    report_app(rep, sync="Synced", revision=first["commit"], health="Healthy")
    report_app(rep, sync="Synced", revision=first["commit"], health="Healthy", message="all good")
    rep.resync()  # the same states again, in the snapshot of a new stream: no change, no event
    synced, healthy = events(plane_app, *STATUS_EVENTS)
    assert synced["id"].startswith(f"app/{app_id}/version/1/synced/")
    assert healthy["id"].startswith(f"app/{app_id}/version/1/healthy/")
    assert synced["data"] == {"tenant": "default", "cluster": "demo", "workspace": "storefront", "app": "web",
                              "version": 1, "sync": "Synced", "health": "Progressing", "operation": "Succeeded",
                              "revision": first["commit"], "message": None}
    assert (healthy["type"], healthy["data"]["health"]) == ("version.healthy", "Healthy")

    # degraded, healthy, degraded: three events, each its own key
    for health in ("Degraded", "Healthy", "Degraded"):
        report_app(rep, sync="Synced", revision=first["commit"], health=health,
                   message="Deployment web exceeded its progress deadline" if health == "Degraded" else None)
    flips = events(plane_app, *STATUS_EVENTS)[2:]
    assert [e["type"] for e in flips] == ["version.degraded", "version.healthy", "version.degraded"]
    assert len({e["id"] for e in events(plane_app)}) == len(events(plane_app))
    assert "progress deadline" in flips[0]["data"]["message"]

    # a sync that fails is about the version it tried, not the live one; ArgoCD saying so again is no change
    second = deploy(world, "ghcr.io/acme/web:2")
    for message in ("one or more objects failed to apply", "one or more objects failed to apply (retried)"):
        report_app(rep, sync="OutOfSync", revision=second["commit"], health="Degraded", operation="Failed",
                   operation_revision=second["commit"], message=message)
    (failed,) = events(plane_app, "version.sync_failed")
    assert failed["id"].startswith(f"app/{app_id}/version/2/sync_failed/")
    assert (failed["data"]["version"], failed["data"]["revision"], failed["data"]["operation"],
            failed["data"]["message"]) == (2, second["commit"], "Failed", "one or more objects failed to apply")

    # the next sync lands: version 2 is synced and healthy at once, while version 1 was Degraded
    report_app(rep, sync="Synced", revision=second["commit"], health="Healthy", operation="Succeeded",
               operation_revision=second["commit"])
    assert [(e["type"], e["data"]["version"]) for e in events(plane_app, *STATUS_EVENTS)[5:]] == [
        ("version.sync_failed", 2), ("version.synced", 2), ("version.healthy", 2)]

    # a commit for another app moves web's revision on: nothing of web changed, no event of it
    other = deploy(world, "ghcr.io/acme/api:1", name="api")
    count = len(events(plane_app))
    report_app(rep, sync="Synced", revision=other["commit"], health="Healthy", operation="Succeeded",
               operation_revision=other["commit"])
    assert len(events(plane_app)) == count


@pytest.mark.parametrize(("old", "new", "expected"), [
    (None, {"live_version": None, "sync": "Synced", "health": "Healthy"}, []),  # no version known to be live
    (None, {"live_version": 1, "sync": "Synced", "health": "Healthy"}, ["version.synced", "version.healthy"]),
    ({"live_version": 1, "sync": "Synced", "health": "Healthy"},
     {"live_version": 1, "sync": "Synced", "health": "Healthy"}, []),
    ({"live_version": 1, "sync": "OutOfSync", "health": "Healthy"},
     {"live_version": 1, "sync": "Synced", "health": "Healthy"}, ["version.synced"]),  # drift put right
    ({"live_version": 1, "sync": "Synced", "health": "Healthy"},
     {"live_version": 2, "sync": "Synced", "health": "Healthy"}, ["version.synced", "version.healthy"]),
    ({"live_version": 1, "sync": "Synced", "health": "Progressing"},
     {"live_version": 1, "sync": "Synced", "health": "Degraded"}, ["version.degraded"]),
    ({"live_version": 1, "sync": "Synced", "health": "Healthy"},
     {"live_version": 1, "sync": "OutOfSync", "health": "Healthy", "operation": "Failed", "operation_revision": "b"},
     ["version.sync_failed"]),
    ({"live_version": 1, "sync": "OutOfSync", "health": "Healthy", "operation": "Failed", "operation_revision": "b",
      "revision": "b"},
     {"live_version": 1, "sync": "OutOfSync", "health": "Healthy", "operation": "Failed", "operation_revision": "b",
      "revision": "c"}, []),  # ArgoCD keeps a failed operation's state while it compares a newer revision
    ({"live_version": 1, "sync": "OutOfSync", "health": "Healthy", "operation": "Running", "revision": "b"},
     {"live_version": 1, "sync": "OutOfSync", "health": "Healthy", "operation": "Error", "revision": "b"},
     ["version.sync_failed"]),  # an agent that does not report the operation's revision: the compared one
])
def test_status_events_compare_the_live_version_and_its_state(old, new, expected):
    blank = {"sync": "Unknown", "health": "Unknown", "operation": None, "operation_revision": None, "revision": None,
             "live_version": None}
    assert webhook_events.status_events({**blank, **old} if old else None, {**blank, **new}) == expected


# --- job runs --------------------------------------------------------------------------------------


def test_job_runs_that_succeed_and_fail_are_each_one_event(plane_app, world, client):
    admin = world["admin"]
    rep = reporter(client, world["demo"])
    assert deploy_yaml(admin, JOB).status_code == 200
    answer_commit_refreshes(plane_app)
    runs_url = f"{API}/apps/demo/storefront/backfill/runs"
    ended = {}
    for phase in ("Succeeded", "Failed"):
        run = admin.post(runs_url, json={"params": {"since": "2026-01-01"}}).get_json()
        (command,) = rep.poll_commands(0)
        workflow = f"backfill-{phase.lower()}"
        rep.send_result(command.id, CommandResult(True, {"workflow": workflow}))
        for step in (1, 2):  # its end reported again with another message is one event
            observe(rep, "Workflow", "storefront", workflow, {"app": "backfill", "template": "backfill",
                                                             "phase": phase, "message": f"{phase} ({step})"})
            rep.send_pending()
        ended[phase] = run["id"]
    rep.resync()
    # a run whose command the agent could not carry out fails too; the result sent again changes nothing
    refused = admin.post(runs_url, json={"params": {"since": "2026-01-02"}}).get_json()
    (command,) = rep.poll_commands(0)
    for _ in range(2):
        rep.send_result(command.id, CommandResult(False, {}, "WorkflowTemplate backfill not found"))

    runs = events(plane_app, "run.succeeded", "run.failed")
    assert [(e["type"], e["id"], e["data"]["run"]) for e in runs] == [
        ("run.succeeded", f"run/{ended['Succeeded']}/succeeded", ended["Succeeded"]),
        ("run.failed", f"run/{ended['Failed']}/failed", ended["Failed"]),
        ("run.failed", f"run/{refused['id']}/failed", refused["id"])]
    assert runs[0]["data"] == {**runs[0]["data"], "tenant": "default", "cluster": "demo", "workspace": "storefront",
                               "app": "backfill", "state": "succeeded", "workflow": "backfill-succeeded",
                               "message": "Succeeded (1)", "started_by": "admin"}
    assert (runs[2]["data"]["workflow"], runs[2]["data"]["message"]) == (None, "WorkflowTemplate backfill not found")


# --- the clusters' agents --------------------------------------------------------------------------


def seen_ago(plane_app, seconds: float) -> dt.datetime:
    """Pretend the demo cluster's agent last called ``seconds`` ago; that moment."""
    moment = utcnow() - dt.timedelta(seconds=seconds)
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        session.execute(update(Cluster).where(Cluster.name == "demo").values(last_seen_at=moment))
    return moment


def find_offline(plane_app, now: dt.datetime) -> int:
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        return webhook_events.find_offline(session, now, StatusSettings.from_config(plane_app.config))


def test_an_agent_goes_offline_and_comes_back_through_each_kind_of_call(plane_app, world, client):
    rep = reporter(client, world["demo"])
    settings = StatusSettings.from_config(plane_app.config)
    with plane_app.extensions["shipyard"].sessions() as session:
        cluster_id = session.scalar(select(Cluster.id).where(Cluster.name == "demo"))
    deploy(world, "ghcr.io/acme/web:1")
    assert find_offline(plane_app, utcnow() + dt.timedelta(days=1)) == 0  # never heard from: not offline
    rep.heartbeat(Heartbeat("1.0", "1.33"))
    rep.heartbeat(Heartbeat("1.0", "1.33"))  # its first calls are no return
    seen_ago(plane_app, settings.online_within + 30)  # stale, not offline
    assert find_offline(plane_app, utcnow()) == 0
    rep.heartbeat(Heartbeat("1.0", "1.33"))
    assert events(plane_app, "cluster.offline", "cluster.online") == []

    # the delivery worker's pass finds it offline, once, exactly past the threshold
    gone = seen_ago(plane_app, settings.stale_within + 30)
    threshold = gone + dt.timedelta(seconds=settings.stale_within)
    assert find_offline(plane_app, threshold) == 0
    assert find_offline(plane_app, threshold + dt.timedelta(microseconds=1)) == 1
    assert find_offline(plane_app, utcnow() + dt.timedelta(hours=1)) == 0
    (offline,) = events(plane_app, "cluster.offline")
    stamp = gone.isoformat(timespec="microseconds")
    assert offline["id"] == f"cluster/{cluster_id}/offline/{stamp}"
    assert offline["data"] == {"tenant": "default", "cluster": "demo", "last_seen_at": stamp,
                               "offline_after": settings.stale_within}
    assert dt.datetime.fromisoformat(offline["occurred_at"]) == threshold
    assert scope_of(plane_app, offline["id"]) == (cluster_id, None, None)
    rep.heartbeat(Heartbeat("1.0", "1.33"))
    rep.heartbeat(Heartbeat("1.0", "1.33"))
    (online,) = events(plane_app, "cluster.online")
    assert online["id"] == f"cluster/{cluster_id}/online/{stamp}" and online["data"]["previously_seen_at"] == stamp

    # back through a status batch, a command poll and a command's result, with no worker pass in
    # between: each time its offline event is made first, then online
    command = world["admin"].post(f"{API}/apps/demo/storefront/web/commands", json={"type": "refresh"})
    assert command.status_code == 201, command.get_json()
    absences = []
    for call in ("status", "poll", "result"):
        absences.append(seen_ago(plane_app, settings.stale_within + 30).isoformat(timespec="microseconds"))
        if call == "status":
            observe(rep, "Pod", "storefront", "web-1", {"app": "web", "phase": "Running"})
            rep.send_pending()
        elif call == "poll":
            (sent,) = rep.poll_commands(0)
        else:
            rep.send_result(sent.id, CommandResult(True, {}))
    assert find_offline(plane_app, utcnow()) == 0
    assert [e["id"] for e in events(plane_app, "cluster.offline", "cluster.online")[2:]] == [
        f"cluster/{cluster_id}/{state}/{absence}" for absence in absences for state in ("offline", "online")]
