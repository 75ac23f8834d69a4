"""TrueFoundry's resources as exported: MIG partitions, time-shared GPUs, Inferentia, TPUs, the older
gpu_count form, /dev/shm and explicit nulls, on every cluster flavor or refused naming what it lacks."""

from __future__ import annotations

import dataclasses

import pytest

from contract.errors import SpecError
from renderer.flavors import EXTENDED_RESOURCES, MIG_PROFILES, mig_resource
from renderer.workspace import (
    QUOTA_KEYS,
    WorkspaceSettings,
    render_quota,
    workspace_settings_problems,
)
from tests.conftest import FIXTURES

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
  memory_request: 2048
  memory_limit: 4096
"""
CLUSTERS = {"eks": "prod-eks", "gke-standard": "prod-gke", "gke-autopilot": "autopilot", "aks": "prod-aks",
            "kind": "dev-kind", "generic": "onprem"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def device(*lines: str) -> str:
    return WORKER + "  devices:\n" + "".join(f"{'    - ' if i == 0 else '      '}{line}\n" for i, line in enumerate(lines))


def mig(profile: str = "1g.10gb", name: str | None = "A100_80GB") -> str:
    return device("type: nvidia_mig_gpu", f"profile: {profile}", *([f"name: {name}"] if name else []))


def timeslicing(gpu_memory: int = 4000, name: str | None = "T4") -> str:
    return device("type: nvidia_timeslicing_gpu", f"gpu_memory: {gpu_memory}", *([f"name: {name}"] if name else []))


def pod(rendering) -> dict:
    [workload] = [o for o in rendering.objects if o["kind"] in ("Deployment", "Rollout")]
    return workload["spec"]["template"]["spec"]


def extended(rendering) -> dict:
    """The container's limits beyond cpu, memory and ephemeral storage; its requests must equal them."""
    resources = pod(rendering)["containers"][0]["resources"]
    limits = {k: v for k, v in resources["limits"].items() if k not in ("cpu", "memory", "ephemeral-storage")}
    assert limits == {k: v for k, v in resources["requests"].items() if k in limits}
    return limits


def required(rendering) -> list[dict]:
    [term] = pod(rendering)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    return term["matchExpressions"]


def refusal(rendered, flavor, spec) -> tuple[str, str]:
    with pytest.raises(SpecError) as error:
        rendered(flavor, spec)
    [problem] = error.value.problems
    return problem.path, problem.message


# --- MIG --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["gke-standard", "gke-autopilot"])
def test_gke_runs_a_mig_partition_as_a_gpu_on_nodes_of_that_partition_size(rendered, flavor):
    worker = rendered(flavor, mig())
    assert extended(worker) == {"nvidia.com/gpu": "1"}
    assert pod(worker)["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
                                           "cloud.google.com/gke-gpu-partition-size": "1g.10gb"}
    assert pod(worker)["tolerations"] == [GPU_TOLERATION]


@pytest.mark.parametrize("flavor", ["eks", "aks", "kind", "generic"])
def test_elsewhere_a_mig_partition_is_the_gpu_operators_mixed_strategy_resource(rendered, flavor):
    worker = rendered(flavor, mig("3g.20gb", "A100_40GB"))
    assert extended(worker) == {"nvidia.com/mig-3g.20gb": "1"}
    assert GPU_TOLERATION in pod(worker)["tolerations"]


def test_eks_pins_the_mig_gpu_model_and_says_what_karpenter_needs_to_launch_mig_nodes(rendered):
    worker = rendered("eks", mig())
    assert pod(worker)["nodeSelector"] == {"karpenter.k8s.aws/instance-gpu-name": "a100"}
    assert required(worker) == [{"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt", "values": ["61440"]}]
    [note] = worker.notes
    assert "nvidia.com/mig-1g.10gb" in note and "NodeOverlay" in note and "mixed" in note


def test_a_mig_profile_the_named_gpu_does_not_offer_is_refused_at_the_profile(rendered):
    with pytest.raises(SpecError) as error:
        rendered("gke-standard", mig("1g.5gb", "A100_80GB"))
    [problem] = error.value.problems
    assert (problem.path, problem.line, problem.column) == ("/resources/devices/0/profile", 14, 16)
    assert '"1g.5gb"' in problem.message and "1g.10gb" in problem.message


def test_a_gpu_without_mig_is_refused_at_its_name(rendered):
    path, message = refusal(rendered, "eks", mig("1g.5gb", "T4"))
    assert path == "/resources/devices/0/name"
    assert 'GPU "T4" has no MIG' in message and "A100_40GB" in message


def test_every_mig_partition_and_accelerator_the_renderer_requests_can_be_capped_by_a_workspace_quota(kube_schemas, cluster):
    """ResourceQuota caps an extended resource by its requests.<name> key only."""
    for profiles in MIG_PROFILES.values():
        assert {f"requests.{mig_resource(profile)}" for profile in profiles} <= set(QUOTA_KEYS)
    quota = {f"requests.{resource}": "4" for resource in ("aws.amazon.com/neuron", "google.com/tpu",
                                                           "nvidia.com/mig-1g.5gb")}
    assert workspace_settings_problems({}, quota) == []
    assert set(EXTENDED_RESOURCES) >= {"aws.amazon.com/neuron", "google.com/tpu", "nvidia.com/mig-1g.5gb"}
    rendered_quota = render_quota(cluster("eks"), "batch", WorkspaceSettings.of("dev", {}, quota), kube_schemas)
    assert rendered_quota["spec"]["hard"] == quota


# --- time-sliced GPUs -------------------------------------------------------------------------------


def test_gke_standard_picks_time_shared_nodes_sharing_a_gpu_among_few_enough_pods(rendered):
    """A T4 is 16384 MB: 4000 MB each leaves room for 4 pods, so nodes sharing a GPU among at most 4."""
    worker = rendered("gke-standard", timeslicing(4000))
    assert extended(worker) == {"nvidia.com/gpu": "1"}
    assert pod(worker)["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
                                           "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing"}
    assert required(worker) == [{"key": "cloud.google.com/gke-max-shared-clients-per-gpu", "operator": "Lt",
                                 "values": ["5"]}]


def test_gke_autopilot_asks_for_time_shared_nodes_with_the_exact_number_of_pods_per_gpu(rendered):
    worker = rendered("gke-autopilot", timeslicing(4000))
    assert pod(worker)["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
                                           "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing",
                                           "cloud.google.com/gke-max-shared-clients-per-gpu": "4"}
    assert "affinity" not in pod(worker)


def test_gke_shares_a_gpu_among_48_pods_at_most(rendered):
    worker = rendered("gke-autopilot", timeslicing(100))
    assert pod(worker)["nodeSelector"]["cloud.google.com/gke-max-shared-clients-per-gpu"] == "48"


@pytest.mark.parametrize("flavor", ["eks", "aks", "kind", "generic"])
def test_elsewhere_time_sliced_nodes_are_found_by_the_device_plugins_replicas_label(rendered, flavor):
    worker = rendered(flavor, timeslicing(4000))
    assert extended(worker) == {"nvidia.com/gpu": "1"}
    assert required(worker) == [{"key": "nvidia.com/gpu.replicas", "operator": "Gt", "values": ["1"]},
                                {"key": "nvidia.com/gpu.replicas", "operator": "Lt", "values": ["5"]}]


def test_without_the_gpus_name_gpu_memory_is_noted_as_not_enforced(rendered):
    worker = rendered("generic", timeslicing(4000, name=None))
    assert required(worker) == [{"key": "nvidia.com/gpu.replicas", "operator": "Gt", "values": ["1"]}]
    assert any("gpu_memory is not enforced" in note for note in worker.notes)


def test_autopilot_needs_the_gpus_name_to_make_time_shared_nodes(rendered):
    path, message = refusal(rendered, "gke-autopilot", timeslicing(4000, name=None))
    assert path == "/resources/devices/0" and "name the GPU" in message


def test_autopilot_before_time_sharing_is_refused_naming_the_cluster(rendered, cluster):
    old = dataclasses.replace(cluster("gke-autopilot"), kubernetes_version="1.29")
    path, message = refusal(rendered, old, timeslicing())
    assert path == "/resources/devices/0/type"
    assert message.startswith('cluster "autopilot" (gke-autopilot) has no time-shared GPUs before Kubernetes 1.30')


def test_more_than_half_a_gpu_is_not_a_share_of_one(rendered):
    path, message = refusal(rendered, "eks", timeslicing(9000))
    assert path == "/resources/devices/0/gpu_memory"
    assert "more than half of a T4" in message and "nvidia_gpu" in message


# --- Inferentia and TPUs ----------------------------------------------------------------------------

INFERENTIA = device("type: aws_inferentia", "name: INF2", "count: 2")
TPU = device("type: gcp_tpu", "name: tpu-v5-lite-podslice", "topology: 2x4")


def test_eks_runs_inferentia_chips_on_instances_of_their_family(rendered):
    worker = rendered("eks", INFERENTIA)
    assert extended(worker) == {"aws.amazon.com/neuron": "2"}
    assert pod(worker)["nodeSelector"] == {"karpenter.k8s.aws/instance-family": "inf2"}
    assert pod(worker)["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize("flavor", ["gke-standard", "gke-autopilot", "aks", "kind", "generic"])
def test_inferentia_is_refused_off_eks_naming_the_cluster(rendered, flavor):
    path, message = refusal(rendered, flavor, INFERENTIA)
    assert path == "/resources/devices/0/type"
    assert message.startswith(f'cluster "{CLUSTERS[flavor]}" ({flavor}) has no AWS Inferentia')


@pytest.mark.parametrize("flavor", ["gke-standard", "gke-autopilot"])
def test_gke_runs_a_single_host_tpu_slice_with_all_its_chips(rendered, flavor):
    worker = rendered(flavor, TPU)
    assert extended(worker) == {"google.com/tpu": "8"}
    assert pod(worker)["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                                           "cloud.google.com/gke-tpu-topology": "2x4"}
    assert pod(worker)["tolerations"] == [{"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize("flavor", ["eks", "aks", "kind", "generic"])
def test_tpus_are_refused_off_gke_naming_the_cluster(rendered, flavor):
    path, message = refusal(rendered, flavor, TPU)
    assert path == "/resources/devices/0/type"
    assert message.startswith(f'cluster "{CLUSTERS[flavor]}" ({flavor}) has no Cloud TPUs')


def test_a_multi_host_topology_is_refused(rendered):
    path, message = refusal(rendered, "gke-standard", TPU.replace("2x4", "4x4"))
    assert path == "/resources/devices/0/topology" and "single-host" in message and "2x4" in message


def test_a_tpu_type_gke_does_not_offer_is_refused(rendered):
    path, message = refusal(rendered, "gke-standard", TPU.replace("tpu-v5-lite-podslice", "tpu-v9-hyper"))
    assert path == "/resources/devices/0/name" and "tpu-v5p-slice" in message


# --- the older gpu_count form, and explicit nulls --------------------------------------------------


@pytest.mark.parametrize("flavor", ["eks", "gke-standard", "aks", "kind"])
def test_gpu_count_with_gpu_type_renders_as_the_nvidia_gpu_device_it_means(rendered, flavor):
    legacy = rendered(flavor, WORKER + "  gpu_count: 2\n  node:\n    type: node_selector\n    gpu_type: L4\n")
    current = rendered(flavor, device("type: nvidia_gpu", "name: L4", "count: 2"))
    assert pod(legacy) == pod(current) and legacy.notes == current.notes  # the spec digests differ, not the pods
    assert extended(legacy) == {"nvidia.com/gpu": "2"}


def test_an_unknown_gpu_type_is_refused_where_it_is_written(rendered):
    path, message = refusal(rendered, "gke-standard", WORKER + "  gpu_count: 1\n  node:\n    gpu_type: MI300X\n")
    assert path == "/resources/node/gpu_type" and message.startswith('GPU "MI300X" is not offered on GKE')


def test_gpu_type_without_gpu_count_and_gpu_count_beside_devices_are_refused(specs_for, cluster):
    with pytest.raises(SpecError) as error:
        specs_for(cluster("eks"), WORKER + "  node:\n    gpu_type: T4\n")
    [problem] = error.value.problems
    assert problem.path == "/resources/node/gpu_type" and "names the GPU of gpu_count, which is 0" in problem.message
    with pytest.raises(SpecError) as error:
        specs_for(cluster("eks"), device("type: nvidia_gpu", "count: 1").replace("  devices:", "  gpu_count: 1\n  devices:"))
    [problem] = error.value.problems
    assert problem.path == "/resources/gpu_count" and "older form of devices" in problem.message


def test_a_truefoundry_export_with_nulls_and_no_gpu_renders_without_one(rendered):
    export = WORKER + "  devices: null\n  node: null\n  shared_memory_size: null\n  gpu_count: 0\n"
    worker = rendered("eks", export)
    assert extended(worker) == {}
    assert {"nodeSelector", "affinity", "tolerations", "volumes"}.isdisjoint(pod(worker))
    assert dataclasses.asdict(worker.spec)["body"]["resources"] == {
        "cpu_request": 0.5, "cpu_limit": 1, "memory_request": 2048, "memory_limit": 4096, "gpu_count": 0}


def test_nulls_inside_a_device_and_a_node_are_unset_fields(rendered):
    worker = rendered("gke-standard", mig("1g.5gb", name="null") + "  node:\n    type: node_selector\n"
                      "    instance_families: null\n    capacity_type: null\n    gpu_type: null\n")
    assert extended(worker) == {"nvidia.com/gpu": "1"}
    assert pod(worker)["nodeSelector"] == {"cloud.google.com/gke-gpu-partition-size": "1g.5gb"}
    assert "affinity" not in pod(worker)


# --- /dev/shm ---------------------------------------------------------------------------------------

SHM_VOLUME = {"name": "dev-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "3000Mi"}}
SHM_MOUNT = {"name": "dev-shm", "mountPath": "/dev/shm"}


@pytest.mark.parametrize("flavor", sorted(CLUSTERS))
def test_shared_memory_is_a_memory_backed_volume_at_dev_shm(rendered, flavor):
    worker = rendered(flavor, WORKER.replace("memory_request: 2048", "memory_request: 4096")
                      + "  shared_memory_size: 3000\n")
    assert pod(worker)["volumes"] == [SHM_VOLUME]
    assert pod(worker)["containers"][0]["volumeMounts"] == [SHM_MOUNT]


def test_jobs_get_dev_shm_too(rendered):
    scheduled = (FIXTURES / "specs" / "job-scheduled.yaml").read_text()
    report = rendered("eks", scheduled.replace("resources:\n", "resources:\n  shared_memory_size: 100\n", 1))
    [workflow] = [o for o in report.objects if o["kind"] == "CronWorkflow"]
    workflow_spec = workflow["spec"]["workflowSpec"]
    assert workflow_spec["volumes"][-1] == {**SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "100Mi"}}
    assert workflow_spec["templates"][0]["container"]["volumeMounts"][-1] == SHM_MOUNT


def test_shared_memory_above_the_memory_limit_is_refused(specs_for, cluster):
    with pytest.raises(SpecError) as error:
        specs_for(cluster("kind"), WORKER + "  shared_memory_size: 5000\n")
    [problem] = error.value.problems
    assert problem.path == "/resources/shared_memory_size" and problem.line == 12
    assert "above memory_limit (4096 MB)" in problem.message


def test_shared_memory_above_the_default_memory_limit_says_it_is_the_default(specs_for, cluster):
    spec = WORKER.replace("  memory_request: 2048\n  memory_limit: 4096\n", "") + "  shared_memory_size: 600\n"
    with pytest.raises(SpecError) as error:
        specs_for(cluster("kind"), spec)
    [problem] = error.value.problems
    assert "above the default memory limit (500 MB)" in problem.message


def test_shared_memory_must_fit_the_limit_autopilot_lowers_to_the_request(rendered, cluster):
    old = dataclasses.replace(cluster("gke-autopilot"), kubernetes_version="1.30")
    path, message = refusal(rendered, old, WORKER + "  shared_memory_size: 3000\n")
    assert path == "/resources/shared_memory_size"
    assert "(2048 MB, which gke-autopilot sets to memory_request)" in message
