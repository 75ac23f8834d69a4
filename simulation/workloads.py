"""One app's simulated life: ArgoCD's sync, then the workload rolling out, as the objects a cluster would have.

``AppSimulation`` is the state of one app (the revision ArgoCD compares, the
phase of its sync and rollout, restarts and job runs); the state machine that
moves it along lives with the cluster (simulation.cluster), since it is driven
by the repository, the clock and the switches together. Here, from that state
and the app's fault, are the Kubernetes objects a real cluster would show at
that moment: the Application, the Deployment or Argo Rollout with its Pods
(the old revision's pods stay until the new ones are ready), the Events a
cluster would show about them (scaling, back-offs), Workflows and Jobs of
manual runs. They go through agent.summaries, as a real agent's
objects do, so the control plane receives the very compact states it would
from a cluster; everything names itself simulated (node names, messages).

Pure functions of (settings, app state, fault, now): no git, no network, no
clock of their own, so tests drive them with a fake clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

from agent import summaries
from contract import labels
from simulation.repository import AppSource
from simulation.settings import SimulationSettings
from simulation.switches import NO_FAULT, Fault

MAX_PODS_PER_APP = 50  # a simulated app with more replicas shows this many pods


@dataclasses.dataclass
class AppSimulation:
    """One app's simulated life: the revision ArgoCD compared, its sync operation, its workload."""

    source: AppSource
    revision: str  # the revision ArgoCD compares against (sync.revision)
    phase: str  # "outofsync" -> "syncing" -> "rolling" -> "done"; or "failed"
    since: float  # when the phase started
    previous: AppSource | None = None  # what ran before this sync (its pods stay until the new ones are ready)
    previous_health: str = "Missing"
    operation: str | None = None  # phase of the last finished sync operation
    operation_message: str | None = None
    operation_revision: str | None = None  # the revision of the last (or running) sync operation
    generation: int = 1
    restarts: int = 0  # bumped by the restart command
    # name -> (started, template, kind of template): runs of its WorkflowTemplates and CronJobs
    workflows: dict[str, tuple[float, str, str]] = dataclasses.field(default_factory=dict)


def _short_hash(*parts: Any, size: int = 5) -> str:
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).hexdigest()[:size]


def _labels(source: AppSource) -> dict[str, str]:
    return {labels.NAME_LABEL: source.name, **labels.MANAGED_BY,
            labels.WORKSPACE_LABEL: source.workspace, labels.APP_LABEL: source.name}


def kubernetes_time(seconds: float) -> str:
    """A timestamp as Kubernetes writes it in statuses (RFC 3339, UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def rollout_seconds(settings: SimulationSettings, fault: Fault) -> float:
    """How long a rollout takes: the fault's slow rollout, else the settings'."""
    if fault.rollout_seconds is not None:
        return float(fault.rollout_seconds)
    if settings.rollout_seconds is not None:
        return settings.rollout_seconds
    return settings.step_seconds


def app_health(sim: AppSimulation, fault: Fault) -> tuple[str, str | None]:
    """The health ArgoCD shows for the app, and its message: before a sync finishes, what ran before."""
    if sim.phase in ("outofsync", "syncing", "failed"):
        if sim.phase == "syncing" and sim.previous_health == "Missing":
            return "Progressing", None
        return sim.previous_health, None
    kind, name = sim.source.workload_kind, sim.source.workload_name
    if fault.health:
        return fault.health, fault.message or f"{kind or 'Application'} \"{name or sim.source.name}\" " \
                                              "has timed out progressing. (simulated)"
    if fault.pods and kind is not None and sim.source.replicas > 0:
        if sim.phase == "rolling":
            return "Progressing", f"Waiting for rollout to finish: 0 of {sim.source.replicas} updated " \
                                  "replicas are available..."
        return "Degraded", f"{kind} \"{name}\" exceeded its progress deadline"
    if sim.phase == "rolling":
        return "Progressing", (f"Waiting for rollout to finish: {sim.source.replicas} replicas updating"
                               if kind else None)
    return "Healthy", None


def app_states(settings: SimulationSettings, sim: AppSimulation, fault: Fault,
               now: float) -> list[tuple[str, str, str, dict]]:
    """The compact states of the app's objects right now (through agent.summaries, as the agent does)."""
    source = sim.source
    health, message = app_health(sim, fault)
    synced = sim.phase in ("rolling", "done")
    operation = {"syncing": "Running"}.get(sim.phase, sim.operation)
    op_message = "waiting for completion of hook and sync (simulated)" if sim.phase == "syncing" \
        else sim.operation_message
    status: dict[str, Any] = {
        "sync": {"status": "Synced" if synced else "OutOfSync", "revision": sim.revision},
        "health": {"status": health, **({"message": message} if message else {})},
    }
    if operation:
        # ArgoCD keeps the last operation's state, its revision with it, until the next operation starts
        status["operationState"] = {"phase": operation, "message": op_message,
                                    "operation": {"sync": {"revision": sim.operation_revision}}}
        if operation != "Running":
            status["operationState"]["syncResult"] = {"revision": sim.operation_revision}
    if sim.phase == "failed":
        status["conditions"] = [{"type": "SyncError", "message": sim.operation_message}]
    application = {"metadata": {"name": source.application, "namespace": source.argocd_namespace,
                                "labels": _labels(source)}, "status": status}
    states = [("Application", source.argocd_namespace, source.application, summaries.application(application))]
    if (source.workload_kind and sim.phase != "outofsync") or sim.previous is not None:
        workload = _workload_states(settings, sim, fault, now)
        states.extend(workload)
        states.extend(_events(settings, sim, workload))
    for name, (started, template, kind) in sim.workflows.items():
        if kind == "CronJob":  # kubectl create job --from=cronjob/...: a Job
            states.append(("Job", source.namespace, name, summaries.job(_job(
                settings, source, name, template, started, now))))
        else:
            states.append(("Workflow", source.namespace, name, summaries.workflow(_workflow(
                settings, source, name, template, started, now))))
    return states


def _workload_states(settings: SimulationSettings, sim: AppSimulation, fault: Fault,
                     now: float) -> list[tuple[str, str, str, dict]]:
    source = sim.source
    states = []
    new_ready = 0
    rolled_out = sim.phase == "done"
    running = sim.phase in ("rolling", "done")
    broken = fault.pods is not None
    if source.workload_kind and running and source.replicas > 0:
        if rolled_out:
            new_ready = source.replicas
        else:
            fraction = (now - sim.since) / max(rollout_seconds(settings, fault), 1e-9)
            new_ready = min(source.replicas, int(fraction * source.replicas))
        if broken:
            new_ready = 0
    old = sim.previous if not rolled_out else None
    old_pods = 0 if old is None or old.workload_kind is None else old.replicas
    if source.workload_kind:
        shown = source if running or old is None else old
        states.append(_workload(sim, shown, fault, new_ready if running else old_pods, rolled_out))
        if running:
            template = _short_hash(source.digest, size=10)
            for index in range(min(source.replicas, MAX_PODS_PER_APP)):
                states.append(_pod(settings, sim, source, template, index, index < new_ready, fault, now))
    if old is not None and old.workload_kind:
        template = _short_hash(old.digest, size=10)
        for index in range(min(old_pods, MAX_PODS_PER_APP)):
            states.append(_pod(settings, sim, old, template, index, True, NO_FAULT, now))
    return states


def _workload(sim: AppSimulation, source: AppSource, fault: Fault, ready: int,
              rolled_out: bool) -> tuple[str, str, str, dict]:
    replicas = source.replicas
    progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
    if fault.pods and replicas > 0:
        available = {**available, "status": "False", "reason": "MinimumReplicasUnavailable"}
        if rolled_out:
            progressing = {**progressing, "status": "False", "reason": "ProgressDeadlineExceeded"}
    elif not rolled_out:
        progressing = {**progressing, "reason": "ReplicaSetUpdated"}
    raw: dict[str, Any] = {
        "metadata": {"name": source.workload_name, "namespace": source.namespace, "generation": sim.generation,
                     "labels": _labels(source)},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": sim.generation, "replicas": replicas, "readyReplicas": ready,
                   "updatedReplicas": replicas if sim.phase in ("rolling", "done") else 0,
                   "availableReplicas": ready, "unavailableReplicas": max(0, replicas - ready),
                   "conditions": [available, progressing]},
    }
    if source.workload_kind == "Rollout":
        health, message = app_health(sim, fault)
        raw["status"].update({
            "phase": {"Healthy": "Healthy", "Degraded": "Degraded"}.get(health, "Progressing"),
            "message": message,
            "currentStepIndex": source.canary_steps if rolled_out else 0,
        })
        return "Rollout", source.namespace, source.workload_name, summaries.rollout(raw)
    return "Deployment", source.namespace, source.workload_name, summaries.deployment(raw)


def _pod(settings: SimulationSettings, sim: AppSimulation, source: AppSource, template: str, index: int,
         ready: bool, fault: Fault, now: float) -> tuple[str, str, str, dict]:
    name = f"{source.workload_name}-{template}-{_short_hash(template, index)}"
    container = source.name
    image = source.images[0] if source.images else "unknown"
    restarts = sim.restarts
    state: dict[str, Any] = {"running": {"startedAt": kubernetes_time(sim.since)}}
    last_state: dict[str, Any] = {}
    phase = "Running"
    if fault.pods == "ImagePullBackOff":
        phase = "Pending"
        state = {"waiting": {"reason": "ImagePullBackOff", "message": fault.message or
                             f"Back-off pulling image \"{image}\" (simulated)"}}
    elif fault.pods in ("CrashLoopBackOff", "OOMKilled"):
        # restarts climb while it crash-loops, as a real kubelet's back-off would have them do
        restarts += 1 + int(max(0.0, now - sim.since) / max(settings.step_seconds * 4, 1.0))
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": fault.message or
                             f"back-off 40s restarting failed container={container} pod={name} (simulated)"}}
        if fault.pods == "OOMKilled":
            last_state = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
        else:
            last_state = {"terminated": {"reason": "Error", "exitCode": 1}}
    elif not ready:
        state = {"waiting": {"reason": "ContainerCreating"}} if sim.phase == "rolling" else state
    raw = {
        "metadata": {"name": name, "namespace": source.namespace, "labels": _labels(source)},
        "spec": {"nodeName": f"simulated-node-{int(_short_hash(name, size=4), 16) % 3 + 1}"},
        "status": {"phase": phase, "containerStatuses": [
            {"name": container, "image": image, "ready": ready and not fault.pods, "restartCount": restarts,
             "state": state, **({"lastState": last_state} if last_state else {})}]},
    }
    return "Pod", source.namespace, name, summaries.pod(raw)


def _events(settings: SimulationSettings, sim: AppSimulation,
            workload: list[tuple[str, str, str, dict]]) -> list[tuple[str, str, str, dict]]:
    """The Kubernetes Events a cluster would show for these objects: the Deployment scaling its new
    ReplicaSet, and the kubelet backing off a crashing container or an image it cannot pull."""
    events = []
    for kind, namespace, name, state in workload:
        if kind in ("Deployment", "Rollout") and sim.phase in ("rolling", "done"):
            template = _short_hash(sim.source.digest, size=10)
            events.append(_event(namespace, kind, name, "Normal", "ScalingReplicaSet",
                                 f"Scaled up replica set {name}-{template} to {state.get('replicas') or 0} (simulated)",
                                 1, sim.since))
        elif kind == "Pod" and state["reasons"]:
            if "ImagePullBackOff" in state["reasons"]:
                reason, message = "BackOff", state.get("message") or "Back-off pulling image (simulated)"
            else:
                reason = "BackOff"
                message = f"Back-off restarting failed container {sim.source.name} in pod {name} (simulated)"
            count = max(1, state["restarts"])
            events.append(_event(namespace, "Pod", name, "Warning", reason, message, count,
                                 sim.since + count * settings.step_seconds))
    return events


def _event(namespace: str, kind: str, name: str, type_: str, reason: str, message: str, count: int,
           last: float) -> tuple[str, str, str, dict]:
    """A core/v1 Event about one object, as the API server lists it (name: object name and a hex suffix)."""
    raw = {"metadata": {"name": f"{name}.{_short_hash(kind, name, reason, size=16)}", "namespace": namespace},
           "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
           "reason": reason, "message": message, "type": type_, "count": count,
           "firstTimestamp": kubernetes_time(last - max(0, count - 1)), "lastTimestamp": kubernetes_time(last)}
    return "Event", namespace, raw["metadata"]["name"], summaries.event(raw)


def _workflow(settings: SimulationSettings, source: AppSource, name: str, template: str, started: float,
              now: float) -> dict:
    finished = now - started >= rollout_seconds(settings, NO_FAULT) + settings.step_seconds
    status = {"phase": "Succeeded" if finished else "Running", "startedAt": kubernetes_time(started)}
    if finished:
        status["finishedAt"] = kubernetes_time(started + settings.step_seconds)
        status["message"] = "simulated run"
    return {"metadata": {"name": name, "namespace": source.namespace, "labels": _labels(source)},
            "spec": {"workflowTemplateRef": {"name": template}}, "status": status}


def _job(settings: SimulationSettings, source: AppSource, name: str, cronjob: str, started: float,
         now: float) -> dict:
    finished = now - started >= rollout_seconds(settings, NO_FAULT) + settings.step_seconds
    status: dict[str, Any] = {"startTime": kubernetes_time(started)}
    if finished:
        done = kubernetes_time(started + settings.step_seconds)
        status.update(succeeded=1, completionTime=done,
                      conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": done}])
    else:
        status["active"] = 1
    return {"metadata": {"name": name, "namespace": source.namespace, "labels": _labels(source),
                         "ownerReferences": [{"kind": "CronJob", "name": cronjob}]}, "status": status}


__all__ = ["MAX_PODS_PER_APP", "AppSimulation", "rollout_seconds", "app_health", "app_states", "kubernetes_time"]
