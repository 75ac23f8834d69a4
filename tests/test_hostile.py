"""Hostile values go in as strings and come out as the same strings, adding no documents."""

import pytest
import yaml as pyyaml
from ruamel.yaml import YAML

from renderer.profiles import load_profile
from renderer.render import render, render_template
from contract.errors import RenderError
from renderer.spec import load_specs
from renderer.manifest_yaml import dump_all, dump_manifest, flow

from tests.test_tfy_job_fields import started
from tests.test_yaml import HOSTILE

PROFILE = "fixtures/clusters/demo.yaml"


def hostile_spec() -> str:
    env = {f"V{i}": value for i, value in enumerate(HOSTILE)}
    spec = {
        "type": "job",
        "name": "hostile",
        "workspace_fqn": "demo:attack",
        # the image reference has a grammar of its own (renderer.spec), which no hostile value passes
        "image": {"type": "image", "image_uri": "ghcr.io/acme/x:1---", "command": list(HOSTILE[:30])},
        "env": env,
        # a default Argo would read as a tag is refused (tests/test_tfy_job_fields.py); this one is only hostile YAML
        "params": [{"name": "p", "default": "p\n---\nkind: Secret", "description": "\n---\n"}],
    }
    # A flow node is YAML: the spec carries every character exactly, escaped where YAML needs it.
    return flow(spec)


@pytest.fixture(scope="module")
def rendering():
    profile = load_profile(PROFILE)
    [spec] = load_specs(hostile_spec(), "hostile.json")
    return render(spec, profile)


def test_values_survive_rendering_unchanged(rendering):
    """What the job's process gets, after Argo's substitutions and the kubelet's: what the spec says (text Argo
    would read as a tag travels in a ConfigMap, renderer.job)."""
    [workflow] = [o for o in rendering.objects if o["kind"] == "WorkflowTemplate"]
    argv, env = started(rendering)
    assert {name: value for name, value in env.items() if name.startswith("V")} == {
        f"V{i}": value for i, value in enumerate(HOSTILE)}
    assert argv == list(HOSTILE[:30])
    assert workflow["spec"]["templates"][0]["container"]["image"] == "ghcr.io/acme/x:1---"
    assert workflow["spec"]["arguments"]["parameters"][0]["value"] == "p\n---\nkind: Secret"


def test_committed_bytes_hold_exactly_the_objects(rendering):
    stream = dump_all(rendering.objects + [rendering.application])
    for loaded in (list(pyyaml.safe_load_all(stream)), list(YAML(typ="safe", pure=True).load_all(stream))):
        assert loaded == rendering.objects + [rendering.application]
    for name, data in rendering.files.items():
        docs = list(pyyaml.safe_load_all(data))
        assert len(docs) == 1 and docs[0]["metadata"]["name"] in name


def test_rendering_is_deterministic(rendering):
    profile = load_profile(PROFILE)
    [spec] = load_specs(hostile_spec(), "hostile.json")
    again = render(spec, profile)
    assert again.files == rendering.files
    assert dump_manifest(again.application) == rendering.application_bytes


def test_template_printing_a_raw_value_is_refused(tmp_path, monkeypatch):
    # The finalize guard: a template that forgets the serializing filter fails loudly.
    import renderer.engine as engine

    (tmp_path / "bad.yaml.j2").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ name }}\n")
    env = engine.environment.__wrapped__(str(tmp_path))
    monkeypatch.setattr(engine, "environment", lambda: env)
    with pytest.raises(RenderError, match="raw value"):
        render_template("bad.yaml.j2", {"name": "x\n---\nkind: Secret"}, "1.33")


def test_templates_never_bypass_the_filter():
    from pathlib import Path

    for template in Path("templates").rglob("*.j2"):
        text = template.read_text()
        assert "|safe" not in text.replace(" ", ""), template
        assert "Markup" not in text, template


def test_thousands_of_nested_brackets_are_refused_at_once_with_a_position():
    from contract.errors import SpecError
    from renderer.spec import load_specs

    with pytest.raises(SpecError) as caught:
        load_specs("spec: " + "[" * 100_000 + "]" * 100_000, "deep.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("deep.yaml", 1) and problem.column > 1
    assert "nested too deeply" in problem.message


def test_brackets_in_strings_and_comments_do_not_count_as_nesting():
    from renderer.spec import load_specs

    text = ("type: service\nname: web\nworkspace_fqn: demo:shop\n"
            "image: {type: image, image_uri: 'ghcr.io/acme/web:1'}\n"
            "# " + "[" * 1000 + "\n"
            "env: {A: '" + "[" * 1000 + "', B: \"" + "{" * 1000 + "\"}\n")
    (spec,) = load_specs(text)
    assert spec.body["env"]["A"] == "[" * 1000 and spec.body["env"]["B"] == "{" * 1000
