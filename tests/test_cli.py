"""The shipyard CLI as scripts and CI use it: real processes, exit codes, output."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROFILE = str(ROOT / "fixtures/clusters/demo.yaml")
SPECS = str(ROOT / "fixtures/specs")

SPEC = """\
type: service
name: api
workspace_fqn: demo:team-a
image: {type: image, image_uri: 'ghcr.io/acme/api:1.0'}
ports: [{port: 8000}]
"""


def shipyard(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True, text=True, cwd=cwd or ROOT, env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "api.yaml"
    path.write_text(SPEC)
    return path


def test_validate_ok(spec_file):
    result = shipyard("validate", str(spec_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_validate_reports_every_problem_with_positions(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("name: api", "name: Api") + "replcas: 2\n")
    other = tmp_path / "other.yaml"
    other.write_text("type: job\nname: j\n")
    result = shipyard("validate", str(bad), str(other))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{bad}:2:7: " in lines[0] and "(at /name)" in lines[0]
    assert any(line.startswith(f"{bad}:6:1: unknown field \"replcas\"; did you mean \"replicas\"?") for line in lines)
    assert any(line.startswith(f"{other}:1:1: missing required field \"image\"") for line in lines)
    assert "Traceback" not in result.stderr


def test_validate_json(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: service\n")
    result = shipyard("validate", str(bad), "--output", "json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["error"] == "spec_invalid"
    assert {p["path"] for p in payload["problems"]} == {""}
    assert all(p["line"] == 1 for p in payload["problems"])


def test_validate_against_a_cluster_finds_missing_addons(tmp_path):
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC.replace("demo:", "prod:") + "rollout_strategy: {type: canary, steps: [{weight_percentage: 10}]}\n")
    profile = tmp_path / "prod.yaml"
    profile.write_text("name: prod\nflavor: generic\ngit: {repo_url: 'https://git.example.com/prod.git'}\n")
    result = shipyard("validate", str(spec), "--cluster", str(profile))
    assert result.returncode == 1
    assert f"{spec}:6:" in result.stdout and 'cluster "prod" has no argo_rollouts addon' in result.stdout


def test_missing_file_is_a_clear_error(tmp_path):
    result = shipyard("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "cannot read file" in result.stdout


def test_bad_profile(tmp_path, spec_file):
    profile = tmp_path / "p.yaml"
    profile.write_text("name: demo\nflavor: eks\nkubernetes_version: 1.30\ngit: {repo_url: x}\n")
    result = shipyard("render", str(spec_file), "--cluster", str(profile))
    assert result.returncode == 1
    assert f"{profile}:3:21: " in result.stderr and "quoted string" in result.stderr


def test_render_to_stdout(spec_file):
    result = shipyard("render", str(spec_file), "--cluster", PROFILE)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Deployment", "Service", "Application"]


def test_render_to_directory(spec_file, tmp_path):
    out = tmp_path / "out"
    result = shipyard("render", str(spec_file), "--cluster", PROFILE, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "workspaces/team-a/api").iterdir()) == [
        "deployment-api.yaml", "service-api.yaml", "serviceaccount-api.yaml",
    ]
    assert (out / "apps/team-a/api.yaml").is_file()


def test_apply_then_nothing_changed_then_delete(spec_file, tmp_path):
    repo = tmp_path / "repo.git"
    first = shipyard("apply", str(spec_file), "--cluster", PROFILE, "--repo", str(repo), "--author", "ci-bot")
    assert first.returncode == 0, first.stderr
    commit = first.stdout.strip()
    assert len(commit) == 40
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "main"], capture_output=True, text=True).stdout.strip()
    assert head == commit

    second = shipyard("apply", str(spec_file), "--cluster", PROFILE, "--repo", str(repo), "-o", "json")
    assert second.returncode == 0
    payload = json.loads(second.stdout)
    assert payload["changed"] is False and payload["commit"] is None
    assert payload["apps"][0]["action"] == "unchanged"

    gone = shipyard("delete", "team-a/api", "--cluster", PROFILE, "--repo", str(repo))
    assert gone.returncode == 0 and len(gone.stdout.strip()) == 40
    missing = shipyard("delete", "team-a/api", "--cluster", PROFILE, "--repo", str(repo))
    assert missing.returncode == 4 and "no app" in missing.stderr


def test_apply_all_fixtures(tmp_path):
    result = shipyard("apply", SPECS, "--cluster", PROFILE, "--repo", str(tmp_path / "r.git"), "-o", "json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["changed"] and all(a["action"] == "created" for a in payload["apps"])
    assert len(payload["apps"]) >= 2


def test_invalid_spec_commits_nothing(tmp_path, spec_file):
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: service\nname: x\n")
    repo = tmp_path / "repo.git"
    result = shipyard("apply", str(spec_file), str(bad), "--cluster", PROFILE, "--repo", str(repo))
    assert result.returncode == 1
    assert not repo.exists()


def test_usage_errors_exit_2(spec_file):
    assert shipyard("apply", str(spec_file)).returncode == 2
    result = shipyard("delete", "no-slash", "--cluster", PROFILE, "--repo", "/tmp/x")
    assert result.returncode == 2 and "WORKSPACE/APP" in result.stderr


def test_repository_errors_exit_3(spec_file, tmp_path):
    not_a_repo = tmp_path / "file"
    not_a_repo.write_text("x")
    result = shipyard("apply", str(spec_file), "--cluster", PROFILE, "--repo", str(not_a_repo))
    assert result.returncode in (2, 3)
    assert "Traceback" not in result.stderr
    result = shipyard("apply", str(spec_file), "--cluster", PROFILE, "--repo", str(tmp_path / "r.git"),
                      "--remote", str(tmp_path / "no-such-remote.git"))
    assert result.returncode == 3 and "remote" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("url", "said"), [
    ("http://admin:hunter2@shipyard.example.com", "carries credentials"),
    ("ftp://shipyard.example.com", "http(s)://HOST"),
    ("https://shipyard.example.com/?token=shy_1_x", "no query or fragment"),
    ("http://shipyard.example.com:99999", "port is not a number"),
])
def test_a_control_plane_url_with_credentials_or_junk_is_refused_before_anything_is_sent(url, said, tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli", "apps", "--url", url, "--token", "shy_1_x"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 2 and said in result.stderr
    assert "hunter2" not in result.stderr  # the refusal does not echo a password


def test_an_unreachable_control_plane_is_a_json_document_when_json_was_asked(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run([sys.executable, "-m", "cli", "apps", "--url", url, "--token", "shy_1_x", "-o", "json"],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["error"] == "unreachable" and url in document["message"]
