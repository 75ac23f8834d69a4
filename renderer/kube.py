"""Validation of rendered objects against Kubernetes and CRD schemas.

Core kinds use the JSON Schemas shipped by the ``kubernetes-validate``
package (strict variants: unknown fields are errors) for the cluster's
Kubernetes version. Custom resources (Argo, Istio, KEDA, External Secrets,
Gateway API, Prometheus Operator) use ``<group>/<kind>_<version>.json`` from
the directory a :class:`KubeSchemas` names. Every validator is compiled once
per process (jsonschema-rs) and cached.

Where the CRD schemas live is an input, never looked up here: an entry point
(the command line, the web app's config, the tests' conftest) builds one
``KubeSchemas`` from its own settings and hands it to the renderer, so the same
call validates the same way whatever the process environment holds.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
import importlib.util
from pathlib import Path
from typing import Any

import jsonschema_rs

from contract.addons import is_custom
from contract.errors import RenderError

# kubernetes-validate's schema files, found without importing the package (its import pulls in the
# jsonschema library, which we do not use, and costs a command-line start 70 ms)
_K8S_SCHEMA_ROOT = Path(importlib.util.find_spec("kubernetes_validate").submodule_search_locations[0]) \
    / "kubernetes-json-schema"
_VERSION_DIR = re.compile(r"^v(\d+\.\d+)\.\d+-local-strict$")


@functools.cache
def supported_kubernetes_versions() -> tuple[str, ...]:
    versions = []
    for entry in _K8S_SCHEMA_ROOT.iterdir():
        if match := _VERSION_DIR.match(entry.name):
            versions.append(match.group(1))
    return tuple(sorted(versions, key=lambda v: tuple(int(x) for x in v.split("."))))


def _version_dir(version: str):
    return _K8S_SCHEMA_ROOT / f"v{version}.0-local-strict"


# Every core kind's schema refers into one "/api/_definitions.json" (1.4 MB) of its version, which
# jsonschema-rs resolves against its default base URI.
_DEFINITIONS_URI = "json-schema:///api/_definitions.json"


@functools.cache
def _definitions(version: str) -> dict:
    return json.loads((_version_dir(version) / "_definitions.json").read_text())


@functools.cache
def _registry(version: str) -> jsonschema_rs.Registry:
    """The version's definitions, converted for jsonschema-rs once and shared by its validators (handed
    over by a retriever instead, the 1.4 MB document was converted again for every kind: 8 ms each)."""
    return jsonschema_rs.Registry([(_DEFINITIONS_URI, _definitions(version))])


def _core_schema_name(api_version: str, kind: str) -> str:
    group, _, ver = api_version.rpartition("/")
    group = group.split(".")[0] if group else ""
    return f"{kind.lower()}-{group}-{ver}.json" if group else f"{kind.lower()}-{ver}.json"


@functools.cache
def _core_validator(version: str, api_version: str, kind: str) -> jsonschema_rs.Validator | None:
    path = _version_dir(version) / _core_schema_name(api_version, kind)
    if not path.is_file():
        return None
    return jsonschema_rs.validator_for(json.loads(path.read_text()), registry=_registry(version))


@functools.cache
def _crd_validator(directory: str, api_version: str, kind: str) -> jsonschema_rs.Validator | None:
    group, _, ver = api_version.rpartition("/")
    path = Path(directory) / group / f"{kind.lower()}_{ver}.json"
    if not path.is_file():
        return None
    return jsonschema_rs.validator_for(json.loads(path.read_text()))


def is_core(api_version: str) -> bool:
    return not is_custom(api_version)


@dataclass(frozen=True)
class KubeSchemas:
    """The schemas rendered objects are checked against.

    Core kinds are always checked (kubernetes-validate). Custom resources are
    checked only against ``<crd_dir>/<group>/<kind>_<version>.json``; without a
    ``crd_dir``, or for a kind it lacks, they pass unchecked. Hashable, so the
    compiled validators can be cached per directory.
    """

    crd_dir: Path | None = None

    @classmethod
    def from_setting(cls, value: str | os.PathLike | None) -> KubeSchemas:
        """Schemas from a configured CRD directory; an empty or missing value means core kinds only."""
        return cls(Path(value)) if value else cls()

    @property
    def checks_custom_resources(self) -> bool:
        """Whether CRD kinds can be checked at all: the directory is set and exists."""
        return self.crd_dir is not None and self.crd_dir.is_dir()

    def validator_for(self, kubernetes_version: str, api_version: str, kind: str) -> jsonschema_rs.Validator | None:
        """The compiled validator for a kind, or None when no schema is available."""
        if is_core(api_version):
            return _core_validator(kubernetes_version, api_version, kind)
        if not self.checks_custom_resources:
            return None
        return _crd_validator(str(self.crd_dir), api_version, kind)

    def validate(self, obj: Any, kubernetes_version: str, *, where: str = "") -> bool:
        """Raise RenderError when ``obj`` violates its schema.

        Returns True when the object was checked against a schema, False when no
        schema for its kind is available (a CRD these schemas do not hold).
        A core kind without a schema is an error: the cluster could not run it.
        """
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
            raise RenderError(f"{where}: rendered document is not a Kubernetes object")
        api_version, kind = obj["apiVersion"], obj["kind"]
        validator = self.validator_for(kubernetes_version, api_version, kind)
        if validator is None:
            if is_core(api_version):
                raise RenderError(f"{where}: {kind} {api_version} does not exist in Kubernetes {kubernetes_version}")
            return False
        errors = list(validator.iter_errors(obj))
        if errors:
            name = (obj.get("metadata") or {}).get("name", "?")
            details = "; ".join(f"/{'/'.join(map(str, e.instance_path))}: {e.message}" for e in errors[:5])
            raise RenderError(f"{where}: {kind}/{name} is not valid for Kubernetes {kubernetes_version}: {details}")
        return True


# Core kinds only: what validation checks when no CRD schema directory is configured.
CORE_ONLY = KubeSchemas()


__all__ = ["KubeSchemas", "CORE_ONLY", "is_core", "supported_kubernetes_versions"]
