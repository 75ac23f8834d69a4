"""The fast path of reading a user's YAML: libyaml's events composed into the data ruamel would give.

ruamel.yaml's pure-Python scanner costs milliseconds per spec, the largest CPU
cost of a deploy, so renderer.yamlio gives an ordinary text to libyaml first.
Its events are composed here into plain data, plain scalars are resolved with
ruamel's own YAML 1.2 table, and each node keeps its line and column for
error messages. libyaml is a YAML 1.1 parser, so anything where the two could
read differently (a syntax error, a tag, an anchor or alias, a merge key, a
duplicate or non-string key, deep nesting, directives, tabs, the 1.1 line
breaks, a few block scalar and flow forms ruamel reads its own way) raises
``NotOrdinary`` inside, and ``load`` answers None: the caller then leaves the
whole text to ruamel. tests/test_yaml_parity.py holds the two paths to the
same data, problems and positions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import yaml
from ruamel.yaml import resolver as ruamel_resolver
from yaml.cyaml import CParser
from yaml.events import DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent



class NotOrdinary(Exception):
    """The text uses something libyaml and ruamel might read differently: leave it to ruamel."""


# Text the fast path leaves to ruamel untried: tabs (the YAML versions and the two
# parsers disagree on where they may stand), the YAML 1.1 line breaks NEL, LS and
# PS, a BOM inside the text, the escape \' (libyaml's own; an error in YAML 1.2),
# directives (``%YAML 1.1`` would switch ruamel to other rules), document end
# markers (ruamel refuses two in a row, libyaml does not) and a lone CR. Plain
# substring tests: a regular expression of the same costs ten times as much.
_LEFT_TO_RUAMEL = ("\t", "\x85", "\u2028", "\u2029", "\ufeff", "\\'", "\n%", "\n...")


def _left_to_ruamel(text: str) -> bool:
    return (
        text.startswith(("%", "..."))
        or any(part in text for part in _LEFT_TO_RUAMEL)
        or text.count("\r") != text.count("\r\n")
    )


# The start of a block scalar as libyaml and ruamel read it alike: the header, a
# comment after it only with a space before the "#" (libyaml does not insist), and
# no line of only spaces before the first line of content (libyaml takes its width
# as the indentation, ruamel refuses it or reads it otherwise).
_ORDINARY_BLOCK_SCALAR_START = re.compile(r"[|>][-+0-9]*(?: +#[^\r\n]*| *)(?:\r?\n)++(?! *(?:\r?\n|\Z))")

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def _yaml_12_resolvers() -> dict[str, list[tuple[str, Callable[[str], Any]]]]:
    """ruamel's own implicit resolvers for YAML 1.2 by first character, in ruamel's order.

    Each is kept as (tag, match function of its regular expression): ruamel
    wraps the expressions in a lazy proxy that costs more than the match.
    """
    table: dict[str, list[tuple[str, Callable[[str], Any]]]] = {}
    for versions, tag, regexp, first in ruamel_resolver.implicit_resolvers:
        if (1, 2) in versions:
            for char in first:
                table.setdefault(char, []).append((tag, regexp.match))
    return table


_PLAIN_RESOLVERS = _yaml_12_resolvers()


class Node(NamedTuple):
    """Where a node read by libyaml starts (1-based), and where its children do.

    ``children`` maps each key to (key line, key column, value node) for a
    mapping, lists the item nodes of a sequence and is None for a scalar.
    An empty value has line 0: ruamel places it by rules of its own (after the
    ``:`` or at the next key, depending on comments), so it is asked.
    """

    line: int
    column: int
    children: dict[str, tuple[int, int, Node]] | list[Node] | None


def load(text: str, max_nodes: int, max_depth: int) -> list[tuple[int, Any, Node]] | None:
    """(index, data, node) of each non-empty document of an ordinary text, read by libyaml; None leaves
    the text to ruamel."""
    if _left_to_ruamel(text):
        return None
    try:
        parser = CParser(text)
    except UnicodeEncodeError:  # a str holding lone surrogates: ruamel says where
        return None
    try:
        return _LibyamlComposer(parser, text, max_nodes, max_depth).documents()
    except (yaml.YAMLError, NotOrdinary):
        return None
    finally:
        parser.dispose()


class _LibyamlComposer:
    """Plain data and Node trees from libyaml's events, built as ruamel would build them.

    Raises NotOrdinary on anything ruamel would refuse, treat specially or
    might read differently; the caller then leaves the whole text to ruamel.
    """

    def __init__(self, parser: CParser, text: str, max_nodes: int, max_depth: int):
        self._next_event = parser.get_event
        self._text = text
        self._max_nodes = max_nodes
        self._max_depth = max_depth
        self._nodes = 0

    def documents(self) -> list[tuple[int, Any, Node]]:
        next_event = self._next_event
        next_event()  # StreamStartEvent
        documents: list[tuple[int, Any, Node]] = []
        index = 0
        while isinstance(start := next_event(), DocumentStartEvent):
            if start.version is not None or start.tags is not None:
                raise NotOrdinary("directives")
            self._nodes = 0  # the node limit is per document, as in _expanded_size
            root = next_event()
            if type(root) is ScalarEvent and root.style in ("|", ">"):
                raise NotOrdinary("a block scalar at the top level, which ruamel lets run over ---")
            data, node = self._node(root, 0)
            next_event()  # DocumentEndEvent
            if data is not None:  # empty documents are skipped, as ruamel's are
                documents.append((index, data, node))
            index += 1
        return documents

    def _node(self, event: Any, depth: int) -> tuple[Any, Node]:
        self._nodes += 1
        if self._nodes > self._max_nodes or depth >= self._max_depth:
            raise NotOrdinary("too many nodes or too deep: ruamel refuses it")
        kind = type(event)
        if kind is ScalarEvent:
            return self._scalar(event)
        if kind is MappingStartEvent:
            return self._mapping(event, depth)
        if kind is SequenceStartEvent:
            return self._sequence(event, depth)
        raise NotOrdinary("an alias")

    def _scalar(self, event: ScalarEvent) -> tuple[Any, Node]:
        if event.anchor is not None or event.tag is not None:
            raise NotOrdinary("an anchor or a tag")
        mark = event.start_mark
        if not event.implicit[0]:  # quoted or a block scalar: a string
            if event.style in ("|", ">") and not _ORDINARY_BLOCK_SCALAR_START.match(self._text, mark.index):
                raise NotOrdinary("a block scalar header or leading lines that ruamel reads differently")
            return event.value, Node(mark.line + 1, mark.column + 1, None)
        if not event.value:
            return None, Node(0, 0, None)
        return _plain_scalar(event.value), Node(mark.line + 1, mark.column + 1, None)

    def _mapping(self, event: MappingStartEvent, depth: int) -> tuple[dict, Node]:
        if event.anchor is not None or event.tag is not None:
            raise NotOrdinary("an anchor or a tag")
        if event.flow_style and self._text[event.start_mark.index] != "{":
            raise NotOrdinary('a single-pair mapping in a flow sequence ("[a: 1]"): ruamel reads some otherwise')
        next_event = self._next_event
        data: dict[str, Any] = {}
        children: dict[str, tuple[int, int, Node]] = {}
        while type(key_event := next_event()) is not MappingEndEvent:
            if type(key_event) is not ScalarEvent:
                raise NotOrdinary("a key that is not a scalar")
            key, key_node = self._scalar(key_event)
            if type(key) is not str or key in data:
                raise NotOrdinary("a key that is not a string, or a duplicate key")
            data[key], value_node = self._node(next_event(), depth + 1)
            children[key] = (key_node.line, key_node.column, value_node)
        mark = event.start_mark
        return data, Node(mark.line + 1, mark.column + 1, children)

    def _sequence(self, event: SequenceStartEvent, depth: int) -> tuple[list, Node]:
        if event.anchor is not None or event.tag is not None:
            raise NotOrdinary("an anchor or a tag")
        next_event = self._next_event
        data: list[Any] = []
        children: list[Node] = []
        while type(item_event := next_event()) is not SequenceEndEvent:
            item, item_node = self._node(item_event, depth + 1)
            data.append(item)
            children.append(item_node)
        mark = event.start_mark
        return data, Node(mark.line + 1, mark.column + 1, children)


def _plain_scalar(value: str) -> Any:
    """A plain scalar as ruamel constructs it: YAML 1.2 core schema, timestamps kept as strings."""
    for tag, match in _PLAIN_RESOLVERS.get(value[:1], ()):
        if match(value):
            break
    else:
        return value
    if tag == _NULL_TAG:
        return None
    if tag == _BOOL_TAG:
        return value.lower() == "true"
    if tag == _INT_TAG:
        return _ruamel_int(value)
    if tag == _FLOAT_TAG:
        return _ruamel_float(value)
    if tag == _TIMESTAMP_TAG:
        return value
    raise NotOrdinary(f"a plain {value!r} resolves to {tag}")  # "<<" merges, "=" is a value key


def _ruamel_int(value: str) -> int:
    """An int as ruamel's construct_yaml_int reads it in YAML 1.2: ``_`` ignored, ``0b``/``0o``/``0x``, ``017`` is 17."""
    digits = value.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    if digits.startswith(("-", "+")):
        digits = digits[1:]
    base = {"0b": 2, "0o": 8, "0x": 16}.get(digits[:2], 10)
    try:
        return sign * int(digits[2:] if base != 10 else digits, base)
    except ValueError as exc:  # "0x_", "+_" or too many digits: ruamel fails in its own way
        raise NotOrdinary(f"int {value!r}") from exc


def _ruamel_float(value: str) -> float:
    """A float as ruamel's construct_yaml_float reads it in YAML 1.2: ``_`` ignored, ``.inf``, ``.nan``."""
    digits = value.replace("_", "").lower()
    sign = -1 if digits.startswith("-") else 1
    if digits.startswith(("-", "+")):
        digits = digits[1:]
    if digits == ".inf":
        return sign * math.inf
    if digits == ".nan":
        return math.nan
    try:
        return sign * float(digits)
    except ValueError as exc:  # "._": ruamel fails in its own way
        raise NotOrdinary(f"float {value!r}") from exc


def locate(node: Node, path: tuple | list, key: bool) -> tuple[int, int] | None:
    """(line, column) of ``path`` in a fast-path tree; None where the path meets an empty value."""
    line, column = (node.line, node.column) if node.children is not None else (1, 1)
    for depth, part in enumerate(path):
        children = node.children
        if isinstance(children, dict) and part in children:
            key_line, key_column, node = children[part]
            line, column = (key_line, key_column) if key and depth == len(path) - 1 else (node.line, node.column)
        elif isinstance(children, list) and isinstance(part, int) and 0 <= part < len(children):
            node = children[part]
            line, column = node.line, node.column
        else:
            break
        if line == 0:
            return None
    return line, column


__all__ = ["Node", "NotOrdinary", "load", "locate"]
