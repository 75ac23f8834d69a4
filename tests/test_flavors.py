"""Per-flavor placement: GKE Autopilot's resource rules, spot capacity and GPUs on each cloud."""

from __future__ import annotations

import dataclasses

import pytest

from contract.errors import SpecError

WORKER = """\
type: service
name: worker
workspace_fqn: demo:batch
image:
  type: image
  image_uri: ghcr.io/acme/worker:1.0.0
resources:
  cpu_request: 0.5
  cpu_limit: 1
  memory_request: 512
  memory_limit: 1024
"""


def capacity(kind: str) -> str:
    return WORKER + f"  node:\n    type: node_selector\n    capacity_type: {kind}\n"


def gpu(name: str, count: int = 1) -> str:
    return WORKER + f"  devices:\n    - type: nvidia_gpu\n      name: {name}\n      count: {count}\n"


def pod(rendering) -> dict:
    [deployment] = [o for o in rendering.objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]


def resources(rendering) -> dict:
    return pod(rendering)["containers"][0]["resources"]


# --- GKE Autopilot -------------------------------------------------------------------------------


def autopilot(cluster, version: str = "1.30"):
    """The fixture's Autopilot cluster at another Kubernetes version (before 1.31: no Pod bursting)."""
    return dataclasses.replace(cluster("gke-autopilot"), kubernetes_version=version)


def test_autopilot_sets_limits_equal_to_requests_and_says_so(rendered, cluster):
    worker = rendered(autopilot(cluster), WORKER)
    assert resources(worker)["limits"] == resources(worker)["requests"] == {
        "cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1000Mi",
    }
    assert any("cpu_limit set to cpu_request (0.5)" in note for note in worker.notes)
    assert any("memory_limit set to memory_request (512)" in note for note in worker.notes)
    assert all(note.startswith("gke-autopilot") for note in worker.notes)


def test_autopilot_applies_to_jobs_too(rendered, cluster):
    report = rendered(autopilot(cluster), "job-scheduled.yaml")
    [workflow] = [o for o in report.objects if o["kind"] == "CronWorkflow"]
    container = workflow["spec"]["workflowSpec"]["templates"][0]["container"]
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert report.notes


@pytest.mark.parametrize("flavor", ["gke-standard", "eks", "aks", "kind", "generic"])
def test_other_flavors_keep_the_limits_the_spec_asks_for(rendered, flavor):
    worker = rendered(flavor, WORKER)
    assert resources(worker)["limits"] == {"cpu": "1", "memory": "1024Mi", "ephemeral-storage": "2000Mi"}
    assert resources(worker)["requests"]["cpu"] == "500m"
    assert worker.notes == []


@pytest.mark.parametrize("version", ["1.31", "1.33", "1.37"])
def test_autopilot_lets_limits_burst_above_requests_from_the_version_that_allows_it(rendered, cluster, version):
    """GKE Autopilot allows Pod bursting from 1.30.2-gke.1394000 on ("Configure Pod bursting in GKE"): a
    16000 MiB limit over 8000 MiB requested stays, rather than being cut to 8000."""
    worker = rendered(autopilot(cluster, version), WORKER.replace("memory_limit: 1024", "memory_limit: 2048"))
    assert resources(worker)["limits"] == {"cpu": "1", "memory": "2048Mi", "ephemeral-storage": "2000Mi"}
    assert resources(worker)["requests"]["memory"] == "512Mi"
    assert worker.notes == []


def test_autopilot_keeps_gpu_requests_and_limits_equal(rendered):
    worker = rendered("gke-autopilot", gpu("L4", 2))
    assert resources(worker)["limits"]["nvidia.com/gpu"] == resources(worker)["requests"]["nvidia.com/gpu"] == "2"
    assert pod(worker)["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


# --- spot capacity ----------------------------------------------------------------------------------

GKE_SPOT_TOLERATION = {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
AKS_SPOT_TOLERATION = {
    "key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule",
}


def required(key: str, operator: str, values: list[str]) -> dict:
    term = {"matchExpressions": [{"key": key, "operator": operator, "values": values}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def preferred(key: str, value: str) -> dict:
    preference = {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": preference}]}}


@pytest.mark.parametrize(
    "flavor, kind, node_selector, affinity, tolerations",
    [
        ("eks", "spot", {"karpenter.sh/capacity-type": "spot"}, None, None),
        ("eks", "on_demand", {"karpenter.sh/capacity-type": "on-demand"}, None, None),
        ("eks", "spot_fallback_on_demand", None, preferred("karpenter.sh/capacity-type", "spot"), None),
        ("gke-standard", "spot", {"cloud.google.com/gke-spot": "true"}, None, [GKE_SPOT_TOLERATION]),
        ("gke-standard", "on_demand", None, required("cloud.google.com/gke-spot", "NotIn", ["true"]), None),
        ("gke-standard", "spot_fallback_on_demand", None, preferred("cloud.google.com/gke-spot", "true"),
         [GKE_SPOT_TOLERATION]),
        ("gke-autopilot", "spot", {"cloud.google.com/gke-spot": "true"}, None, [GKE_SPOT_TOLERATION]),
        ("aks", "spot", {"kubernetes.azure.com/scalesetpriority": "spot"}, None, [AKS_SPOT_TOLERATION]),
        ("aks", "on_demand", None, required("kubernetes.azure.com/scalesetpriority", "NotIn", ["spot"]), None),
        ("aks", "spot_fallback_on_demand", None, preferred("kubernetes.azure.com/scalesetpriority", "spot"),
         [AKS_SPOT_TOLERATION]),
    ],
)
def test_capacity_types_use_each_clouds_labels_and_taints(rendered, flavor, kind, node_selector, affinity, tolerations):
    spec = pod(rendered(flavor, capacity(kind)))
    assert spec.get("nodeSelector") == node_selector
    assert spec.get("affinity") == affinity
    assert spec.get("tolerations") == tolerations


@pytest.mark.parametrize("flavor", ["kind", "generic"])
def test_clusters_without_spot_capacity_ignore_it_with_a_note(rendered, flavor):
    worker = rendered(flavor, capacity("spot"))
    assert {"nodeSelector", "affinity", "tolerations"}.isdisjoint(pod(worker))
    assert worker.notes == [f"{flavor} clusters have no spot capacity; capacity_type spot is ignored"]


def test_jobs_are_placed_the_same_way(rendered):
    report = rendered("eks", "job-scheduled.yaml")
    [workflow] = [o for o in report.objects if o["kind"] == "CronWorkflow"]
    assert workflow["spec"]["workflowSpec"]["nodeSelector"] == {"karpenter.sh/capacity-type": "spot"}


# --- GPUs -------------------------------------------------------------------------------------------

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    "flavor, model, node_selector",
    [
        ("gke-standard", "L4", {"cloud.google.com/gke-accelerator": "nvidia-l4"}),
        ("gke-standard", "A100_80GB", {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}),
        ("eks", "A10G", {"karpenter.k8s.aws/instance-gpu-name": "a10g"}),
        ("eks", "H100_80GB", {"karpenter.k8s.aws/instance-gpu-name": "h100"}),
        ("aks", "T4", {"kubernetes.azure.com/accelerator": "nvidia"}),
    ],
)
def test_gpus_are_requested_and_selected_by_model(rendered, flavor, model, node_selector):
    worker = rendered(flavor, gpu(model, 2))
    assert resources(worker)["limits"]["nvidia.com/gpu"] == "2"
    assert resources(worker)["requests"]["nvidia.com/gpu"] == "2"
    assert pod(worker)["nodeSelector"] == node_selector
    assert GPU_TOLERATION in pod(worker)["tolerations"]


@pytest.mark.parametrize(("model", "operator"), [("A100_80GB", "Gt"), ("A100_40GB", "Lt")])
def test_eks_tells_the_two_a100s_apart_by_gpu_memory(rendered, model, operator):
    """Karpenter labels both A100s instance-gpu-name=a100; instance-gpu-memory (MiB per GPU) is what
    differs (40 GiB on p4d, 80 GiB on p4de), so the name alone could land an 80 GB job on a 40 GB GPU."""
    spec = pod(rendered("eks", gpu(model)))
    assert spec["nodeSelector"] == {"karpenter.k8s.aws/instance-gpu-name": "a100"}
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": operator, "values": ["61440"]}]


def test_a_gpu_memory_requirement_keeps_the_spot_preference(rendered):
    spec = pod(rendered("eks", gpu("A100_80GB") + "  node:\n    type: node_selector\n"
                                                 "    capacity_type: spot_fallback_on_demand\n"))
    affinity = spec["affinity"]["nodeAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]["matchExpressions"] == [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0][
        "key"] == "karpenter.k8s.aws/instance-gpu-memory"


def test_aks_selects_gpu_nodes_by_accelerator_and_notes_the_model_is_not_pinned(rendered):
    worker = rendered("aks", gpu("T4"))
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod(worker)["tolerations"]
    assert any('"T4"' in note and "node pool" in note for note in worker.notes)


def test_a_gpu_on_spot_capacity_gets_both(rendered):
    embeddings = rendered("gke-standard", "grpc-gpu.yaml")
    spec = pod(embeddings)
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["affinity"] == preferred("cloud.google.com/gke-spot", "true")
    assert spec["tolerations"] == [GPU_TOLERATION, GKE_SPOT_TOLERATION]


@pytest.mark.parametrize("flavor, cloud", [("gke-standard", "GKE"), ("gke-autopilot", "GKE"), ("eks", "EKS")])
def test_a_gpu_model_the_cloud_does_not_offer_is_refused_where_it_is_named(rendered, flavor, cloud):
    with pytest.raises(SpecError) as error:
        rendered(flavor, gpu("MI300X"))
    [problem] = error.value.problems
    assert (problem.line, problem.column, problem.path) == (14, 13, "/resources/devices/0/name")
    assert problem.message.startswith('GPU "MI300X" is not ')
    assert cloud in problem.message and "use one of" in problem.message


def test_an_unknown_gpu_model_is_only_noted_where_models_cannot_be_selected(rendered):
    worker = rendered("kind", gpu("MI300X"))
    assert resources(worker)["limits"]["nvidia.com/gpu"] == "1"
    assert any('"MI300X" is not enforced' in note for note in worker.notes)


def test_one_gpu_model_per_app(rendered):
    spec = gpu("L4") + "    - type: nvidia_gpu\n      name: T4\n"
    with pytest.raises(SpecError) as error:
        rendered("gke-standard", spec)
    [problem] = error.value.problems
    assert problem.path == "/resources/devices/1"
    assert "one GPU model per app" in problem.message


def test_every_flavor_the_profile_schema_allows_is_data_in_the_registry():
    """A cloud flavor is a row of renderer.flavors.FLAVORS: the profile schema's enum and the registry agree."""
    import json
    from pathlib import Path

    from renderer.flavors import FLAVORS

    schema = json.loads(Path("schemas/cluster-profile.schema.json").read_text())
    assert set(schema["properties"]["flavor"]["enum"]) == set(FLAVORS)
    assert [name for name, flavor in FLAVORS.items() if flavor.limits_equal_requests("1.30")] == ["gke-autopilot"]
    assert [name for name, flavor in FLAVORS.items() if flavor.limits_equal_requests("1.31")] == []


# --- instance families and node pools ---------------------------------------------------------------

CLUSTER_NAMES = {"eks": "prod-eks", "gke-standard": "prod-gke", "gke-autopilot": "autopilot", "aks": "prod-aks",
                 "kind": "dev-kind", "generic": "onprem"}


def families(*names: str, capacity: str | None = None) -> str:
    node = WORKER + f"  node:\n    type: node_selector\n    instance_families: [{', '.join(names)}]\n"
    return node + (f"    capacity_type: {capacity}\n" if capacity else "")


def nodepools(*names: str) -> str:
    return WORKER + f"  node:\n    type: nodepool_selector\n    nodepools: [{', '.join(names)}]\n"


def refused(rendered, flavor: str, spec: str):
    with pytest.raises(SpecError) as error:
        rendered(flavor, spec)
    [problem] = error.value.problems
    return problem


@pytest.mark.parametrize(("flavor", "label"), [("eks", "karpenter.k8s.aws/instance-family"),
                                                ("gke-standard", "cloud.google.com/machine-family")])
def test_instance_families_require_one_of_them_by_the_clouds_label(rendered, flavor, label):
    spec = pod(rendered(flavor, families("g5", "p4d")))
    assert spec["affinity"] == required(label, "In", ["g5", "p4d"])
    assert "nodeSelector" not in spec


def test_autopilot_makes_a_node_of_the_one_machine_series_a_pod_selects(rendered):
    spec = pod(rendered("gke-autopilot", families("c3")))
    assert spec["nodeSelector"] == {"cloud.google.com/machine-family": "c3"}
    problem = refused(rendered, "gke-autopilot", families("c3", "n2"))
    assert problem.path == "/resources/node/instance_families/1" and "a single instance family" in problem.message


@pytest.mark.parametrize("flavor", ["aks", "kind", "generic"])
def test_instance_families_are_refused_where_nodes_carry_no_family_label(rendered, flavor):
    problem = refused(rendered, flavor, families("g5"))
    assert problem.path == "/resources/node/instance_families"
    assert problem.message.startswith(f'cluster "{CLUSTER_NAMES[flavor]}" ({flavor}) has no ')
    assert ("nodepool_selector" in problem.message) == (flavor == "aks")


@pytest.mark.parametrize(("flavor", "label"), [("eks", "karpenter.sh/nodepool"),
                                                ("gke-standard", "cloud.google.com/gke-nodepool"),
                                                ("aks", "kubernetes.azure.com/agentpool")])
def test_nodepools_require_one_of_them_by_the_clouds_label(rendered, flavor, label):
    spec = pod(rendered(flavor, nodepools("gpu-a", "gpu-b")))
    assert spec["affinity"] == required(label, "In", ["gpu-a", "gpu-b"])


@pytest.mark.parametrize("flavor", ["gke-autopilot", "kind", "generic"])
def test_nodepools_are_refused_where_pods_cannot_pick_one(rendered, flavor):
    problem = refused(rendered, flavor, nodepools("gpu-a"))
    assert problem.path == "/resources/node/nodepools"
    assert problem.message.startswith(f'cluster "{CLUSTER_NAMES[flavor]}" ({flavor}) ')


def test_a_nodepool_selector_takes_no_capacity_type(specs_for, cluster):
    with pytest.raises(SpecError) as error:
        specs_for(cluster("eks"), nodepools("gpu-a") + "    capacity_type: spot\n")
    [problem] = error.value.problems
    assert problem.path == "/resources/node/capacity_type" and "known fields: nodepools, type" in problem.message


def test_instance_families_and_on_demand_capacity_are_both_required_of_one_node(rendered):
    spec = pod(rendered("gke-standard", families("n2", "c3", capacity="on_demand")))
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "cloud.google.com/gke-spot", "operator": "NotIn", "values": ["true"]},
        {"key": "cloud.google.com/machine-family", "operator": "In", "values": ["n2", "c3"]},
    ]
