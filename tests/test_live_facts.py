"""Specs held to what a cluster's agent reports: its CRDs and its Kubernetes version.

The profile says which addons a cluster has; the agent's heartbeat says what is
really installed. A deploy needing a custom resource the agent did not find is
refused (naming the cluster and the CRD) and nothing is recorded or committed;
objects are validated against the Kubernetes version the cluster runs.
Runs on SQLite and PostgreSQL through the real agent endpoints.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from contract.protocol import Heartbeat
from gitops.clusters import profile_of
from gitops.models import Cluster, Version
from gitops.agents import live_facts
from tests.plane import service_spec
from tests.test_status import client, deploy_yaml, plane_app, reporter, served, world  # noqa: F401 - fixtures

EVERY_CRD = ["applications.argoproj.io", "rollouts.argoproj.io", "workflows.argoproj.io",
             "workflowtemplates.argoproj.io", "cronworkflows.argoproj.io", "scaledobjects.keda.sh",
             "virtualservices.networking.istio.io", "externalsecrets.external-secrets.io",
             "servicemonitors.monitoring.coreos.com"]
CANARY = "rollout_strategy: {type: canary, steps: [{weight_percentage: 50, pause_duration: 60}]}\n"


def versions(plane_app) -> int:
    with plane_app.extensions["shipyard"].sessions() as session:
        return session.scalar(select(func.count()).select_from(Version))


def demo(plane_app) -> Cluster:
    with plane_app.extensions["shipyard"].sessions() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == "demo"))
        session.expunge(cluster)
        return cluster


def test_a_custom_resource_the_agent_did_not_find_is_refused(plane_app, world, client):
    crds = [c for c in EVERY_CRD if c != "rollouts.argoproj.io"]
    reporter(client, world["demo"]).heartbeat(Heartbeat("1.0", "v1.33.2", crds=crds))
    before = versions(plane_app)

    refused = deploy_yaml(world["admin"], service_spec("web", extra=CANARY))
    assert refused.status_code == 422, refused.get_json()
    (problem,) = refused.get_json()["error"]["problems"]
    assert 'cluster "demo" cannot run a Rollout' in problem["message"]
    assert "rollouts.argoproj.io is not installed" in problem["message"]
    assert problem["line"] == 1
    assert versions(plane_app) == before  # nothing recorded, so nothing to commit

    plain = deploy_yaml(world["admin"], service_spec("web"))  # a Deployment needs no CRD
    assert plain.status_code == 200, plain.get_json()

    reporter(client, world["demo"]).heartbeat(Heartbeat("1.0", "v1.33.2", crds=EVERY_CRD))
    installed = deploy_yaml(world["admin"], service_spec("web", extra=CANARY))
    assert installed.status_code == 200, installed.get_json()


def test_without_a_crd_list_the_profile_decides(plane_app, world, client):
    # An agent that could not list CRDs sends none (it always sees ArgoCD's own when it can).
    reporter(client, world["demo"]).heartbeat(Heartbeat("1.0", "v1.33.2", crds=[]))
    response = deploy_yaml(world["admin"], service_spec("web", extra=CANARY))
    assert response.status_code == 200, response.get_json()


def test_objects_are_validated_for_the_version_the_cluster_runs(plane_app, world, client):
    profile = profile_of(demo(plane_app))
    assert live_facts(demo(plane_app)) is None  # no heartbeat yet: the profile's version

    reporter(client, world["demo"]).heartbeat(Heartbeat("1.0", "v1.29.4-eks-2c3a9f1", crds=EVERY_CRD))
    facts = live_facts(demo(plane_app))
    assert (facts.kubernetes_version, facts.reported_version) == ("1.29", "v1.29.4-eks-2c3a9f1")
    assert facts.apply_to(profile) == dataclasses.replace(profile, kubernetes_version="1.29")

    reporter(client, world["demo"]).heartbeat(Heartbeat("1.0", "v1.12.0", crds=EVERY_CRD))
    assert live_facts(demo(plane_app)).apply_to(profile) is profile  # no schemas for 1.12: the profile's


@pytest.mark.parametrize("reported", [None, "", "unknown"])
def test_an_unreadable_version_keeps_the_profiles(plane_app, world, client, reported):
    reporter(client, world["demo"]).heartbeat(Heartbeat("1.0", reported, crds=EVERY_CRD))
    facts = live_facts(demo(plane_app))
    assert facts.kubernetes_version is None
    response = deploy_yaml(world["admin"], service_spec("web"))
    assert response.status_code == 200, response.get_json()
