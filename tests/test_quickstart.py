"""The kind quickstart (docs/quickstart-kind.sh, docs/quickstart-kind.md), held to the code it drives.

No Docker daemon, kind or Kubernetes API server runs on these machines, so the script cannot run
whole here. What it runs is covered piece by piece, against the real thing wherever one exists:

==========================================  ===============================================================
the script                                  checked by
==========================================  ===============================================================
itself                                      shellcheck (Debian's; missing, the test fails, it never skips)
images/build.sh, kind load docker-image     the Containerfiles exist; the tags are the chart's
                                            image.repository and the profile's default agent image, at
                                            pyproject's version, which is the charts' appVersion
helm upgrade --install, its values          helm lint --strict, and helm template with the very arguments
                                            the script passes: every object valid against Kubernetes
                                            1.33; the Service is the one publicUrl, the profile and the
                                            port-forward name; the image is the built one, never pulled
the profile it registers                    loads as the server loads it; its bootstrap renders, valid,
                                            with the agent image the script builds
the specs it deploys                        validate and render for that profile, with public images
every ``shipyard ...`` it runs or prints    the command and each of its options exist; --help answers
log in, register and install, deploy, run   the script's own functions, sourced, against ``shipyard
                                            serve`` on loopback; kubectl stands in for the cluster, and the
                                            simulated compute plane plays Argo CD and the agent with the
                                            tokens the script put into their Secrets; then the script runs
                                            again and reuses what is there
==========================================  ===============================================================
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from string import Template

import click
import pytest
import yaml
from click.testing import CliRunner

from cli.group import main as shipyard_main
from renderer.bootstrap import render_bootstrap, root_application_name
from renderer.install_steps import repository_secret
from renderer.profiles import AGENT_IMAGE_REPOSITORY, ClusterProfile, default_agent_image, load_profile_text
from renderer.render import render, render_workspace_agent_access
from renderer.spec import load_spec_files
from simulation import SimulatedCluster, SimulationSettings
from tests.test_cli_plane import clean_env, free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "quickstart-kind.sh"
DOC = ROOT / "docs" / "quickstart-kind.md"
QUICKSTART = ROOT / "docs" / "quickstart"
KUBERNETES = "1.33"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
JOURNEY_LIMIT = 300.0  # seconds; only a bound on a run of the script that hangs


def script_text() -> str:
    """The script with its continued lines joined."""
    return SCRIPT.read_text().replace("\\\n", " ")


COMMAND_START = r"(?:^\s*|\|\s*|\$\(\s*|&&\s*|\{\s*|\bif\s+|!\s+|\s--\s+)"  # where a command starts in a line


def code_lines(text: str | None = None) -> list[str]:
    """The lines of shell ``text`` (the script's), run or printed, without their comments."""
    return [re.sub(r"(^|\s)#\s.*$", "", line) for line in (script_text() if text is None else text).splitlines()
            if not line.lstrip().startswith("#")]


def doc_code_lines() -> list[str]:
    """The commands of docs/quickstart-kind.md: its sh blocks' lines and its inline `shipyard ...`."""
    text = DOC.read_text().replace("\\\n", " ")
    return code_lines("\n".join(re.findall(r"```sh\n(.*?)```", text, re.DOTALL))) + re.findall(r"`(shipyard [^`]+)`", text)


def script_settings() -> dict[str, str]:
    """The script's NAME=value assignments as they come out: variables substituted, an environment
    override's default taken, the commands' outputs (ROOT, VERSION) as this checkout gives them."""
    values = {"ROOT": str(ROOT), "VERSION": VERSION}
    for name, raw in re.findall(r"^[ \t]*([A-Z][A-Z_]*)=(\S*)", script_text(), re.MULTILINE):
        default = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", raw)
        if name in values or (raw.startswith("$") and not default and not re.match(r"\$[A-Z]", raw)):
            continue  # what a command prints, a process id, a value cut from another
        values[name] = Template((default.group(1) if default else raw).strip('"')).substitute(values)
    return values


SETTINGS = script_settings()


def setting(name: str) -> str:
    return SETTINGS[name]


def quickstart_profile() -> ClusterProfile:
    """The profile as the server loads what `shipyard clusters register --profile` sends it."""
    path = Path(setting("PROFILE"))
    return load_profile_text(path.read_bytes(), str(path))


# --- the script itself ------------------------------------------------------------------------------


def test_the_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: apt-get install shellcheck (Debian's package, which the "
                    "README's test command installs)", pytrace=False)
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_uses_nothing_of_this_machine_but_the_kind_cluster():
    assert setting("KUBE_CONTEXT") == f"kind-{setting('KIND_CLUSTER')}"  # the context kind makes
    kubectl = [line for line in code_lines() if re.search(COMMAND_START + r"kubectl\s", line)]
    assert kubectl and all(re.search(r'kubectl --context "?\$KUBE_CONTEXT\b', line) for line in kubectl), kubectl
    helm = [line for line in code_lines() if re.search(COMMAND_START + r"helm\s(?!version)", line)]
    assert helm and all('helm --kube-context "$KUBE_CONTEXT"' in line for line in helm), helm
    assert re.fullmatch(r"v\d+\.\d+\.\d+", setting("ARGOCD_VERSION")), "Argo CD is installed from a release tag"


# --- the images -------------------------------------------------------------------------------------


def test_the_images_it_builds_are_the_ones_the_charts_and_the_profile_run():
    assert re.search(r'BUILDER=docker REGISTRY="\$\{IMAGE_REPOSITORY%/\*\}" "\$ROOT/images/build.sh" all', script_text())
    # what images/build.sh runs, with a builder that only says it
    said = subprocess.run([str(ROOT / "images" / "build.sh"), "all"], capture_output=True, text=True, check=True,
                          env={**os.environ, "BUILDER": "echo docker",
                               "REGISTRY": setting("IMAGE_REPOSITORY").rpartition("/")[0]}).stdout.splitlines()
    builds = [re.search(r"-f (\S+) .* -t (\S+) ", line).groups() for line in said]
    assert [Path(file) for file, _ in builds] == [ROOT / "images" / "shipyard.Containerfile",
                                                  ROOT / "images" / "shipyard-agent.Containerfile"]
    for file, _ in builds:
        assert Path(file).is_file(), f"{file}, which the script builds, does not exist"
    tags = dict(zip(("IMAGE", "AGENT_IMAGE"), (tag for _, tag in builds)))
    assert tags == {"IMAGE": f"{setting('IMAGE_REPOSITORY')}:{VERSION}",
                    "AGENT_IMAGE": f"{setting('AGENT_IMAGE_REPOSITORY')}:{VERSION}"}
    assert tags == {"IMAGE": f"ghcr.io/shipyard-dev/shipyard:{VERSION}",
                    "AGENT_IMAGE": f"{AGENT_IMAGE_REPOSITORY}:{VERSION}"}
    assert re.search(r'kind load docker-image --name "\$KIND_CLUSTER" "\$IMAGE" "\$AGENT_IMAGE"', script_text())

    control_plane = yaml.safe_load((ROOT / "charts" / "shipyard" / "values.yaml").read_text())["image"]
    agent = yaml.safe_load((ROOT / "charts" / "shipyard-agent" / "values.yaml").read_text())["image"]
    assert f"{control_plane['repository']}:{VERSION}" == tags["IMAGE"]
    assert f"{agent['repository']}:{VERSION}" == tags["AGENT_IMAGE"] == default_agent_image()
    for chart in ("shipyard", "shipyard-agent"):  # an empty image.tag is the appVersion
        meta = yaml.safe_load((ROOT / "charts" / chart / "Chart.yaml").read_text())
        assert meta["appVersion"] == VERSION, f"charts/{chart}: appVersion {meta['appVersion']}, pyproject {VERSION}"


# --- the control plane's chart ----------------------------------------------------------------------


IMAGE_ID = "sha256:" + "5" * 64  # what `docker image inspect` says of the built image


def helm_install_arguments() -> list[str]:
    """What the script gives `helm upgrade --install`, but the flags that need a cluster (--wait, --timeout)."""
    found = re.search(r'helm --kube-context "\$KUBE_CONTEXT" upgrade --install (.*?) --wait', script_text())
    assert found, "the script installs the chart with helm upgrade --install ... --wait"
    return [Template(word).substitute(SETTINGS, image_id=IMAGE_ID) for word in shlex.split(found.group(1))]


@pytest.fixture(scope="module")
def chart_objects(helm) -> list[dict]:
    result = subprocess.run([helm, "template", *helm_install_arguments()], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} of them in {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


def test_the_chart_values_lint(helm):
    arguments = helm_install_arguments()
    result = subprocess.run([helm, "lint", "--strict", *arguments[1:]], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chart_renders_valid_objects(chart_objects, kube_schemas):
    assert chart_objects
    for obj in chart_objects:
        assert kube_schemas.validate(obj, KUBERNETES, where=f"{obj['kind']} {obj['metadata']['name']}"), obj["kind"]


def test_the_chart_runs_the_built_image_where_argo_cd_and_the_agent_look(chart_objects):
    values = yaml.safe_load((QUICKSTART / "values.yaml").read_text())
    deployment = one(chart_objects, "Deployment", setting("RELEASE"))  # the script's exec and port-forward
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == setting("IMAGE") and container["imagePullPolicy"] == "Never"
    # a new build of the same tag changes the pod template, so the pod rolls onto it
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"shipyard.dev/image-id": IMAGE_ID}

    service = one(chart_objects, "Service", setting("RELEASE"))
    forwarded = re.search(r'port-forward "service/\$RELEASE" "\$LOCAL_PORT:(\d+)"', script_text()).group(1)
    assert [port["port"] for port in service["spec"]["ports"]] == [int(forwarded)] == [80]
    in_cluster = f"http://{service['metadata']['name']}.{setting('NAMESPACE')}.svc"
    profile = quickstart_profile()
    assert values["publicUrl"] == in_cluster == profile.agent.url
    assert profile.repo_url == setting("REPO_URL") == in_cluster + setting("GIT_PATH")

    secret_key = next(env for env in container["env"] if env["name"] == "SHIPYARD_SECRET_KEY")
    made = re.search(r'create secret generic "\$SECRET_KEY_SECRET" --from-file="([\w-]+)=', script_text()).group(1)
    assert secret_key["valueFrom"]["secretKeyRef"] == {"name": setting("SECRET_KEY_SECRET"), "key": made}


# --- the cluster: profile, bootstrap, specs -----------------------------------------------------------


def test_the_profile_it_registers_bootstraps_the_agent_it_builds(kube_schemas):
    profile = quickstart_profile()
    assert profile.name == setting("CLUSTER") and profile.argocd_namespace == setting("ARGOCD_NAMESPACE")
    assert setting("GIT_PATH") == f"/git/{profile.agent.tenant}/{profile.name}.git"  # webapp.api.shapes git_path
    assert (profile.agent.namespace, profile.agent.token_secret) == (setting("AGENT_NAMESPACE"),
                                                                     setting("AGENT_TOKEN_SECRET"))
    objects = render_bootstrap(profile, [setting("WORKSPACE")], kube_schemas)
    objects |= dict(zip(("agent-role", "agent-rolebinding"),
                        render_workspace_agent_access(profile, setting("WORKSPACE"))))
    for name, obj in objects.items():
        if obj["apiVersion"].startswith("argoproj.io/"):
            continue  # test_the_bootstrap_applications_match_argo_cds_schemas
        assert kube_schemas.validate(obj, profile.kubernetes_version, where=name)

    deployment = objects["agent/30-deployment.yaml"]
    assert deployment["metadata"]["name"] == setting("AGENT_DEPLOYMENT")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == setting("AGENT_IMAGE")
    assert container.get("imagePullPolicy", "IfNotPresent") != "Always"  # the image kind loaded is used
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert env["SHIPYARD_URL"] == profile.agent.url and env["SHIPYARD_CLUSTER"] == setting("CLUSTER")
    root = objects["root.yaml"]
    assert (root["metadata"]["name"], root["metadata"]["namespace"]) == (root_application_name(profile),
                                                                         setting("ARGOCD_NAMESPACE"))
    assert root["spec"]["source"]["repoURL"] == setting("REPO_URL")


def test_the_bootstrap_applications_match_argo_cds_schemas(crd_schemas):
    profile = quickstart_profile()
    for name, obj in render_bootstrap(profile, [setting("WORKSPACE")], crd_schemas).items():
        assert crd_schemas.validate(obj, profile.kubernetes_version, where=name)


def test_the_specs_it_deploys_render_for_its_cluster(kube_schemas):
    profile = quickstart_profile()
    specs = {spec.name: spec for spec in load_spec_files([QUICKSTART / "specs"])}
    ran = re.search(r'shipyard run "\$CLUSTER:\$WORKSPACE/(\w+)"', script_text()).group(1)
    assert specs[ran].kind == "job"
    assert specs.keys() == {"hello", ran}
    for spec in specs.values():
        assert (spec.cluster, spec.workspace) == (setting("CLUSTER"), setting("WORKSPACE"))
        rendering = render(spec, profile, kube_schemas)
        for obj in rendering.objects:
            assert kube_schemas.validate(obj, profile.kubernetes_version, where=f"{spec.name}: {obj['kind']}")
        images = {container["image"] for obj in rendering.objects for container in _containers(obj)}
        assert images and all(image.startswith("docker.io/library/") for image in images), images
    hello = render(specs["hello"], profile, kube_schemas)
    assert [port["port"] for port in one(hello.objects, "Service", "hello")["spec"]["ports"]] == [80]
    assert "service/hello 8081:80" in script_text()


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template") or {}
    return (template.get("spec") or {}).get("containers") or []


# --- every shipyard command it runs or prints ------------------------------------------------------


def shipyard_invocations(lines: list[str]) -> list[list[str]]:
    """Each `shipyard ...` of ``lines`` as its words (variables left as written)."""
    invocations = []
    for line in lines:
        for found in re.finditer(rf"(?:{COMMAND_START}|/bin/)shipyard[ \t]+(.*)", line):
            words = re.split(r"\s\d?>|[|;)<]|&&", found.group(1))[0]
            invocations.append(shlex.split(words))
    return invocations


@pytest.mark.parametrize("source", ["script", "doc"])
def test_it_runs_what_this_command_line_has(source):
    invocations = shipyard_invocations(code_lines() if source == "script" else doc_code_lines())
    registers = {"script": ["clusters", "register", "$CLUSTER", "--profile", "$PROFILE", "--output", "json"],
                 "doc": ["clusters", "register", "kind", "--profile", "docs/quickstart/kind.yaml"]}
    assert registers[source] in invocations
    context = click.Context(shipyard_main)
    for words in invocations:
        command, path = shipyard_main, []
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            sub = command.get_command(context, words[0])
            assert sub is not None, f"`shipyard {' '.join([*path, words[0]])}`: no such command"
            command, path, words = sub, [*path, words[0]], words[1:]
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        unknown = [word.split("=")[0] for word in words if word.startswith("-") and word.split("=")[0] not in known]
        assert not unknown, f"`shipyard {' '.join(path)}` has no option {', '.join(unknown)}"
        helped = CliRunner().invoke(shipyard_main, [*path, "--help"])
        assert helped.exit_code == 0, f"shipyard {' '.join(path)} --help: {helped.output}"


# --- the journey: the script's own steps against a control plane on loopback ------------------------

# kubectl for the script's steps, sourced (docs/quickstart-kind.sh defines them and runs nothing): the
# cluster is played here. What the script applies is kept in $STAND_IN; a command it execs in the
# control plane's pod runs here, on the data of the server the test started, as the pod's would.
HARNESS = r"""
source "$SCRIPT"
kube() {
  printf '%s\n' "$*" >>"$STAND_IN/calls.log"
  case " $* " in
    *" exec "*)
      while [[ $1 != -- ]]; do shift; done
      shift
      SHIPYARD_DATA_DIR="$POD_DATA_DIR" SHIPYARD_SECRET_KEY="$POD_SECRET_KEY" "$VENV/bin/$1" "${@:2}" ;;
    *" apply -f - "*) cat >"$STAND_IN/applied-$(date +%s%N).yaml" ;;
    *" apply -f "*) cp "${@: -1}" "$STAND_IN/applied-$(date +%s%N).yaml" ;;
  esac
}
WORK=$(mktemp -d)
URL="http://127.0.0.1:$LOCAL_PORT"
PASSWORD=
trap clean_up EXIT
log_in
register_cluster
deploy_examples
print_next_steps
"""

SECRET_KEY = "quickstart-test-secret-key"


class KindStandIn:
    """The kind cluster as the script reaches it through kubectl, while one run of the script lasts.

    Argo CD and the agent are the simulated compute plane, started with the read token of Argo CD's
    repository Secret and the agent's token from its Secret, the last ones the script applied, and
    started again when the script applies new ones (a run again rotates both).
    """

    def __init__(self, url: str, applied: Path, mirror: Path):
        self.url, self.applied, self.mirror = url, applied, mirror
        self.tokens: tuple[str, str] | None = None
        self.stop: threading.Event | None = None
        self.started = 0

    def manifests(self) -> list[dict]:
        return [yaml.safe_load(path.read_text()) for path in sorted(self.applied.glob("applied-*.yaml"))]

    def secrets(self) -> tuple[dict | None, dict | None]:
        """The last repository Secret and agent token Secret applied."""
        repository = agent = None
        for obj in self.manifests():
            if obj["kind"] != "Secret":
                continue
            if obj["metadata"].get("labels", {}).get("argocd.argoproj.io/secret-type") == "repository":
                repository = obj
            elif obj["metadata"]["name"] == setting("AGENT_TOKEN_SECRET"):
                agent = obj
        return repository, agent

    def follow(self) -> None:
        repository, agent = self.secrets()
        if repository is None or agent is None:
            return
        tokens = (repository["stringData"]["password"], agent["stringData"]["token"])
        if tokens == self.tokens:
            return
        self.halt()
        self.tokens, self.stop, self.started = tokens, threading.Event(), self.started + 1
        cluster = SimulatedCluster(SimulationSettings(  # a mirror of its own: the one it replaces may still fetch
            url=self.url, tenant="default", cluster=setting("CLUSTER"), read_token=tokens[0], agent_token=tokens[1],
            mirror_dir=self.mirror / str(self.started), poll_seconds=0.5, step_seconds=0.2, heartbeat_seconds=0.5,
            command_wait_seconds=1, tick_seconds=0.05, kubernetes_version=KUBERNETES))
        threading.Thread(target=cluster.run, args=(self.stop,), daemon=True).start()

    def halt(self) -> None:
        if self.stop is not None:
            self.stop.set()

    def run_script(self, env: dict, log: Path) -> subprocess.CompletedProcess:
        """One run of the script's steps, the cluster following what it applies; its output with it."""
        with open(log, "w") as err:
            process = subprocess.Popen(["bash", "-c", HARNESS], stdout=subprocess.PIPE, stderr=err, text=True,
                                       env=env, cwd=ROOT)
            deadline = time.monotonic() + JOURNEY_LIMIT
            while process.poll() is None and time.monotonic() < deadline:
                self.follow()
                time.sleep(0.1)
            if process.poll() is None:
                process.kill()
            out = process.communicate()[0]
        return subprocess.CompletedProcess(process.args, process.returncode, out, log.read_text())


@pytest.fixture
def control_plane(tmp_path):
    """`shipyard serve` on loopback, as the chart runs it: SQLite in its data directory, migrated on start."""
    port, data = free_port(), tmp_path / "data"
    url, log = f"http://127.0.0.1:{port}", tmp_path / "server.log"
    env = clean_env(tmp_path / "server-config", SHIPYARD_DATA_DIR=str(data), SHIPYARD_SECRET_KEY=SECRET_KEY,
                    SHIPYARD_PUBLIC_URL=url, SHIPYARD_LOG_FORMAT="text")
    process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                "--threads", "16"], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_healthy(url, process, log)
        yield url, port, data
    finally:
        stop(process, signal.SIGTERM)


@pytest.mark.slow
def test_the_script_logs_in_registers_deploys_and_runs_again(control_plane, tmp_path):
    url, port, data = control_plane
    applied = tmp_path / "applied"
    applied.mkdir()
    config = tmp_path / "config"
    env = clean_env(config, SCRIPT=str(SCRIPT), STAND_IN=str(applied), POD_DATA_DIR=str(data),
                    POD_SECRET_KEY=SECRET_KEY, SHIPYARD_VENV=str(Path(sys.executable).parent.parent),
                    SHIPYARD_QUICKSTART_PORT=str(port))
    cluster = KindStandIn(url, applied, tmp_path / "mirror")
    profile = quickstart_profile()

    def cli(*args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "cli", *args, "--output", "json"], capture_output=True,
                                text=True, cwd=ROOT, env=clean_env(config, SHIPYARD_CONTEXT=setting("CLI_CONTEXT")))
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    try:
        first = cluster.run_script(env, tmp_path / "first.log")
        assert first.returncode == 0, first.stderr[-4000:]
        assert "the first user, admin, a tenant-admin, is made" in first.stderr

        repository, agent = cluster.secrets()
        read_token, agent_token = cluster.tokens
        assert repository == yaml.safe_load(repository_secret(setting("CLUSTER"), profile, read_token))
        assert agent["metadata"] == {"name": profile.agent.token_secret, "namespace": profile.agent.namespace}
        assert agent["stringData"] == {"token": agent_token}
        roots = [obj for obj in cluster.manifests() if obj["kind"] == "Application"]
        assert [root["metadata"]["name"] for root in roots] == [root_application_name(profile)]

        apps = {app["name"]: app for app in cli("apps", "--cluster", setting("CLUSTER"))["apps"]}
        assert apps.keys() == {"hello", "greet"}
        assert apps["hello"]["health"] == "Healthy" and apps["hello"]["sync"] == "Synced"
        runs = cli("runs", f"{setting('CLUSTER')}:{setting('WORKSPACE')}/greet")["runs"]
        assert [run["state"] for run in runs] == ["succeeded"]
        assert "kind delete cluster --name shipyard" in first.stderr

        again = cluster.run_script(env, tmp_path / "again.log")
        assert again.returncode == 0, again.stderr[-4000:]
        for said in ("logged in already", "registered already", "the workspace exists already"):
            assert said in again.stderr
        assert cluster.tokens[0] != read_token and cluster.tokens[1] != agent_token  # rotated, and applied
        assert [run["state"] for run in cli("runs", f"{setting('CLUSTER')}:{setting('WORKSPACE')}/greet")["runs"]] \
            == ["succeeded", "succeeded"]
        versions = cli("versions", f"{setting('CLUSTER')}:{setting('WORKSPACE')}/hello")["versions"]
        assert len(versions) == 1, "deploying the same specs again makes no version"
    finally:
        cluster.halt()
