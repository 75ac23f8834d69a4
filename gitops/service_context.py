"""What a service call needs: the caller, their session, and the shared machinery.

Its own module because both the deploy services (gitops.deploy) and the read side
(gitops.reads) take it, and the read side must not import the write side.
"""

from __future__ import annotations

from dataclasses import dataclass

from renderer.kube import CORE_ONLY, KubeSchemas
from sqlalchemy.orm import Session

from gitops.clusters import RepoStore
from gitops.commit_step import Committers
from gitops.policy import Principal


@dataclass
class Context:
    """What a service call needs: the caller, their session, and the shared machinery."""

    session: Session
    principal: Principal
    repos: RepoStore
    committers: Committers
    worker: str
    schemas: KubeSchemas = CORE_ONLY  # what rendered objects are validated against (the app's CRD_SCHEMAS)


__all__ = ["Context"]
