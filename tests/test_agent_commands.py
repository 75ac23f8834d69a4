"""Commands carried out by the agent against the fake API server (the real kubernetes client underneath)."""

from __future__ import annotations

import pytest

from agent.commands import Executor
from agent.kube import KubeApi
from contract.protocol import MAX_LOG_BYTES, MAX_LOG_LINES, Command
from agent.settings import AgentSettings
from tests.fakekube import FakeKube, client_configuration

MANAGED = {"app.kubernetes.io/managed-by": "shipyard"}


@pytest.fixture
def kube():
    with FakeKube() as fake:
        fake.create("applications", {"metadata": {"name": "shop.web", "labels": {**MANAGED, "shipyard.dev/app": "web"}},
                                     "spec": {"project": "shipyard"}}, "argocd")
        fake.create("applications", {"metadata": {"name": "hand-made"}}, "argocd")
        fake.create("deployments", {"metadata": {"name": "web", "labels": MANAGED},
                                    "spec": {"replicas": 2, "template": {"metadata": {"labels": {"a": "b"}},
                                                                         "spec": {"containers": []}}}}, "shop")
        fake.create("deployments", {"metadata": {"name": "coredns"}, "spec": {"template": {}}}, "kube-system")
        fake.create("deployments", {"metadata": {"name": "ledger"}, "spec": {"template": {}}}, "payments")
        fake.create("rollouts", {"metadata": {"name": "api", "labels": MANAGED}, "spec": {"replicas": 3}}, "shop")
        fake.create("workflowtemplates", {"metadata": {"name": "backfill",
                                                       "labels": {**MANAGED, "shipyard.dev/app": "backfill"}},
                                          "spec": {"entrypoint": "main"}}, "shop")
        fake.create("cronworkflows", {"metadata": {"name": "report", "labels": {**MANAGED, "shipyard.dev/app": "report"}},
                                      "spec": {"schedules": ["0 3 * * *"],
                                               "workflowMetadata": {"labels": {"team": "data"}},
                                               "workflowSpec": {"entrypoint": "main", "arguments": {"parameters": [
                                                   {"name": "day", "value": "today"},
                                                   {"name": "dry", "value": "false", "description": "no writes"}]}}}},
                    "shop")
        fake.create("cronjobs", {"metadata": {"name": "nightly", "labels": {**MANAGED, "shipyard.dev/app": "nightly"}},
                                 "spec": {"schedule": "0 3 * * *", "jobTemplate": {
                                     "metadata": {"labels": {"team": "data"}},
                                     "spec": {"backoffLimit": 2, "template": {"spec": {
                                         "restartPolicy": "Never",
                                         "containers": [{"name": "main", "image": "busybox"}]}}}}}}, "shop")
        fake.create("pods", {"metadata": {"name": "web-1", "labels": MANAGED}}, "shop")
        yield fake


@pytest.fixture
def executor(kube):
    settings = AgentSettings(url="http://127.0.0.1:9", tenant="acme", cluster="prod", token="t",
                             namespaces_deny=("payments",), kube_configuration=client_configuration(kube))
    return Executor(KubeApi(settings.kubernetes_configuration()), settings)


def command(type_: str, kind: str, namespace: str, name: str, **params) -> Command:
    return Command(id=41, type=type_, kind=kind, namespace=namespace, name=name, params=params)


def test_refresh_annotates_the_application(kube, executor):
    result = executor.execute(command("refresh", "Application", "argocd", "shop.web"))
    assert result.ok and result.result == {"refresh": "normal"}
    annotations = kube.get("applications", "argocd", "shop.web")["metadata"]["annotations"]
    assert annotations == {"argocd.argoproj.io/refresh": "normal"}
    assert executor.execute(command("refresh", "Application", "argocd", "shop.web", hard=True)).ok
    assert kube.get("applications", "argocd", "shop.web")["metadata"]["annotations"][
        "argocd.argoproj.io/refresh"] == "hard"
    assert kube.get("applications", "argocd", "shop.web")["spec"] == {"project": "shipyard"}  # merged, not replaced


def test_restart_rolls_a_deployment_and_a_rollout(kube, executor):
    result = executor.execute(command("restart", "Deployment", "shop", "web"))
    assert result.ok
    template = kube.get("deployments", "shop", "web")["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == result.result["restartedAt"]
    assert template["metadata"]["labels"] == {"a": "b"} and template["spec"] == {"containers": []}
    assert kube.get("deployments", "shop", "web")["spec"]["replicas"] == 2
    result = executor.execute(command("restart", "Rollout", "shop", "api"))
    assert result.ok and kube.get("rollouts", "shop", "api")["spec"]["restartAt"] == result.result["restartedAt"]


def test_run_job_creates_a_workflow_from_its_template(kube, executor):
    result = executor.execute(command("run-job", "WorkflowTemplate", "shop", "backfill",
                                      parameters={"day": "2026-11-28", "dry": True}, run_id="run-7"))
    assert result.ok, result.error
    workflow = kube.get("workflows", "shop", result.result["name"])
    assert workflow["metadata"]["name"].startswith("backfill-")
    assert workflow["metadata"]["labels"] == {**MANAGED, "shipyard.dev/app": "backfill", "shipyard.dev/run": "run-7"}
    assert workflow["spec"] == {"workflowTemplateRef": {"name": "backfill"}, "arguments": {"parameters": [
        {"name": "day", "value": "2026-11-28"}, {"name": "dry", "value": "True"}]}}


def test_run_job_creates_a_workflow_from_a_cron_workflow_as_argo_submit_from_does(kube, executor):
    """A scheduled job on Argo runs now (a manual run, or trigger_on_deploy) as argo submit --from cronwf/...:
    its workflowSpec with the run's parameters, owned by the CronWorkflow."""
    result = executor.execute(command("run-job", "CronWorkflow", "shop", "report", parameters={"day": "2026-12-01"},
                                      run_id="run-8"))
    assert result.ok, result.error
    workflow = kube.get("workflows", "shop", result.result["name"])
    cron = kube.get("cronworkflows", "shop", "report")
    assert workflow["metadata"]["name"].startswith("report-")
    assert workflow["metadata"]["labels"] == {"team": "data", "workflows.argoproj.io/cron-workflow": "report",
                                              **MANAGED, "shipyard.dev/app": "report", "shipyard.dev/run": "run-8"}
    assert workflow["spec"] == {"entrypoint": "main", "arguments": {"parameters": [
        {"name": "day", "value": "2026-12-01"}, {"name": "dry", "value": "false", "description": "no writes"}]}}
    owner = workflow["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronWorkflow" and owner["uid"] == cron["metadata"]["uid"] and owner["controller"]
    wrong = executor.execute(command("run-job", "CronWorkflow", "shop", "report", parameters={"days": "1"}))
    assert not wrong.ok and "declares no parameter days" in wrong.error


def test_run_job_creates_a_job_from_a_cronjob_as_kubectl_does(kube, executor):
    result = executor.execute(command("run-job", "CronJob", "shop", "nightly"))
    assert result.ok, result.error
    assert result.result == {"kind": "Job", "name": "nightly-manual-41", "run": "41"}
    job = kube.get("jobs", "shop", "nightly-manual-41")
    cronjob = kube.get("cronjobs", "shop", "nightly")
    assert job["spec"] == cronjob["spec"]["jobTemplate"]["spec"]
    assert job["metadata"]["labels"] == {"team": "data", **MANAGED, "shipyard.dev/app": "nightly",
                                         "shipyard.dev/run": "41"}
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["uid"] == cronjob["metadata"]["uid"] and owner["controller"]
    again = executor.execute(command("run-job", "CronJob", "shop", "nightly"))
    assert not again.ok and "409" in again.error  # the same run twice is refused by the API server


def test_logs_are_bounded(kube, executor):
    kube.set_log("shop", "web-1", "".join(f"line {i}\n" for i in range(5000)))
    result = executor.execute(command("logs", "Pod", "shop", "web-1", tail_lines=3))
    assert result.ok and result.result["lines"] == ["line 4997", "line 4998", "line 4999"]
    result = executor.execute(command("logs", "Pod", "shop", "web-1", tail_lines=10**9))
    assert len(result.result["lines"]) == MAX_LOG_LINES and result.result["lines"][-1] == "line 4999"
    asked = [q for m, p, q in kube.requests if p.endswith("/log")][-1]
    assert asked["tailLines"] == str(MAX_LOG_LINES) and asked["limitBytes"] == str(MAX_LOG_BYTES)
    kube.set_log("shop", "web-1", "x" * (MAX_LOG_BYTES * 2) + "\n")
    result = executor.execute(command("logs", "Pod", "shop", "web-1"))
    assert result.result["truncated"] and sum(len(line) for line in result.result["lines"]) <= MAX_LOG_BYTES
    assert not executor.execute(command("logs", "Pod", "shop", "web-1", tail_lines=-1)).ok


def test_logs_of_the_previous_container_from_a_time_with_timestamps(kube, executor):
    kube.set_log("shop", "web-1", "booting\nready\n", start="2026-05-01T10:00:00")
    kube.set_log("shop", "web-1", "panic: nil map\n", previous=True, start="2026-05-01T09:59:00")
    crashed = executor.execute(command("logs", "Pod", "shop", "web-1", previous=True))
    assert crashed.ok and crashed.result["lines"] == ["panic: nil map"]
    asked = [q for m, p, q in kube.requests if p.endswith("/log")][-1]
    assert asked["previous"] == "true" and "sinceTime" not in asked and "timestamps" not in asked
    # following: only what came after the last line seen, each line with its time
    later = executor.execute(command("logs", "Pod", "shop", "web-1", since_time="2026-05-01T10:00:01Z",
                                     timestamps=True))
    assert later.result["lines"] == ["2026-05-01T10:00:01.000000000Z ready"]
    # a pod whose container never restarted: the API server's 400, as the command's error
    kube.set_log("shop", "web-2", "fine\n")
    kube.create("pods", {"metadata": {"name": "web-2", "labels": MANAGED}}, "shop")
    none = executor.execute(command("logs", "Pod", "shop", "web-2", previous=True))
    assert not none.ok and "previous terminated container" in none.error
    for bad in ({"previous": "yes"}, {"since_time": "yesterday"}, {"timestamps": 1}):
        assert not executor.execute(command("logs", "Pod", "shop", "web-1", **bad)).ok


@pytest.mark.parametrize("refused", [
    command("restart", "Deployment", "kube-system", "coredns"),
    command("restart", "Deployment", "payments", "ledger"),  # denied by the agent's own list
    command("restart", "Deployment", "argocd", "argocd-server"),
    command("refresh", "Application", "shop", "shop.web"),  # Applications live in the ArgoCD namespace only
    command("refresh", "Application", "argocd", "hand-made"),  # not Shipyard's
    command("restart", "Pod", "shop", "web-1"),
    command("delete", "Deployment", "shop", "web"),
    command("run-job", "CronJob", "shop", "nightly", run_id="../../etc"),
], ids=lambda c: f"{c.type}-{c.kind}-{c.namespace}-{c.name}")
def test_commands_outside_the_allowlist_are_refused_without_writing(kube, executor, refused):
    result = executor.execute(refused)
    assert not result.ok and result.error.startswith("refused by the agent:")
    assert kube.writes() == []


def test_api_errors_come_back_as_results(kube, executor):
    result = executor.execute(command("restart", "Deployment", "shop", "missing"))
    assert not result.ok and "404" in result.error and "missing" in result.error
    kube.fail(403)
    result = executor.execute(command("restart", "Deployment", "shop", "web"))
    assert not result.ok and "403" in result.error


def test_commands_from_a_newer_control_plane_are_read_and_broken_ones_refused():
    from contract.protocol import MalformedCommand, decode_command

    command, unknown = decode_command({"id": 3, "type": "restart", "kind": "Deployment", "namespace": "shop",
                                       "name": "web", "deadline": "5m", "trace": {"id": "x"}})
    assert command == Command(3, "restart", "Deployment", "shop", "web", {}) and unknown == ["deadline", "trace"]
    for broken, known_id in (([1], None), ({"type": "restart"}, None), ({"id": True}, None),
                             ({"id": 4, "type": "restart", "kind": "Deployment", "name": "web"}, 4),
                             ({"id": 5, "type": "logs", "kind": "Pod", "namespace": "s", "name": "p", "params": [1]}, 5)):
        with pytest.raises(MalformedCommand) as refused:
            decode_command(broken)
        assert refused.value.id == known_id  # answered as failed when the id could be read


def test_an_unreachable_api_server_fails_the_command_not_the_loop(kube, executor):
    kube.stop()
    result = executor.execute(command("restart", "Deployment", "shop", "web"))
    assert result.ok is False and "Kubernetes API unreachable" in result.error
