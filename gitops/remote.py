"""How one fetch or push reaches a cluster repository's remote.

A :class:`Remote` of the server carries an egress policy (gitops.egress): then only
https and ssh remotes are connected to, https through the egress gateway (which makes
the TLS connection) and ssh to the address the policy checked, with the host key
pinned (:class:`PinnedHostKeys`), and the credentials (gitops.credentials) go to
libgit2 through its callbacks, never in a URL. What a failed fetch or push tells the
caller is a plain reason; libgit2's own message is logged. The offline command line's
remote (``shipyard apply --remote``) is the operator's own and is used as given,
local paths included. gitops.repo decides what to fetch, push and rebuild.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pygit2
from pygit2.enums import CredentialType

from gitops import egress
from gitops.https_gateway import GatewaySession, https_gateway
from contract.errors import InvalidRequest, RepoError

log = logging.getLogger(__name__)



@dataclass(frozen=True, repr=False)
class RemoteCredentials:
    """What connecting to one remote takes besides its URL.

    ``password``: an https user name and password (or token). ``ssh-key``: a private
    key (OpenSSH or PEM text), its public half, its passphrase, and the host keys the
    server must present (``host_keys``: "type base64" lines, pinned to the remote).
    The ``*_file`` fields name files the secrets are read from at each use instead
    (gitops.credential_files); a connection is only ever made with values.
    """

    kind: str  # "password" | "ssh-key"
    username: str = ""
    password: str = ""
    ssh_key: str = ""
    ssh_public_key: str = ""
    ssh_passphrase: str = ""
    host_keys: tuple[str, ...] = ()
    password_file: str = ""
    ssh_key_file: str = ""
    ssh_passphrase_file: str = ""

    def __repr__(self) -> str:
        return f"RemoteCredentials(kind={self.kind!r}, <sealed fields hidden>)"

@dataclass(frozen=True)
class Remote:
    """Where a cluster repository pushes, and what connecting there takes.

    ``egress`` None: the operator's own remote of the offline command line, used as
    given (any URL libgit2 takes, a local path included). The server always sets it.
    """

    url: str  # never holds credentials when egress is set
    credentials: RemoteCredentials | None = None
    egress: egress.EgressPolicy | None = None


@contextmanager
def connect(remote: Remote, verb: str) -> Iterator["Connection"]:
    """What one fetch or push gives libgit2: the URL to connect to and the callbacks."""
    policy = remote.egress
    if policy is None:
        yield Connection(remote.url, Callbacks(remote.credentials, None))
        return
    try:
        url, _ = egress.parse_remote_url(remote.url)
        if url.scheme == "ssh" and (remote.credentials is None or remote.credentials.kind != "ssh-key"):
            raise RepoError("an ssh remote needs remote_ssh_key and remote_known_hosts")
        if url.scheme == "ssh":
            address = policy.addresses(url.host, url.port)[0]
    except (InvalidRequest, RepoError) as exc:
        raise RepoError(f"cannot {verb} the remote {egress.redact_url(remote.url)}: {exc}") from exc
    if url.scheme == "https":
        with https_gateway(url, policy) as gateway:
            yield Connection(gateway.url, Callbacks(remote.credentials, None), gateway)
    else:
        with _HOST_KEYS.pinned(address, url.port, remote.credentials.host_keys) as verdict:
            yield Connection(url.at_address(address), Callbacks(remote.credentials, url.user, verdict))


def fetch_branch(repo: pygit2.Repository, remote: Remote, branch: str) -> pygit2.Oid | None:
    """Fetch the remote's ``branch`` into ``refs/remotes/origin/<branch>`` of ``repo``; its tip, or None
    when the remote has no such branch (an empty remote, or the branch deleted there).

    A fetch leaves a tracking ref alone when the remote has no such branch any more: it is
    taken out first, so that a deleted branch is not answered with its last tip, and put back
    when the fetch fails.
    """
    tracking = f"refs/remotes/origin/{branch}"
    before = repo.references.get(tracking)
    last = before.target if before is not None else None
    if before is not None:
        before.delete()
    with connect(remote, "fetch from") as connection:
        try:
            repo.remotes.create_anonymous(connection.url).fetch([f"+refs/heads/{branch}:{tracking}"],
                                                                callbacks=connection.callbacks)
        except (pygit2.GitError, Refused) as exc:
            if last is not None:
                repo.references.create(tracking, last, force=True)
            raise remote_error(remote, "fetch from", connection, exc) from exc
    ref = repo.references.get(tracking)
    return ref.target if ref is not None else None


def remote_error(remote: Remote, verb: str, connection: "Connection", exc: Exception) -> RepoError:
    shown = egress.redact_url(remote.url)
    if remote.egress is None:
        return RepoError(f"cannot {verb} the remote: {redact(str(exc), remote.url)}")
    # libgit2's message names statuses and addresses: logged, never answered
    log.info("cannot %s the remote %s: %s", verb, shown, egress.redact_url(str(exc)))
    return RepoError(f"cannot {verb} the remote {shown}: {connection.reason()}")


def redact(text: str, url: str | None) -> str:
    """Never echo credentials embedded in a remote URL."""
    if url and "@" in url:
        text = text.replace(url, url.split("://", 1)[0] + "://***@" + url.rsplit("@", 1)[1])
    return egress.redact_url(text)


# Plain reasons a fetch or push failed, for the caller; libgit2's own message goes to the log.
NO_CREDENTIALS = "the remote asks for credentials and none are set"
CREDENTIALS_REFUSED = "the remote did not accept the credentials"
HOST_KEY_UNKNOWN = "the remote's ssh host key is not one of remote_known_hosts"
NOT_COMPLETED = "the remote did not complete the request (check the URL and that it is a git repository)"


class Refused(Exception):
    """Raised in a libgit2 callback to end the operation; pygit2 raises it again from fetch or push."""


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials, the certificate or host-key verdict, and push rejections for one operation."""

    def __init__(self, credentials: RemoteCredentials | None, ssh_user: str | None,
                 host_key_verdict: Callable[[bool], bool] | None = None):
        super().__init__()
        self._secret = credentials
        self._ssh_user = ssh_user
        self._host_key_verdict = host_key_verdict
        self._secrets_given = 0
        self.failure: str | None = None
        self.rejected: list[str] = []

    def _refuse(self, reason: str) -> Refused:
        self.failure = self.failure or reason
        return Refused(reason)

    def credentials(self, url, username_from_url, allowed_types):
        secret = self._secret
        if secret is None:
            self.failure = self.failure or NO_CREDENTIALS
            raise pygit2.Passthrough  # libgit2 then fails as it does with no callback
        user = username_from_url or self._ssh_user or secret.username
        if allowed_types & CredentialType.USERNAME and secret.kind == "ssh-key":
            return pygit2.Username(user)
        # libgit2 asks again when the server turned the answer down: once is all it gets
        self._secrets_given += 1
        if self._secrets_given > 1:
            raise self._refuse(CREDENTIALS_REFUSED)
        if secret.kind == "password" and allowed_types & CredentialType.USERPASS_PLAINTEXT:
            return pygit2.UserPass(secret.username, secret.password)
        if secret.kind == "ssh-key" and allowed_types & CredentialType.SSH_MEMORY:
            # no public half: libssh2 derives it from the private key
            return pygit2.KeypairFromMemory(user, secret.ssh_public_key or None, secret.ssh_key, secret.ssh_passphrase)
        raise self._refuse(CREDENTIALS_REFUSED)

    def certificate_check(self, certificate, valid, host):
        if self._host_key_verdict is None:
            # TLS of the server's remotes is the egress gateway's; the offline command line keeps
            # pygit2's own rules
            raise pygit2.Passthrough
        if self._host_key_verdict(bool(valid)):
            return True
        self.failure = self.failure or HOST_KEY_UNKNOWN
        return False

    def push_update_reference(self, refname, message):
        if message:
            self.rejected.append(message)


@dataclass
class Connection:
    url: str
    callbacks: Callbacks
    gateway: GatewaySession | None = None

    def reason(self) -> str:
        """Why the operation failed, in the plain words of egress and the callbacks."""
        if self.gateway is not None and self.gateway.failure:
            return self.gateway.failure
        return self.callbacks.failure or NOT_COMPLETED


class PinnedHostKeys:
    """ssh host keys for libgit2, pinned to the checked address, one handshake at a time.

    libgit2's ssh transport (libssh2) checks the server's host key against
    ``<home>/.ssh/known_hosts``, read when the connection starts, and pygit2 hands the
    certificate callback only that verdict, not the key. ``<home>`` is one setting for
    the whole process (GIT_OPT_SET_HOMEDIR). So the first ssh connection points it at
    a private directory, and each connection writes there the remote's pinned keys
    under the address it connects to, holding a lock until libgit2 has given its
    verdict: handshakes take turns, the transfers after them do not. A second verdict
    in one operation (a second connection, reading a file written for another) is a
    refusal.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._file: Path | None = None

    def _known_hosts(self) -> Path:
        if self._file is None:
            home = Path(tempfile.mkdtemp(prefix="shipyard-ssh-home-"))
            atexit.register(shutil.rmtree, home, True)
            (home / ".ssh").mkdir(mode=0o700)
            pygit2.settings.homedir = str(home)
            self._file = home / ".ssh" / "known_hosts"
        return self._file

    @contextmanager
    def pinned(self, address, port: int, keys: tuple[str, ...]) -> Iterator[Callable[[bool], bool]]:
        host = str(address) if port == 22 else f"[{address}]:{port}"
        self._lock.acquire()
        held = True

        def verdict(valid: bool) -> bool:
            nonlocal held
            if not held:
                return False
            held = False
            self._lock.release()
            return valid

        try:
            self._known_hosts().write_text("".join(f"{host} {key}\n" for key in keys))
            yield verdict
        finally:
            if held:
                held = False
                self._lock.release()


_HOST_KEYS = PinnedHostKeys()


__all__ = ["RemoteCredentials", "Remote", "Connection", "Refused", "connect", "fetch_branch", "remote_error", "redact", "PinnedHostKeys"]
