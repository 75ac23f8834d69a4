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
https  libgit2 goes through :func:`https_gateway`, an endpoint on 127.0.0.1 that lives for
       one fetch or push. It takes GET and POST below the remote's path and nothing else
       (403 to CONNECT, to another host or path), resolves the host itself, checks every
       address, and forwards the request to an address it checked, over TLS it verifies
       for the remote's name: what was checked is what is connected to. A redirect is a
       failure, never passed on (libgit2 would follow it anywhere).
ssh    libgit2's ssh transport takes no proxy. The host is resolved and checked right
       before each fetch or push (:meth:`EgressPolicy.addresses`), and libgit2 is given
       the checked address in place of the name (gitops.repo pins the host key to it),
       so libgit2 looks nothing up itself. The window that remains is the life of one
       fetch or push: an address checked at its start is used until its end.
=====  ==================================================================================

Why the gateway speaks TLS and libgit2 does not: handed an HTTP CONNECT proxy
(``Remote.fetch(proxy=...)``), libgit2 1.9 runs TLS inside the tunnel, and when that
TLS fails (an untrusted certificate, a handshake cut short) its error path frees the
proxy stream before closing the TLS stream wrapped around it, then writes through the
freed stream: the fetch hangs, or worse. So libgit2 is given plain HTTP on loopback
(the credentials it sends never leave the process's own loopback connection) and the
gateway makes the one TLS connection, with Python's ``ssl``.

Name resolution goes through one seam (``EgressPolicy.resolve``, by default
:func:`resolve_host`), so tests can put a real resolver of their own in its place.

What a refused or failed connection tells the caller is deliberately plain ("refused
by the egress policy", "could not connect"): never an address, a status code or a
library's message, which would make the API a port scanner. The detail is logged.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from renderer.errors import InvalidRequest, RepoError

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


# --- the gateway for https remotes -------------------------------------------------------------

_HEAD_LIMIT = 16384
NOT_FOR_THE_REMOTE = "refused by the egress policy: a request that was not one for the remote"
UNTRUSTED = "the remote's TLS certificate is not trusted (a private CA goes in GIT_CA_BUNDLE)"
REDIRECTED = "the remote answered with a redirect, which is not followed (use the URL it redirects to)"


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """How https remotes are verified: the system's CAs, plus those in ``ca_bundle`` (GIT_CA_BUNDLE)."""
    if ca_bundle is None:
        return _system_tls()
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"GIT_CA_BUNDLE {ca_bundle}: cannot load CA certificates from it") from exc
    return context


@functools.cache
def _system_tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the system's CAs: once per process


@dataclass
class GatewaySession:
    """What one :func:`https_gateway` offers libgit2, and what went wrong behind it (a plain reason)."""

    url: str
    failure: str | None = None


@contextmanager
def https_gateway(remote: RemoteURL, policy: EgressPolicy, timeout: float = 60.0) -> Iterator[GatewaySession]:
    """A plain-HTTP endpoint on 127.0.0.1 that forwards one fetch or push to ``remote`` over verified TLS.

    libgit2 is given ``http://127.0.0.1:<port><path>``; every request it sends is
    checked (GET or POST below the remote's path, nothing else), the remote's host is
    resolved and checked by ``policy``, and the request goes to an address that passed,
    over TLS verified against ``policy.tls`` for the remote's host name, with the Host
    header of the remote and ``Connection: close``. A redirect is answered as a failure,
    never passed on (libgit2 would follow it, to anywhere). One thread accepts; each
    connection is served on a thread of its own until either side closes or nothing
    moves for ``timeout`` seconds. Leaving the block closes everything.
    """
    gateway = _Gateway(remote, policy, timeout)
    try:
        yield gateway.session
    finally:
        gateway.close()


class _Gateway:
    def __init__(self, remote: RemoteURL, policy: EgressPolicy, timeout: float):
        self.remote, self.policy, self.timeout = remote, policy, timeout
        self.prefix = remote.path.rstrip("/") + "/"
        host = f"[{remote.host}]" if ":" in remote.host else remote.host
        self.host_header = f"{host}:{remote.port}" if remote.port != 443 else host
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.session = GatewaySession(f"http://127.0.0.1:{self.listener.getsockname()[1]}{remote.path}")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._served: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="egress-gateway", daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        self.listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._served:
            thread.join(timeout=5)

    def _fail(self, reason: str) -> None:
        if self.session.failure is None:
            self.session.failure = reason

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="egress-forward", daemon=True)
            self._served.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            self._track(client).settimeout(self.timeout)
            head, rest = _read_head(client)
            lines = head.decode("latin-1").split("\r\n")
            if not self._is_git_request(lines[0]):
                _answer(client, b"403 Forbidden")
                return
            try:
                addresses = self.policy.addresses(self.remote.host, self.remote.port)
            except RepoError as exc:
                refused = REFUSED in str(exc)
                self._fail(REFUSED if refused else UNREACHABLE)
                _answer(client, b"403 Forbidden" if refused else b"502 Bad Gateway")
                return
            upstream = self._connect(addresses)
            if upstream is None:
                _answer(client, b"502 Bad Gateway")
                return
            upstream.sendall(self._forwarded(lines) + rest)
            self._relay(client, upstream)
        except OSError as exc:
            log.info("egress gateway: a request to %s ended: %s", self.remote.host, exc)
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    sock.close()

    def _is_git_request(self, request_line: str) -> bool:
        """GET or POST below the remote's path: all libgit2 sends. Not CONNECT, not another host or path."""
        parts = request_line.split(" ")
        if len(parts) == 3 and parts[0] in ("GET", "POST") and parts[1].startswith(self.prefix) \
                and parts[2].startswith("HTTP/1."):
            return True
        log.info("egress gateway: refused %r (the remote is %s)", request_line[:200], self.remote)
        self._fail(NOT_FOR_THE_REMOTE)
        return False

    def _forwarded(self, lines: list[str]) -> bytes:
        """The request head as the remote gets it: its own Host, one request per connection."""
        drop = ("host:", "connection:", "keep-alive:", "proxy-")
        kept = [line for line in lines[1:] if line and not line.lower().startswith(drop)]
        head = [lines[0], f"Host: {self.host_header}", *kept, "Connection: close", "", ""]
        return "\r\n".join(head).encode("latin-1")

    def _connect(self, addresses: list[IPAddress]) -> socket.socket | None:
        """A TLS connection, verified for the remote's name, to the first checked address that answers."""
        for address in addresses:
            try:
                raw = self._track(socket.create_connection((str(address), self.remote.port), timeout=self.timeout))
            except OSError as exc:
                log.info("egress gateway: cannot connect to %s port %d: %s", address, self.remote.port, exc)
                continue
            try:
                tls = (self.policy.tls or tls_context()).wrap_socket(raw, server_hostname=self.remote.host)
            except ssl.SSLCertVerificationError as exc:
                log.info("egress gateway: %s (%s) has a certificate that is not trusted: %s", self.remote.host,
                         address, exc.verify_message)
                self._fail(UNTRUSTED)
                return None
            except (OSError, ssl.SSLError) as exc:
                log.info("egress gateway: no TLS with %s (%s): %s", self.remote.host, address, exc)
                continue
            return self._track(tls)
        self._fail(UNREACHABLE)
        return None

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Bytes both ways; the response head is looked at first (redirects refused, the connection closed)."""
        other = {client: upstream, upstream: client}
        response = b""
        with selectors.DefaultSelector() as selector:
            for sock in other:
                selector.register(sock, selectors.EVENT_READ)
            last = time.monotonic()
            while not self._stop.is_set():
                ready = [key.fileobj for key, _ in selector.select(timeout=0.5)]
                if upstream.pending():
                    ready.append(upstream)  # decrypted bytes waiting in the TLS layer
                if not ready:
                    if time.monotonic() - last > self.timeout:
                        log.info("egress gateway: %s idle for %.0f s; closed", self.remote.host, self.timeout)
                        return
                    continue
                last = time.monotonic()
                for sock in dict.fromkeys(ready):
                    data = _receive(sock)
                    if data is None:
                        continue
                    if not data:
                        return
                    if sock is upstream and response is not None:
                        try:
                            data, response = self._response_head(response + data)
                        except _Redirected:
                            _answer(client, b"502 Bad Gateway")
                            return
                    if data:
                        other[sock].sendall(data)

    def _response_head(self, buffered: bytes) -> tuple[bytes, bytes | None]:
        """What of the response to pass on now, and what is still held back (None once the head went).

        Raises _Redirected for a redirect, which libgit2 gets as a failure instead.
        """
        if b"\r\n\r\n" not in buffered:
            if len(buffered) > _HEAD_LIMIT:
                raise OSError("response head too long")
            return b"", buffered
        head, _, body = buffered.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
        if status.startswith("1"):  # an interim answer (100 Continue): the real head is still to come
            passed, held = self._response_head(body) if body else (b"", b"")
            return head + b"\r\n\r\n" + passed, held
        if status.startswith("3"):
            log.info("egress gateway: %s answered %s; not followed", self.remote, lines[0][:100])
            self._fail(REDIRECTED)
            raise _Redirected
        kept = [line for line in lines[1:] if not line.lower().startswith(("connection:", "keep-alive:"))]
        rewritten = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        return rewritten + body, None


class _Redirected(Exception):
    pass


def _receive(sock: socket.socket) -> bytes | None:
    """What ``sock`` has now (b"": closed); None when a TLS socket was readable with no data for us.

    A TLS socket turns readable for records that carry no application data (TLS 1.3
    session tickets after the handshake); a blocking read would then wait for the
    response while the request's body waits behind it.
    """
    if not isinstance(sock, ssl.SSLSocket):
        return sock.recv(65536)
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    finally:
        sock.settimeout(timeout)


def _answer(client: socket.socket, status: bytes) -> None:
    client.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """The request head up to the blank line, and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk:
            raise OSError("the client closed before sending a request")
        data += chunk
        if len(data) > _HEAD_LIMIT:
            raise OSError("request head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


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
    "UNTRUSTED",
    "REDIRECTED",
    "tls_context",
    "GatewaySession",
    "https_gateway",
]
