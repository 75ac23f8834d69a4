"""Compact states: what the control plane needs of each followed object, and nothing more.

Each function takes a Kubernetes object as parsed JSON (a dict, as the API
server sends it) and returns a small dict of plain values. Fields that change
without meaning anything to status (resourceVersion, managedFields, probe
timestamps) are left out, so an object's digest only changes when its status
does, and the agent keeps tens of bytes per object instead of the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contract.labels import APP_LABEL, WORKSPACE_LABEL

MAX_MESSAGE = 512


def _get(obj: dict, *path: str, default: Any = None) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(part)
        if obj is None:
            return default
    return obj


def _message(text: Any) -> str | None:
    if not text:
        return None
    text = str(text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _labels(obj: dict) -> dict:
    return _get(obj, "metadata", "labels", default={}) or {}


def application(obj: dict) -> dict:
    status = obj.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    operation = status.get("operationState") or {}
    message = _get(status, "health", "message") or operation.get("message") or (
        conditions[0].get("message") if conditions else None)
    labels = _labels(obj)
    return {
        "workspace": labels.get(WORKSPACE_LABEL),
        "app": labels.get(APP_LABEL),
        "sync": _get(status, "sync", "status", default="Unknown"),
        "revision": _get(status, "sync", "revision"),
        "health": _get(status, "health", "status", default="Unknown"),
        "operation": operation.get("phase"),
        # the revision that operation syncs: a failed operation is about it, not about a newer revision
        # ArgoCD compares against meanwhile
        "operation_revision": _get(operation, "syncResult", "revision") or _get(operation, "operation", "sync",
                                                                                 "revision"),
        "message": _message(message),
        "conditions": sorted({str(c.get("type")) for c in conditions}),
    }


def _workload_conditions(status: dict) -> list[str]:
    return sorted(
        f"{c.get('type')}={c.get('status')}:{c.get('reason')}"
        for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("status") != "True"
    )


def deployment(obj: dict) -> dict:
    status = obj.get("status") or {}
    return {
        "app": _labels(obj).get(APP_LABEL),
        "generation": _get(obj, "metadata", "generation", default=0),
        "observed": status.get("observedGeneration", 0),
        "replicas": _get(obj, "spec", "replicas"),
        "ready": status.get("readyReplicas", 0),
        "updated": status.get("updatedReplicas", 0),
        "available": status.get("availableReplicas", 0),
        "unavailable": status.get("unavailableReplicas", 0),
        "problems": _workload_conditions(status),
    }


def rollout(obj: dict) -> dict:
    status = obj.get("status") or {}
    return {
        **deployment(obj),
        "phase": status.get("phase"),
        "message": _message(status.get("message")),
        "step": status.get("currentStepIndex"),
        "paused": bool(_get(obj, "spec", "paused", default=False)) or bool(status.get("pauseConditions")),
    }


def pod(obj: dict) -> dict:
    status = obj.get("status") or {}
    containers = list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])
    reasons, message = set(), None
    for container in containers:
        for phase in ("waiting", "terminated"):
            detail = _get(container, "state", phase)
            if detail and detail.get("reason") and detail.get("reason") != "Completed":
                reasons.add(detail["reason"])
                message = message or detail.get("message")
        last = _get(container, "lastState", "terminated")
        if last and last.get("reason") == "OOMKilled":
            reasons.add("OOMKilled")
    return {
        "app": _labels(obj).get(APP_LABEL),
        "phase": status.get("phase", "Unknown"),
        "ready": bool(containers) and all(c.get("ready") for c in status.get("containerStatuses") or []),
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
        "reasons": sorted(reasons),
        "message": _message(message or status.get("message")),
        "node": _get(obj, "spec", "nodeName"),
    }


def workflow(obj: dict) -> dict:
    status = obj.get("status") or {}
    return {
        "app": _labels(obj).get(APP_LABEL),
        "template": _get(obj, "spec", "workflowTemplateRef", "name"),
        "phase": status.get("phase") or "Pending",
        "message": _message(status.get("message")),
        "started": status.get("startedAt"),
        "finished": status.get("finishedAt"),
    }


def job(obj: dict) -> dict:
    """A Job's run in Workflow terms (phase Pending, Running, Succeeded or Failed), so runs read alike."""
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    # Kubernetes 1.31+ sets FailureTarget / SuccessCriteriaMet first, Failed / Complete once the pods are gone
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    complete = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
    ended = failed or complete
    phase = ("Failed" if failed else "Succeeded" if complete
             else "Running" if status.get("active") or status.get("startTime") else "Pending")
    message = ": ".join(str(p) for p in (failed.get("reason"), failed.get("message")) if p) if failed else None
    owner = next((o.get("name") for o in _get(obj, "metadata", "ownerReferences", default=[]) or []
                  if o.get("kind") == "CronJob"), None)
    return {
        "app": _labels(obj).get(APP_LABEL),
        "cronjob": owner,
        "phase": phase,
        "message": _message(message),
        "succeeded": int(status.get("succeeded") or 0),
        "failed": int(status.get("failed") or 0),
        "started": status.get("startTime"),
        "finished": (status.get("completionTime") or ended.get("lastTransitionTime")) if ended else None,
    }


def event(obj: dict) -> dict:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    return {
        "type": obj.get("type"),
        "reason": obj.get("reason"),
        "message": _message(obj.get("message") or obj.get("note")),
        "object": f"{involved.get('kind')}/{involved.get('name')}",
        "count": obj.get("count") or _get(obj, "series", "count", default=1),
        "last": obj.get("lastTimestamp") or obj.get("eventTime"),
    }


SUMMARIES: dict[str, Callable[[dict], dict]] = {
    "Application": application,
    "Deployment": deployment,
    "Rollout": rollout,
    "Pod": pod,
    "Workflow": workflow,
    "Job": job,
    "Event": event,
}

__all__ = ["SUMMARIES", "application", "deployment", "rollout", "pod", "workflow", "job", "event"]
