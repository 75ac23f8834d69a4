"""What one simulated cluster is told: where its control plane and repository are, and how fast it moves.

A plain dataclass built by the caller (``shipyard up``, a test, the load
benchmark), never read from the environment, so each test makes its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

ARGOCD_POLL_SECONDS = 180.0  # ArgoCD's default timeout.reconciliation


@dataclasses.dataclass
class SimulationSettings:
    """One simulated cluster. ``url`` is the control plane; git and agent endpoints hang off it."""

    url: str
    tenant: str
    cluster: str
    agent_token: str
    read_token: str
    mirror_dir: Path  # the local bare mirror of the cluster repository (created when missing)
    branch: str = "main"
    git_url: str | None = None  # default: <url>/git/<tenant>/<cluster>.git
    poll_seconds: float = ARGOCD_POLL_SECONDS
    step_seconds: float = 1.0  # each sync transition
    rollout_seconds: float | None = None  # Progressing -> Healthy; default step_seconds
    heartbeat_seconds: float = 15.0
    # retrying an unreachable control plane: the agent's back-off (agent.backoff), first delay and cap
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    command_wait_seconds: float = 20.0  # the long-poll of GET commands
    tick_seconds: float = 0.25  # how often the loop advances the simulation
    switch_file: Path | None = None
    kubernetes_version: str | None = None
    addons: list[str] = dataclasses.field(default_factory=list)

    @property
    def repository_url(self) -> str:
        return self.git_url or f"{self.url.rstrip('/')}/git/{self.tenant}/{self.cluster}.git"


__all__ = ["ARGOCD_POLL_SECONDS", "SimulationSettings"]
