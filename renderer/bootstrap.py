"""bootstrap/ of a cluster repository: what an operator applies once, by hand.

The AppProject (only the workspace namespaces), the root Application over
apps/, and, when the profile has an ``agent`` section, the agent's
least-privilege install. Pure: profile + workspace names in, objects out.
"""

from __future__ import annotations

from renderer.argocd import argocd_context, git_context
from renderer.engine import render_template
from contract.errors import Problem, ProfileError
from renderer.flavors import flavor_named
from renderer.kube import CORE_ONLY, KubeSchemas
from contract.labels import CLUSTER_LABEL, MANAGED_BY
from contract.repository import APPS_DIR
from renderer.profiles import ClusterProfile


def render_bootstrap(profile: ClusterProfile, workspaces: list[str], schemas: KubeSchemas = CORE_ONLY) -> dict[str, dict]:
    """bootstrap/ objects by file name: the AppProject (only workspace namespaces), the root app,
    and, when the profile has an ``agent`` section, the agent's install under ``agent/`` (render_agent)."""
    labels = _bootstrap_labels(profile)
    destinations = [{"server": profile.destination_server, "namespace": ws} for ws in sorted(workspaces)]
    base = {"argocd": argocd_context(profile), "git": git_context(profile), "labels": labels}
    # The agent's Role in each workspace namespace comes from bootstrap/, not from an Application:
    # not an orphan to warn about.
    orphans_ignored = [
        {"group": "rbac.authorization.k8s.io", "kind": kind, "name": AGENT_NAME} for kind in ("Role", "RoleBinding")
    ] if profile.agent is not None else []
    return {
        "project.yaml": render_template(
            "argocd/appproject.yaml.j2", dict(base, destinations=destinations, orphans_ignored=orphans_ignored),
            profile.kubernetes_version, schemas,
        ),
        "root.yaml": render_template(
            "argocd/root.yaml.j2", dict(base, root_name=f"shipyard-{profile.name}", apps_dir=APPS_DIR), profile.kubernetes_version, schemas
        ),
        **render_agent(profile, workspaces, schemas),
    }


def _bootstrap_labels(profile: ClusterProfile) -> dict:
    return {**MANAGED_BY, CLUSTER_LABEL: profile.name}


AGENT_NAME = "shipyard-agent"
AGENT_TOKEN_DIR = "/var/run/secrets/shipyard"
AGENT_METRICS_PORT = 9090
# The agent stays under 80 MB RSS following 10,000 Applications (benchmarks/agent_rss.py).
AGENT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
# GKE Autopilot sets limits to the requests: ask for what the agent may need.
AGENT_RESOURCES_AUTOPILOT = {"requests": {"cpu": "100m", "memory": "128Mi"},
                             "limits": {"cpu": "100m", "memory": "128Mi"}}


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

    Least privilege: a ClusterRole that only lists CRDs, a Role in the ArgoCD namespace and one
    in each workspace namespace (the rules and the code behind each verb are in
    templates/agent/). File names are numbered so that ``kubectl apply -R -f bootstrap/`` creates
    the Namespace and ServiceAccount before what needs them.
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
    labels = _bootstrap_labels(profile)
    selector = {"app.kubernetes.io/name": AGENT_NAME, **MANAGED_BY}
    agent_labels = {**selector, **labels}
    context = {"agent": {"name": AGENT_NAME, "namespace": agent.namespace, "image": agent.image,
                         "token_secret": agent.token_secret}, "labels": agent_labels}
    files = {
        "agent/00-namespace.yaml": render_template(
            "common/namespace.yaml.j2", {"namespace": agent.namespace, "labels": labels}, version, schemas),
        "agent/01-serviceaccount.yaml": render_template("agent/serviceaccount.yaml.j2", context, version, schemas),
    }
    if agent.token_ref is not None:
        store = profile.addon("external_secrets")
        files["agent/02-externalsecret.yaml"] = render_template("common/externalsecret.yaml.j2", {
            "app": {"namespace": agent.namespace, "labels": agent_labels},
            "secret_name": agent.token_secret,
            "store": store["store"],
            "refresh_interval": store.get("refresh_interval", "1h"),
            "secret_data": [{"secretKey": "token",
                             "remoteRef": {"key": agent.token_ref.path, "property": agent.token_ref.key}}],
        }, version, schemas)
    files["agent/10-clusterrole.yaml"] = render_template("agent/clusterrole.yaml.j2", context, version, schemas)
    files["agent/11-clusterrolebinding.yaml"] = render_template("agent/clusterrolebinding.yaml.j2", context, version, schemas)
    roles = [("agent/role-argocd.yaml.j2", profile.argocd_namespace)]
    roles += [("agent/role-workspace.yaml.j2", workspace) for workspace in sorted(workspaces)]
    for template, namespace in roles:
        scoped = dict(context, namespace=namespace)
        files[f"agent/20-role-{namespace}.yaml"] = render_template(template, scoped, version, schemas)
        files[f"agent/21-rolebinding-{namespace}.yaml"] = render_template("agent/rolebinding.yaml.j2", scoped, version, schemas)
    resources = (AGENT_RESOURCES_AUTOPILOT if flavor_named(profile.flavor).limits_equal_requests(profile.kubernetes_version)
                 else AGENT_RESOURCES)
    files["agent/30-deployment.yaml"] = render_template("agent/deployment.yaml.j2", dict(
        context, selector=selector, env=agent_env(profile, workspaces), resources=resources,
        metrics_port=AGENT_METRICS_PORT, token_dir=AGENT_TOKEN_DIR,
    ), version, schemas)
    return files


__all__ = [
    "render_bootstrap",
    "render_agent",
    "agent_env",
    "AGENT_NAME",
    "AGENT_TOKEN_DIR",
    "AGENT_METRICS_PORT",
    "AGENT_RESOURCES",
    "AGENT_RESOURCES_AUTOPILOT",
]
