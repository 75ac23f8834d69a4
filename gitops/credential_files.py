"""Credentials read from files: a token or deploy key the operator mounts, referred to by name.

A spec repository's credentials can be given as values (sealed at rest, gitops.credentials)
or as references to files the server reads each time it connects: ``password_file`` (an
https token), ``ssh_key_file`` and ``ssh_passphrase_file``, e.g. the keys of a Kubernetes
Secret mounted as a volume, or a file an External Secrets or Vault agent keeps current. The
values never reach the database; a rotated file is used from the next fetch on.

A name is a path relative to the tenant's own directory under ``CREDENTIAL_FILES_DIR``
(``<CREDENTIAL_FILES_DIR>/<tenant>/<name>``): a tenant-admin can name only what the
operator put there for that tenant, so no tenant sends another's token to a host of its
choosing. A name that is absolute, climbs out (``..``), or resolves (symlinks followed, as
Kubernetes' ``..data`` links are) outside that directory is refused, as is anything but a
regular file of at most 64 KiB. A server without ``CREDENTIAL_FILES_DIR`` reads no files.
What the files hold is checked when they are named (a token is there, a key opens) and
read again at each fetch; a file gone later fails that fetch with its name, nothing else.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path, PurePosixPath

from contract.errors import InvalidRequest, RepoError
from gitops import egress
from gitops.clusters import remote_credentials
from gitops.credentials import ssh_key_credentials
from gitops.remote import RemoteCredentials

# a reference field → the value field it stands for
FILE_FIELDS = {"password_file": "password", "ssh_key_file": "ssh_key", "ssh_passphrase_file": "ssh_passphrase"}
MAX_BYTES = 64 * 1024


def credentials(url: egress.RemoteURL, userinfo: tuple[str, str] | None, fields: dict[str, str],
                directory: Path | None, tenant: str) -> RemoteCredentials | None:
    """The credentials ``fields`` (``remote_*`` fields, values or file references) give for ``url``.

    Values are checked and kept as they are (gitops.clusters.remote_credentials); file
    references are checked by reading the files once, and kept as references only.
    """
    references = {name: fields[f"remote_{name}"] for name in FILE_FIELDS if fields.get(f"remote_{name}")}
    if not references:
        return remote_credentials(url, userinfo, fields)
    values = {key: value for key, value in fields.items() if key[len("remote_"):] not in FILE_FIELDS}
    for name, field in FILE_FIELDS.items():
        if name in references and values.get(f"remote_{field}"):
            raise InvalidRequest(f"give {field} or {name}, not both")
    try:
        read = {f"remote_{FILE_FIELDS[name]}": read_file(directory, tenant, name, reference)
                for name, reference in references.items()}
    except RepoError as exc:
        raise InvalidRequest(str(exc)) from exc
    checked = remote_credentials(url, userinfo, {**values, **read})
    if checked is None:
        return None
    if checked.kind == "password":
        return RemoteCredentials("password", username=checked.username, password_file=references["password_file"])
    return RemoteCredentials("ssh-key", ssh_key_file=references.get("ssh_key_file", ""),
                             ssh_key=checked.ssh_key if "ssh_key_file" not in references else "",
                             ssh_public_key=checked.ssh_public_key if "ssh_key_file" not in references else "",
                             ssh_passphrase_file=references.get("ssh_passphrase_file", ""),
                             ssh_passphrase=checked.ssh_passphrase if "ssh_passphrase_file" not in references else "",
                             host_keys=checked.host_keys)


def auth_kind(held: RemoteCredentials | None) -> str | None:
    """What the API shows of credentials: "password" or "ssh-key", with "-file" when read from files."""
    if held is None:
        return None
    return f"{held.kind}-file" if is_file_backed(held) else held.kind


def is_file_backed(held: RemoteCredentials) -> bool:
    return bool(held.password_file or held.ssh_key_file or held.ssh_passphrase_file)


def resolve(held: RemoteCredentials | None, directory: Path | None, tenant: str) -> RemoteCredentials | None:
    """``held`` with what its files hold now; RepoError (naming the file, never its content) when one
    cannot be read."""
    if held is None or not is_file_backed(held):
        return held
    if held.kind == "password":
        return replace(held, password=read_file(directory, tenant, "password_file", held.password_file))
    key = read_file(directory, tenant, "ssh_key_file", held.ssh_key_file) if held.ssh_key_file else held.ssh_key
    passphrase = (read_file(directory, tenant, "ssh_passphrase_file", held.ssh_passphrase_file)
                  if held.ssh_passphrase_file else held.ssh_passphrase)
    try:
        return ssh_key_credentials(key, passphrase, "\n".join(held.host_keys))
    except InvalidRequest as exc:
        raise RepoError(f"the ssh key read from {held.ssh_key_file or 'its settings'}: {exc}") from exc


def read_file(directory: Path | None, tenant: str, field: str, name: object) -> str:
    """What the file ``name`` under the tenant's directory holds (a token's surrounding white space taken
    off); RepoError saying why not."""
    if directory is None:
        raise RepoError(f"{field}: this server reads no credential files (its operator has not set "
                        "CREDENTIAL_FILES_DIR); give the credential itself")
    relative = _relative(field, name)
    base = Path(directory) / tenant
    try:
        real = (base / relative).resolve(strict=True)
        inside = real.is_relative_to(base.resolve(strict=True))
    except (OSError, RuntimeError) as exc:
        raise RepoError(f'{field}: there is no credential file "{relative}" for this tenant') from exc
    if not inside:
        raise RepoError(f'{field}: "{relative}" leads out of this tenant\'s credential files')
    try:
        # looked at before it is opened: opening a FIFO or a device could block or read forever
        status = os.stat(real)
        if not stat.S_ISREG(status.st_mode):
            raise RepoError(f'{field}: "{relative}" is not a file')
        if status.st_size > MAX_BYTES:
            raise RepoError(f'{field}: "{relative}" is larger than {MAX_BYTES // 1024} KiB; a token or a key '
                            "is much smaller")
        with open(real, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RepoError(f'{field}: the credential file "{relative}" cannot be read ({exc.strerror})') from exc
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise RepoError(f'{field}: "{relative}" is not text') from exc
    if not text:
        raise RepoError(f'{field}: the credential file "{relative}" is empty')
    return text


def _relative(field: str, name: object) -> PurePosixPath:
    if not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name or "\\" in name:
        raise RepoError(f"{field} is the name of a file under this tenant's credential files, e.g. github-token")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", ".") for part in path.parts):
        raise RepoError(f'{field}: "{name[:100]}" must be a name relative to this tenant\'s credential files, '
                        "without .. or a leading /")
    return path


__all__ = ["credentials", "resolve", "read_file", "auth_kind", "is_file_backed", "FILE_FIELDS", "MAX_BYTES"]
