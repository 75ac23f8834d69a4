"""The https gateway: how libgit2 reaches an https remote only at addresses the egress policy checked.

libgit2 is given ``http://127.0.0.1:<port><path>`` of a gateway that lives for
one fetch or push. It takes GET and POST below the remote's path and nothing
else (403 to CONNECT, to another host or path), resolves the host itself
(``EgressPolicy.addresses``, gitops.egress), and forwards the request to an
address it checked, over TLS it verifies for the remote's name: what was
checked is what is connected to. A redirect is a failure, never passed on
(libgit2 would follow it anywhere).

Why the gateway speaks TLS and libgit2 does not: handed an HTTP CONNECT proxy
(``Remote.fetch(proxy=...)``), libgit2 1.9 runs TLS inside the tunnel, and when that
TLS fails (an untrusted certificate, a handshake cut short) its error path frees the
proxy stream before closing the TLS stream wrapped around it, then writes through the
freed stream: the fetch hangs, or worse. So libgit2 is given plain HTTP on loopback
(the credentials it sends never leave the process's own loopback connection) and the
gateway makes the one TLS connection, with Python's ``ssl``.

What the caller learns of a failure is plain (``GatewaySession.failure``); the
detail is logged.
"""

from __future__ import annotations

import functools
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from contract.errors import RepoError
from gitops.egress import REFUSED, UNREACHABLE, EgressPolicy, RemoteURL

log = logging.getLogger(__name__)

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


__all__ = ["UNTRUSTED", "REDIRECTED", "NOT_FOR_THE_REMOTE", "tls_context", "GatewaySession", "https_gateway"]
