"""The contract is the one place its knowledge is written, and what it says holds for what is rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract import addons, repository
from renderer.engine import TEMPLATE_DIR
from renderer.profiles import ADDONS

TEMPLATE_KIND = re.compile(r"^apiVersion: (\S+)\s*\nkind: (\w+)", re.MULTILINE)


def rendered_kinds() -> set[tuple[str, str]]:
    return {pair for path in Path(TEMPLATE_DIR).rglob("*.j2") for pair in TEMPLATE_KIND.findall(path.read_text())}


def test_every_custom_kind_a_template_renders_has_its_crd():
    custom = {(api_version, kind) for api_version, kind in rendered_kinds() if addons.is_custom(api_version)}
    assert custom, "the templates render custom resources (Rollout, ScaledObject, ...)"
    missing = [f"{kind} ({api_version})" for api_version, kind in sorted(custom)
               if (api_version.rpartition("/")[0], kind) not in addons.CUSTOM_KIND_CRDS]
    assert missing == [], "add them to contract.addons.CUSTOM_KIND_CRDS"


def test_each_custom_kind_is_served_by_a_crd_of_some_addon():
    installed = {crd for crds in addons.ADDON_CRDS.values() for crd in crds}
    assert set(addons.CUSTOM_KIND_CRDS.values()) <= installed
    for (group, kind), crd in addons.CUSTOM_KIND_CRDS.items():
        assert crd.endswith(f".{group}") and crd.startswith(kind.lower().removesuffix("y"))  # AuthorizationPolicy: -ies


def test_core_kinds_are_not_custom():
    for api_version in ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1",
                        "networking.k8s.io/v1"):
        assert not addons.is_custom(api_version), api_version
    assert addons.is_custom("gateway.networking.k8s.io/v1") and addons.is_custom("argoproj.io/v1alpha1")


def test_profiles_list_the_addons_of_the_table():
    assert set(ADDONS) == set(addons.ADDON_CRDS) - {addons.ARGOCD}
    assert addons.addons_installed({"applications.argoproj.io", "scaledobjects.keda.sh"}) == ["argocd", "keda"]


@pytest.mark.parametrize(("workspace", "app"), [("storefront", "web"), ("a", "b-c"), ("team-1", "x1")])
def test_application_names_and_paths_parse_back(workspace, app):
    assert repository.parse_application_name(repository.application_name(workspace, app)) == (workspace, app)
    assert repository.app_of_application_file(repository.application_file(workspace, app)) == (workspace, app)
    path = f"{repository.app_dir(workspace, app)}/{repository.object_filename('Deployment', app)}"
    assert repository.app_of_manifest_file(path) == (workspace, app, f"deployment-{app}.yaml")
    assert repository.kind_of_filename(path.rpartition("/")[2]) == "deployment"


def test_what_is_not_an_app_does_not_parse_as_one():
    assert repository.application_name("storefront") == "storefront"  # a workspace's Application
    for name in ("storefront", ".web", "storefront.", "a.b.c"):
        assert repository.parse_application_name(name) is None, name
    for path in (repository.workspace_application_file("storefront"), "apps/a/b/c.yaml", "bootstrap/root.yaml"):
        assert repository.app_of_application_file(path) is None, path
    assert repository.app_of_manifest_file(repository.namespace_file("storefront")) is None
