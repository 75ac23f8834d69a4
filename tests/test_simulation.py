"""The simulated compute plane: git as ArgoCD reads it, the sync/rollout state machine, switches, commands,
retries with the agent's jittered back-off, the import boundary (the agent never imports the simulation),
and end to end against the real control plane served on loopback."""

from __future__ import annotations

import re
import dataclasses

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.backoff import Backoff
from contract.protocol import Command
from simulation import ARGOCD_POLL_SECONDS, AGENT_VERSION, SimulatedCluster, SimulationError, \
    SimulationSettings, Switches, run_many, states_by_kind
from tests.plane import (add_cluster, add_workspace, deploy_yaml, make_user, served,  # noqa: F401 - served: a fixture
                         service_spec)

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


def test_a_fault_bound_to_an_image_hits_that_release_only_and_events_tell_of_it(offline, tmp_path):
    repo, cluster, clock = offline
    spec = (ROOT / "fixtures" / "specs" / "rolling-update.yaml").read_text()
    first = re.search(r"image_uri: (\S+)", spec).group(1)
    _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")
    cluster.switches.set("payments/ledger", pods="CrashLoopBackOff", image="ghcr.io/acme/ledger:bad")
    cluster.sync_repository()
    states = _at(cluster, clock, 3) and _at(cluster, clock, 5)
    assert states["Application"]["argocd/payments.ledger"]["health"] == "Healthy"
    scaled = [e for e in states["Event"].values() if e["object"] == "Deployment/ledger"]
    assert scaled and scaled[0]["reason"] == "ScalingReplicaSet" and scaled[0]["type"] == "Normal"

    bad = tmp_path / "ledger.yaml"
    bad.write_text(spec.replace(first, "ghcr.io/acme/ledger:bad"))
    _apply(repo, bad)
    cluster.sync_repository()
    states = _at(cluster, clock, 3) and _at(cluster, clock, 5)
    crashing = [p for p in states["Pod"].values() if p["app"] == "ledger" and p["reasons"]]
    assert crashing and all(p["reasons"] == ["CrashLoopBackOff"] for p in crashing)
    backoffs = [e for e in states["Event"].values() if e["reason"] == "BackOff"]
    assert {e["object"] for e in backoffs} == {f"Pod/{name.split('/')[1]}" for name, p in states["Pod"].items()
                                                if p["app"] == "ledger" and p["reasons"]}
    assert all(e["type"] == "Warning" and "Back-off restarting failed container" in e["message"] for e in backoffs)

    _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")  # the rollback: the good image again
    cluster.sync_repository()
    states = _at(cluster, clock, 3) and _at(cluster, clock, 5)
    assert states["Application"]["argocd/payments.ledger"]["health"] == "Healthy"
    assert not any(p["reasons"] for p in states["Pod"].values() if p["app"] == "ledger")


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
    # without Argo Workflows the job is a CronJob, and a run of it is a Job (kubectl create job --from=cronjob)
    sim = cluster.apps[(workspace, job)]
    sim.source = dataclasses.replace(sim.source, jobs=(("CronJob", name),))
    run = cluster.handle(Command(6, "run-job", "CronJob", workspace, name, {}))
    assert run.ok and run.result["kind"] == "Job" and run.result["name"].startswith(f"{name}-manual-")
    job_key = f"{workspace}/{run.result['name']}"
    running = _at(cluster, clock, 0.1)["Job"][job_key]
    assert (running["phase"], running["cronjob"]) == ("Running", name)
    assert _at(cluster, clock, 10)["Job"][job_key]["phase"] == "Succeeded"

    pod = next(name.split("/", 1)[1] for name, p in after["Pod"].items() if p["app"] == "ledger")
    logs = cluster.handle(Command(3, "logs", "Pod", "payments", pod, {"tail_lines": 2}))
    assert logs.ok and len(logs.result["lines"]) == 2 and all("[simulated]" in line for line in logs.result["lines"])
    missing = cluster.handle(Command(4, "restart", "Deployment", "payments", "nope"))
    assert not missing.ok and "not found in the simulated cluster" in missing.error
    refresh = cluster.handle(Command(5, "refresh", "Application", "argocd", "payments.ledger"))
    assert refresh.ok and cluster._refresh.is_set()


def commit_refresh(command_id: int, commit: str, name: str = "shipyard-demo") -> Command:
    return Command(command_id, "refresh", "Application", "argocd", name, {"commit": commit, "reason": "commit"})


def test_a_commits_refresh_fetches_at_once_unless_the_commit_is_there_already(offline, tmp_path):
    repo, cluster, clock = offline
    assert cluster.settings.poll_seconds == ARGOCD_POLL_SECONDS  # ArgoCD's default, 180 s
    spec = ROOT / "fixtures" / "specs" / "rolling-update.yaml"
    first = _apply(repo, spec)
    cluster.run_once()  # the first look at the repository is at once
    assert cluster.revision == first
    _at(cluster, clock, 10)
    seen = cluster.handle(commit_refresh(1, first))  # ArgoCD's poll got there first
    assert seen.ok and seen.result == {"simulated": True, "refresh": "skipped", "seen": True, "commit": first}
    assert not cluster._refresh.is_set()

    changed = tmp_path / "changed.yaml"
    changed.write_text(spec.read_text().replace("replicas: 3", "replicas: 4"))
    second = _apply(repo, changed)
    clock.now += 60
    cluster.run_once()
    assert cluster.revision == first  # no poll due for two more minutes
    # whichever Application it names (here the app of apps): one fetch compares them all
    refreshed = cluster.handle(commit_refresh(2, second))
    assert refreshed.ok and refreshed.result == {"simulated": True, "refresh": "normal", "commit": second}
    cluster.run_once()
    assert cluster.revision == second and cluster.apps[("payments", "ledger")].phase == "outofsync"
    ledger = _at(cluster, clock, 10)["Application"]["argocd/payments.ledger"]
    assert (ledger["sync"], ledger["health"], ledger["revision"]) == ("Synced", "Healthy", second)


def test_heartbeat_says_simulated(offline):
    repo, cluster, _ = offline
    _apply(repo, ROOT / "fixtures" / "specs" / "rolling-update.yaml")
    cluster.sync_repository()
    beat = cluster.heartbeat()
    assert beat.simulated is True and beat.agent_version == AGENT_VERSION \
        and beat.agent_version.startswith("simulated-")
    assert beat.namespaces == ["payments"]


# --- back-off and layering: the agent's jittered back-off, and the agent never importing the simulation -------


def test_retries_use_the_agents_jittered_backoff(tmp_path):
    def cluster_backing_off() -> SimulatedCluster:
        return SimulatedCluster(SimulationSettings(url="http://127.0.0.1:9", tenant="default", cluster="demo",
                                                   agent_token="unused", read_token="", mirror_dir=tmp_path / "m",
                                                   backoff_base=1.0, backoff_max=64.0))

    first, second = cluster_backing_off(), cluster_backing_off()
    try:
        for backoff in (first.report_backoff, first.command_backoff):
            assert type(backoff) is Backoff
        delays = [[cluster.command_backoff.next() for _ in range(6)] for cluster in (first, second)]
        assert delays[0] != delays[1]  # jittered: two clusters that failed together do not retry in step
        for sequence in delays:
            assert all(2 ** n * 0.5 <= delay <= 2 ** n for n, delay in enumerate(sequence))
    finally:
        first.close()
        second.close()


def test_an_unreachable_control_plane_is_retried_after_the_backoff_not_every_tick(offline):
    _, cluster, clock = offline  # its control plane, 127.0.0.1:9, refuses connections
    cluster.run_once()
    assert cluster.report_backoff.attempts == 1 and "reporting to the control plane" in cluster.last_error
    cluster.run_once()
    assert cluster.report_backoff.attempts == 1  # still backing off: the outbox keeps the changes meanwhile
    clock.now += cluster.settings.backoff_base
    cluster.run_once()
    assert cluster.report_backoff.attempts == 2

    cluster.command_backoff = Backoff(0.01, 0.01)  # the loop's own back-off, short for the test
    cluster.serve_commands(threading.Event(), iterations=3)
    assert cluster.command_backoff.attempts == 3 and "polling for commands" in cluster.last_error


def _modules_loaded_by(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_the_agent_does_not_import_the_simulation():
    agent_modules = sorted(path.stem for path in (ROOT / "agent").glob("*.py") if path.stem != "__main__")
    loaded = _modules_loaded_by("\n".join(f"import agent.{name}" for name in agent_modules))
    assert "agent" in loaded
    assert not loaded & {"simulation", "gitops", "webapp"}  # the agent's image ships agent/ alone


def test_the_simulation_imports_the_agent_but_not_the_control_plane():
    loaded = _modules_loaded_by("import simulation")
    assert "agent" in loaded
    assert not loaded & {"gitops", "webapp", "kubernetes"}


# --- end to end: the real control plane on loopback, the simulation reading its git and reporting to it ------


def _json(response):
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def _get(client, path):
    response = client.get(path)
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert response.status_code == 200, (response.status_code, body)
    return body


def _wait(probe, what: str, timeout: float = 60.0):
    """Poll ``probe`` until it returns something truthy; generous, since CI machines can be slow."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


def test_end_to_end_deploys_go_healthy_faults_show_and_commands_are_answered(plane_app, served, tmp_path):
    admin = make_user(plane_app, "admin", "tenant-admin")
    tokens = add_cluster(admin, "demo")
    add_workspace(admin, "demo", "storefront")
    first = deploy_yaml(admin, service_spec("web", image="ghcr.io/acme/web:1.0", extra="replicas: 2\n"))
    assert first.status_code == 200, first.get_json()

    settings = SimulationSettings(url=served, tenant=plane_app.config["TENANT"], cluster="demo",
                                  agent_token=tokens["agent_token"], read_token=tokens["read_token"],
                                  mirror_dir=tmp_path / "mirror", poll_seconds=0.2, step_seconds=0.2,
                                  heartbeat_seconds=0.5, command_wait_seconds=1, tick_seconds=0.05)
    cluster = SimulatedCluster(settings)
    cluster.switches.set("*", rollout_seconds=3600)  # held in Progressing until the test lets it go
    stop = threading.Event()
    loop = threading.Thread(target=cluster.run, args=(stop,), daemon=True)
    loop.start()

    def status():
        return _get(admin, "/api/v1/apps/demo/storefront/web/status")

    def version(body, number):
        return next(v for v in body["versions"] if v["number"] == number)

    try:
        synced = _wait(lambda: (s := status()) and version(s, 1)["status"] == "synced" and s, "v1 synced")
        assert synced["sync"] == "Synced" and synced["health"] == "Progressing"
        assert synced["synced_revision"] == version(synced, 1)["commit"]
        cluster.switches.clear()
        healthy = _wait(lambda: (s := status()) and version(s, 1)["status"] == "healthy" and s, "v1 healthy")
        assert healthy["live_version"] == 1 and len(healthy["pods"]) == 2 and not healthy["stale"]

        second = deploy_yaml(admin, service_spec("web", image="ghcr.io/acme/web:2.0", extra="replicas: 2\n"))
        assert second.status_code == 200, second.get_json()
        moved = _wait(lambda: (s := status()) and s["live_version"] == 2 and version(s, 2)["status"] == "healthy"
                      and s, "v2 live and healthy")
        assert version(moved, 1)["status"] == "replaced"

        cluster.switches.set("storefront/web", pods="CrashLoopBackOff")
        crashing = _wait(lambda: (s := status()) and version(s, 2)["status"] == "degraded" and s, "v2 degraded")
        assert "CrashLoopBackOff" in crashing["reasons"] and "CrashLoopBackOff" in version(crashing, 2)["message"]
        cluster.switches.set("storefront/web", health="Degraded", message="simulated: database unreachable")
        degraded = _wait(lambda: (s := status()) and s["message"] == "simulated: database unreachable" and s,
                         "the Degraded message")
        assert version(degraded, 2)["status"] == "degraded" and degraded["reasons"] == []
        cluster.switches.clear()
        _wait(lambda: version(status(), 2)["status"] == "healthy", "v2 healthy again")

        agent = _get(admin, "/api/v1/clusters/demo/status")
        assert agent["simulated"] is True and agent["connectivity"] == "online"
        assert agent["agent"]["agent_version"].startswith("simulated-")

        for body in ({"type": "restart"}, {"type": "refresh"}, {"type": "logs", "params": {"tail_lines": 5}}):
            sent = admin.post("/api/v1/apps/demo/storefront/web/commands", json=body)
            assert sent.status_code == 201, sent.get_json()
            done = _wait(lambda: (c := _get(admin, f"/api/v1/commands/{sent.get_json()['id']}"))
                         and c["state"] in ("done", "failed") and c, f"{body['type']} answered")
            assert done["state"] == "done" and done["result"]["simulated"] is True, done
        assert any("[simulated]" in line for line in done["result"]["lines"])
        restarted = _wait(lambda: (s := status()) and s["pods"] and all(p["restarts"] == 1 for p in s["pods"])
                          and version(s, 2)["status"] == "healthy" and s, "pods restarted and healthy again")
        assert restarted["live_version"] == 2

        assert admin.delete("/api/v1/apps/demo/storefront/web").status_code in (200, 202)
        gone = _wait(lambda: (s := status()) and s["health"] == "Missing" and not s["pods"] and s, "the app gone")
        assert "gone" in gone["message"]
        objects = _get(admin, "/api/v1/clusters/demo/status")["objects"]
        assert not objects.get("Deployment") and not objects.get("Pod") and not objects.get("Application")
    finally:
        stop.set()
        loop.join(15)
        cluster.close()
    assert cluster.last_error is None, cluster.last_error


@pytest.mark.slow
def test_at_argocds_three_minute_poll_a_deploy_is_healthy_in_seconds_through_the_refresh(
        plane_app, served, tmp_path):  # noqa: F811 - served: the fixture imported above
    """The simulated plane at its default, ArgoCD's 180 s poll: a deploy is Healthy in seconds because the
    control plane's refresh after the commit reaches it; a cluster whose commands nobody claims (no
    refresh) waits for the poll."""
    admin = make_user(plane_app, "admin", "tenant-admin")
    stop = threading.Event()
    clusters, loops = {}, []
    for name, commands in (("fast", True), ("polled", False)):
        tokens = add_cluster(admin, name)
        add_workspace(admin, name, "storefront")
        clusters[name] = SimulatedCluster(SimulationSettings(
            url=served, tenant=plane_app.config["TENANT"], cluster=name, agent_token=tokens["agent_token"],
            read_token=tokens["read_token"], mirror_dir=tmp_path / name, heartbeat_seconds=1.0,
            command_wait_seconds=5))
        loops.append(threading.Thread(target=clusters[name].run, args=(stop,), kwargs={"commands": commands},
                                      daemon=True))
        loops[-1].start()

    def healthy(cluster: str) -> bool:
        status = _get(admin, f"/api/v1/apps/{cluster}/storefront/web/status")
        return status["versions"][0]["status"] == "healthy"

    try:
        _wait(lambda: all(c.revision for c in clusters.values()), "the first look at each repository")
        looked = clusters["polled"].revision
        started = time.monotonic()
        for name in clusters:
            deployed = deploy_yaml(admin, service_spec("web", cluster=name))
            assert deployed.status_code == 200, deployed.get_json()
        _wait(lambda: healthy("fast"), "the deploy healthy through the refresh", timeout=20)
        assert time.monotonic() - started < 20
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))
        assert not healthy("polled")  # its next look at the repository is minutes away
        assert clusters["polled"].revision == looked
    finally:
        stop.set()
        for loop in loops:
            loop.join(15)
        for cluster in clusters.values():
            cluster.close()


def test_run_many_reports_every_cluster_and_answers_a_job_run(plane_app, served, tmp_path):
    admin = make_user(plane_app, "admin", "tenant-admin")
    job = (ROOT / "fixtures" / "specs" / "job-manual.yaml").read_text()
    simulated = []
    for index in range(3):
        name = f"sim{index}"
        tokens = add_cluster(admin, name)
        add_workspace(admin, name, "data")
        assert deploy_yaml(admin, job.replace("demo:data", f"{name}:data")).status_code == 200
        simulated.append(SimulatedCluster(SimulationSettings(
            url=served, tenant=plane_app.config["TENANT"], cluster=name, agent_token=tokens["agent_token"],
            read_token=tokens["read_token"], mirror_dir=tmp_path / name, poll_seconds=0.2, step_seconds=0.1,
            heartbeat_seconds=0.5, command_wait_seconds=1)))
    stop = threading.Event()
    threads = run_many(simulated, stop, workers=2, tick_seconds=0.05)
    try:
        for index in range(3):
            _wait(lambda: _get(admin, f"/api/v1/apps/sim{index}/data/backfill/status")["health"]
                  == "Healthy", f"sim{index} healthy")
            assert _get(admin, f"/api/v1/clusters/sim{index}/status")["simulated"] is True
        run = admin.post("/api/v1/apps/sim1/data/backfill/runs", json={"params": {"since": "2026-01-01"}})
        assert run.status_code == 201, run.get_json()
        finished = _wait(lambda: next((r for r in _get(admin, "/api/v1/apps/sim1/data/backfill/runs")["runs"]
                                       if r["id"] == run.get_json()["id"] and r["state"] == "succeeded"), None),
                         "the job run succeeded")
        assert finished["workflow"].startswith("backfill-")
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        for cluster in simulated:
            cluster.close()


def test_shipyard_up_simulates_the_demo_cluster_until_every_example_is_healthy(tmp_path):
    from tests.test_cli_plane import api, start_up, stop

    plane = start_up(tmp_path / "data", tmp_path / "config", tmp_path / "server.log")
    try:
        announced = "".join(plane.process.stdout.readline() for _ in range(2))
        assert 'Cluster "demo" is SIMULATED' in announced and "--no-simulate" in announced
        assert "through the agent's refresh" in announced and "every 180 s" in announced
        assert plane.cli("login", "--url", plane.url, stdin=f"admin\n{plane.password}\n").returncode == 0
        client = api(plane)

        def get(path):
            return _get(client, path)

        def unhealthy():
            apps = get("/api/v1/apps")["apps"]
            statuses = {a["name"]: get(f"/api/v1/apps/demo/{a['workspace']}/{a['name']}/status") for a in apps}
            return {name: s["versions"][0]["status"] for name, s in statuses.items()
                    if s["versions"][0]["status"] != "healthy"}

        _wait(lambda: not unhealthy(), "every example healthy", timeout=120)
        agent = get("/api/v1/clusters/demo/status")
        assert agent["simulated"] is True and agent["agent"]["kubernetes_version"] == "1.33"
        assert "rollouts.argoproj.io" in agent["agent"]["crds"]

        # a new release at ArgoCD's 180 s poll: the refresh after its commit brings it in seconds
        started = time.monotonic()
        release = (ROOT / "fixtures" / "specs" / "web.yaml").read_text().replace("web:1.4.2", "web:1.4.3")
        deployed = client.put("/api/v1/apps", content=release, headers={"Content-Type": "application/yaml"})
        number = _json(deployed)["versions"][0]["number"]
        _wait(lambda: (newest := get("/api/v1/apps/demo/storefront/web/status")["versions"][0])["number"] == number
              and newest["status"] == "healthy", "the new release healthy", timeout=20)
        assert time.monotonic() - started < 20  # up's simulated pace: 2 s steps and a 4 s rollout
    finally:
        assert stop(plane.process) == 0
