"""A cluster repository's paths and names: the contract between Shipyard, ArgoCD and the agent.

::

    bootstrap/root.yaml             root Application: syncs bootstrap/, itself included; the one file
                                    applied by hand, once (kubectl apply -f bootstrap/root.yaml)
    bootstrap/project.yaml          AppProject of the apps: only workspace namespaces as destinations
    bootstrap/apps.yaml             Application over apps/ (app of apps)
    bootstrap/agent-project.yaml    AppProject of the agent's install   } when the profile has
    bootstrap/agent.yaml            Application over bootstrap/agent/   } an ``agent`` section
    bootstrap/agent/                the agent's install
    apps/<ws>.yaml                  Application of the workspace (its namespace), named <ws>
    apps/<ws>/<app>.yaml            Application of one app, named <ws>.<app> -> workspaces/<ws>/<app>
    workspaces/<ws>/namespace.yaml  the workspace's Namespace
    workspaces/<ws>/quota.yaml      its ResourceQuota, when the workspace has a quota
    workspaces/<ws>/agent-role.yaml, agent-rolebinding.yaml   the agent's access to the namespace
    workspaces/<ws>/<app>/<kind>-<name>.yaml   the app's manifests, one object per file

Everything but root.yaml reaches the cluster through an Application the root
leads to (renderer.bootstrap says how), so nothing is ever applied by hand
again. The renderer names what it writes with these functions, the repository
service lays files out with them, the status ingest reads an app back out of
its Application's name, and the simulated compute plane follows the
Applications from ``ROOT_FILE`` as ArgoCD does, all from here. Workspace and
app names are DNS labels: they hold no dot and no slash, which is what makes
every name here parse back.

Which Applications a commit touched, by the paths it changed (``touched_applications``):
what the control plane asks ArgoCD to refresh through the cluster's agent (gitops.refreshes)::

    workspaces/<ws>/<app>/...           <ws>.<app>
    workspaces/<ws>/<file>              <ws> (the workspace's Application)
    apps/<ws>/<app>.yaml                <ws>.<app>, and the app of apps, which applies the file
    apps/<ws>.yaml                      <ws>, and the app of apps
    bootstrap/agent/...                 the agent's Application
    bootstrap/<file>                    the root; bootstrap/apps.yaml the app of apps too

An Application file that changes reaches the cluster only when the app of apps syncs it, so
any change under apps/ (an app added, changed or deleted) refreshes the app of apps as well.
"""

from __future__ import annotations

from collections.abc import Iterable

BOOTSTRAP_DIR = "bootstrap"
AGENT_DIR = f"{BOOTSTRAP_DIR}/agent"
ROOT_FILE = f"{BOOTSTRAP_DIR}/root.yaml"
APPS_DIR = "apps"
WORKSPACES_DIR = "workspaces"
MANIFEST_SUFFIX = ".yaml"
PREVIEW_SUFFIX = "-preview"


def app_dir(workspace: str, app: str) -> str:
    """The directory of an app's manifests, which its Application syncs."""
    return f"{WORKSPACES_DIR}/{workspace}/{app}"


def workspace_dir(workspace: str) -> str:
    """The directory the workspace's Application syncs (its Namespace and quota; apps are below it)."""
    return f"{WORKSPACES_DIR}/{workspace}"


def application_file(workspace: str, app: str) -> str:
    return f"{APPS_DIR}/{workspace}/{app}{MANIFEST_SUFFIX}"


def workspace_application_file(workspace: str) -> str:
    return f"{APPS_DIR}/{workspace}{MANIFEST_SUFFIX}"


def namespace_file(workspace: str) -> str:
    return f"{WORKSPACES_DIR}/{workspace}/namespace{MANIFEST_SUFFIX}"


def quota_file(workspace: str) -> str:
    return f"{WORKSPACES_DIR}/{workspace}/quota{MANIFEST_SUFFIX}"


def agent_role_file(workspace: str) -> str:
    """The agent's Role in the workspace namespace: a file of the workspace, synced with its Namespace."""
    return f"{WORKSPACES_DIR}/{workspace}/agent-role{MANIFEST_SUFFIX}"


def agent_rolebinding_file(workspace: str) -> str:
    return f"{WORKSPACES_DIR}/{workspace}/agent-rolebinding{MANIFEST_SUFFIX}"


def object_filename(kind: str, name: str) -> str:
    """An object's file in its app's directory: ``<kind>-<name>.yaml`` (kind in lower case)."""
    return f"{kind.lower()}-{name}{MANIFEST_SUFFIX}"


def kind_of_filename(filename: str) -> str:
    """The lower-case kind an app directory's file holds (``deployment-web.yaml`` -> ``deployment``)."""
    return filename.split("-", 1)[0]


def application_name(workspace: str, app: str | None = None) -> str:
    """The ArgoCD Application of an app, ``<workspace>.<app>``; of a workspace, its name."""
    return f"{workspace}.{app}" if app else workspace


def parse_application_name(name: str) -> tuple[str, str] | None:
    """(workspace, app) of an app's Application name; None for any other name."""
    workspace, dot, app = name.partition(".")
    return (workspace, app) if dot and workspace and app and "." not in app else None


def app_of_application_file(path: str) -> tuple[str, str] | None:
    """(workspace, app) when ``path`` is an app's Application file, ``apps/<ws>/<app>.yaml``."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == APPS_DIR and parts[2].endswith(MANIFEST_SUFFIX):
        return parts[1], parts[2][: -len(MANIFEST_SUFFIX)]
    return None


def app_of_manifest_file(path: str) -> tuple[str, str, str] | None:
    """(workspace, app, file name) when ``path`` is a file of an app's directory."""
    parts = path.split("/")
    if len(parts) == 4 and parts[0] == WORKSPACES_DIR:
        return parts[1], parts[2], parts[3]
    return None


def root_application_name(cluster: str) -> str:
    """The root Application, over bootstrap/ (renderer.bootstrap names what it renders with these three)."""
    return f"shipyard-{cluster}-bootstrap"


def apps_application_name(cluster: str) -> str:
    """The app of apps, over apps/."""
    return f"shipyard-{cluster}"


def agent_application_name(cluster: str) -> str:
    """The agent's Application, over bootstrap/agent/."""
    return f"shipyard-{cluster}-agent"


def touched_applications(paths: Iterable[str], cluster: str) -> set[str]:
    """The names of the Applications that sync the files at ``paths`` (the table of the module's docstring).

    Pure: ``paths`` are the files a commit added, changed or removed; a path no Application
    syncs touches none.
    """
    names: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if parts[0] == WORKSPACES_DIR and len(parts) >= 3:
            names.add(application_name(parts[1], parts[2] if len(parts) > 3 else None))
        elif parts[0] == APPS_DIR and len(parts) in (2, 3) and parts[-1].endswith(MANIFEST_SUFFIX):
            name = parts[-1][: -len(MANIFEST_SUFFIX)]
            names.add(application_name(parts[1], name) if len(parts) == 3 else application_name(name))
            names.add(apps_application_name(cluster))
        elif path.startswith(f"{AGENT_DIR}/"):
            names.add(agent_application_name(cluster))
        elif parts[0] == BOOTSTRAP_DIR and len(parts) == 2:
            names.add(root_application_name(cluster))
            if parts[1] == f"apps{MANIFEST_SUFFIX}":
                names.add(apps_application_name(cluster))
    return names


def preview_service_name(app: str) -> str:
    """The blue-green preview Service, the one object named after something other than its app."""
    return f"{app}{PREVIEW_SUFFIX}"


__all__ = [
    "BOOTSTRAP_DIR", "AGENT_DIR", "ROOT_FILE", "APPS_DIR", "WORKSPACES_DIR", "MANIFEST_SUFFIX", "PREVIEW_SUFFIX",
    "app_dir", "workspace_dir", "application_file", "workspace_application_file", "namespace_file", "quota_file",
    "agent_role_file", "agent_rolebinding_file",
    "object_filename", "kind_of_filename", "application_name", "parse_application_name",
    "app_of_application_file", "app_of_manifest_file", "preview_service_name",
    "root_application_name", "apps_application_name", "agent_application_name", "touched_applications",
]
