"""The agent endpoints ``/agent/v1/<tenant>/<cluster>/...`` (contract.protocol), thin over gitops.agents,
gitops.ingest and gitops.commands.

Every call carries ``Authorization: Bearer <agent token>`` of the cluster in
its URL: a token of cluster A gets 401 for cluster B, exactly as a wrong one
does. Bodies may be gzip-compressed; the decompressed size is bounded
(AGENT_MAX_BODY, 413 beyond it). The command long-poll holds no database
connection while it waits: it sleeps on a per-cluster condition that the
API rings when it queues a command in this process, and looks at the
database about once a second for commands queued by other processes.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import zlib
from typing import Any

from flask import Blueprint, Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from contract.protocol import CommandResult, Heartbeat, check_addon_versions, check_watch_faults, decode_batch
from gitops import agents, ingest, status
from gitops.commands import claim_commands, record_result
from gitops.models import Cluster
from contract.errors import InvalidRequest
from webapp.auth import Unauthorized, csrf, public
from webapp.request_text import loads_storable
from webapp.plane import db_session, plane

log = logging.getLogger(__name__)
bp = Blueprint("agent", __name__, url_prefix="/agent/v1/<tenant>/<cluster>")

AGENT_AUTHZ = "authorized by the cluster's agent token, not a principal"
MAX_WAIT = 30


def _settings() -> status.StatusSettings:
    return status.StatusSettings.from_config(current_app.config)


def _agent_cluster(tenant: str, cluster: str) -> Cluster:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use Authorization: Bearer <agent token of the cluster>")
    row = agents.agent_cluster(db_session(), tenant, cluster, token.strip(), _settings())
    if row is None:
        raise Unauthorized("the agent token is not valid for this cluster")
    return row


def _body() -> Any:
    """The JSON body, gunzipped when sent so, within AGENT_MAX_BODY either way."""
    limit = int(current_app.config["AGENT_MAX_BODY"])
    request.max_content_length = limit
    raw = request.get_data(cache=False)
    if request.headers.get("Content-Encoding", "identity").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise InvalidRequest(f"the body is not valid gzip: {exc}") from exc
        if len(raw) > limit:
            raise RequestEntityTooLarge(f"the decompressed body is over {limit} bytes")
        if not inflater.eof:
            raise InvalidRequest("the gzip body is truncated")
    return loads_storable(raw)  # NUL and lone surrogates refused: no database text holds them



# --- the agent's messages, checked at the boundary (gitops does not import agent) ---


def parse_heartbeat(data: Any) -> Heartbeat:
    """A Heartbeat from parsed JSON; InvalidRequest when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("agent_version"), str):
        raise InvalidRequest("a heartbeat needs agent_version")
    known = {f.name: f for f in dataclasses.fields(Heartbeat)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("addons", "crds", "namespaces"):
        value = values.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidRequest(f"heartbeat {name} must be a list of strings")
    for name in ("objects", "pending"):
        if not isinstance(values.get(name, 0), int) or isinstance(values.get(name, 0), bool):
            raise InvalidRequest(f"heartbeat {name} must be a whole number")
    values.setdefault("kubernetes_version", None)  # unknown, as an agent that could not read /version says
    if values["kubernetes_version"] is not None and not isinstance(values["kubernetes_version"], str):
        raise InvalidRequest("heartbeat kubernetes_version must be a string")
    values["simulated"] = bool(values.get("simulated", False))
    try:
        values["addon_versions"] = check_addon_versions(values.get("addon_versions", {}))
        values["watch_faults"] = check_watch_faults(values.get("watch_faults", []))  # none from older agents
    except ValueError as exc:
        raise InvalidRequest(f"heartbeat {exc}") from exc
    return Heartbeat(**values)




def parse_result(data: Any) -> CommandResult:
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise InvalidRequest("a command result needs ok (true or false)")
    result, error = data.get("result") or {}, data.get("error")
    if not isinstance(result, dict) or (error is not None and not isinstance(error, str)):
        raise InvalidRequest("result must be an object and error a string")
    return CommandResult(data["ok"], result, error)


@bp.post("/heartbeat")
@public(AGENT_AUTHZ)
def heartbeat(tenant: str, cluster: str):
    row = _agent_cluster(tenant, cluster)
    beat = parse_heartbeat(_body())
    session = db_session()
    answer = agents.heartbeat(session, row, beat, _settings())
    session.commit()
    return answer


@bp.post("/status")
@public(AGENT_AUTHZ)
def post_status(tenant: str, cluster: str):
    row = _agent_cluster(tenant, cluster)
    data = _body()
    if not isinstance(data, dict):
        raise InvalidRequest("a status batch is a JSON object")
    try:
        batch = decode_batch(data)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    session, settings, repo = db_session(), _settings(), plane().repos.open(row)
    deadline = time.monotonic() + settings.gap_wait
    pause = 0.002
    while (result := ingest.ingest(session, row, batch, repo=repo, settings=settings)).outcome == "ahead" \
            and time.monotonic() < deadline:
        session.rollback()  # lets the batch before this one in
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    session.commit()
    if result.outcome in ("resync", "ahead"):
        return {"resync": True}, 409
    return {"acked": result.acked, "duplicate": result.outcome == "duplicate"}


@bp.get("/commands")
@public(AGENT_AUTHZ)
def poll_commands(tenant: str, cluster: str):
    raw_wait = request.args.get("wait", "0")
    if not raw_wait.isdigit():
        raise InvalidRequest("wait must be a whole number of seconds")
    wait = min(int(raw_wait), MAX_WAIT)
    cluster_id = _agent_cluster(tenant, cluster).id
    db_session().close()  # nothing is held while waiting
    control, settings = plane(), _settings()
    # Each waiting poll holds one of the server's threads: past AGENT_LONG_POLLS of them in this
    # process, a poll is answered at once and told when to come again, so deploys and status
    # never queue behind agents that wait.
    held = control.long_polls.acquire(blocking=False) if wait else True
    try:
        answer = _poll(control, settings, cluster_id, wait if held else 0)
    finally:
        if held and wait:
            control.long_polls.release()
    if not held:
        answer["poll_again_in"] = round(random.uniform(0.5, 1.0) * float(current_app.config["AGENT_POLL_PAUSE"]), 1)
    return answer


def _poll(control, settings: status.StatusSettings, cluster_id: int, wait: int) -> dict:
    """Claim the cluster's commands; when there are none, wait for its bell (up to ``wait`` s), then again."""
    deadline = time.monotonic() + wait
    condition = control.bell.condition(cluster_id)
    first = True
    with control.command_watch.waiting(cluster_id):
        while True:
            with control.sessions.begin() as session:
                if first:
                    agents.seen(session, session.get(Cluster, cluster_id), settings)
                    first = False
                commands = claim_commands(session, cluster_id, settings)
                out = [{"id": c.id, "type": c.type, "kind": c.kind, "namespace": c.namespace, "name": c.name,
                        "params": c.params} for c in commands]
            if out:
                return {"commands": out}
            remaining = deadline - time.monotonic()
            if remaining <= 0 or control.bell.closing.is_set():
                return {"commands": []}
            with condition:
                condition.wait(remaining)


@bp.post("/commands/<int:command_id>/result")
@public(AGENT_AUTHZ)
def command_result(tenant: str, cluster: str, command_id: int):
    row = _agent_cluster(tenant, cluster)
    result = parse_result(_body())
    session = db_session()
    agents.seen(session, row, _settings())
    command = record_result(session, row, command_id, result)
    session.commit()
    return {"id": command.id, "state": command.state}


def init_app(app: Flask) -> None:
    csrf.exempt(bp)  # agents send no CSRF token; every route is authorized by the agent token
    app.register_blueprint(bp)


__all__ = ["bp", "init_app", "AGENT_AUTHZ"]
