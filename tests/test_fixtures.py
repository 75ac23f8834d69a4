"""The examples under fixtures/: valid, complete, renderable, and rendered the same way every time.

fixtures/specs doubles as documentation of the spec format, so these tests
also check that together the examples show every feature of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.errors import RenderError
from renderer.kube import CORE_ONLY, is_core
from renderer.profiles import load_profile
from renderer.render import render, render_all
from renderer.spec import load_spec_files

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SPECS = FIXTURES / "specs"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))
DEMO = FIXTURES / "clusters" / "demo.yaml"
FLAVORS = json.loads((ROOT / "schemas" / "cluster-profile.schema.json").read_text())["properties"]["flavor"]["enum"]

SPEC_SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/deploy-spec.schema.json"
PROFILE_SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/cluster-profile.schema.json"


def shipyard() -> list[str]:
    script = Path(sys.executable).with_name("shipyard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


@pytest.fixture(scope="module")
def demo_renderings(kube_schemas):
    return render_all(load_spec_files([SPECS]), load_profile(DEMO), kube_schemas)


# --- cluster profiles --------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_there_is_a_valid_profile_for_every_flavor(flavor: str):
    path = FIXTURES / "clusters" / f"{flavor}.yaml"
    lines = path.read_text().splitlines()
    assert lines[0] == PROFILE_SCHEMA_LINE
    assert lines[1].startswith("# ") and len(lines[1]) > 20, "second line says what the profile shows"
    profile = load_profile(path)
    assert profile.flavor == flavor


def test_profiles_have_distinct_cluster_names():
    names = [load_profile(path).name for path in sorted((FIXTURES / "clusters").glob("*.yaml"))]
    assert len(names) == len(set(names))
    assert load_profile(FIXTURES / "clusters" / "eks.yaml").name == "prod-eks"


def test_profiles_vary_their_addons():
    addons = {flavor: set(load_profile(FIXTURES / "clusters" / f"{flavor}.yaml").addons) for flavor in FLAVORS}
    assert addons["generic"] == set()
    assert "gateway_api" in addons["gke-standard"] and "istio" not in addons["gke-standard"]
    assert "keda" in addons["aks"] and "argo_rollouts" not in addons["aks"]
    assert len({frozenset(a) for a in addons.values()}) >= 5


# --- example specs -------------------------------------------------------------------


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_every_example_validates(path: Path):
    assert path.read_text().splitlines()[0] == SPEC_SCHEMA_LINE
    specs = load_spec_files([path])
    assert all(spec.cluster == "demo" for spec in specs)


def test_the_examples_render_for_the_demo_cluster(demo_renderings):
    keys = sorted(r.spec.key for r in demo_renderings)
    assert len(keys) == len(set(keys))
    assert len({r.workspace for r in demo_renderings}) >= 3
    assert all(r.objects for r in demo_renderings)


def _walk(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, path + (key,))
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child, path)


def test_the_examples_show_every_feature_of_the_format():
    specs = load_spec_files([SPECS])
    bodies = [s.body for s in specs]
    used = set()
    for body in bodies:
        for path, value in _walk(body):
            used.add(path)
            if path and path[-1] == "type" and isinstance(value, str):
                used.add(path + (value,))

    def has(*path):
        return tuple(path) in used

    services = [b for b in bodies if b["type"] == "service"]
    jobs = [b for b in bodies if b["type"] == "job"]
    for strategy in ("rolling_update", "canary", "blue_green"):
        assert has("rollout_strategy", "type", strategy)
    assert has("rollout_strategy", "max_surge_percentage") and has("rollout_strategy", "max_unavailable_percentage")
    steps = [s for b in services for s in (b.get("rollout_strategy") or {}).get("steps", [])]
    assert any("pause_duration" in s for s in steps) and any("pause_duration" not in s for s in steps)
    assert has("rollout_strategy", "enable_auto_promotion")
    assert any(isinstance(b.get("replicas"), int) for b in services)
    for metric in ("cpu_utilization", "rps", "cron"):
        assert has("replicas", "metrics", "type", metric)
    ports = [p for b in services for p in b.get("ports", [])]
    assert any(p.get("expose") and p.get("app_protocol", "http") == "http" and p.get("host") and p.get("path") for p in ports)
    assert any(p.get("expose") and p.get("app_protocol") == "grpc" and p.get("host") and p.get("path") for p in ports)
    assert any(p.get("expose") and not p.get("host") for p in ports)
    for probe in ("http", "tcp", "exec", "grpc"):
        assert any(has(kind, "config", "type", probe) for kind in ("liveness_probe", "readiness_probe", "startup_probe"))
    assert has("resources", "devices", "type", "nvidia_gpu")
    capacity = {(b.get("resources") or {}).get("node", {}).get("capacity_type") for b in bodies}
    assert {"spot", "spot_fallback_on_demand"} <= capacity
    env_values = [v for b in bodies for v in (b.get("env") or {}).values()]
    assert any(isinstance(v, str) and v.startswith("secret://") for v in env_values)
    assert any(isinstance(v, str) and v.startswith("tfy-secret://") for v in env_values)
    assert any(not isinstance(v, str) for v in env_values), "plain numbers/booleans as env values"
    assert has("labels") and has("service_account") and has("metrics", "port")
    assert has("trigger", "type", "manual") and has("params")
    scheduled = [j for j in jobs if (j.get("trigger") or {}).get("type") == "scheduled"]
    assert any({"concurrency_policy", "timezone"} <= set(j["trigger"]) and "retries" in j and "timeout" in j for j in scheduled)
    assert any(len(load_spec_files([path])) == 2 for path in SPEC_FILES), "a file with two specs"


# --- the rendered objects ----------------------------------------------------------------


def test_every_rendered_object_validates_for_its_kubernetes_version(demo_renderings):
    for rendering in demo_renderings:
        for obj in [*rendering.objects, rendering.application]:
            checked = CORE_ONLY.validate(obj, rendering.profile.kubernetes_version, where=rendering.spec.key)
            if is_core(obj["apiVersion"]):
                assert checked, f"{obj['kind']} was not checked against a Kubernetes schema"


def test_custom_resources_are_checked_against_their_crd_schemas(demo_renderings, cluster, specs_for, crd_schemas):
    gke = cluster("gke-standard")
    renderings = [*demo_renderings, render(specs_for(gke, "canary.yaml")[0], gke, crd_schemas)]
    checked_kinds = set()
    for rendering in renderings:
        for obj in [*rendering.objects, rendering.application]:
            if not is_core(obj["apiVersion"]):
                assert crd_schemas.validate(obj, rendering.profile.kubernetes_version), f"no CRD schema for {obj['kind']}"
                checked_kinds.add(obj["kind"])
    assert checked_kinds >= {
        "Rollout", "ScaledObject", "VirtualService", "HTTPRoute", "ExternalSecret",
        "ServiceMonitor", "WorkflowTemplate", "CronWorkflow", "Application",
    }


def test_crd_schemas_reject_an_invalid_custom_resource(demo_renderings, crd_schemas):
    canary = next(o for r in demo_renderings for o in r.objects if "canary" in o.get("spec", {}).get("strategy", {}))
    assert crd_schemas.validate(canary, "1.33")
    broken = json.loads(json.dumps(canary))
    broken["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
    with pytest.raises(RenderError, match="Rollout/checkout"):
        crd_schemas.validate(broken, "1.33")
    assert not CORE_ONLY.validate(broken, "1.33"), "without CRD schemas a custom resource is not checked"


# --- determinism --------------------------------------------------------------------------


def test_rendering_twice_gives_identical_bytes(demo_renderings, kube_schemas):
    again = render_all(load_spec_files([SPECS]), load_profile(DEMO), kube_schemas)
    assert [(r.spec.key, r.files, r.application_bytes) for r in again] == [
        (r.spec.key, r.files, r.application_bytes) for r in demo_renderings
    ]


def test_a_fresh_process_renders_identical_bytes(demo_renderings, tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run(
        [*shipyard(), "render", str(SPECS), "--cluster", str(DEMO), "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for rendering in demo_renderings:
        directory = tmp_path / "workspaces" / rendering.workspace / rendering.name
        assert {p.name: p.read_bytes() for p in directory.iterdir()} == rendering.files
        application = tmp_path / "apps" / rendering.workspace / f"{rendering.name}.yaml"
        assert application.read_bytes() == rendering.application_bytes


def test_the_whole_directory_applies_and_reapplying_changes_nothing(demo_renderings, tmp_path):
    repo = tmp_path / "demo.git"
    command = [*shipyard(), "apply", str(SPECS), "--cluster", str(DEMO), "--repo", str(repo)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    commit = first.stdout.strip()
    files = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", commit],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    for rendering in demo_renderings:
        assert f"apps/{rendering.workspace}/{rendering.name}.yaml" in files
        for name in rendering.files:
            assert f"workspaces/{rendering.workspace}/{rendering.name}/{name}" in files

    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "" and "nothing changed" in second.stderr
    head = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert head.stdout.strip() == commit
