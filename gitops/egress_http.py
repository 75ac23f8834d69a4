"""HTTP requests the control plane makes on a tenant's behalf, through the tenant's egress policy (gitops.egress).

Commit statuses (gitops.commit_status) and status webhooks (gitops.webhook_delivery) go out
through :class:`CheckedTransport`, httpx's transport made to connect only where the policy lets it:

=============  =====================================================================================
what           how
=============  =====================================================================================
addresses      the request's host is resolved and every address checked (``EgressPolicy.addresses``),
               then the connection made to a checked address, so nothing resolves the name again
               between the check and the connection (DNS rebinding)
https          verified for the host's name (httpcore's ``sni_hostname``) against the system's CAs
               and GIT_CA_BUNDLE; the Host header stays the name's
http           only to a host the policy lists by name or address (a webhook subscription's
               ``allowed_host``, a receiver on a private network a tenant-admin let in); never to a
               public host by accident
=============  =====================================================================================

httpx's timeouts bound each step of an exchange (the connection, each read), not the exchange:
a peer that answers a byte at a time holds it for as long as it likes. :class:`Deadline` bounds
the whole of it, so that work claimed for a while (a webhook delivery) never outlives its claim.

This is not gitops.egress because it needs httpx, which the offline commands that use
gitops.egress (``shipyard apply --remote``) would then import for nothing.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any

import httpx

from contract.errors import RepoError
from gitops import egress
from gitops.https_gateway import tls_context

log = logging.getLogger(__name__)


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport, connecting only to addresses the egress policy checked (the module's docstring)."""

    def __init__(self, policy: egress.EgressPolicy):
        super().__init__(verify=policy.tls or tls_context(), trust_env=False, retries=0)
        self._policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.scheme != "https" and not (request.url.scheme == "http" and self._names(host)):
            raise RepoError("requests go over https only (plain http only to a host the egress policy lists)")
        addresses = self._policy.addresses(host, request.url.port or (443 if request.url.scheme == "https" else 80))
        request.extensions = {**request.extensions, "sni_hostname": host}
        for address in addresses[:-1]:
            try:
                return super().handle_request(_at(request, address))
            except httpx.ConnectError as exc:
                log.info("egress: cannot connect to %s (%s): %s", host, address, exc)
        return super().handle_request(_at(request, addresses[-1]))

    def _names(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._policy.allowed_hosts


def _at(request: httpx.Request, address: egress.IPAddress) -> httpx.Request:
    request.url = request.url.copy_with(host=str(address))
    return request


class Deadline:
    """A time limit on one exchange as a whole, from connecting to the last byte read.

    Given as the request's ``trace`` extension (httpcore's), it keeps hold of the connection the
    exchange opens, and shuts it when the time is up: whatever step waits then fails at once.
    ``expired`` tells the failure it caused from any other. A context manager: the clock runs
    inside the ``with``.
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            with self._lock:
                self._socket = info["return_value"].get_extra_info("socket")
                expired = self.expired
            if expired:  # connected after the time was up
                self._cut()

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            connection = self._socket
        if connection is not None:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already: the exchange ended as the time ran out
                pass


def untrusted_certificate(exc: BaseException) -> bool:
    """Whether ``exc`` (an httpx error) comes of a TLS certificate that was not trusted."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


__all__ = ["CheckedTransport", "Deadline", "untrusted_certificate"]
