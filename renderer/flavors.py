"""Where pods may run and what they may ask for, per cluster flavor.

Each managed Kubernetes names spot capacity, GPU models, machine families and
node pools with labels and taints of its own, shares a GPU its own way (GKE
labels MIG partitions and time-shared GPUs; elsewhere the NVIDIA GPU Operator's
device plugin advertises them), and offers accelerators of its own cloud only
(Inferentia on EKS, TPUs on GKE); GKE Autopilot also insists that limits equal
requests. A flavor is data (:class:`Flavor` in ``FLAVORS``); this module turns
the spec's ``resources`` into container resources plus the pod's nodeSelector,
affinity, tolerations and its /dev/shm volume for one flavor, says in ``notes``
what it had to change or cannot enforce, and refuses (:class:`PlacementError`)
what the flavor cannot give. :func:`resource_problems` holds the checks that
need no flavor: the spec loader reports them with the schema's.

Field names and meanings follow TrueFoundry's ``Resources`` model (its Python
SDK): ``devices`` (NvidiaGPU, NvidiaMIGGPU, NvidiaTimeslicingGPU, AWSInferentia,
GcpTPU), ``node`` (NodeSelector, NodepoolSelector), ``shared_memory_size``, and
the older ``gpu_count`` with ``node.gpu_type``, read as the nvidia_gpu they mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULTS = {
    "cpu_request": 0.2,
    "cpu_limit": 0.5,
    "memory_request": 200,
    "memory_limit": 500,
    "ephemeral_storage_request": 1000,
    "ephemeral_storage_limit": 2000,
}

# GPU model names (TrueFoundry's) -> GKE accelerator label values.
GKE_ACCELERATORS = {
    "T4": "nvidia-tesla-t4",
    "L4": "nvidia-l4",
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "P4": "nvidia-tesla-p4",
    "A100_40GB": "nvidia-tesla-a100",
    "A100_80GB": "nvidia-a100-80gb",
    "H100_80GB": "nvidia-h100-80gb",
    "H100_MEGA_80GB": "nvidia-h100-mega-80gb",
    "H200_141GB": "nvidia-h200-141gb",
}

# GPU model names -> the instance-gpu-name label Karpenter puts on EKS nodes.
EKS_GPU_NAMES = {
    "T4": "t4",
    "T4G": "t4g",
    "L4": "l4",
    "L40S": "l40s",
    "A10G": "a10g",
    "V100": "v100",
    "A100_40GB": "a100",
    "A100_80GB": "a100",
    "H100_80GB": "h100",
    "H200_141GB": "h200",
}

# Karpenter names both A100s "a100"; its instance-gpu-memory label (MiB of memory per GPU, as EC2
# reports it: 40 GiB on p4d, 80 GiB on p4de) tells them apart. Compared, not matched, so that the
# exact figure EC2 reports cannot make a pod unschedulable.
EKS_GPU_REQUIREMENTS = {
    "A100_40GB": ({"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Lt", "values": ["61440"]},),
    "A100_80GB": ({"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt", "values": ["61440"]},),
}

# Memory of one card of each GPU model, in MB as TrueFoundry's NvidiaGPU documents it (GB x 1024):
# how many pods a time-shared GPU may take while each keeps the gpu_memory it asks for.
GPU_MEMORY = {
    "P4": 8 * 1024, "P100": 16 * 1024, "V100": 16 * 1024, "T4": 16 * 1024, "T4G": 16 * 1024,
    "A10G": 24 * 1024, "L4": 24 * 1024, "L40S": 48 * 1024, "A100_40GB": 40 * 1024, "A100_80GB": 80 * 1024,
    "H100_80GB": 80 * 1024, "H100_MEGA_80GB": 80 * 1024, "H200_141GB": 141 * 1024,
}

# The MIG profiles each GPU model offers (NVIDIA MIG User Guide, "Supported MIG Profiles", which
# TrueFoundry's NvidiaMIGGPU.profile refers to); a GPU model missing here has no MIG.
_MIG_80GB = ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
MIG_PROFILES = {
    "A100_40GB": ("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    "A100_80GB": _MIG_80GB,
    "H100_80GB": _MIG_80GB,
    "H100_MEGA_80GB": _MIG_80GB,
    "H100_94GB": ("1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
    "H100_96GB": ("1g.12gb", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
    "H200_141GB": ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
}

# TPU types (GKE's cloud.google.com/gke-tpu-accelerator values) -> their single-host topologies
# (GKE "Plan TPUs in GKE"; TrueFoundry's GcpTPU runs single-host slices only). A slice's chips are
# the product of its topology, all on one node.
TPU_TOPOLOGIES = {
    "tpu-v4-podslice": ("2x2x1",),
    "tpu-v5-lite-device": ("1x1", "2x2", "2x4"),
    "tpu-v5-lite-podslice": ("1x1", "2x2", "2x4"),
    "tpu-v5p-slice": ("2x2x1",),
    "tpu-v6e-slice": ("1x1", "2x2", "2x4"),
}

# AWS Inferentia accelerators (TrueFoundry's AWSInferentia.name) -> their EC2 instance family.
INFERENTIA_FAMILIES = {"INF1": "inf1", "INF2": "inf2"}

NVIDIA_GPU = "nvidia.com/gpu"
NEURON = "aws.amazon.com/neuron"  # one Inferentia chip (Karpenter, "Accelerators/GPU Resources")
TPU = "google.com/tpu"  # TPU chips of the node (GKE "Deploy TPU workloads")


def mig_resource(profile: str) -> str:
    """The extended resource the NVIDIA device plugin advertises for a MIG profile under its
    "mixed" strategy (GPU Feature Discovery: MIG_TYPE=mig-<slices>g.<memory>gb)."""
    return f"nvidia.com/mig-{profile}"


# Extended resources the renderer may request beside nvidia.com/gpu, for workspace quotas.
EXTENDED_RESOURCES = (NEURON, TPU, *sorted({mig_resource(p) for profiles in MIG_PROFILES.values() for p in profiles}))

_GPU_TOLERATION = {"key": NVIDIA_GPU, "operator": "Exists", "effect": "NoSchedule"}
# Neuron node pools carry this taint (EKS Workshop's Karpenter NodePool for inf2/trn1)
_NEURON_TOLERATION = {"key": NEURON, "operator": "Exists", "effect": "NoSchedule"}
# GKE taints TPU nodes google.com/tpu (About TPUs in GKE); Exists matches whatever value it has
_TPU_TOLERATION = {"key": TPU, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class SpotCapacity:
    """How a flavor marks spot nodes: the node label, its spot value, its on-demand value (None:
    on-demand nodes lack the label) and the taint spot nodes carry, when they carry one."""

    label: str
    spot: str
    on_demand: str | None = None
    toleration: dict | None = None


@dataclass(frozen=True)
class GpuModels:
    """How a flavor pins a GPU model: the node label and the label value of each model name,
    ``where`` naming the platform in messages, and node requirements a model needs beyond its
    label (``requirements``: matchExpressions, when the label is shared by several models)."""

    label: str
    values: dict[str, str]
    where: str
    requirements: dict[str, tuple[dict, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class TimeSharing:
    """How a flavor marks nodes whose GPUs are time-shared: ``labels`` every such node carries,
    ``clients_label`` the node label saying how many pods share one GPU (at most ``max_clients``),
    ``since`` the first Kubernetes minor version that has them (None: any)."""

    clients_label: str
    labels: dict[str, str] = field(default_factory=dict)
    max_clients: int | None = None
    since: str | None = None


# NVIDIA's device plugin, time-slicing configured (GPU Operator "Time-Slicing GPUs in Kubernetes"):
# shared GPUs stay nvidia.com/gpu, and GPU Feature Discovery labels the node nvidia.com/gpu.replicas
# with the pods one GPU is shared by (1 when it is not shared).
_DEVICE_PLUGIN_TIME_SLICING = TimeSharing("nvidia.com/gpu.replicas")
# GKE labels time-shared GPU nodes itself, up to 48 clients a GPU ("GPU time-sharing on GKE")
_GKE_TIME_SHARING = TimeSharing("cloud.google.com/gke-max-shared-clients-per-gpu",
                                {"cloud.google.com/gke-gpu-sharing-strategy": "time-sharing"}, 48)


@dataclass(frozen=True)
class Flavor:
    """What one managed Kubernetes needs of a pod: data, read by :func:`place`.

    ``gpu_models`` None: the flavor has no standard model label (``gpu_nodes`` may still
    select GPU nodes, ``gpu_note`` says what is not enforced). ``limits_equal_requests_before``:
    on Kubernetes versions below this one the platform refuses pods whose limits differ from their
    requests (GKE Autopilot before Pod bursting). ``gpu_partition_label``: MIG partitions are plain
    nvidia.com/gpu on nodes labelled with their size (GKE); None: the device plugin's "mixed"
    strategy, one extended resource per profile. ``accelerators``: device types beyond NVIDIA GPUs.
    ``instance_family_label``/``nodepool_label`` None: nodes carry no such label (``*_lack`` says
    so, after the cluster's name). ``made_to_order``: the platform creates a node for each pod's
    nodeSelector (Autopilot), so selectors name one exact value. ``karpenter_note``: Karpenter
    launches nodes only for the labels and resources it knows; said of the others.
    """

    name: str
    spot: SpotCapacity | None = None
    gpu_models: GpuModels | None = None
    gpu_nodes: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict, ...] = ()
    gpu_note: str = "{flavor} clusters have no standard GPU model label; \"{name}\" is not enforced"
    limits_equal_requests_before: str | None = None
    gpu_partition_label: str | None = None
    time_sharing: TimeSharing = _DEVICE_PLUGIN_TIME_SLICING
    accelerators: frozenset[str] = frozenset()
    instance_family_label: str | None = None
    instance_family_lack: str = "has no standard node label for instance families to select by; drop instance_families"
    nodepool_label: str | None = None
    nodepool_lack: str = "has no standard node label for node pools to select by; drop node type nodepool_selector"
    made_to_order: bool = False
    karpenter_note: bool = False

    def limits_equal_requests(self, kubernetes_version: str) -> bool:
        """Whether pods on this flavor at ``kubernetes_version`` ("1.33") must have limits equal to requests."""
        if self.limits_equal_requests_before is None:
            return False
        return _minor(kubernetes_version) < _minor(self.limits_equal_requests_before)


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


_GKE_SPOT = SpotCapacity("cloud.google.com/gke-spot", "true", None,
                         {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"})
_GKE_GPUS = GpuModels("cloud.google.com/gke-accelerator", GKE_ACCELERATORS, "offered on GKE")
_GKE = {
    "spot": _GKE_SPOT,
    "gpu_models": _GKE_GPUS,
    # "Running multi-instance GPUs": each partition is an nvidia.com/gpu on nodes of that partition size
    "gpu_partition_label": "cloud.google.com/gke-gpu-partition-size",
    "accelerators": frozenset({"gcp_tpu"}),
    "instance_family_label": "cloud.google.com/machine-family",
}

FLAVORS: dict[str, Flavor] = {flavor.name: flavor for flavor in (
    Flavor("eks", spot=SpotCapacity("karpenter.sh/capacity-type", "spot", "on-demand"),
           gpu_models=GpuModels("karpenter.k8s.aws/instance-gpu-name", EKS_GPU_NAMES, "known on EKS",
                                EKS_GPU_REQUIREMENTS),
           accelerators=frozenset({"aws_inferentia"}),
           # Karpenter's well-known labels ("Scheduling"): the EC2 instance family, and the NodePool a node came from
           instance_family_label="karpenter.k8s.aws/instance-family", nodepool_label="karpenter.sh/nodepool",
           karpenter_note=True),
    Flavor("gke-standard", time_sharing=_GKE_TIME_SHARING, nodepool_label="cloud.google.com/gke-nodepool", **_GKE),
    # Autopilot lets pods burst (limits above requests) from GKE 1.30.2-gke.1394000 on ("Configure Pod
    # bursting in GKE"); a profile names the minor version only, so 1.30 is taken as before it. It makes
    # nodes for what pods select: one machine series ("Optimize Autopilot Pod performance by choosing a
    # machine series"), time-shared GPUs from 1.29.3-gke.1093000 (so from 1.30 here), and node pools of its own.
    Flavor("gke-autopilot", limits_equal_requests_before="1.31", made_to_order=True,
           time_sharing=TimeSharing(_GKE_TIME_SHARING.clients_label, _GKE_TIME_SHARING.labels, 48, since="1.30"),
           nodepool_lack="creates and manages its own node pools, which pods cannot pick; "
                         "select hardware with devices or node_selector instance_families",
           **_GKE),
    Flavor("aks", spot=SpotCapacity("kubernetes.azure.com/scalesetpriority", "spot", None,
                                    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
                                     "value": "spot", "effect": "NoSchedule"}),
           gpu_nodes={"kubernetes.azure.com/accelerator": "nvidia"},
           gpu_tolerations=({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},),
           gpu_note='aks selects GPU nodes by accelerator only; pin the model "{name}" with a node pool',
           # AKS labels each node with its node pool ("Use labels in an AKS cluster"); a VM size, not a family
           nodepool_label="kubernetes.azure.com/agentpool",
           instance_family_lack="has no instance-family node label (AKS labels node.kubernetes.io/instance-type with "
                                "the VM size only); pick the node pools with node type nodepool_selector"),
    Flavor("kind"),
    Flavor("generic"),
)}


def flavor_named(name: str) -> Flavor:
    """The flavor ``name`` (the profile schema allows only these), or a plain one for any other."""
    return FLAVORS.get(name) or Flavor(name)


@dataclass
class Placement:
    resources: dict
    node_selector: dict = field(default_factory=dict)
    affinity: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    required: list[dict] = field(default_factory=list)  # node matchExpressions every node must meet
    volumes: list[dict] = field(default_factory=list)  # the pod's, for resources.shared_memory_size
    volume_mounts: list[dict] = field(default_factory=list)  # the container's


class PlacementError(ValueError):
    """The spec asks for something this flavor cannot give; ``path`` locates it."""

    def __init__(self, message: str, path: tuple):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Device:
    """One device the spec asks for: an entry of ``resources.devices`` (``index``), or the older
    ``gpu_count`` with ``node.gpu_type`` as the nvidia_gpu they mean (``index`` None)."""

    spec: dict
    index: int | None

    @property
    def type(self) -> str:
        return self.spec.get("type", "nvidia_gpu")

    def path(self, field_name: str | None = None) -> tuple:
        """Where ``field_name`` of this device is written in the spec."""
        if self.index is not None:
            return ("resources", "devices", self.index, *((field_name,) if field_name else ()))
        return ("resources", "node", "gpu_type") if field_name == "name" else ("resources", "gpu_count")


def devices(spec_resources: dict) -> list[Device]:
    """The devices ``resources`` asks for, the older gpu_count form read as an nvidia_gpu."""
    listed = spec_resources.get("devices") or []
    if listed:
        return [Device(device, index) for index, device in enumerate(listed)]
    if spec_resources.get("gpu_count"):
        legacy = {"type": "nvidia_gpu", "count": spec_resources["gpu_count"]}
        if gpu_type := (spec_resources.get("node") or {}).get("gpu_type"):
            legacy["name"] = gpu_type
        return [Device(legacy, None)]
    return []


def resource_problems(spec_resources: dict) -> list[tuple[str, tuple]]:
    """(message, path) of each problem of ``resources`` that holds on every flavor."""
    problems = []
    listed = spec_resources.get("devices") or []
    gpu_type = (spec_resources.get("node") or {}).get("gpu_type")
    if len(listed) > 1:
        problems.append(("one GPU model per app: list a single device and put the count on it",
                         ("resources", "devices", 1)))
    if spec_resources.get("gpu_count") and listed:
        problems.append(("gpu_count is the older form of devices; ask for the GPUs in devices only",
                         ("resources", "gpu_count")))
    if gpu_type and not spec_resources.get("gpu_count"):
        message = (f'gpu_type "{gpu_type}" names the GPU of gpu_count, which is 0; set gpu_count, '
                   f'or list a nvidia_gpu device named "{gpu_type}"')
        problems.append((message, ("resources", "node", "gpu_type")))
    for device in devices(spec_resources)[:1]:
        problems.extend(_device_problems(device))
    shm = spec_resources.get("shared_memory_size")
    if shm is not None and shm > (limit := _amounts(spec_resources)["memory_limit"]):
        # a memory-backed emptyDir counts against the container's memory limit (Kubernetes "Volumes", emptyDir)
        given = "memory_limit" if spec_resources.get("memory_limit") is not None else "the default memory limit"
        message = (f"shared_memory_size ({shm} MB) is above {given} ({limit} MB): /dev/shm is memory and counts "
                   "against the limit; raise memory_limit or lower shared_memory_size")
        problems.append((message, ("resources", "shared_memory_size")))
    return problems


def _device_problems(device: Device) -> list[tuple[str, tuple]]:
    spec, name = device.spec, device.spec.get("name")
    if device.type == "nvidia_mig_gpu" and name in GPU_MEMORY:
        offered = MIG_PROFILES.get(name)
        if offered is None:
            capable = ", ".join(sorted(model for model in MIG_PROFILES if model in GPU_MEMORY))
            return [(f'GPU "{name}" has no MIG partitions; MIG needs one of {capable}', device.path("name"))]
        if spec["profile"] not in offered:
            message = f'MIG profile "{spec["profile"]}" is not one the {name} offers; use one of {", ".join(offered)}'
            return [(message, device.path("profile"))]
    if device.type == "nvidia_timeslicing_gpu" and name in GPU_MEMORY and _clients(spec) < 2:
        message = (f"gpu_memory {spec['gpu_memory']} MB is more than half of a {name} ({GPU_MEMORY[name]} MB): no "
                   f"time-shared {name} leaves that much to each pod; ask for a whole nvidia_gpu instead")
        return [(message, device.path("gpu_memory"))]
    if device.type == "gcp_tpu" and (topologies := TPU_TOPOLOGIES.get(name)) and spec["topology"] not in topologies:
        message = f'topology "{spec["topology"]}" is not a single-host slice of {name}; use one of {", ".join(topologies)}'
        return [(message, device.path("topology"))]
    return []


def _clients(timeslicing_gpu: dict) -> int:
    """How many pods one GPU of the named model may be shared by, each keeping the gpu_memory asked for."""
    return GPU_MEMORY[timeslicing_gpu["name"]] // timeslicing_gpu["gpu_memory"]


def cpu_quantity(cores: float) -> str:
    # the spec holds whole millicores (renderer.spec), so the rounding only drops float noise
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def mebibytes(value: int | float) -> str:
    # int(): a whole number may arrive as a float (1e3 in YAML, 1000.0 in JSON); a quantity says 1000Mi
    return f"{int(value)}Mi"


def _amounts(spec_resources: dict) -> dict:
    values = {k: spec_resources.get(k) for k in DEFAULTS}
    for kind in ("cpu", "memory", "ephemeral_storage"):
        request, limit = values[f"{kind}_request"], values[f"{kind}_limit"]
        if request is None and limit is None:
            request, limit = DEFAULTS[f"{kind}_request"], DEFAULTS[f"{kind}_limit"]
        elif request is None:
            request = min(DEFAULTS[f"{kind}_request"], limit)
        elif limit is None:
            limit = max(DEFAULTS[f"{kind}_limit"], request)
        values[f"{kind}_request"], values[f"{kind}_limit"] = request, limit
    return values


@dataclass(frozen=True)
class _Target:
    """The cluster a placement is for: its flavor, its Kubernetes version and, for messages, its name."""

    flavor: Flavor
    kubernetes_version: str
    cluster: str | None = None

    @property
    def who(self) -> str:
        """The cluster as the subject of a refusal: 'cluster "prod-eks" (eks)'."""
        return f'cluster "{self.cluster}" ({self.flavor.name})' if self.cluster else f"a {self.flavor.name} cluster"


def place(spec_resources: dict | None, flavor_name: str, kubernetes_version: str, cluster: str | None = None) -> Placement:
    """Container resources and pod scheduling for one flavor at one Kubernetes version; ``cluster``
    names the cluster in refusals. Pure."""
    flavor = flavor_named(flavor_name)
    target = _Target(flavor, kubernetes_version, cluster)
    spec_resources = spec_resources or {}
    amounts = _amounts(spec_resources)
    notes: list[str] = []
    if flavor.limits_equal_requests(kubernetes_version):
        for kind in ("cpu", "memory", "ephemeral_storage"):
            request, limit = amounts[f"{kind}_request"], amounts[f"{kind}_limit"]
            if request != limit:
                notes.append(
                    f"{flavor.name} needs requests equal to limits: {kind}_limit set to {kind}_request ({request})"
                )
                amounts[f"{kind}_limit"] = request
    requests = {
        "cpu": cpu_quantity(amounts["cpu_request"]),
        "memory": mebibytes(amounts["memory_request"]),
        "ephemeral-storage": mebibytes(amounts["ephemeral_storage_request"]),
    }
    limits = {
        "cpu": cpu_quantity(amounts["cpu_limit"]),
        "memory": mebibytes(amounts["memory_limit"]),
        "ephemeral-storage": mebibytes(amounts["ephemeral_storage_limit"]),
    }
    placement = Placement(resources={"requests": requests, "limits": limits}, notes=notes)

    asked = devices(spec_resources)
    if len(asked) > 1:
        raise PlacementError("one GPU model per app: list a single device and put the count on it", asked[1].path())
    for device in asked:
        _PLACE_DEVICE[device.type](placement, device, target)
    node = spec_resources.get("node") or {}
    if node.get("type") == "nodepool_selector":
        _place_nodepools(placement, node.get("nodepools") or [], target)
    else:
        if node.get("instance_families"):
            _place_instance_families(placement, node["instance_families"], target)
        if node.get("capacity_type"):
            _place_capacity(placement, node["capacity_type"], flavor)
    if placement.required:
        _require(placement)
    if spec_resources.get("shared_memory_size") is not None:
        _place_shared_memory(placement, spec_resources["shared_memory_size"], amounts["memory_limit"],
                             flavor.limits_equal_requests(kubernetes_version) and flavor.name)
    return placement


def _require(placement: Placement) -> None:
    """The required node expressions, in every term of the required node affinity (a node must meet
    one term: each term gets them all), beside what capacity placed there."""
    node_affinity = placement.affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution",
                                        {"nodeSelectorTerms": [{"matchExpressions": []}]})
    for term in required["nodeSelectorTerms"]:
        term.setdefault("matchExpressions", []).extend(dict(e) for e in placement.required)


def _request(placement: Placement, resource: str, count: int) -> None:
    # extended resources cannot be overcommitted: the request must equal the limit (Kubernetes
    # "Managing Resources for Containers", extended resources); a whole count is written "2"
    placement.resources["limits"][resource] = str(int(count))
    placement.resources["requests"][resource] = str(int(count))


def _place_gpu(placement: Placement, device: Device, target: _Target) -> None:
    _request(placement, NVIDIA_GPU, device.spec.get("count", 1))
    placement.tolerations.append(dict(_GPU_TOLERATION))
    _select_gpu_model(placement, device, target.flavor)


def _select_gpu_model(placement: Placement, device: Device, flavor: Flavor) -> None:
    """Pin the GPU model the device names, by the flavor's model label, or select GPU nodes at least."""
    name = device.spec.get("name")
    if not name:
        return
    models = flavor.gpu_models
    if models is not None:
        label = models.values.get(name)
        if label is None:
            raise PlacementError(
                f'GPU "{name}" is not {models.where}; use one of {", ".join(sorted(models.values))}', device.path("name"))
        placement.node_selector[models.label] = label
        placement.required.extend(dict(expression) for expression in models.requirements.get(name, ()))
        return
    placement.node_selector.update(flavor.gpu_nodes)
    placement.tolerations.extend(dict(toleration) for toleration in flavor.gpu_tolerations)
    placement.notes.append(flavor.gpu_note.format(flavor=flavor.name, name=name))


def _place_mig_gpu(placement: Placement, device: Device, target: _Target) -> None:
    """One MIG partition of the device's profile (TrueFoundry's NvidiaMIGGPU has no count)."""
    flavor, profile = target.flavor, device.spec["profile"]
    if flavor.gpu_partition_label:
        _request(placement, NVIDIA_GPU, 1)
        placement.node_selector[flavor.gpu_partition_label] = profile
    else:
        # the GPU Operator's mig.strategy "mixed" ("GPU Operator with MIG"), as AKS MIG node pools with the
        # mixed strategy advertise too (AKS "managed GPU nodes"): one resource per profile
        resource = mig_resource(profile)
        _request(placement, resource, 1)
        if flavor.karpenter_note:
            placement.notes.append(
                f"{flavor.name}: Karpenter launches nodes for {resource} only where a NodeOverlay adds it to the "
                "instance types (Karpenter \"NodeOverlays\"); the nodes' NVIDIA GPU Operator needs mig.strategy mixed")
    placement.tolerations.append(dict(_GPU_TOLERATION))
    _select_gpu_model(placement, device, flavor)


def _place_timeslicing_gpu(placement: Placement, device: Device, target: _Target) -> None:
    """A share of a time-shared GPU: one nvidia.com/gpu on a node whose GPUs are shared by no more pods
    than leave each the gpu_memory asked for (GKE allows one time-shared nvidia.com/gpu per container)."""
    flavor = target.flavor
    sharing = flavor.time_sharing
    if sharing.since and _minor(target.kubernetes_version) < _minor(sharing.since):
        raise PlacementError(f"{target.who} has no time-shared GPUs before Kubernetes {sharing.since} (it runs "
                             f"{target.kubernetes_version}); ask for a whole nvidia_gpu", device.path("type"))
    _request(placement, NVIDIA_GPU, 1)
    placement.tolerations.append(dict(_GPU_TOLERATION))
    _select_gpu_model(placement, device, flavor)
    placement.node_selector.update(sharing.labels)
    name = device.spec.get("name")
    clients = _clients(device.spec) if name in GPU_MEMORY else None
    if clients is not None and sharing.max_clients:
        clients = min(clients, sharing.max_clients)
    if flavor.made_to_order:
        if clients is None:
            raise PlacementError(f"{flavor.name} makes time-shared GPU nodes to order, for a number of pods per GPU: "
                                 f"name the GPU (one of {', '.join(sorted(GPU_MEMORY))}) so that gpu_memory gives it",
                                 device.path("name" if name else None))
        placement.node_selector[sharing.clients_label] = str(clients)
        return
    if not sharing.labels:  # nodes whose GPUs are shared say so by sharing them among more than one
        placement.required.append({"key": sharing.clients_label, "operator": "Gt", "values": ["1"]})
    if clients is not None:
        placement.required.append({"key": sharing.clients_label, "operator": "Lt", "values": [str(clients + 1)]})
    else:
        placement.notes.append(f"gpu_memory is not enforced: without the GPU's name, how many pods may share one "
                               f"GPU is unknown, so any time-shared GPU node of {flavor.name} may run the app")
    if flavor.karpenter_note and not sharing.labels:
        placement.notes.append(f"{flavor.name}: Karpenter launches nodes for the label {sharing.clients_label} only "
                               "from a NodePool that declares it; time-slicing is the NVIDIA device plugin's config")


def _place_inferentia(placement: Placement, device: Device, target: _Target) -> None:
    if "aws_inferentia" not in target.flavor.accelerators:
        raise PlacementError(f"{target.who} has no AWS Inferentia: its chips come with EC2 inf1/inf2 instances, "
                             "which only an eks cluster runs", device.path("type"))
    _request(placement, NEURON, device.spec["count"])
    placement.tolerations.append(dict(_NEURON_TOLERATION))
    if name := device.spec.get("name"):
        placement.node_selector[target.flavor.instance_family_label] = INFERENTIA_FAMILIES[name]


def _place_tpu(placement: Placement, device: Device, target: _Target) -> None:
    if "gcp_tpu" not in target.flavor.accelerators:
        raise PlacementError(f"{target.who} has no Cloud TPUs: TPU slices come with GKE node pools only",
                             device.path("type"))
    name, topology = device.spec["name"], device.spec["topology"]
    if name not in TPU_TOPOLOGIES:
        raise PlacementError(f'TPU "{name}" is not a single-host TPU type GKE offers; use one of '
                             f'{", ".join(TPU_TOPOLOGIES)}', device.path("name"))
    chips = 1
    for side in topology.split("x"):
        chips *= int(side)
    # "Deploy TPU workloads in GKE": the node's chips, on nodes of that TPU type and topology
    _request(placement, TPU, chips)
    placement.node_selector["cloud.google.com/gke-tpu-accelerator"] = name
    placement.node_selector["cloud.google.com/gke-tpu-topology"] = topology
    placement.tolerations.append(dict(_TPU_TOLERATION))


_PLACE_DEVICE = {
    "nvidia_gpu": _place_gpu,
    "nvidia_mig_gpu": _place_mig_gpu,
    "nvidia_timeslicing_gpu": _place_timeslicing_gpu,
    "aws_inferentia": _place_inferentia,
    "gcp_tpu": _place_tpu,
}


def _place_instance_families(placement: Placement, families: list[str], target: _Target) -> None:
    path = ("resources", "node", "instance_families")
    flavor = target.flavor
    label = flavor.instance_family_label
    if label is None:
        raise PlacementError(f"{target.who} {flavor.instance_family_lack}", path)
    if flavor.made_to_order:
        if len(families) > 1:
            raise PlacementError(f"{target.who} makes a node of one machine series per pod (its {label} node "
                                 "selector); name a single instance family", path + (1,))
        placement.node_selector[label] = families[0]
        return
    placement.required.append({"key": label, "operator": "In", "values": list(families)})


def _place_nodepools(placement: Placement, nodepools: list[str], target: _Target) -> None:
    if not nodepools:
        return
    label = target.flavor.nodepool_label
    if label is None:
        raise PlacementError(f"{target.who} {target.flavor.nodepool_lack}", ("resources", "node", "nodepools"))
    placement.required.append({"key": label, "operator": "In", "values": list(nodepools)})


def _place_capacity(placement: Placement, capacity: str, flavor: Flavor) -> None:
    spot = flavor.spot
    if spot is None:
        placement.notes.append(f"{flavor.name} clusters have no spot capacity; capacity_type {capacity} is ignored")
        return
    label, toleration = spot.label, spot.toleration
    if capacity == "spot":
        placement.node_selector[label] = spot.spot
        if toleration:
            placement.tolerations.append(dict(toleration))
    elif capacity == "on_demand":
        if spot.on_demand is not None:
            placement.node_selector[label] = spot.on_demand
        else:
            placement.affinity = _required(label, "NotIn", [spot.spot])
    else:  # spot_fallback_on_demand: prefer spot, run anywhere when there is none
        placement.affinity = {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "preference": {"matchExpressions": [{"key": label, "operator": "In", "values": [spot.spot]}]},
                    }
                ]
            }
        }
        if toleration:
            placement.tolerations.append(dict(toleration))


def _place_shared_memory(placement: Placement, size: int, limit: float, limit_set_by: str | bool) -> None:
    """A memory-backed emptyDir of ``size`` MB at /dev/shm, where PyTorch and NCCL share tensors between
    processes (TrueFoundry's shared_memory_size): it counts against the container's memory limit
    (Kubernetes "Volumes", emptyDir: medium Memory), so it must fit in the limit the container gets;
    ``limit_set_by`` names the flavor that lowered that limit to the request, if one did."""
    if size > limit:
        why = f", which {limit_set_by} sets to memory_request" if limit_set_by else ""
        raise PlacementError(f"shared_memory_size ({size} MB) is above the memory limit ({limit} MB{why}); /dev/shm "
                             "counts against it: lower shared_memory_size or raise the memory",
                             ("resources", "shared_memory_size"))
    placement.volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": mebibytes(size)}})
    placement.volume_mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})


SHM_VOLUME = "dev-shm"


def _required(label: str, operator: str, values: list[str]) -> dict:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": label, "operator": operator, "values": values}]}]
            }
        }
    }


__all__ = ["place", "Placement", "PlacementError", "cpu_quantity", "DEFAULTS", "Flavor", "FLAVORS", "flavor_named",
           "EKS_GPU_REQUIREMENTS", "GPU_MEMORY", "MIG_PROFILES", "TPU_TOPOLOGIES", "EXTENDED_RESOURCES",
           "Device", "devices", "resource_problems", "mig_resource", "SHM_VOLUME",
           "SpotCapacity", "GpuModels", "TimeSharing"]
