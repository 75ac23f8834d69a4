"""A git server over https on loopback, for the tests of remotes: real ``git http-backend`` behind
a small Python server with basic auth and a throwaway self-signed certificate made here.

``git_server`` (a pytest fixture) serves the bare repositories under a temporary directory;
``new_repository`` makes one and answers its https URL; the user is ``USER`` and the password
``TOKEN`` (``server.password`` changes it); the repositories named in ``server.public`` are
served to anyone, as a public repository on a forge is.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, TOKEN = "deploy", "s3cret-token-4711"
# the git command as the tests run it: a fixed author, no user or system configuration
GIT_ENV = {"GIT_AUTHOR_NAME": "ana", "GIT_AUTHOR_EMAIL": "ana@example.com", "GIT_COMMITTER_NAME": "ana",
           "GIT_COMMITTER_EMAIL": "ana@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; its output, stripped."""
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True,
                          text=True).stdout.strip()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, localhost and git.test, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipyard test git server")])
    now = dt.datetime.now(dt.timezone.utc)
    names = [x509.DNSName("localhost"), x509.DNSName("git.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "git-server.pem", directory / "git-server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class HttpsGitServer:
    """Repositories under ``root`` served by ``git http-backend`` over TLS, behind basic auth."""

    def __init__(self, root: Path, cert: Path, key: Path):
        self.root, self.cert = root, cert
        self.password = TOKEN
        self.public: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.backend()

            def do_POST(self):
                self.backend()

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                out = b""
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out

            def backend(self):
                server.requests.append((self.command, self.path))
                data = self.body()
                if self.path.startswith("/moved.git/"):
                    self.send_response(301)
                    self.send_header("Location", f"https://127.0.0.1:1{self.path.replace('moved', 'remote')}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                expected = "Basic " + base64.b64encode(f"{USER}:{server.password}".encode()).decode()
                public = self.path.lstrip("/").partition("/")[0] in server.public
                if not public and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                       "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(data)),
                       "REMOTE_USER": USER, "REMOTE_ADDR": "127.0.0.1", "GIT_CONFIG_NOSYSTEM": "1"}
                out = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True,
                                     check=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.split(b"\r\n"):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    else:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def new_repository(self, name: str = "remote.git") -> str:
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.root / name)], check=True)
        return f"https://127.0.0.1:{self.port}/{name}"

    def git(self, name: str, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.root / name), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def git_server(tmp_path):
    (tmp_path / "served").mkdir()
    cert, key = self_signed_certificate(tmp_path)
    server = HttpsGitServer(tmp_path / "served", cert, key)
    yield server
    server.close()


__all__ = ["git_server", "git", "HttpsGitServer", "self_signed_certificate", "USER", "TOKEN", "GIT_ENV"]
