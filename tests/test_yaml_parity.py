"""The libyaml fast path of load_documents reads exactly what ruamel reads.

load_documents reads an ordinary file with libyaml and leaves anything else to
ruamel (renderer/yaml_fast.py says why). Every case here goes through both: the
public load_documents, whichever path it takes, and the ruamel path alone
(_load_with_ruamel, as load_documents was before the fast path). They must give
the same documents (index, data with exact types, the position of every path,
key or value) or the same problems, and ordinary specs must really take the
fast path, so that the comparison is not between ruamel and itself.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderer import yamlio
from contract.errors import SpecError
from renderer.yamlio import Document, load_documents
from renderer.manifest_yaml import flow
from tests.test_hostile import hostile_spec
from tests.test_yaml import HOSTILE

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_FILES = sorted((ROOT / "fixtures").rglob("*.yaml"))

sys.path.insert(0, str(ROOT / "benchmarks"))
import synthetic  # noqa: E402  (benchmarks/ is not a package)

# Plain scalars that YAML 1.1 and 1.2 (or libyaml and ruamel) might read differently.
TRICKY = [
    "no", "yes", "on", "off", "y", "n", "No", "YES", "~", "null", "Null", "NULL", "nULL",
    "true", "True", "TRUE", "tRUE", "false", "False", "FALSE",
    "0", "-0", "+0", "00", "017", "0o17", "0O17", "0o", "0o_", "0x1F", "0x1f", "0X1F", "0x_1F", "0x", "0b11", "0b", "0b_1",
    "1_000", "1__0", "_1", "+_", "-_1", "1_", "+1", "-1", "1.", "-1.", ".5", "-.5", "1.5_0", "._", "._5", "1e3", "1E+3", "1e-3",
    "1.5e3", "1.e3", ".5e+3", ".5e3", "1e", "e3", "1_0e1", ".inf", "-.Inf", "+.INF", "+.inf", ".NaN", ".nan", "-.nan", ".NAN",
    "inf", "nan", "0.0", "-0.0", "1" * 30, "1" * 5000, "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
    "2001-1-1", "12:30", "1:20:30", "-1:20", "190:20:30.15", "=", "<<", "<", "!", "&", "*", "?", "-", ":", "x:y", "a b",
    "a #b", "a#b", "a: b", "😀", "é", "日本語", "0.1.2", "1,000", "$1", "v1.2.3", "null null", "true false",
]

KEYS = ["a", "b", "name", "image", "no", "on", "true", "null", "~", "1", "0o17", "1.5", "2001-12-14", "<<", "=",
        "x y", "😀", "", "-", "?", ":", "a:b", "é"]

FOLDABLE_LINES = ["word", "two words", "  indented", "", "   ", "# not a comment", "- dash", "key: value", "'q'", "\\ back"]


def same(a, b) -> bool:
    """Equal, with the same types all the way down (1 is not True is not 1.0), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def paths(data, prefix: tuple = ()):
    """Every path into the data, and one missing path below each node."""
    yield prefix
    if isinstance(data, dict):
        yield prefix + ("no such key",)
        for key, value in data.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(data, list):
        yield prefix + (len(data),)
        for index, value in enumerate(data):
            yield from paths(value, prefix + (index,))
    else:
        yield prefix + ("below",)


def outcome(load: Callable[[], list[Document]]):
    try:
        return "documents", load()
    except SpecError as exc:
        return "problems", exc.problems
    except Exception as exc:  # the old path's own failures must stay the same failures
        return "exception", (type(exc), str(exc))


def assert_same_reading(
    source: str | bytes, file: str = "parity.yaml", max_nodes: int = yamlio.MAX_EXPANDED_NODES
) -> list[Document] | None:
    """load_documents and the ruamel path agree on ``source``; the documents, if any."""
    new_kind, new = outcome(lambda: load_documents(source, file, max_nodes=max_nodes))

    def with_ruamel() -> list[Document]:
        text = yamlio._user_text(source, file, yamlio.MAX_FILE_BYTES)
        return yamlio._load_with_ruamel(text, file, max_nodes)

    old_kind, old = outcome(with_ruamel)
    assert new_kind == old_kind, (new, old)
    if new_kind != "documents":
        assert new == old
        return None
    assert [d.index for d in new] == [d.index for d in old]
    for fast, reference in zip(new, old):
        assert same(fast.data, reference.data), (fast.data, reference.data)
        assert fast.line == reference.line
        for path in paths(reference.data):
            for key in (False, True):
                assert fast.locate(path, key=key) == reference.locate(path, key=key), (path, key)
            assert fast.problem("m", path) == reference.problem("m", path)
    return new


def engines(documents: list[Document] | None) -> set[str]:
    return {d.engine for d in documents or []}


# --- files and strings ----------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(ROOT / "fixtures")))
def test_fixture_files_read_the_same(path):
    assert_same_reading(path.read_bytes(), str(path))


def test_ordinary_specs_and_profiles_take_the_fast_path():
    ordinary = [p for p in FIXTURE_FILES if p.parent.name in ("specs", "clusters")]
    for path in ordinary:
        documents = assert_same_reading(path.read_bytes(), str(path))
        assert engines(documents) == {"libyaml"}, path
    for shape in synthetic.SHAPES:
        documents = assert_same_reading(synthetic.spec_text("app-1", "shop", "1.2.3", shape))
        assert engines(documents) == {"libyaml"}, shape


def test_invalid_fixtures_mostly_take_the_fast_path_too():
    # Their mistakes are in the data, not the YAML: only the YAML mistakes need ruamel.
    fast = [p.name for p in FIXTURE_FILES if p.parent.name == "invalid"
            and engines(assert_same_reading(p.read_bytes(), str(p))) == {"libyaml"}]
    assert len(fast) >= 20 and "yaml-syntax.yaml" not in fast and "duplicate-keys.yaml" not in fast


def test_hostile_spec_reads_the_same():
    assert_same_reading(hostile_spec(), "hostile.json")


@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")  # "[&anchor, {k: &anchor}]"
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_read_the_same_however_written(value):
    single = "'" + value.replace("'", "''") + "'"
    literal = "|-\n" + "".join(f"  {line}\n" for line in value.split("\n"))
    for text in (
        value,
        f"a: {value}\n",
        f"a: {flow(value)}\n",
        f"- {flow(value)}\n- {value}\n",
        f"{flow(value)}: x\n",
        f"a: {single}\n",
        f"a: {literal}",
        f"a: >\n  {value}\n",
        f"{value}: {value}\n",
        f"[{value}, {{k: {value}}}]\n",
        f"---\n{value}\n---\na: 1\n",
    ):
        assert_same_reading(text)
        assert_same_reading(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("scalar", TRICKY, ids=range(len(TRICKY)))
def test_tricky_scalars_read_the_same_in_every_style(scalar):
    for written in (scalar, "'" + scalar.replace("'", "''") + "'", flow(scalar), f"|\n  {scalar}", f">-\n  {scalar}"):
        for text in (
            f"v: {written}\n",
            f"v:\n  - {written}\n  - x\n",
            f"v:\n- {written}\n",
            f"v: [{written}, x]\n" if "\n" not in written else f"- {written}\n",
            f"v: {{k: {written}}}\n" if "\n" not in written else f"- k: {written}\n",
            f"{written}: v\n" if "\n" not in written else f"? {written}\n: v\n",
            f"{written}\n",
            f"--- {written}\n",
        ):
            assert_same_reading(text)


def test_ordinary_values_take_the_fast_path_with_their_ruamel_types():
    [doc] = assert_same_reading("a: no\nb: 0o17\nc: 017\nd: 1_000\ne: 1e3\nf: .inf\ng: ~\nh: 2001-12-14\ni: 0x1F\nj: '1'\n")
    assert doc.engine == "libyaml"
    assert doc.data == {"a": "no", "b": 15, "c": 17, "d": 1000, "e": 1000.0, "f": math.inf, "g": None,
                        "h": "2001-12-14", "i": 31, "j": "1"}


# Cases where libyaml and ruamel read differently (found by the generated cases
# below): each must be left to ruamel, which then says what it always said.
@pytest.mark.parametrize("text", [
    "># c\n",  # no space before the comment: libyaml accepts it, YAML 1.2 does not
    "a: |# c\n  x\n",
    "|+\n---\nx\n",  # ruamel lets a top-level block scalar run over "---"
    ">\n...\n",
    "x\n...\n...\n",  # two document end markers: ruamel refuses the second
    "a: 1\n...\nb: 2\n",  # YAML 1.2 lets an implicit document follow "...", libyaml does not
    "a: \"\\'\"\n",  # libyaml's own escape
    "a:\tb\n",
    "a: b\rc: d\r",
    "%YAML 1.1\n---\na: yes\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "a: <<\n",
    "<<: {b: 1}\n",
    "a: =\n",
    "=: 1\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "a: ! 1\n",
    "1: x\n",
    "a: 1\na: 2\n",
    "a: 1\n'a': 2\n",
    "[a, b]: c\n",
    "? - a\n: b\n",
    "a: \"\\ud83d\\ude00\"\n",
    "a: \"\\U00110000\"\n",
    "a: 0x_\n",
    "a: ._\n",
    "a: " + "1" * 5000 + "\n",
    "a: x\u2028b\n",
    "a: x\x85b\n",
    "a: \ufeffb\n",
    '["a":1]\n',  # ruamel refuses a JSON-like key right before ":" in a flow sequence pair
    "[a: 1]\n",
    "a: |\n   \n  x\n",  # a leading line of spaces: libyaml indents by it, ruamel refuses it
    "a: >\n   \n    x\n",
])
def test_known_differences_are_left_to_ruamel(text):
    documents = assert_same_reading(text)
    assert engines(documents) <= {"ruamel"}


# Corners of the syntax where libyaml and ruamel agree (each checked once by hand
# against a divergence that would matter).
EDGES = [
    '{"a":1}\n', "{a:1}\n", "[a:b]\n", "{? a}\n", "{a, b: c}\n", "[a?b]\n", "[-a]\n", "[:a]\n", "[a#b]\n",
    "[a #b\n]\n", "[a, # c\n b]\n", "{a: 1, # c\n b: 2}\n", '"a":1\n', "a:1\n", '{"a" :1}\n', "{a: [b]c}\n",
    "k" * 1020 + ": v\n", "k" * 1030 + ": v\n", "{" + "k" * 1030 + ": v}\n", "a: b\n  c\n", "a:\n  b\n c\n",
    "a: 'x\n\n  y'\n", 'a: "x\\\n  y"\n', 'a: "x \\\n  y"\n', "a: 'x \n  y'\n", "a: x\n\n\n  y\n", "? a\n? b\n",
    "? |\n  x\n: v\n", "a: [\nb]\n", "a:\n  [b,\n  c]\n", "- [a,\nb]\n", "---a\n", "--- a\n", "----\n", "- ---\n",
    "a: ---\n", "'a\n---\nb'\n", "a\n--- b\n", "a: |\n  x\n---\nb\n", "- - -\n", "a: b: c\n", "?a: b\n", "-a: b\n",
    ":a: b\n", "a :b\n", "a: x#y\n", " a: 1\n", "a:\n    b: 1\n  c: 2\n", "a: 'x'y\n", 'a: "x"#c\n',
    "a: 1\r\nb: [1,\r\n 2]\r\n", "a: |\r\n  x\r\n  y\r\n", "a: >\r\n  x\r\n\r\n  y\r\n", 'a: "x\\\r\n  y"\r\n',
    "a: |\n  x\n   \n  y\n", "a: >\n  x\n   y\n  z\n", "a: >\n  x\n\n   y\n\n  z\n", "a: |+\n  x\n  \n \n",
    "a: |-\n  x\n\n  \n", "a: >+\n  x\n   \n", "a: |2\n   x\n  y\n", "a: |2\n  x\n   y\n", "- |\n\n x\n",
    "a: |\n  x\n# c\nb: 1\n", "a: |+\n  x\n\n  # c\n\nb: 1\n", "a: >2-\n   x\n  y\n", "a: |\n\nb: 1\n", "a: |\n\n",
]


@pytest.mark.parametrize("text", EDGES, ids=range(len(EDGES)))
def test_syntax_corners_read_the_same(text):
    assert_same_reading(text)


@pytest.mark.parametrize("char", [chr(c) for c in range(0x21, 0x7F)] + ["\t", " ", "é"])
def test_every_escape_reads_the_same(char):
    assert_same_reading(f'a: "x\\{char}00e9 y"\n')


@pytest.mark.parametrize("code", [*range(0, 0x20), 0x7F, 0x80, 0x85, 0x9F, 0xA0, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFDD0,
                                  0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF])
def test_every_kind_of_character_reads_the_same(code):
    char = chr(code)
    for text in (f"a: x{char}y\n", f"a: 'x{char}y'\n", f'a: "x{char}y"\n', f"# {char}\na: 1\n", f"a: |\n  x{char}y\n",
                 f"{char}: 1\n", f"a: [x{char}, y]\n", f'a: "\\u{code:04x}"\n' if code < 0x10000 else f'a: "\\U{code:08x}"\n'):
        assert_same_reading(text)


def test_empty_values_are_placed_where_ruamel_places_them():
    # ruamel puts an empty value at whatever follows (the next key, the end of the
    # mapping), or right after the ":" when a comment follows it; libyaml always
    # after the ":". The fast path asks ruamel for these.
    text = "top:\n  a:\n  b: # c\n  c:\n    d:\n    e: 1\n    f:\n  g:\n  - x\n  h:\n"
    [doc] = assert_same_reading(text)
    assert doc.engine == "libyaml"
    assert [doc.locate(("top", "a")), doc.locate(("top", "b")), doc.locate(("top", "c", "f")), doc.locate(("top", "h"))] == [
        (3, 3), (3, 5), (8, 3), (11, 1)
    ]


def test_depth_and_node_limits_are_ruamels():
    for depth in (yamlio.MAX_DEPTH - 2, yamlio.MAX_DEPTH - 1, yamlio.MAX_DEPTH, yamlio.MAX_DEPTH + 1):
        assert_same_reading("a: " + "[" * depth + "]" * depth + "\n")
        assert_same_reading("".join("  " * i + "k:\n" for i in range(depth)) + "  " * depth + "k: v\n")
    items = "".join(f"- {i}\n" for i in range(49))  # with the root: 50 nodes
    assert engines(assert_same_reading(items, max_nodes=50)) == {"libyaml"}
    assert_same_reading(items + "- x\n", max_nodes=50)
    assert_same_reading("a: {b: [1, 2], c: {d: x}}\nb: [3]\n" * 3, max_nodes=12)


# --- generated documents -------------------------------------------------------

Pick = Callable[[Sequence], object]


def scalar_text(pick: Pick, key: bool = False) -> str:
    value = pick(KEYS if key else TRICKY + KEYS)
    style = pick(["plain", "plain", "single", "double"])
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    if style == "double":
        return flow(value)
    return value


def flow_text(pick: Pick, depth: int) -> str:
    if depth > 3 or pick([True, False, False]):
        return scalar_text(pick)
    space, sep = pick(["", " "]), pick([", ", ",", " , ", ",\n   "])
    items = [flow_text(pick, depth + 1) for _ in range(pick([0, 1, 2, 3]))]
    if pick([True, False]):
        return "[" + space + sep.join(items) + pick(["", ","]) * bool(items) + space + "]"
    pairs = [f"{scalar_text(pick, key=True)}{pick([': ', ':', ' : '])}{item}" for item in items]
    return "{" + space + sep.join(pairs) + space + "}"


def end_of_line(pick: Pick, indent: int) -> str:
    return pick(["", "", " # comment", "  #"]) + "\n" + pick(["", "", "\n", " " * indent + "# full line\n", "  \n"])


def block_scalar(pick: Pick, indent: int) -> str:
    header = pick(["|", ">", "|-", ">-", "|+", ">+", "|2", ">1-"])
    step = int(header[1]) if header[1:2].isdigit() else pick([1, 2, 4])
    lines = [pick(FOLDABLE_LINES) for _ in range(pick([0, 1, 2, 3, 4]))]
    body = "".join((" " * (indent + step) + line if line.strip() else line) + "\n" for line in lines)
    return " " + header + pick(["", " # c"]) + "\n" + body


def value_text(pick: Pick, indent: int, depth: int, in_mapping: bool) -> str:
    """What follows "key:" or "- ": a value on the same line, or a block below."""
    kinds = ["scalar", "scalar", "flow", "empty", "block scalar", "multi-line plain"]
    if depth < 4:
        kinds += ["mapping", "mapping", "sequence", "sequence"]
    kind = pick(kinds)
    if kind == "scalar":
        return " " + scalar_text(pick) + end_of_line(pick, indent)
    if kind == "flow":
        return " " + flow_text(pick, 0).replace("\n", "\n" + " " * (indent + 1)) + end_of_line(pick, indent)
    if kind == "empty":
        return end_of_line(pick, indent)
    if kind == "block scalar":
        return block_scalar(pick, indent)
    if kind == "multi-line plain":
        return f" {pick(['one', 'two words', 'no'])}\n{' ' * (indent + 1)}{pick(['more', 'yes', '1'])}\n"
    step = pick([1, 2, 4])
    if kind == "sequence" and in_mapping and pick([True, False]):
        step = 0  # an indentless sequence
    nested = block_text(pick, indent + step, depth + 1, kind)
    if not in_mapping and pick([True, False]):  # "- key: value" on the dash's line
        return " " * (step - 1 if step else 0) + " " + nested.lstrip(" ")
    return end_of_line(pick, indent) + nested


def block_text(pick: Pick, indent: int, depth: int, kind: str) -> str:
    lines = []
    for _ in range(pick([1, 1, 2, 3, 4])):
        if kind == "mapping":
            if pick([True] + [False] * 9):
                entry = f"? {scalar_text(pick, key=True)}\n{' ' * indent}:"
            else:
                entry = f"{scalar_text(pick, key=True)}{pick([':', ' :'])}"
            lines.append(" " * indent + entry + value_text(pick, indent, depth, in_mapping=True))
        else:
            lines.append(" " * indent + "-" + value_text(pick, indent, depth, in_mapping=False))
    return "".join(lines)


def document_text(pick: Pick) -> str:
    documents = []
    for index in range(pick([1, 1, 1, 2, 3])):
        start = pick(["", "---\n", "--- # c\n", "# c\n---\n"]) if index == 0 else "---\n"
        kind = pick(["mapping", "mapping", "sequence", "flow", "scalar", "empty"])
        if kind in ("mapping", "sequence"):
            body = block_text(pick, 0, 0, kind)
        elif kind == "flow":
            body = flow_text(pick, 0) + "\n"
        elif kind == "scalar":
            body = scalar_text(pick) + "\n"
        else:
            body = pick(["", "# only a comment\n"])
        documents.append(start + body)
    return "".join(documents)


def test_the_generator_writes_mostly_valid_ordinary_yaml():
    rng = random.Random(7)
    taken = [engines(assert_same_reading(document_text(rng.choice))) == {"libyaml"} for _ in range(300)]
    assert sum(taken) > 100


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_generated_documents_read_the_same(data):
    text = document_text(lambda options: data.draw(st.sampled_from(options)))
    if data.draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    assert_same_reading(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    "a", "key", ":", ": ", " ", "\n", "\n  ", "- ", "-", "? ", "[", "]", "{", "}", ", ", "# c", " #c", "'", '"', "\\",
    "|", ">-", "|+", "---", "...", "!", "&a ", "*a", "%", "@", "\r\n", "no", "1", "0o17", "~", "<<", "=", "é", "😀",
]), max_size=30))
def test_token_soup_reads_the_same(fragments):
    # Mostly invalid YAML: what libyaml accepts, ruamel must accept the same way.
    assert_same_reading("".join(fragments))
