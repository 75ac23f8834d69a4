"""TrueFoundry's job fields, and text the spec wrote that Argo Workflows would read as its own template tags.

concurrency_limit, alerts, ml_repo params, kustomize and trigger_on_deploy as TrueFoundry names them
(its SDK's Job model); and a job's env values and command reaching the container exactly as written
although Argo substitutes every ``{{...}}`` it finds, checked by putting the rendered WorkflowTemplate
through the substitutions Argo makes (``argo_run`` below) and then Kubernetes' own.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from contract.errors import SpecError
from contract.protocol import CommandResult
from contract.repository import application_name
from tests.plane import answer_commit_refreshes, deploy_yaml, served  # noqa: F401 - served: a fixture
from tests.test_status import argocd_application, client, observe, plane_app, reporter, world  # noqa: F401 - fixtures

API = "/api/v1"

JOB = """\
type: job
name: report
workspace_fqn: demo:data
image:
  type: image
  image_uri: ghcr.io/acme/report:1.0.0
  command: report --day {{day}}
params:
  - name: day
    default: monday
"""


def one(rendering, kind: str, name: str | None = None) -> dict:
    [found] = [o for o in rendering.objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def problems_of(rendered, profile: str, spec: str) -> list:
    with pytest.raises(SpecError) as error:
        rendered(profile, spec)
    return error.value.problems


# --- the fields -------------------------------------------------------------------------------------


EXPORTED = JOB + """\
trigger_on_deploy: true
concurrency_limit: 3
alerts:
  - notification_target: {type: slack-bot, notification_channel: bot, channels: ["#data-alerts"]}
    on_start: true
    on_completion: false
    on_failure: true
  - notification_channel: mail
    to_emails: [data@acme.dev]
"""


def test_an_exported_job_with_truefoundrys_fields_renders_with_a_note_for_each_without_effect(rendered):
    report = rendered("demo", EXPORTED.replace("    default: monday\n", "    default: monday\n    param_type: ml_repo\n"))
    notes = "\n".join(report.notes)
    assert "alerts have no effect" in notes and "sends no job notifications" in notes
    assert 'param "day" is an ml_repo param' in notes and "plain string" in notes
    assert "trigger_on_deploy" in notes and "control plane" in notes
    # the ml_repo param is an ordinary workflow parameter
    assert one(report, "WorkflowTemplate")["spec"]["arguments"]["parameters"] == [{"name": "day", "value": "monday"}]


@pytest.mark.parametrize("source", [JOB, JOB + "trigger: {type: scheduled, schedule: '@daily'}\n"],
                         ids=["manual", "scheduled"])
@pytest.mark.parametrize(("profile", "field"), [("demo", "semaphores"), ("aks", "semaphore")],
                         ids=["argo-3.6-on", "argo-3.5"])
def test_concurrency_limit_is_a_semaphore_whose_limit_is_a_configmap_key(rendered, source, profile, field):
    """Argo Workflows, "Synchronization": a Workflow-level semaphore sized by a ConfigMap key; runs past
    the limit wait for a free slot, as TrueFoundry queues them. The list semaphores is 3.6's; the aks
    profile names Argo Workflows 3.5.8, which knows only the single semaphore."""
    report = rendered(profile, source + "concurrency_limit: 3\n")
    workflow = report.objects[-1]
    spec = workflow["spec"].get("workflowSpec", workflow["spec"])
    ref = {"configMapKeyRef": {"name": "report-concurrency", "key": "limit"}}
    assert spec["synchronization"] == {field: [ref] if field == "semaphores" else ref}
    configmap = one(report, "ConfigMap", "report-concurrency")
    assert configmap["data"] == {"limit": "3"}
    assert configmap["metadata"]["namespace"] == workflow["metadata"]["namespace"] == "data"
    plain = one(rendered(profile, source), workflow["kind"])["spec"]
    assert "synchronization" not in plain.get("workflowSpec", plain)


def test_concurrency_limit_is_refused_where_nothing_could_queue_the_runs(rendered):
    [problem] = problems_of(rendered, "generic", JOB + "concurrency_limit: 1\n")
    assert problem.path == "/concurrency_limit"
    assert 'cluster "onprem"' in problem.message and "argo_workflows" in problem.message


def test_trigger_on_deploy_needs_a_default_for_every_param(rendered):
    [problem] = problems_of(rendered, "demo", JOB.replace("    default: monday\n", "") + "trigger_on_deploy: true\n")
    assert problem.path == "/params/0"
    assert 'param "day" needs a default' in problem.message and "trigger_on_deploy" in problem.message


def test_kustomize_is_refused_saying_why(rendered):
    [problem] = problems_of(rendered, "demo", JOB + "kustomize:\n  patch: {patches: []}\n")
    assert problem.path == "/kustomize" and "kustomize is not supported" in problem.message


def test_a_misspelt_alert_field_is_named():
    from renderer.spec import load_specs
    with pytest.raises(SpecError) as error:
        load_specs(JOB + "alerts:\n  - on_failur: true\n")
    [problem] = error.value.problems
    assert 'unknown field "on_failur"' in problem.message and 'did you mean "on_failure"' in problem.message


# --- what Argo templates, and what reaches the container ------------------------------------------

WORKFLOW = "report-8x2kq"
POD = "report-8x2kq-main-1234"
# the tags Argo's validator checks (workflow/validate: checkValidWorkflowVariablePrefix); others it leaves be
_ARGO_PREFIXES = ("workflow.", "inputs.", "outputs.", "steps.", "tasks.", "pod.", "node.", "item", "retries")


class ArgoRefused(Exception):
    """Argo would fail the run, or evaluate an expression tag (``{{=...}}``) in place of the text."""


def _tags(text: str) -> list[tuple[int, int]] | None:
    """valyala/fasttemplate's tags, as Argo parses templates: from "{{" to the next "}}"; None when a
    start tag is never closed (fasttemplate's "Cannot find end tag")."""
    spans, at = [], 0
    while (start := text.find("{{", at)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            return None
        spans.append((start, end + 2))
        at = end + 2
    return spans


def _replace(text: str, variables: dict[str, str]) -> str:
    """One pass of Argo's template.Replace with unresolved tags allowed: known tags filled (JSON-escaped,
    since the text is JSON), the rest left as they were; an expression tag ({{=...}}) would be evaluated."""
    spans = _tags(text)
    if spans is None:
        raise ArgoRefused("Cannot find end tag")
    out, at = [], 0
    for start, end in spans:
        tag = text[start + 2:end - 2]
        if tag.startswith("="):
            raise ArgoRefused(f"expression {tag} would be evaluated")
        value = variables.get(tag.strip())
        out.append(text[at:start])
        if value is not None:
            out.append(json.dumps(value)[1:-1])
        elif (nested := tag.rfind("{{")) > 0 and tag[nested + 2:] in variables:
            # a tag holding another one's start: the inner one is filled, the rest written back
            out.append("{{" + tag[:nested] + json.dumps(variables[tag[nested + 2:]])[1:-1])
        else:
            out.append(text[start:end])
        at = end
    return "".join(out) + text[at:]


def argo_run(template_spec: dict, arguments: dict[str, str]) -> dict:
    """The container Argo hands to Kubernetes for a run of the WorkflowTemplate: validation (an unknown
    workflow variable is refused), the template's global and input passes, then the pod's pass
    (workflow/controller: SubstituteParams, substitutePodParams), each over the template as JSON."""
    parameters = {p["name"]: arguments.get(p["name"], p.get("value")) for p in template_spec.get("arguments", {}).get("parameters", [])}
    variables = {"workflow.name": WORKFLOW, "workflow.namespace": "data",
                 **{f"workflow.parameters.{k}": v for k, v in parameters.items()}}
    text = json.dumps(template_spec["templates"][0])
    for start, end in _tags(text) or []:
        tag = text[start + 2:end - 2].strip()
        if tag.startswith(_ARGO_PREFIXES) and tag not in variables:
            raise ArgoRefused(f"failed to resolve {{{{{tag}}}}}")
    text = _replace(text, variables)  # globals
    text = _replace(text, {"inputs.parameters": "[]"})  # inputs: this template has none
    text = _replace(text, {**variables, "pod.name": POD})  # the pod
    return json.loads(text)["container"]


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion): $$ is $, $(NAME) a defined
    variable's value (not expanded again), anything else as written."""
    out, index = [], 0
    while index < len(text):
        if text.startswith("$$", index):
            out.append("$")
            index += 2
        elif text.startswith("$(", index) and (close := text.find(")", index)) > 0:
            name = text[index + 2:close]
            out.append(env.get(name, text[index:close + 1]))
            index = close + 1
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def kubernetes_start(container: dict, configmaps: dict[str, dict]) -> tuple[list[str], dict[str, str]]:
    """The argv and env the container's process gets from the kubelet."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = _expand(entry["value"], env)
        elif "configMapKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["configMapKeyRef"]
            env[entry["name"]] = configmaps[ref["name"]][ref["key"]]
    return [_expand(part, env) for part in container["command"]], env


def started(rendering, arguments: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    configmaps = {o["metadata"]["name"]: o["data"] for o in rendering.objects if o["kind"] == "ConfigMap"}
    container = argo_run(one(rendering, "WorkflowTemplate")["spec"], arguments or {})
    return kubernetes_start(container, configmaps)


TEMPLATED = ["{{workflow.name}}", "{{ inputs.parameters.x }}", "stray }}", "a {{ b", "{{=1+1}}", "{{ .Values.x }}"]


def _spec(command: str, env: dict[str, str]) -> str:
    lines = "".join(f"  E{i}: {json.dumps(value)}\n" for i, value in enumerate(env.values()))
    return JOB.replace("  command: report --day {{day}}\n", f"  command: {command}\n") + "env:\n" + lines


def test_env_values_reach_the_container_as_written(rendered):
    env = {f"E{i}": value for i, value in enumerate(TEMPLATED)}
    report = rendered("demo", _spec("report --day {{day}}", env))
    # what Argo would do with them as written in the template: fill one, refuse or evaluate others
    template = json.loads(json.dumps(one(report, "WorkflowTemplate")["spec"]))
    template["templates"][0]["container"]["env"] = [{"name": "A", "value": "{{workflow.name}}"}]
    assert argo_run(template, {})["env"][0]["value"] == WORKFLOW
    # an unknown workflow variable, one whose "}}" is some JSON's further on, an expression
    for refused in ("{{ inputs.parameters.x }}", "{{workflow.name", "{{=1+1}}"):
        template["templates"][0]["container"]["env"] = [{"name": "A", "value": refused}]
        with pytest.raises(ArgoRefused):
            argo_run(template, {})

    _, started_env = started(report)
    assert {name: started_env[name] for name in env} == env
    assert one(report, "ConfigMap", "report-verbatim")["data"] == {
        name: value for name, value in env.items() if "{{" in value}  # a lone "}}" is no tag: it stays inline
    assert {"name": "E2", "value": "stray }}"} in one(report, "WorkflowTemplate")["spec"]["templates"][0]["container"]["env"]


def test_a_shell_command_reaches_the_shell_as_written_with_its_params_filled(rendered, tmp_path):
    command = "printf '[%s]\\n' '{{workflow.name}}' {{day}} '{{ inputs.parameters.x }}' '}}' \"$0\""
    report = rendered("demo", _spec(json.dumps(command), {}))
    argv, env = started(report, {"day": "x; touch pwned"})
    assert argv[:2] == ["/bin/sh", "-c"]
    done = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", **env}, cwd=tmp_path, capture_output=True, text=True,
                          timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[{{workflow.name}}]", "[x; touch pwned]", "[{{ inputs.parameters.x }}]",
                                        "[}}]", "[/bin/sh]"]
    assert not (tmp_path / "pwned").exists()


def test_each_command_argument_reaches_the_process_as_written_with_its_params_filled(rendered):
    arguments = ["report", "{{workflow.name}}", "{{{day}}}", "--day={{ day }}", "a{{ inputs.parameters.x }}b{{day}}c }}",
                 "{{ .Values.x }}", "cost: $5", ""]
    report = rendered("demo", _spec(json.dumps(arguments), {}))
    value = "tuesday"
    argv, _ = started(report, {"day": value})
    assert argv == ["report", "{{workflow.name}}", "{" + value + "}", f"--day={value}",
                    f"a{{{{ inputs.parameters.x }}}}b{value}c }}}}", "{{ .Values.x }}", "cost: $5", ""]
    # an argument Argo reads nothing in but Shipyard's own tag is left in the template, as before
    container = one(report, "WorkflowTemplate")["spec"]["templates"][0]["container"]
    assert container["command"][3] == "--day={{workflow.parameters.day}}"


def test_a_param_default_argo_would_template_is_refused_and_a_description_left_out(rendered):
    spec = JOB.replace("    default: monday\n", '    default: "{{workflow.name}}"\n')
    [problem] = problems_of(rendered, "demo", spec)
    assert problem.path == "/params/0/default" and "Argo Workflows" in problem.message
    # without Argo nothing templates it: the default goes into the command as written, env values stay inline
    generic = rendered("generic", spec + "env:\n  E0: '{{workflow.name}}'\n")
    pod = one(generic, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["/bin/sh", "-c", "report --day {{workflow.name}}"]
    assert {"name": "E0", "value": "{{workflow.name}}"} in pod["containers"][0]["env"]
    assert "ConfigMap" not in [o["kind"] for o in generic.objects]
    described = rendered("demo", JOB.replace("    default: monday\n", "    default: monday\n    description: 'a {{ b'\n"))
    assert one(described, "WorkflowTemplate")["spec"]["arguments"]["parameters"] == [{"name": "day", "value": "monday"}]
    assert any("description is left out" in note for note in described.notes)


def test_an_env_name_shipyard_sets_in_the_container_is_refused(rendered):
    spec = _spec(json.dumps("echo '{{workflow.name}}' {{day}}"), {}) + "  SHIPYARD_COMMAND: mine\n"
    problems = problems_of(rendered, "demo", spec)
    assert [p.path for p in problems] == ["/env/SHIPYARD_COMMAND"]
    assert re.search(r"variable Shipyard sets", problems[0].message)


# --- trigger_on_deploy: the control plane runs the version once it is live -------------------------


RUN_ON_DEPLOY = """type: job
name: migrate
workspace_fqn: demo:storefront
image: {type: image, image_uri: 'ghcr.io/acme/migrate:IMAGE', command: 'migrate --to {{target}}'}
trigger_on_deploy: true
params:
  - name: target
    default: latest
"""


def _deploy(world, spec: str) -> dict:
    response = deploy_yaml(world["admin"], spec)
    assert response.status_code == 200, response.get_json()
    (version,) = response.get_json()["versions"]
    answer_commit_refreshes(world["app"])  # the agent has refreshed the commit's Applications
    return version


def _synced(rep, app: str, revision: str, health: str = "Healthy") -> None:
    observe(rep, "Application", "argocd", application_name("storefront", app),
            argocd_application("storefront", app, sync="Synced", revision=revision, health=health))
    rep.send_pending()


def test_trigger_on_deploy_runs_each_version_once_when_argocd_has_synced_it(plane_app, world, client):
    rep = reporter(client, world["demo"])
    admin = world["admin"]
    runs_url = f"{API}/apps/demo/storefront/migrate/runs"
    first = _deploy(world, RUN_ON_DEPLOY.replace("IMAGE", "1"))
    assert rep.poll_commands(0) == [] and admin.get(runs_url).get_json()["runs"] == []  # not before it is synced

    _synced(rep, "migrate", first["commit"], health="Progressing")
    (command,) = rep.poll_commands(0)
    assert (command.type, command.kind, command.namespace, command.name) == (
        "run-job", "WorkflowTemplate", "storefront", "migrate")
    assert command.params == {"parameters": {}}  # the WorkflowTemplate holds the defaults
    (run,) = admin.get(runs_url).get_json()["runs"]
    assert run["created_by"] == "admin (deploy of v1)" and run["params"] == {}
    rep.send_result(command.id, CommandResult(True, {"workflow": "migrate-a1b2c"}))

    # the same revision reported again (healthy now, after a resync) is no new deploy
    _synced(rep, "migrate", first["commit"])
    rep.resync()
    assert rep.poll_commands(0) == [] and len(admin.get(runs_url).get_json()["runs"]) == 1

    second = _deploy(world, RUN_ON_DEPLOY.replace("IMAGE", "2"))
    _synced(rep, "migrate", second["commit"])
    (command,) = rep.poll_commands(0)
    assert command.name == "migrate"
    assert [r["created_by"] for r in admin.get(runs_url).get_json()["runs"]] == ["admin (deploy of v2)",
                                                                                 "admin (deploy of v1)"]

    # a job without trigger_on_deploy starts no run when a version of it is live
    plain = _deploy(world, RUN_ON_DEPLOY.replace("IMAGE", "1").replace("migrate", "seed")
                    .replace("trigger_on_deploy: true\n", ""))
    _synced(rep, "seed", plain["commit"])
    assert rep.poll_commands(0) == []
    assert admin.get(f"{API}/apps/demo/storefront/seed/runs").get_json()["runs"] == []
