"""What a service call needs: the caller, their session, and the shared machinery.

One calling convention for the services of gitops:

- A service is a function that acts for a caller: it takes a Principal's request and
  checks what that principal may do (``principal.require``/``can``). Every service
  takes ``ctx: Context`` as its first parameter and reads ``ctx.session``,
  ``ctx.principal`` and ``ctx.repos`` from it; it writes its own audit event
  (gitops.audit.record) in the same transaction as its change. Views and commands
  build the Context, call the service and commit; they never write the audit log.
- A function that acts for nobody in particular keeps plain parameters (a session,
  a tenant, a cluster): helpers named with ``_``, name and token checks, profile
  parsing, the agents' token paths (gitops.agents, gitops.ingest), start-up
  chores, bulk and database helpers, and what the operator does at the machine
  with no logged-in caller (``shipyard admin``, the first admin of ``shipyard up``,
  gitops.accounts), which records its own audit event too.

Its own module because every service takes it and the services import one
another (the read side must not import the write side); it imports no service.
``committers`` and ``worker`` are only for the services that commit versions
(gitops.deploy): a Context built without them is enough for every other service,
and one of those services refuses it through ``committing()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from renderer.kube import CORE_ONLY, KubeSchemas
from sqlalchemy.orm import Session

from gitops.policy import Principal
from gitops.repo_store import RepoStore

if TYPE_CHECKING:  # at run time only deploy needs it, and it imports prometheus_client (see gitops.metrics)
    from gitops.commit_step import Committers


@dataclass
class Context:
    """What a service call needs: the caller, their session, and the shared machinery."""

    session: Session
    principal: Principal
    repos: RepoStore
    committers: Committers | None = None  # the per-cluster commit queues; deploys only
    worker: str | None = None  # this process's id, on the leases of the versions it commits; deploys only
    schemas: KubeSchemas = CORE_ONLY  # what rendered objects are validated against (the app's CRD_SCHEMAS)
    public_url: str | None = None  # where people reach the control plane (PUBLIC_URL), for links sent elsewhere

    def committing(self) -> tuple[Committers, str]:
        """The commit queues and the worker id, for a service that commits versions."""
        if self.committers is None or self.worker is None:
            raise RuntimeError("this Context was built without committers and worker: it cannot commit versions "
                               "(build it as webapp.plane.context() does)")
        return self.committers, self.worker


__all__ = ["Context"]
