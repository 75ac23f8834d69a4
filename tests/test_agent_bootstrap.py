"""The agent rendered into the cluster repository: its install (bootstrap/agent/) and its Role and
RoleBinding in each workspace namespace (workspaces/<ws>/agent-role.yaml, agent-rolebinding.yaml).

The RBAC is held to the agent's code twice: the rules are asserted in full
(widening them fails a test), and the real agent -- its watchers, its cluster
facts and every command, configured from the rendered Deployment's
environment -- runs against the fake API server (tests/fakekube.py), whose
request log must be allowed by the rendered rules and must use every verb
they grant.
"""

from __future__ import annotations

import subprocess
import threading
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from agent.liveness import LIVENESS_PATH
from agent.main import Agent
from contract.protocol import Command
from agent.report import Tracker
from agent.settings import AgentSettings
from agent.watch import targets
from contract.repository import AGENT_DIR, BOOTSTRAP_DIR, agent_role_file, agent_rolebinding_file
from gitops import apply as apply_service
from gitops import layout
from gitops.models import Cluster
from gitops.repo import DELETE, ClusterRepo, Directory
from contract.errors import ProfileError, SpecError
from renderer.profiles import ClusterProfile, load_profile, load_profile_text
from renderer.render import (WorkspaceSettings, render, render_bootstrap, render_workspace_agent_access,
                             reserved_namespaces)
from renderer.spec import load_specs
from renderer.manifest_yaml import dump_manifest
from tests.fakekube import FakeKube, client_configuration
from tests.plane import PROFILE as DEMO_PROFILE
from tests.plane import add_cluster, add_workspace
from tests.test_kubectl import assert_kustomize_builds

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = ROOT / "fixtures" / "clusters"
MANAGED = {"app.kubernetes.io/managed-by": "shipyard"}

LAB = """\
name: lab
flavor: kind
git: {repo_url: https://git.example.com/lab.git}
"""
WITH_AGENT = "agent: {url: 'https://shipyard.example.com'}\n"


def lab(extra: str = WITH_AGENT) -> ClusterProfile:
    return load_profile_text(LAB + extra, "lab.yaml")


def by_kind(objects: dict[str, dict], kind: str) -> list[dict]:
    return [obj for obj in objects.values() if obj["kind"] == kind]


def agent_files(objects: dict[str, dict]) -> dict[str, dict]:
    return {name: obj for name, obj in objects.items() if name.startswith("agent/")}


def agent_everywhere(profile: ClusterProfile, workspaces: list[str]) -> dict[str, dict]:
    """The bootstrap and the agent's Role and RoleBinding in each workspace, by repository path."""
    objects = {f"{BOOTSTRAP_DIR}/{name}": obj for name, obj in render_bootstrap(profile, workspaces).items()}
    for workspace in workspaces:
        role, binding = render_workspace_agent_access(profile, workspace)
        objects[agent_role_file(workspace)], objects[agent_rolebinding_file(workspace)] = role, binding
    return objects


# --- the rules, in full --------------------------------------------------------------------

CLUSTER_RULES = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list"]},
]
ARGOCD_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
]
WORKSPACE_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["list", "watch", "create"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates", "cronworkflows"], "verbs": ["get"]},
    {"apiGroups": ["argoproj.io"], "resources": ["cronworkflows/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch", "create"]},
    {"apiGroups": ["batch"], "resources": ["cronjobs/finalizers"], "verbs": ["update"]},
]
# Not a request the agent sends: the OwnerReferencesPermissionEnforcement admission plugin checks it
# when the Job from a CronJob (the Workflow from a CronWorkflow) names it as its owner with blockOwnerDeletion.
ADMISSION_ONLY = {("workspace", "batch", "cronjobs/finalizers", "update"),
                  ("workspace", "argoproj.io", "cronworkflows/finalizers", "update")}


def test_the_rules_are_exactly_what_the_agent_needs():
    objects = agent_everywhere(lab(), ["payments", "storefront"])
    [cluster_role] = by_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == CLUSTER_RULES
    roles = {role["metadata"]["namespace"]: role["rules"] for role in by_kind(objects, "Role")}
    assert roles == {"argocd": ARGOCD_RULES, "payments": WORKSPACE_RULES, "storefront": WORKSPACE_RULES}
    for rule in [*CLUSTER_RULES, *ARGOCD_RULES, *WORKSPACE_RULES]:
        assert "*" not in str(rule) and "secrets" not in rule["resources"]
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames games either way


def test_a_role_per_workspace_namespace_and_the_argocd_namespace_only():
    profile = lab("argocd: {namespace: gitops}\n" + WITH_AGENT)
    objects = agent_everywhere(profile, ["payments", "storefront"])
    role_namespaces = sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role"))
    assert role_namespaces == ["gitops", "payments", "storefront"]
    for binding in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] == "shipyard-agent"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "shipyard-agent",
                                        "namespace": "shipyard-system"}]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(objects, "RoleBinding")) == role_namespaces
    [binding] = by_kind(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "shipyard-agent"}
    # the install holds the Role in ArgoCD's namespace; each workspace holds the agent's Role in its own
    assert sorted(agent_files(render_bootstrap(profile, ["payments", "storefront"]))) == [
        "agent/00-namespace.yaml", "agent/01-serviceaccount.yaml", "agent/10-clusterrole.yaml",
        "agent/11-clusterrolebinding.yaml", "agent/20-role-gitops.yaml", "agent/21-rolebinding-gitops.yaml",
        "agent/30-deployment.yaml",
    ]
    for workspace in ("payments", "storefront"):
        assert objects[agent_role_file(workspace)]["metadata"]["namespace"] == workspace
        assert objects[agent_rolebinding_file(workspace)]["metadata"]["namespace"] == workspace
    # the workspace's Application manages them: nothing for the apps' AppProject to ignore as an orphan
    project = objects["bootstrap/project.yaml"]
    assert project["spec"]["orphanedResources"] == {"warn": True}


# --- the Deployment and the settings the agent reads --------------------------------------------


def deployment_of(objects: dict[str, dict]) -> dict:
    [deployment] = by_kind(objects, "Deployment")
    return deployment


def mounted_env(deployment: dict, root: Path, token: str = "fake-token") -> dict[str, str]:
    """The container's environment, with the token Secret "mounted" under ``root`` as the kubelet would."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert all(set(item) == {"name", "value"} for item in container["env"])  # no valueFrom: nothing else to resolve
    token_file = Path(env["SHIPYARD_AGENT_TOKEN_FILE"])
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True and "subPath" not in mount  # updated in place when the token rotates
    assert volume["secret"]["items"] == [{"key": "token", "path": token_file.name}]
    assert token_file.parent == Path(mount["mountPath"])
    local = root / token_file.relative_to("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(token + "\n")
    return {**env, "SHIPYARD_AGENT_TOKEN_FILE": str(local)}


def test_the_deployment_environment_is_what_the_agent_reads(tmp_path):
    profile = lab("argocd: {namespace: gitops}\nagent: {url: 'https://shipyard.example.com/', tenant: acme}\n")
    deployment = deployment_of(render_bootstrap(profile, ["storefront", "payments"]))
    settings = AgentSettings.from_env(mounted_env(deployment, tmp_path, "the-token"))
    assert (settings.url, settings.tenant, settings.cluster) == ("https://shipyard.example.com", "acme", "lab")
    assert settings.agent_token() == "the-token"
    assert settings.argocd_namespace == "gitops"
    assert settings.fixed_namespaces == ("payments", "storefront")  # watched one by one: namespaced RBAC suffices
    assert settings.namespaces_deny == ()
    # every watch the agent opens is in a namespace it has a Role in; none is cluster-wide
    watched = {(t.kind.kind, t.namespace) for t in targets(settings, Tracker())}
    assert all(namespace in ("gitops", "payments", "storefront") for _, namespace in watched)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": settings.metrics_port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "metrics"}  # agent.liveness


def test_without_workspaces_the_agent_follows_applications_only(tmp_path):
    objects = render_bootstrap(lab(), [])
    assert [r["metadata"]["namespace"] for r in by_kind(objects, "Role")] == ["argocd"]
    settings = AgentSettings.from_env(mounted_env(deployment_of(objects), tmp_path))
    assert settings.fixed_namespaces == ()  # not "every namespace", which would need cluster-wide watches
    assert {(t.kind.kind, t.namespace) for t in targets(settings, Tracker())} == {
        ("Application", "argocd"), ("Event", "argocd")}


def test_the_deployment_runs_one_locked_down_agent():
    profile = lab()
    deployment = deployment_of(render_bootstrap(profile, ["storefront"]))
    assert deployment["metadata"]["namespace"] == "shipyard-system"
    assert deployment["metadata"]["labels"] == {"app.kubernetes.io/name": "shipyard-agent", **MANAGED,
                                                "shipyard.dev/cluster": "lab"}
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "shipyard-agent"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == f"ghcr.io/shipyard-dev/shipyard-agent:{metadata.version('shipyard')}"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "112Mi"},  # 40,000 objects' budget
                                      "limits": {"cpu": "500m", "memory": "112Mi"}}
    def autopilot(version: str) -> dict:
        profile = load_profile_text(LAB.replace("flavor: kind", f"flavor: gke-autopilot\nkubernetes_version: '{version}'")
                                    + WITH_AGENT, "lab.yaml")
        return deployment_of(render_bootstrap(profile, ["storefront"]))["spec"]["template"]["spec"]["containers"][0][
            "resources"]

    before_bursting = autopilot("1.30")  # limits must equal requests there
    assert before_bursting["requests"] == before_bursting["limits"] and before_bursting["limits"]["memory"] == "112Mi"
    assert autopilot("1.33") == container["resources"]  # Autopilot bursts from 1.30.2 on


def test_profile_fields_set_the_namespace_image_and_secret():
    profile = lab("agent:\n  url: http://shipyard.internal:8080\n  namespace: ops-agent\n"
                  "  image: registry.example.com/shipyard-agent@sha256:" + "a" * 64 + "\n"
                  "  token_secret: agent-credentials\n")
    objects = render_bootstrap(profile, ["storefront"])
    namespaced = [o for o in agent_files(objects).values() if o["kind"] in ("ServiceAccount", "Deployment")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"ops-agent"}
    [namespace] = by_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == "ops-agent"
    pod = deployment_of(objects)["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].endswith("@sha256:" + "a" * 64)
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["agent-credentials"]
    assert "ops-agent" in reserved_namespaces(profile)


# --- the real agent under the rendered rules -----------------------------------------------------


def _attributes(method: str, path: str, query: dict) -> tuple[str, str, str, str | None] | None:
    """(verb, group, resource[/subresource], namespace) as the API server's authorizer sees a request;
    None for the public non-resource URLs (/version, discovery)."""
    parts = [p for p in path.split("/") if p]
    if path in ("/version", "/api", "/apis"):
        return None
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    else:
        assert parts[0] == "apis", path
        group, rest = parts[1], parts[3:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "get" if named else ("watch" if query.get("watch") in ("true", "1", "True") else "list")
    return verb, group, resource, namespace


def _allows(rules: list[dict], verb: str, group: str, resource: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


@pytest.fixture
def workspace_kube():
    with FakeKube() as kube:
        kube.create("applications", {"metadata": {"name": "storefront.web", "labels": MANAGED}}, "argocd")
        kube.create("deployments", {"metadata": {"name": "web", "labels": MANAGED},
                                    "spec": {"template": {"metadata": {}}}}, "storefront")
        kube.create("rollouts", {"metadata": {"name": "api", "labels": MANAGED}, "spec": {}}, "storefront")
        kube.create("workflowtemplates", {"metadata": {"name": "backfill", "labels": MANAGED}, "spec": {}}, "storefront")
        kube.create("cronworkflows", {"metadata": {"name": "report", "labels": MANAGED},
                                      "spec": {"workflowSpec": {"entrypoint": "main"}}}, "storefront")
        kube.create("cronjobs", {"metadata": {"name": "nightly", "labels": MANAGED}, "spec": {"jobTemplate": {
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}}}, "storefront")
        kube.create("pods", {"metadata": {"name": "web-1", "labels": MANAGED}}, "payments")
        kube.set_log("payments", "web-1", "ready\n")
        yield kube


def test_the_real_agent_needs_every_granted_verb_and_nothing_else(workspace_kube, tmp_path):
    kube = workspace_kube
    objects = agent_everywhere(lab(), ["payments", "storefront"])
    settings = AgentSettings.from_env(mounted_env(deployment_of(objects), tmp_path, kube.token))
    settings.kube_configuration = client_configuration(kube)
    settings.watch_timeout = 1
    agent = Agent(settings)
    try:
        facts = agent.cluster_facts()
        assert facts["namespaces"] == ["payments", "storefront"] and "argo_rollouts" in facts["addons"]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop, 2)) for w in agent.watchers]  # a list, then a watch
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(w.relists == 1 and w.restarts == 0 for w in agent.watchers)
        commands = [
            ("refresh", "Application", "argocd", "storefront.web", {}),
            ("refresh", "Application", "argocd", "storefront.web", {"commit": "c0ffee" * 6 + "c0ff",
                                                                    "reason": "commit"}),  # after a commit
            ("restart", "Deployment", "storefront", "web", {}),
            ("restart", "Rollout", "storefront", "api", {}),
            ("run-job", "WorkflowTemplate", "storefront", "backfill", {"run_id": "r1"}),
            ("run-job", "CronWorkflow", "storefront", "report", {"run_id": "r3"}),
            ("run-job", "CronJob", "storefront", "nightly", {"run_id": "r2"}),
            ("logs", "Pod", "payments", "web-1", {}),
        ]
        for index, (kind_of_command, kind, namespace, name, params) in enumerate(commands):
            result = agent.executor.execute(Command(id=index, type=kind_of_command, kind=kind, namespace=namespace,
                                                    name=name, params=params))
            assert result.ok, (kind_of_command, kind, result.error)
    finally:
        agent.stop()

    cluster_rules = by_kind(objects, "ClusterRole")[0]["rules"]
    roles = {role["metadata"]["namespace"]: role["rules"] for role in by_kind(objects, "Role")}
    used, refused = set(), []
    for method, path, query in kube.requests:
        attributes = _attributes(method, path, query)
        if attributes is None:
            continue
        verb, group, resource, namespace = attributes
        allowed = _allows(cluster_rules, verb, group, resource) or (
            namespace is not None and _allows(roles.get(namespace, []), verb, group, resource))
        if not allowed:
            refused.append((method, path))
        scope = "cluster" if namespace is None else "argocd" if namespace == "argocd" else "workspace"
        used.add((scope, verb, group, resource))
    assert refused == []
    granted = {("cluster", v, g, res) for r in cluster_rules for g in r["apiGroups"] for res in r["resources"]
               for v in r["verbs"]}
    for scope, rules in (("argocd", roles["argocd"]), ("workspace", roles["storefront"])):
        granted |= {(scope, v, g, res) for r in rules for g in r["apiGroups"] for res in r["resources"]
                    for v in r["verbs"]}
    admission_only = {(scope, verb, group, resource) for scope, group, resource, verb in ADMISSION_ONLY}
    assert used == granted - admission_only


# --- secrets -----------------------------------------------------------------------------------


def test_token_ref_renders_an_external_secret_against_the_store(cluster, kube_schemas):
    eks = cluster("eks")
    objects = render_bootstrap(eks, ["storefront"], kube_schemas)
    [external] = by_kind(objects, "ExternalSecret")
    assert external["metadata"]["namespace"] == "shipyard-system"
    assert external["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault"}
    assert external["spec"]["target"]["name"] == "shipyard-agent-token"
    assert external["spec"]["data"] == [{"secretKey": "token",
                                         "remoteRef": {"key": "shipyard/agents/prod-eks", "property": "token"}}]
    pod = deployment_of(objects)["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["shipyard-agent-token"]


def test_the_agents_external_secret_is_valid_for_its_crd(cluster, crd_schemas):
    eks = cluster("eks")
    [external] = by_kind(render_bootstrap(eks, ["storefront"], crd_schemas), "ExternalSecret")
    assert crd_schemas.validate(external, eks.kubernetes_version)  # checked against the CRD schema, not skipped


def test_token_ref_without_external_secrets_names_the_cluster_and_the_addon():
    with pytest.raises(ProfileError) as caught:
        lab("agent: {url: 'https://shipyard.example.com', token_ref: 'secret://shipyard/agent#token'}\n")
    [problem] = caught.value.problems
    assert 'cluster "lab"' in problem.message and "external_secrets addon" in problem.message
    assert problem.path == "/agent/token_ref" and problem.line == 4
    with pytest.raises(ProfileError, match="malformed secret reference"):
        lab("addons: {external_secrets: {store: vault}}\n"
            "agent: {url: 'https://shipyard.example.com', token_ref: 'secret://no-key'}\n")


def test_no_secret_value_is_rendered(cluster):
    for profile in (cluster("eks"), cluster("kind"), lab()):
        objects = render_bootstrap(profile, ["storefront"])
        assert not by_kind(objects, "Secret")
        [container] = deployment_of(objects)["spec"]["template"]["spec"]["containers"]
        names = {item["name"] for item in container["env"]}
        assert "SHIPYARD_AGENT_TOKEN" not in names and "SHIPYARD_AGENT_TOKEN_FILE" in names
        text = b"".join(dump_manifest(obj) for obj in objects.values()).decode()
        assert "stringData" not in text and "secretKeyRef" not in text


def test_the_agent_token_never_reaches_the_repository(plane_app, admin):
    profile = DEMO_PROFILE + "agent:\n  url: http://127.0.0.1:8080\n  token_ref: secret://shipyard/demo#token\n"
    created = add_cluster(admin, "demo", profile)
    add_workspace(admin, "demo", "storefront")
    rotated = admin.post("/api/v1/clusters/demo/tokens/agent").get_json()["token"]
    response = admin.post("/api/v1/clusters/demo/workspaces", json={"name": "shipyard-system"})
    assert response.status_code == 400 and "system namespace" in response.get_json()["error"]["message"]
    plane = plane_app.extensions["shipyard"]
    with plane.sessions() as session:
        repo = plane.repos.open(session.query(Cluster).filter_by(name="demo").one())
    files = repo.snapshot().walk()
    assert agent_role_file("storefront") in files and "bootstrap/agent/02-externalsecret.yaml" in files
    for token in (created["agent_token"], rotated, created["read_token"]):
        assert not any(token.encode() in data for data in files.values())
    # the profile cannot move the agent into a workspace afterwards
    moved = profile.replace("  url: http", "  namespace: storefront\n  url: http")
    response = admin.patch("/api/v1/clusters/demo", json={"profile": moved})
    assert response.status_code == 409 and "storefront" in response.get_json()["error"]["message"]


# --- profiles without an agent, and what the agent's namespace may not be ----------------------


@pytest.mark.parametrize("flavor", ["generic", "demo", "aks"])
def test_profiles_without_agent_render_no_agent_files(cluster, flavor):
    profile = cluster(flavor)
    assert profile.agent is None
    assert sorted(render_bootstrap(profile, ["storefront"])) == ["apps.yaml", "project.yaml", "root.yaml"]
    assert render_workspace_agent_access(profile, "storefront") is None
    changes = layout.bootstrap_changes(profile, ["storefront"])
    assert sorted(changes[BOOTSTRAP_DIR].files) == ["apps.yaml", "project.yaml", "root.yaml"]
    assert changes[agent_role_file("storefront")] is DELETE and changes[agent_rolebinding_file("storefront")] is DELETE


def test_the_agent_namespace_is_never_a_workspace():
    profile = lab()
    [spec] = load_specs("type: service\nname: web\nworkspace_fqn: lab:shipyard-system\n"
                        "image: {type: image, image_uri: 'ghcr.io/acme/web:1'}\n")
    with pytest.raises(SpecError, match="system namespace"):
        render(spec, profile)
    with pytest.raises(ProfileError, match='agent.namespace "shipyard-system" of cluster "lab" is a workspace'):
        render_bootstrap(profile, ["shipyard-system"])
    for namespace in ("argocd", "kube-system", "default"):
        with pytest.raises(ProfileError, match="namespace of its own"):
            lab(f"agent: {{url: 'https://shipyard.example.com', namespace: {namespace}}}\n")
    with pytest.raises(ProfileError, match="namespace of its own"):
        lab("addons: {istio: {gateway: istio-system/public}}\n"
            "agent: {url: 'https://shipyard.example.com', namespace: istio-system}\n")


@pytest.mark.parametrize("agent, words", [
    ("agent: {url: 'https://s.example.com', replicas: 2}\n", 'unknown field "replicas"'),
    ("agent: {url: 'https://s.example.com', tokn_secret: x}\n", 'did you mean "token_secret"'),
    ("agent: {tenant: acme}\n", 'missing required field "url"'),
    ("agent: {url: 'ftp://s.example.com'}\n", "http(s) URL"),
    ("agent: {url: 'https://s.example.com', token_ref: 'vault:abc'}\n", "secret://<path>#<key>"),
    ("agent: {url: 'https://s.example.com', namespace: Ops}\n", "Kubernetes name"),
])
def test_the_agent_section_is_checked_like_the_rest_of_the_profile(agent, words):
    with pytest.raises(ProfileError) as caught:
        lab(agent)
    assert any(words in p.message for p in caught.value.problems), caught.value.problems


# --- in the repository: workspaces come and go, kubectl reads it --------------------------------


def _apply_workspaces(repo: ClusterRepo, profile: ClusterProfile, names: list[str]) -> None:
    apply_service.apply([], profile, repo, workspace_settings={n: WorkspaceSettings() for n in names})


def _remove_workspace(repo: ClusterRepo, profile: ClusterProfile, name: str) -> None:
    def build(base):  # what gitops.workspaces.delete_workspace commits
        remaining = [w for w in layout.workspaces_in(base) if w != name]
        return {**layout.bootstrap_changes(profile, remaining), **layout.delete_workspace_changes(name)}

    repo.commit(build, f"Remove workspace {name}\n")


def _agent_listing(repo: ClusterRepo) -> list[str]:
    return sorted(p[len(AGENT_DIR) + 1:] for p in repo.snapshot().walk() if p.startswith(AGENT_DIR + "/"))


def _agent_access(repo: ClusterRepo) -> list[str]:
    """The workspaces holding the agent's Role and RoleBinding."""
    files = repo.snapshot().walk()
    return sorted(p.split("/")[1] for p in files if p.endswith("/agent-role.yaml")
                  if p.replace("agent-role.yaml", "agent-rolebinding.yaml") in files)


def _namespaces_env(repo: ClusterRepo) -> str:
    deployment = yaml.safe_load(repo.snapshot().read(f"{AGENT_DIR}/30-deployment.yaml"))
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "SHIPYARD_NAMESPACES")


def test_the_rbac_follows_workspaces_added_and_removed(tmp_path):
    profile = lab()
    repo = ClusterRepo(tmp_path / "lab.git")
    _apply_workspaces(repo, profile, ["payments"])
    assert _agent_access(repo) == ["payments"] and _namespaces_env(repo) == "payments"
    _apply_workspaces(repo, profile, ["storefront"])
    assert _agent_access(repo) == ["payments", "storefront"]
    assert _namespaces_env(repo) == "payments,storefront"
    _remove_workspace(repo, profile, "payments")
    assert _agent_access(repo) == ["storefront"] and _namespaces_env(repo) == "storefront"
    # the same workspaces again: same bytes, no commit
    tip = repo.tip()
    _apply_workspaces(repo, profile, ["storefront"])
    assert repo.tip() == tip
    # the agent section dropped from the profile: its directory goes
    _apply_workspaces(repo, lab(""), ["storefront"])
    assert _agent_listing(repo) == [] and _agent_access(repo) == []
    assert repo.snapshot().read("bootstrap/project.yaml") is not None


def test_bootstrap_changes_write_the_bootstrap_directory_whole():
    changes = layout.bootstrap_changes(lab(), ["storefront"])
    directory = changes[BOOTSTRAP_DIR]
    assert isinstance(directory, Directory)
    assert set(directory.files) >= {"root.yaml", "agent.yaml", "agent/00-namespace.yaml", "agent/30-deployment.yaml"}
    assert not any(path.startswith(BOOTSTRAP_DIR + "/") for path in changes)
    assert set(changes) == {BOOTSTRAP_DIR, agent_role_file("storefront"), agent_rolebinding_file("storefront")}


@pytest.mark.parametrize("flavor", ["eks", "kind"])
def test_kubectl_builds_every_agent_file(kubectl, tmp_path, flavor):
    profile = load_profile(CLUSTERS / f"{flavor}.yaml")
    repo = ClusterRepo(tmp_path / "cluster.git")
    _apply_workspaces(repo, profile, ["payments", "storefront"])
    subprocess.run(["git", "clone", "--quiet", str(repo.path), str(tmp_path / "clone")], check=True, timeout=60)
    directory = tmp_path / "clone" / AGENT_DIR
    built = assert_kustomize_builds(kubectl, directory, tmp_path / "work")
    kinds = sorted(obj["kind"] for obj in built)
    expected = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace", "Role", "RoleBinding",
                "ServiceAccount"]
    if profile.agent.token_ref is not None:
        expected = sorted([*expected, "ExternalSecret"])
    assert kinds == expected
    # file names sort the Namespace first, so kubectl apply -R creates it before what lives in it
    assert sorted(p.name for p in directory.glob("*.yaml"))[0] == "00-namespace.yaml"
