"""Agent memory and CPU while following 10,000 ArgoCD Applications with steady churn (goal: under 80 MB RSS).

Starts the fake Kubernetes API server (tests/fakekube.py) with N Applications
shaped like ArgoCD's (sync/health/operation state, a resource list, history),
a local collector speaking the agent protocol (tests/agent_collector.py), and
the agent as its own process (``python -m agent``, KUBECONFIG pointing at the
fake server). Once the first snapshot has arrived it changes 1% of the
Applications per second, then reads VmRSS (sampled every second), VmHWM and
CPU time of the agent from /proc, and checks that the collector holds exactly
the server's state.

    .venv/bin/python benchmarks/agent_rss.py [--apps 10000] [--seconds 60] [--churn 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.summaries import application  # noqa: E402
from tests.agent_collector import Collector  # noqa: E402
from tests.fakekube import FakeKube  # noqa: E402

HEALTHS = ("Healthy", "Healthy", "Healthy", "Progressing", "Degraded")


def argo_application(i: int, revision: str, health: str) -> dict:
    workspace, name = f"ws{i % 50}", f"app{i}"
    resources = [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": workspace, "name": name,
                  "status": "Synced", "health": {"status": health}}] + [
        {"version": "v1", "kind": kind, "namespace": workspace, "name": f"{name}-{kind.lower()}", "status": "Synced"}
        for kind in ("Service", "ConfigMap", "ServiceAccount", "Secret", "HorizontalPodAutoscaler")]
    return {
        "metadata": {"name": f"{workspace}.{name}", "namespace": "argocd",
                     "labels": {"app.kubernetes.io/managed-by": "shipyard", "shipyard.dev/app": name,
                                "shipyard.dev/workspace": workspace},
                     "annotations": {"argocd.argoproj.io/manifest-generate-paths": f"/workspaces/{workspace}/{name}"}},
        "spec": {"project": "shipyard", "destination": {"server": "https://kubernetes.default.svc",
                                                        "namespace": workspace},
                 "source": {"repoURL": "https://shipyard.example/git/acme/prod.git", "targetRevision": "main",
                            "path": f"workspaces/{workspace}/{name}"},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
        "status": {"sync": {"status": "Synced", "revision": revision},
                   "health": {"status": health},
                   "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)",
                                      "startedAt": "2026-11-29T00:00:00Z", "finishedAt": "2026-11-29T00:00:05Z"},
                   "resources": resources,
                   "history": [{"id": n, "revision": f"{n:040x}", "deployedAt": "2026-11-28T00:00:00Z"}
                               for n in range(3)],
                   "reconciledAt": "2026-11-29T00:00:06Z", "sourceType": "Directory"},
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--churn", type=float, default=0.01, help="share of the Applications changed per second")
    args = parser.parse_args()
    rng = random.Random(1)

    kube = FakeKube(history=max(10_000, args.apps * 2), bookmark_interval=5.0).start()
    for i in range(args.apps):
        kube.create("applications", argo_application(i, "0" * 40, "Healthy"))
    collector = Collector().start()
    workdir = Path(tempfile.mkdtemp(prefix="agent-rss-"))
    (workdir / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
        "users": [{"name": "agent", "user": {"token": kube.token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}]}))
    env = {**os.environ, "KUBECONFIG": str(workdir / "kubeconfig"), "SHIPYARD_URL": collector.url,
           "SHIPYARD_TENANT": "acme", "SHIPYARD_CLUSTER": "prod", "SHIPYARD_AGENT_TOKEN": collector.token,
           "SHIPYARD_METRICS_PORT": "0", "SHIPYARD_LOG_LEVEL": "WARNING", "SHIPYARD_HEARTBEAT_INTERVAL": "5"}
    agent = subprocess.Popen([sys.executable, "-m", "agent"], env=env,
                             cwd=Path(__file__).resolve().parent.parent)
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


if __name__ == "__main__":
    main()
