"""The simulated compute plane: git as ArgoCD reads it, the sync/rollout state machine, switches, commands,
and end to end against the real control plane served on loopback."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from agent.protocol import Command
from agent.simulate import AGENT_VERSION, SimulatedCluster, SimulationError, SimulationSettings, Switches, \
    run_many, states_by_kind
from tests.plane import add_cluster, add_workspace, deploy_yaml, make_user, service_spec

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "clusters" / "demo.yaml"


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _apply(repo: Path, *specs: Path) -> str:
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "shipyard"), "apply", *map(str, specs), "--cluster", str(DEMO),
                           "--repo", str(repo)], capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.split()[0]


def _delete(repo: Path, app: str) -> None:
    subprocess.run([str(ROOT / ".venv" / "bin" / "shipyard"), "delete", app, "--cluster", str(DEMO), "--repo",
                    str(repo)], capture_output=True, text=True, cwd=ROOT, check=True)


@pytest.fixture
def offline(tmp_path):
    """A cluster repository written by `shipyard apply`, and a simulation reading it (no control plane)."""
    repo = tmp_path / "repo"
    clock = Clock()
    settings = SimulationSettings(url="http://127.0.0.1:9", tenant="default", cluster="demo", agent_token="unused",
                                  read_token="", mirror_dir=tmp_path / "mirror", git_url=str(repo), step_seconds=1.0,
                                  rollout_seconds=2.0, switch_file=tmp_path / "switches.yaml")
    cluster = SimulatedCluster(settings, clock=clock)
    yield repo, cluster, clock
    cluster.close()


def _at(cluster: SimulatedCluster, clock: Clock, seconds: float) -> dict:
    clock.now += seconds
    cluster.advance()
    return states_by_kind(cluster)


def test_reads_every_application_and_workload_of_the_repository(offline, tmp_path):
    repo, cluster, _ = offline
    revision = _apply(repo, *sorted((ROOT / "fixtures" / "specs").glob("*.yaml")))
    cluster.sync_repository()
    assert cluster.revision == revision
    apps = {key: sim.source for key, sim in cluster.apps.items()}
    assert ("storefront", "web") in apps and ("data", "backfill") in apps
    web = apps[("storefront", "web")]
    assert (web.application, web.argocd_namespace, web.namespace) == ("storefront.web", "argocd", "storefront")
    # web's replicas belong to its autoscaler: the simulation starts at the ScaledObject's minimum
    assert (web.workload_kind, web.workload_name, web.replicas) == ("Deployment", "web", 2)
    checkout = apps[("payments", "checkout")]
    assert checkout.workload_kind == "Rollout" and checkout.canary_steps > 0
    assert apps[("data", "backfill")].workload_kind is None
    assert ("WorkflowTemplate", "backfill") in apps[("data", "backfill")].jobs


def test_an_app_goes_out_of_sync_syncing_synced_healthy_at_the_revision(offline):
    repo, cluster, clock = offline
    revision = _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")
    cluster.sync_repository()
    (workspace, app), = cluster.apps
    application = f"argocd/{workspace}.{app}"
    seen = []
    for _ in range(12):
        state = _at(cluster, clock, 0.5)["Application"][application]
        seen.append((state["sync"], state["operation"], state["health"]))
        assert state["revision"] == revision and state["app"] == app and state["workspace"] == workspace
    order = list(dict.fromkeys(seen))
    assert order == [("OutOfSync", None, "Missing"), ("OutOfSync", "Running", "Progressing"),
                     ("Synced", "Succeeded", "Progressing"), ("Synced", "Succeeded", "Healthy")]
    states = states_by_kind(cluster)
    workload = states["Deployment"][f"{workspace}/{app}"]
    pods = list(states["Pod"].values())
    assert workload["ready"] == workload["replicas"] == len(pods) > 0
    assert all(p["phase"] == "Running" and p["ready"] and p["node"].startswith("simulated-") for p in pods)


def test_a_new_commit_rolls_only_the_apps_it_touches_and_a_deleted_app_goes(offline):
    repo, cluster, clock = offline
    specs = ROOT / "fixtures" / "specs"
    _apply(repo, specs / "rolling-update.yaml", specs / "blue-green.yaml")
    cluster.sync_repository()
    _at(cluster, clock, 10)
    old_pods = {name for name, p in states_by_kind(cluster)["Pod"].items() if p["app"] == "ledger"}
    spec = (specs / "rolling-update.yaml").read_text().replace("replicas: 3", "replicas: 4")
    changed = repo.parent / "changed.yaml"
    changed.write_text(spec)
    revision = _apply(repo, changed)
    cluster.sync_repository()
    rolling = {k: sim.phase for k, sim in cluster.apps.items()}
    assert rolling == {("payments", "ledger"): "outofsync", ("storefront", "catalog"): "done"}
    assert cluster.apps[("storefront", "catalog")].revision == revision  # compared again, nothing to sync
    during = _at(cluster, clock, 2.5)
    assert during["Application"]["argocd/payments.ledger"]["health"] == "Progressing"
    assert old_pods <= set(during["Pod"])  # the old pods serve until the new ones are ready
    after = _at(cluster, clock, 10)
    ledger_pods = {name for name, p in after["Pod"].items() if p["app"] == "ledger"}
    assert len(ledger_pods) == 4 and not ledger_pods & old_pods
    assert after["Deployment"]["payments/ledger"]["generation"] == 2
    _delete(repo, "payments/ledger")
    cluster.sync_repository()
    gone = _at(cluster, clock, 1)
    assert "argocd/payments.ledger" not in gone["Application"] and "Deployment" not in gone
    assert not [p for p in gone["Pod"].values() if p["app"] == "ledger"]
    assert [d.state for d in cluster.outbox.take(10_000) if d.name == "ledger"] == [None]


def test_switches_inject_degraded_health_failed_syncs_and_pod_failures(offline):
    repo, cluster, clock = offline
    _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")
    cluster.switches.set("payments/ledger", sync="Failed")
    cluster.sync_repository()
    failed = _at(cluster, clock, 3)["Application"]["argocd/payments.ledger"]
    assert (failed["sync"], failed["operation"], failed["health"]) == ("OutOfSync", "Failed", "Missing")
    assert "one or more objects failed to apply" in failed["message"] and "SyncError" in failed["conditions"]
    cluster.switches.set("payments/ledger")  # off: ArgoCD's retry syncs it
    healthy = _at(cluster, clock, 1) and _at(cluster, clock, 10)["Application"]["argocd/payments.ledger"]
    assert (healthy["sync"], healthy["health"]) == ("Synced", "Healthy")

    cluster.switches.set("*", health="Degraded", message="the simulated database is down")
    degraded = _at(cluster, clock, 0.5)["Application"]["argocd/payments.ledger"]
    assert (degraded["health"], degraded["message"]) == ("Degraded", "the simulated database is down")
    cluster.switches.clear()

    for reason in ("CrashLoopBackOff", "ImagePullBackOff", "OOMKilled"):
        cluster.switches.set("payments/ledger", pods=reason)
        states = _at(cluster, clock, 1)
        pods = [p for p in states["Pod"].values() if p["app"] == "ledger"]
        assert pods and all(reason in p["reasons"] and not p["ready"] for p in pods), pods
        assert states["Application"]["argocd/payments.ledger"]["health"] == "Degraded"
        assert states["Deployment"]["payments/ledger"]["ready"] == 0
    cluster.switches.set("payments/ledger")
    assert _at(cluster, clock, 1)["Application"]["argocd/payments.ledger"]["health"] == "Healthy"


def test_slow_rollouts_bring_pods_up_one_by_one(offline):
    repo, cluster, clock = offline
    _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")
    cluster.switches.set("*", rollout_seconds=30)
    cluster.sync_repository()
    ready = []
    for _ in range(8):
        states = _at(cluster, clock, 5)
        ready.append(states["Deployment"]["payments/ledger"]["ready"] if "Deployment" in states else 0)
    assert ready == sorted(ready) and ready[0] == 0 and ready[-1] == 3 and len(set(ready)) >= 3
    assert states["Application"]["argocd/payments.ledger"]["health"] == "Healthy"


def test_switch_file_is_read_when_it_changes_and_a_broken_one_is_ignored(tmp_path):
    path = tmp_path / "switches.yaml"
    switches = Switches(path)
    switches.reload()
    assert switches.fault_for("shop", "web").health is None
    path.write_text('"*": {rollout_seconds: 5}\nshop/web: {pods: CrashLoopBackOff, message: boom}\n')
    switches.reload()
    fault = switches.fault_for("shop", "web")
    assert (fault.pods, fault.message, fault.rollout_seconds) == ("CrashLoopBackOff", "boom", 5)
    assert switches.fault_for("shop", "api").pods is None
    path.write_text("shop/web: {pods: Sleepy}\n")  # a typo keeps what was there, and is logged
    switches.reload()
    assert switches.fault_for("shop", "web").pods == "CrashLoopBackOff"
    with pytest.raises(SimulationError, match="pods must be one of"):
        switches.set("shop/web", pods="Sleepy")
    with pytest.raises(SimulationError, match="unknown field"):
        switches.set("shop/web", helth="Degraded")


def test_commands_act_on_the_simulation(offline):
    repo, cluster, clock = offline
    specs = ROOT / "fixtures" / "specs"
    _apply(repo, specs / "rolling-update.yaml", specs / "job-manual.yaml")
    cluster.sync_repository()
    _at(cluster, clock, 10)
    restart = cluster.handle(Command(1, "restart", "Deployment", "payments", "ledger"))
    assert restart.ok and restart.result["simulated"]
    after = _at(cluster, clock, 0.5)
    assert after["Application"]["argocd/payments.ledger"]["health"] == "Progressing"
    assert all(p["restarts"] == 1 for p in after["Pod"].values() if p["app"] == "ledger")
    assert _at(cluster, clock, 5)["Application"]["argocd/payments.ledger"]["health"] == "Healthy"

    (workspace, job), = [k for k, sim in cluster.apps.items() if sim.source.jobs]
    kind, name = cluster.apps[(workspace, job)].source.jobs[0]
    run = cluster.handle(Command(2, "run-job", kind, workspace, name, {"parameters": {"day": "1"}}))
    assert run.ok and run.result["workflow"].startswith(f"{name}-")
    workflow = f"{workspace}/{run.result['workflow']}"
    assert _at(cluster, clock, 0.1)["Workflow"][workflow]["phase"] == "Running"
    assert _at(cluster, clock, 10)["Workflow"][workflow]["phase"] == "Succeeded"

    pod = next(name.split("/", 1)[1] for name, p in after["Pod"].items() if p["app"] == "ledger")
    logs = cluster.handle(Command(3, "logs", "Pod", "payments", pod, {"tail_lines": 2}))
    assert logs.ok and len(logs.result["lines"]) == 2 and all("[simulated]" in line for line in logs.result["lines"])
    missing = cluster.handle(Command(4, "restart", "Deployment", "payments", "nope"))
    assert not missing.ok and "not found in the simulated cluster" in missing.error
    refresh = cluster.handle(Command(5, "refresh", "Application", "argocd", "payments.ledger"))
    assert refresh.ok and cluster._refresh.is_set()


def test_heartbeat_says_simulated(offline):
    repo, cluster, _ = offline
    _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")
    cluster.sync_repository()
    beat = cluster.heartbeat()
    assert beat.simulated is True and beat.agent_version == AGENT_VERSION \
        and beat.agent_version.startswith("simulated-")
    assert beat.namespaces == ["payments"]
