"""The agent's settings: read once from the environment into a typed object, passed explicitly.

=================================  ==========================================================
variable                           meaning (default)
=================================  ==========================================================
SHIPYARD_URL                       the control plane, e.g. https://shipyard.example.com
SHIPYARD_TENANT / SHIPYARD_CLUSTER which cluster this agent speaks for
SHIPYARD_AGENT_TOKEN               the cluster's agent token, or SHIPYARD_AGENT_TOKEN_FILE:
                                   a file holding it (a mounted Secret; read again when it
                                   changes and before every retry after a 401, so a rotated
                                   token is picked up without a restart: agent.credentials)
ARGOCD_NAMESPACE                   where ArgoCD's Applications live (argocd)
SHIPYARD_NAMESPACES                allow list, comma-separated, fnmatch patterns (empty: all)
SHIPYARD_NAMESPACES_DENY           deny list, patterns; kube-* and the ArgoCD namespace are
                                   always denied for workloads
SHIPYARD_BATCH_INTERVAL            seconds between status batches (0.2)
SHIPYARD_HEARTBEAT_INTERVAL        seconds between heartbeats (15)
SHIPYARD_BACKOFF_BASE / _MAX       reconnect backoff: first delay and cap, seconds (0.8 / 30, client-go reflector's)
SHIPYARD_UNAUTHORIZED_BACKOFF      after a 401/403 from the control plane: how often the same
                                   token is tried again (a new one goes at once); after one
                                   from the API server: the delay before a retry (60)
SHIPYARD_WATCH_TIMEOUT             timeoutSeconds of each watch request (300)
SHIPYARD_LIST_PAGE_SIZE            objects per list page (500); lower it where objects are large
SHIPYARD_METRICS_PORT              Prometheus metrics on 0.0.0.0:<port>; 0 turns them off (9090)
SHIPYARD_COMMAND_WAIT              long-poll wait for commands, seconds (30)
KUBECONFIG                         used outside a cluster; in a cluster the service account is
=================================  ==========================================================
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALWAYS_DENIED = ("kube-*",)


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _patterns(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


@dataclass
class AgentSettings:
    url: str
    tenant: str
    cluster: str
    token: str = ""
    token_file: str | None = None
    argocd_namespace: str = "argocd"
    namespaces: tuple[str, ...] = ()  # allow list (patterns); empty: every namespace not denied
    namespaces_deny: tuple[str, ...] = ()
    batch_interval: float = 0.2
    heartbeat_interval: float = 15.0
    backoff_base: float = 0.8
    backoff_max: float = 30.0
    unauthorized_backoff: float = 60.0
    watch_timeout: int = 300
    list_page_size: int = 500
    metrics_port: int = 9090
    command_wait: float = 30.0
    # A ready kubernetes.client.Configuration (tests, embedding); None: in-cluster or KUBECONFIG.
    kube_configuration: Any = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AgentSettings":
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise SettingsError(f"{name} is not set")
            return value

        def number(name: str, default: float, kind=float):
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, not {raw!r}") from None
            if value < 0:
                raise SettingsError(f"{name} must not be negative")
            return value

        token_file = env.get("SHIPYARD_AGENT_TOKEN_FILE", "").strip() or None
        token = env.get("SHIPYARD_AGENT_TOKEN", "").strip()
        if not token and not token_file:
            raise SettingsError("SHIPYARD_AGENT_TOKEN or SHIPYARD_AGENT_TOKEN_FILE is not set")
        settings = cls(
            url=required("SHIPYARD_URL").rstrip("/"),
            tenant=required("SHIPYARD_TENANT"),
            cluster=required("SHIPYARD_CLUSTER"),
            token=token,
            token_file=token_file,
            argocd_namespace=env.get("ARGOCD_NAMESPACE", "").strip() or "argocd",
            namespaces=_patterns(env.get("SHIPYARD_NAMESPACES")),
            namespaces_deny=_patterns(env.get("SHIPYARD_NAMESPACES_DENY")),
            batch_interval=number("SHIPYARD_BATCH_INTERVAL", 0.2),
            heartbeat_interval=number("SHIPYARD_HEARTBEAT_INTERVAL", 15.0),
            backoff_base=number("SHIPYARD_BACKOFF_BASE", 0.8),
            backoff_max=number("SHIPYARD_BACKOFF_MAX", 30.0),
            unauthorized_backoff=number("SHIPYARD_UNAUTHORIZED_BACKOFF", 60.0),
            watch_timeout=number("SHIPYARD_WATCH_TIMEOUT", 300, int),
            list_page_size=max(1, number("SHIPYARD_LIST_PAGE_SIZE", 500, int)),
            metrics_port=number("SHIPYARD_METRICS_PORT", 9090, int),
            command_wait=number("SHIPYARD_COMMAND_WAIT", 30.0),
        )
        if token_file:
            settings.agent_token()  # fail at start, not at the first request
        return settings

    def agent_token(self) -> str:
        """The agent token; read from the file each time when there is one (rotation)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"cannot read SHIPYARD_AGENT_TOKEN_FILE {self.token_file}: {exc}") from exc
        return self.token

    def namespace_allowed(self, namespace: str) -> bool:
        """May the agent follow and act on workloads in this namespace?"""
        if not namespace or namespace == self.argocd_namespace:
            return False
        if any(fnmatch.fnmatchcase(namespace, p) for p in ALWAYS_DENIED + self.namespaces_deny):
            return False
        return not self.namespaces or any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces)

    @property
    def fixed_namespaces(self) -> tuple[str, ...] | None:
        """The allowed namespaces when the allow list names them all exactly (no patterns), else None.

        Then the agent watches each of them (needs only namespaced RBAC); otherwise it watches
        cluster-wide and drops what is not allowed.
        """
        if not self.namespaces or any(set(p) & set("*?[") for p in self.namespaces):
            return None
        return tuple(sorted(n for n in set(self.namespaces) if self.namespace_allowed(n)))

    def kubernetes_configuration(self):
        """The kubernetes client configuration: the given one, in-cluster, or KUBECONFIG."""
        from kubernetes import config as kube_config
        from kubernetes.client import Configuration

        if self.kube_configuration is not None:
            configuration = self.kube_configuration
        else:
            configuration = Configuration()
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
            except kube_config.ConfigException:
                try:
                    kube_config.load_kube_config(client_configuration=configuration)
                except (kube_config.ConfigException, OSError) as exc:
                    raise SettingsError(f"no Kubernetes configuration: not in a cluster, and {exc}") from exc
        # One pooled connection per watch plus some for lists and commands, so none is discarded.
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
        return configuration


__all__ = ["AgentSettings", "SettingsError", "ALWAYS_DENIED"]
