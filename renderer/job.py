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

    shell_params: dict[str, str] = {}  # env var -> the Argo parameter it carries into a shell command
    if argo:
        def substitute(text: str, shell: bool) -> str:
            if shell:
                text, used = shell_safe_params(text, [p["name"] for p in params])
                shell_params.update(used)
                return text
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

        def substitute(text: str, shell: bool) -> str:  # noqa: ARG001 - the spec's own defaults, put in as written
            for name, value in defaults.items():
                text = _param_pattern(name).sub(lambda _m, v=value: v, text)
            return text
        if params:
            notes.append(f"cluster {profile.name} has no Argo Workflows: params take their defaults")

    pod, secret_data = pod_context(spec, profile, problems, notes, substitute=substitute if params else None)
    problems.raise_if_any()
    if shell_params:
        pod["container"]["env"] = [*pod["container"]["env"],
                                   *({"name": var, "value": "{{workflow.parameters.%s}}" % name}
                                     for var, name in sorted(shell_params.items()))]

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


PARAM_ENV_PREFIX = "SHIPYARD_PARAM_"


def shell_safe_params(text: str, names: list[str]) -> tuple[str, dict[str, str]]:
    """``{{name}}`` in a shell command as a quoted expansion of an environment variable Argo fills.

    Argo substitutes ``{{workflow.parameters.x}}`` as text, so a value spliced into ``/bin/sh -c``
    would be read as shell (``; rm -rf ~``). Instead the value travels in the variable
    ``SHIPYARD_PARAM_<n>`` (Argo substitutes into an env value, which no shell reads), and the
    command expands it quoted, so each value is exactly one word, never shell syntax:
    ``"${SHIPYARD_PARAM_0}"`` outside quotes, ``${SHIPYARD_PARAM_0}`` inside double quotes, and
    ``'"${SHIPYARD_PARAM_0}"'`` inside single quotes (close, expand, reopen). Returns the text and the
    variables used, each with its param's name.
    """
    used: dict[str, str] = {}
    out, state, index = [], "plain", 0
    patterns = [(_param_pattern(name), f"{PARAM_ENV_PREFIX}{number}", name) for number, name in enumerate(names)]
    while index < len(text):
        match = next(((m, var, name) for pattern, var, name in patterns
                      if (m := pattern.match(text, index)) is not None), None)
        if match is not None:
            found, var, name = match
            used[var] = name
            out.append({"plain": f'"${{{var}}}"', "double": f"${{{var}}}", "single": f"'\"${{{var}}}\"'"}[state])
            index = found.end()
            continue
        char = text[index]
        if char == "\\" and state != "single" and index + 1 < len(text):
            out.append(text[index:index + 2])
            index += 2
            continue
        if char == "'" and state != "double":
            state = "plain" if state == "single" else "single"
        elif char == '"' and state != "single":
            state = "plain" if state == "double" else "double"
        out.append(char)
        index += 1
    return "".join(out), used


def executor_role_name(app: str) -> str:
    """The Role (and RoleBinding) that lets a job's workflow pods report their results to Argo."""
    return f"{app}-workflow-executor"


@functools.cache
def _param_pattern(name: str) -> re.Pattern:
    return re.compile(r"\{\{\s*" + re.escape(name) + r"\s*\}\}")


__all__ = ["render_job", "executor_role_name", "shell_safe_params", "PARAM_ENV_PREFIX"]
