"""Spec kinds are a registry: each kind renders through its own renderer, and
a kind the renderer does not know is refused, never rendered as another kind.

Also: the CRD schema directory is an input of the renderer, so the same call
validates the same way whatever the process environment says.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from contract.errors import RenderError, SpecError
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.render import KIND_RENDERERS, render

ROOT = Path(__file__).resolve().parent.parent
SPEC_TYPES = json.loads((ROOT / "schemas" / "deploy-spec.schema.json").read_text())["properties"]["type"]["enum"]


def test_the_registry_holds_exactly_the_kinds_the_spec_schema_allows():
    assert sorted(KIND_RENDERERS) == sorted(SPEC_TYPES)


def test_the_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        KIND_RENDERERS["cronjob"] = KIND_RENDERERS["job"]  # type: ignore[index]


@pytest.mark.parametrize(("source", "workload", "not_rendered"), [
    ("canary.yaml", "Rollout", "WorkflowTemplate"),
    ("job-manual.yaml", "WorkflowTemplate", "Rollout"),
])
def test_each_kind_renders_through_its_own_renderer(cluster, specs_for, source, workload, not_rendered):
    profile = cluster("demo")
    [spec] = specs_for(profile, source)
    kinds = [obj["kind"] for obj in render(spec, profile).objects]
    assert workload in kinds and not_rendered not in kinds, kinds


def test_an_unknown_kind_is_refused_naming_it_and_the_known_kinds(cluster, specs_for):
    profile = cluster("demo")
    [job] = specs_for(profile, "job-manual.yaml")
    stranger = dataclasses.replace(job, kind="daemon")
    with pytest.raises(SpecError) as caught:
        render(stranger, profile)
    [problem] = caught.value.problems
    assert '"daemon"' in problem.message
    assert all(kind in problem.message for kind in KIND_RENDERERS)
    assert problem.path == "/type"


# --- the CRD schema directory is an input --------------------------------------------------


def _rollout(cluster, specs_for, schemas: KubeSchemas) -> dict:
    profile = cluster("demo")
    [spec] = specs_for(profile, "canary.yaml")
    return next(o for o in render(spec, profile, schemas).objects if o["kind"] == "Rollout")


def test_without_crd_schemas_custom_resources_pass_unchecked(cluster, specs_for, monkeypatch, tmp_path):
    # Whatever the environment names, the renderer uses only the schemas it is handed.
    monkeypatch.setenv("SHIPYARD_CRD_SCHEMAS", str(tmp_path))
    rollout = _rollout(cluster, specs_for, CORE_ONLY)
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
    assert CORE_ONLY.validate(rollout, "1.33") is False
    assert not CORE_ONLY.checks_custom_resources


def test_handed_crd_schemas_are_used_even_when_the_environment_names_none(cluster, specs_for, crd_schemas, monkeypatch):
    monkeypatch.delenv("SHIPYARD_CRD_SCHEMAS")
    rollout = _rollout(cluster, specs_for, crd_schemas)
    assert crd_schemas.validate(rollout, "1.33") is True
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
    with pytest.raises(RenderError, match="Rollout/"):
        crd_schemas.validate(rollout, "1.33")


def test_a_schema_setting_that_is_empty_means_core_kinds_only(tmp_path):
    assert KubeSchemas.from_setting(None) == CORE_ONLY
    assert KubeSchemas.from_setting("") == CORE_ONLY
    assert KubeSchemas.from_setting(str(tmp_path)).checks_custom_resources
    assert not KubeSchemas.from_setting(str(tmp_path / "absent")).checks_custom_resources
