"""A client-side check of the cluster repository with a real kubectl.

``shipyard apply`` commits the examples into a repository, the git CLI clones
it the way ArgoCD would, and ``kubectl kustomize`` (no cluster needed) must
build every app directory into the same objects that were committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "fixtures" / "specs"
DEMO = ROOT / "fixtures" / "clusters" / "demo.yaml"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cluster-repo")
    script = Path(sys.executable).with_name("shipyard")
    shipyard = [str(script)] if script.exists() else [sys.executable, "-m", "cli"]
    applied = subprocess.run(
        [*shipyard, "apply", str(SPECS), "--cluster", str(DEMO), "--repo", str(base / "demo.git")],
        capture_output=True, text=True, timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    subprocess.run(["git", "clone", "--quiet", str(base / "demo.git"), str(base / "clone")], check=True, timeout=60)
    return base / "clone"


def test_the_repository_holds_every_example_app(checkout):
    apps = {f"{p.parent.name}/{p.stem}" for p in (checkout / "apps").glob("*/*.yaml")}
    directories = {f"{p.parent.name}/{p.name}" for p in (checkout / "workspaces").glob("*/*") if p.is_dir()}
    assert apps == directories
    assert {"storefront/web", "payments/checkout", "data/backfill", "ml/embeddings"} <= apps


def objects_of(paths: list[Path]) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def identity(obj: dict) -> tuple[str, str, str, str]:
    metadata = obj["metadata"]
    return obj["apiVersion"], obj["kind"], metadata.get("namespace", ""), metadata["name"]


def assert_kustomize_builds(kubectl: Path, directory: Path, work: Path) -> list[dict]:
    """``kubectl kustomize`` (client side, no cluster) builds the directory's files into exactly the
    objects they hold; returns them. ``work`` is a scratch directory for the kustomization."""
    files = sorted(directory.glob("*.yaml"))
    shutil.copytree(directory, work)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f.name for f in files],
    }
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    env = dict(os.environ, KUBECONFIG="/dev/null")
    result = subprocess.run([str(kubectl), "kustomize", str(work)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, f"{directory}: {result.stderr}"
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    committed = objects_of(files)
    assert sorted(map(identity, built)) == sorted(map(identity, committed))
    by_identity = {identity(obj): obj for obj in committed}
    for obj in built:
        assert obj == by_identity[identity(obj)], f"kustomize changed {identity(obj)}"
    return built


def test_kubectl_kustomize_builds_every_app_directory(checkout, kubectl, tmp_path):
    directories = sorted(p for p in (checkout / "workspaces").glob("*/*") if p.is_dir())
    assert len(directories) >= 9
    for directory in directories:
        assert_kustomize_builds(kubectl, directory, tmp_path / directory.parent.name / directory.name)
