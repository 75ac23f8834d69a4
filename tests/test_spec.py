"""Spec loading: every problem of a file at once, located, in a user's words."""

import pytest

from contract.errors import SpecError
from renderer.spec import SecretRef, load_specs, parse_secret_ref

GOOD = """\
type: service
name: api
workspace_fqn: demo:team-a
image:
  type: image
  image_uri: ghcr.io/acme/api:1.0
"""


def problems_of(text: str):
    with pytest.raises(SpecError) as err:
        load_specs(text, "spec.yaml")
    return err.value.problems


def test_valid_spec_loads():
    [spec] = load_specs(GOOD, "spec.yaml")
    assert (spec.kind, spec.name, spec.cluster, spec.workspace) == ("service", "api", "demo", "team-a")
    assert spec.digest.startswith("sha256:") and len(spec.digest) == 71


def test_digest_ignores_key_order_and_formatting():
    reordered = "name: api\ntype: service\nimage: {image_uri: 'ghcr.io/acme/api:1.0', type: image}\nworkspace_fqn: demo:team-a\n"
    assert load_specs(GOOD)[0].digest == load_specs(reordered)[0].digest
    changed = GOOD.replace("1.0", "1.1")
    assert load_specs(GOOD)[0].digest != load_specs(changed)[0].digest


def test_unknown_field_suggests_the_close_one_at_the_key():
    [p] = problems_of(GOOD + "replcas: 3\n")
    assert p.message == 'unknown field "replcas"; did you mean "replicas"?'
    assert (p.line, p.column, p.path) == (7, 1, "/replcas")


def test_unknown_nested_field_is_located():
    [p] = problems_of(GOOD.replace("  image_uri:", "  image_url:"))
    assert 'did you mean "image_uri"' in p.message
    assert (p.line, p.column) == (6, 3)


def test_every_problem_is_reported_at_once():
    text = GOOD.replace("name: api", "name: API") + "replicas: lots\nports:\n  - port: 70000\n"
    problems = problems_of(text)
    assert [(p.line, p.path) for p in problems] == [(2, "/name"), (7, "/replicas"), (9, "/ports/0/port")]
    assert "lowercase" in problems[0].message
    assert "must be a whole number or a mapping" in problems[1].message
    assert "at most 65535" in problems[2].message


def test_missing_required_field():
    problems = problems_of("type: service\nname: api\nworkspace_fqn: demo:a\n")
    assert any(p.message == 'missing required field "image"' for p in problems)


def test_enum_with_suggestion():
    text = GOOD + "ports:\n  - port: 80\n    app_protocol: htttp\n"
    [p] = problems_of(text)
    assert 'did you mean "http"' in p.message
    assert (p.line, p.column) == (9, 19)


def test_wrong_kind_suggests():
    [p] = problems_of(GOOD.replace("type: service", "type: servce"))
    assert 'did you mean "service"' in p.message


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".", "UPPER", "-lead", "trail-", "a" * 51, "with space", "dot.ted", ""])
def test_names_that_are_not_kubernetes_names_or_escape_directories_are_refused(name):
    problems = problems_of(GOOD.replace("name: api", f"name: '{name}'"))
    assert any(p.path == "/name" for p in problems)


@pytest.mark.parametrize("fqn", ["demo", "demo:../x", "demo:a/b", ":a", "demo:", "Demo:a", "demo:a:b"])
def test_workspace_fqn_must_be_cluster_and_workspace(fqn):
    problems = problems_of(GOOD.replace("workspace_fqn: demo:team-a", f"workspace_fqn: '{fqn}'"))
    assert any(p.path == "/workspace_fqn" for p in problems)


def test_build_images_are_recognised_and_refused():
    text = GOOD.replace("  image_uri: ghcr.io/acme/api:1.0\n", "  build_source: {type: git}\n").replace("type: image", "type: build")
    [p] = problems_of(text)
    assert "not supported yet" in p.message and p.path == "/image/type"


def test_malformed_secret_reference_is_an_error_not_a_value():
    [p] = problems_of(GOOD + "env:\n  DB: secret://only-a-path\n")
    assert "malformed secret reference" in p.message and (p.line, p.column) == (8, 7)


def test_secret_reference_syntaxes():
    assert parse_secret_ref("secret://payments/db#password") == SecretRef("payments/db", "password")
    assert parse_secret_ref("tfy-secret://acme:payments:password") == SecretRef("acme/payments", "password")
    assert parse_secret_ref("plain value") is None
    assert parse_secret_ref(3) is None
    with pytest.raises(ValueError):
        parse_secret_ref("secret://a#b#c")


def test_semantic_checks():
    text = GOOD + (
        "replicas: {min_replicas: 5, max_replicas: 2}\n"
        "resources: {cpu_request: 2, cpu_limit: 1}\n"
        "ports:\n  - {port: 80}\n  - {port: 80}\n"
    )
    messages = [p.message for p in problems_of(text)]
    assert any("min_replicas (5) is above max_replicas (2)" in m for m in messages)
    assert any("cpu_request (2) is above cpu_limit (1)" in m for m in messages)
    assert any("port 80 is listed twice" in m for m in messages)


def test_reserved_labels_are_refused():
    [p] = problems_of(GOOD + "labels:\n  app.kubernetes.io/managed-by: me\n")
    assert "set by Shipyard" in p.message


def test_duplicate_apps_in_one_file():
    problems = problems_of(GOOD + "---\n" + GOOD)
    assert len(problems) == 1 and "also defined at spec.yaml:1" in problems[0].message
    assert problems[0].line == 9


def test_several_specs_per_file():
    other = GOOD.replace("name: api", "name: worker")
    specs = load_specs(GOOD + "---\n" + other)
    assert [s.name for s in specs] == ["api", "worker"]


def test_document_that_is_not_a_mapping():
    [p] = problems_of("- just\n- a list\n")
    assert "must be a mapping" in p.message


def test_empty_file():
    [p] = problems_of("# nothing here\n")
    assert "no deploy spec" in p.message


@pytest.mark.parametrize("workspace", ["default", "kube-system", "kube-public"])
def test_kubernetes_system_namespaces_are_not_workspaces(workspace):
    [p] = problems_of(GOOD.replace("demo:team-a", f"demo:{workspace}"))
    assert "system namespace" in p.message and p.path == "/workspace_fqn"


def test_workspace_names_are_at_most_63_characters():
    problems = problems_of(GOOD.replace("demo:team-a", "demo:" + "w" * 64))
    assert [p.path for p in problems] == ["/workspace_fqn"]


def test_env_key_problems_name_and_locate_the_key():
    problems = problems_of(GOOD + "env:\n  OK: 1\n  2FA: x\n")
    assert [(p.line, p.column, p.path) for p in problems] == [(9, 3, "/env/2FA")]
    assert problems[0].message.startswith('key "2FA" is not allowed')


def test_each_unknown_field_is_its_own_problem():
    problems = problems_of(GOOD + "foo: 1\nbar: 2\n")
    assert [(p.line, p.path) for p in problems] == [(7, "/foo"), (8, "/bar")]


def test_scheduled_job_params_need_defaults():
    job = (
        "type: job\nname: nightly\nworkspace_fqn: demo:a\nimage: {type: image, image_uri: x}\n"
        "trigger: {type: scheduled, schedule: '0 3 * * *'}\nparams:\n  - name: day\n"
    )
    [p] = problems_of(job)
    assert 'param "day" needs a default' in p.message and (p.line, p.path) == (7, "/params/0")
