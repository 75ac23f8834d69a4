"""A cluster repository's paths and names: the contract between Shipyard, ArgoCD and the agent.

::

    bootstrap/project.yaml          AppProject: only workspace namespaces as destinations
    bootstrap/root.yaml             root Application (app-of-apps over apps/), applied once
    bootstrap/agent/                the agent's install, when the profile has an ``agent`` section
    apps/<ws>.yaml                  Application of the workspace (its namespace), named <ws>
    apps/<ws>/<app>.yaml            Application of one app, named <ws>.<app> -> workspaces/<ws>/<app>
    workspaces/<ws>/namespace.yaml  the workspace's Namespace
    workspaces/<ws>/quota.yaml      its ResourceQuota, when the workspace has a quota
    workspaces/<ws>/<app>/<kind>-<name>.yaml   the app's manifests, one object per file

The renderer names what it writes with these functions, the repository
service lays files out with them, the status ingest reads an app back out of
its Application's name, and the simulated compute plane finds apps as ArgoCD
does, all from here. Workspace and app names are DNS labels: they hold no dot
and no slash, which is what makes every name here parse back.
"""

from __future__ import annotations

BOOTSTRAP_DIR = "bootstrap"
AGENT_DIR = f"{BOOTSTRAP_DIR}/agent"
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


def preview_service_name(app: str) -> str:
    """The blue-green preview Service, the one object named after something other than its app."""
    return f"{app}{PREVIEW_SUFFIX}"


def preview_owner(service: str) -> str | None:
    """The app whose preview Service ``service`` would be, if it is named like one."""
    return service[: -len(PREVIEW_SUFFIX)] if service.endswith(PREVIEW_SUFFIX) else None


__all__ = [
    "BOOTSTRAP_DIR", "AGENT_DIR", "APPS_DIR", "WORKSPACES_DIR", "MANIFEST_SUFFIX", "PREVIEW_SUFFIX",
    "app_dir", "workspace_dir", "application_file", "workspace_application_file", "namespace_file", "quota_file",
    "object_filename", "kind_of_filename", "application_name", "parse_application_name",
    "app_of_application_file", "app_of_manifest_file", "preview_service_name", "preview_owner",
]
