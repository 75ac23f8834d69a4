"""Workspaces in the cluster repository (namespace labels, quota, removal); a remote that cannot be used.

Pushing to a remote, over https and ssh servers on loopback, is in tests/test_remotes.py.
"""

import subprocess

import yaml

from contract.repository import namespace_file, quota_file
from gitops import layout
from gitops.models import Cluster
from tests.plane import PROFILE, add_cluster, add_workspace, deploy_yaml, service_spec


def repo_of(app, name="demo"):
    plane = app.extensions["shipyard"]
    with plane.sessions() as session:
        cluster = session.query(Cluster).filter_by(name=name).one()
        return plane.repos.open(cluster)


def read(app, path):
    data = repo_of(app).snapshot().read(path)
    return yaml.safe_load(data) if data is not None else None


def test_workspace_labels_and_quota_reach_the_repository(plane_app, admin):
    add_cluster(admin)
    response = admin.post("/api/v1/clusters/demo/workspaces", json={
        "name": "payments", "environment": "prod", "labels": {"team": "payments", "cost-center": "cc-42"},
        "quota": {"requests.cpu": "8", "requests.memory": "16Gi", "pods": 40}})
    assert response.status_code == 201, response.get_json()
    namespace = read(plane_app, namespace_file("payments"))
    assert namespace["metadata"]["labels"]["team"] == "payments"
    assert namespace["metadata"]["labels"]["shipyard.dev/environment"] == "prod"
    quota = read(plane_app, quota_file("payments"))
    assert quota["kind"] == "ResourceQuota" and quota["metadata"]["namespace"] == "payments"
    assert quota["spec"]["hard"] == {"pods": "40", "requests.cpu": "8", "requests.memory": "16Gi"}
    project = read(plane_app, "bootstrap/project.yaml")
    assert {"server": "https://kubernetes.default.svc", "namespace": "payments"} in project["spec"]["destinations"]

    # a deploy into the workspace keeps its labels and quota
    assert deploy_yaml(admin, service_spec("api", "payments")).status_code == 200
    assert read(plane_app, namespace_file("payments")) == namespace
    assert read(plane_app, quota_file("payments")) == quota

    # dropping the quota removes the ResourceQuota; relabelling rewrites the Namespace
    response = admin.patch("/api/v1/clusters/demo/workspaces/payments", json={"quota": {}, "labels": {"team": "billing"}})
    assert response.status_code == 200, response.get_json()
    assert read(plane_app, quota_file("payments")) is None
    labels = read(plane_app, namespace_file("payments"))["metadata"]["labels"]
    assert labels["team"] == "billing" and "cost-center" not in labels


def test_bad_labels_and_quota_are_refused_and_nothing_is_written(plane_app, admin):
    add_cluster(admin)
    tip = repo_of(plane_app).tip()
    for body, words in (
        ({"name": "a", "labels": {"shipyard.dev/cluster": "x"}}, "reserved"),
        ({"name": "a", "labels": {"team": "has spaces"}}, "value"),
        ({"name": "a", "quota": {"cpu": "8"}}, "not one of"),
        ({"name": "a", "quota": {"requests.cpu": "lots"}}, "quantity"),
    ):
        response = admin.post("/api/v1/clusters/demo/workspaces", json=body)
        assert response.status_code == 400 and words in response.get_json()["error"]["message"]
    assert repo_of(plane_app).tip() == tip
    assert admin.get("/api/v1/clusters/demo/workspaces/a").status_code == 404


def test_deleting_a_workspace_takes_it_out_of_the_repository(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    add_workspace(admin, "demo", "scratch")
    assert deploy_yaml(admin, service_spec("web", "scratch")).status_code == 200
    assert admin.delete("/api/v1/clusters/demo/workspaces/scratch").status_code == 409  # still has an app
    assert admin.delete("/api/v1/apps/demo/scratch/web").status_code == 200
    assert admin.delete("/api/v1/clusters/demo/workspaces/scratch").status_code == 204
    snapshot = repo_of(plane_app).snapshot()
    assert snapshot.tree_id("workspaces/scratch") is None and snapshot.read("apps/scratch.yaml") is None
    assert layout.workspaces_in(snapshot) == ["storefront"]
    namespaces = [d["namespace"] for d in read(plane_app, "bootstrap/project.yaml")["spec"]["destinations"]]
    assert namespaces == ["storefront"]
    git = subprocess.run(["git", "-C", str(repo_of(plane_app).path), "log", "-1", "--format=%s"],
                         capture_output=True, text=True, check=True)
    assert git.stdout.strip() == "Remove workspace scratch"


def test_an_unreachable_remote_is_refused_when_configured(plane_app, admin, tmp_path):
    for url in ("not a url", str(tmp_path / "missing.git")):
        response = admin.post("/api/v1/clusters", json={"name": "demo", "profile": PROFILE, "remote_url": url})
        assert response.status_code == 400 and "remote_url" in response.get_json()["error"]["message"]
    add_cluster(admin)
    response = admin.patch("/api/v1/clusters/demo", json={"remote_url": "not a url"})
    assert response.status_code == 400
    assert admin.get("/api/v1/clusters/demo").get_json()["remote_url"] is None
    add_workspace(admin, "demo", "storefront")  # deploys still work: the bad remote was not kept
    assert deploy_yaml(admin, service_spec("web")).status_code == 200


def test_the_objects_the_control_plane_writes_itself_are_checked_against_its_crd_schemas(tmp_path, database_url):
    """The bootstrap (AppProject, root Application) and each workspace's Application are rendered by
    the control plane, not from a spec: they are validated against the CRD schemas of its
    configuration too. A schema no AppProject satisfies stands in for a template gone wrong."""
    import json as jsonlib

    from tests.plane import app_config, make_user
    from webapp import create_app

    crds = tmp_path / "crds" / "argoproj.io"
    crds.mkdir(parents=True)
    (crds / "appproject_v1alpha1.json").write_text(jsonlib.dumps({"type": "object", "required": ["never-there"]}))
    app = create_app(app_config(tmp_path / "data", database_url, CRD_SCHEMAS=str(tmp_path / "crds")))
    try:
        admin = make_user(app, "admin", "tenant-admin")
        response = admin.post("/api/v1/clusters", json={"name": "demo", "profile": PROFILE})
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["code"] == "render_failed"
        assert "AppProject" in response.get_json()["error"]["message"]
    finally:
        app.extensions["shipyard"].close()
