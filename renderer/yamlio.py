"""A user's YAML (deploy specs, cluster profiles) read by YAML 1.2's rules, with every position kept.

Read by the rules of ruamel.yaml in YAML 1.2 round-trip mode, which keeps the
line and column of every key and value for error messages. ``no`` stays a
string, duplicate keys are errors, explicit tags other than ``!!str`` are
refused, timestamps stay strings, files are size-limited and alias expansion
is bounded (an alias bomb is refused after a walk of its *distinct* nodes, so
in milliseconds).

An ordinary file is read by libyaml first (renderer.yaml_fast, the fast
path); anything where the two could read differently sends the whole file to
ruamel (:func:`_load_with_ruamel`), which then gives the data and the error
messages it always gave. Only the position of an empty value is always
ruamel's to give (it depends on comments), so Document.locate asks it.

YAML of our own (template output, committed manifests) is renderer.manifest_yaml's.
"""

from __future__ import annotations

import datetime
import itertools
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedOrderedMap, CommentedSeq, CommentedSet, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from contract.errors import Problem, SpecError
from renderer import yaml_fast

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
    _node: Any  # for positions: the ruamel tree, or the fast path's Node tree
    _text: str | None = None  # fast path only: the file's text, for what only ruamel can place

    @property
    def engine(self) -> str:
        """Which parser read the document: ``"libyaml"`` (the fast path) or ``"ruamel"``."""
        return "libyaml" if isinstance(self._node, yaml_fast.Node) else "ruamel"

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
        if isinstance(self._node, yaml_fast.Node):
            found = yaml_fast.locate(self._node, path, key)
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
    fast = yaml_fast.load(text, max_nodes, MAX_DEPTH)
    if fast is not None:
        documents = [Document(file, index, data, node, text) for index, data, node in fast]
    else:
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
    except TypeError as exc:  # ruamel's own failure on a key it cannot hold, such as "? : {}"
        raise SpecError([Problem(file, 0, 0, "invalid YAML: a mapping key that is a mapping or a list; "
                                             "keys must be strings (quote the key)")]) from exc

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


__all__ = [
    "Document",
    "DocumentSpan",
    "document_spans",
    "load_documents",
    "pointer",
]
