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

import httpx
import pytest
from sqlalchemy import func, select, update
from werkzeug.serving import make_server

from agent.protocol import CommandResult, Delta, Heartbeat, StatusBatch, encode
from agent.report import Outbox, Reporter, Tracker, Unauthorized
from gitops.models import Cluster, ClusterObject, Command, StatusEvent
from renderer.render import application_name
from tests.plane import add_cluster, add_workspace, app_config, deploy_yaml, make_user, service_spec
from webapp import create_app

API = "/api/v1"


@pytest.fixture
def plane_app(database_url, tmp_path):
    # a short token grace so rotation can be checked past it by moving rotated_at, not by sleeping
    app = create_app(app_config(tmp_path / "data", database_url, AGENT_TOKEN_GRACE=600))
    yield app
    app.extensions["shipyard"].close()


@pytest.fixture
def served(plane_app):
    server = make_server("127.0.0.1", 0, plane_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=30)


@pytest.fixture
def world(plane_app):
    admin = make_user(plane_app, "admin", "tenant-admin")
    demo = add_cluster(admin, "demo")
    other = add_cluster(admin, "other")
    add_workspace(admin, "demo", "storefront")
    return {"admin": admin, "demo": demo, "other": other}


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
    headers = {"Authorization": f"Bearer {world['demo']['agent_token']}", "Content-Encoding": "gzip",
               "Content-Type": "application/json"}
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
    headers = {"Authorization": f"Bearer {world['demo']['agent_token']}", "Content-Type": "application/json"}
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


def test_malformed_and_oversized_bodies(plane_app, world, client):
    headers = {"Authorization": f"Bearer {world['demo']['agent_token']}", "Content-Type": "application/json"}
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
