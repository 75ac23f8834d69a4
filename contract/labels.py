"""The labels and annotations Shipyard sets on what it renders, and matches on when it reads status.

The renderer writes them; the agent selects and reports by them (only objects
labelled ``app.kubernetes.io/managed-by: shipyard`` are followed); the status
ingest attributes objects to apps by them. A spec's own labels may not use the
reserved prefixes.
"""

from __future__ import annotations

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "shipyard"
MANAGED_BY = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"  # a Kubernetes label selector

NAME_LABEL = "app.kubernetes.io/name"  # the app's name, also the Pods' selector
CLUSTER_LABEL = "shipyard.dev/cluster"
WORKSPACE_LABEL = "shipyard.dev/workspace"
APP_LABEL = "shipyard.dev/app"
ENVIRONMENT_LABEL = "shipyard.dev/environment"  # on a workspace's Namespace
SERVICE_ROLE_LABEL = "shipyard.dev/service-role"  # "preview", "stable", "canary": a Rollout's own Services
RUN_LABEL = "shipyard.dev/run"  # a Workflow or Job started by the run-job command

SPEC_DIGEST_ANNOTATION = "shipyard.dev/spec-digest"  # the digest of the spec an object was rendered from

# Label prefixes a spec may not set: Shipyard's own and the Kubernetes project's.
RESERVED_PREFIXES = ("app.kubernetes.io/", "shipyard.dev/")
KUBERNETES_PREFIXES = ("kubernetes.io/", "k8s.io/")

__all__ = [
    "MANAGED_BY_LABEL", "MANAGED_BY_VALUE", "MANAGED_BY", "MANAGED_SELECTOR", "NAME_LABEL", "CLUSTER_LABEL",
    "WORKSPACE_LABEL", "APP_LABEL", "ENVIRONMENT_LABEL", "SERVICE_ROLE_LABEL", "RUN_LABEL",
    "SPEC_DIGEST_ANNOTATION", "RESERVED_PREFIXES", "KUBERNETES_PREFIXES",
]
