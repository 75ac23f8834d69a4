"""Agent endpoints and live status, end to end: a real Reporter (agent.report) over a loopback server.

Runs on SQLite and PostgreSQL. The agent side is the real reporting code the
agent and the simulated compute plane share; the control plane is the real
app served by werkzeug on a loopback port.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select, update

from agent import summaries
from contract import labels
from contract import protocol
from contract.protocol import CommandResult, Delta, Heartbeat, StatusBatch, encode
from agent.report import Outbox, Reporter, Tracker, Unauthorized
from gitops.models import Cluster, ClusterObject, Command, StatusEvent
from contract.repository import application_name
from tests.plane import (PROFILE, add_cluster, add_workspace, answer_commit_refreshes, app_config, deploy_yaml,  # noqa: F401 - served: a fixture
                         make_user, served, service_spec)
from webapp import create_app

API = "/api/v1"


@pytest.fixture
def plane_app(database_url, tmp_path):
    # a short token grace so rotation can be checked past it by moving rotated_at, not by sleeping
    app = create_app(app_config(tmp_path / "data", database_url, AGENT_TOKEN_GRACE=600, STATUS_HISTORY=20,
                                STATUS_GAP_WAIT=0.5))
    yield app
    app.extensions["shipyard"].close()


@pytest.fixture
def world(plane_app):
    admin = make_user(plane_app, "admin", "tenant-admin")
    demo = add_cluster(admin, "demo")
    other = add_cluster(admin, "other")
    add_workspace(admin, "demo", "storefront")
    answer_commit_refreshes(plane_app)
    return {"admin": admin, "demo": demo, "other": other, "app": plane_app}


@pytest.fixture
def client(served):
    with httpx.Client(base_url=served, timeout=60) as http:
        yield http


def reporter(client, cluster: dict, name: str = "demo", token: str | None = None) -> Reporter:
    return Reporter(client, "default", name, token or cluster["agent_token"], Tracker(), Outbox())


def objects_of(plane_app, cluster: str) -> dict[tuple[str, str, str], dict]:
    with plane_app.extensions["shipyard"].sessions() as session:
        rows = session.execute(select(ClusterObject.kind, ClusterObject.namespace, ClusterObject.name,
                                      ClusterObject.state).join(Cluster).where(Cluster.name == cluster)).all()
    return {(k, ns, n): state for k, ns, n, state in rows}


def agent_headers(cluster: dict, gzip: bool = False) -> dict[str, str]:
    """What the agent sends with a JSON body (gzipped when ``gzip``), with the cluster's token."""
    headers = {"Authorization": f"Bearer {cluster['agent_token']}", "Content-Type": "application/json"}
    return {**headers, "Content-Encoding": "gzip"} if gzip else headers


def observe(rep: Reporter, kind: str, namespace: str, name: str, state: dict | None) -> None:
    delta = rep.tracker.observe(kind, namespace, name, state)
    if delta is not None:
        rep.outbox.put(delta)


# --- the stream -------------------------------------------------------------------------------------


def test_snapshot_then_deltas_then_deletions(plane_app, world, client):
    rep = reporter(client, world["demo"])
    for i in range(7):
        observe(rep, "Pod", "storefront", f"web-{i}", {"app": "web", "phase": "Running", "reasons": []})
    rep.batch_size = 3  # a snapshot in three batches: only the final one may delete anything
    assert rep.send_pending() == 7
    assert len(objects_of(plane_app, "demo")) == 7
    observe(rep, "Pod", "storefront", "web-1", {"app": "web", "phase": "Failed", "reasons": ["OOMKilled"]})
    observe(rep, "Pod", "storefront", "web-2", None)
    assert rep.send_pending() == 2
    objects = objects_of(plane_app, "demo")
    assert objects[("Pod", "storefront", "web-1")]["reasons"] == ["OOMKilled"]
    assert ("Pod", "storefront", "web-2") not in objects and len(objects) == 6


def test_duplicate_batch_is_acknowledged_not_applied_again(plane_app, world, client):
    rep = reporter(client, world["demo"])
    observe(rep, "Pod", "storefront", "web-1", {"app": "web", "phase": "Running"})
    rep.send_pending()
    headers = agent_headers(world["demo"], gzip=True)
    delta = Delta("Pod", "storefront", "web-1", {"app": "web", "phase": "Failed"})
    batch = StatusBatch(rep.stream, rep.seq + 1, False, [delta])
    first = client.post("/agent/v1/default/demo/status", content=encode(batch), headers=headers)
    assert first.status_code == 200 and first.json() == {"acked": rep.seq + 1, "duplicate": False}
    # the same seq again, now carrying something else: acknowledged, and not applied
    replay = StatusBatch(rep.stream, rep.seq + 1, False, [Delta("Pod", "storefront", "web-1", {"phase": "X"})])
    second = client.post("/agent/v1/default/demo/status", content=encode(replay), headers=headers)
    assert second.status_code == 200 and second.json()["duplicate"] is True
    assert objects_of(plane_app, "demo")[("Pod", "storefront", "web-1")]["phase"] == "Failed"


def test_gap_asks_for_resync_and_the_reporter_ends_exact(plane_app, world, client):
    rep = reporter(client, world["demo"])
    for i in range(5):
        observe(rep, "Deployment", "storefront", f"d-{i}", {"app": f"d-{i}", "ready": 1})
    rep.send_pending()
    headers = agent_headers(world["demo"])
    gap = StatusBatch(rep.stream, rep.seq + 2, False, [Delta("Deployment", "storefront", "d-0", {"ready": 0})])
    response = client.post("/agent/v1/default/demo/status", content=json.dumps(
        {**gap.__dict__, "deltas": [d.__dict__ for d in gap.deltas]}), headers=headers)
    assert response.status_code == 409 and response.json() == {"resync": True}
    unknown = StatusBatch("no-such-stream", 5, False, [])
    assert client.post("/agent/v1/default/demo/status", content=encode(unknown),
                       headers={**headers, "Content-Encoding": "gzip"}).status_code == 409

    # The control plane "lost the thread" (as after a restore): the reporter's next delta gets a 409,
    # it resyncs with a snapshot, and objects deleted meanwhile disappear.
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        session.execute(update(Cluster).where(Cluster.name == "demo").values(stream=None, stream_seq=0))
    observe(rep, "Deployment", "storefront", "d-0", {"app": "d-0", "ready": 0})
    rep.tracker.observe("Deployment", "storefront", "d-4", None)  # gone while no delta said so
    resyncs = rep.resyncs
    rep.send_pending()
    assert rep.resyncs == resyncs + 1
    objects = objects_of(plane_app, "demo")
    assert sorted(n for _, _, n in objects) == ["d-0", "d-1", "d-2", "d-3"]
    assert objects[("Deployment", "storefront", "d-0")]["ready"] == 0


def test_a_batch_that_overtakes_the_one_before_waits_for_it(plane_app, world, client):
    # long enough that the earlier batch, sent 0.1 s after, always arrives within it on a loaded
    # machine (0.5 s did not, once); the later batch waits only until the earlier one is applied
    plane_app.config["STATUS_GAP_WAIT"] = 10.0
    rep = reporter(client, world["demo"])
    observe(rep, "Pod", "storefront", "web-1", {"app": "web", "phase": "Pending"})
    rep.send_pending()
    headers = agent_headers(world["demo"], gzip=True)
    later = StatusBatch(rep.stream, rep.seq + 2, False, [Delta("Pod", "storefront", "web-1", {"phase": "Running"})])
    earlier = StatusBatch(rep.stream, rep.seq + 1, False, [Delta("Pod", "storefront", "web-1", {"phase": "Failed"}),
                                                            Delta("Pod", "storefront", "web-2", {"phase": "Running"})])
    answers = {}
    overtaking = threading.Thread(target=lambda: answers.setdefault("later", client.post(
        "/agent/v1/default/demo/status", content=encode(later), headers=headers)))
    overtaking.start()
    time.sleep(0.1)  # the later batch is at the control plane first
    answers["earlier"] = client.post("/agent/v1/default/demo/status", content=encode(earlier), headers=headers)
    overtaking.join()
    assert answers["earlier"].json() == {"acked": rep.seq + 1, "duplicate": False}
    assert answers["later"].json() == {"acked": rep.seq + 2, "duplicate": False}
    objects = objects_of(plane_app, "demo")
    assert objects[("Pod", "storefront", "web-1")] == {"phase": "Running"}  # applied in seq order
    assert objects[("Pod", "storefront", "web-2")] == {"phase": "Running"}


class LosingTransport(httpx.HTTPTransport):
    """Delivers every request; drops the answer to the next status batch when armed (a cut connection)."""

    armed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.armed and request.url.path.endswith("/status"):
            self.armed = False
            response.read()
            raise httpx.ReadError("connection reset after the request was delivered", request=request)
        return response


def test_a_batch_whose_answer_was_lost_is_sent_again_as_it_was(plane_app, world, served):
    transport = LosingTransport()
    with httpx.Client(base_url=served, timeout=60, transport=transport) as http:
        rep = reporter(http, world["demo"])
        observe(rep, "Pod", "storefront", "web-1", {"phase": "Pending"})
        rep.send_pending()
        observe(rep, "Pod", "storefront", "web-1", {"phase": "Running"})
        transport.armed = True
        with pytest.raises(httpx.ReadError):
            rep.send_pending()  # applied by the control plane; the agent never heard
        observe(rep, "Pod", "storefront", "web-1", {"phase": "Failed"})
        observe(rep, "Pod", "storefront", "web-2", {"phase": "Running"})
        assert rep.send_pending() == 3  # the lost batch again (a duplicate there), then the new one
    objects = objects_of(plane_app, "demo")
    assert objects[("Pod", "storefront", "web-1")] == {"phase": "Failed"}
    assert objects[("Pod", "storefront", "web-2")] == {"phase": "Running"}
    assert rep.resyncs == 1  # the first snapshot only


def test_malformed_and_oversized_bodies(plane_app, world, client):
    headers = agent_headers(world["demo"])
    url = "/agent/v1/default/demo/status"
    assert client.post(url, content=b"{not json", headers=headers).status_code == 400
    assert client.post(url, content=json.dumps({"stream": "s", "seq": 1}), headers=headers).status_code == 400
    bad_kind = {"stream": "s", "seq": 1, "snapshot": True, "deltas": [{"kind": "Secret", "namespace": "a", "name": "b"}]}
    assert client.post(url, content=json.dumps(bad_kind), headers=headers).status_code == 400
    zipped = {**headers, "Content-Encoding": "gzip"}
    assert client.post(url, content=b"\x1f\x8bnot gzip", headers=zipped).status_code == 400
    bomb = gzip.compress(b" " * (plane_app.config["AGENT_MAX_BODY"] + 10))  # a few KiB that inflate past the bound
    assert client.post(url, content=bomb, headers=zipped).status_code == 413


# --- tokens --------------------------------------------------------------------------------------


def test_a_clusters_token_does_nothing_for_another_cluster(plane_app, world, client):
    beat = Heartbeat("1.0", "1.33")
    assert reporter(client, world["demo"]).heartbeat(beat) == {"commands": 0}
    wrong = reporter(client, world["demo"], name="other")  # demo's token, aimed at cluster other
    with pytest.raises(Unauthorized):
        wrong.heartbeat(beat)
    with pytest.raises(Unauthorized):
        wrong.poll_commands(0)
    observe(wrong, "Pod", "storefront", "x", {"phase": "Running"})
    with pytest.raises(Unauthorized):
        wrong.send_pending()
    for path in ("heartbeat", "status", "commands/1/result"):
        assert client.post(f"/agent/v1/default/other/{path}", content=b"{}").status_code == 401
    assert client.post("/agent/v1/nobody/demo/heartbeat", content=b"{}",
                       headers={"Authorization": f"Bearer {world['demo']['agent_token']}"}).status_code == 401
    assert objects_of(plane_app, "other") == {}


def test_rotated_token_works_within_grace_only(plane_app, world, client):
    old = world["demo"]["agent_token"]
    response = world["admin"].post(f"{API}/clusters/demo/tokens/agent")
    assert response.status_code == 201
    new = response.get_json()["token"]
    beat = Heartbeat("1.0", "1.33")
    assert reporter(client, world["demo"], token=new).heartbeat(beat) == {"commands": 0}
    assert reporter(client, world["demo"], token=old).heartbeat(beat) == {"commands": 0}
    with plane_app.extensions["shipyard"].sessions.begin() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == "demo"))
        cluster.agent_token_rotated_at -= dt.timedelta(seconds=plane_app.config["AGENT_TOKEN_GRACE"] + 1)
    with pytest.raises(Unauthorized):
        reporter(client, world["demo"], token=old).heartbeat(beat)
    assert reporter(client, world["demo"], token=new).heartbeat(beat) == {"commands": 0}


# --- status → versions --------------------------------------------------------------------------------


def argocd_application(workspace: str, app: str, sync: str, revision: str | None, health: str,
                       message: str | None = None, operation: str = "Succeeded",
                       operation_revision: str | None = None) -> dict:
    """An ArgoCD Application as the API server sends it, through the agent's own summary
    (``operation_revision``: the revision of the last sync operation, its syncResult's)."""
    from agent.summaries import application

    state = {"phase": operation}
    if operation_revision is not None:
        state.update(operation={"sync": {"revision": operation_revision}}, syncResult={"revision": operation_revision})
    return application({
        "metadata": {"name": application_name(workspace, app), "namespace": "argocd",
                     "labels": {"shipyard.dev/workspace": workspace, "shipyard.dev/app": app}},
        "status": {"sync": {"status": sync, "revision": revision},
                   "health": {"status": health, **({"message": message} if message else {})},
                   "operationState": state},
    })


def deploy(world, image: str) -> dict:
    response = deploy_yaml(world["admin"], service_spec("web", image=image))
    assert response.status_code == 200, response.get_json()
    (version,) = response.get_json()["versions"]
    answer_commit_refreshes(world["app"])
    return version


def report_app(rep: Reporter, **status) -> None:
    observe(rep, "Application", "argocd", application_name("storefront", "web"),
            argocd_application("storefront", "web", **status))
    rep.send_pending()


def app_status(world, **query) -> dict:
    response = world["admin"].get(f"{API}/apps/demo/storefront/web/status", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def by_number(status: dict) -> dict[int, dict]:
    return {v["number"]: v for v in status["versions"]}


def test_versions_follow_the_synced_revision(plane_app, world, client):
    rep = reporter(client, world["demo"])
    rep.heartbeat(Heartbeat("1.0", "1.33", simulated=True))
    first = deploy(world, "ghcr.io/acme/web:1")
    before = app_status(world)
    assert before["known"] is False and by_number(before)[1]["status"] == "committed"

    report_app(rep, sync="Synced", revision=first["commit"], health="Progressing")
    status = app_status(world)
    assert (status["live_version"], by_number(status)[1]["status"]) == (1, "synced")
    report_app(rep, sync="Synced", revision=first["commit"], health="Healthy")
    status = app_status(world)
    assert by_number(status)[1]["status"] == "healthy" and status["stale"] is False

    second = deploy(world, "ghcr.io/acme/web:2")
    assert by_number(app_status(world))[2]["status"] == "committed"  # ArgoCD has not seen it yet
    report_app(rep, sync="OutOfSync", revision=second["commit"], health="Healthy", operation="Running")
    status = by_number(app_status(world))
    assert (status[1]["status"], status[2]["status"]) == ("healthy", "syncing")
    report_app(rep, sync="Synced", revision=second["commit"], health="Healthy")
    status = app_status(world)
    versions = by_number(status)
    assert status["live_version"] == 2
    assert (versions[1]["status"], versions[2]["status"]) == ("replaced", "healthy")
    # the versions list carries the same status
    listed = world["admin"].get(f"{API}/apps/demo/storefront/web/versions").get_json()["versions"]
    assert {v["number"]: v["status"] for v in listed} == {1: "replaced", 2: "healthy"}

    # The same spec again makes no version: the answer is version 2, live already.
    same = deploy(world, "ghcr.io/acme/web:2")
    assert (same["number"], same["unchanged"], same["commit"]) == (2, True, second["commit"])
    assert by_number(app_status(world))[2]["status"] == "healthy"

    # A commit for another app moves the revision on; version 2 is still the live one.
    response = deploy_yaml(world["admin"], service_spec("api", image="ghcr.io/acme/api:1"))
    other_commit = response.get_json()["versions"][0]["commit"]
    report_app(rep, sync="Synced", revision=other_commit, health="Healthy")
    assert app_status(world)["live_version"] == 2

    # A sync that fails names ArgoCD's message on the version it could not apply.
    third = deploy(world, "ghcr.io/acme/web:3")
    report_app(rep, sync="OutOfSync", revision=third["commit"], health="Healthy", operation="Failed",
               message="one or more objects failed to apply")
    versions = by_number(app_status(world))
    assert versions[3]["status"] == "failed" and "failed to apply" in versions[3]["message"]
    assert versions[2]["status"] == "healthy" and versions[2]["message"] is None  # not version 3's failure


def test_a_versions_trace_times_each_step_from_accepted_to_healthy(plane_app, world, client):
    rep = reporter(client, world["demo"])
    rep.heartbeat(Heartbeat("1.0", "1.33", simulated=True))
    first = deploy(world, "ghcr.io/acme/web:1")

    def trace(**query) -> dict:
        response = world["admin"].get(f"{API}/apps/demo/storefront/web/trace", query_string=query)
        assert response.status_code == 200, response.get_json()
        return {step["step"]: step for step in response.get_json()["steps"]}

    steps = trace()
    assert steps["spec commit"]["at"] is None  # deployed through the API, not from a spec repository
    assert steps["committed"]["commit"] == first["commit"] and steps["committed"]["after_seconds"] >= 0
    assert steps["synced"]["at"] is None and steps["healthy"]["at"] is None  # where it stands: not synced yet
    report_app(rep, sync="OutOfSync", revision=first["commit"], health="Missing")
    report_app(rep, sync="Synced", revision=first["commit"], health="Progressing")
    report_app(rep, sync="Synced", revision=first["commit"], health="Healthy")
    steps = trace(version=1)
    assert steps["synced"]["revision"] == first["commit"] and steps["healthy"]["revision"] == first["commit"]
    assert steps["synced"]["at"] <= steps["healthy"]["at"] and steps["healthy"]["after_seconds"] >= 0
    assert world["admin"].get(f"{API}/apps/demo/storefront/web/trace", query_string={"version": 9}).status_code == 404


def test_a_failed_sync_is_not_the_next_versions_while_argocd_keeps_its_state(plane_app, world, client):
    """ArgoCD keeps the last operation's state (Failed) after it compares a newer revision, until its
    next sync starts: the failure belongs to the revision that operation synced, not to the newer one."""
    rep = reporter(client, world["demo"])
    rep.heartbeat(Heartbeat("1.0", "1.33", simulated=True))
    first = deploy(world, "ghcr.io/acme/web:1")
    report_app(rep, sync="Synced", revision=first["commit"], health="Healthy", operation_revision=first["commit"])
    second = deploy(world, "ghcr.io/acme/web:2")
    report_app(rep, sync="OutOfSync", revision=second["commit"], health="Healthy", operation="Failed",
               operation_revision=second["commit"], message="one or more objects failed to apply")
    assert by_number(app_status(world))[2]["status"] == "failed"
    third = deploy(world, "ghcr.io/acme/web:3")
    report_app(rep, sync="OutOfSync", revision=third["commit"], health="Healthy", operation="Failed",
               operation_revision=second["commit"], message="one or more objects failed to apply")
    versions = by_number(app_status(world))
    assert (versions[2]["status"], versions[3]["status"]) == ("failed", "syncing")
    # the next operation, on the third version, fails: now the failure is the third's
    report_app(rep, sync="OutOfSync", revision=third["commit"], health="Healthy", operation="Failed",
               operation_revision=third["commit"], message="one or more objects failed to apply")
    assert by_number(app_status(world))[3]["status"] == "failed"


def test_the_status_of_several_apps_in_one_answer(plane_app, world, client):
    """POST /apps/status answers for each app what its own GET .../status answers, in the order asked."""
    rep = reporter(client, world["demo"])
    rep.heartbeat(Heartbeat("1.0", "1.33", simulated=True))
    web = deploy(world, "ghcr.io/acme/web:1")
    deploy_yaml(world["admin"], service_spec("api", image="ghcr.io/acme/api:1"))
    observe(rep, "Pod", "storefront", "web-1", {"app": "web", "phase": "Running", "ready": False, "restarts": 2,
                                               "reasons": ["CrashLoopBackOff"]})
    observe(rep, "Pod", "storefront", "api-1", {"app": "api", "phase": "Running", "ready": True, "restarts": 0,
                                               "reasons": []})
    report_app(rep, sync="Synced", revision=web["commit"], health="Healthy")
    admin, names = world["admin"], ["demo:storefront/api", "demo:storefront/web"]
    answer = admin.post(f"{API}/apps/status", json={"apps": names, "versions": 3})
    assert answer.status_code == 200, answer.get_json()
    each = [admin.get(f"{API}/apps/demo/storefront/{name}/status", query_string={"versions": 3}).get_json()
            for name in ("api", "web")]
    assert answer.get_json()["apps"] == each
    assert [(a["app"], a["kind"], a["health"], [p["name"] for p in a["pods"]]) for a in each] == [
        ("demo:storefront/api", "service", None, ["api-1"]), ("demo:storefront/web", "service", "Healthy", ["web-1"])]

    for body, status_code in (({"apps": []}, 400), ({"apps": ["demo:storefront/web"] * 101}, 400),
                              ({"apps": ["storefront/web"]}, 400), ({"apps": "demo:storefront/web"}, 400),
                              ({"apps": [7]}, 400), ({"apps": names, "versions": 0}, 400),
                              ({"apps": ["demo:storefront/nope", *names]}, 404)):
        assert admin.post(f"{API}/apps/status", json=body).status_code == status_code, body


def test_degraded_names_the_pods_reasons(plane_app, world, client):
    rep = reporter(client, world["demo"])
    version = deploy(world, "ghcr.io/acme/web:1")
    observe(rep, "Pod", "storefront", "web-7d9f-abcde", {"app": "web", "phase": "Running", "ready": False,
                                                         "restarts": 6, "reasons": ["CrashLoopBackOff"],
                                                         "message": "back-off 5m0s restarting failed container"})
    observe(rep, "Pod", "storefront", "web-7d9f-fghij", {"app": "web", "phase": "Running", "ready": True,
                                                         "restarts": 0, "reasons": []})
    observe(rep, "Pod", "storefront", "api-1", {"app": "api", "phase": "Pending", "reasons": ["ImagePullBackOff"]})
    report_app(rep, sync="Synced", revision=version["commit"], health="Degraded",
               message="Deployment web exceeded its progress deadline")
    status = app_status(world)
    live = by_number(status)[1]
    assert live["status"] == "degraded"
    assert live["reasons"] == ["CrashLoopBackOff"] and status["reasons"] == ["CrashLoopBackOff"]
    assert "progress deadline" in live["message"] and "CrashLoopBackOff (pod web-7d9f-abcde" in live["message"]
    assert [p["name"] for p in status["pods"]] == ["web-7d9f-abcde", "web-7d9f-fghij"]  # troubled first, only web's
    version_json = world["admin"].get(f"{API}/apps/demo/storefront/web/versions/1").get_json()
    assert version_json["status"] == "degraded"


def test_crashing_pods_fail_the_version_before_argocd_gives_up(plane_app, world, client):
    """ArgoCD says Progressing until the progress deadline (10 minutes by default); a pod in
    CrashLoopBackOff fails the version now, and a merely starting pod does not."""
    rep = reporter(client, world["demo"])
    version = deploy(world, "ghcr.io/acme/web:1")
    observe(rep, "Pod", "storefront", "web-7d9f-abcde", {"app": "web", "phase": "Pending", "ready": False,
                                                         "reasons": ["ContainerCreating"]})
    report_app(rep, sync="Synced", revision=version["commit"], health="Progressing")
    assert by_number(app_status(world))[1]["status"] == "synced"
    observe(rep, "Pod", "storefront", "web-7d9f-abcde", {"app": "web", "phase": "Running", "ready": False,
                                                         "restarts": 2, "reasons": ["CrashLoopBackOff"],
                                                         "message": "back-off 20s restarting failed container"})
    report_app(rep, sync="Synced", revision=version["commit"], health="Progressing",
               message="Waiting for rollout to finish")
    live = by_number(app_status(world))[1]
    assert live["status"] == "degraded" and "CrashLoopBackOff (pod web-7d9f-abcde" in live["message"]


def test_history_records_changes_only(plane_app, world, client):
    rep = reporter(client, world["demo"])
    version = deploy(world, "ghcr.io/acme/web:1")
    for health in ("Progressing", "Progressing", "Healthy", "Healthy", "Degraded"):
        report_app(rep, sync="Synced", revision=version["commit"], health=health)
    # an unchanged object is not even sent again (the tracker); a resend of the same state adds nothing either
    rep.resync()
    events = world["admin"].get(f"{API}/apps/demo/storefront/web/status/history").get_json()["events"]
    assert [e["health"] for e in events] == ["Degraded", "Healthy", "Progressing"]
    assert all(e["revision"] == version["commit"] for e in events)


def test_history_is_bounded_per_app(plane_app, world, client):
    rep = reporter(client, world["demo"])
    deploy(world, "ghcr.io/acme/web:1")
    limit = plane_app.config["STATUS_HISTORY"]
    for i in range(limit + 60):
        report_app(rep, sync="Synced", revision=None, health="Progressing", message=f"step {i}")
    with plane_app.extensions["shipyard"].sessions() as session:
        kept = session.scalar(select(func.count()).select_from(StatusEvent))
    assert limit <= kept <= limit + 51
    newest = world["admin"].get(f"{API}/apps/demo/storefront/web/status/history?limit=1").get_json()["events"]
    assert newest[0]["message"] == f"step {limit + 59}"


def test_connectivity_online_stale_offline(plane_app, world, client):
    rep = reporter(client, world["demo"])
    version = deploy(world, "ghcr.io/acme/web:1")
    cluster = world["admin"].get(f"{API}/clusters/demo/status").get_json()
    assert cluster["connectivity"] == "offline" and cluster["agent"] is None
    rep.heartbeat(Heartbeat("1.2.3", "1.33", addons=["argo_rollouts"], simulated=True))
    report_app(rep, sync="Synced", revision=version["commit"], health="Healthy")
    cluster = world["admin"].get(f"{API}/clusters/demo/status").get_json()
    assert cluster["connectivity"] == "online" and cluster["simulated"] is True
    assert cluster["agent"]["agent_version"] == "1.2.3" and cluster["objects"] == {"Application": 1}
    assert cluster["apps"]["health"] == {"Healthy": 1}

    def heard_ago(seconds: float) -> None:
        with plane_app.extensions["shipyard"].sessions.begin() as session:
            session.execute(update(Cluster).where(Cluster.name == "demo").values(
                last_seen_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)))

    heard_ago(plane_app.config["AGENT_ONLINE_WITHIN"] + 30)
    status = app_status(world)
    # stale: the last known status is still shown, flagged as stale rather than as wrong
    assert (status["connectivity"], status["stale"], by_number(status)[1]["status"]) == ("stale", True, "healthy")
    heard_ago(plane_app.config["AGENT_STALE_WITHIN"] + 30)
    assert app_status(world)["connectivity"] == "offline"
    rep.heartbeat(Heartbeat("1.2.3", "1.33"))
    assert app_status(world)["connectivity"] == "online"


# --- commands and job runs -------------------------------------------------------------------------


def test_commands_go_out_once_and_come_back_with_results(plane_app, world, client, served):
    rep = reporter(client, world["demo"])
    deploy(world, "ghcr.io/acme/web:1")
    admin = world["admin"]
    assert rep.poll_commands(0) == []

    response = admin.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "refresh", "params": {"hard": True}})
    assert response.status_code == 201, response.get_json()
    queued = response.get_json()
    assert (queued["state"], queued["kind"], queued["namespace"], queued["name"]) == (
        "queued", "Application", "argocd", "storefront.web")
    assert rep.heartbeat(Heartbeat("1.0", "1.33")) == {"commands": 1}

    # two agents' long-polls at once (as from two replicas' view): exactly one gets the command
    got: list[list] = []
    start = threading.Barrier(2)

    def poll():
        with httpx.Client(base_url=served, timeout=60) as own:
            start.wait()
            got.append(reporter(own, world["demo"]).poll_commands(2))

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delivered = [c for batch in got for c in batch]
    assert [c.id for c in delivered] == [queued["id"]] and delivered[0].params == {"hard": True}
    assert rep.poll_commands(0) == []
    assert admin.get(f"{API}/commands/{queued['id']}").get_json()["state"] == "sent"

    rep.send_result(queued["id"], CommandResult(True, {"refreshed": True}))
    rep.send_result(queued["id"], CommandResult(False, error="late duplicate"))  # changes nothing
    done = admin.get(f"{API}/commands/{queued['id']}").get_json()
    assert (done["state"], done["result"], done["error"]) == ("done", {"refreshed": True}, None)

    # a long-poll that is already waiting gets a command queued meanwhile
    waiting: list = []
    poller = threading.Thread(target=lambda: waiting.extend(reporter(httpx.Client(base_url=served, timeout=60),
                                                                      world["demo"]).poll_commands(20)))
    poller.start()
    response = admin.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "restart"})
    poller.join()
    assert [(c.type, c.kind, c.name) for c in waiting] == [("restart", "Deployment", "web")]

    # logs: a viewer may ask; the pod must be one of the app's
    viewer = make_user(plane_app, "viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    assert viewer.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "restart"}).status_code == 403
    assert viewer.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "logs"}).status_code == 409
    observe(rep, "Pod", "storefront", "web-1", {"app": "web", "phase": "Running", "reasons": []})
    rep.send_pending()
    logs = viewer.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "logs", "params": {"tail_lines": 50}})
    assert logs.status_code == 201 and logs.get_json()["name"] == "web-1"
    assert logs.get_json()["params"]["tail_lines"] == 50
    # the bounds are the wire protocol's, which the agent enforces too
    assert logs.get_json()["params"]["limit_bytes"] == protocol.MAX_LOG_BYTES
    for too_much in ({"tail_lines": protocol.MAX_LOG_LINES + 1}, {"limit_bytes": protocol.MAX_LOG_BYTES + 1}):
        assert viewer.post(f"{API}/apps/demo/storefront/web/commands",
                           json={"type": "logs", "params": too_much}).status_code == 400
    assert viewer.post(f"{API}/apps/demo/storefront/web/commands",
                       json={"type": "logs", "params": {"pod": "someone-else"}}).status_code == 404
    # the previous container, from a time on, with timestamps: what following a log needs
    follow = viewer.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "logs", "params": {
        "previous": True, "timestamps": True, "since_time": "2026-05-01T12:00:00+02:00"}})
    assert follow.status_code == 201
    assert follow.get_json()["params"]["since_time"] == "2026-05-01T10:00:00.000000Z"
    for bad in ({"previous": "yes"}, {"timestamps": 1}, {"since_time": "2026-05-01T12:00:00"},
                {"since_time": "yesterday"}, {"since_time": 5}):
        refused = viewer.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "logs", "params": bad})
        assert refused.status_code == 400, bad
    assert admin.post(f"{API}/apps/demo/storefront/web/commands", json={"type": "run-job"}).status_code == 400
    # another cluster's agent cannot answer this cluster's command
    other = reporter(client, world["other"], name="other")
    with pytest.raises(httpx.HTTPStatusError) as refused:
        other.send_result(logs.get_json()["id"], CommandResult(True))
    assert refused.value.response.status_code == 404


def test_a_command_queued_by_another_process_reaches_a_waiting_poll(plane_app, world, client):
    """No bell rings here for a command another process queued: the process's watch finds it."""
    rep = reporter(client, world["demo"])
    got: dict = {}

    def wait_for_commands():
        started = time.monotonic()
        got["commands"], got["seconds"] = rep.poll_commands(20), None
        got["seconds"] = time.monotonic() - started

    waiting = threading.Thread(target=wait_for_commands)
    waiting.start()
    time.sleep(0.5)
    with plane_app.extensions["shipyard"].sessions.begin() as session:  # as another server process would
        cluster_id = session.scalar(select(Cluster.id).where(Cluster.name == "demo"))
        session.add(Command(cluster_id=cluster_id, type="refresh", kind="Application", namespace="argocd",
                            name="storefront.web", params={}, created_by="elsewhere"))
    waiting.join(timeout=30)
    assert [c.name for c in got["commands"]] == ["storefront.web"]
    assert got["seconds"] < 5  # the watch looks once a second; the poll asked to wait 20


def test_past_the_long_poll_budget_a_poll_is_answered_at_once_with_when_to_come_again(plane_app, world, served):
    plane_app.config.update(AGENT_LONG_POLLS=1, AGENT_POLL_PAUSE=4)
    deploy(world, "ghcr.io/acme/web:1")
    holder: dict = {}

    def hold():
        with httpx.Client(base_url=served, timeout=60) as own:
            started = time.monotonic()
            holder["commands"] = reporter(own, world["demo"]).poll_commands(3)
            holder["seconds"] = time.monotonic() - started

    waiting = threading.Thread(target=hold)
    waiting.start()
    time.sleep(0.5)  # the first poll holds the one long-poll this process may hold
    with httpx.Client(base_url=served, timeout=60) as own:
        rep = reporter(own, world["demo"])
        started = time.monotonic()
        assert rep.poll_commands(3) == []
        assert time.monotonic() - started < 2 and 2 <= rep.poll_again_in <= 4
        waiting.join()
        assert holder["commands"] == [] and holder["seconds"] >= 2.5  # it did wait
        # the budget is back: a poll waits again, and a command queued meanwhile comes at once
        queued = world["admin"].post(f"{API}/apps/demo/storefront/web/commands", json={"type": "refresh"})
        assert queued.status_code == 201
        (command,) = rep.poll_commands(3)
        assert command.id == queued.get_json()["id"] and rep.poll_again_in == 0


def test_command_lease_expiry_resends_then_expires(plane_app, world, client):
    rep = reporter(client, world["demo"])
    deploy(world, "ghcr.io/acme/web:1")
    command = world["admin"].post(f"{API}/apps/demo/storefront/web/commands", json={"type": "refresh"}).get_json()
    attempts = 0
    for _ in range(5):
        commands = rep.poll_commands(0)
        if not commands:
            break
        attempts += 1
        with plane_app.extensions["shipyard"].sessions.begin() as session:  # the agent died holding it
            session.execute(update(Command).values(claimed_until=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    assert attempts == 3
    assert world["admin"].get(f"{API}/commands/{command['id']}").get_json()["state"] == "expired"


JOB = """type: job
name: backfill
workspace_fqn: demo:storefront
image: {type: image, image_uri: 'ghcr.io/acme/etl:1', command: 'etl --since {{since}}'}
trigger: {type: manual}
params:
  - name: since
"""


def test_job_runs_trigger_and_follow_the_workflow(plane_app, world, client):
    rep = reporter(client, world["demo"])
    admin = world["admin"]
    assert deploy_yaml(admin, JOB).status_code == 200
    response = admin.post(f"{API}/apps/demo/storefront/backfill/runs", json={"params": {"since": "2026-01-01"}})
    assert response.status_code == 201, response.get_json()
    run = response.get_json()
    assert run["state"] == "queued" and run["params"] == {"since": "2026-01-01"}
    assert admin.post(f"{API}/apps/demo/storefront/backfill/runs", json={"params": {"nope": 1}}).status_code == 400
    # "since" has no default: a run without it is refused, nothing queued
    refused = admin.post(f"{API}/apps/demo/storefront/backfill/runs", json={"params": {}})
    assert refused.status_code == 400 and "since" in refused.get_json()["error"]["message"]
    deploy(world, "ghcr.io/acme/web:1")
    assert admin.post(f"{API}/apps/demo/storefront/web/runs", json={}).status_code == 400  # a service

    (command,) = rep.poll_commands(0)
    assert (command.type, command.kind, command.namespace, command.name) == (
        "run-job", "WorkflowTemplate", "storefront", "backfill")
    assert command.params == {"parameters": {"since": "2026-01-01"}}
    runs = admin.get(f"{API}/apps/demo/storefront/backfill/runs").get_json()["runs"]
    assert runs[0]["state"] == "sent"
    rep.send_result(command.id, CommandResult(True, {"workflow": "backfill-x7k2p"}))
    runs = admin.get(f"{API}/apps/demo/storefront/backfill/runs").get_json()["runs"]
    assert (runs[0]["state"], runs[0]["workflow"]) == ("running", "backfill-x7k2p")

    observe(rep, "Workflow", "storefront", "backfill-x7k2p", {"app": "backfill", "template": "backfill",
                                                              "phase": "Failed", "message": "exit code 3"})
    rep.send_pending()
    (run,) = admin.get(f"{API}/apps/demo/storefront/backfill/runs").get_json()["runs"]
    assert (run["state"], run["message"]) == ("failed", "exit code 3") and run["finished_at"]


def test_an_application_missing_from_a_snapshot_is_missing(plane_app, world, client):
    rep = reporter(client, world["demo"])
    version = deploy(world, "ghcr.io/acme/web:1")
    report_app(rep, sync="Synced", revision=version["commit"], health="Healthy")
    rep.tracker.observe("Application", "argocd", "storefront.web", None)  # gone while the stream was broken
    rep.resync()
    status = app_status(world)
    assert (status["health"], status["sync"]) == ("Missing", "Unknown")
    assert "gone" in status["message"]


def job_object(name: str, cronjob: str, **status) -> dict:
    """A Job as the API server has it after ``kubectl create job --from=cronjob/...``."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "batch", "labels": {labels.APP_LABEL: "nightly"},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob}]},
            "status": status}


def test_cronjob_runs_follow_their_job_even_when_it_is_reported_first(plane_app, world, client):
    admin = world["admin"]
    plain = add_cluster(admin, "plain", profile=PROFILE.replace("  argo_workflows: true\n", ""))
    add_workspace(admin, "plain", "batch")
    rep = reporter(client, plain, name="plain")
    spec = JOB.replace("demo:storefront", "plain:batch").replace("backfill", "nightly").replace(
        "--since {{since}}", "--all").split("params:")[0]
    assert deploy_yaml(admin, spec).status_code == 200
    answer_commit_refreshes(plane_app, "plain")
    runs_url = f"{API}/apps/plain/batch/nightly/runs"
    for expected in ("succeeded", "failed"):
        assert admin.post(runs_url, json={}).status_code == 201
        (command,) = rep.poll_commands(0)
        assert (command.type, command.kind, command.namespace) == ("run-job", "CronJob", "batch")
        job = f"{command.name}-manual-{command.id}"
        # the agent's watch sees the Job start before the command's result is sent
        observe(rep, "Job", "batch", job, summaries.job(job_object(job, command.name, active=1,
                                                                    startTime="2026-11-29T10:00:00Z")))
        rep.send_pending()
        rep.send_result(command.id, CommandResult(True, {"kind": "Job", "name": job, "run": "r"}))
        run = admin.get(runs_url).get_json()["runs"][0]
        assert (run["state"], run["workflow"]) == ("running", job)
        ended = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-29T10:01:00Z"} \
            if expected == "succeeded" else {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                             "message": "Job has reached the specified backoff limit"}
        observe(rep, "Job", "batch", job, summaries.job(job_object(job, command.name, conditions=[ended],
                                                                    startTime="2026-11-29T10:00:00Z")))
        rep.send_pending()
        run = admin.get(runs_url).get_json()["runs"][0]
        assert run["state"] == expected and run["finished_at"]
        if expected == "failed":
            assert run["message"] == "BackoffLimitExceeded: Job has reached the specified backoff limit"

    # a Job that ended before its command's result came back ends the run at once
    assert admin.post(runs_url, json={}).status_code == 201
    (command,) = rep.poll_commands(0)
    job = f"{command.name}-manual-{command.id}"
    observe(rep, "Job", "batch", job, summaries.job(job_object(
        job, command.name, succeeded=1, completionTime="2026-11-29T10:05:00Z",
        conditions=[{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}])))
    rep.send_pending()
    rep.send_result(command.id, CommandResult(True, {"kind": "Job", "name": job}))
    run = admin.get(runs_url).get_json()["runs"][0]
    assert (run["state"], run["workflow"]) == ("succeeded", job) and run["finished_at"]


def test_job_summaries_read_like_workflow_phases():
    assert summaries.job(job_object("j", "c"))["phase"] == "Pending"
    running = summaries.job(job_object("j", "c", active=2, startTime="t0"))
    assert (running["phase"], running["cronjob"], running["app"], running["finished"]) == ("Running", "c", "nightly", None)
    failing = summaries.job(job_object("j", "c", active=1, conditions=[
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": "t9"}]))
    assert (failing["phase"], failing["message"], failing["finished"]) == ("Failed", "DeadlineExceeded", "t9")
    not_yet = summaries.job(job_object("j", "c", active=1, conditions=[{"type": "Complete", "status": "False"}]))
    assert not_yet["phase"] == "Running"
