"""The steps that put a cluster under Shipyard, as an operator runs them (README: "The cluster
repository", "The agent in the cluster").

A pure function: the cluster's profile, the address at which the control plane serves the
cluster repository, and the two tokens in; the commands and the one manifest to apply out.
The tokens are known only when they are made (registration, rotation): Shipyard keeps their
hashes, so afterwards ``READ_TOKEN`` and ``AGENT_TOKEN`` stand for them.

    1. let ArgoCD read the repository     ArgoCD's repository Secret with the read token, when the
                                          profile's git.repo_url is the repository this plane serves
    2. apply the root Application, once   git clone with the read token; kubectl apply bootstrap/root.yaml
    3. give the agent its token           kubectl create secret (or the secret store, with token_ref)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from renderer.manifest_yaml import dump_manifest
from renderer.profiles import ClusterProfile

READ_TOKEN, AGENT_TOKEN = "READ_TOKEN", "AGENT_TOKEN"


@dataclass(frozen=True)
class InstallSteps:
    served_url: str  # the cluster repository as the control plane serves it
    clone: str  # git clone of it with the read token
    repo_url: str  # the profile's git.repo_url: the repository ArgoCD's Applications name
    repository_secret: str | None  # ArgoCD's repository Secret for it, when ArgoCD reads the control plane's
    argocd_namespace: str
    apply_root: str
    agent_namespace: str | None  # None: the profile installs no agent
    agent_secret: str | None  # the command that puts the agent token into its Secret (None with token_ref)
    agent_token_ref: str | None


def with_read_token(served_url: str, read_token: str) -> str:
    """The served repository's URL carrying the read token, as git clone takes it."""
    scheme, _, rest = served_url.partition("://")
    return f"{scheme}://x:{read_token}@{rest}"


def repository_secret(cluster: str, profile: ClusterProfile, read_token: str) -> str:
    """ArgoCD's declarative repository Secret: how ArgoCD reads the repository with the read token."""
    return dump_manifest({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": f"shipyard-repo-{cluster}", "namespace": profile.argocd_namespace,
                     "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"type": "git", "url": profile.repo_url, "username": "x", "password": read_token},
    }).decode()


def agent_secret_command(profile: ClusterProfile, agent_token: str, *, replace: bool = False) -> str:
    """The token Secret the agent mounts (the profile's agent namespace and token_secret, key ``token``);
    ``replace``: one that exists already, as after a rotation."""
    agent = profile.agent
    command = (f"kubectl -n {shlex.quote(agent.namespace)} create secret generic {shlex.quote(agent.token_secret)} "
               f"--from-literal=token={shlex.quote(agent_token)}")
    return f"{command} --dry-run=client -o yaml | kubectl apply -f -" if replace else command


def install_steps(cluster: str, profile: ClusterProfile, served_url: str, read_token: str = READ_TOKEN,
                  agent_token: str = AGENT_TOKEN) -> InstallSteps:
    agent = profile.agent
    return InstallSteps(
        served_url=served_url,
        clone=f"git clone {shlex.quote(with_read_token(served_url, read_token))}",
        repo_url=profile.repo_url,
        repository_secret=(repository_secret(cluster, profile, read_token)
                           if profile.repo_url.rstrip("/") == served_url else None),
        argocd_namespace=profile.argocd_namespace,
        apply_root=f"kubectl apply -f {shlex.quote(cluster)}/bootstrap/root.yaml",
        agent_namespace=agent.namespace if agent else None,
        agent_secret=agent_secret_command(profile, agent_token) if agent and agent.token_ref is None else None,
        agent_token_ref=str(agent.token_ref) if agent and agent.token_ref is not None else None,
    )


__all__ = ["InstallSteps", "install_steps", "repository_secret", "agent_secret_command", "with_read_token",
           "READ_TOKEN", "AGENT_TOKEN"]
