"""YAML of our own: template output read back, and the canonical bytes of every committed manifest.

Goes through libyaml via PyYAML's C loader and dumper: an order of magnitude
faster than ruamel, and the text is ours. The dumper quotes every string that a
YAML 1.1 *or* 1.2 reader would take for something else (``no``, ``0o17``,
``1e3``), so ArgoCD, kubectl and editors all read back the same strings. User
values only ever reach template text through :func:`flow`, which emits a
JSON-style flow node with every character that YAML would fold, reject or
reinterpret escaped. A user's YAML is read by renderer.yamlio, never here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

_STR_TAG = "tag:yaml.org,2002:str"


# Characters that must not appear raw inside a double-quoted YAML scalar:
# C0/C1 controls, DEL, the YAML 1.1 line breaks NEL/LS/PS, BOM and non-characters.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    return "\\u%04x" % ord(match.group())


def flow(value: Any) -> str:
    """Serialize a JSON-compatible value as a YAML flow node (the template filter).

    The result is a single line: strings are double-quoted with every unsafe
    character escaped, so no user value can end a line, start a document,
    carry a tag or be read as a number or boolean.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return _UNSAFE.sub(_escape, text)


# YAML 1.2 core-schema forms that YAML 1.1 resolvers don't know. Registered
# on the dumper so strings of this shape get quoted, and on the loader so our
# flow numbers like 1e+20 read back as numbers.
_INT_12 = re.compile(r"^(?:0o[0-7]+|[-+]?0x[0-9a-fA-F]+)$")
_FLOAT_12 = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class _ManifestDumper(yaml.CSafeDumper):
    pass


class _ManifestLoader(yaml.CSafeLoader):
    pass


_ManifestDumper.add_implicit_resolver("tag:yaml.org,2002:int", _INT_12, list("0-+"))
_ManifestDumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))
_ManifestLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data and len(data) < 64 * 1024 else None
    return dumper.represent_scalar(_STR_TAG, data, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def dump_manifest(obj: Any) -> bytes:
    """Canonical bytes of one manifest: same object, same bytes."""
    text = yaml.dump(
        obj,
        Dumper=_ManifestDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,
        explicit_start=False,
    )
    return text.encode("utf-8")


def dump_all(objs: list[Any]) -> str:
    """A multi-document YAML stream of manifests, in order."""
    return "".join("---\n" + dump_manifest(obj).decode("utf-8") for obj in objs)


def parse_rendered(text: str) -> list[Any]:
    """Parse template output (ours, not a user's) into objects; skip empty docs."""
    return [doc for doc in yaml.load_all(text, Loader=_ManifestLoader) if doc is not None]


def load_trusted(text: str | bytes) -> Any:
    """Parse one document of our own canonical output (repository files)."""
    return yaml.load(text, Loader=_ManifestLoader)


__all__ = ["flow", "dump_manifest", "dump_all", "parse_rendered", "load_trusted"]
