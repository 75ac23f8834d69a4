"""The wire protocol between a cluster's agent and the control plane.

The agent opens every connection (the cluster needs no inbound port). All
requests carry ``Authorization: Bearer <agent token>`` of their cluster and go
to ``/agent/v1/<tenant>/<cluster>/...``; bodies are JSON, and the agent
gzip-compresses them (``Content-Encoding: gzip``).

=====================================  ===================================================
request                                meaning
=====================================  ===================================================
POST heartbeat  (Heartbeat)            alive; agent and Kubernetes versions, addons and their
                                       versions, CRDs. Answer: {"commands": <pending count>}
POST status     (StatusBatch)          deltas of followed objects, in sequence.
                                       Answer: {"acked": seq} or 409 {"resync": true}
GET  commands?wait=<s>                 long-poll: {"commands": [Command...]} (maybe empty)
POST commands/<id>/result (CommandResult)  the outcome of one command
=====================================  ===================================================

Status is a stream of batches. A stream starts with a full snapshot
(``snapshot: true`` on every batch of it, ``final: true`` on its last one:
every followed object; whatever the control plane holds for the cluster and
is not in it is gone once the final snapshot batch arrives) and continues
with deltas, each batch numbered ``seq`` = previous + 1 within the stream. The control plane
applies a batch only if it is the next one of the stream it knows; a
duplicate (seq already applied) is acknowledged without applying it again; a
batch that arrives before the one it follows (the agent keeps two in flight)
waits a moment (``STATUS_GAP_WAIT``) for it; a gap that stays, an unknown
stream, or a control plane that lost its state answers 409, and the agent
starts a new stream with a snapshot. A batch whose answer was lost is sent
again as it was, with the same seq and the same deltas, so its duplicate
drops nothing. So after any reconnect or outage nothing is lost and nothing is
counted twice.

A heartbeat's ``addon_versions`` says, per addon installed, what the cluster
tells of its version (contract.addons.addon_versions): ``api_versions``, the
"<group>/<version>" the groups of its CRDs serve, left out when the agent
could not read discovery; ``release``, where its CRDs are labelled with one.
An agent older than the field sends none, and is checked as before.

A heartbeat's ``watch_faults`` lists what the agent cannot follow right now,
one entry per kind and namespace (``""``: cluster-wide) with a ``reason`` of
WATCH_FAULTS and the API server's ``message``: a namespace whose Role does not
let the agent read it yet (its objects are not in the status), a kind whose
CRD is not installed (its objects were reported deleted). An agent older than
the field sends none.

Objects are identified by (kind, namespace, name). A delta carries the
object's compact state (``ObjectState``: only what status needs, never the
whole manifest, never Secret data) and its digest, or ``state: null`` when the
object was deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PROTOCOL_VERSION = 1
API_PREFIX = "/agent/v1"

# Kinds the agent follows, as the control plane knows them.
KINDS = ("Application", "Deployment", "Rollout", "Pod", "Workflow", "Job", "Event")

# Commands the control plane can send, and what each needs in ``params``.
COMMANDS = {
    "refresh": "Application: ask ArgoCD to refresh (and hard-refresh with params.hard) now; after a commit, "
               "params.commit and params.reason COMMIT_REFRESH_REASON (not when ArgoCD compared it already)",
    "restart": "Deployment or Rollout: roll its pods (like kubectl rollout restart)",
    "run-job": "WorkflowTemplate (a Workflow from it, params.parameters) or CronJob (a Job from it)",
    "logs": "Pod: recent log lines of params.container (bounded by params.tail_lines, params.limit_bytes; "
            "params.previous: the container before its last restart; params.since_time: from that RFC 3339 "
            "time; params.timestamps: each line prefixed with its time)",
}
# params.reason of the refresh the control plane queues for each Application a commit touched
# (gitops.refreshes), with params.commit
COMMIT_REFRESH_REASON = "commit"
# Why a heartbeat's watch_faults says a kind in a namespace is not followed.
WATCH_FAULTS = {
    "forbidden": "the API server refused the agent (403): RBAC does not let it list and watch there",
    "unauthorized": "the API server did not accept the agent's credentials (401)",
    "not_served": "the API server does not serve the kind (404): its CRD is not installed",
}
MAX_LOG_BYTES = 256 * 1024
MAX_LOG_LINES = 2000


def digest_of(state: dict[str, Any] | None) -> str | None:
    """A short, stable digest of an object's compact state (None for a deleted object)."""
    if state is None:
        return None
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class ObjectKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass
class Delta:
    """The newest known state of one object (``state`` None: deleted)."""

    kind: str
    namespace: str
    name: str
    state: dict[str, Any] | None
    digest: str | None = None

    def __post_init__(self):
        if self.digest is None:
            self.digest = digest_of(self.state)

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.namespace, self.name)


@dataclass
class StatusBatch:
    stream: str  # random per stream; a new one after every resync
    seq: int  # 1 for the snapshot that starts a stream
    snapshot: bool
    deltas: list[Delta] = field(default_factory=list)
    final: bool = True  # False on every snapshot batch but the last
    sent_at: float = 0.0  # agent clock, seconds since the epoch (for latency figures only)


@dataclass
class Heartbeat:
    agent_version: str
    kubernetes_version: str | None
    addons: list[str] = field(default_factory=list)  # e.g. ["argo_rollouts", "keda", ...]
    crds: list[str] = field(default_factory=list)  # "<plural>.<group>" of installed CRDs
    namespaces: list[str] = field(default_factory=list)  # what the agent may follow (after allow/deny)
    objects: int = 0  # followed objects
    pending: int = 0  # deltas not yet acknowledged
    simulated: bool = False  # True for the simulated compute plane
    # addon -> {"api_versions": ["<group>/<version>", ...], "release": "..."}, each key where known
    addon_versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the agent cannot follow right now: [{"kind", "namespace" ("" cluster-wide), "reason", "message"}]
    watch_faults: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Command:
    id: int
    type: str  # one of COMMANDS
    kind: str
    namespace: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


class MalformedCommand(ValueError):
    """A command the agent cannot read; ``id`` is its id when that much could be read (so it can be answered)."""

    def __init__(self, message: str, id: int | None = None):
        super().__init__(message)
        self.id = id


def decode_command(data: Any) -> tuple[Command, list[str]]:
    """A Command from parsed JSON, and the names of the fields this agent does not know.

    Unknown fields are ignored, not refused: a newer control plane may send more than an older
    agent knows, and must not stop it from carrying out what it does know. A command that lacks
    a field, or has one of the wrong type, raises MalformedCommand.
    """
    if not isinstance(data, dict):
        raise MalformedCommand(f"a command must be an object, not {type(data).__name__}")
    raw_id = data.get("id")
    command_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if command_id is None:
        raise MalformedCommand(f"id must be an integer, not {raw_id!r}")
    for name in ("type", "kind", "namespace", "name"):
        if not isinstance(data.get(name), str):
            raise MalformedCommand(f"{name} must be a string, not {data.get(name)!r}", command_id)
    params = data.get("params")
    if params is not None and not isinstance(params, dict):
        raise MalformedCommand(f"params must be an object, not {type(params).__name__}", command_id)
    unknown = sorted(str(key) for key in data if key not in _COMMAND_FIELDS)
    return Command(command_id, data["type"], data["kind"], data["namespace"], data["name"], params or {}), unknown


_COMMAND_FIELDS = frozenset(f.name for f in fields(Command))


@dataclass
class CommandResult:
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def encode(message: Any) -> bytes:
    """JSON, gzip-compressed: what the agent sends."""
    return gzip.compress(json.dumps(_plain(message), separators=(",", ":")).encode(), compresslevel=5)


def _plain(message: Any) -> dict[str, Any]:
    # A status batch is most of what an agent sends: its states are JSON already, so they go as
    # they are instead of through asdict's deep copy.
    if isinstance(message, StatusBatch):
        return {"stream": message.stream, "seq": message.seq, "snapshot": message.snapshot,
                "deltas": [{"kind": d.kind, "namespace": d.namespace, "name": d.name, "state": d.state,
                            "digest": d.digest} for d in message.deltas],
                "final": message.final, "sent_at": message.sent_at}
    return asdict(message)


def check_addon_versions(value: Any) -> dict[str, dict[str, Any]]:
    """A heartbeat's ``addon_versions`` as sent, or ValueError when it is not one."""
    if not isinstance(value, dict):
        raise ValueError("addon_versions must be an object")
    for addon, entry in value.items():
        if not isinstance(addon, str) or not isinstance(entry, dict) or set(entry) - {"api_versions", "release"}:
            raise ValueError(f"addon_versions of {addon!r} must be an object of api_versions and release")
        served = entry.get("api_versions", [])
        if not isinstance(served, list) or not all(isinstance(item, str) for item in served):
            raise ValueError(f"addon_versions api_versions of {addon!r} must be a list of strings")
        if not isinstance(entry.get("release", ""), str):
            raise ValueError(f"addon_versions release of {addon!r} must be a string")
    return value


def check_watch_faults(value: Any) -> list[dict[str, str]]:
    """A heartbeat's ``watch_faults`` as sent, or ValueError when it is not one."""
    if not isinstance(value, list):
        raise ValueError("watch_faults must be a list")
    for entry in value:
        if (not isinstance(entry, dict) or set(entry) - {"kind", "namespace", "reason", "message"}
                or not all(isinstance(entry.get(key), str) for key in ("kind", "namespace", "reason"))
                or not isinstance(entry.get("message", ""), str)):
            raise ValueError("each of watch_faults must be an object of kind, namespace, reason and message strings")
        if entry["reason"] not in WATCH_FAULTS:
            raise ValueError(f"watch_faults reason must be one of {', '.join(WATCH_FAULTS)}, not {entry['reason']!r}")
    return value


def decode_batch(data: dict[str, Any]) -> StatusBatch:
    """A StatusBatch from parsed JSON; ValueError when it is not one."""
    try:
        deltas = [Delta(d["kind"], d["namespace"], d["name"], d.get("state"), d.get("digest"))
                  for d in data["deltas"]]
        batch = StatusBatch(str(data["stream"]), int(data["seq"]), bool(data["snapshot"]), deltas,
                            bool(data.get("final", True)), float(data.get("sent_at") or 0.0))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a status batch: {exc}") from exc
    for delta in batch.deltas:
        if delta.kind not in KINDS or not isinstance(delta.namespace, str) or not isinstance(delta.name, str):
            raise ValueError(f"bad object in batch: {delta.kind}/{delta.namespace}/{delta.name}")
        if delta.state is not None and not isinstance(delta.state, dict):
            raise ValueError(f"state of {delta.key} must be an object or null")
    if batch.seq < 1 or not batch.stream:
        raise ValueError("a batch needs a stream id and a seq >= 1")
    return batch


__all__ = [
    "PROTOCOL_VERSION",
    "API_PREFIX",
    "KINDS",
    "COMMANDS",
    "COMMIT_REFRESH_REASON",
    "MAX_LOG_BYTES",
    "MAX_LOG_LINES",
    "ObjectKey",
    "Delta",
    "StatusBatch",
    "Heartbeat",
    "Command",
    "MalformedCommand",
    "decode_command",
    "CommandResult",
    "digest_of",
    "encode",
    "decode_batch",
    "check_addon_versions",
    "check_watch_faults",
    "WATCH_FAULTS",
]
