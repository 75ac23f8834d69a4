"""Secret references on the cluster's store: the ``remoteRef`` an ExternalSecret data entry names.

A spec names a secret as ``secret://<path>#<key>[@<version>]`` (``tfy-secret://<tenant>:<group>:<key>``
is the path ``<tenant>/<group>``; renderer.spec). External Secrets passes ``remoteRef`` to the store as
it is, and the stores name secrets differently, so the reference is mapped for the provider the
profile names (``addons.external_secrets.provider``; ``other`` when it names none). For
``secret://a/b#k@v``, following each provider's page of the External Secrets docs:

===================  ===========================  ==========================================
provider             remoteRef                    refused
===================  ===========================  ==========================================
vault                key a/b, property k,         a version that is not a KV v2 version
                     version v                    number
aws-secrets-manager  key a/b, property k,         a name over 512 characters
                     version v (uuid/v for a
                     VersionId)
aws-parameter-store  key /a/b/k, version v        a first segment starting with aws or ssm,
                                                  over 15 levels, over 967 characters
gcp-secret-manager   key a--b--k, version v       ".", or "--" or an edge "-" in a segment
                     (latest when not given)      or the key, over 255 characters
azure-key-vault      key secret/a--b--k,          "_", ".", capitals, or "--" or an edge "-"
                     version v                    in a segment or the key, over 127 characters
other                key a/b, property k,         nothing: the store's rules are unknown
                     version v
===================  ===========================  ==========================================

Vault and Secrets Manager keep several keys in one secret (a KV secret, a JSON key/value secret);
Parameter Store, Secret Manager and Key Vault keep one value per secret, so there the key is a
secret of its own below the path, as TrueFoundry lays out its secret groups (one secret per key,
``tenant:group:key`` becoming ``tenant/group/key``). Secret Manager ids and Key Vault names have
no "/", so segments are joined with "--".

Never silently renamed: each mapping is one to one on what it accepts, so two references never
read the same secret and gitops.isolation's path rules (on ``SecretRef.path``) keep their meaning.
A reference a store cannot name is refused with the reason and what to write instead. The table
with examples is docs/secrets.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from renderer.spec import SecretRef

PROVIDERS = ("vault", "aws-secrets-manager", "aws-parameter-store", "gcp-secret-manager", "azure-key-vault", "other")
DEFAULT_PROVIDER = "other"  # a profile that names no provider keeps the generic path/property form

STORE_NAMES = {
    "vault": "HashiCorp Vault",
    "aws-secrets-manager": "AWS Secrets Manager",
    "aws-parameter-store": "AWS Systems Manager Parameter Store",
    "gcp-secret-manager": "Google Secret Manager",
    "azure-key-vault": "Azure Key Vault",
    "other": "its secret store",
}

JOINER = "--"  # what a "/" of the path becomes where secret names have no "/"


class UnmappableSecretRef(ValueError):
    """A reference the cluster's store cannot name; the message says why and what to write instead."""


class Profile(Protocol):
    """What is read of a renderer.profiles.ClusterProfile (not imported: profiles checks token_ref here)."""

    name: str

    def addon(self, addon: str) -> dict: ...


def store_provider(profile: Profile) -> str:
    """The External Secrets provider behind the profile's ClusterSecretStore."""
    return profile.addon("external_secrets").get("provider", DEFAULT_PROVIDER)


def remote_ref(ref: SecretRef, profile: Profile) -> dict:
    """The ``remoteRef`` of the ExternalSecret data entry that reads ``ref`` on the profile's store.

    Raises UnmappableSecretRef when that store cannot name it.
    """
    return remote_ref_on(ref, store_provider(profile), profile.name)


def remote_ref_on(ref: SecretRef, provider: str, cluster: str) -> dict:
    """``remote_ref`` for a provider by name (``cluster`` only words the refusal)."""
    if provider not in _MAPPINGS:  # the profile schema's enum; only a profile built in code can miss it
        raise UnmappableSecretRef(f'cluster "{cluster}" names the secret store provider "{provider}", which is not '
                                  f"one of {', '.join(PROVIDERS)}; name one of those (other for any store)")
    return _MAPPINGS[provider](ref, _Refusal(ref, provider, cluster))


class _Refusal:
    """Builds the refusal of one reference: what the cluster's store lacks, and what to write."""

    def __init__(self, ref: SecretRef, provider: str, cluster: str):
        self.ref, self.cluster, self.store = ref, cluster, STORE_NAMES[provider]

    def __call__(self, reason: str, instead: str) -> UnmappableSecretRef:
        return UnmappableSecretRef(f'cluster "{self.cluster}" keeps secrets in {self.store}, {reason}; {instead}')

    def version(self, what: str) -> UnmappableSecretRef:
        return self(f'where a version is {what}, not "{self.ref.version}"',
                    f"pin one of those after @, or drop @{self.ref.version} to read the current version")


# --- Vault and the generic form -------------------------------------------------------------------

_VAULT_VERSION = re.compile(r"^[1-9][0-9]*$")


def _vault(ref: SecretRef, refuse: _Refusal) -> dict:
    # External Secrets, "HashiCorp Vault": key is the KV secret's path below the store's mount, property
    # one of its keys, version a KV v2 version number (Vault, "KV v2: read secret version").
    if ref.version is not None and not _VAULT_VERSION.match(ref.version):
        raise refuse.version("a KV v2 version number (1, 2, ...)")
    return _with_version({"key": ref.path, "property": ref.key}, ref.version)


def _other(ref: SecretRef, refuse: _Refusal) -> dict:  # noqa: ARG001 - nothing is known to refuse
    return _with_version({"key": ref.path, "property": ref.key}, ref.version)


# --- AWS ------------------------------------------------------------------------------------------

SECRETS_MANAGER_NAME_LIMIT = 512
_AWS_VERSION_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _aws_secrets_manager(ref: SecretRef, refuse: _Refusal) -> dict:
    # External Secrets, "AWS Secrets Manager": key is the secret's name ("/" is one of its characters,
    # CreateSecret: letters, digits and /_+=.@-, at most 512), property a key of its JSON value; version
    # a staging label (AWSCURRENT, AWSPREVIOUS...) or, prefixed uuid/, a VersionId.
    if len(ref.path) > SECRETS_MANAGER_NAME_LIMIT:
        raise refuse(f"whose secret names are at most {SECRETS_MANAGER_NAME_LIMIT} characters, not {len(ref.path)}",
                     "use a shorter path")
    version = ref.version
    if version is not None and _AWS_VERSION_ID.match(version):
        version = f"uuid/{version}"
    return _with_version({"key": ref.path, "property": ref.key}, version)


# PutParameter counts the ARN before a name toward its 1011 characters: 44 before the name's "/" in
# us-east-1 or us-east-2, more in longer regions, so a longer name fits in none.
PARAMETER_NAME_LIMIT = 1011 - len("arn:aws:ssm:us-east-1:111122223333:parameter")
PARAMETER_LEVELS_LIMIT = 15
_AWS_RESERVED = ("aws", "ssm")
_PARAMETER_VERSION = re.compile(r"^(?:[1-9][0-9]*|[A-Za-z][A-Za-z0-9._-]{0,99})$")


def _aws_parameter_store(ref: SecretRef, refuse: _Refusal) -> dict:
    # External Secrets, "AWS Parameter Store": key is the parameter's name, version appended as
    # name:version. Systems Manager, "Parameter name requirements": a name in a hierarchy is fully
    # qualified (leading "/"), at most 15 levels and 1011 characters with its ARN, never prefixed aws or
    # ssm (any case). One parameter per key, so no property.
    name = f"/{ref.path}/{ref.key}"
    first = ref.path.split("/", 1)[0]
    if first.lower().startswith(_AWS_RESERVED):
        raise refuse(f'where no parameter name may begin with "aws" or "ssm", as "/{first}" does',
                     "put the secret under a path that starts otherwise")
    levels = name.count("/")
    if levels > PARAMETER_LEVELS_LIMIT:
        raise refuse(f'where a parameter hierarchy is at most {PARAMETER_LEVELS_LIMIT} levels deep; "{name}" has {levels}',
                     "use a shallower path")
    if len(name) > PARAMETER_NAME_LIMIT:
        raise refuse(f"where a parameter name is at most {PARAMETER_NAME_LIMIT} characters (1011 with its ARN); "
                     f'"{ref.path}" makes {len(name)}', "use a shorter path or key")
    version = ref.version
    # Systems Manager, "Working with parameter labels": a label never begins with a digit, aws or ssm
    if version is not None and (not _PARAMETER_VERSION.match(version) or version.lower().startswith(_AWS_RESERVED)):
        raise refuse.version('a parameter version number or a label (a letter first, not "aws" or "ssm")')
    return _with_version({"key": name}, version)


# --- Google Secret Manager and Azure Key Vault: names without "/" ---------------------------------

SECRET_MANAGER_ID_LIMIT = 255
_SECRET_MANAGER_VERSION = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


def _gcp_secret_manager(ref: SecretRef, refuse: _Refusal) -> dict:
    # External Secrets, "Google Cloud Secret Manager": key is the secret id, version a version number,
    # an alias or "latest" (the default). Secret Manager, "Create a secret": an id holds letters,
    # digits, "-" and "_", at most 255 characters. One secret per key, so no property.
    name = _joined_name(ref, refuse, invalid=re.compile(r"[^A-Za-z0-9_-]"), lowercase=False,
                        allowed='letters, digits, "-" and "_"', limit=SECRET_MANAGER_ID_LIMIT, noun="secret ids")
    if ref.version is not None and not _SECRET_MANAGER_VERSION.match(ref.version):
        raise refuse.version('a version number, "latest" or an alias (letters, digits, "-" and "_")')
    return _with_version({"key": name}, ref.version)


KEY_VAULT_NAME_LIMIT = 127
_KEY_VAULT_VERSION = re.compile(r"^[0-9A-Za-z]{32}$")


def _azure_key_vault(ref: SecretRef, refuse: _Refusal) -> dict:
    # External Secrets, "Azure Key Vault": key is "<object type>/<name>", secret/ for a secret (ESO
    # splits the key at "/", so the type is always written); version an object version. Key Vault,
    # "Object identifiers": a name holds letters, digits and "-", at most 127, and names compare
    # without regard to case (so capitals are refused: "DB" and "db" would be one secret); a version
    # is a 32-character identifier. One secret per key, so no property.
    name = _joined_name(ref, refuse, invalid=re.compile(r"[^a-z0-9-]"), lowercase=True,
                        allowed='lowercase letters, digits and "-"', limit=KEY_VAULT_NAME_LIMIT, noun="secret names")
    if ref.version is not None and not _KEY_VAULT_VERSION.match(ref.version):
        raise refuse.version("a 32-character object version")
    return _with_version({"key": f"secret/{name}"}, ref.version)


def _joined_name(ref: SecretRef, refuse: _Refusal, *, invalid: re.Pattern, lowercase: bool, allowed: str,
                 limit: int, noun: str) -> str:
    """The path's segments and the key joined by JOINER, refused unless that is one to one and valid."""
    parts = [*ref.path.split("/"), ref.key]
    for part in parts:
        wrong = sorted(set(invalid.findall(part)))
        if wrong:
            shown = ", ".join(f'"{c}"' for c in wrong)
            case = " (names compare without regard to case)" if lowercase and any(c.isupper() for c in wrong) else ""
            raise refuse(f'whose {noun} hold only {allowed}{case}: "{part}" has {shown}',
                         _instead(ref, invalid, lowercase))
        if JOINER in part or part.startswith("-") or part.endswith("-"):
            raise refuse(f'where the path\'s "/" becomes "{JOINER}", so no segment or key may hold "{JOINER}" '
                         f'or begin or end with "-", as "{part}" does', _instead(ref, invalid, lowercase))
    name = JOINER.join(parts)
    if len(name) > limit:
        raise refuse(f'whose {noun} are at most {limit} characters; "{name}" has {len(name)}', "use a shorter path or key")
    return name


def _instead(ref: SecretRef, invalid: re.Pattern, lowercase: bool) -> str:
    """What to write: every segment and the key made valid, when that leaves them all non-empty."""
    def fixed(part: str) -> str:
        part = invalid.sub("-", part.lower() if lowercase else part)
        return re.sub(r"-{2,}", "-", part).strip("-")

    parts = [fixed(part) for part in [*ref.path.split("/"), ref.key]]
    if not all(parts):
        return "rename the secret in the store and here"
    suggestion = SecretRef("/".join(parts[:-1]), parts[-1], ref.version)
    return f'rename it in the store and write {suggestion} (the secret "{JOINER.join(parts)}")'


def _with_version(entry: dict, version: str | None) -> dict:
    return {**entry, "version": version} if version is not None else entry


_MAPPINGS: dict[str, Callable[[SecretRef, _Refusal], dict]] = {
    "vault": _vault,
    "aws-secrets-manager": _aws_secrets_manager,
    "aws-parameter-store": _aws_parameter_store,
    "gcp-secret-manager": _gcp_secret_manager,
    "azure-key-vault": _azure_key_vault,
    "other": _other,
}


__all__ = ["PROVIDERS", "DEFAULT_PROVIDER", "UnmappableSecretRef", "store_provider", "remote_ref", "remote_ref_on"]
