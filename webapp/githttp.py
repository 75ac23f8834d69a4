"""Serve bare git repositories read-only over git "smart HTTP", for ArgoCD and ``git clone``.

The smart HTTP protocol (``gitprotocol-http(5)``) is two requests per exchange,
each a stateless call of ``git upload-pack``:

* ``GET .../info/refs?service=git-upload-pack`` runs ``upload-pack
  --stateless-rpc --advertise-refs``. In protocol v0/v1 the answer is the ref
  advertisement, preceded by a ``# service=git-upload-pack`` pkt-line and a
  flush packet. A client asking for protocol v2 (request header
  ``Git-Protocol: version=2``, the default since git 2.26) gets the capability
  advertisement instead, without that prefix: git's own ``http-backend`` omits
  it for v2 and clients do not expect it.
* ``POST .../git-upload-pack`` feeds the client's request (wants and haves in
  v0; one command such as ``ls-refs`` or ``fetch`` in v2) to ``upload-pack
  --stateless-rpc``, and streams its answer, the pack included, back.

In both, the ``Git-Protocol`` header reaches git as ``GIT_PROTOCOL``, which is
how git selects the protocol version on the server side.

Only upload-pack (fetch, clone, ls-remote) is served, never receive-pack
(push): Shipyard is the only writer of a cluster repository, through its own
commits, so a push over HTTP would be a second, unchecked way in. Push and the
"dumb" protocol (plain file downloads, which would bypass upload-pack) are
refused with 403.

Authorization is the caller's: ``resolve(owner, repo, password)`` gets the
HTTP Basic password (the username is ignored, as ArgoCD and git always send
one) and returns the bare repository's path, or None; None is a 401 whether
or not the repository exists, so names cannot be probed.

This module is plain Flask and subprocess, with nothing from the rest of
Shipyard, so it can be mounted and tested on any Flask app.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import flask
from werkzeug.exceptions import RequestEntityTooLarge

__all__ = ["git_http_blueprint", "MAX_REQUEST_BYTES"]

log = logging.getLogger(__name__)

Resolve = Callable[[str, str, str | None], Path | None]

# A negotiation request is want/have lines of about 50 bytes each: 10 MiB is
# some 200,000 of them, far beyond any real fetch, and bounds what a client
# can make the server hold (after decompression too, against gzip bombs).
MAX_REQUEST_BYTES = 10 * 1024 * 1024

_CHUNK = 64 * 1024
_EXIT_TIMEOUT = 10
_UPLOAD_PACK = "git-upload-pack"
# The pkt-line "# service=git-upload-pack\n", then a flush packet.
_SERVICE_ANNOUNCEMENT = b"001e# service=git-upload-pack\n0000"
_READ_ONLY = "this repository is read-only: Shipyard writes it\n"
_NEED_SMART = "this server speaks only git smart HTTP: use a git client that sends ?service=git-upload-pack\n"
_NO_CACHE = {
    # Refs change with every Shipyard commit: no proxy may answer from a cache.
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}
# What git itself sends: "version=2", possibly more "key=value" separated by ":".
# Anything else is dropped rather than handed to git's environment.
_GIT_PROTOCOL = re.compile(r"[A-Za-z0-9._=:-]{1,256}")


class _BadRequestBody(Exception):
    """The POST body could not be read: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def git_http_blueprint(resolve: Resolve, *, name: str = "githttp", url_prefix: str = "/git") -> flask.Blueprint:
    """A blueprint serving ``<url_prefix>/<owner>/<repo>.git`` read-only over git smart HTTP.

    ``resolve(owner, repo, password)`` is called in the request with the HTTP
    Basic password (None without Basic credentials) and returns the path of
    the bare repository if the password may read it, else None (answered 401).
    """
    bp = flask.Blueprint(name, __name__, url_prefix=url_prefix)

    @bp.get("/<owner>/<repo>.git/info/refs")
    def info_refs(owner: str, repo: str):
        service = flask.request.args.get("service")
        if service is None:
            return _text(403, _NEED_SMART)
        if service != _UPLOAD_PACK:
            # Checked before credentials: a push is refused the same way for
            # everyone, which tells nothing about the repository.
            return _text(403, _READ_ONLY)
        path = _authorize(resolve, owner, repo)
        if path is None:
            return _unauthorized()
        protocol = _requested_protocol()
        # Protocol v2 starts with its capability advertisement; only v0/v1
        # carries the service announcement (as git http-backend does).
        is_v2 = protocol is not None and "version=2" in protocol.split(":")
        prefix = b"" if is_v2 else _SERVICE_ANNOUNCEMENT
        return _upload_pack(path, protocol, advertise=True, request_body=None, prefix=prefix,
                            content_type="application/x-git-upload-pack-advertisement")

    @bp.post("/<owner>/<repo>.git/git-upload-pack")
    def upload_pack(owner: str, repo: str):
        path = _authorize(resolve, owner, repo)
        if path is None:
            return _unauthorized()
        if flask.request.mimetype != "application/x-git-upload-pack-request":
            return _text(415, "expected Content-Type: application/x-git-upload-pack-request\n")
        try:
            body = _read_request_body()
        except _BadRequestBody as exc:
            return _text(exc.status, exc.message)
        with body:
            return _upload_pack(path, _requested_protocol(), advertise=False, request_body=body, prefix=b"",
                                content_type="application/x-git-upload-pack-result")

    @bp.post("/<owner>/<repo>.git/git-receive-pack")
    def receive_pack(owner: str, repo: str):
        return _text(403, _READ_ONLY)

    return bp


def _authorize(resolve: Resolve, owner: str, repo: str) -> Path | None:
    auth = flask.request.authorization
    password = auth.password if auth is not None and auth.type == "basic" else None
    path = resolve(owner, repo, password)
    if path is None:
        # The password is never logged; whether one was sent helps tell a
        # misconfigured ArgoCD (none) from a rotated token (wrong one).
        log.info("git read of %s/%s refused (%s)", owner, repo,
                 "no credentials" if password is None else "bad credentials")
    return path


def _requested_protocol() -> str | None:
    value = flask.request.headers.get("Git-Protocol")
    if value is None or not _GIT_PROTOCOL.fullmatch(value):
        return None
    return value


def _read_request_body() -> IO[bytes]:
    """The POST body, decompressed if gzip, in a temporary file ready to be git's stdin.

    The whole request is read before git starts, into a file rather than a
    pipe: upload-pack may answer (ACK lines) while still reading haves, and
    with both directions on pipes a large negotiation could deadlock.
    """
    request = flask.request
    # Flask's MAX_CONTENT_LENGTH is the app's limit for API bodies; git's
    # negotiation has its own bound, checked here after decompression.
    request.max_content_length = MAX_REQUEST_BYTES
    encoding = (request.headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding in ("", "identity"):
        decompressor = None
    else:
        raise _BadRequestBody(415, f"unsupported Content-Encoding: {encoding}\n")

    spool = tempfile.TemporaryFile()
    try:
        size = 0
        for chunk in _raw_body_chunks(request):
            if decompressor is not None:
                try:
                    # Decompress at most one byte past the limit, so a small
                    # gzip bomb never expands in memory.
                    chunk = decompressor.decompress(chunk, MAX_REQUEST_BYTES + 1 - size)
                except zlib.error as exc:
                    raise _BadRequestBody(400, "the request body is not valid gzip\n") from exc
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                raise _BadRequestBody(413, f"the request body is over {MAX_REQUEST_BYTES} bytes\n")
            spool.write(chunk)
        if decompressor is not None and not decompressor.eof:
            raise _BadRequestBody(400, "the request body is truncated gzip\n")
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def _raw_body_chunks(request: flask.Request) -> Iterator[bytes]:
    try:
        while chunk := request.stream.read(_CHUNK):
            yield chunk
    except RequestEntityTooLarge as exc:
        raise _BadRequestBody(413, f"the request body is over {MAX_REQUEST_BYTES} bytes\n") from exc


def _upload_pack(path: Path, protocol: str | None, *, advertise: bool, request_body: IO[bytes] | None,
                 prefix: bytes, content_type: str) -> flask.Response:
    argv = ["git", "-c", "uploadpack.allowFilter=true", "upload-pack", "--strict", "--stateless-rpc"]
    if advertise:
        argv.append("--advertise-refs")
    argv += ["--", str(path)]
    stderr = tempfile.TemporaryFile()
    try:
        # Its own process group, so that stopping it also stops the
        # pack-objects it runs, which may be busy compressing for minutes.
        process = subprocess.Popen(argv, stdin=request_body if request_body is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=stderr, env=_git_environment(protocol),
                                   start_new_session=True)
    except OSError:
        stderr.close()
        log.exception("could not start git upload-pack for %s", path)
        return _text(500, "the git server is unavailable\n")

    # Wait for git's first output before answering: a repository that is
    # missing or broken then becomes a 500, not a 200 with a truncated body.
    first = process.stdout.read1(_CHUNK)
    if not first and process.wait() != 0:
        _finish(process, stderr, path, output_complete=True)
        return _text(500, "the repository could not be read\n")

    output_complete = False

    def stream() -> Iterator[bytes]:
        nonlocal output_complete
        if prefix:
            yield prefix
        if first:
            yield first
        while chunk := process.stdout.read1(_CHUNK):
            yield chunk
        output_complete = True

    response = flask.Response(stream(), status=200, content_type=content_type, headers=_NO_CACHE)
    # The WSGI server closes the response when it is sent and also when the
    # client goes away mid-pack (even before the generator started); git is
    # then killed rather than left writing a pack nobody reads, and reaped.
    response.call_on_close(lambda: _finish(process, stderr, path, output_complete=output_complete))
    return response


def _finish(process: subprocess.Popen, stderr: IO[bytes], path: Path, *, output_complete: bool) -> None:
    """Stop git if its output was not all sent, reap it, and log its errors."""
    killed = not output_complete and process.poll() is None
    if killed:
        _kill_group(process)
        log.info("git upload-pack for %s stopped: the client went away", path)
    try:
        # Git exits right after its last byte; the bound only guards against a hang.
        process.wait(timeout=_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        killed = True
        _kill_group(process)
        process.wait()
        log.warning("git upload-pack for %s killed: still running %ss after its output ended", path, _EXIT_TIMEOUT)
    if not killed and process.returncode != 0:
        stderr.seek(0)
        message = stderr.read(4096).decode(errors="replace").strip()
        log.warning("git upload-pack for %s exited with %s: %s", path, process.returncode, message)
    process.stdout.close()
    stderr.close()


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group already exited


def _git_environment(protocol: str | None) -> dict[str, str]:
    """A minimal environment for git: no system or user configuration, no inherited GIT_* settings.

    The server's own environment (a GIT_DIR, a ~/.gitconfig with hooks or
    aliases) must not change what a repository serves.
    """
    environment = {
        "PATH": os.environ.get("PATH", os.defpath),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        # A HOME nobody can write into: no ~/.gitconfig or XDG config is read.
        "HOME": os.devnull,
        "LC_ALL": "C",
    }
    if protocol:
        environment["GIT_PROTOCOL"] = protocol
    return environment


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(message, status=status, content_type="text/plain; charset=utf-8",
                          headers={**_NO_CACHE, **(headers or {})})


def _unauthorized() -> flask.Response:
    return _text(401, "authentication required: use the cluster's read token as the password\n",
                 {"WWW-Authenticate": 'Basic realm="shipyard"'})
