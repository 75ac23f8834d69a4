"""Commands from the control plane, carried out against the cluster.

The agent checks every command itself before touching the cluster, whatever
the control plane allowed: the namespace must pass the agent's own allow/deny
lists (Applications: the ArgoCD namespace, and only Applications Shipyard
manages), and the kind must be one the command acts on. A refused or failed
command comes back as ``CommandResult(ok=False, error=...)``, and so does
one the Kubernetes API could not be reached for (a cut connection, a
timeout: urllib3 errors); nothing here raises to the command loop for
those.

=========  =============================================================================
refresh    Application: annotation argocd.argoproj.io/refresh = normal | hard (params.hard);
           a commit's refresh (params.reason "commit", params.commit) below
restart    Deployment: spec.template annotation kubectl.kubernetes.io/restartedAt (kubectl
           rollout restart); Rollout: spec.restartAt (kubectl argo rollouts restart), which
           restarts pods without a new revision walking the canary steps again
run-job    WorkflowTemplate: a Workflow with spec.workflowTemplateRef and
           arguments.parameters (params.parameters); CronWorkflow: a Workflow of its
           workflowSpec, owned by it, its parameters set from params.parameters (argo submit
           --from cronwf/...); CronJob: a Job from its jobTemplate
           (kubectl create job --from=cronjob/...). Both labelled shipyard.dev/app and
           shipyard.dev/run (params.run_id, else the command id)
logs       Pod: the last params.tail_lines lines of params.container (params.previous: of
           the container before its last restart; params.since_time: from that RFC 3339 time;
           params.timestamps: each line prefixed with its time), at most MAX_LOG_LINES lines
           and MAX_LOG_BYTES bytes
=========  =============================================================================

A commit's refresh is how a commit reaches ArgoCD at once instead of at its
next poll (three minutes by default): after each commit the control plane
queues one for every Application the commit touched, naming the commit. The
annotation is Argo CD's documented way to ask for a refresh (Argo CD,
"Annotations and Labels used by Argo CD": the application controller removes
it once it refreshed the Application), and the one its own git webhook handler
uses (util/webhook: argo.RefreshApp, normal); a refresh resolves the branch anew.
The agent patches only when ArgoCD has not compared the Application at that
commit yet (``status.sync.revision``, read by the same GET that checks the
Application is Shipyard's): when ArgoCD's own webhook or poll got there
first, it answers ``{"refresh": "skipped", "seen": true}``. An Application
the commit adds does not exist until the app of apps syncs it, and ArgoCD
compares an Application when it is created, so a 404 answers
``{"refresh": "skipped", "absent": true}``. Every answer carries the command's
``commit``. ``coalesced`` groups a claimed batch so that the commit refreshes
of one Application are carried out once, at the newest of them (the control
plane numbers them in commit order), and each is answered.
"""

from __future__ import annotations

import json
import logging
import re
import time

import urllib3

from agent.kube import (APPLICATION, CRON_WORKFLOW, CRONJOB, DEPLOYMENT, JOB, ROLLOUT, WORKFLOW, WORKFLOW_TEMPLATE,
                        ApiException, KubeApi)
from contract.protocol import COMMIT_REFRESH_REASON, MAX_LOG_BYTES, MAX_LOG_LINES, Command, CommandResult
from agent.settings import AgentSettings
from contract.labels import APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL

log = logging.getLogger(__name__)

REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
KINDS_OF = {
    "refresh": ("Application",),
    "restart": ("Deployment", "Rollout"),
    "run-job": ("WorkflowTemplate", "CronWorkflow", "CronJob"),
    "logs": ("Pod",),
}


class CommandRefused(Exception):
    """The agent will not run this command (namespace, kind, object not Shipyard's, bad params)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _run_id(command: Command) -> str:
    run = str(command.params.get("run_id") or command.id)
    if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", run):
        raise CommandRefused(f"run_id {run!r} is not a valid label value")
    return run


def commit_of(command: Command) -> str | None:
    """The commit a commit's refresh names; None for any other command. A commit's refresh whose
    commit is not a git object id is refused."""
    if command.type != "refresh" or command.params.get("reason") != COMMIT_REFRESH_REASON:
        return None
    commit = command.params.get("commit")
    if not (isinstance(commit, str) and _OBJECT_ID.fullmatch(commit)):
        raise CommandRefused("params.commit must be a commit id (40 or 64 hexadecimal digits)")
    return commit


def coalesced(commands: list[Command]) -> list[list[Command]]:
    """The batch in order, each entry carried out once: a commit's refresh with the later commit
    refreshes of its Application in the batch (the newest last), every other command alone."""
    groups: list[list[Command]] = []
    by_application: dict[tuple[str, str], list[Command]] = {}
    for command in commands:
        if command.type == "refresh" and command.params.get("reason") == COMMIT_REFRESH_REASON:
            key = (command.namespace, command.name)
            if key in by_application:
                by_application[key].append(command)
                continue
            by_application[key] = [command]
            groups.append(by_application[key])
        else:
            groups.append([command])
    return [sorted(group, key=lambda command: command.id) for group in groups]


def answer_for(command: Command, result: CommandResult) -> CommandResult:
    """``result`` (of the newest command of its group) as the answer to ``command``: with its own commit."""
    if "commit" not in result.result:
        return result
    return CommandResult(result.ok, {**result.result, "commit": command.params.get("commit")}, result.error)


def _bounded(value, default: int, cap: int, name: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CommandRefused(f"params.{name} must be a positive integer")
    return min(value, cap)


class Executor:
    def __init__(self, api: KubeApi, settings: AgentSettings):
        self.api = api
        self.settings = settings

    def check(self, command: Command) -> None:
        kinds = KINDS_OF.get(command.type)
        if kinds is None:
            raise CommandRefused(f"unknown command {command.type!r}")
        if command.kind not in kinds:
            raise CommandRefused(f"{command.type} acts on {' or '.join(kinds)}, not {command.kind}")
        if command.kind == "Application":
            if command.namespace != self.settings.argocd_namespace:
                raise CommandRefused(f"Applications are followed in namespace {self.settings.argocd_namespace}, "
                                     f"not {command.namespace!r}")
        elif not self.settings.namespace_allowed(command.namespace):
            raise CommandRefused(f"namespace {command.namespace!r} is not in this agent's allowed namespaces")
        if not command.name:
            raise CommandRefused("the command names no object")

    def execute(self, command: Command) -> CommandResult:
        try:
            self.check(command)
            handler = {"refresh": self.refresh, "restart": self.restart,
                       "run-job": self.run_job, "logs": self.logs}[command.type]
            result = CommandResult(ok=True, result=handler(command))
        except CommandRefused as exc:
            log.warning("refused command %s (%s %s/%s/%s): %s", command.id, command.type, command.kind,
                        command.namespace, command.name, exc)
            return CommandResult(ok=False, error=f"refused by the agent: {exc}")
        except ApiException as exc:
            log.warning("command %s (%s %s/%s/%s) failed: %s %s", command.id, command.type, command.kind,
                        command.namespace, command.name, exc.status, exc.reason)
            return CommandResult(ok=False, error=f"Kubernetes API: {exc.status} {exc.reason}: {_api_message(exc)}")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("command %s (%s %s/%s/%s) failed: the Kubernetes API could not be reached (%s)", command.id,
                        command.type, command.kind, command.namespace, command.name, type(exc).__name__)
            return CommandResult(ok=False, error=f"Kubernetes API unreachable ({type(exc).__name__}); try again")
        log.info("command %s (%s %s/%s/%s) done", command.id, command.type, command.kind,
                 command.namespace, command.name)
        return result

    # --- the commands ---------------------------------------------------------------------

    def refresh(self, command: Command) -> dict:
        commit = commit_of(command)
        try:
            application = self.api.get(APPLICATION, command.namespace, command.name)
        except ApiException as exc:
            if commit is not None and exc.status == 404:  # not created yet (or pruned): nothing to refresh
                return {"refresh": "skipped", "absent": True, "commit": commit}
            raise
        labels = (application.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            raise CommandRefused(f"Application {command.name} is not managed by Shipyard")
        if commit is not None and ((application.get("status") or {}).get("sync") or {}).get("revision") == commit:
            return {"refresh": "skipped", "seen": True, "commit": commit}
        mode = "hard" if command.params.get("hard") else "normal"
        self.api.patch(APPLICATION, command.namespace, command.name,
                       {"metadata": {"annotations": {REFRESH_ANNOTATION: mode}}})
        return {"refresh": mode, **({"commit": commit} if commit is not None else {})}

    def restart(self, command: Command) -> dict:
        at = _now()
        if command.kind == "Rollout":
            self.api.patch(ROLLOUT, command.namespace, command.name, {"spec": {"restartAt": at}})
        else:
            self.api.patch(DEPLOYMENT, command.namespace, command.name,
                           {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}})
        return {"restartedAt": at}

    def run_job(self, command: Command) -> dict:
        run = _run_id(command)
        if command.kind == "WorkflowTemplate":
            return self._workflow(command, run)
        if command.kind == "CronWorkflow":
            return self._workflow_from_cron_workflow(command, run)
        return self._job_from_cronjob(command, run)

    def _workflow(self, command: Command, run: str) -> dict:
        template = self.api.get(WORKFLOW_TEMPLATE, command.namespace, command.name)
        parameters = command.params.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise CommandRefused("params.parameters must be a map of names to values")
        app = command.params.get("app") or ((template.get("metadata") or {}).get("labels") or {}).get(APP_LABEL)
        labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_LABEL: run, **({APP_LABEL: app} if app else {})}
        workflow = {
            "apiVersion": WORKFLOW.api_version, "kind": "Workflow",
            "metadata": {"generateName": f"{command.name[:52]}-", "namespace": command.namespace, "labels": labels},
            "spec": {"workflowTemplateRef": {"name": command.name},
                     "arguments": {"parameters": [{"name": str(k), "value": str(v)}
                                                  for k, v in sorted(parameters.items())]}},
        }
        created = self.api.create(WORKFLOW, command.namespace, workflow)
        return {"kind": "Workflow", "name": created["metadata"]["name"], "run": run}

    def _workflow_from_cron_workflow(self, command: Command, run: str) -> dict:
        """What ``argo submit --from cronwf/<name>`` creates (Argo Workflows, common.ConvertCronWorkflowToWorkflow):
        a Workflow of the CronWorkflow's workflowSpec, named after it, with its workflowMetadata and the
        workflows.argoproj.io/cron-workflow label, owned by it (its history limits and deletion apply)."""
        cron = self.api.get(CRON_WORKFLOW, command.namespace, command.name)
        meta, spec = cron.get("metadata") or {}, dict((cron.get("spec") or {}).get("workflowSpec") or {})
        parameters = command.params.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise CommandRefused("params.parameters must be a map of names to values")
        declared = list((spec.get("arguments") or {}).get("parameters") or [])
        given = {str(k): str(v) for k, v in parameters.items()}
        unknown = sorted(set(given) - {p.get("name") for p in declared})
        if unknown:
            raise CommandRefused(f"{command.name} declares no parameter {', '.join(unknown)}")
        if declared:
            spec["arguments"] = {**(spec.get("arguments") or {}), "parameters": [
                {**p, "value": given[p["name"]]} if p.get("name") in given else p for p in declared]}
        workflow_meta = (cron.get("spec") or {}).get("workflowMetadata") or {}
        app = command.params.get("app") or (meta.get("labels") or {}).get(APP_LABEL)
        labels = {**(workflow_meta.get("labels") or {}), "workflows.argoproj.io/cron-workflow": command.name,
                  MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_LABEL: run, **({APP_LABEL: app} if app else {})}
        workflow = {
            "apiVersion": WORKFLOW.api_version, "kind": "Workflow",
            "metadata": {"generateName": f"{command.name[:52]}-", "namespace": command.namespace, "labels": labels,
                         **({"annotations": dict(workflow_meta["annotations"])} if workflow_meta.get("annotations") else {}),
                         "ownerReferences": [{"apiVersion": CRON_WORKFLOW.api_version, "kind": "CronWorkflow",
                                              "name": meta.get("name"), "uid": meta.get("uid"), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": spec,
        }
        created = self.api.create(WORKFLOW, command.namespace, workflow)
        return {"kind": "Workflow", "name": created["metadata"]["name"], "run": run}

    def _job_from_cronjob(self, command: Command, run: str) -> dict:
        cronjob = self.api.get(CRONJOB, command.namespace, command.name)
        template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
        meta = cronjob.get("metadata") or {}
        app = command.params.get("app") or (meta.get("labels") or {}).get(APP_LABEL)
        template_meta = template.get("metadata") or {}
        labels = {**(template_meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_LABEL: run,
                  **({APP_LABEL: app} if app else {})}
        name = f"{command.name[:40]}-manual-{run}"[:63].rstrip("-.")
        job = {
            "apiVersion": JOB.api_version, "kind": "Job",
            "metadata": {
                "name": name, "namespace": command.namespace, "labels": labels,
                # what kubectl create job --from=cronjob/... sets: the CronJob owns the Job (history
                # limits and cascading delete apply) and the run is marked manual.
                "annotations": {**(template_meta.get("annotations") or {}),
                                "cronjob.kubernetes.io/instantiate": "manual"},
                "ownerReferences": [{"apiVersion": CRONJOB.api_version, "kind": "CronJob", "name": meta.get("name"),
                                     "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": template.get("spec") or {},
        }
        created = self.api.create(JOB, command.namespace, job)
        return {"kind": "Job", "name": created["metadata"]["name"], "run": run}

    def logs(self, command: Command) -> dict:
        tail = _bounded(command.params.get("tail_lines"), 200, MAX_LOG_LINES, "tail_lines")
        limit = _bounded(command.params.get("limit_bytes"), MAX_LOG_BYTES, MAX_LOG_BYTES, "limit_bytes")
        params = command.params
        container = params.get("container")
        if container is not None and not isinstance(container, str):
            raise CommandRefused("params.container must be a name")
        for flag in ("previous", "timestamps"):
            if not isinstance(params.get(flag, False), bool):
                raise CommandRefused(f"params.{flag} must be true or false")
        since = params.get("since_time")
        if since is not None and not (isinstance(since, str) and _RFC3339.fullmatch(since)):
            raise CommandRefused("params.since_time must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
        data = self.api.pod_log(command.namespace, command.name, container, tail, limit,
                                previous=params.get("previous", False), since_time=since,
                                timestamps=params.get("timestamps", False))
        # Whatever the server sent, the answer stays within the bounds.
        lines = data[:limit].decode("utf-8", errors="replace").splitlines()
        truncated = len(data) >= limit or len(lines) > tail
        return {"container": container, "lines": lines[-tail:], "truncated": truncated}


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body).get("message") or "")[:300]
    except (TypeError, ValueError, AttributeError):
        return ""


__all__ = ["Executor", "CommandRefused", "KINDS_OF", "REFRESH_ANNOTATION", "RESTARTED_AT",
           "commit_of", "coalesced", "answer_for"]
