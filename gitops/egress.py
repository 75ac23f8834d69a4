"""Where the control plane may connect out to: the git remotes of clusters, checked twice.

A cluster's remote is named by a person, but every fetch and push is made by the
control plane, from inside its own network. Left unchecked, ``remote_url`` makes the
server connect wherever it is told (server-side request forgery): a local path or
``file://`` reads another cluster's repository, ``ext::`` runs a command, and an
https URL aimed at 169.254.169.254 or at a service on 10.x reaches what only the
server can reach. So this module decides, in one place:

* **Which URLs.** ``https://host[:port]/path``, ``ssh://user@host[:port]/path`` and
  scp-form ``user@host:path``; nothing else (local paths, ``file://``, ``ext::``,
  ``git://``, ``http://``, other transports). Hosts are DNS names or canonical IP
  literals: numeric names that resolvers read as addresses (``2130706433``,
  ``0x7f.1``, ``127.1``) are refused as names.
* **Which addresses.** Every address the host resolves to must be public. Refused:
  loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with the cloud
  metadata service, fe80::/10), CGNAT (100.64/10), unspecified, multicast and reserved
  ranges; IPv4 carried in IPv6 (``::ffff:127.0.0.1``, NAT64, 6to4) is judged by the
  IPv4 address. The tenant's ``remote_allowed_hosts`` (set by a tenant-admin) lets
  through a host name, an address, or a CIDR range holding it, except for link-local
  ranges and the cloud metadata addresses (``NEVER_ALLOWED``), which nothing opens: on a
  server shared by tenants, no tenant-admin can point the server at its own cloud
  credentials.

The check runs when the remote is set, and again at every connection, because a DNS
answer can change in between (DNS rebinding: public when checked, 127.0.0.1 when
connected):

=====  ==================================================================================
https  libgit2 goes through the https gateway (gitops.https_gateway), an endpoint on
       127.0.0.1 that lives for one fetch or push, resolves and checks the host itself,
       and forwards to an address it checked over TLS it verifies for the remote's name:
       what was checked is what is connected to. A redirect is a failure, never passed on.
ssh    libgit2's ssh transport takes no proxy. The host is resolved and checked right
       before each fetch or push (:meth:`EgressPolicy.addresses`), and libgit2 is given
       the checked address in place of the name (gitops.repo pins the host key to it),
       so libgit2 looks nothing up itself. The window that remains is the life of one
       fetch or push: an address checked at its start is used until its end.
=====  ==================================================================================

Name resolution goes through one seam (``EgressPolicy.resolve``, by default
:func:`resolve_host`), so tests can put a real resolver of their own in its place.

What a refused or failed connection tells the caller is deliberately plain ("refused
by the egress policy", "could not connect"): never an address, a status code or a
library's message, which would make the API a port scanner. The detail is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from contract.errors import InvalidRequest, RepoError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

ALLOWED_FORMS = "https://host/path, ssh://user@host/path or user@host:path"
REFUSED_FORMS = "local paths, file://, ext::, git://, http:// and other transports are refused"
MAX_URL_LENGTH = 1024  # Cluster.remote_url
MAX_ALLOWED_HOSTS = 100

REFUSED = ("refused by the egress policy: the host is not a public address (a tenant-admin can allow it "
           "in the tenant's remote_allowed_hosts)")
UNREACHABLE = "could not connect"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9._+-]*)@(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
                  r":(?P<path>[^:].*)$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s]*@")

# IPv6 ranges that carry an IPv4 address in their last 32 bits, besides ::ffff:0:0/96.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never a git remote, whatever a tenant allows: link-local ranges, where the cloud metadata
# services answer with the server's own cloud credentials (AWS, GCP, Azure, OpenStack at
# 169.254.169.254, AWS over IPv6 at fd00:ec2::254, Alibaba Cloud at 100.100.100.200).
NEVER_ALLOWED = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"))


# --- remote URLs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteURL:
    """A checked remote URL, never holding credentials."""

    scheme: str  # "https" or "ssh"
    host: str  # a lowercase DNS name, or an IP address without brackets
    port: int
    path: str
    user: str | None = None  # the ssh login ("git"); never a secret
    explicit_port: bool = False
    scp: bool = False  # written user@host:path

    def __str__(self) -> str:
        return self._format(self.host)

    def at_address(self, address: IPAddress) -> str:
        """The URL with ``address`` in place of the host: what libgit2 is given for ssh."""
        return self._format(str(address))

    def _format(self, host: str) -> str:
        bracketed = f"[{host}]" if ":" in host else host
        if self.scp:
            return f"{self.user}@{bracketed}:{self.path}"
        login = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.explicit_port else ""
        return f"{self.scheme}://{login}{bracketed}{port}{self.path}"


def _refuse(reason: str) -> InvalidRequest:
    return InvalidRequest(f"remote_url {reason}; use {ALLOWED_FORMS} ({REFUSED_FORMS})")


def parse_remote_url(text: Any) -> tuple[RemoteURL, tuple[str, str] | None]:
    """The remote URL and the userinfo pasted into it (https only), or InvalidRequest.

    The message never repeats the URL: it may hold a password.
    """
    if not isinstance(text, str) or not text:
        raise _refuse("must be a non-empty string")
    if len(text) > MAX_URL_LENGTH:
        raise _refuse(f"is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise _refuse("must not hold spaces or control characters")
    scheme = _SCHEME.match(text)
    if scheme and text[scheme.end():].startswith("//"):
        return _parse_url(scheme.group(1).lower(), text)
    scp = _SCP.match(text)
    if scp is None:
        if scheme:
            raise _refuse(f'uses the transport "{scheme.group(1).lower()}:"')
        raise _refuse("is not a URL (a local path is not a remote)")
    host = _check_host(scp["host"][1:-1] if scp["host"].startswith("[") else scp["host"])
    if scp["path"].startswith("-"):
        raise _refuse("has a path that looks like a command-line option")
    return RemoteURL("ssh", host, 22, scp["path"], scp["user"], scp=True), None


def _parse_url(scheme: str, text: str) -> tuple[RemoteURL, tuple[str, str] | None]:
    if scheme not in ("https", "ssh"):
        raise _refuse(f"uses the {scheme}:// transport")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _refuse("has an invalid host or port") from exc
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise _refuse("must not have a query or fragment")
    if not parts.hostname:
        raise _refuse("has no host")
    host_part = parts.netloc.rpartition("@")[2]
    bracketed = host_part.startswith("[")
    host = _check_host(parts.hostname, bracketed)
    path = parts.path or "/"
    if path.lstrip("/").startswith("-"):
        raise _refuse("has a path that looks like a command-line option")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "ssh":
        if not username:
            raise _refuse("must name the ssh login (ssh://git@host/path)")
        if password is not None:
            raise InvalidRequest("an ssh remote_url must not hold a password: ssh remotes authenticate with "
                                 "remote_ssh_key")
        url = RemoteURL("ssh", host, port or 22, path, username, explicit_port=port is not None)
        return url, None
    url = RemoteURL("https", host, port or 443, path, explicit_port=port is not None)
    userinfo = (username or "", password or "") if username is not None or password is not None else None
    return url, userinfo


def _check_host(host: str, bracketed: bool = False) -> str:
    host = host.lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return str(address)
    if bracketed:
        raise _refuse("has an invalid IPv6 address")
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _refuse("has a host that is neither a DNS name nor an IP address")
    if _NUMERIC_LABEL.match(labels[-1]):
        # 2130706433, 0x7f.1, 127.1: resolvers read these as IPv4 addresses
        raise _refuse("has a numeric host that is not a dotted-quad IPv4 address")
    return name


def redact_url(text: str | None) -> str | None:
    """``text`` with the credentials of every URL in it removed (``https://user:token@host`` -> ``https://host``).

    An ssh login without a password (``ssh://git@host``) stays: it is no secret, and the
    URL means something else without it. Any other userinfo goes (a token may be the user).
    """
    if text is None:
        return None

    def without_credentials(match: re.Match) -> str:
        scheme, userinfo = match.group(1), match.group(0)[len(match.group(1)):-1]
        if scheme.lower() == "ssh://" and ":" not in userinfo:
            return match.group(0)
        return scheme

    return _USERINFO.sub(without_credentials, text)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """A URL without its userinfo, and the user name and password that were in it (percent-decoded).

    Any scheme: this is for rows stored before credentials were kept apart, whatever they hold.
    """
    match = _USERINFO.search(url)
    if match is None:
        return url, None, None
    userinfo = url[match.end(1):match.end() - 1]
    username, colon, password = userinfo.partition(":")
    return url[:match.end(1)] + url[match.end():], unquote(username), unquote(password) if colon else None


# --- the policy ------------------------------------------------------------------------------


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order (the seam tests replace)."""
    seen: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    return seen


def _carried_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def is_public(address: IPAddress) -> bool:
    """Whether the control plane may connect to ``address`` without the tenant allowing it."""
    address = _carried_ipv4(address)
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


def _never_allowed(address: IPAddress) -> bool:
    return any(candidate.version == network.version and candidate in network
               for candidate in {address, _carried_ipv4(address)} for network in NEVER_ALLOWED)


def allowed_hosts(value: Any) -> list[str]:
    """A tenant's ``remote_allowed_hosts`` as given, checked and normalized; InvalidRequest when not valid."""
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise InvalidRequest("remote_allowed_hosts must be a list of host names, IP addresses or CIDR ranges")
    if len(value) > MAX_ALLOWED_HOSTS:
        raise InvalidRequest(f"remote_allowed_hosts holds at most {MAX_ALLOWED_HOSTS} entries")
    out: list[str] = []
    for entry in value:
        text = entry.strip().lower()
        try:
            address = ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)
            normalized = str(address)
            inside = address if isinstance(address, (ipaddress.IPv4Network, ipaddress.IPv6Network)) \
                else ipaddress.ip_network(address)
            if any(inside.version == never.version and inside.subnet_of(never) for never in NEVER_ALLOWED):
                raise InvalidRequest(f'remote_allowed_hosts: "{entry}" is a link-local or cloud metadata address, '
                                     "which no remote may use")
        except ValueError:
            name = text[:-1] if text.endswith(".") else text
            if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")) \
                    or _NUMERIC_LABEL.match(name.split(".")[-1]):
                raise InvalidRequest(f'remote_allowed_hosts: "{entry}" is not a host name, an IP address or a CIDR '
                                     "range (no wildcards: list each host, or the range of its addresses)") from None
            normalized = name
        if normalized not in out:
            out.append(normalized)
    return out


@dataclass(frozen=True)
class EgressPolicy:
    """Where one tenant's remotes may connect (public addresses, and what the tenant allows besides),
    and which TLS certificates https remotes must present (``tls``)."""

    allowed_hosts: tuple[str, ...] = ()
    resolve: Resolver = field(default=resolve_host, compare=False)
    tls: ssl.SSLContext | None = field(default=None, compare=False)  # None: the system's CAs (tls_context)

    def permits(self, host: str, address: IPAddress) -> bool:
        if _never_allowed(address):
            return False
        if is_public(address):
            return True
        if host.lower().rstrip(".") in self.allowed_hosts:
            return True
        candidates = {address, _carried_ipv4(address)}
        for entry in self.allowed_hosts:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue  # a host name
            if any(candidate.version == network.version and candidate in network for candidate in candidates):
                return True
        return False

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host``, every one permitted; RepoError (with a plain message) otherwise."""
        try:
            found = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                found = [ipaddress.ip_address(a) for a in self.resolve(host, port)]
            except (OSError, UnicodeError, ValueError) as exc:
                log.info("egress: cannot resolve remote host %s: %s", host, exc)
                raise RepoError(f'cannot reach the remote host "{host}": {UNREACHABLE}') from exc
        if not found:
            log.info("egress: remote host %s resolved to no address", host)
            raise RepoError(f'cannot reach the remote host "{host}": {UNREACHABLE}')
        refused = [a for a in found if not self.permits(host, a)]
        if refused:
            log.info("egress: refused remote host %s port %d: %s", host, port, ", ".join(map(str, refused)))
            raise RepoError(f'cannot reach the remote host "{host}": {REFUSED}')
        return found


__all__ = [
    "ALLOWED_FORMS",
    "REFUSED",
    "UNREACHABLE",
    "RemoteURL",
    "parse_remote_url",
    "redact_url",
    "split_userinfo",
    "resolve_host",
    "is_public",
    "allowed_hosts",
    "EgressPolicy",
]
