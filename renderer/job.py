"""What a job spec becomes: an Argo WorkflowTemplate or CronWorkflow, or else a CronJob.

With Argo Workflows a job's params are workflow parameters, passed when it
runs, and its service account gets the executor's Role (a step's outputs are
recorded as WorkflowTaskResults); without it, a (suspended, for manual jobs) CronJob runs the command with
each param's default substituted. Pure: spec + profile in, objects out.
"""

from __future__ import annotations

import functools
import re

from renderer.engine import render_template
from renderer.kube import KubeSchemas
from renderer.naming import app_context
from renderer.pod import SpecProblems, common_objects, env_text, pod_context
from renderer.profiles import ClusterProfile
from renderer.spec import Spec


_NEVER = "0 0 31 2 *"  # February 31st: a CronJob that only runs when triggered


def render_job(spec: Spec, profile: ClusterProfile, schemas: KubeSchemas) -> tuple[list[dict], list[dict], list[str]]:
    """Objects of a job (a CronJob, or an Argo WorkflowTemplate/CronWorkflow), no ignoreDifferences, and notes."""
    body = spec.body
    problems = SpecProblems(spec)
    notes: list[str] = []
    app = app_context(spec, profile)
    trigger = body.get("trigger") or {"type": "manual"}
    params = body.get("params") or []
    argo = profile.has("argo_workflows")

    if argo:
        def substitute(text: str) -> str:
            for param in params:
                text = _param_pattern(param["name"]).sub("{{workflow.parameters.%s}}" % param["name"], text)
            return text
    else:
        for index, param in enumerate(params):
            if "default" not in param:
                problems.add(
                    f'param "{param["name"]}" has no default, and cluster "{profile.name}" has no argo_workflows addon '
                    "to pass one when the job runs",
                    "params", index,
                )
        defaults = {p["name"]: env_text(p.get("default")) for p in params}

        def substitute(text: str) -> str:
            for name, value in defaults.items():
                text = _param_pattern(name).sub(lambda _m, v=value: v, text)
            return text
        if params:
            notes.append(f"cluster {profile.name} has no Argo Workflows: params take their defaults")

    pod, secret_data = pod_context(spec, profile, problems, notes, substitute=substitute if params else None)
    problems.raise_if_any()

    job = {
        "retries": body.get("retries", 0),
        "timeout": body.get("timeout"),
        "schedule": trigger.get("schedule", _NEVER),
        "timezone": trigger.get("timezone"),
        "concurrency_policy": trigger.get("concurrency_policy", "Forbid"),
        "suspend": trigger["type"] == "manual",
        "parameters": [
            {k: v for k, v in (("name", p["name"]), ("value", env_text(p["default"]) if "default" in p else None), ("description", p.get("description"))) if v is not None}
            for p in params
        ],
    }
    templates = common_objects(spec, profile, app, secret_data)
    if argo:
        name = "job/cronworkflow.yaml.j2" if trigger["type"] == "scheduled" else "job/workflowtemplate.yaml.j2"
        # the executor's own permissions, for the service account the workflow's pods run as
        executor = {"app": app, "pod": pod, "executor_name": executor_role_name(spec.name)}
        templates += [("job/executor-role.yaml.j2", executor), ("job/executor-rolebinding.yaml.j2", executor)]
    else:
        name = "job/cronjob.yaml.j2"
    templates.append((name, {"app": app, "pod": pod, "job": job}))
    objects = [render_template(n, context, profile.kubernetes_version, schemas) for n, context in templates]
    return objects, [], notes


def executor_role_name(app: str) -> str:
    """The Role (and RoleBinding) that lets a job's workflow pods report their results to Argo."""
    return f"{app}-workflow-executor"


@functools.cache
def _param_pattern(name: str) -> re.Pattern:
    return re.compile(r"\{\{\s*" + re.escape(name) + r"\s*\}\}")


__all__ = ["render_job", "executor_role_name"]
