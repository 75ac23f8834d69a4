"""The credentials of cluster git remotes: taken apart from the URL, sealed at rest, never shown.

A remote needs a secret the control plane must keep to push: an https password or
token, or an ssh private key (with the host key it pins). It is kept in
``Cluster.remote_credentials`` as a Fernet token (AES-128-CBC with HMAC-SHA256:
authenticated, so a changed or foreign value fails to open rather than opening to
something else), under a :class:`CredentialsKey` built from the ``CREDENTIALS_KEY``
setting or, when that is unset, derived from ``SECRET_KEY`` with HKDF under a label
of its own, so the session-signing key is never itself an encryption key. Changing
``SECRET_KEY`` without setting ``CREDENTIALS_KEY`` to the old derivation's input leaves
the stored credentials unreadable: each remote must then be given its credentials again.

Only the repository store opens them, to hand them to libgit2 (as
``gitops.remote.RemoteCredentials``, which never prints a secret in a log or a
traceback); the API shows their kind (``Cluster.remote_auth``: "password" or
"ssh-key") and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contract.errors import InvalidRequest, RepoError
from gitops.remote import RemoteCredentials

_LABEL = b"shipyard: sealed credentials of cluster git remotes, v1"
MIN_KEY_LENGTH = 32
# Host key algorithms libssh2 (libgit2's ssh transport) can check a known_hosts line of.
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def password_credentials(username: str, password: str) -> RemoteCredentials:
    return RemoteCredentials("password", username=username, password=password)


def ssh_key_credentials(private_key: str, passphrase: str, known_hosts: str) -> RemoteCredentials:
    """Checked ssh credentials: the key opens with the passphrase, and known_hosts names host keys.

    A passphrase-protected key in OpenSSH form (ssh-keygen's default) is encrypted with
    bcrypt-pbkdf, which cryptography opens only with the bcrypt package: such a key is
    taken as it is, libssh2 derives its public half, and a wrong passphrase shows when
    the remote is first fetched from (which setting a remote does).
    """
    secret = passphrase.encode() if passphrase else None
    data = private_key.strip().encode() + b"\n"
    openssh = b"OPENSSH PRIVATE KEY" in data
    try:
        key = serialization.load_ssh_private_key(data, secret) if openssh else \
            serialization.load_pem_private_key(data, secret)
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    except UnsupportedAlgorithm as exc:
        if not (openssh and secret):
            raise InvalidRequest("remote_ssh_key is of a kind that is not supported (use ed25519, ECDSA or RSA)") \
                from exc
        public = ""
    except (ValueError, TypeError, binascii.Error) as exc:
        # never the library's message: it may quote the key
        raise InvalidRequest("remote_ssh_key is not a private key in OpenSSH or PEM form that opens with "
                             "remote_ssh_passphrase") from exc
    return RemoteCredentials("ssh-key", ssh_key=private_key.strip() + "\n", ssh_public_key=public,
                             ssh_passphrase=passphrase, host_keys=host_keys(known_hosts))


def host_keys(known_hosts: str) -> tuple[str, ...]:
    """The "type base64" host keys of ``known_hosts`` lines (``ssh-keyscan`` output, or bare keys).

    The host names in the lines are not used: the keys are pinned to the remote they
    are given with. Markers (@cert-authority, @revoked) are not supported.
    """
    keys: list[str] = []
    for number, raw in enumerate(known_hosts.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0].startswith("@"):
            raise InvalidRequest(f"remote_known_hosts line {number}: markers such as {fields[0]} are not supported")
        at = next((i for i, f in enumerate(fields[:2]) if f in HOST_KEY_TYPES), None)
        if at is None or len(fields) < at + 2:
            raise InvalidRequest(f"remote_known_hosts line {number} is not a known_hosts line with a host key of "
                                 f"type {', '.join(HOST_KEY_TYPES)}")
        try:
            base64.b64decode(fields[at + 1], validate=True)
        except binascii.Error as exc:
            raise InvalidRequest(f"remote_known_hosts line {number}: the key is not valid base64") from exc
        key = f"{fields[at]} {fields[at + 1]}"
        if key not in keys:
            keys.append(key)
    if not keys:
        raise InvalidRequest("remote_known_hosts holds no host key")
    return tuple(keys)


class CredentialsKey:
    """The key that seals and opens remote credentials: HKDF-SHA256 of a secret, under this module's label."""

    def __init__(self, secret: str):
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    @classmethod
    def from_settings(cls, credentials_key: str | None, secret_key: str) -> "CredentialsKey":
        """From CREDENTIALS_KEY when it is set (at least 32 characters), else from SECRET_KEY."""
        if credentials_key:
            if len(credentials_key) < MIN_KEY_LENGTH:
                raise ValueError(f"CREDENTIALS_KEY must be at least {MIN_KEY_LENGTH} characters "
                                 "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
            return cls(credentials_key)
        return cls(secret_key)

    def __repr__(self) -> str:
        return "CredentialsKey(<hidden>)"

    def seal(self, credentials: RemoteCredentials) -> str:
        return self._fernet.encrypt(json.dumps(asdict(credentials)).encode()).decode("ascii")

    def seal_text(self, text: str) -> str:
        """A secret that is not a remote's credentials (a webhook secret), sealed the same way."""
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open_text(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise RepoError("a stored secret cannot be opened with this server's CREDENTIALS_KEY (was SECRET_KEY "
                            "changed?); a tenant-admin must set it again") from exc

    def open(self, sealed: str) -> RemoteCredentials:
        try:
            fields = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError) as exc:
            raise RepoError("the remote's stored credentials cannot be opened with this server's CREDENTIALS_KEY "
                            "(was SECRET_KEY changed?); a tenant-admin must set them again") from exc
        fields["host_keys"] = tuple(fields.get("host_keys", ()))
        return RemoteCredentials(**fields)


__all__ = [
    "CredentialsKey",
    "password_credentials",
    "ssh_key_credentials",
    "host_keys",
]
