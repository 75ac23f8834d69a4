"""A spec asks only for what a registry and Kubernetes can hold: image references and quantities.

Image references are held to docker/distribution's reference grammar (the cases below are
its own test table's, reference_test.go), digests to what go-digest verifies. CPU is held in
whole millicores from 1m to 1024 cores: below a millicore it would render as ``cpu: '0'``,
between two it would be rounded behind the user's back, so both are refused; memory,
ephemeral storage and GPU counts are whole numbers within bounds Kubernetes holds, and
render as such even when YAML or JSON spelled them as floats.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.errors import SpecError
from renderer.profiles import load_profile
from renderer.render import render
from renderer.spec import load_specs

PROFILE = load_profile("fixtures/clusters/demo.yaml")
F64 = "f" * 64


def job(image: str = "ghcr.io/acme/etl:1", extra: str = "") -> str:
    return f"type: job\nname: etl\nworkspace_fqn: demo:data\nimage: {{type: image, image_uri: {json.dumps(image)}}}\n{extra}"


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_specs(text, "spec.yaml")
    return [str(p) for p in caught.value.problems]


def container(text: str) -> dict:
    (spec,) = load_specs(text, "spec.yaml")
    objects = render(spec, PROFILE).objects
    (workload,) = [o for o in objects if o["kind"] in ("WorkflowTemplate", "Deployment", "Rollout")]
    if workload["kind"] == "WorkflowTemplate":
        return workload["spec"]["templates"][0]["container"]
    return workload["spec"]["template"]["spec"]["containers"][0]


# --- image references ---------------------------------------------------------------------------

VALID_REFERENCES = [
    "nginx", "test_com", "test.com:tag", "test.com:5000", "test.com/repo:tag", "test:5000/repo", "test:5000/repo:tag",
    f"test:5000/repo@sha256:{F64}", f"test:5000/repo:tag@sha256:{F64}", "lowercase:Uppercase",
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag", "b.gcr.io/test.example.com/my-app:test.example.com",
    "xn--n3h.com/myimage:xn--n3h.com", f"xn--7o8h.com/myimage:xn--7o8h.com@sha512:{'f' * 128}", "foo_bar.com:8080",
    "foo/foo_bar.com:8080", "[2001:db8::1]:5000/repo", "[2001:db8::1]/repo", "[2001:db8:1:2:3:4:5:6]/repo:tag",
    "a__b/c--d/e.f", "localhost:5000/foo/bar:" + "t" * 128, "a" * 255, f"ghcr.io/acme/api@sha384:{'0' * 96}",
]

INVALID_REFERENCES = {
    "ghcr.io/acme/api\0:1.0": "is not allowed",  # the NUL
    ":justtag": "is not allowed",
    f"@sha256:{F64}": "is not allowed",
    "Uppercase:tag": "is not allowed",
    "test:5000/Uppercase/lowercase:tag": "is not allowed",
    "aa/asdf$$^/aa": "is not allowed",
    "[2001:db8::1]": "is not allowed",
    "[fe80::1%eth0]:5000/repo": "is not allowed",
    "a_-b": "is not allowed",
    "a..b": "is not allowed",
    "a//b": "is not allowed",
    "a:": "is not allowed",
    "foo:bar:baz": "is not allowed",
    "ghcr.io/acme/api 1.0": "is not allowed",
    "a:-tag": "is not allowed",
    "a:" + "t" * 129: "is not allowed",
    "a" * 256: "registries accept at most 255",
    "registry.example.com:5000/" + "x" * 250 + ":1.0": "is 276 characters long",
    "repo@sha256:" + "f" * 63: "sha256 image digest is 64 lowercase hex digits",
    f"repo@sha256:{F64.upper()}": "sha256 image digest is 64 lowercase hex digits",
    f"validname@invaliddigest:{F64}": 'algorithm "invaliddigest" is not one registries verify',
}


@pytest.mark.parametrize("reference", VALID_REFERENCES)
def test_references_of_the_distribution_grammar_are_accepted_and_rendered_as_written(reference):
    assert container(job(reference))["image"] == reference


@pytest.mark.parametrize("reference", INVALID_REFERENCES)
def test_references_outside_the_grammar_are_refused_at_the_image_uri(reference):
    (problem,) = problems(job(reference))
    assert problem.startswith("spec.yaml:4:33: ") and INVALID_REFERENCES[reference] in problem, problem
    assert problem.endswith("(at /image/image_uri)")


def test_a_nul_is_shown_escaped_never_raw():
    (problem,) = problems(job("ghcr.io/acme/api\0:1.0"))
    assert "\0" not in problem and '"ghcr.io/acme/api\\u0000:1.0"' in problem


# --- CPU ------------------------------------------------------------------------------------------


def test_cpu_below_a_millicore_is_refused_not_rendered_as_zero():
    (problem,) = problems(job(extra="resources: {cpu_request: 1e-300}\n"))
    assert '"cpu_request" must be at least 0.001, not 1e-300' in problem and "millicores" in problem
    assert container(job(extra="resources: {cpu_request: 0.001}\n"))["resources"]["requests"]["cpu"] == "1m"


def test_cpu_finer_than_a_millicore_is_refused_naming_both_neighbours():
    (problem,) = problems(job(extra="resources: {cpu_request: 0.2505, cpu_limit: 1}\n"))
    assert problem.startswith("spec.yaml:5:26: ")
    assert '"cpu_request" 0.2505 is finer than a millicore (0.001)' in problem and "use 0.25 or 0.251" in problem


@pytest.mark.parametrize("cores, quantity", [(0.3, "300m"), (1.1, "1100m"), (0.1 + 0.2, None), (2, "2"), (1024, "1024")])
def test_whole_millicores_render_exactly_whatever_the_float_noise(cores, quantity):
    text = job(extra=f"resources: {{cpu_request: {cores!r}, cpu_limit: 1024}}\n")
    if quantity is None:  # 0.30000000000000004 is finer than a millicore, and says so
        assert "use 0.3 or 0.301" in problems(text)[0]
        return
    assert container(text)["resources"]["requests"]["cpu"] == quantity


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=2000, allow_nan=False))
def test_any_accepted_cpu_renders_as_the_same_nonzero_millicores(cores):
    text = job(extra=f"resources: {{cpu_request: {cores!r}, cpu_limit: 1024}}\n")
    try:
        (spec,) = load_specs(text, "spec.yaml")
    except SpecError:
        assert cores < 0.001 or cores > 1024 or (Decimal(repr(cores)) * 1000) % 1 != 0
        return
    rendered = container(text)["resources"]["requests"]["cpu"]
    millicores = int(rendered[:-1]) if rendered.endswith("m") else int(rendered) * 1000
    assert millicores > 0 and Decimal(millicores) == Decimal(repr(cores)) * 1000


def test_cpu_beyond_any_node_is_refused():
    (problem,) = problems(job(extra="resources: {cpu_limit: 1e300}\n"))
    assert '"cpu_limit" must be at most 1024, not 1e+300' in problem


# --- memory, ephemeral storage, GPUs, target rates -------------------------------------------------


def test_whole_numbers_spelled_as_floats_render_as_whole_quantities():
    resources = container(job(extra="resources: {memory_request: 1e3, memory_limit: 2048.0, "
                                    "ephemeral_storage_limit: 4e3, devices: [{type: nvidia_gpu, count: 2.0}]}\n"))
    assert resources["resources"]["requests"]["memory"] == "1000Mi"
    assert resources["resources"]["limits"]["memory"] == "2048Mi"
    assert resources["resources"]["limits"]["ephemeral-storage"] == "4000Mi"
    assert resources["resources"]["limits"]["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize("field, value, words", [
    ("memory_limit", "1e15", "must be at most 4194304"),
    ("memory_request", "2.5", "must be a whole number"),
    ("ephemeral_storage_limit", "9223372036854775807", "must be at most 104857600"),
    ("memory_limit", "-1", "must be at least 1"),
])
def test_memory_and_storage_stay_within_what_kubernetes_holds(field, value, words):
    (problem,) = problems(job(extra=f"resources: {{{field}: {value}}}\n"))
    assert words in problem and "mebibytes" in problem, problem


def service_with_rps(value: str) -> str:
    return ("type: service\nname: api\nworkspace_fqn: demo:shop\nimage: {type: image, image_uri: ghcr.io/acme/api:1}\n"
            f"replicas: {{min_replicas: 1, max_replicas: 3, metrics: {{type: rps, value: {value}}}}}\n")


def test_target_rates_are_whole_thousandths_within_bounds():
    assert '"value" must be at least 0.001, not 1e-09' in problems(service_with_rps("1e-9"))[0]
    assert "must be at most 1000000" in problems(service_with_rps("1e300"))[0]
    assert "use 2 or 2.001" in problems(service_with_rps("2.0005"))[0]
    (spec,) = load_specs(service_with_rps("0.5"), "spec.yaml")
    (scaler,) = [o for o in render(spec, PROFILE).objects if o["kind"] == "ScaledObject"]
    assert scaler["spec"]["triggers"][0]["metadata"]["threshold"] == "0.5"
