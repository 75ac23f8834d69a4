"""``shipyard deploy --wait``: a pipeline step that fails on a broken release, with a code per reason.

The real ``shipyard`` command, as a CI job runs it (no terminal: timestamped lines), against a
control plane on loopback with a SIMULATED cluster reporting to it (tests/browser.py's
``live_plane``, no browser): a good release exits 0 once Healthy; pods that crash exit 9 with the
reason; a failed sync 8 with ArgoCD's message; a rollout slower than --timeout 10; a cluster
whose agent is not heard from 11; an invalid spec 1 with FILE:LINE:COL. The wait's own rules
(cli.wait.observe) are checked directly too: the grace a degraded version gets, a job done when
synced, a replaced version.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import wait
from tests.browser import live_plane  # noqa: F401 - the fixture
from tests.plane import service_spec

ROOT = Path(__file__).resolve().parent.parent
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def shipyard(plane, *args: str, spec: str | None = None, tmp_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHIPYARD_URL": plane.url, "SHIPYARD_TOKEN": plane.admin.token,
           "XDG_CONFIG_HOME": str(tmp_path or ROOT / "nowhere")}
    if spec is not None:
        path = tmp_path / "web.yaml"
        path.write_text(spec)
        args = (*args, str(path))
    return subprocess.run([SHIPYARD, *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_good_release_exits_0_once_healthy_a_broken_one_with_its_reason(live_plane, tmp_path):  # noqa: F811
    live_plane.wait_healthy("storefront/web")
    good = shipyard(live_plane, "deploy", "--wait", "--timeout", "60s",
                    spec=service_spec("web", image="ghcr.io/acme/web:2.0", extra="replicas: 2\n"), tmp_path=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "demo:storefront/web v2: running" in good.stderr
    assert live_plane.status("storefront", "web")["versions"][0]["status"] == "healthy"
    traced = shipyard(live_plane, "trace", "demo:storefront/web", "2", tmp_path=tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert re.search(r"^accepted\s+\d{4}-\d\d-\d\dT\S+\s+-\s+author admin, source cli", traced.stdout, re.M)
    for step in ("committed", "synced", "healthy"):  # each reached, with its time after the one before
        assert re.search(rf"^{step}\s+\d{{4}}-\d\d-\d\dT\S+\s+\d+\.\d s\s", traced.stdout, re.M), traced.stdout
    # no terminal: one timestamped line per state change, for CI logs
    assert any(line[:8].count(":") == 2 and "v2" in line for line in good.stderr.splitlines())

    live_plane.inject("storefront/web", pods="CrashLoopBackOff", image="ghcr.io/acme/web:3.0")
    broken = shipyard(live_plane, "deploy", "--wait", "--timeout", "60s",
                      spec=service_spec("web", image="ghcr.io/acme/web:3.0", extra="replicas: 2\n"), tmp_path=tmp_path)
    assert broken.returncode == 9, broken.stderr
    assert "v3: degraded" in broken.stderr and "CrashLoopBackOff" in broken.stderr
    # and the last Kubernetes Events of its objects, as kubectl describe shows them
    assert re.search(r"^  event \S+ Warning BackOff Pod/web-\S+: Back-off restarting failed container", broken.stderr,
                     re.M), broken.stderr

    shown = shipyard(live_plane, "status", "demo:storefront/web", tmp_path=tmp_path)
    assert shown.returncode == 0 and "CrashLoopBackOff" in shown.stdout and "newest v3" in shown.stdout
    assert re.search(r"^\S+\s+Warning\s+BackOff\s+Pod/web-\S+\s+Back-off restarting", shown.stdout, re.M), shown.stdout
    listed = shipyard(live_plane, "versions", "demo:storefront/web", tmp_path=tmp_path)
    assert re.search(r"^\s*3\s+deploy\s+degraded\s", listed.stdout, re.M), listed.stdout
    assert re.search(r"^\s*2\s+deploy\s+replaced\s", listed.stdout, re.M)
    assert "v3 degraded:" in listed.stderr and "CrashLoopBackOff" in listed.stderr

    rolled = shipyard(live_plane, "rollback", "demo:storefront/web", "2", "--wait", "--timeout", "60s",
                      "--output", "json", tmp_path=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    document = json.loads(rolled.stdout)
    assert document["ok"] and document["apps"][0]["end"] == "healthy" and document["apps"][0]["version"] == 4


@pytest.mark.slow
def test_a_failed_sync_a_timeout_an_offline_agent_and_an_invalid_spec(live_plane, tmp_path):  # noqa: F811
    live_plane.wait_healthy("storefront/web")
    live_plane.inject("storefront/web", sync="Failed")
    failed = shipyard(live_plane, "deploy", "--wait", "--timeout", "60s",
                      spec=service_spec("web", image="ghcr.io/acme/web:2.0"), tmp_path=tmp_path)
    assert failed.returncode == 8, failed.stderr
    assert "the sync failed" in failed.stderr and "failed to apply" in failed.stderr
    table = shipyard(live_plane, "apps", tmp_path=tmp_path).stdout
    assert re.search(r"demo:storefront/web\s+service\s+SyncFailed\s", table), table
    assert re.search(r"demo:data/backfill\s+job\s+Healthy\s+Synced\s+1\s+1\s", table), table

    live_plane.inject("storefront/web", rollout_seconds=60)
    slow = shipyard(live_plane, "deploy", "--wait", "--timeout", "3s",
                    spec=service_spec("web", image="ghcr.io/acme/web:3.0"), tmp_path=tmp_path)
    assert slow.returncode == 10, slow.stderr
    assert "not running before the timeout" in slow.stderr
    live_plane.clear()

    live_plane.app.config["AGENT_ONLINE_WITHIN"] = 0.0  # the agent is not heard from "within" anything now
    try:
        offline = shipyard(live_plane, "deploy", "--wait", "--timeout", "60s",
                           spec=service_spec("web", image="ghcr.io/acme/web:4.0"), tmp_path=tmp_path)
    finally:
        live_plane.app.config["AGENT_ONLINE_WITHIN"] = 60.0
    assert offline.returncode == 11, offline.stderr
    assert "agent is" in offline.stderr

    invalid = shipyard(live_plane, "deploy", "--wait", spec=service_spec("web").replace("ports:", "portz:"),
                       tmp_path=tmp_path)
    assert invalid.returncode == 1
    assert f"{tmp_path / 'web.yaml'}:5:1:" in invalid.stderr and 'unknown field "portz"' in invalid.stderr


def answer(number: int, status: str, connectivity: str = "online", reasons=()) -> dict:
    return {"connectivity": connectivity, "reasons": list(reasons), "pods": [],
            "versions": [{"number": number, "status": status, "message": None}]}


def test_the_wait_gives_a_degraded_version_its_grace_and_takes_a_synced_job_as_done():
    item = wait.Followed("demo:shop/web", 3)
    wait.observe(item, answer(3, "degraded", reasons=["CrashLoopBackOff"]), now=100.0)
    assert item.end is None  # a first crash may still be retried away
    wait.observe(item, answer(3, "synced"), now=103.0)
    wait.observe(item, answer(3, "degraded"), now=104.0)
    wait.observe(item, answer(3, "degraded"), now=104.0 + wait.DEGRADED_GRACE - 0.1)
    assert item.end is None  # the grace starts again after a recovery
    wait.observe(item, answer(3, "degraded"), now=104.0 + wait.DEGRADED_GRACE)
    assert item.end == "degraded"

    job = wait.Followed("demo:data/backfill", 1, kind="job")
    wait.observe(job, answer(1, "synced"), now=0.0)
    assert job.end == "healthy"
    service = wait.Followed("demo:shop/web", 1)
    wait.observe(service, answer(1, "synced"), now=0.0)
    assert service.end is None  # a service is done when Healthy, not when synced

    gone = wait.Followed("demo:shop/web", 1)
    wait.observe(gone, answer(7, "healthy"), now=0.0)
    assert gone.end == "replaced"
    stale = wait.Followed("demo:shop/web", 1)
    wait.observe(stale, answer(1, "healthy", connectivity="stale"), now=0.0)
    assert stale.end == "offline"


class StatusOnly:
    """The API as the wait asks it: every app's status, always the same answer."""

    def __init__(self, reply: dict):
        self.reply, self.asked = reply, []

    def call(self, method: str, path: str, **kwargs):
        self.asked.append((method, path))
        return {"apps": [self.reply for _ in kwargs["json"]["apps"]]}


def test_a_wait_asks_for_every_app_in_one_request_and_a_delete_timing_out_says_so(capsys):
    still_there = {**answer(4, "healthy"), "known": True, "health": "Healthy", "revision": "abc"}
    api = StatusOnly(still_there)
    ticks = iter(range(0, 1000, 5))
    code = wait.wait_for(api, [{"app": f"demo:shop/app-{n}", "number": 4, "action": "delete"} for n in range(150)],
                         timeout=12, output="text", clock=lambda: float(next(ticks)), sleep=lambda seconds: None)
    assert code == 10
    assert api.asked[:2] == [("POST", "/api/v1/apps/status")] * 2  # 150 apps: 100, then 50, each round
    assert len(api.asked) == 2 * 3  # rounds 5, 10 and 15 s after the start, the last past the timeout
    assert "demo:shop/app-0 v4: still in its cluster at the timeout" in capsys.readouterr().err


@pytest.mark.slow
def test_logs_restart_refresh_and_a_job_run_followed_to_its_end(live_plane, tmp_path):  # noqa: F811
    live_plane.wait_healthy()
    live_plane.inject("storefront/web", pods="CrashLoopBackOff")
    live_plane.wait_until(lambda: "CrashLoopBackOff" in live_plane.status("storefront", "web")["reasons"],
                          "web crash-looping")
    previous = shipyard(live_plane, "logs", "demo:storefront/web", "--previous", tmp_path=tmp_path)
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout.splitlines()[-1] == "[simulated] fatal: exiting with status 1"  # no timestamps shown
    document = json.loads(shipyard(live_plane, "logs", "demo:storefront/web", "--tail", "1", "--output", "json",
                                   tmp_path=tmp_path).stdout)
    assert document["ok"] and len(document["lines"]) == 1
    live_plane.clear()

    restarted = shipyard(live_plane, "restart", "demo:storefront/web", tmp_path=tmp_path)
    assert restarted.returncode == 0 and "restarting (Deployment web)" in restarted.stderr
    assert shipyard(live_plane, "refresh", "demo:storefront/web", "--hard", tmp_path=tmp_path).returncode == 0
    refused = shipyard(live_plane, "restart", "demo:data/backfill", tmp_path=tmp_path)
    assert refused.returncode == 1 and "only services have pods" in refused.stderr

    missing = shipyard(live_plane, "run", "demo:data/backfill", "--wait", tmp_path=tmp_path)
    assert missing.returncode == 1 and "since" in missing.stderr  # a param without a default is required
    ran = shipyard(live_plane, "run", "demo:data/backfill", "--param", "since=2026-11-01", "--wait",
                   "--timeout", "60s", tmp_path=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"run \d+ succeeded", ran.stderr)
    listed = shipyard(live_plane, "runs", "demo:data/backfill", tmp_path=tmp_path)
    assert re.search(r"succeeded\s+\S+\s+since=2026-11-01", listed.stdout), listed.stdout
