"""All YAML in Shipyard goes through this module.

Two directions, two engines, one set of rules:

* **User input** (deploy specs, cluster profiles) is read by the rules of
  ruamel.yaml in YAML 1.2 round-trip mode, which keeps the line and column of
  every key and value for error messages. ``no`` stays a string, duplicate keys
  are errors, explicit tags other than ``!!str`` are refused, timestamps stay
  strings, files are size-limited and alias expansion is bounded (an alias
  bomb is refused after a walk of its *distinct* nodes, so in milliseconds).

  ruamel's pure-Python scanner costs milliseconds per spec, the largest CPU
  cost of a deploy, so an ordinary file is read by libyaml instead (a fast
  path, :func:`_load_with_libyaml`): libyaml's events are composed here into
  plain data, plain scalars are resolved with ruamel's own YAML 1.2 table, and
  the event marks are kept for positions. libyaml is a YAML 1.1 parser, so
  anything where the two could read differently -- a syntax error, a tag, an
  anchor or alias, a merge key, a duplicate or non-string key, deep nesting,
  directives, tabs, the 1.1 line breaks NEL/LS/PS, a few block scalar and flow
  forms that ruamel reads its own way -- sends the whole file to ruamel
  (:func:`_load_with_ruamel`), which then gives the data and the error
  messages it always gave. Only the position of an empty value is always
  ruamel's to give (it depends on comments), so Document.locate asks it.
  tests/test_yaml_parity.py holds the two paths to the same data, problems
  and positions.
* **Our own output** (rendered templates and the canonical manifest bytes
  committed to git) goes through libyaml via PyYAML's C loader and dumper:
  it is an order of magnitude faster and the text is ours. The dumper quotes
  every string that a YAML 1.1 *or* 1.2 reader would take for something else
  (``no``, ``0o17``, ``1e3``), so ArgoCD, kubectl and editors all read back the
  same strings. User values only ever reach template text through
  :func:`flow`, which emits a JSON-style flow node with every character that
  YAML would fold, reject or reinterpret escaped.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml
from ruamel.yaml import YAML
from ruamel.yaml import resolver as ruamel_resolver
from ruamel.yaml.comments import CommentedMap, CommentedOrderedMap, CommentedSeq, CommentedSet, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from yaml.cyaml import CParser
from yaml.events import DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent

from contract.errors import Problem, SpecError

MAX_FILE_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64

_STR_TAG = "tag:yaml.org,2002:str"


class _SpecConstructor(RoundTripConstructor):
    """Round-trip constructor that keeps timestamps as the strings they are, and reports
    numbers ruamel's resolver takes but its constructor cannot read (``0x_``, ``._``, an
    int of thousands of digits) at their position instead of failing without one."""

    def construct_yaml_int(self, node):
        return self._number(super().construct_yaml_int, node)

    def construct_yaml_float(self, node):
        return self._number(super().construct_yaml_float, node)

    @staticmethod
    def _number(construct, node):
        try:
            return construct(node)
        except (ValueError, IndexError) as exc:
            raise ConstructorError(None, None, f"{str(node.value)[:40]!r} cannot be read as a number; "
                                   "quote it to keep it as a string", node.start_mark) from exc


_SpecConstructor.add_constructor(
    "tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str
)
_SpecConstructor.add_constructor("tag:yaml.org,2002:int", _SpecConstructor.construct_yaml_int)
_SpecConstructor.add_constructor("tag:yaml.org,2002:float", _SpecConstructor.construct_yaml_float)


def _spec_yaml() -> YAML:
    loader = YAML(typ="rt")
    loader.Constructor = _SpecConstructor
    loader.allow_duplicate_keys = False
    return loader


@dataclass
class Document:
    """One YAML document of a file: plain data plus a way back to positions."""

    file: str
    index: int  # 0-based position of the document in its file
    data: Any  # plain dict/list/str/int/float/bool/None
    _node: Any  # for positions: the ruamel tree, or the fast path's _Node tree
    _text: str | None = None  # fast path only: the file's text, for what only ruamel can place

    @property
    def engine(self) -> str:
        """Which parser read the document: ``"libyaml"`` (the fast path) or ``"ruamel"``."""
        return "libyaml" if isinstance(self._node, _Node) else "ruamel"

    @property
    def line(self) -> int:
        return self.locate(())[0]

    def locate(self, path: tuple | list, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of ``path`` in the file.

        With ``key=True`` the position of the mapping key is given rather than
        its value (what a user wants to see for an unknown field). A path that
        does not exist (a missing field) is located at its deepest existing
        parent.
        """
        if isinstance(self._node, _Node):
            found = _locate_in_libyaml_tree(self._node, path, key)
            if found is not None:
                return found
            # The path meets an empty value, which ruamel places by rules of its own.
            [node] = itertools.islice(_spec_yaml().load_all(self._text), self.index, self.index + 1)
            return _locate_in_ruamel_tree(node, path, key)
        return _locate_in_ruamel_tree(self._node, path, key)

    def problem(self, message: str, path: tuple | list = (), key: bool = False) -> Problem:
        line, col = self.locate(path, key=key)
        return Problem(self.file, line, col, message, pointer(path))


def _locate_in_ruamel_tree(node: Any, path: tuple | list, key: bool) -> tuple[int, int]:
    line, col = _start(node)
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, CommentedMap) and part in node:
            try:
                pos = node.lc.key(part) if (key and last) else node.lc.value(part)
            except (KeyError, TypeError):
                pos = None
            if pos is not None:
                line, col = pos[0] + 1, pos[1] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            try:
                pos = node.lc.item(part)
                line, col = pos[0] + 1, pos[1] + 1
            except (KeyError, TypeError, IndexError):
                pass
            node = node[part]
        else:
            break
    return line, col


def _start(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return lc.line + 1, lc.col + 1
    return 1, 1


def pointer(path: tuple | list) -> str:
    """JSON pointer for a path of keys and indexes."""
    if not path:
        return ""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def load_documents(
    source: str | bytes,
    file: str = "<input>",
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_nodes: int = MAX_EXPANDED_NODES,
) -> list[Document]:
    """Parse every document of a user file; raise SpecError listing problems.

    Empty documents (a file of comments, a trailing ``---``) are skipped.
    """
    text = _user_text(source, file, max_bytes)
    documents = _load_with_libyaml(text, file, max_nodes)
    if documents is None:
        documents = _load_with_ruamel(text, file, max_nodes)
    return documents


def _user_text(source: str | bytes, file: str, max_bytes: int) -> str:
    """The text of a user file, refused before any parsing if too big, not UTF-8 or nested too deeply."""
    size = len(source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source)
    if size > max_bytes:
        raise SpecError(
            [Problem(file, 0, 0, f"file is {size} bytes; the limit is {max_bytes} bytes, split it into several files")]
        )
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            col = exc.start - (source.rfind(b"\n", 0, exc.start) + 1) + 1
            raise SpecError([Problem(file, line, col, "file is not valid UTF-8 text; save it as UTF-8")]) from exc
    else:
        text = source
    if text.startswith("\ufeff"):
        text = text[1:]
    if (deep := _deep_flow_nesting(text)) is not None:
        line, col = deep
        raise SpecError([Problem(file, line, col, f"YAML is nested too deeply (limit {MAX_DEPTH} levels)")])
    return text


class DocumentSpan(NamedTuple):
    """Where a document of a YAML text starts, and how long it is."""

    line: int  # 1-based line of its first character (its ``---`` when it has one)
    size: int  # bytes of its text in UTF-8, marker and comments included


# Every document after the first starts at a marker: "---" or "..." at the start of a line and
# followed by a space, a tab, a line break or the end. YAML 1.2 forbids such a line inside any
# scalar, so it is a marker wherever it stands. Line breaks are those of either parser: CR
# alone too, and NEL, LS, PS for ruamel, which also counts no column for a BOM ("\ufeff---").
_BREAKS = "\r\n\x85\u2028\u2029"
_DOCUMENT_MARKER = re.compile(rf"(?<![^{_BREAKS}\ufeff])(?:---|\.\.\.)(?![^ \t{_BREAKS}])")
# More than blanks, a comment or a directive on a line: where a document's first token is.
_CONTENT_HERE = re.compile(rf"[ \t]*[^ \t{_BREAKS}#%]")
_CONTENT_LINE = re.compile(rf"[{_BREAKS}][ \t]*[^ \t{_BREAKS}#%]")


def document_spans(text: str) -> list[DocumentSpan]:
    """Each document of a YAML text that holds more than comments, found without parsing it.

    The text is cut at its document markers; a piece of only blanks and comments (before the
    first ``---``, after a trailing one) is no document. The count is never below what a
    parser reads (it may be above: ``--- null`` counts), so a limit on it holds for the parsed
    documents, and it takes a few regular-expression scans of the text: a body of thousands of
    documents is refused in milliseconds rather than parsed first.
    """
    starts = [0, *(match.start() for match in _DOCUMENT_MARKER.finditer(text)), len(text)]
    ascii_only = text.isascii()  # then a character is a byte, and nothing needs encoding
    spans, line, counted_to = [], 1, 0
    for index, (start, end) in enumerate(itertools.pairwise(starts)):
        body = start + 3 if index else start  # past the marker: "--- {a: 1}" holds a document
        if start == end or not (_CONTENT_HERE.match(text, body, end) or _CONTENT_LINE.search(text, body, end)):
            continue
        line += text.count("\n", counted_to, start)
        counted_to = start
        size = end - start if ascii_only else len(text[start:end].encode("utf-8", "surrogatepass"))
        spans.append(DocumentSpan(line, size))
    return spans


def _load_with_ruamel(text: str, file: str, max_nodes: int) -> list[Document]:
    """The reference reader of user YAML: every rule and every error message lives here."""
    try:
        raw_docs = list(_spec_yaml().load_all(text))
    except MarkedYAMLError as exc:
        raise SpecError([_yaml_problem(file, exc)]) from exc
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecError(
            [Problem(file, line, col, f"character U+{exc.character:04X} is not allowed in YAML; remove it or write it as an escape in a double-quoted string")]
        ) from exc
    except YAMLError as exc:
        raise SpecError([Problem(file, 0, 0, f"invalid YAML: {exc}")]) from exc
    except RecursionError as exc:
        raise SpecError([Problem(file, 0, 0, f"YAML is nested too deeply (limit {MAX_DEPTH} levels)")]) from exc

    documents: list[Document] = []
    problems: list[Problem] = []
    for index, node in enumerate(raw_docs):
        if node is None:
            continue
        doc = Document(file, index, None, node)
        expanded = _expanded_size(node, max_nodes)
        if expanded > max_nodes:
            problems.append(
                doc.problem(
                    f"document expands to more than {max_nodes} nodes through aliases; "
                    "repeat less or split it (alias bombs are refused)"
                )
            )
            continue
        try:
            doc.data = _to_plain(node, doc, (), problems)
        except RecursionError:
            problems.append(doc.problem(f"document is nested too deeply (limit {MAX_DEPTH} levels)"))
            continue
        documents.append(doc)
    if problems:
        raise SpecError(problems)
    return documents


# ruamel's scanner spends time proportional to the flow depth on every token inside
# "[...]", so thousands of nested brackets take seconds to refuse. A linear pre-scan
# refuses them first; its limit is well above MAX_DEPTH so that brackets inside
# block scalars (which it does not recognise) never refuse a valid spec.
_FLOW_SCAN_LIMIT = 4 * MAX_DEPTH


def _deep_flow_nesting(text: str) -> tuple[int, int] | None:
    """Where flow collections ("[", "{") first nest beyond the scan limit, outside quotes and comments."""
    if text.count("[") + text.count("{") <= _FLOW_SCAN_LIMIT:
        return None  # cannot nest that deep: skip the scan (the common case, at C speed)
    depth, quote, line, line_start, previous = 0, None, 1, 0, "\n"
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            line, line_start = line + 1, index + 1
            if quote is None:
                previous = char
                index += 1
                continue
        if quote == '"':
            if char == "\\":
                index += 1
            elif char == '"':
                quote = None
        elif quote == "'":
            if char == "'":
                quote = None
        elif char == "#" and previous in " \t\n":
            newline = text.find("\n", index)
            index = length if newline < 0 else newline
            continue
        elif char in "\"'" and (previous in " \t\n[{,:-?" or depth):
            quote = char
        elif char in "[{":
            depth += 1
            if depth > _FLOW_SCAN_LIMIT:
                return line, index - line_start + 1
        elif char in "]}" and depth:
            depth -= 1
        previous = char
        index += 1
    return None


def _yaml_problem(file: str, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = exc.context_mark
    if exc.problem and exc.context and context is not None and mark is not None and context.line != mark.line:
        problem += f" ({exc.context.strip()} at line {context.line + 1}, column {context.column + 1})"
    if "duplicate key" in problem:
        context = exc.context_mark
        first = f" (the mapping starts on line {context.line + 1})" if context is not None else ""
        key = re.search(r'duplicate key "(.*?)"', problem)
        name = key.group(1) if key else "?"
        return Problem(file, line, col, f'duplicate key "{name}"{first}; each key may appear once')
    return Problem(file, line, col, f"invalid YAML: {problem}")


def _expanded_size(node: Any, limit: int) -> int:
    """Number of nodes the document would have with every alias expanded.

    Memoised by identity, so a billion-laughs document costs a walk of its few
    distinct nodes, not of its expansion.
    """
    memo: dict[int, int] = {}

    def size(obj: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            return 1
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, list):
            children = obj
        else:
            return 1
        key = id(obj)
        if key in memo:
            return memo[key]
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        memo[key] = total
        return total

    return size(node, 0)


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _refuse_tag(tag: str, doc: Document, path: tuple, problems: list[Problem]) -> None:
    problems.append(doc.problem(f"YAML tag {_tag_name(tag)} is not allowed; remove it", path))


def _to_plain(obj: Any, doc: Document, path: tuple, problems: list[Problem]) -> Any:
    if len(path) > MAX_DEPTH:
        raise RecursionError
    if isinstance(obj, (CommentedOrderedMap, CommentedSet)):
        _refuse_tag("tag:yaml.org,2002:omap" if isinstance(obj, CommentedOrderedMap) else "tag:yaml.org,2002:set", doc, path, problems)
        return None
    if isinstance(obj, (bytes, bytearray)):
        _refuse_tag("tag:yaml.org,2002:binary", doc, path, problems)
        return None
    if isinstance(obj, dict):
        if getattr(getattr(obj, "tag", None), "value", None) not in (None, "tag:yaml.org,2002:map"):
            _refuse_tag(obj.tag.value, doc, path, problems)
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                problems.append(doc.problem(f"keys must be strings, not {_kind(key)}: {key!r}; quote the key", path))
                continue
            out[str(key)] = _to_plain(value, doc, path + (str(key),), problems)
        return out
    if isinstance(obj, list):
        if getattr(getattr(obj, "tag", None), "value", None) not in (None, "tag:yaml.org,2002:seq"):
            _refuse_tag(obj.tag.value, doc, path, problems)
        return [_to_plain(v, doc, path + (i,), problems) for i, v in enumerate(obj)]
    if isinstance(obj, TaggedScalar):
        if obj.tag.value == _STR_TAG:
            return _plain_str(str(obj.value), doc, path, problems)
        _refuse_tag(obj.tag.value, doc, path, problems)
        return None
    if isinstance(obj, bool) or obj is None:
        return obj if obj is None else bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return _plain_str(obj, doc, path, problems)
    if isinstance(obj, (datetime.date, datetime.datetime)):
        return obj.isoformat()
    problems.append(doc.problem(f"unsupported YAML value of type {type(obj).__name__}", path))
    return None


def _plain_str(value: str, doc: Document, path: tuple, problems: list[Problem]) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(doc.problem("string contains an unpaired surrogate escape; it is not valid Unicode", path))
    return str(value)


def _kind(value: Any) -> str:
    return {int: "a number", float: "a number", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


# --- user input, the fast path: libyaml ---------------------------------------


class _NotOrdinary(Exception):
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


class _Node(NamedTuple):
    """Where a node read by libyaml starts (1-based), and where its children do.

    ``children`` maps each key to (key line, key column, value node) for a
    mapping, lists the item nodes of a sequence and is None for a scalar.
    An empty value has line 0: ruamel places it by rules of its own (after the
    ``:`` or at the next key, depending on comments), so it is asked.
    """

    line: int
    column: int
    children: dict[str, tuple[int, int, _Node]] | list[_Node] | None


def _load_with_libyaml(text: str, file: str, max_nodes: int) -> list[Document] | None:
    """The documents of an ordinary text, read by libyaml; None leaves the text to ruamel."""
    if _left_to_ruamel(text):
        return None
    try:
        parser = CParser(text)
    except UnicodeEncodeError:  # a str holding lone surrogates: ruamel says where
        return None
    try:
        return _LibyamlComposer(parser, text, max_nodes).documents(file)
    except (yaml.YAMLError, _NotOrdinary):
        return None
    finally:
        parser.dispose()


class _LibyamlComposer:
    """Plain data and _Node trees from libyaml's events, built as ruamel would build them.

    Raises _NotOrdinary on anything ruamel would refuse, treat specially or
    might read differently; the caller then leaves the whole text to ruamel.
    """

    def __init__(self, parser: CParser, text: str, max_nodes: int):
        self._next_event = parser.get_event
        self._text = text
        self._max_nodes = max_nodes
        self._nodes = 0

    def documents(self, file: str) -> list[Document]:
        next_event = self._next_event
        next_event()  # StreamStartEvent
        documents: list[Document] = []
        index = 0
        while isinstance(start := next_event(), DocumentStartEvent):
            if start.version is not None or start.tags is not None:
                raise _NotOrdinary("directives")
            self._nodes = 0  # the node limit is per document, as in _expanded_size
            root = next_event()
            if type(root) is ScalarEvent and root.style in ("|", ">"):
                raise _NotOrdinary("a block scalar at the top level, which ruamel lets run over ---")
            data, node = self._node(root, 0)
            next_event()  # DocumentEndEvent
            if data is not None:  # empty documents are skipped, as ruamel's are
                documents.append(Document(file, index, data, node, self._text))
            index += 1
        return documents

    def _node(self, event: Any, depth: int) -> tuple[Any, _Node]:
        self._nodes += 1
        if self._nodes > self._max_nodes or depth >= MAX_DEPTH:
            raise _NotOrdinary("too many nodes or too deep: ruamel refuses it")
        kind = type(event)
        if kind is ScalarEvent:
            return self._scalar(event)
        if kind is MappingStartEvent:
            return self._mapping(event, depth)
        if kind is SequenceStartEvent:
            return self._sequence(event, depth)
        raise _NotOrdinary("an alias")

    def _scalar(self, event: ScalarEvent) -> tuple[Any, _Node]:
        if event.anchor is not None or event.tag is not None:
            raise _NotOrdinary("an anchor or a tag")
        mark = event.start_mark
        if not event.implicit[0]:  # quoted or a block scalar: a string
            if event.style in ("|", ">") and not _ORDINARY_BLOCK_SCALAR_START.match(self._text, mark.index):
                raise _NotOrdinary("a block scalar header or leading lines that ruamel reads differently")
            return event.value, _Node(mark.line + 1, mark.column + 1, None)
        if not event.value:
            return None, _Node(0, 0, None)
        return _plain_scalar(event.value), _Node(mark.line + 1, mark.column + 1, None)

    def _mapping(self, event: MappingStartEvent, depth: int) -> tuple[dict, _Node]:
        if event.anchor is not None or event.tag is not None:
            raise _NotOrdinary("an anchor or a tag")
        if event.flow_style and self._text[event.start_mark.index] != "{":
            raise _NotOrdinary('a single-pair mapping in a flow sequence ("[a: 1]"): ruamel reads some otherwise')
        next_event = self._next_event
        data: dict[str, Any] = {}
        children: dict[str, tuple[int, int, _Node]] = {}
        while type(key_event := next_event()) is not MappingEndEvent:
            if type(key_event) is not ScalarEvent:
                raise _NotOrdinary("a key that is not a scalar")
            key, key_node = self._scalar(key_event)
            if type(key) is not str or key in data:
                raise _NotOrdinary("a key that is not a string, or a duplicate key")
            data[key], value_node = self._node(next_event(), depth + 1)
            children[key] = (key_node.line, key_node.column, value_node)
        mark = event.start_mark
        return data, _Node(mark.line + 1, mark.column + 1, children)

    def _sequence(self, event: SequenceStartEvent, depth: int) -> tuple[list, _Node]:
        if event.anchor is not None or event.tag is not None:
            raise _NotOrdinary("an anchor or a tag")
        next_event = self._next_event
        data: list[Any] = []
        children: list[_Node] = []
        while type(item_event := next_event()) is not SequenceEndEvent:
            item, item_node = self._node(item_event, depth + 1)
            data.append(item)
            children.append(item_node)
        mark = event.start_mark
        return data, _Node(mark.line + 1, mark.column + 1, children)


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
    raise _NotOrdinary(f"a plain {value!r} resolves to {tag}")  # "<<" merges, "=" is a value key


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
        raise _NotOrdinary(f"int {value!r}") from exc


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
        raise _NotOrdinary(f"float {value!r}") from exc


def _locate_in_libyaml_tree(node: _Node, path: tuple | list, key: bool) -> tuple[int, int] | None:
    """Document.locate on a fast-path tree; None where the path meets an empty value."""
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


# --- our own output -----------------------------------------------------------

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



__all__ = [
    "Document",
    "DocumentSpan",
    "document_spans",
    "load_documents",
    "flow",
    "dump_manifest",
    "dump_all",
    "parse_rendered",
    "load_trusted",
    "pointer",
]
