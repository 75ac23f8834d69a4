"""Addon releases: what a profile says a cluster runs, what Shipyard renders for it, what the agent finds.

A profile may name each addon's release (``addons.<name>.version``): below
Argo Workflows 3.6 a CronWorkflow gets ``schedule`` (3.6 deprecates it for
``schedules``), below External Secrets Operator 0.16 an ExternalSecret is
``external-secrets.io/v1beta1`` (0.16 adds v1, 0.17 stops serving v1beta1); a
release older than Shipyard renders for at all is refused at its version. The
agent reports what the cluster tells: the API versions its addons' groups serve
(discovery) and a release where the CRDs are labelled with one; a deploy the
cluster cannot serve is refused naming the profile field, and an agent that
sends none of it is checked as before. Control-plane tests run on SQLite and
PostgreSQL through the real agent endpoints.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from agent.main import Agent
from agent.report import Outbox, Reporter, Tracker
from contract.errors import ProfileError
from contract.protocol import Heartbeat
from gitops.models import Version
from renderer.bootstrap import render_agent
from renderer.profiles import load_profile_text
from tests import fakekube
from tests.fakekube import FakeKube
from tests.plane import PROFILE, deploy_yaml, service_spec
from tests.test_agent_watch import make_settings
from tests.test_status import API, agent_headers, client, plane_app, served, world  # noqa: F401 - fixtures

SCHEDULED_JOB = "job-scheduled.yaml"
WITH_SECRET = "env: {DB_PASSWORD: 'secret://storefront/db#password'}\n"


def profile_with(addon_lines: str) -> str:
    """The demo profile with its addons replaced by ``addon_lines``."""
    head = PROFILE.split("addons:\n", 1)[0]
    return f"{head}addons:\n{addon_lines}"


def problems_of(text: str) -> list:
    with pytest.raises(ProfileError) as refused:
        load_profile_text(text.encode())
    return refused.value.problems


def one(rendering, kind: str) -> dict:
    (obj,) = [o for o in rendering.objects if o["kind"] == kind]
    return obj


# --- the profile ---------------------------------------------------------------------------------


def test_a_profile_names_addon_releases_and_no_release_means_the_current_line():
    profile = load_profile_text(profile_with(
        "  argo_workflows: {version: '3.5.8'}\n  argo_rollouts: true\n"
        "  external_secrets: {store: vault, version: 'v0.16'}\n  keda: {version: '2.17'}\n").encode())
    assert profile.addon_version("argo_workflows") == (3, 5, 8)
    assert profile.addon_version("external_secrets") == (0, 16)
    assert profile.addon_version("keda") == (2, 17)
    assert profile.addon_version("argo_rollouts") is None  # listed without a release
    assert profile.addon_version("istio") is None  # not listed at all
    assert profile.addon_api == {"cronworkflow_schedule_field": "schedule",
                                 "externalsecret_api_version": "external-secrets.io/v1"}


@pytest.mark.parametrize(("value", "says"), [
    ("3.10", '"version" must be a string, not 3.1 (a number); write the release as a quoted string'),
    ("'latest'", '"version" value "latest" (a string) is not allowed: write the release as a quoted string'),
    ("'3'", 'is not allowed: write the release as a quoted string such as "3.6"'),
])
def test_a_version_that_is_not_a_release_is_refused_with_a_hint(value, says):
    text = profile_with(f"  argo_workflows:\n    version: {value}\n")
    (problem,) = problems_of(text)
    assert says in problem.message
    line = text.splitlines().index(f"    version: {value}") + 1
    assert (problem.path, problem.line, problem.column) == ("/addons/argo_workflows/version", line, 14)


@pytest.mark.parametrize(("addon", "older", "oldest"), [
    ("argo_workflows: {version: '%s'}", "3.2.9", "Argo Workflows 3.3"),
    ("external_secrets: {store: vault, version: '%s'}", "0.4", "External Secrets Operator 0.5"),
    ("istio: {gateway: istio-system/public, version: '%s'}", "1.21.6", "Istio 1.22"),
    ("gateway_api: {gateway: gateway-system/public, version: '%s'}", "v0.8.1", "Gateway API 1.0"),
    ("keda: {version: '%s'}", "2.6", "KEDA 2.7"),
    ("prometheus_operator: {version: '%s'}", "0.11", "Prometheus Operator 0.12"),
])
def test_a_release_older_than_shipyard_renders_for_is_refused_at_its_version(addon, older, oldest):
    (problem,) = problems_of(profile_with(f"  {addon % older}\n"))
    name = addon.split(":", 1)[0]
    assert problem.path == f"/addons/{name}/version"
    assert problem.message.startswith(f"Shipyard renders for {oldest} and later, not {older}: ")
    assert "upgrade" in problem.message
    oldest_release = oldest.rsplit(" ", 1)[1]
    assert load_profile_text(profile_with(f"  {addon % oldest_release}\n").encode()).has(name)


# --- what is rendered ----------------------------------------------------------------------------


def test_a_cron_workflow_schedules_as_its_argo_workflows_release_takes_it(cluster, rendered):
    # rendered() validates each object against the CRD schemas where SHIPYARD_CRD_SCHEMAS names them
    aks = cluster("aks")  # Argo Workflows 3.5.8
    assert aks.addon_version("argo_workflows") == (3, 5, 8)
    before = one(rendered(aks, SCHEDULED_JOB), "CronWorkflow")["spec"]
    assert before["schedule"] == "30 2 * * *" and "schedules" not in before

    for version in (None, "3.6", "3.7.1"):
        addons = {**aks.addons, "argo_workflows": {} if version is None else {"version": version}}
        spec = one(rendered(dataclasses.replace(aks, addons=addons), SCHEDULED_JOB), "CronWorkflow")["spec"]
        assert spec["schedules"] == ["30 2 * * *"] and "schedule" not in spec, version
        assert {k: v for k, v in spec.items() if k != "schedules"} == {
            k: v for k, v in before.items() if k != "schedule"}


def test_an_external_secret_is_of_the_api_version_its_operator_serves(cluster, rendered, specs_for):
    aks = cluster("aks")  # External Secrets Operator 0.15.1
    spec = service_spec("web", cluster=aks.name, extra=WITH_SECRET)
    before = one(rendered(aks, spec), "ExternalSecret")
    assert before["apiVersion"] == "external-secrets.io/v1beta1"
    for version in (None, "0.16", "v1.2.0"):
        store = {key: value for key, value in aks.addon("external_secrets").items() if key != "version"}
        addons = {**aks.addons, "external_secrets": store if version is None else {**store, "version": version}}
        after = one(rendered(dataclasses.replace(aks, addons=addons), spec), "ExternalSecret")
        assert after["apiVersion"] == "external-secrets.io/v1", version
        assert {**after, "apiVersion": None} == {**before, "apiVersion": None}  # the same fields in both


def test_the_agent_token_external_secret_follows_the_release_too(cluster):
    eks = cluster("eks")
    assert render_agent(eks, ["shop"])["agent/02-externalsecret.yaml"]["apiVersion"] == "external-secrets.io/v1"
    old = dataclasses.replace(eks, addons={**eks.addons, "external_secrets": {
        **eks.addon("external_secrets"), "version": "0.15"}})
    assert render_agent(old, ["shop"])["agent/02-externalsecret.yaml"]["apiVersion"] == "external-secrets.io/v1beta1"


# --- what the agent finds ------------------------------------------------------------------------


def crd(name: str, versions: dict[str, bool], labels: dict | None = None, annotations: dict | None = None) -> dict:
    plural, group = name.split(".", 1)
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"group": group, "names": {"plural": plural}, "scope": "Namespaced",
                     "versions": [{"name": v, "served": serving, "storage": i == 0}
                                  for i, (v, serving) in enumerate(versions.items())]}}


@pytest.fixture
def discovering(monkeypatch):
    """FakeKube whose discovery (GET /apis) lists the groups of its CRDs with the versions they serve, as
    the API server does; its own answer lists only the groups it has built in."""
    built_in = fakekube._Handler._discovery

    def discovery(handler) -> dict:
        if handler._path != "/apis":
            return built_in(handler)
        by_group = defaultdict(set)
        for resource in fakekube.RESOURCES:
            if resource.group:
                by_group[resource.group].add(resource.version)
        for item in handler.kube.items("customresourcedefinitions"):
            for version in item["spec"]["versions"]:
                if version["served"]:
                    by_group[item["spec"]["group"]].add(version["name"])
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in sorted(versions)]}
            for group, versions in sorted(by_group.items())]}

    monkeypatch.setattr(fakekube._Handler, "_discovery", discovery)


def eso_cluster(kube: FakeKube, eso_versions: dict[str, bool]) -> None:
    kube.create("customresourcedefinitions", crd("applications.argoproj.io", {"v1alpha1": True}))
    kube.create("customresourcedefinitions", crd(
        "externalsecrets.external-secrets.io", eso_versions,
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 200_000}))


def test_the_agent_reports_served_api_versions_and_labelled_releases(discovering):
    with FakeKube(crds=()) as kube:
        eso_cluster(kube, {"v1": True, "v1beta1": False})
        kube.create("customresourcedefinitions", crd("scaledobjects.keda.sh", {"v1alpha1": True},
                                                     labels={"app.kubernetes.io/version": "2.17.0"}))
        kube.create("customresourcedefinitions", crd(
            "httproutes.gateway.networking.k8s.io", {"v1": True, "v1beta1": True},
            annotations={"gateway.networking.k8s.io/bundle-version": "v1.2.1"}))
        kube.create("customresourcedefinitions", crd("certificates.cert-manager.io", {"v1": True},
                                                     labels={"app.kubernetes.io/version": "v1.15.0"}))
        agent = Agent(make_settings(kube))
        try:
            beat = agent.heartbeat_message()
        finally:
            agent.stop()
    assert beat.addon_versions == {
        "argocd": {"api_versions": ["argoproj.io/v1alpha1"]},
        "external_secrets": {"api_versions": ["external-secrets.io/v1"]},  # v1beta1 is no longer served
        "gateway_api": {"api_versions": ["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"],
                        "release": "v1.2.1"},
        "keda": {"api_versions": ["keda.sh/v1alpha1"], "release": "2.17.0"},
    }
    assert "certificates.cert-manager.io" in beat.crds  # listed, but it is no addon of Shipyard's
    assert "xxxx" not in repr(agent.facts)  # nothing of a CRD is kept beyond its name and release labels


def test_an_agent_that_cannot_read_discovery_still_reports_its_crds(discovering):
    with FakeKube(crds=()) as kube:
        eso_cluster(kube, {"v1": True})
        kube.fail(403, times=1, match=lambda method, path, query: path == "/apis")
        agent = Agent(make_settings(kube))
        try:
            facts = agent.cluster_facts()
        finally:
            agent.stop()
    assert facts["crds"] == ["applications.argoproj.io", "externalsecrets.external-secrets.io"]
    assert facts["addon_versions"] == {"argocd": {}, "external_secrets": {}}  # no versions: nothing is checked


# --- what a deploy is held to ----------------------------------------------------------------------


def versions(plane_app) -> int:
    with plane_app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(func.count()).select_from(Version))


def heartbeat_of(kube: FakeKube, client, world) -> None:
    """The real agent's heartbeat, as read from ``kube``, sent to the control plane."""
    agent = Agent(make_settings(kube))
    try:
        beat = agent.heartbeat_message()
    finally:
        agent.stop()
    Reporter(client, "default", "demo", world["demo"]["agent_token"], Tracker(), Outbox()).heartbeat(beat)


def set_eso_version(world, version: str | None) -> None:
    text = PROFILE if version is None else PROFILE.replace(
        "    provider: vault\n", f"    provider: vault\n    version: \"{version}\"\n", 1)
    response = world["admin"].patch(f"{API}/clusters/demo", json={"profile": text})
    assert response.status_code == 200, response.get_json()


def test_a_deploy_the_cluster_does_not_serve_is_refused_naming_the_profile_field(plane_app, world, client,
                                                                                discovering):
    spec = service_spec("web", extra=WITH_SECRET)
    with FakeKube(crds=()) as kube:  # External Secrets Operator before 0.16: v1beta1 only
        eso_cluster(kube, {"v1beta1": True})
        heartbeat_of(kube, client, world)
    before = versions(plane_app)
    refused = deploy_yaml(world["admin"], spec)
    assert refused.status_code == 422, refused.get_json()
    (problem,) = refused.get_json()["error"]["problems"]
    assert problem["message"].startswith('cluster "demo" cannot run ExternalSecret external-secrets.io/v1: its agent '
                                         "reported at ")
    assert "it serves external-secrets.io/v1beta1" in problem["message"]
    assert "set addons.external_secrets.version in the cluster profile" in problem["message"]
    assert versions(plane_app) == before  # nothing recorded, so nothing to commit

    set_eso_version(world, "0.15")
    accepted = deploy_yaml(world["admin"], spec)
    assert accepted.status_code == 200, accepted.get_json()

    with FakeKube(crds=()) as kube:  # upgraded to 0.17: v1beta1 is no longer served, the profile still says 0.15
        eso_cluster(kube, {"v1": True, "v1beta1": False})
        heartbeat_of(kube, client, world)
    refused = deploy_yaml(world["admin"], spec.replace("1.0", "1.1"))
    (problem,) = refused.get_json()["error"]["problems"]
    assert "cannot run ExternalSecret external-secrets.io/v1beta1" in problem["message"]
    assert "addons.external_secrets.version in the cluster profile names a release before 0.16" in problem["message"]
    set_eso_version(world, None)
    assert deploy_yaml(world["admin"], spec.replace("1.0", "1.1")).status_code == 200


def test_a_release_older_than_the_rendering_needs_is_refused(plane_app, world, client):
    autoscaled = service_spec("web", extra="replicas: {min_replicas: 1, max_replicas: 3}\n")
    crds = ["applications.argoproj.io", "scaledobjects.keda.sh"]
    beat = Heartbeat("1.0", "v1.33.2", crds=crds, addon_versions={
        "argocd": {"api_versions": ["argoproj.io/v1alpha1"]},
        "keda": {"api_versions": ["keda.sh/v1alpha1"], "release": "2.6.1"}})  # from the CRDs' labels
    Reporter(client, "default", "demo", world["demo"]["agent_token"], Tracker(), Outbox()).heartbeat(beat)
    refused = deploy_yaml(world["admin"], autoscaled)
    assert refused.status_code == 422, refused.get_json()
    (problem,) = refused.get_json()["error"]["problems"]
    assert "cannot run the ScaledObject rendered for it" in problem["message"]
    assert "its KEDA CRDs are of release 2.6.1, and it needs 2.7 or later; upgrade KEDA" in problem["message"]
    assert deploy_yaml(world["admin"], service_spec("web")).status_code == 200  # no ScaledObject, nothing needed


def test_an_agent_that_sends_no_addon_versions_is_checked_as_before(plane_app, world, client):
    headers = agent_headers(world["demo"])
    old = {"agent_version": "0.9", "kubernetes_version": "v1.33.2",
           "crds": ["applications.argoproj.io", "externalsecrets.external-secrets.io"]}
    assert client.post("/agent/v1/default/demo/heartbeat", json=old, headers=headers).status_code == 200
    assert deploy_yaml(world["admin"], service_spec("web", extra=WITH_SECRET)).status_code == 200

    for wrong in ([], {"keda": []}, {"keda": {"api_versions": "keda.sh/v1alpha1"}}, {"keda": {"release": 2}},
                  {"keda": {"served": []}}):
        response = client.post("/agent/v1/default/demo/heartbeat", json={**old, "addon_versions": wrong},
                               headers=headers)
        assert response.status_code == 400, wrong
        assert "addon_versions" in response.json()["error"]["message"]
