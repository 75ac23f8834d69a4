"""The agent's Helm chart (charts/shipyard-agent): the bootstrap's install, for ``helm install``.

The chart exists so a team can install the agent without the cluster repository's bootstrap, so it
must install the same thing. It is held to renderer/bootstrap.py object by object, for profiles
that take each branch there (workspaces or none, another ArgoCD namespace, a token from External
Secrets on either API version): the same RBAC rules, role references and subjects, the same pod
(security contexts, probes, ports, environment, mounts, volumes, resources, strategy, replicas,
command, image) and the same ExternalSecret. A change to templates/agent/ that the chart misses
fails here.

Besides: ``helm lint --strict`` with the minimal and the full values; every rendered object valid
for the oldest and the newest Kubernetes the chart is for, and for its CRD where
SHIPYARD_CRD_SCHEMAS holds one; values.schema.json and the chart's own checks refusing, with a
message naming the value, what would install a broken agent; and the rendered environment read
back by the agent's own settings parser.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from agent.report import Tracker
from agent.settings import AgentSettings
from agent.watch import targets
from renderer.bootstrap import AGENT_NAME, agent_memory
from renderer.profiles import ClusterProfile, load_profile_text
from renderer.render import render_bootstrap, render_workspace_agent_access
from renderer.secret_refs import remote_ref
from tests.test_agent_bootstrap import mounted_env

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "shipyard-agent"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RELEASE, NAMESPACE = "shipyard-agent", "shipyard-system"
MINIMAL = {"controlPlane": {"url": "https://shipyard.example.com"}, "cluster": "lab"}
KUBERNETES_VERSIONS = ("1.27", "1.33")  # Chart.yaml kubeVersion's oldest, and the version Shipyard renders for


class Chart:
    """helm against the chart, with Helm's own directories in a scratch one (no user configuration)."""

    def __init__(self, helm: Path, home: Path):
        self.helm = helm
        self.env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data"), "KUBECONFIG": os.devnull}

    def run(self, *args: str, values: dict | None = None) -> subprocess.CompletedProcess:
        """helm with these arguments, and ``values`` on its standard input when given."""
        if values is not None:
            args = (*args, "--values", "-")
        return subprocess.run([str(self.helm), *args], input=None if values is None else json.dumps(values),
                              capture_output=True, text=True, env=self.env, timeout=60, check=False)

    def template(self, values: dict | None = None, *, values_file: Path | None = None, release: str = RELEASE,
                 namespace: str = NAMESPACE, kubernetes: str = "1.33") -> list[dict]:
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kubernetes]
        if values_file is not None:
            args += ["--values", str(values_file)]
        rendered = self.run(*args, values=values)
        assert rendered.returncode == 0, rendered.stderr
        return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc is not None]

    def refusal(self, values: dict, *, namespace: str = NAMESPACE) -> str:
        """What helm says when it refuses to render these values (it must)."""
        rendered = self.run("template", RELEASE, str(CHART), "--namespace", namespace, values=values)
        assert rendered.returncode != 0, f"rendered values that should be refused: {values}"
        assert "Traceback" not in rendered.stderr and "panic" not in rendered.stderr
        return rendered.stderr


@pytest.fixture(scope="module")
def chart(helm, tmp_path_factory) -> Chart:
    return Chart(helm, tmp_path_factory.mktemp("helm-home"))


def only(objects: list[dict], kind: str) -> dict:
    [obj] = [obj for obj in objects if obj["kind"] == kind]
    return obj


def by_namespace(objects: list[dict], kind: str) -> dict[str, dict]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len({obj["metadata"]["namespace"] for obj in found}) == len(found)  # one per namespace
    return {obj["metadata"]["namespace"]: obj for obj in found}


def container_of(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


# --- the chart's version is Shipyard's -------------------------------------------------------


def test_the_chart_is_versioned_with_shipyard():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["name"], chart["version"], chart["appVersion"]) == ("shipyard-agent", project, project)


# --- helm lint ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["minimal", "full"])
def test_helm_lint_strict_passes(chart, values):
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.33"]
    linted = chart.run(*args, values=MINIMAL) if values == "minimal" else chart.run(*args, "--values", str(FULL_VALUES))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout


def test_helm_lint_refuses_the_defaults_alone(chart):
    """The defaults name no control plane and no cluster: an install must say which."""
    linted = chart.run("lint", "--strict", str(CHART), "--namespace", NAMESPACE)
    assert linted.returncode != 0
    assert "missing property 'cluster'" in linted.stdout and "missing property 'url'" in linted.stdout


# --- every object valid for Kubernetes and its CRD -------------------------------------------------


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", ["minimal", "full"])
def test_every_object_is_valid_for_kubernetes(chart, kube_schemas, kubernetes, values):
    objects = chart.template(MINIMAL, kubernetes=kubernetes) if values == "minimal" \
        else chart.template(values_file=FULL_VALUES, kubernetes=kubernetes)
    for obj in objects:
        kube_schemas.validate(obj, kubernetes, where=f"charts/shipyard-agent ({values} values)")
    kinds = sorted(obj["kind"] for obj in objects)
    core = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "ServiceAccount"]
    if values == "minimal":
        assert kinds == core
    else:  # a Role and RoleBinding in each of three workspaces and the ArgoCD namespace
        assert kinds == sorted([*core, *["Role", "RoleBinding"] * 3, "ExternalSecret", "Service", "ServiceMonitor"])


def test_the_custom_resources_are_valid_for_their_crds(chart, crd_schemas):
    objects = chart.template(values_file=FULL_VALUES)
    for kind in ("ExternalSecret", "ServiceMonitor"):
        assert crd_schemas.validate(only(objects, kind), "1.33", where="charts/shipyard-agent")  # checked, not skipped


def test_the_older_external_secrets_api_is_valid_too(chart, crd_schemas):
    """v1beta1 has v1's fields for everything rendered here (templates/common/externalsecret.yaml.j2), so the
    v1 schema checks it; clusters before External Secrets 0.16 serve only v1beta1."""
    values = {**MINIMAL, "token": {"externalSecret": {
        "enabled": True, "apiVersion": "external-secrets.io/v1beta1",
        "storeRef": {"name": "vault"}, "remoteRef": {"key": "shipyard/agents/lab", "property": "token"}}}}
    external = only(chart.template(values), "ExternalSecret")
    assert external["apiVersion"] == "external-secrets.io/v1beta1"
    assert crd_schemas.validate({**external, "apiVersion": "external-secrets.io/v1"}, "1.33", where="v1beta1")


# --- parity with the bootstrap -------------------------------------------------------------------

LAB = """\
name: lab
flavor: kind
git: {repo_url: https://git.example.com/lab.git}
"""
PROFILES = {
    # no workspace yet: the agent follows Applications only
    "plain": (LAB + "agent: {url: 'https://shipyard.example.com'}\n", []),
    # another ArgoCD namespace, a tenant, three workspaces, the token from Vault on the current API
    "external-secrets": (LAB + "argocd: {namespace: gitops}\n"
                         "addons: {external_secrets: {store: vault, provider: vault}}\n"
                         "agent: {url: 'https://shipyard.example.com/base', tenant: platform,"
                         " token_ref: 'secret://shipyard/agents/lab#token@3'}\n",
                         ["storefront", "payments", "search"]),
    # External Secrets before 0.16 (v1beta1), a store naming secrets its own way, a larger agent
    "older-store": (LAB + "addons: {external_secrets: {store: gsm, provider: gcp-secret-manager, version: '0.15'}}\n"
                    "agent: {url: 'http://shipyard.internal:8080', token_ref: 'secret://shipyard/agents#lab',"
                    " resources: {followed_objects: 100000}}\n",
                    ["storefront"]),
}


def chart_values(profile: ClusterProfile, workspaces: list[str], resources: dict) -> dict:
    """The chart's values for what the profile says: the install a team would write for this cluster."""
    agent = profile.agent
    values = {
        "controlPlane": {"url": agent.url}, "tenant": agent.tenant, "cluster": profile.name,
        "argocdNamespace": profile.argocd_namespace, "workspaces": workspaces,
        "token": {"existingSecret": agent.token_secret},
    }
    if resources != yaml.safe_load((CHART / "values.yaml").read_text())["resources"]:
        values["resources"] = resources
    if agent.token_ref is not None:
        store = profile.addon("external_secrets")
        values["token"]["externalSecret"] = {
            "enabled": True, "apiVersion": profile.addon_api["externalsecret_api_version"],
            "storeRef": {"name": store["store"], "kind": "ClusterSecretStore"},
            "remoteRef": remote_ref(agent.token_ref, profile),
            "refreshInterval": store.get("refresh_interval", "1h"),
        }
    return values


@pytest.fixture(params=sorted(PROFILES))
def both_installs(request, chart) -> tuple[list[dict], list[dict]]:
    """The bootstrap's agent objects and the chart's, for one profile and its workspaces."""
    text, workspaces = PROFILES[request.param]
    profile = load_profile_text(text, f"{request.param}.yaml")
    bootstrap = [obj for name, obj in render_bootstrap(profile, workspaces).items() if name.startswith("agent/")]
    for workspace in workspaces:
        bootstrap.extend(render_workspace_agent_access(profile, workspace))
    resources = container_of(only(bootstrap, "Deployment"))["resources"]
    return bootstrap, chart.template(chart_values(profile, workspaces, resources))


def test_the_chart_installs_every_object_of_the_bootstrap_but_its_namespace(both_installs):
    """Helm installs into the release's namespace (helm install --create-namespace); the bootstrap
    renders its Namespace because ArgoCD syncs only what the repository holds."""
    bootstrap, chart = both_installs
    identities = sorted((obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                        for obj in bootstrap if obj["kind"] != "Namespace")
    assert sorted((obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                  for obj in chart) == identities


def test_the_rbac_is_the_bootstraps(both_installs):
    bootstrap, chart = both_installs
    assert only(chart, "ClusterRole")["rules"] == only(bootstrap, "ClusterRole")["rules"]
    for field in ("roleRef", "subjects"):
        assert only(chart, "ClusterRoleBinding")[field] == only(bootstrap, "ClusterRoleBinding")[field]
    chart_roles, bootstrap_roles = by_namespace(chart, "Role"), by_namespace(bootstrap, "Role")
    assert sorted(chart_roles) == sorted(bootstrap_roles)
    for namespace, role in bootstrap_roles.items():
        assert chart_roles[namespace]["rules"] == role["rules"], namespace
    chart_bindings, bootstrap_bindings = by_namespace(chart, "RoleBinding"), by_namespace(bootstrap, "RoleBinding")
    assert sorted(chart_bindings) == sorted(bootstrap_bindings) == sorted(bootstrap_roles)
    for namespace, binding in bootstrap_bindings.items():
        for field in ("roleRef", "subjects"):
            assert chart_bindings[namespace][field] == binding[field], (namespace, field)


def test_the_pod_is_the_bootstraps(both_installs):
    bootstrap, chart = both_installs
    ours, theirs = only(chart, "Deployment"), only(bootstrap, "Deployment")
    for field in ("replicas", "revisionHistoryLimit", "strategy"):
        assert ours["spec"][field] == theirs["spec"][field], field
    pod, expected_pod = ours["spec"]["template"]["spec"], theirs["spec"]["template"]["spec"]
    for field in ("serviceAccountName", "securityContext", "volumes"):
        assert pod[field] == expected_pod[field], field
    container, expected = container_of(ours), container_of(theirs)
    for field in ("name", "image", "command", "ports", "readinessProbe", "livenessProbe", "resources",
                  "securityContext", "volumeMounts"):
        assert container[field] == expected[field], field
    assert {e["name"]: e["value"] for e in container["env"]} == {e["name"]: e["value"] for e in expected["env"]}
    assert len(container["env"]) == len(expected["env"])
    # the chart's pods are selected by its own labels, which the pod template carries
    selector = ours["spec"]["selector"]["matchLabels"]
    assert selector.items() <= ours["spec"]["template"]["metadata"]["labels"].items()


def test_the_external_secret_is_the_bootstraps(both_installs):
    bootstrap, chart = both_installs
    expected = [obj for obj in bootstrap if obj["kind"] == "ExternalSecret"]
    ours = [obj for obj in chart if obj["kind"] == "ExternalSecret"]
    assert len(ours) == len(expected)
    for external, wanted in zip(ours, expected):
        assert external["apiVersion"] == wanted["apiVersion"]
        # the Secret it makes carries the install's labels, which differ (Helm's, the bootstrap's)
        labels = external["spec"]["target"].pop("template")
        assert labels == {"metadata": {"labels": external["metadata"]["labels"]}}
        wanted["spec"]["target"].pop("template")
        assert external["spec"] == wanted["spec"]


def test_the_default_resources_are_the_bootstraps_default_budget(chart):
    """Memory for 40,000 followed objects: 55 MB + 1.3 MB per 1,000 (renderer.bootstrap.agent_memory)."""
    container = container_of(only(chart.template(MINIMAL), "Deployment"))
    budget = agent_memory(40_000)
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": budget},
                                      "limits": {"cpu": "500m", "memory": budget}}
    full = yaml.safe_load(FULL_VALUES.read_text())
    assert full["resources"]["limits"]["memory"] == agent_memory(100_000)  # what its comment says it is sized for


# --- what the agent reads of it ------------------------------------------------------------------


def test_the_agent_reads_its_settings_from_the_rendered_environment(chart, tmp_path):
    values = {**MINIMAL, "workspaces": ["storefront", "payments"], "logLevel": "DEBUG", "settings": {
        "namespacesDeny": ["sandbox-*", "scratch"], "watchTimeout": 1_000_000, "listPageSize": 250,
        "heartbeatInterval": 5, "batchInterval": 0.5, "backoffBase": 1.5, "backoffMax": 60,
        "unauthorizedBackoff": 120, "commandWait": 20}}
    deployment = only(chart.template(values), "Deployment")
    env = mounted_env(deployment, tmp_path, "the-token")
    assert env["SHIPYARD_LOG_LEVEL"] == "DEBUG"
    assert env["SHIPYARD_WATCH_TIMEOUT"] == "1000000"  # a whole number, never 1e+06
    settings = AgentSettings.from_env(env)
    assert (settings.url, settings.tenant, settings.cluster) == ("https://shipyard.example.com", "default", "lab")
    assert settings.agent_token() == "the-token"
    assert settings.namespaces_deny == ("sandbox-*", "scratch")
    assert (settings.watch_timeout, settings.list_page_size) == (1_000_000, 250)
    assert (settings.heartbeat_interval, settings.batch_interval, settings.backoff_base, settings.backoff_max,
            settings.unauthorized_backoff, settings.command_wait) == (5, 0.5, 1.5, 60, 120, 20)
    assert settings.fixed_namespaces == ("payments", "storefront")


def test_settings_left_out_keep_the_agents_defaults(chart, tmp_path):
    deployment = only(chart.template(MINIMAL), "Deployment")
    names = {e["name"] for e in container_of(deployment)["env"]}
    assert not names & {"SHIPYARD_LOG_LEVEL", "SHIPYARD_WATCH_TIMEOUT", "SHIPYARD_NAMESPACES_DENY"}
    settings = AgentSettings.from_env(mounted_env(deployment, tmp_path))
    defaults = AgentSettings(url="", tenant="", cluster="")
    assert (settings.watch_timeout, settings.list_page_size, settings.heartbeat_interval) == (
        defaults.watch_timeout, defaults.list_page_size, defaults.heartbeat_interval)


def test_every_watch_is_in_a_namespace_the_chart_grants(chart, tmp_path):
    objects = chart.template(values_file=FULL_VALUES)
    granted = set(by_namespace(objects, "Role"))
    settings = AgentSettings.from_env(mounted_env(only(objects, "Deployment"), tmp_path))
    watched = {t.namespace for t in targets(settings, Tracker())}
    assert watched == granted == {"argocd", "payments", "search", "storefront"}


def test_the_service_monitor_scrapes_the_agents_metrics_port(chart):
    objects = chart.template(values_file=FULL_VALUES)
    monitor, service, deployment = only(objects, "ServiceMonitor"), only(objects, "Service"), only(objects, "Deployment")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # what the Prometheus selects by
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    [port] = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    assert [p["name"] for p in container_of(deployment)["ports"]] == ["metrics"]


def test_the_full_values_pin_the_image_and_pass_extra_env(chart):
    deployment = only(chart.template(values_file=FULL_VALUES), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert re.fullmatch(r"registry\.example\.com/mirror/shipyard-agent:0\.1\.0@sha256:[0-9a-f]{64}", container["image"])
    assert pod["imagePullSecrets"] == [{"name": "registry-example-com"}]
    assert pod["priorityClassName"] == "platform-critical"
    assert {e["name"] for e in container["env"]} >= {"HTTPS_PROXY", "NO_PROXY"}


def test_a_release_of_another_name_names_its_objects_after_it(chart):
    objects = chart.template(MINIMAL, release="agent")
    assert {obj["metadata"]["name"] for obj in objects} == {"agent-shipyard-agent"}
    binding = only(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "agent-shipyard-agent", "namespace": NAMESPACE}]
    assert {obj["metadata"]["name"] for obj in chart.template(MINIMAL)} == {AGENT_NAME}


def test_install_notes_say_how_to_make_the_token_secret_without_a_token(chart):
    installed = chart.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                          values=MINIMAL)
    assert installed.returncode == 0, installed.stderr
    notes = installed.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n shipyard-system create secret generic shipyard-agent-token --from-literal=token=<agent token>" \
        in notes
    assert "shipyard clusters show lab" in notes


# --- refused values ----------------------------------------------------------------------------

REFUSED = {
    "no cluster": ({"controlPlane": {"url": "https://shipyard.example.com"}}, "missing property 'cluster'"),
    "no url": ({"cluster": "lab"}, "missing property 'url'"),
    "not http": ({**MINIMAL, "controlPlane": {"url": "ftp://shipyard.example.com"}}, "/controlPlane/url"),
    "no scheme": ({**MINIMAL, "controlPlane": {"url": "shipyard.example.com"}}, "/controlPlane/url"),
    "a credential in the url": ({**MINIMAL, "controlPlane": {"url": "https://agent:secret@shipyard.example.com"}},
                                "/controlPlane/url"),
    "an unknown key": ({**MINIMAL, "replicas": 2}, "additional properties 'replicas' not allowed"),
    "an unknown key below": ({**MINIMAL, "token": {"secretName": "x"}}, "additional properties 'secretName'"),
    "a workspace that is no namespace name": ({**MINIMAL, "workspaces": ["Payments"]}, "/workspaces/0"),
    "a workspace twice": ({**MINIMAL, "workspaces": ["a", "a"]}, "/workspaces"),
    "a tag in the repository": ({**MINIMAL, "image": {"repository": "ghcr.io/x/agent:1.0"}}, "/image/repository"),
    "a short digest": ({**MINIMAL, "image": {"digest": "sha256:abc"}}, "/image/digest"),
    "an external secret without a store": (
        {**MINIMAL, "token": {"externalSecret": {"enabled": True, "remoteRef": {"key": "k"}}}}, "storeRef"),
    "an external secret without a key": (
        {**MINIMAL, "token": {"externalSecret": {"enabled": True, "storeRef": {"name": "vault"}}}}, "remoteRef"),
    "an unknown store kind": (
        {**MINIMAL, "token": {"externalSecret": {"storeRef": {"kind": "Vault"}}}}, "/token/externalSecret/storeRef/kind"),
    "a privileged metrics port": ({**MINIMAL, "metrics": {"port": 80}}, "/metrics/port"),
    "an unknown setting": ({**MINIMAL, "settings": {"watchTimout": 60}}, "additional properties 'watchTimout'"),
    "a zero interval": ({**MINIMAL, "settings": {"batchInterval": 0}}, "/settings/batchInterval"),
    "an unknown log level": ({**MINIMAL, "logLevel": "verbose"}, "/logLevel"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_values_schema_refuses(chart, case):
    values, said = REFUSED[case]
    refusal = chart.refusal(values)
    assert "values don't meet the specifications of the schema" in refusal
    assert said in refusal


CHECKED = {
    "the agent's namespace as a workspace": ({**MINIMAL, "workspaces": ["payments", NAMESPACE]}, NAMESPACE,
                                             'workspaces: "shipyard-system" is the agent\'s own namespace'),
    "the ArgoCD namespace as a workspace": ({**MINIMAL, "workspaces": ["argocd"]}, NAMESPACE,
                                            'workspaces: "argocd" is the ArgoCD namespace'),
    "a kube-* workspace": ({**MINIMAL, "workspaces": ["kube-system"]}, NAMESPACE, '"kube-system" is a kube-* namespace'),
    "the default namespace": (MINIMAL, "default", 'the agent needs a namespace of its own, not "default"'),
    "the ArgoCD namespace": (MINIMAL, "argocd", 'the agent needs a namespace of its own, not "argocd"'),
    "a kube-* namespace": (MINIMAL, "kube-system", 'the agent needs a namespace of its own, not "kube-system"'),
    "extraEnv over the chart's": ({**MINIMAL, "extraEnv": [{"name": "SHIPYARD_NAMESPACES", "value": ""}]}, NAMESPACE,
                                  "extraEnv: SHIPYARD_NAMESPACES is set by the chart"),
}


@pytest.mark.parametrize("case", sorted(CHECKED))
def test_the_chart_refuses(chart, case):
    values, namespace, said = CHECKED[case]
    assert said in chart.refusal(values, namespace=namespace)
