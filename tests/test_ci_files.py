"""The pipeline files of docs/ci run as written: their very command lines, against a control plane.

Each file's shell steps are read out of it (GitHub Actions' ``run:``, GitLab CI's ``script:``,
the Jenkinsfile's ``sh`` blocks) and run in the shell its CI system uses, in a checkout of a
spec repository, against a control plane on loopback with a SIMULATED cluster (tests/browser.py's
``live_plane``). What is not Shipyard's stands in: the install step is left out (shipyard is
installed here; ``.venv/bin/activate`` puts it on PATH), ``gh`` is a script that records the
comment it was asked to post, and the GitLab and GitHub APIs are an HTTP server on loopback that
records the note. On a merge request, each file posts the plan as Markdown and passes; with an
invalid spec it posts the problems and fails; on main it deploys with ``--wait`` and passes once
the cluster runs the new versions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

from tests.browser import live_plane  # noqa: F401 - the fixture
from tests.plane import service_spec

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "docs" / "ci"
BIN = Path(sys.executable).parent
SHA = "5d41402abc4b2a76b9719d911017c592"


# --- reading the steps out of each file ------------------------------------------------------------------------


def github_steps() -> tuple[dict, dict[str, dict]]:
    """The workflow's env, and its steps by name (plan job and deploy job)."""
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = {step["name"]: step for job in workflow["jobs"].values() for step in job["steps"] if "name" in step}
    return workflow["env"], steps


def gitlab_jobs() -> tuple[dict, dict[str, list[str]]]:
    """The pipeline's variables, and each job's script lines (its before_script left out: the install)."""
    pipeline = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    jobs = {name: job["script"] for name, job in pipeline.items() if isinstance(job, dict) and "script" in job}
    return pipeline["variables"], jobs


def jenkins_stages() -> tuple[dict, dict[str, str]]:
    """The pipeline's plain environment values, and each stage's sh script as the shell gets it."""
    text = (CI / "Jenkinsfile").read_text()
    environment = dict(re.findall(r"^\s+(\w+) = '([^']*)'$", text, re.MULTILINE))
    stages = {}
    for name, body in re.findall(r"stage\('(\w+)'\)(.*?)(?=stage\('|\Z)", text, re.DOTALL):
        if found := re.search(r"sh '''(.*?)'''", body, re.DOTALL):
            stages[name] = found.group(1).replace("\\\\", "\\")  # Groovy's ''' string: \\ is one backslash
    return environment, stages


# --- what stands in for the CI systems' surroundings --------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """A forge's API: records each POST (path, headers, body) and answers 201."""

    posts: list[dict]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.posts.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": 1}')

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def forge():
    posts: list[dict] = []
    handler = type("Handler", (Recorder,), {"posts": posts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", posts
    server.shutdown()
    server.server_close()


GH = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
body = open(args[args.index("--body-file") + 1]).read()
with open(os.environ["GH_RECORD"], "a") as record:
    record.write(json.dumps({{"args": args, "body": body}}) + "\\n")
"""


@pytest.fixture
def checkout(tmp_path, live_plane):  # noqa: F811
    """A spec repository's checkout: deploy/ with a changed web and a new api, and the tools on PATH."""
    work = tmp_path / "checkout"
    (work / "deploy").mkdir(parents=True)
    (work / "deploy" / "web.yaml").write_text(service_spec("web", image="ghcr.io/acme/web:2.0"))
    (work / "deploy" / "api.yaml").write_text(service_spec("ci-api", image="ghcr.io/acme/api:1.0"))
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "activate").write_text(f'PATH="{tmp_path / "bin"}:{BIN}:$PATH"\n')
    (tmp_path / "bin").mkdir()
    gh = tmp_path / "bin" / "gh"
    gh.write_text(GH)
    gh.chmod(0o755)
    return work


def run(script: str, cwd: Path, env: dict, shell: tuple[str, ...]) -> subprocess.CompletedProcess:
    path = cwd / ".step.sh"
    path.write_text(script)
    environ = {"PATH": f"{cwd.parent / 'bin'}:{BIN}:{os.environ['PATH']}", "HOME": str(cwd.parent),
               "XDG_CONFIG_HOME": str(cwd.parent / "config"), **env}
    return subprocess.run([*shell, str(path)], cwd=cwd, env=environ, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def expected_markdown(plane, cwd: Path) -> str:
    """What `shipyard plan` itself prints as Markdown for the checkout, to compare the comment with."""
    result = subprocess.run([str(BIN / "shipyard"), "plan", "deploy", "--prune", "--format", "markdown"], cwd=cwd,
                            env={**os.environ, "SHIPYARD_URL": plane.url, "SHIPYARD_TOKEN": plane.admin.token,
                                 "XDG_CONFIG_HOME": str(cwd.parent / "config")},
                            capture_output=True, text=True, timeout=60)
    return result.stdout


def break_a_spec(cwd: Path) -> None:
    (cwd / "deploy" / "api.yaml").write_text(service_spec("ci-api").replace("ports:", "portz:"))


def assert_deployed(plane) -> None:
    for app, image in (("web", "ghcr.io/acme/web:2.0"), ("ci-api", "ghcr.io/acme/api:1.0")):
        status = plane.status("storefront", app)
        newest = status["versions"][0]
        assert newest["status"] == "healthy", status
        version = plane.admin.get(f"/api/v1/apps/demo/storefront/{app}/versions/{newest['number']}").get_json()
        assert version["source_commit"] == SHA and version["spec"]["image"]["image_uri"] == image


# --- the three files ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_github_actions_workflow(live_plane, checkout, tmp_path):  # noqa: F811
    env, steps = github_steps()
    assert not any("${{" in step.get("run", "") for step in steps.values())  # inputs reach scripts through env
    bash = ("bash", "--noprofile", "--norc", "-eo", "pipefail")
    outputs, record = tmp_path / "github_output", tmp_path / "gh.jsonl"
    common = {**{k: v for k, v in env.items() if "${{" not in v}, "SHIPYARD_URL": live_plane.url,
              "SHIPYARD_TOKEN": live_plane.admin.token, "GITHUB_OUTPUT": str(outputs), "GITHUB_SHA": SHA,
              "GH_TOKEN": "gh-token", "PR": "42", "GH_RECORD": str(record)}

    def pull_request() -> tuple[subprocess.CompletedProcess, dict]:
        outputs.write_text("")
        planned = run(steps["Plan"]["run"], checkout, common, bash)
        assert planned.returncode == 0, planned.stderr
        status = dict(line.split("=", 1) for line in outputs.read_text().split())["status"]
        commented = run(steps["Comment"]["run"], checkout, common, bash)
        assert commented.returncode == 0, commented.stderr
        comment = json.loads(record.read_text().splitlines()[-1])
        return run(steps["Verdict"]["run"], checkout, {**common, "STATUS": status}, bash), comment

    verdict, comment = pull_request()
    assert verdict.returncode == 0, verdict.stderr
    assert comment["args"][:2] == ["pr", "comment"] and "42" in comment["args"] and "--edit-last" in comment["args"]
    assert comment["body"] == expected_markdown(live_plane, checkout)
    assert "<code>~ storefront/web</code>" in comment["body"] and "<code>+ storefront/ci-api</code>" in comment["body"]

    break_a_spec(checkout)
    verdict, comment = pull_request()
    assert verdict.returncode != 0
    assert "The specs are invalid" in comment["body"] and "deploy/api.yaml:" in comment["body"]

    (checkout / "deploy" / "api.yaml").write_text(service_spec("ci-api", image="ghcr.io/acme/api:1.0"))
    deployed = run(steps["Deploy"]["run"], checkout, common, bash)
    assert deployed.returncode == 0, deployed.stderr
    assert_deployed(live_plane)


@pytest.mark.slow
def test_gitlab_ci_pipeline(live_plane, checkout, forge):  # noqa: F811
    variables, jobs = gitlab_jobs()
    forge_url, posts = forge
    bash = ("bash", "-e")  # the runner stops a job at the first line that fails
    common = {**variables, "SHIPYARD_URL": live_plane.url, "SHIPYARD_TOKEN": live_plane.admin.token,
              "CI_API_V4_URL": f"{forge_url}/api/v4", "CI_PROJECT_ID": "7", "CI_MERGE_REQUEST_IID": "3",
              "GITLAB_NOTE_TOKEN": "glpat-note", "CI_COMMIT_SHA": SHA}
    plan = "\n".join(jobs["shipyard-plan"])

    merged = run(plan, checkout, common, bash)
    assert merged.returncode == 0, merged.stderr
    (note,) = posts
    assert note["path"] == "/api/v4/projects/7/merge_requests/3/notes"
    assert note["headers"]["PRIVATE-TOKEN"] == "glpat-note"
    assert parse_qs(note["body"])["body"] == [expected_markdown(live_plane, checkout)]

    break_a_spec(checkout)
    refused = run(plan, checkout, common, bash)
    assert refused.returncode != 0
    assert "The specs are invalid" in parse_qs(posts[-1]["body"])["body"][0]

    (checkout / "deploy" / "api.yaml").write_text(service_spec("ci-api", image="ghcr.io/acme/api:1.0"))
    deployed = run("\n".join(jobs["shipyard-deploy"]), checkout, common, bash)
    assert deployed.returncode == 0, deployed.stderr
    assert_deployed(live_plane)


@pytest.mark.slow
def test_jenkinsfile(live_plane, checkout, forge):  # noqa: F811
    environment, stages = jenkins_stages()
    assert set(stages) == {"Plan", "Deploy"}
    forge_url, posts = forge
    sh = ("sh", "-xe")  # as Jenkins' sh step runs a script
    common = {**environment, "SHIPYARD_URL": live_plane.url, "SHIPYARD_TOKEN": live_plane.admin.token,
              "GITHUB_API": forge_url, "GITHUB_TOKEN": "ghp-comments", "CHANGE_ID": "9", "GIT_COMMIT": SHA}

    planned = run(stages["Plan"], checkout, common, sh)
    assert planned.returncode == 0, planned.stderr
    (comment,) = posts
    assert comment["path"] == f"/repos/{environment['GITHUB_REPOSITORY']}/issues/9/comments"
    assert comment["headers"]["Authorization"] == "Bearer ghp-comments"
    assert json.loads(comment["body"]) == {"body": expected_markdown(live_plane, checkout)}

    break_a_spec(checkout)
    refused = run(stages["Plan"], checkout, common, sh)
    assert refused.returncode != 0 and "The specs are invalid" in json.loads(posts[-1]["body"])["body"]

    (checkout / "deploy" / "api.yaml").write_text(service_spec("ci-api", image="ghcr.io/acme/api:1.0"))
    deployed = run(stages["Deploy"], checkout, common, sh)
    assert deployed.returncode == 0, deployed.stderr
    assert_deployed(live_plane)
