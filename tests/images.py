"""Shipyard's images, built and run on this machine: buildah, podman and skopeo on a private store.

No registry is reachable from here, so the two bases images/*.Containerfile name are made too, from
Debian bookworm with mmdebstrap, and imported with ``buildah from scratch``:

* the build base, a ``minbase`` root filesystem (what debian:12-slim is), where the Containerfile
  installs python3-venv with apt and makes the virtual environment;
* the run base, only Debian's Python 3.11, the libraries it links, CA certificates and time zones,
  extracted from their packages with no package manager and no shell, and a ``nonroot`` user 65532
  (what gcr.io/distroless/python3-debian12:nonroot is).

The images are built with ``images/build.sh``, as a person would. This host needs ``--runtime
runc`` (crun fails on its hybrid cgroups), ulimits that ``podman run`` is allowed to set, and the
host network. pip inside a build trusts the machine's CA bundle (a TLS-inspecting proxy stands
between it and the package index here): mounted with a pip.conf naming it, for the build only.
Everything lives under one directory that ``reset`` empties.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("buildah", "podman", "skopeo", "mmdebstrap", "runc")
SUITE = "bookworm"
SOURCES = "/etc/apt/sources.list.d/debian.sources"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_BASE = "localhost/shipyard-test-build-base:bookworm"
RUN_BASE = "localhost/shipyard-test-run-base:bookworm"
RUN_FLAGS = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "host")

_SLIM = ["--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
         "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/locale/*",
         "--dpkgopt=path-exclude=/usr/share/info/*", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]
_PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\\n"
           "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\\n")
_GROUP = "root:x:0:\\nnobody:x:65534:\\nnonroot:x:65532:\\n"
ROOTFS = {
    BUILD_BASE: ["--variant=minbase", *_SLIM],
    RUN_BASE: ["--variant=extract", "--include=python3-minimal,python3.11,ca-certificates,tzdata,netbase", *_SLIM,
               f'--extract-hook=printf "{_PASSWD}" > "$1/etc/passwd"',
               f'--extract-hook=printf "{_GROUP}" > "$1/etc/group"',
               '--extract-hook=install -d -o 65532 -g 65532 "$1/home/nonroot" && install -d -m 1777 "$1/tmp"',
               # what update-ca-certificates and py3compile would have written, had the packages been configured
               # (the extract variant runs extract hooks, not customize hooks)
               '--extract-hook=cat "$1"/usr/share/ca-certificates/mozilla/*.crt > "$1/etc/ssl/certs/ca-certificates.crt"',
               '--extract-hook=chroot "$1" /usr/bin/python3.11 -m compileall -q -j 0 /usr/lib/python3.11'],
}


class ImageToolMissing(Exception):
    """A tool is not installed; the message says how to install it."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class Build:
    image: str
    seconds: float


class ImageLab:
    """A private container store under ``root``: bases made once, images built, containers run."""

    def __init__(self, root: Path):
        missing = missing_tools()
        if missing:
            raise ImageToolMissing(f"{', '.join(missing)} not installed: apt-get install buildah podman skopeo "
                                   "mmdebstrap runc (the README's test command does)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # podman refuses a runroot path of over 50 characters (its sockets live there): a short one of its own
        self.runroot = Path(tempfile.mkdtemp(prefix="shipyard-run-", dir="/tmp"))
        self.store = ["--root", str(root / "storage"), "--runroot", str(self.runroot), "--storage-driver", "overlay"]
        self.pip_conf = root / "pip.conf"
        self.pip_conf.write_text("[global]\ncert = /run/shipyard-build/ca.crt\n")

    def run(self, *command: str, check: bool = True, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kw)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command[:3])}... exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def buildah(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("buildah", *self.store, *args, **kw)

    def podman(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("podman", *self.store, *args, **kw)

    def has_image(self, name: str) -> bool:
        return self.buildah("inspect", "--type", "image", name, check=False).returncode == 0

    def make_bases(self) -> None:
        """Both bases, from root filesystems mmdebstrap makes (about 20 and 10 seconds)."""
        for name, options in ROOTFS.items():
            if self.has_image(name):
                continue
            tarball = self.root / f"{name.rpartition('/')[2].replace(':', '-')}.tar"
            self.run("mmdebstrap", "--quiet", *options, SUITE, str(tarball), SOURCES)
            container = self.buildah("from", "scratch").stdout.strip()
            self.buildah("add", "--quiet", container, str(tarball), "/")
            self.buildah("commit", "--quiet", container, name)
            self.buildah("rm", container)
            tarball.unlink()

    def build(self, which: str, *flags: str) -> Build:
        """``images/build.sh WHICH`` on the made bases (``flags`` to buildah build besides this host's); the image
        it tagged and how long it took."""
        started = time.perf_counter()
        store = " ".join(self.store)
        env = {**os.environ, "BUILDER": f"buildah {store}", "BUILD_BASE": BUILD_BASE, "BASE": RUN_BASE}
        self.run(str(ROOT / "images" / "build.sh"), which, "--", "--runtime", "runc", "--network", "host",
                 "--volume", f"{HOST_CA_BUNDLE}:/run/shipyard-build/ca.crt:ro",
                 "--volume", f"{self.pip_conf}:/etc/pip.conf:ro", *flags, env=env)
        name = "shipyard" if which == "control-plane" else "shipyard-agent"
        return Build(f"ghcr.io/shipyard-dev/{name}:{project_version()}", time.perf_counter() - started)

    def config(self, image: str) -> dict:
        """The image's OCI configuration, as skopeo reads it from the store."""
        graph = self.root / "storage"
        reference = f"containers-storage:[overlay@{graph}+{self.runroot}]{image}"
        return json.loads(self.run("skopeo", "inspect", "--config", reference).stdout)

    def size(self, image: str) -> int:
        """Bytes the image takes unpacked (what `podman images` shows)."""
        return int(self.podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def compressed_size(self, image: str) -> int:
        """Bytes a registry would hold: the image's layers gzipped, as a push sends them."""
        target = self.root / "oci" / image.rpartition("/")[2].replace(":", "-")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(exist_ok=True)
        graph = self.root / "storage"
        self.run("skopeo", "copy", "--quiet", "--dest-compress-format", "gzip",
                 f"containers-storage:[overlay@{graph}+{self.runroot}]{image}", f"oci:{target}")
        return sum(f.stat().st_size for f in (target / "blobs").rglob("*") if f.is_file())

    def reset(self) -> None:
        self.podman("system", "reset", "--force", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def project_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


__all__ = ["BUILD_BASE", "RUN_BASE", "RUN_FLAGS", "Build", "ImageLab", "ImageToolMissing", "missing_tools",
           "project_version"]
