"""What a job spec becomes: an Argo WorkflowTemplate or CronWorkflow, or else a CronJob.

With Argo Workflows a job's params are workflow parameters, passed when it
runs, and its service account gets the executor's Role (a step's outputs are
recorded as WorkflowTaskResults); without it, a (suspended, for manual jobs) CronJob runs the command with
each param's default substituted. Pure: spec + profile in, objects out.

Argo substitutes every ``{{...}}`` tag in a workflow's templates, and again in
the pod it builds from them (Argo Workflows, "Workflow Variables"): it fills
``{{workflow.name}}``, evaluates ``{{=...}}``, refuses a workflow variable it
does not know and a ``{{`` never closed. So text the spec wrote in which Argo
would read a tag never reaches Argo: it goes into the ConfigMap ``<app>-verbatim``, which Argo does not read,
and Kubernetes puts it into the container as the pod starts (an env value by
``configMapKeyRef``, a command by a ``$(VAR)`` reference to such a variable).
Only Shipyard's own tags, the declared params, are left for Argo to fill.

TrueFoundry's job fields: ``concurrency_limit`` is an Argo semaphore (none
without Argo: a CronJob cannot queue runs); ``alerts`` and ``param_type:
ml_repo`` are accepted with a note; ``trigger_on_deploy`` is carried out by the
control plane once the version is live (gitops.commands.runs_on_deploy).
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

PARAM_ENV_PREFIX = "SHIPYARD_PARAM_"  # a param's value, filled by Argo, for the shell or a $(VAR) reference
TEXT_ENV_PREFIX = "SHIPYARD_TEXT_"  # a piece of a command argument, from the verbatim ConfigMap
COMMAND_ENV = "SHIPYARD_COMMAND"  # a shell command, from the verbatim ConfigMap
SEMAPHORE_KEY = "limit"


def render_job(spec: Spec, profile: ClusterProfile, schemas: KubeSchemas) -> tuple[list[dict], list[dict], list[str]]:
    """Objects of a job (a CronJob, or an Argo WorkflowTemplate/CronWorkflow), no ignoreDifferences, and notes."""
    body = spec.body
    problems = SpecProblems(spec)
    notes: list[str] = _without_effect(body, profile)
    app = app_context(spec, profile)
    trigger = body.get("trigger") or {"type": "manual"}
    params = body.get("params") or []
    names = [p["name"] for p in params]
    argo = profile.has("argo_workflows")

    if argo:
        def substitute(text: str, shell: bool) -> str:
            if shell:
                return shell_safe_params(text, names)[0]
            return "".join(part if name is None else _argo_parameter(name) for name, part in param_parts(text, names))

        for index, param in enumerate(params):
            if "{{" in env_text(param.get("default")):
                # a parameter's value is substituted into the template, then read for tags again with the pod
                problems.add(f'param "{param["name"]}": Argo Workflows reads "{{{{...}}}}" in a parameter\'s value '
                             "as a template tag (it would fill or refuse it), so this default cannot reach the job as "
                             'written; write it without "{{"', "params", index, "default")
            if "{{" in param.get("description", ""):
                notes.append(f'param "{param["name"]}": its description is left out of the workflow, where Argo '
                             'Workflows would read its "{{" as a template tag')
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
            return "".join(part if name is None else defaults[name] for name, part in param_parts(text, names))
        if params:
            notes.append(f"cluster {profile.name} has no Argo Workflows: params take their defaults")
    if "concurrency_limit" in body and not argo:
        problems.add(f'concurrency_limit needs the argo_workflows addon (a run past the limit waits for a free '
                     f'slot), which cluster "{profile.name}" lacks; a CronJob can only skip a scheduled run while '
                     "another one runs (trigger.concurrency_policy: Forbid)", "concurrency_limit")

    pod, secret_data = pod_context(spec, profile, problems, notes, substitute=substitute if params else None)
    verbatim: dict[str, str] = {}
    if argo:
        verbatim = _out_of_argos_sight(spec, pod["container"], names, problems)
    problems.raise_if_any()

    job = {
        "retries": body.get("retries", 0),
        "timeout": body.get("timeout"),
        "schedule": trigger.get("schedule", _NEVER),
        "timezone": trigger.get("timezone"),
        "concurrency_policy": trigger.get("concurrency_policy", "Forbid"),
        "suspend": trigger["type"] == "manual",
        "parameters": [_parameter(p, argo) for p in params],
        "synchronization": _synchronization(spec, profile) if argo and "concurrency_limit" in body else None,
    }
    templates = common_objects(spec, profile, app, secret_data)
    templates += pod["objects"]  # what the pod's volumes need: a ConfigMap, a PersistentVolumeClaim (renderer.pod)
    if argo:
        name = "job/cronworkflow.yaml.j2" if trigger["type"] == "scheduled" else "job/workflowtemplate.yaml.j2"
        # the executor's own permissions, for the service account the workflow's pods run as
        executor = {"app": app, "pod": pod, "executor_name": executor_role_name(spec.name)}
        templates += [("job/executor-role.yaml.j2", executor), ("job/executor-rolebinding.yaml.j2", executor)]
        if job["synchronization"]:
            templates.append(("job/configmap.yaml.j2", {"app": app, "name": concurrency_configmap(spec.name),
                                                        "data": {SEMAPHORE_KEY: str(body["concurrency_limit"])}}))
        if verbatim:
            templates.append(("job/configmap.yaml.j2", {"app": app, "name": verbatim_configmap(spec.name),
                                                        "data": verbatim}))
    else:
        name = "job/cronjob.yaml.j2"
    templates.append((name, {"app": app, "pod": pod, "job": job, "addon_api": profile.addon_api}))
    objects = [render_template(n, context, profile.kubernetes_version, schemas) for n, context in templates]
    return objects, [], notes


def _without_effect(body: dict, profile: ClusterProfile) -> list[str]:
    """Notes on the TrueFoundry fields a job accepts that do nothing here, or nothing in the rendering."""
    notes = []
    if body.get("alerts"):
        notes.append("alerts have no effect: Shipyard sends no job notifications (TrueFoundry sends them when a run "
                     "starts, completes or fails); follow a job's runs through its runs in the API")
    for param in body.get("params") or []:
        if param.get("param_type") == "ml_repo":
            notes.append(f'param "{param["name"]}" is an ml_repo param: Shipyard has no ML repositories, so the '
                         "job gets the repository's name as a plain string")
    if body.get("trigger_on_deploy"):
        notes.append(f"trigger_on_deploy: the Shipyard control plane runs the job, with its params' defaults, once "
                     f"ArgoCD reports this version synced on cluster {profile.name}; a cluster repository written "
                     "without the control plane starts no run")
    return notes


def _synchronization(spec: Spec, profile: ClusterProfile) -> dict:
    """The workflow's semaphore, sized by its ConfigMap: ``semaphores``, a list, from Argo Workflows 3.6,
    which deprecates the single ``semaphore`` that older releases know alone ("Upgrading to v3.6")."""
    ref = {"configMapKeyRef": {"name": concurrency_configmap(spec.name), "key": SEMAPHORE_KEY}}
    release = profile.addon_version("argo_workflows")
    return {"semaphore": ref} if release is not None and release < (3, 6) else {"semaphores": [ref]}


def _parameter(param: dict, argo: bool) -> dict:
    """A workflow parameter: its name, default and description (left out where Argo would read a tag in it)."""
    out = {"name": param["name"]}
    if "default" in param:
        out["value"] = env_text(param["default"])
    if "description" in param and not (argo and "{{" in param["description"]):
        out["description"] = param["description"]
    return out


def _out_of_argos_sight(spec: Spec, container: dict, names: list[str], problems: SpecProblems) -> dict[str, str]:
    """Move the container's text in which Argo would read a tag into the verbatim ConfigMap; return its data.

    An env value becomes a ``configMapKeyRef`` (Kubernetes expands ``$(VAR)`` in an env ``value`` only,
    so it arrives as written). A shell command becomes ``$(SHIPYARD_COMMAND)``, and a command argument the
    concatenation of ``$(VAR)`` references, one per piece of text and one per param (Kubernetes API, Container
    ``command``: "Variable references $(VAR_NAME) are expanded using the container's environment", in one
    pass: a value put in is not expanded again). The variables Shipyard adds are appended to the env.
    """
    configmap = verbatim_configmap(spec.name)
    data: dict[str, str] = {}
    added: dict[str, dict] = {}  # variable -> its env entry

    def from_configmap(var: str, text: str) -> dict:
        data[var] = text
        return {"name": var, "valueFrom": {"configMapKeyRef": {"name": configmap, "key": var}}}

    env = []
    for entry in container["env"]:
        if "value" in entry and argo_reads_tags(entry["value"]):
            entry = from_configmap(entry["name"], entry["value"])
        env.append(entry)

    command = spec.body["image"].get("command")
    if isinstance(command, str):
        text, used = shell_safe_params(command, names)
        added.update({var: _param_env(var, name) for var, name in used.items()})
        if argo_reads_tags(text):
            added[COMMAND_ENV] = from_configmap(COMMAND_ENV, text)
            container["command"] = ["/bin/sh", "-c", f"$({COMMAND_ENV})"]
    elif command is not None:
        arguments = []
        for argument, substituted in zip(command, container["command"]):
            parts = param_parts(argument, names)
            own = _own_tag_spans(parts)
            if argo_reads_tags(substituted, own):
                references = []
                for name, part in parts:
                    if name is None and part:
                        var = f"{TEXT_ENV_PREFIX}{sum(v.startswith(TEXT_ENV_PREFIX) for v in added)}"
                        added[var] = from_configmap(var, part)
                    elif name is not None:
                        var = f"{PARAM_ENV_PREFIX}{names.index(name)}"
                        added[var] = _param_env(var, name)
                    else:
                        continue
                    references.append(f"$({var})")
                substituted = "".join(references)
            arguments.append(substituted)
        container["command"] = arguments

    declared = {entry["name"] for entry in container["env"]}
    for var in sorted(declared & set(added)):
        problems.add(f'env "{var}" is a variable Shipyard sets in a job\'s container (its params and the text '
                     "it keeps from Argo Workflows' templating); name it otherwise", "env", var)
    container["env"] = [*env, *(added[var] for var in sorted(added, key=_variable_order))]
    return data


def _param_env(var: str, name: str) -> dict:
    return {"name": var, "value": _argo_parameter(name)}


def _variable_order(var: str) -> tuple[str, int]:
    prefix, _, number = var.rpartition("_")
    return (prefix, int(number)) if number.isdigit() else (var, -1)


def _argo_parameter(name: str) -> str:
    return "{{workflow.parameters.%s}}" % name


def _own_tag_spans(parts: list[tuple[str | None, str]]) -> list[tuple[int, int]]:
    """Where Shipyard's parameter tags sit once ``parts`` are joined with them in place."""
    spans, at = [], 0
    for name, part in parts:
        length = len(part if name is None else _argo_parameter(name))
        if name is not None:
            spans.append((at, at + length))
        at += length
    return spans


def argo_tag_spans(text: str) -> list[tuple[int, int]] | None:
    """The tags Argo's templating reads in ``text``, as (start, end) spans; None for a "{{" never closed.

    A tag runs from "{{" to the next "}}", whatever lies between (Argo parses templates with
    valyala/fasttemplate; an unclosed start tag fails the whole template)."""
    spans, index = [], 0
    while (start := text.find("{{", index)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            return None
        spans.append((start, end + 2))
        index = end + 2
    return spans


def argo_reads_tags(text: str, own: list[tuple[int, int]] = ()) -> bool:
    """Whether Argo would read any tag in ``text`` besides Shipyard's own, at the spans ``own``."""
    return argo_tag_spans(text) != list(own)


def param_parts(text: str, names: list[str]) -> list[tuple[str | None, str]]:
    """``text`` cut at each ``{{name}}`` (spaces allowed inside) of a declared param, in one pass:
    ``(None, text)`` for what is written as it is, ``(name, placeholder)`` for each param."""
    if not names:
        return [(None, text)]
    parts, at = [], 0
    for match in _params_pattern(tuple(names)).finditer(text):
        parts.append((None, text[at:match.start()]))
        parts.append((match.group(1), match.group(0)))
        at = match.end()
    parts.append((None, text[at:]))
    return parts


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


def concurrency_configmap(app: str) -> str:
    """The ConfigMap holding the limit of a job's semaphore (concurrency_limit)."""
    return f"{app}-concurrency"


def verbatim_configmap(app: str) -> str:
    """The ConfigMap holding the text of a job that Argo must not template."""
    return f"{app}-verbatim"


@functools.cache
def _param_pattern(name: str) -> re.Pattern:
    return re.compile(r"\{\{\s*" + re.escape(name) + r"\s*\}\}")


@functools.cache
def _params_pattern(names: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\{\{\s*(" + "|".join(re.escape(name) for name in names) + r")\s*\}\}")


__all__ = ["render_job", "executor_role_name", "concurrency_configmap", "verbatim_configmap", "shell_safe_params",
           "param_parts", "argo_tag_spans", "argo_reads_tags", "PARAM_ENV_PREFIX", "TEXT_ENV_PREFIX", "COMMAND_ENV"]
