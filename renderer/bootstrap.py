"""bootstrap/ of a cluster repository: the root Application applied once by hand, and what it syncs.

The only manual step, ever, is ``kubectl apply -f bootstrap/root.yaml``. The
root syncs bootstrap/, root.yaml included, so every later change to the
bootstrap reaches the cluster through ArgoCD (Argo CD, "Cluster
Bootstrapping"):

==================  ========================================================
root.yaml           the root, in project ``default`` (the one project that
                    exists before this sync creates Shipyard's own)
project.yaml        the apps' AppProject: the workspace namespaces only, and
                    no cluster-scoped kind but Namespace
apps.yaml           the app of apps over apps/, in ``default`` (as the root of
                    older repositories was, under the same name: ArgoCD adopts
                    it, it does not delete and recreate every app)
agent-project.yaml  the agent's AppProject: the agent's and ArgoCD's
                    namespaces, and exactly the kinds of its install
agent.yaml          the Application over agent/
agent/              the agent's least-privilege install
==================  ========================================================

The AppProjects are in sync wave -1, before the Applications that name them.
A new workspace's Applications come from the app of apps and the AppProject
that admits its namespace from the root, two syncs of the same commit: one
Application read before its project was updated is refused until its next
reconciliation (argocd-cm ``timeout.reconciliation``, 3 minutes by default),
then synced, with nothing applied by hand.

The agent's Role and RoleBinding in a workspace namespace are not here:
``render_workspace_agent_access`` renders them into the workspace's own
directory, so the workspace's Application, in the apps' project, creates them
with the namespace; the apps' project is not widened, as they stay inside
that namespace. Pure: profile + workspace names in, objects out.
"""

from __future__ import annotations

from renderer.argocd import argocd_context, git_context
from renderer.engine import render_template
from contract.errors import Problem, ProfileError
from renderer.flavors import flavor_named
from renderer.kube import CORE_ONLY, KubeSchemas
from contract.labels import CLUSTER_LABEL, MANAGED_BY
from contract import repository
from contract.repository import AGENT_DIR, APPS_DIR, BOOTSTRAP_DIR
from renderer.profiles import ClusterProfile
from renderer.secret_refs import UnmappableSecretRef, remote_ref


def root_application_name(profile: ClusterProfile) -> str:
    return repository.root_application_name(profile.name)


def apps_application_name(profile: ClusterProfile) -> str:
    """The app of apps: the name the root Application of older repositories had, so it is adopted."""
    return repository.apps_application_name(profile.name)


def agent_application_name(profile: ClusterProfile) -> str:
    """The agent's Application, and its AppProject."""
    return repository.agent_application_name(profile.name)


def render_bootstrap(profile: ClusterProfile, workspaces: list[str], schemas: KubeSchemas = CORE_ONLY) -> dict[str, dict]:
    """bootstrap/ objects by file name (the module's table); the agent's files, its AppProject and its
    Application when the profile has an ``agent`` section (render_agent)."""
    version = profile.kubernetes_version
    base = {"argocd": argocd_context(profile), "git": git_context(profile), "labels": _bootstrap_labels(profile)}
    apps_project = {
        "name": profile.argocd_project,
        "description": "Applications managed by Shipyard; limited to the namespaces of Shipyard workspaces.",
        "destinations": [{"server": profile.destination_server, "namespace": ws} for ws in sorted(workspaces)],
        "cluster_resources": [{"group": "", "kind": "Namespace"}],
        "namespace_resources": None,
        "warn_orphans": True,
        # Every app names it: ArgoCD never prunes or deletes it. Applied server-side: with a
        # destination per workspace it can outgrow the 256 KiB of annotations a client-side apply
        # copies the whole object into (Argo CD, "Sync Options": Server-Side Apply).
        "sync_options": "Prune=false,Delete=false,ServerSideApply=true",
    }
    apps = {
        "name": apps_application_name(profile), "project": "default", "path": APPS_DIR, "recurse": True,
        "namespace": profile.argocd_namespace,
        # Gone by accident (a prune, or a cascading delete of the root), it must take no app with it:
        # no finalizer, and ArgoCD neither prunes nor deletes it.
        "cascade": False, "sync_options": "Prune=false,Delete=false",
    }
    files = {
        "root.yaml": render_template("argocd/root.yaml.j2", dict(
            base, root_name=root_application_name(profile), path=BOOTSTRAP_DIR), version, schemas),
        "project.yaml": render_template("argocd/appproject.yaml.j2", dict(base, project=apps_project), version, schemas),
        "apps.yaml": render_template("argocd/bootstrap-application.yaml.j2", dict(base, application=apps),
                                     version, schemas),
    }
    agent_files = render_agent(profile, workspaces, schemas)
    if agent_files:
        name = agent_application_name(profile)
        files["agent-project.yaml"] = render_template("argocd/appproject.yaml.j2", dict(
            base, project=_agent_project(profile, name, list(agent_files.values()))), version, schemas)
        # Cascading: when the profile drops its agent, the root prunes this Application and its
        # finalizer removes the install (but the Namespace, templates/agent/namespace.yaml.j2).
        files["agent.yaml"] = render_template("argocd/bootstrap-application.yaml.j2", dict(base, application={
            "name": name, "project": name, "path": AGENT_DIR, "recurse": False, "namespace": profile.agent.namespace,
            "cascade": True, "sync_options": None,
        }), version, schemas)
        files.update(agent_files)
    return files


def _agent_project(profile: ClusterProfile, name: str, install: list[dict]) -> dict:
    """The agent's AppProject: the namespaces its install is in and exactly the kinds it holds, so
    the project permits that install and nothing more."""
    namespaces, namespaced, cluster_scoped = set(), set(), set()
    for obj in install:
        group_kind = (obj["apiVersion"].rpartition("/")[0], obj["kind"])
        namespace = obj["metadata"].get("namespace")
        if namespace:
            namespaces.add(namespace)
            namespaced.add(group_kind)
        else:
            cluster_scoped.add(group_kind)
    return {
        "name": name,
        "description": "The Shipyard agent's install: its namespace, its Role in the ArgoCD namespace, "
                       "and its ClusterRole to list CRDs.",
        "destinations": [{"server": profile.destination_server, "namespace": ns} for ns in sorted(namespaces)],
        "cluster_resources": [{"group": group, "kind": kind} for group, kind in sorted(cluster_scoped)],
        "namespace_resources": [{"group": group, "kind": kind} for group, kind in sorted(namespaced)],
        "warn_orphans": False,
        "sync_options": None,
    }


def _bootstrap_labels(profile: ClusterProfile) -> dict:
    return {**MANAGED_BY, CLUSTER_LABEL: profile.name}


AGENT_NAME = "shipyard-agent"
AGENT_TOKEN_DIR = "/var/run/secrets/shipyard"
AGENT_METRICS_PORT = 9090
# The agent's memory budget (benchmarks/agent_rss.py): a base (the interpreter, the Kubernetes client,
# httpx, threads) and what it keeps per followed object (its compact state, digest and key in the
# Tracker, and a pending delta until the control plane acknowledges it); lists are read an object at
# a time (agent.listing), so what the agent reads does not add to it. Sized by default for 40,000
# followed objects (10,000 apps, each a Deployment and two Pods, with their Applications);
# a profile's agent.resources raises it.
AGENT_MEMORY_BASE_MB = 55  # the agent's imports, idle: 54.9 MB
AGENT_MEMORY_PER_1000_MB = 1.3  # (106.9 - 54.9) MB at 40,000; the same for Applications, Deployments, Rollouts, Pods, Workflows, Jobs
AGENT_FOLLOWED_OBJECTS = 40_000
AGENT_CPU_LIMIT = "500m"


def agent_memory(followed_objects: int) -> str:
    """The memory request and limit for an agent following this many objects, rounded up to 16Mi."""
    megabytes = AGENT_MEMORY_BASE_MB + AGENT_MEMORY_PER_1000_MB * followed_objects / 1000
    return f"{-(-int(megabytes * 1e6 / 2**20) // 16) * 16}Mi"


def agent_resources(profile: ClusterProfile) -> dict:
    """The agent container's resources: memory requested as much as its limit (the agent's memory is
    what it follows, not a burst; a pod using more than it requested is the first evicted under node
    memory pressure: Kubernetes "Node-pressure Eviction"), CPU a tenth of its limit (it idles
    between events). Where pods must have limits equal to requests (GKE Autopilot before Pod
    bursting), the CPU limit is requested."""
    agent = profile.agent
    memory = agent.memory or agent_memory(agent.followed_objects or AGENT_FOLLOWED_OBJECTS)
    cpu = agent.cpu or AGENT_CPU_LIMIT
    millicores = int(cpu[:-1]) if cpu.endswith("m") else int(cpu) * 1000
    request = cpu if flavor_named(profile.flavor).limits_equal_requests(profile.kubernetes_version) \
        else f"{max(50, millicores // 10)}m"
    return {"requests": {"cpu": request, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}

_AGENT_SELECTOR = {"app.kubernetes.io/name": AGENT_NAME, **MANAGED_BY}


def agent_env(profile: ClusterProfile, workspaces: list[str]) -> list[dict]:
    """The agent's environment (agent/settings.py): who it is, where it reports, what it follows.

    SHIPYARD_NAMESPACES names the workspace namespaces exactly, so the agent watches each of
    them (agent.watch.targets) and the namespaced Roles suffice. With no workspace yet it names
    only the ArgoCD namespace, which the agent never follows workloads in: an allow list of no
    namespace (an empty one would mean every namespace, and cluster-wide watches).
    """
    agent = profile.agent
    namespaces = ",".join(sorted(workspaces)) or profile.argocd_namespace
    env = {
        "SHIPYARD_URL": agent.url,
        "SHIPYARD_TENANT": agent.tenant,
        "SHIPYARD_CLUSTER": profile.name,
        "SHIPYARD_AGENT_TOKEN_FILE": f"{AGENT_TOKEN_DIR}/token",
        "ARGOCD_NAMESPACE": profile.argocd_namespace,
        "SHIPYARD_NAMESPACES": namespaces,
        "SHIPYARD_METRICS_PORT": str(AGENT_METRICS_PORT),
    }
    return [{"name": name, "value": value} for name, value in env.items()]


def render_agent(profile: ClusterProfile, workspaces: list[str], schemas: KubeSchemas = CORE_ONLY) -> dict[str, dict]:
    """The agent's objects for bootstrap/agent/, by file name; none without the profile's ``agent``. Pure.

    Least privilege: a ClusterRole that only lists CRDs and a Role in the ArgoCD namespace (the
    rules and the code behind each verb are in templates/agent/); its Role in each workspace
    namespace is the workspace's (render_workspace_agent_access). ArgoCD orders a sync by kind,
    Namespace first (Argo CD, "Sync Phases and Waves"); the file names are numbered as well, so
    that ``kubectl apply -R -f bootstrap/`` creates the Namespace and ServiceAccount before what
    needs them too.
    """
    agent = profile.agent
    if agent is None:
        return {}
    if agent.namespace in workspaces:
        raise ProfileError([Problem(
            profile.source, 0, 0,
            f'agent.namespace "{agent.namespace}" of cluster "{profile.name}" is a workspace; '
            "give the agent a namespace of its own",
        )])
    version = profile.kubernetes_version
    context = _agent_context(profile)
    selector, agent_labels = _AGENT_SELECTOR, context["labels"]
    files = {
        "agent/00-namespace.yaml": render_template(
            "agent/namespace.yaml.j2", dict(context, labels=_bootstrap_labels(profile)), version, schemas),
        "agent/01-serviceaccount.yaml": render_template("agent/serviceaccount.yaml.j2", context, version, schemas),
    }
    if agent.token_ref is not None:
        store = profile.addon("external_secrets")
        try:  # named as the store names secrets, like an app's references (renderer.secret_refs)
            token = remote_ref(agent.token_ref, profile)
        except UnmappableSecretRef as exc:
            raise ProfileError([Problem(profile.source, 0, 0, f"token_ref: {exc}", "/agent/token_ref")]) from exc
        files["agent/02-externalsecret.yaml"] = render_template("common/externalsecret.yaml.j2", {
            "app": {"namespace": agent.namespace, "labels": agent_labels},
            "secret_name": agent.token_secret,
            "store": store["store"],
            "refresh_interval": store.get("refresh_interval", "1h"),
            "secret_data": [{"secretKey": "token", "remoteRef": token}],
            "addon_api": profile.addon_api,
        }, version, schemas)
    files["agent/10-clusterrole.yaml"] = render_template("agent/clusterrole.yaml.j2", context, version, schemas)
    files["agent/11-clusterrolebinding.yaml"] = render_template("agent/clusterrolebinding.yaml.j2", context, version, schemas)
    scoped = dict(context, namespace=profile.argocd_namespace)
    files[f"agent/20-role-{profile.argocd_namespace}.yaml"] = render_template(
        "agent/role-argocd.yaml.j2", scoped, version, schemas)
    files[f"agent/21-rolebinding-{profile.argocd_namespace}.yaml"] = render_template(
        "agent/rolebinding.yaml.j2", scoped, version, schemas)
    resources = agent_resources(profile)
    files["agent/30-deployment.yaml"] = render_template("agent/deployment.yaml.j2", dict(
        context, selector=selector, env=agent_env(profile, workspaces), resources=resources,
        metrics_port=AGENT_METRICS_PORT, token_dir=AGENT_TOKEN_DIR,
    ), version, schemas)
    return files


def render_workspace_agent_access(profile: ClusterProfile, workspace: str,
                                  schemas: KubeSchemas = CORE_ONLY) -> tuple[dict, dict] | None:
    """The agent's Role and RoleBinding in one workspace namespace; None without the profile's
    ``agent``. Pure.

    They are files of the workspace (contract.repository.agent_role_file), synced by the
    workspace's Application with its Namespace (which ArgoCD creates first, Argo CD "Sync Phases
    and Waves"), in the apps' project, which permits every namespaced kind in a workspace namespace
    and nothing outside it.
    """
    if profile.agent is None:
        return None
    scoped = dict(_agent_context(profile), namespace=workspace)
    version = profile.kubernetes_version
    return (render_template("agent/role-workspace.yaml.j2", scoped, version, schemas),
            render_template("agent/rolebinding.yaml.j2", scoped, version, schemas))


def _agent_context(profile: ClusterProfile) -> dict:
    agent = profile.agent
    return {"agent": {"name": AGENT_NAME, "namespace": agent.namespace, "image": agent.image,
                      "token_secret": agent.token_secret},
            "labels": {**_AGENT_SELECTOR, **_bootstrap_labels(profile)}}


__all__ = [
    "render_bootstrap",
    "render_agent",
    "render_workspace_agent_access",
    "root_application_name",
    "apps_application_name",
    "agent_application_name",
    "agent_env",
    "AGENT_NAME",
    "AGENT_TOKEN_DIR",
    "AGENT_METRICS_PORT",
    "AGENT_MEMORY_BASE_MB",
    "AGENT_MEMORY_PER_1000_MB",
    "AGENT_FOLLOWED_OBJECTS",
    "agent_memory",
    "agent_resources",
]
