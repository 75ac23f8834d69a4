"""Push webhooks from git providers: is a delivery genuine, and which refs did it move.

Pure functions over what a request carries (its headers, its raw body bytes) and the
secret registered with the spec repository; no database, no clock, no network. The
route that receives deliveries, the store of delivery ids that deduplicates them and
the sync that deploys what a push brings are callers of this module.

``verify(headers, body, secret)`` says which provider sent the delivery (by its
headers) and checks its signature or token in constant time over the exact body
bytes; ``read_pushes(provider, headers, body)`` turns a verified delivery into one
:class:`Push` per ref it moved, and into none for a ping, a test or any other event.
``names_repository(urls, url)`` says whether the URLs a push names are the registered
repository's: compared as host and path, whatever the scheme, login, port, case,
trailing slash or ``.git`` (``git@host:owner/repo`` too), since one repository goes by
its https, ssh and web URLs.

====================  ==========================================================================
provider              how a delivery is signed, named and read
====================  ==========================================================================
GitHub                ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``; the
                      legacy SHA-1 ``X-Hub-Signature`` alone is refused.
                      Event ``X-GitHub-Event``: ``push`` read, ``ping`` and others ignored.
                      Delivery ``X-GitHub-Delivery`` (the same GUID on a redelivery).
                      Payload: ``ref``, ``before``, ``after``, ``forced``; repository
                      ``full_name``, ``clone_url``, ``ssh_url``, ``git_url``, ``html_url``.
                      https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
                      https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
GitLab                ``X-Gitlab-Token: <secret>`` (the secret itself, no signature).
                      Event ``X-Gitlab-Event``: ``Push Hook`` and ``Tag Push Hook`` read;
                      others ignored, ``System Hook`` too (instance-wide, an administrator's,
                      not a repository's).
                      Delivery ``Idempotency-Key`` (GitLab 17.4 on, the same on retries),
                      else ``X-Gitlab-Event-UUID``.
                      Payload: ``ref``, ``before``, ``after``, ``checkout_sha`` (the commit a
                      tag points to; null when the ref is deleted); ``project``
                      ``path_with_namespace``, ``git_http_url``, ``git_ssh_url``, ``web_url``.
                      https://docs.gitlab.com/user/project/integrations/webhooks/
                      https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events
Gitea / Forgejo       ``X-Forgejo-Signature`` or ``X-Gitea-Signature``: bare hex
                      HMAC-SHA256(secret, body). Both also send GitHub's headers for
                      compatibility, so they are recognised before GitHub.
                      Event ``X-Forgejo-Event`` / ``X-Gitea-Event``: ``push`` read.
                      Delivery ``X-Forgejo-Delivery`` / ``X-Gitea-Delivery``.
                      Payload: as GitHub's (``ref``, ``before``, ``after``; repository
                      ``full_name``, ``clone_url``, ``ssh_url``, ``html_url``), no ``forced``.
                      https://docs.gitea.com/usage/webhooks
                      https://forgejo.org/docs/latest/user/webhooks/
Bitbucket Cloud       ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` (the
                      header GitHub uses for SHA-1 carries SHA-256 here).
                      Recognised by ``X-Event-Key`` with ``X-Request-UUID``/``X-Hook-UUID``.
                      Event ``repo:push`` read. Delivery ``X-Request-UUID``.
                      Payload: ``push.changes[]``, each ``old``/``new`` (null when the ref
                      is created/deleted) with ``type`` (branch, tag), ``name`` and
                      ``target.hash``, and ``forced``; repository ``full_name``,
                      ``links.html.href`` (the payload names no clone URL).
                      https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/
                      https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/
Bitbucket Server /    ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.
Data Center           Recognised by ``X-Event-Key`` with ``X-Request-Id``.
                      Event ``repo:refs_changed`` read; ``diagnostics:ping`` (the "Test
                      connection" button) ignored. Delivery ``X-Request-Id``.
                      Payload: ``changes[]``, each ``refId``, ``fromHash``, ``toHash``
                      (all zeros when the ref is created/deleted), ``type`` ADD, UPDATE,
                      DELETE; repository ``project.key``/``slug``, ``links.clone[].href``.
                      https://confluence.atlassian.com/bitbucketserver/manage-webhooks-938025878.html
                      https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html
====================  ==========================================================================

What is refused, and how (:class:`HookRefused`: ``status`` to answer with, ``reason`` for
the log only; the secret, the signature and the token are never in either):

=====  ===================================================================================
413    a body over :data:`MAX_BODY_BYTES`, before anything is hashed
400    headers of no provider above
401    no secret registered; a missing signature or token; one of the wrong algorithm or
       shape; one that does not match. The caller is told "signature" and nothing more.
400    after a good signature: a body that is not a JSON object, a missing or mistyped
       field, a commit id that is not one, a push without a delivery id
=====  ===================================================================================

A delivery is deduplicated as a whole by its delivery id: a Bitbucket push that moved
several refs is one delivery with several :class:`Push` values.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from contract.errors import ShipyardError

# GitHub caps its payloads at 25 MB, but a push of deploy specs is a few commits (and
# GitLab lists at most 20 of a push): one MiB is far above any push we need, and keeps
# a forged body from costing more than a MiB of hashing.
MAX_BODY_BYTES = 1024 * 1024

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 and SHA-256 repositories
_DELIVERY_ID = re.compile(r"[A-Za-z0-9{}._:-]{1,128}")
_SCP_LIKE = re.compile(r"^[^/@:\s]+@(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:\s\[\]]+):(?P<path>.+)$")  # git@host:path
_MAX_REF = 255


class Provider(enum.Enum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"  # and Forgejo, which signs and reads the same
    BITBUCKET_CLOUD = "bitbucket-cloud"
    BITBUCKET_SERVER = "bitbucket-server"


_STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 413: "payload_too_large"}
_SIGNATURE_REFUSED = "webhook signature missing or not valid"


class HookRefused(ShipyardError):
    """A delivery we will not act on.

    ``status`` is the HTTP status to answer with and ``code`` its Shipyard error code;
    ``reason`` says what was wrong, for the log. ``str()`` is what the caller may be
    told: for a 401 only that the signature is not right, never which part.
    """

    code = "invalid_request"

    def __init__(self, status: int, reason: str):
        self.status = status
        self.code = _STATUS_CODES[status]
        self.reason = reason
        super().__init__(_SIGNATURE_REFUSED if status == 401 else reason)


def _signature_refused(reason: str) -> HookRefused:
    return HookRefused(401, reason)


def _malformed(reason: str) -> HookRefused:
    return HookRefused(400, reason)


@dataclass(frozen=True)
class Push:
    """One ref moved by one push, as its provider tells it.

    ``before`` is None when the push created the ref, ``after`` None when it deleted
    it. ``forced`` is None when the provider does not say. ``repository_urls`` are the
    repository's URLs as the payload names them, for the caller to match against the
    registered repository.
    """

    provider: Provider
    delivery: str
    ref: str
    before: str | None
    after: str | None
    forced: bool | None
    repository: str
    repository_urls: tuple[str, ...]

    @property
    def created(self) -> bool:
        return self.before is None

    @property
    def deleted(self) -> bool:
        return self.after is None

    @property
    def branch(self) -> str | None:
        """The branch name for a ref under refs/heads/, None for a tag or anything else."""
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


def repository_key(url: str) -> str:
    """``url`` as ``host/path`` in lowercase, without scheme, login, port, trailing slash or ``.git``."""
    text = url.strip()
    scp = _SCP_LIKE.match(text) if "://" not in text else None
    if scp is not None:
        host, path = scp["host"].strip("[]"), scp["path"]
    else:
        try:
            parts = urlsplit(text)
        except ValueError:  # a bracketed host that is no IPv6 address
            return text.lower()
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").lower()
    return f"{host.lower()}/{path[:-4] if path.endswith('.git') else path}".rstrip("/")


def names_repository(urls: Iterable[str], url: str) -> bool:
    """Whether one of ``urls`` (a push's repository URLs) is the repository at ``url``."""
    return repository_key(url) in {repository_key(candidate) for candidate in urls}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name from a case-insensitive mapping or a dict of lowercase names."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value if isinstance(value, str) else None


def _first_header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = _header(headers, name)
        if value is not None:
            return value
    return None


def identify(headers: Mapping[str, str]) -> Provider:
    """The provider whose headers these are; Gitea and Forgejo before GitHub, whose headers they copy."""
    if _first_header(headers, "X-Gitlab-Event", "X-Gitlab-Token") is not None:
        return Provider.GITLAB
    if _first_header(headers, "X-Forgejo-Event", "X-Gitea-Event") is not None:
        return Provider.GITEA
    if _header(headers, "X-GitHub-Event") is not None:
        return Provider.GITHUB
    if _header(headers, "X-Event-Key") is not None:
        if _first_header(headers, "X-Request-UUID", "X-Hook-UUID") is not None:
            return Provider.BITBUCKET_CLOUD
        if _header(headers, "X-Request-Id") is not None:
            return Provider.BITBUCKET_SERVER
    raise _malformed("not a webhook delivery of a known git provider")


def _hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def _check_hex_hmac(presented: str | None, header: str, prefix: str, secret: str, body: bytes) -> None:
    """``presented`` must be ``prefix`` + the hex HMAC-SHA256 of the body; compared in constant time."""
    if presented is None:
        raise _signature_refused(f"no {header} header")
    if not presented.startswith(prefix) or not _HEX_SHA256.fullmatch(presented[len(prefix):]):
        raise _signature_refused(f"{header} is not {prefix}<64 hex digits>")
    if not hmac.compare_digest(bytes.fromhex(presented[len(prefix):]), _hmac_sha256(secret, body)):
        raise _signature_refused(f"{header} does not match the body")


def _check_github(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    presented = _header(headers, "X-Hub-Signature-256")
    if presented is None and _header(headers, "X-Hub-Signature") is not None:
        raise _signature_refused("only the SHA-1 X-Hub-Signature; SHA-256 X-Hub-Signature-256 is required")
    _check_hex_hmac(presented, "X-Hub-Signature-256", "sha256=", secret, body)


def _check_gitlab(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    presented = _header(headers, "X-Gitlab-Token")
    if presented is None:
        raise _signature_refused("no X-Gitlab-Token header")
    if not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), secret.encode()):
        raise _signature_refused("X-Gitlab-Token does not match")


def _check_gitea(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    forgejo = _header(headers, "X-Forgejo-Signature")
    if forgejo is not None:
        _check_hex_hmac(forgejo, "X-Forgejo-Signature", "", secret, body)
    else:
        _check_hex_hmac(_header(headers, "X-Gitea-Signature"), "X-Gitea-Signature", "", secret, body)


def _check_bitbucket(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    _check_hex_hmac(_header(headers, "X-Hub-Signature"), "X-Hub-Signature", "sha256=", secret, body)


_CHECKS = {
    Provider.GITHUB: _check_github,
    Provider.GITLAB: _check_gitlab,
    Provider.GITEA: _check_gitea,
    Provider.BITBUCKET_CLOUD: _check_bitbucket,
    Provider.BITBUCKET_SERVER: _check_bitbucket,
}


def verify(headers: Mapping[str, str], body: bytes, secret: str | None) -> Provider:
    """The provider that sent this delivery, once its signature (or token) proves it knows ``secret``.

    Raises :class:`HookRefused`: 413 for an oversize body, 400 for headers of no known
    provider, 401 for no secret on our side or a missing, malformed or wrong signature.
    """
    if len(body) > MAX_BODY_BYTES:
        raise HookRefused(413, f"webhook body over {MAX_BODY_BYTES} bytes")
    provider = identify(headers)
    if not secret:
        raise _signature_refused("no webhook secret is registered for this repository")
    _CHECKS[provider](headers, body, secret)
    return provider


# Which events are pushes, by provider: the event header and the values read.
_PUSH_EVENTS = {
    Provider.GITHUB: (("X-GitHub-Event",), {"push"}),
    Provider.GITLAB: (("X-Gitlab-Event",), {"Push Hook", "Tag Push Hook"}),
    Provider.GITEA: (("X-Forgejo-Event", "X-Gitea-Event"), {"push"}),
    Provider.BITBUCKET_CLOUD: (("X-Event-Key",), {"repo:push"}),
    Provider.BITBUCKET_SERVER: (("X-Event-Key",), {"repo:refs_changed"}),
}
_DELIVERY_HEADERS = {
    Provider.GITHUB: ("X-GitHub-Delivery",),
    Provider.GITLAB: ("Idempotency-Key", "X-Gitlab-Event-UUID"),
    Provider.GITEA: ("X-Forgejo-Delivery", "X-Gitea-Delivery"),
    Provider.BITBUCKET_CLOUD: ("X-Request-UUID",),
    Provider.BITBUCKET_SERVER: ("X-Request-Id",),
}


def read_pushes(provider: Provider, headers: Mapping[str, str], body: bytes) -> list[Push]:
    """The refs a verified delivery moved, one :class:`Push` each; none for a ping, test or other event.

    Call only after :func:`verify`. Raises :class:`HookRefused` (400) for a push whose
    body or delivery id is not what the provider documents.
    """
    event_headers, push_events = _PUSH_EVENTS[provider]
    if _first_header(headers, *event_headers) not in push_events:
        return []
    delivery = _first_header(headers, *_DELIVERY_HEADERS[provider])
    if delivery is None or not _DELIVERY_ID.fullmatch(delivery):
        raise _malformed(f"a push without a usable delivery id ({' or '.join(_DELIVERY_HEADERS[provider])})")
    payload = _json_object(body)
    return _READERS[provider](payload, provider, delivery)


def _json_object(body: bytes) -> dict:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _malformed("the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise _malformed("the webhook body is not a JSON object")
    return payload


_KIND_NAMES = {str: "a string", dict: "an object", list: "a list", bool: "a boolean"}


def _field(container: dict, name: str, kind: type, where: str) -> Any:
    value = container.get(name)
    if not isinstance(value, kind):
        raise _malformed(f"{where}{name} is missing or not {_KIND_NAMES[kind]}")
    return value


def _optional(container: dict, name: str, kind: type, where: str) -> Any:
    return None if container.get(name) is None else _field(container, name, kind, where)


def _commit(container: dict, name: str, where: str) -> str | None:
    """The commit id ``container[name]``; None for the all-zero id that stands for "no commit"."""
    value = _field(container, name, str, where).lower()
    if not _COMMIT_ID.fullmatch(value):
        raise _malformed(f"{where}{name} is not a commit id")
    return None if value.strip("0") == "" else value


def _ref(value: str, where: str) -> str:
    if (not value.startswith("refs/") or len(value) > _MAX_REF
            or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)):
        raise _malformed(f"{where} is not a git ref name")
    return value


def _urls(container: dict, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(container[name] for name in names if isinstance(container.get(name), str) and container[name])


def _read_github_like(payload: dict, provider: Provider, delivery: str) -> list[Push]:
    repository = _field(payload, "repository", dict, "")
    return [Push(
        provider=provider,
        delivery=delivery,
        ref=_ref(_field(payload, "ref", str, ""), "ref"),
        before=_commit(payload, "before", ""),
        after=_commit(payload, "after", ""),
        forced=_optional(payload, "forced", bool, ""),
        repository=_field(repository, "full_name", str, "repository."),
        repository_urls=_urls(repository, ("clone_url", "ssh_url", "git_url", "html_url")),
    )]


def _read_gitlab(payload: dict, provider: Provider, delivery: str) -> list[Push]:
    project = _field(payload, "project", dict, "")
    after = _commit(payload, "after", "")
    checkout = None if payload.get("checkout_sha") is None else _commit(payload, "checkout_sha", "")
    return [Push(
        provider=provider,
        delivery=delivery,
        ref=_ref(_field(payload, "ref", str, ""), "ref"),
        before=_commit(payload, "before", ""),
        after=checkout if after is not None and checkout is not None else after,
        forced=None,
        repository=_field(project, "path_with_namespace", str, "project."),
        repository_urls=_urls(project, ("git_http_url", "git_ssh_url", "web_url")),
    )]


_BITBUCKET_CLOUD_REF_PREFIX = {"branch": "refs/heads/", "tag": "refs/tags/", "annotated_tag": "refs/tags/"}


def _bitbucket_cloud_side(change: dict, side: str, where: str) -> tuple[str | None, str | None]:
    """The ref name and commit of one side (old or new) of a change, (None, None) when absent."""
    state = _optional(change, side, dict, where)
    if state is None:
        return None, None
    kind = _field(state, "type", str, f"{where}{side}.")
    if kind not in _BITBUCKET_CLOUD_REF_PREFIX:
        raise _malformed(f"{where}{side}.type {kind!r} is not a branch or a tag")
    name = _field(state, "name", str, f"{where}{side}.")
    target = _field(state, "target", dict, f"{where}{side}.")
    return _BITBUCKET_CLOUD_REF_PREFIX[kind] + name, _commit(target, "hash", f"{where}{side}.target.")


def _read_bitbucket_cloud(payload: dict, provider: Provider, delivery: str) -> list[Push]:
    repository = _field(payload, "repository", dict, "")
    name = _field(repository, "full_name", str, "repository.")
    html = _field(_field(repository, "links", dict, "repository."), "html", dict, "repository.links.")
    urls = _urls(html, ("href",))
    changes = _field(_field(payload, "push", dict, ""), "changes", list, "push.")
    pushes = []
    for index, change in enumerate(changes):
        where = f"push.changes[{index}]."
        if not isinstance(change, dict):
            raise _malformed(f"{where[:-1]} is not an object")
        old_ref, before = _bitbucket_cloud_side(change, "old", where)
        new_ref, after = _bitbucket_cloud_side(change, "new", where)
        ref = new_ref or old_ref
        if ref is None:
            raise _malformed(f"{where[:-1]} has neither an old nor a new ref")
        pushes.append(Push(
            provider=provider, delivery=delivery, ref=_ref(ref, f"{where}new.name"), before=before, after=after,
            forced=_optional(change, "forced", bool, where), repository=name, repository_urls=urls,
        ))
    return pushes


def _read_bitbucket_server(payload: dict, provider: Provider, delivery: str) -> list[Push]:
    repository = _field(payload, "repository", dict, "")
    project = _field(repository, "project", dict, "repository.")
    name = f"{_field(project, 'key', str, 'repository.project.')}/{_field(repository, 'slug', str, 'repository.')}"
    links = _optional(repository, "links", dict, "repository.") or {}
    clone = _optional(links, "clone", list, "repository.links.") or []
    urls = tuple(link["href"] for link in clone if isinstance(link, dict) and isinstance(link.get("href"), str))
    changes = _field(payload, "changes", list, "")
    pushes = []
    for index, change in enumerate(changes):
        where = f"changes[{index}]."
        if not isinstance(change, dict):
            raise _malformed(f"{where[:-1]} is not an object")
        pushes.append(Push(
            provider=provider,
            delivery=delivery,
            ref=_ref(_field(change, "refId", str, where), f"{where}refId"),
            before=_commit(change, "fromHash", where),
            after=_commit(change, "toHash", where),
            forced=None,
            repository=name,
            repository_urls=urls,
        ))
    return pushes


_READERS = {
    Provider.GITHUB: _read_github_like,
    Provider.GITLAB: _read_gitlab,
    Provider.GITEA: _read_github_like,
    Provider.BITBUCKET_CLOUD: _read_bitbucket_cloud,
    Provider.BITBUCKET_SERVER: _read_bitbucket_server,
}

__all__ = ["MAX_BODY_BYTES", "HookRefused", "Provider", "Push", "identify", "read_pushes", "verify",
           "repository_key", "names_repository"]
