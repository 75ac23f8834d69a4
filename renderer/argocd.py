"""ArgoCD's view of the cluster repository: the Application that syncs an app or a workspace.

``argocd_context`` and ``git_context`` are what every ArgoCD object Shipyard
writes (Applications here, the AppProjects and bootstrap Applications in
renderer.bootstrap)
says about the cluster's ArgoCD and its repository.
"""

from __future__ import annotations

from renderer.engine import render_template
from renderer.kube import CORE_ONLY, KubeSchemas
from contract.repository import app_dir, application_name, workspace_dir
from renderer.naming import common_labels
from renderer.profiles import ClusterProfile


def argocd_context(profile: ClusterProfile) -> dict:
    return {"namespace": profile.argocd_namespace, "project": profile.argocd_project, "server": profile.destination_server}


def git_context(profile: ClusterProfile) -> dict:
    return {"repo_url": profile.repo_url, "branch": profile.branch}


def render_application(
    profile: ClusterProfile, workspace: str, app: str | None, ignore_differences: list[dict] | None = None,
    schemas: KubeSchemas = CORE_ONLY,
) -> dict:
    """The ArgoCD Application for an app, or for a workspace when ``app`` is None."""
    sync_options = ["CreateNamespace=true", "PrunePropagationPolicy=foreground"]
    if ignore_differences:
        sync_options.append("RespectIgnoreDifferences=true")
    application = {
        "name": application_name(workspace, app),
        "labels": common_labels(profile, workspace, app),
        "path": app_dir(workspace, app) if app else workspace_dir(workspace),
        "namespace": workspace,
        "sync_options": sync_options,
        "ignore_differences": ignore_differences or [],
    }
    context = {"application": application, "argocd": argocd_context(profile), "git": git_context(profile)}
    return render_template("argocd/application.yaml.j2", context, profile.kubernetes_version, schemas)


__all__ = ["render_application", "argocd_context", "git_context"]
