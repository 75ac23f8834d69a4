"""The cluster repositories of this process: where they live, opened with their remote, policy and credentials.

A cluster's repository lives under the data directory (``repos/<tenant>/<cluster>.git``);
a deleted cluster's is moved into ``repos/<tenant>/.archive/`` (never served). Its own
module, below the services: every service reaches the repositories through it
(gitops.service_context), and the commit queues and the reconciler hold one.
"""

from __future__ import annotations

import secrets
import ssl
import threading
from pathlib import Path

from contract.errors import InvalidRequest, RepoError
from renderer.kube import CORE_ONLY, KubeSchemas
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from gitops import egress
from gitops.credentials import CredentialsKey
from gitops.models import Cluster, Tenant, utcnow
from gitops.remote import Remote, RemoteCredentials
from gitops.repo import ClusterRepo


class RepoStore:
    """The cluster repositories under ``<data dir>/repos``, each opened once, with its remote.

    A cluster's :class:`ClusterRepo` is reused while what it was opened with stays the
    same (the repository, the remote URL, its sealed credentials, the tenant's allowed
    hosts) and replaced when one changes. It is kept by cluster id *and* creation time:
    SQLite hands a deleted cluster's id to the next one, and a cluster created again
    must never get the deleted one's object.

    ``credentials_key`` seals and opens remote credentials; ``tls`` is how https remotes
    are verified (GIT_CA_BUNDLE); ``resolve`` is the egress policy's name resolution
    (gitops.egress), a seam for tests; ``sessions`` (read-only) looks up a tenant's
    allowed hosts when the cluster at hand was loaded without its tenant; ``schemas`` is
    what the objects the control plane writes itself (workspaces, bootstrap) are
    validated against (the app's CRD_SCHEMAS); ``credential_files`` the directory
    credentials may be read from (CREDENTIAL_FILES_DIR, gitops.credential_files);
    ``remote_required`` (CLUSTER_REMOTE_REQUIRED) that every cluster has a git remote, which its
    commits go to first: the repositories here are then copies that several replicas without a
    shared volume may each hold (gitops.clusters refuses a cluster without a remote).
    """

    def __init__(self, root: Path, credentials_key: CredentialsKey | None = None, tls: ssl.SSLContext | None = None,
                 resolve: egress.Resolver = egress.resolve_host, sessions: sessionmaker[Session] | None = None,
                 schemas: KubeSchemas = CORE_ONLY, credential_files: Path | None = None,
                 remote_required: bool = False):
        self.root = Path(root)
        self.remote_required = remote_required
        self.credential_files = credential_files
        self.schemas = schemas
        self.data_dir = self.root.parent
        self.credentials_key = credentials_key
        self.tls = tls
        self.resolve = resolve
        self.sessions = sessions
        self._repos: dict[int, tuple[tuple, ClusterRepo]] = {}
        self._lock = threading.Lock()

    def path_for(self, tenant: str, cluster: str) -> Path:
        return self.root / tenant / f"{cluster}.git"

    def open(self, cluster: Cluster) -> ClusterRepo:
        allowed = self.allowed_hosts(cluster) if cluster.remote_url else ()
        key = (cluster.created_at, cluster.repo_path, cluster.remote_url, cluster.remote_credentials, allowed)
        with self._lock:
            cached = self._repos.get(cluster.id)
            if cached is not None and cached[0] == key:
                return cached[1]
            repo = ClusterRepo(cluster.repo_path, remote=self._remote(cluster, allowed))
            self._repos[cluster.id] = (key, repo)
            return repo

    def allowed_hosts(self, cluster: Cluster) -> tuple[str, ...]:
        """The non-public hosts the remotes of the cluster's tenant may reach."""
        if "tenant" in inspect(cluster).unloaded and self.sessions is not None:
            # Not through the caller's session: a deploy opens the repository after committing its
            # intent, and a query there would begin a new transaction (on SQLite: take the write
            # lock) that the commit's own transaction then waits for.
            with self.sessions() as session:
                hosts = session.scalar(select(Tenant.remote_allowed_hosts).where(Tenant.id == cluster.tenant_id))
            return tuple(hosts or ())
        return tuple(cluster.tenant.remote_allowed_hosts or ())

    def _remote(self, cluster: Cluster, allowed: tuple[str, ...]) -> Remote | None:
        if not cluster.remote_url:
            return None
        credentials = None
        if cluster.remote_credentials:
            if self.credentials_key is None:
                raise RepoError(f'cluster "{cluster.name}" has remote credentials and this server has no '
                                "credentials key to open them")
            credentials = self.credentials_key.open(cluster.remote_credentials)
        return Remote(cluster.remote_url, credentials, self.policy(allowed))

    def policy(self, allowed_hosts: tuple[str, ...] | list[str]) -> egress.EgressPolicy:
        return egress.EgressPolicy(tuple(allowed_hosts), self.resolve, self.tls)

    def seal(self, credentials: RemoteCredentials) -> str:
        if self.credentials_key is None:
            raise InvalidRequest("this server has no credentials key: it cannot keep remote credentials")
        return self.credentials_key.seal(credentials)

    def seal_text(self, text: str) -> str:
        if self.credentials_key is None:
            raise InvalidRequest("this server has no credentials key: it cannot keep secrets")
        return self.credentials_key.seal_text(text)

    def open_text(self, sealed: str) -> str:
        if self.credentials_key is None:
            raise RepoError("this server has no credentials key to open the secrets it keeps")
        return self.credentials_key.open_text(sealed)

    def open_credentials(self, sealed: str | None) -> RemoteCredentials | None:
        if not sealed:
            return None
        if self.credentials_key is None:
            raise RepoError("this server has no credentials key to open the credentials it keeps")
        return self.credentials_key.open(sealed)

    def forget(self, cluster_id: int) -> None:
        with self._lock:
            self._repos.pop(cluster_id, None)

    def archive_target(self, repo_path: Path, cluster_name: str, label: str) -> Path:
        """Where :meth:`archive` moves a repository: ``<tenant>/.archive/<cluster>-<UTC time>-<label>.git``.

        A directory git HTTP never serves (no cluster name holds a dot), kept for
        whoever must look at the old history.
        """
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        target = repo_path.parent / ".archive" / f"{cluster_name}-{stamp}-{label}.git"
        while target.exists():
            target = target.with_name(f"{cluster_name}-{stamp}-{label}-{secrets.token_hex(3)}.git")
        return target

    def archive(self, repo_path: Path, target: Path) -> Path | None:
        """Move the repository at ``repo_path`` to ``target``; None when there is none to move."""
        if not repo_path.exists():
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            repo_path.rename(target)
        except OSError as exc:
            raise RepoError(f"cannot archive the repository {self.shown(repo_path)}: {exc.strerror}") from exc
        return target

    def shown(self, path: Path) -> str:
        """``path`` as people see it: relative to the data directory."""
        try:
            return path.relative_to(self.data_dir).as_posix()
        except ValueError:  # a repository an older configuration put elsewhere
            return str(path)


__all__ = ["RepoStore"]
