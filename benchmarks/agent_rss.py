"""Agent memory: peak RSS following many objects, and reading many large CRDs (goals: 128 MB and 80 MB).

Starts the fake Kubernetes API server (tests/fakekube.py), a local collector
speaking the agent protocol (tests/agent_collector.py), and the agent as its
own process (``python -m agent``, KUBECONFIG pointing at the fake server),
then reads the agent's VmHWM (peak RSS) and CPU time from /proc. Objects are
of realistic sizes, managedFields included (tests/fakekube.py's helpers when
it has them, else made here to the same sizes).

Scenarios:

- ``workloads``: 10,000 Applications (~13 KB), 10,000 Deployments (~7 KB) and
  20,000 Pods (~7.3 KB); peak once the collector holds every one of them
  (goal: under 128 MB, the agent's rendered limit);
- ``crds``: 300 CRDs of ~169 KB (real ones are 50-500 KB) and no followed
  object; peak once a heartbeat has reported the CRDs (goal: under 80 MB);
- ``churn``: the Applications of ``workloads`` alone, then 1% of them changed
  per second for ``--seconds``; RSS during churn and CPU.

Each run is a fresh agent; the medians of ``--runs`` runs are printed beside
the peer's: for ``crds`` the old listing (whole CRDs as JSON, pages of 100,
in a process that imports what the agent imports), for the others that
process idle (the agent's floor: interpreter, kubernetes client, httpx).

    .venv/bin/python benchmarks/agent_rss.py workloads [--runs 3] [--scale 1.0]
    .venv/bin/python benchmarks/agent_rss.py crds [--runs 3] [--crds 300] [--crd-kb 169]
    .venv/bin/python benchmarks/agent_rss.py churn [--apps 10000] [--seconds 60] [--churn 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.summaries import application  # noqa: E402
from tests.agent_collector import Collector  # noqa: E402
from tests.fakekube import FakeKube  # noqa: E402

HEALTHS = ("Healthy", "Healthy", "Healthy", "Progressing", "Degraded")
MANAGED = {"app.kubernetes.io/managed-by": "shipyard"}
SIZES_KB = {"Application": 13.0, "Deployment": 7.0, "Pod": 7.3}


# --- realistic objects ----------------------------------------------------------------------------

def _fields(value) -> dict:
    """A fieldsV1 set for a value: what server-side apply records of each manager's fields."""
    if isinstance(value, dict):
        return {f"f:{key}": _fields(item) for key, item in value.items() if key != "managedFields"}
    if isinstance(value, list):
        return {(f'k:{{"name":"{item["name"]}"}}' if isinstance(item, dict) and "name" in item else f"v:{i}"):
                _fields(item) for i, item in enumerate(value)}
    return {}


def _managed(obj: dict, *managers: tuple[str, str, str | None, tuple[str, ...]]) -> list[dict]:
    """managedFields for (manager, operation, subresource, top-level fields it owns)."""
    return [{"manager": manager, "operation": operation, "apiVersion": obj["apiVersion"],
             "time": "2026-11-28T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": _fields({key: obj[key] for key in owned if key in obj}),
             **({"subresource": sub} if sub else {})}
            for manager, operation, sub, owned in managers]


def _grow(obj: dict, kb: float, add) -> dict:
    """Call ``add(obj, n)`` until the object's JSON reaches ``kb``."""
    n = 0
    while len(json.dumps(obj)) < kb * 1024:
        add(obj, n)
        n += 1
    return obj


def _container(name: str, env: int) -> dict:
    return {"name": name, "image": f"registry.example.com/acme/{name}:1.4.{env}",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": f"SETTING_{i}", "value": f"value-{i}-of-the-service-configuration"} for i in range(env)],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                               "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                             {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                              "readOnly": True}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"}


def deployment(i: int, kb: float = SIZES_KB["Deployment"]) -> dict:
    workspace, name = f"ws{i % 50}", f"app{i}"
    labels = {**MANAGED, "shipyard.dev/app": name, "shipyard.dev/workspace": workspace}
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": workspace, "labels": labels,
                        "annotations": {"deployment.kubernetes.io/revision": "3"}},
           "spec": {"replicas": 2, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                    "selector": {"matchLabels": {"shipyard.dev/app": name}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"containers": [_container(name, 0)], "restartPolicy": "Always",
                                          "serviceAccountName": name, "dnsPolicy": "ClusterFirst",
                                          "volumes": [{"name": "config", "configMap": {"name": f"{name}-config"}}]}}},
           "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                      "availableReplicas": 2,
                      "conditions": [{"type": t, "status": "True", "reason": r, "message": m,
                                      "lastUpdateTime": "2026-11-28T00:00:00Z", "lastTransitionTime": "2026-11-28T00:00:00Z"}
                                     for t, r, m in (("Available", "MinimumReplicasAvailable",
                                                      "Deployment has minimum availability."),
                                                     ("Progressing", "NewReplicaSetAvailable",
                                                      f'ReplicaSet "{name}-5d8f7c9b4" has successfully progressed.'))]}}

    def add(o, n):
        o["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": f"EXTRA_{n}", "value": f"value-{n}-of-the-service-configuration"})
        o["metadata"]["managedFields"] = _managed(o, ("argocd-controller", "Apply", None, ("metadata", "spec")),
                                                  ("kube-controller-manager", "Update", "status", ("status",)))
    return _grow(obj, kb, add)


def pod(i: int, kb: float = SIZES_KB["Pod"]) -> dict:
    workspace, name = f"ws{i % 50}", f"app{i // 2}"
    labels = {**MANAGED, "shipyard.dev/app": name, "shipyard.dev/workspace": workspace,
              "pod-template-hash": "5d8f7c9b4"}
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{name}-5d8f7c9b4-{i % 2}x{i:05d}", "namespace": workspace, "labels": labels,
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-5d8f7c9b4",
                                             "uid": f"{i:08d}-0000-4000-8000-000000000000", "controller": True,
                                             "blockOwnerDeletion": True}]},
           "spec": {"containers": [_container(name, 0)], "nodeName": f"node-{i % 40}", "serviceAccountName": name,
                    "restartPolicy": "Always", "schedulerName": "default-scheduler", "priority": 0,
                    "tolerations": [{"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 300} for t in ("not-ready", "unreachable")],
                    "volumes": [{"name": "config", "configMap": {"name": f"{name}-config", "defaultMode": 420}},
                                {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]},
           "status": {"phase": "Running", "hostIP": f"10.0.{i % 40}.1", "podIP": f"10.1.{i // 250 % 250}.{i % 250}",
                      "startTime": "2026-11-28T00:00:00Z", "qosClass": "Burstable",
                      "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-11-28T00:00:00Z"}
                                     for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                               "PodScheduled")],
                      "containerStatuses": [{"name": name, "ready": True, "started": True, "restartCount": i % 3,
                                             "image": f"registry.example.com/acme/{name}:1.4.0",
                                             "imageID": f"registry.example.com/acme/{name}@sha256:{i:064x}",
                                             "containerID": f"containerd://{i:064x}",
                                             "state": {"running": {"startedAt": "2026-11-28T00:00:01Z"}},
                                             "lastState": {}}]}}

    def add(o, n):
        o["spec"]["containers"][0]["env"].append({"name": f"EXTRA_{n}", "value": f"value-{n}-of-the-configuration"})
        o["metadata"]["managedFields"] = _managed(o, ("kube-controller-manager", "Update", None, ("metadata", "spec")),
                                                  ("kubelet", "Update", "status", ("status",)))
    return _grow(obj, kb, add)


def argo_application(i: int, revision: str, health: str, kb: float = SIZES_KB["Application"]) -> dict:
    workspace, name = f"ws{i % 50}", f"app{i}"
    obj = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": f"{workspace}.{name}", "namespace": "argocd",
                     "labels": {**MANAGED, "shipyard.dev/app": name, "shipyard.dev/workspace": workspace},
                     "annotations": {"argocd.argoproj.io/manifest-generate-paths": f"/workspaces/{workspace}/{name}"}},
        "spec": {"project": "shipyard", "destination": {"server": "https://kubernetes.default.svc",
                                                        "namespace": workspace},
                 "source": {"repoURL": "https://shipyard.example/git/acme/prod.git", "targetRevision": "main",
                            "path": f"workspaces/{workspace}/{name}"},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
        "status": {"sync": {"status": "Synced", "revision": revision,
                            "comparedTo": {"source": {"repoURL": "https://shipyard.example/git/acme/prod.git",
                                                      "path": f"workspaces/{workspace}/{name}"}}},
                   "health": {"status": health},
                   "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)",
                                      "startedAt": "2026-11-29T00:00:00Z", "finishedAt": "2026-11-29T00:00:05Z",
                                      "syncResult": {"revision": revision, "resources": []}},
                   "resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": workspace,
                                  "name": name, "status": "Synced", "health": {"status": health}}],
                   "history": [{"id": n, "revision": f"{n:040x}", "deployedAt": "2026-11-28T00:00:00Z"}
                               for n in range(3)],
                   "reconciledAt": "2026-11-29T00:00:06Z", "sourceType": "Directory"},
    }

    def add(o, n):
        kind = ("Service", "ConfigMap", "ServiceAccount", "Secret", "HorizontalPodAutoscaler", "RoleBinding")[n % 6]
        entry = {"version": "v1", "kind": kind, "namespace": workspace, "name": f"{name}-{kind.lower()}-{n}",
                 "status": "Synced"}
        o["status"]["resources"].append(entry)
        o["status"]["operationState"]["syncResult"]["resources"].append(
            {**entry, "message": f"{kind.lower()}/{entry['name']} configured", "hookPhase": "Running",
             "syncPhase": "Sync"})
        o["metadata"]["managedFields"] = _managed(o, ("argocd-server", "Update", None, ("spec",)),
                                                  ("argocd-application-controller", "Update", None, ("status",)))
    return _grow(obj, kb, add)


def crd(i: int, kb: float) -> dict:
    group, plural = f"group{i % 30}.example.io", f"widgets{i}"
    obj = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/version": "1.2.3"},
                        "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.1"}},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": plural, "singular": plural[:-1], "kind": f"Widget{i}", "listKind": f"Widget{i}List"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {}}}}]},
           "status": {"acceptedNames": {"plural": plural, "kind": f"Widget{i}"}, "storedVersions": ["v1"]}}

    def add(o, n):
        o["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][f"field{n}"] = {
            "type": "object", "description": f"Field {n} configures one aspect of the widget; " * 8,
            "properties": {f"sub{k}": {"type": "string", "description": f"Setting {k} of field {n}, as the "
                                                                        "controller reads it."} for k in range(8)}}
    return _grow(obj, kb, add)


# --- measuring ------------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])  # kB
    return fields


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def _environment(kube: FakeKube, collector: Collector, workdir: Path) -> dict:
    (workdir / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
        "users": [{"name": "agent", "user": {"token": kube.token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}]}))
    return {**os.environ, "KUBECONFIG": str(workdir / "kubeconfig"), "SHIPYARD_URL": collector.url,
            "SHIPYARD_TENANT": "acme", "SHIPYARD_CLUSTER": "prod", "SHIPYARD_AGENT_TOKEN": collector.token,
            "SHIPYARD_METRICS_PORT": "0", "SHIPYARD_LOG_LEVEL": "WARNING", "SHIPYARD_HEARTBEAT_INTERVAL": "5"}


# The peer: a process importing what the agent imports; with "crds", listing whole CRDs as the agent did.
PEER = """
import json, sys, time
from agent.main import Agent
from agent.kube import CRD, KubeApi
from agent.settings import AgentSettings
api = KubeApi(AgentSettings(url="http://127.0.0.1:9", tenant="t", cluster="c", token="x").kubernetes_configuration())
names, token = [], None
while sys.argv[1] == "crds":
    page = json.loads(api.custom.list_cluster_custom_object(CRD.group, CRD.version, CRD.plural, limit=100,
                      _continue=token, _preload_content=False).data)
    names += [item["metadata"]["name"] for item in page["items"]]
    token = page["metadata"].get("continue")
    if not token:
        break
print(len(names), flush=True)
sys.stdin.read()
"""


def peer_peak(scenario: str, env: dict) -> float:
    """The peer's VmHWM in MB."""
    peer = subprocess.Popen([sys.executable, "-c", PEER, scenario], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        peer.stdout.readline()
        return proc_status(peer.pid)["VmHWM"] / 1024
    finally:
        peer.stdin.close()
        peer.wait(30)


def run_once(kube: FakeKube, scenario: str, expected: dict[str, int]) -> tuple[float, float, float]:
    """One agent, to its peak: (VmHWM MB, seconds to the goal, CPU seconds)."""
    collector = Collector().start()
    env = _environment(kube, collector, Path(tempfile.mkdtemp(prefix="agent-rss-")))
    agent = subprocess.Popen([sys.executable, "-m", "agent"], env=env, cwd=ROOT)
    try:
        if scenario == "crds":
            took = wait_for(lambda: any(len(h.get("crds") or ()) >= expected["crds"] for h in collector.heartbeats),
                            300, "a heartbeat with the CRDs")
        else:
            took = wait_for(lambda: all(len(collector.of_kind(kind)) == n for kind, n in expected.items()),
                            600, "every object at the collector")
        time.sleep(1.0)  # the reporter's last batch and the heartbeat after it
        return proc_status(agent.pid)["VmHWM"] / 1024, took, cpu_seconds(agent.pid)
    finally:
        agent.terminate()
        agent.wait(30)
        collector.stop()


def peaks(args) -> None:
    kube = FakeKube(history=10_000, bookmark_interval=5.0, crds=None).start()
    expected: dict[str, int] = {}
    if args.scenario == "crds":
        for i in range(args.crds):
            kube.create("customresourcedefinitions", crd(i, args.crd_kb))
        expected["crds"] = args.crds
    else:
        counts = {"Application": int(10_000 * args.scale), "Deployment": int(10_000 * args.scale),
                  "Pod": int(20_000 * args.scale)}
        makers = {"Application": lambda i: argo_application(i, "0" * 40, "Healthy"), "Deployment": deployment,
                  "Pod": pod}
        for kind, n in counts.items():
            template = makers[kind](0)
            print(f"{n} {kind}s of {len(json.dumps(template)) / 1024:.1f} KB", flush=True)
            for i in range(n):
                kube.create(kind, makers[kind](i) if i < 50 else _renamed(kind, template, i))
        expected = counts
    runs = [run_once(kube, args.scenario, expected) for _ in range(args.runs)]
    collector = Collector().start()
    peer = [peer_peak(args.scenario, _environment(kube, collector, Path(tempfile.mkdtemp(prefix="agent-rss-"))))
            for _ in range(args.runs)]
    collector.stop()
    kube.stop()
    what = "listing whole CRDs (the old way)" if args.scenario == "crds" else "the agent's imports, idle"
    print(f"{args.scenario}: agent peak RSS (VmHWM) median {statistics.median(r[0] for r in runs):.1f} MB "
          f"(runs: {', '.join(f'{r[0]:.1f}' for r in runs)}); peer, {what}: median {statistics.median(peer):.1f} MB "
          f"(runs: {', '.join(f'{p:.1f}' for p in peer)})")
    print(f"{args.scenario}: time to the goal median {statistics.median(r[1] for r in runs):.1f} s, "
          f"agent CPU median {statistics.median(r[2] for r in runs):.1f} s")


def _renamed(kind: str, template: dict, i: int) -> dict:
    """The template object under the i-th name and labels (making 40,000 distinct objects takes minutes)."""
    workspace = f"ws{i % 50}"
    name = f"app{i // 2}" if kind == "Pod" else f"app{i}"
    meta = dict(template["metadata"], namespace="argocd" if kind == "Application" else workspace,
                labels={**template["metadata"]["labels"], "shipyard.dev/app": name, "shipyard.dev/workspace": workspace})
    meta["name"] = {"Application": f"{workspace}.{name}", "Pod": f"{name}-5d8f7c9b4-x{i:05d}"}.get(kind, name)
    return dict(template, metadata=meta)


def churn(args) -> None:
    rng = random.Random(1)
    kube = FakeKube(history=max(10_000, args.apps * 2), bookmark_interval=5.0).start()
    for i in range(args.apps):
        kube.create("applications", argo_application(i, "0" * 40, "Healthy") if i < 50 else _renamed(
            "Application", argo_application(0, "0" * 40, "Healthy"), i))
    collector = Collector().start()
    env = _environment(kube, collector, Path(tempfile.mkdtemp(prefix="agent-rss-")))
    agent = subprocess.Popen([sys.executable, "-m", "agent"], env=env, cwd=ROOT)
    samples: list[int] = []
    try:
        took = wait_for(lambda: len(collector.of_kind("Application")) == args.apps, 300, "the first snapshot")
        after_sync = proc_status(agent.pid)
        cpu_sync = cpu_seconds(agent.pid)
        print(f"first snapshot of {args.apps} Applications at the collector after {took:.1f} s; "
              f"RSS {after_sync['VmRSS'] / 1024:.1f} MB, CPU {cpu_sync:.1f} s")
        per_second = max(1, int(args.apps * args.churn))
        changes = 0
        for second in range(args.seconds):
            started = time.monotonic()
            for _ in range(per_second):
                i = rng.randrange(args.apps)
                kube.update("applications", "argocd", f"ws{i % 50}.app{i}", {"status": {
                    "sync": {"revision": f"{rng.getrandbits(160):040x}"}, "health": {"status": rng.choice(HEALTHS)},
                    "reconciledAt": time.strftime("%Y-%m-%dT%H:%M:%SZ")}})
                changes += 1
            samples.append(proc_status(agent.pid)["VmRSS"])
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        expected = {(o["metadata"]["namespace"], o["metadata"]["name"]): application(o)
                    for o in kube.items("applications")}
        lag = wait_for(lambda: collector.of_kind("Application") == expected, 120, "the collector to catch up")
        status = proc_status(agent.pid)
        cpu = cpu_seconds(agent.pid)
        print(f"churn: {changes} changes over {args.seconds} s ({per_second}/s); collector exact "
              f"{lag:.2f} s after the last change; batches {collector.batches}")
        print(f"agent RSS: after first sync {after_sync['VmRSS'] / 1024:.1f} MB, during churn median "
              f"{sorted(samples)[len(samples) // 2] / 1024:.1f} MB, max {max(samples) / 1024:.1f} MB, "
              f"end {status['VmRSS'] / 1024:.1f} MB, peak (VmHWM) {status['VmHWM'] / 1024:.1f} MB")
        print(f"agent CPU: {cpu_sync:.1f} s to list and snapshot, {cpu - cpu_sync:.1f} s for {args.seconds} s of "
              f"churn ({100 * (cpu - cpu_sync) / args.seconds:.1f}% of a core)")
    finally:
        agent.terminate()
        agent.wait(30)
        collector.stop()
        kube.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=("workloads", "crds", "churn"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="workloads: share of 10k/10k/20k objects")
    parser.add_argument("--crds", type=int, default=300)
    parser.add_argument("--crd-kb", type=float, default=169.0)
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--churn", type=float, default=0.01, help="share of the Applications changed per second")
    args = parser.parse_args()
    churn(args) if args.scenario == "churn" else peaks(args)


if __name__ == "__main__":
    main()
