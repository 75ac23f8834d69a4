"""Nothing to re-apply by hand: after ``kubectl apply -f bootstrap/root.yaml`` ArgoCD reaches the whole repository.

The repository is read here as ArgoCD reads it (``argocd_view``): from the
root Application, each Application syncs the files of its directory, and an
Application among them is created and synced in turn (Argo CD, "Cluster
Bootstrapping", "Directory"). Every file must be reached that way, and each
object must be admitted by the AppProject of the Application that syncs it
(Argo CD, "Projects": destinations, clusterResourceWhitelist,
namespaceResourceWhitelist). The simulated compute plane, which stands in for
ArgoCD, is held to the same reading.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from contract.repository import (AGENT_DIR, BOOTSTRAP_DIR, ROOT_FILE, agent_role_file, agent_rolebinding_file,
                                 namespace_file, workspace_dir)
from gitops import apply as apply_service
from gitops.repo import ClusterRepo
from renderer.bootstrap import AGENT_NAME, agent_application_name, apps_application_name, root_application_name
from renderer.profiles import ClusterProfile, load_profile, load_profile_text
from renderer.render import render, render_bootstrap
from renderer.spec import load_specs
from simulation.repository import GitMirror
from tests.test_agent_bootstrap import WORKSPACE_RULES
from tests.test_kubectl import assert_kustomize_builds

ROOT = Path(__file__).resolve().parent.parent
EKS = ROOT / "fixtures" / "clusters" / "eks.yaml"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def specs(profile: ClusterProfile, workspace: str, app: str) -> str:
    """A service and a job (which brings a Role and RoleBinding of its own) in ``workspace``."""
    fqn = f"{profile.name}:{workspace}"
    return (f"type: service\nname: {app}\nworkspace_fqn: {fqn}\nimage: {{type: image, image_uri: 'ghcr.io/acme/{app}:1'}}\n"
            f"ports: [{{port: 8000}}]\n---\n"
            f"type: job\nname: {app}-batch\nworkspace_fqn: {fqn}\nimage: {{type: image, image_uri: 'ghcr.io/acme/b:1', "
            f"command: 'run --day {{{{day}}}}'}}\ntrigger: {{type: manual}}\nparams: [{{name: day, default: today}}]\n")


def deploy(repo: ClusterRepo, profile: ClusterProfile, workspace: str, app: str):
    return apply_service.apply([render(s, profile) for s in load_specs(specs(profile, workspace, app))], profile, repo)


@pytest.fixture
def eks_repo(tmp_path) -> tuple[ClusterRepo, ClusterProfile]:
    """The EKS example (agent, its token from External Secrets) with two workspaces of two apps."""
    profile = load_profile(EKS)
    repo = ClusterRepo(tmp_path / "prod-eks.git")
    deploy(repo, profile, "payments", "ledger")
    deploy(repo, profile, "storefront", "web")
    return repo, profile


# --- ArgoCD's reading of the repository ----------------------------------------------------------


def argocd_view(files: dict[str, bytes]) -> dict[str, tuple[dict, dict[str, dict]]]:
    """Every Application ArgoCD has once ROOT_FILE is applied, by name: (its object, the objects of the
    files it syncs by path). An Application syncs the files of ``source.path``, and of the directories
    below with ``directory.recurse``; each Application among them is created and followed in turn."""
    documents = {path: yaml.safe_load(data) for path, data in files.items()}
    view: dict[str, tuple[dict, dict[str, dict]]] = {}
    queue = [documents[ROOT_FILE]]
    while queue:
        application = queue.pop(0)
        name = application["metadata"]["name"]
        if name in view:
            continue
        source = application["spec"]["source"]
        prefix = source["path"].rstrip("/") + "/"
        recurse = source.get("directory", {}).get("recurse", False)
        synced = {path: obj for path, obj in documents.items()
                  if path.startswith(prefix) and (recurse or "/" not in path[len(prefix):])}
        view[name] = (application, synced)
        queue += [obj for obj in synced.values() if obj["kind"] == "Application"]
    return view


def refusals(view: dict[str, tuple[dict, dict[str, dict]]]) -> list[str]:
    """What ArgoCD would refuse: an Application whose project does not exist or does not allow its
    repository or destination, an object of a namespace or kind its Application's project does not allow."""
    projects = {obj["metadata"]["name"]: obj for _, synced in view.values() for obj in synced.values()
                if obj["kind"] == "AppProject"}
    problems = []
    for name, (application, synced) in view.items():
        spec = application["spec"]
        if spec["project"] == "default":  # comes with Argo CD, and permits everything
            continue
        if spec["project"] not in projects:
            problems.append(f"{name}: project {spec['project']} does not exist")
            continue
        rules = projects[spec["project"]]["spec"]
        if spec["source"]["repoURL"] not in rules["sourceRepos"]:
            problems.append(f"{name}: repository not permitted")
        server = spec["destination"]["server"]
        destinations = {(d["server"], d["namespace"]) for d in rules["destinations"]}
        if (server, spec["destination"]["namespace"]) not in destinations:
            problems.append(f"{name}: destination not permitted")
        cluster_kinds = {(k["group"], k["kind"]) for k in rules.get("clusterResourceWhitelist", [])}
        namespaced_kinds = ({(k["group"], k["kind"]) for k in rules["namespaceResourceWhitelist"]}
                            if "namespaceResourceWhitelist" in rules else None)
        for path, obj in synced.items():
            group_kind = (obj["apiVersion"].rpartition("/")[0], obj["kind"])
            namespace = obj["metadata"].get("namespace")
            if namespace is None:
                assert obj["kind"] in CLUSTER_SCOPED, path  # every namespaced object names its namespace
                if group_kind not in cluster_kinds:
                    problems.append(f"{name}: {path}: cluster-scoped {obj['kind']} not permitted")
            else:
                if (server, namespace) not in destinations:
                    problems.append(f"{name}: {path}: namespace {namespace} not permitted")
                if namespaced_kinds is not None and group_kind not in namespaced_kinds:
                    problems.append(f"{name}: {path}: {obj['kind']} not permitted")
    return problems


def annotation(obj: dict, key: str) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(f"argocd.argoproj.io/{key}")


# --- one manual step, then ArgoCD reaches everything ----------------------------------------------


def test_only_the_root_is_applied_by_hand(eks_repo):
    repo, profile = eks_repo
    files = repo.snapshot().walk()
    view = argocd_view(files)
    synced_by: dict[str, list[str]] = {}
    for name, (_, synced) in view.items():
        for path in synced:
            synced_by.setdefault(path, []).append(name)
    assert set(synced_by) == set(files), sorted(set(files) - set(synced_by))  # nothing left for kubectl
    assert all(len(names) == 1 for names in synced_by.values()), synced_by  # and nothing synced twice
    root = root_application_name(profile)
    assert synced_by[ROOT_FILE] == [root]  # the root manages itself: a change to it needs no kubectl either
    assert synced_by["bootstrap/project.yaml"] == [root]
    assert synced_by[f"{AGENT_DIR}/10-clusterrole.yaml"] == [agent_application_name(profile)]
    assert synced_by[agent_role_file("payments")] == ["payments"]  # the workspace's own Application


def test_every_object_is_admitted_by_the_project_of_its_application(eks_repo):
    repo, _ = eks_repo
    view = argocd_view(repo.snapshot().walk())
    assert refusals(view) == []
    # the check has teeth: a workspace missing from the apps' project refuses its Applications
    project = next(obj for _, synced in view.values() for path, obj in synced.items()
                   if path == "bootstrap/project.yaml")
    project["spec"]["destinations"] = [d for d in project["spec"]["destinations"] if d["namespace"] != "payments"]
    assert "payments: destination not permitted" in refusals(view)


def test_the_apps_project_is_not_widened_and_the_agents_is_exactly_its_install(eks_repo):
    repo, profile = eks_repo
    view = argocd_view(repo.snapshot().walk())
    bootstrap = view[root_application_name(profile)][1]
    apps_project = bootstrap["bootstrap/project.yaml"]["spec"]
    assert {d["namespace"] for d in apps_project["destinations"]} == {"payments", "storefront"}
    assert apps_project["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    agent_project = bootstrap["bootstrap/agent-project.yaml"]["spec"]
    assert {d["namespace"] for d in agent_project["destinations"]} == {"argocd", "shipyard-system"}
    assert agent_project["clusterResourceWhitelist"] == [
        {"group": "", "kind": "Namespace"}, {"group": "rbac.authorization.k8s.io", "kind": "ClusterRole"},
        {"group": "rbac.authorization.k8s.io", "kind": "ClusterRoleBinding"}]
    assert agent_project["namespaceResourceWhitelist"] == [
        {"group": "", "kind": "ServiceAccount"}, {"group": "apps", "kind": "Deployment"},
        {"group": "external-secrets.io", "kind": "ExternalSecret"},
        {"group": "rbac.authorization.k8s.io", "kind": "Role"},
        {"group": "rbac.authorization.k8s.io", "kind": "RoleBinding"}]
    for spec in (apps_project, agent_project):
        assert "*" not in str(spec["destinations"]) and spec["sourceRepos"] == [profile.repo_url]
    # the agent's Role in a workspace comes with the workspace, in the apps' project, and is the agent's own
    workspace_app, synced = view["payments"]
    assert workspace_app["spec"]["project"] == profile.argocd_project
    role, binding = synced[agent_role_file("payments")], synced[agent_rolebinding_file("payments")]
    assert (role["kind"], role["metadata"]["namespace"], role["rules"]) == ("Role", "payments", WORKSPACE_RULES)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": AGENT_NAME, "namespace": "shipyard-system"}]
    # ... and is created with its namespace, by the Application that creates the namespace
    assert namespace_file("payments") in synced and "CreateNamespace=true" in workspace_app["spec"]["syncPolicy"][
        "syncOptions"]


def test_projects_come_before_the_applications_that_name_them(eks_repo):
    repo, profile = eks_repo
    root, bootstrap = argocd_view(repo.snapshot().walk())[root_application_name(profile)]
    assert root["spec"]["project"] == "default"  # the one project there before the root's first sync
    waves = {obj["metadata"]["name"]: int(annotation(obj, "sync-wave") or 0)
             for obj in bootstrap.values() if obj["kind"] == "AppProject"}
    assert set(waves) == {profile.argocd_project, agent_application_name(profile)}
    naming = [obj for obj in bootstrap.values() if obj["kind"] == "Application" and obj["spec"]["project"] != "default"]
    assert [obj["metadata"]["name"] for obj in naming] == [agent_application_name(profile)]
    for obj in naming:
        assert waves[obj["spec"]["project"]] < int(annotation(obj, "sync-wave") or 0), obj["metadata"]["name"]


def test_what_must_never_be_pruned_by_accident_is_kept(eks_repo):
    repo, profile = eks_repo
    view = argocd_view(repo.snapshot().walk())
    root, bootstrap = view[root_application_name(profile)]
    apps = bootstrap["bootstrap/apps.yaml"]
    for kept in (bootstrap["bootstrap/project.yaml"], apps, view[agent_application_name(profile)][1][
            f"{AGENT_DIR}/00-namespace.yaml"]):
        options = set(annotation(kept, "sync-options").split(","))
        assert {"Prune=false", "Delete=false"} <= options, kept["metadata"]["name"]
    # deleting the root or the app of apps takes nothing with it; deleting the agent's Application
    # (its section dropped from the profile) removes the install
    assert "finalizers" not in root["metadata"] and "finalizers" not in apps["metadata"]
    assert bootstrap["bootstrap/agent.yaml"]["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]


def test_a_new_workspace_needs_nothing_applied_by_hand(eks_repo):
    repo, profile = eks_repo
    before = repo.snapshot().walk()
    deploy(repo, profile, "search", "indexer")
    after = repo.snapshot().walk()
    view = argocd_view(after)
    assert refusals(view) == []
    changed = {path for path in after if before.get(path) != after[path]}
    synced = {path for _, files in view.values() for path in files}
    assert changed <= synced and agent_role_file("search") in changed
    assert view["search"][0]["spec"]["source"]["path"] == workspace_dir("search")
    project = view[root_application_name(profile)][1]["bootstrap/project.yaml"]
    assert {"server": profile.destination_server, "namespace": "search"} in project["spec"]["destinations"]


def test_the_app_of_apps_keeps_the_name_and_source_of_the_former_root(eks_repo):
    """A repository of the former layout had bootstrap/root.yaml named shipyard-<cluster>, over apps/.
    Its successor under that name is the app of apps, unchanged, so applying the new root adopts it;
    a new root of that name would sync bootstrap/ instead and prune every app's Application."""
    repo, profile = eks_repo
    bootstrap = argocd_view(repo.snapshot().walk())[root_application_name(profile)][1]
    apps = bootstrap["bootstrap/apps.yaml"]
    assert apps["metadata"]["name"] == apps_application_name(profile) == f"shipyard-{profile.name}"
    assert (apps["spec"]["project"], apps["spec"]["source"]["path"], apps["spec"]["source"]["directory"]) == (
        "default", "apps", {"recurse": True})
    assert root_application_name(profile) != apps_application_name(profile)


def test_an_unchanged_cluster_makes_no_commit_and_dropping_the_agent_removes_it(eks_repo):
    repo, profile = eks_repo
    tip = repo.tip()
    apply_service.apply([], profile, repo, workspace_settings={})
    assert repo.tip() == tip
    no_agent = load_profile_text(EKS.read_text().split("\nagent:")[0] + "\n", "eks.yaml")
    apply_service.apply([], no_agent, repo)
    files = repo.snapshot().walk()
    assert sorted(p for p in files if p.startswith(BOOTSTRAP_DIR + "/")) == [
        "bootstrap/apps.yaml", "bootstrap/project.yaml", "bootstrap/root.yaml"]
    assert not any(p.endswith(("/agent-role.yaml", "/agent-rolebinding.yaml")) for p in files)
    assert refusals(argocd_view(files)) == []


def test_a_deploy_leaves_other_workspaces_alone_and_a_changed_agent_reaches_them_all(eks_repo):
    """A deploy rewrites the agent's access only where it deploys (the others' trees keep their ids, so a
    cluster of many workspaces does not rebuild each); a profile whose agent changes rewrites every one."""
    repo, profile = eks_repo
    before = repo.snapshot()
    deploy(repo, profile, "payments", "ledger")
    after = repo.snapshot()
    assert after.tree_id(workspace_dir("storefront")) == before.tree_id(workspace_dir("storefront"))
    renamed = load_profile_text(EKS.read_text().replace("\nagent:\n", "\nagent:\n  namespace: shipyard-agent\n"),
                                "eks.yaml")
    assert renamed.agent.namespace == "shipyard-agent"
    deploy(repo, renamed, "payments", "ledger")
    for workspace in ("payments", "storefront"):
        binding = yaml.safe_load(repo.snapshot().read(agent_rolebinding_file(workspace)))
        assert binding["subjects"][0]["namespace"] == "shipyard-agent", workspace


def test_the_bootstrap_is_valid_for_argocds_crds(crd_schemas):
    profile = load_profile(EKS)
    objects = render_bootstrap(profile, ["payments"], crd_schemas)
    for name in ("root.yaml", "project.yaml", "apps.yaml", "agent-project.yaml", "agent.yaml"):
        assert crd_schemas.validate(objects[name], profile.kubernetes_version), name  # checked, not skipped


def test_kubectl_builds_the_bootstrap_and_a_workspace_directory(eks_repo, kubectl, tmp_path):
    repo, _ = eks_repo
    subprocess.run(["git", "clone", "--quiet", str(repo.path), str(tmp_path / "clone")], check=True, timeout=60)
    built = assert_kustomize_builds(kubectl, tmp_path / "clone" / BOOTSTRAP_DIR, tmp_path / "bootstrap")
    assert sorted(obj["kind"] for obj in built) == ["AppProject", "AppProject", "Application", "Application",
                                                    "Application"]
    built = assert_kustomize_builds(kubectl, tmp_path / "clone" / workspace_dir("payments"), tmp_path / "payments")
    assert sorted(obj["kind"] for obj in built) == ["Namespace", "Role", "RoleBinding"]


# --- the simulated compute plane reads it the same way ---------------------------------------------


def read(mirror: GitMirror) -> dict:
    return mirror.read_apps(mirror.fetch())


def commit(repo: ClusterRepo, changes: dict) -> None:
    repo.commit(lambda base: changes, "Edited by hand\n")


def test_the_simulation_follows_the_root_and_the_projects(eks_repo, tmp_path, caplog):
    repo, profile = eks_repo
    mirror = GitMirror(tmp_path / "mirror", str(repo.path), profile.branch, None)
    apps = read(mirror)
    assert set(apps) == {("payments", "ledger"), ("payments", "ledger-batch"), ("storefront", "web"),
                         ("storefront", "web-batch")}
    ledger = apps[("payments", "ledger")]

    # a new app and a changed one in payments, which the apps' project no longer admits (edited by
    # hand): ArgoCD neither syncs nor prunes their Applications
    deploy(repo, profile, "payments", "ledger-new")
    project = yaml.safe_load(repo.snapshot().read("bootstrap/project.yaml"))
    project["spec"]["destinations"] = [d for d in project["spec"]["destinations"] if d["namespace"] != "payments"]
    deployment = "workspaces/payments/ledger/deployment-ledger.yaml"
    commit(repo, {"bootstrap/project.yaml": yaml.safe_dump(project).encode(),
                  deployment: repo.snapshot().read(deployment).replace(b"acme/ledger:1", b"acme/ledger:2")})
    apps = read(mirror)
    assert apps[("payments", "ledger")] == ledger  # what it had, not the new image
    assert ("payments", "ledger-new") not in apps  # never synced
    assert "do not match any of the allowed destinations in project 'shipyard'" in caplog.text

    # the project restored (by the next commit of the bootstrap): both are synced
    apply_service.apply([], profile, repo)
    apps = read(mirror)
    assert apps[("payments", "ledger")].images == ("ghcr.io/acme/ledger:2",) and ("payments", "ledger-new") in apps


def test_the_simulation_needs_the_root_and_the_project_it_names(eks_repo, tmp_path, caplog):
    repo, profile = eks_repo
    mirror = GitMirror(tmp_path / "mirror", str(repo.path), profile.branch, None)
    commit(repo, {"bootstrap/project.yaml": yaml.safe_dump(
        {**yaml.safe_load(repo.snapshot().read("bootstrap/project.yaml")), "kind": "ConfigMap"}).encode()})
    assert read(mirror) == {}  # nothing synced before, nothing to keep
    assert "Application referencing project shipyard which does not exist" in caplog.text
    apply_service.apply([], profile, repo)
    assert len(read(mirror)) == 4
    commit(repo, {ROOT_FILE: yaml.safe_dump({"kind": "ConfigMap", "metadata": {"name": "x"}}).encode()})
    assert read(GitMirror(tmp_path / "fresh", str(repo.path), profile.branch, None)) == {}
