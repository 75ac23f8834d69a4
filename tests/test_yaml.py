"""The one YAML module: user input rules and the canonical output.

These tests go through load_documents whichever path it takes (libyaml for an
ordinary file, ruamel for the rest); tests/test_yaml_parity.py holds the two
paths to the same results.
"""

import time

import pytest
import yaml as pyyaml
from ruamel.yaml import YAML

from contract.errors import SpecError
from renderer.yamlio import load_documents
from renderer.manifest_yaml import dump_manifest, flow, parse_rendered

# Strings that a YAML 1.1 or 1.2 reader would take for something else, or that
# could break out of a scalar in a naive template.
HOSTILE = [
    "no", "yes", "on", "off", "y", "n", "null", "~", "true", "False",
    "0o17", "017", "0x1F", "1e3", "1_000", "+.inf", ".NaN", "12:30:00", "2001-12-14",
    "---", "...", "a\n---\nkind: Secret", "line1\nline2\n", "trailing \n",
    "!!python/object/apply:os.system ['id']", "!custom x", "&anchor", "*alias",
    "{{ values.secret }}", "{% raw %}", "key: value", "- item", "# comment", "@at", "`tick`",
    "\"quoted\"", "'single'", "back\\slash", "tab\there", "\u2028ls\u2029ps\x85nel",
    "\x00nul\x1bescape\x7fdel", "bom\ufeff", "héllo wörld", "日本語", "emoji 😀🚀", "   ", "",
    "x" * 100_000,
]


def both_readers(data: bytes):
    return pyyaml.safe_load(data), YAML(typ="safe", pure=True).load(data)


def test_dump_round_trips_hostile_strings_under_yaml_11_and_12():
    out = dump_manifest({"values": HOSTILE})
    for reader_result in both_readers(out):
        assert reader_result == {"values": HOSTILE}


def test_dump_is_one_document_whatever_the_strings():
    out = dump_manifest({"v": HOSTILE})
    assert len(list(pyyaml.safe_load_all(out))) == 1


def test_flow_values_parse_back_to_the_same_value_in_template_text():
    value = {"list": HOSTILE, "n": 3, "f": 1e20, "b": False, "none": None}
    text = f"a: {flow(value)}\nb: {flow(HOSTILE[20])}\n"
    docs = parse_rendered(text)
    assert docs == [{"a": value, "b": HOSTILE[20]}]


def test_flow_output_is_a_single_line():
    assert "\n" not in flow(HOSTILE)


def test_yaml_12_keeps_no_as_a_string():
    [doc] = load_documents("a: no\nb: yes\nc: on\nd: 0o17\ne: 2001-12-14\n", "f.yaml")
    assert doc.data == {"a": "no", "b": "yes", "c": "on", "d": 15, "e": "2001-12-14"}


def test_duplicate_keys_are_errors_with_position():
    with pytest.raises(SpecError) as err:
        load_documents("a: 1\nb:\n  c: 2\n  c: 3\n", "dup.yaml")
    [problem] = err.value.problems
    assert (problem.file, problem.line, problem.column) == ("dup.yaml", 4, 3)
    assert 'duplicate key "c"' in problem.message


def test_syntax_error_is_located():
    with pytest.raises(SpecError) as err:
        load_documents("a: [1, 2\nb: 3\n", "bad.yaml")
    [problem] = err.value.problems
    assert problem.line >= 1 and problem.message.startswith("invalid YAML")


def test_alias_bomb_is_refused_in_milliseconds():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join(f"*{prev}" for _ in range(10)) + "]")
    bomb = "\n".join(lines) + "\n"
    started = time.perf_counter()
    with pytest.raises(SpecError) as err:
        load_documents(bomb, "bomb.yaml")
    elapsed = time.perf_counter() - started
    assert "alias" in err.value.problems[0].message
    assert elapsed < 2.0  # generous for a shared machine; the walk is of ~100 distinct nodes


def test_small_aliases_are_allowed():
    [doc] = load_documents("base: &b {x: 1}\nother: *b\n", "ok.yaml")
    assert doc.data == {"base": {"x": 1}, "other": {"x": 1}}


def test_size_limit():
    with pytest.raises(SpecError) as err:
        load_documents("a: " + "x" * 2000 + "\n", "big.yaml", max_bytes=1000)
    assert "limit is 1000 bytes" in err.value.problems[0].message


def test_tags_are_refused():
    with pytest.raises(SpecError) as err:
        load_documents("a: !!python/object:os.system x\nb: !custom {y: 1}\n", "tags.yaml")
    messages = [p.message for p in err.value.problems]
    assert len(messages) == 2 and all("tag" in m for m in messages)


def test_str_tag_is_allowed():
    [doc] = load_documents("a: !!str 123\n", "t.yaml")
    assert doc.data == {"a": "123"}


def test_non_string_keys_are_refused():
    with pytest.raises(SpecError) as err:
        load_documents("1: x\n", "k.yaml")
    assert "keys must be strings" in err.value.problems[0].message


def test_invalid_utf8_is_located():
    with pytest.raises(SpecError) as err:
        load_documents(b"a: ok\nb: \xff\xfe\n", "u.yaml")
    problem = err.value.problems[0]
    assert (problem.line, problem.column) == (2, 4)


def test_several_documents_keep_their_positions():
    docs = load_documents("a: 1\n---\n# comment\nname: x\nimage:\n  uri: 3\n", "m.yaml")
    assert [d.index for d in docs] == [0, 1]
    assert docs[1].locate(("image", "uri")) == (6, 8)
    assert docs[1].locate(("image", "uri"), key=True) == (6, 3)
    assert docs[1].locate(("image", "missing")) == (6, 3)


def test_deep_nesting_is_refused_not_crashing():
    text = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(SpecError):
        load_documents(text, "deep.yaml")


@pytest.mark.parametrize("text,shown", [
    ("a: !!set {x, y}\n", "!!set"),
    ("a: !!binary aGVsbG8=\n", "!!binary"),
    ("a: !!omap [{x: 1}]\n", "!!omap"),
    ("a: !!python/name:os.system x\n", "!!python/name:os.system"),
])
def test_tags_are_named_as_written(text, shown):
    with pytest.raises(SpecError) as err:
        load_documents(text, "t.yaml")
    assert err.value.problems[0].message == f"YAML tag {shown} is not allowed; remove it"


def test_syntax_errors_say_where_the_construct_started():
    with pytest.raises(SpecError) as err:
        load_documents('a: "never closed\n\nb: 1\n', "q.yaml")
    assert "line 1, column 4" in err.value.problems[0].message


@pytest.mark.parametrize("text, line", [("a: 0x_\n", 1), ("b: 1\na: ._\n", 2), ("a: " + "1" * 5000 + "\n", 1)])
def test_a_number_yaml_cannot_read_is_a_problem_at_its_position(text, line):
    with pytest.raises(SpecError) as caught:
        load_documents(text, "n.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.column) == ("n.yaml", line, 4)
    assert "cannot be read as a number; quote it" in problem.message


@pytest.mark.parametrize("text", ["? : {}\n", "? : [a]\n", "a:\n  ? : {b: 1}\n"])
def test_a_key_ruamel_cannot_hold_is_a_spec_problem_not_a_crash(text):
    with pytest.raises(SpecError) as refused:
        load_documents(text, "odd.yaml")
    assert "keys must be strings" in str(refused.value) and refused.value.problems[0].file == "odd.yaml"
