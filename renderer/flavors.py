"""Where pods may run and what they may ask for, per cluster flavor.

Each managed Kubernetes names spot capacity and GPU models with labels and
taints of its own; GKE Autopilot also insists that limits equal requests.
A flavor is data (:class:`Flavor` in ``FLAVORS``); this module turns the
spec's ``resources`` into container resources plus the pod's nodeSelector,
affinity and tolerations for one flavor, and says in ``notes`` what it had
to change.
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

_GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


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
class Flavor:
    """What one managed Kubernetes needs of a pod: data, read by :func:`place`.

    ``gpu_models`` None: the flavor has no standard model label (``gpu_nodes`` may still
    select GPU nodes, ``gpu_note`` says what is not enforced). ``limits_equal_requests_before``:
    on Kubernetes versions below this one the platform refuses pods whose limits differ from their
    requests (GKE Autopilot before Pod bursting).
    """

    name: str
    spot: SpotCapacity | None = None
    gpu_models: GpuModels | None = None
    gpu_nodes: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict, ...] = ()
    gpu_note: str = "{flavor} clusters have no standard GPU model label; \"{name}\" is not enforced"
    limits_equal_requests_before: str | None = None

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

FLAVORS: dict[str, Flavor] = {flavor.name: flavor for flavor in (
    Flavor("eks", spot=SpotCapacity("karpenter.sh/capacity-type", "spot", "on-demand"),
           gpu_models=GpuModels("karpenter.k8s.aws/instance-gpu-name", EKS_GPU_NAMES, "known on EKS",
                                EKS_GPU_REQUIREMENTS)),
    Flavor("gke-standard", spot=_GKE_SPOT, gpu_models=_GKE_GPUS),
    # Autopilot lets pods burst (limits above requests) from GKE 1.30.2-gke.1394000 on ("Configure Pod
    # bursting in GKE"); a profile names the minor version only, so 1.30 is taken as before it
    Flavor("gke-autopilot", spot=_GKE_SPOT, gpu_models=_GKE_GPUS, limits_equal_requests_before="1.31"),
    Flavor("aks", spot=SpotCapacity("kubernetes.azure.com/scalesetpriority", "spot", None,
                                    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
                                     "value": "spot", "effect": "NoSchedule"}),
           gpu_nodes={"kubernetes.azure.com/accelerator": "nvidia"},
           gpu_tolerations=({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},),
           gpu_note='aks selects GPU nodes by accelerator only; pin the model "{name}" with a node pool'),
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


class PlacementError(ValueError):
    """The spec asks for something this flavor cannot give; ``path`` locates it."""

    def __init__(self, message: str, path: tuple):
        super().__init__(message)
        self.path = path


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


def place(spec_resources: dict | None, flavor_name: str, kubernetes_version: str) -> Placement:
    """Container resources and pod scheduling for one flavor at one Kubernetes version. Pure."""
    flavor = flavor_named(flavor_name)
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

    gpus = [d for d in spec_resources.get("devices") or [] if d.get("type") == "nvidia_gpu"]
    if gpus:
        _place_gpus(placement, gpus, flavor)
    capacity = (spec_resources.get("node") or {}).get("capacity_type")
    if capacity:
        _place_capacity(placement, capacity, flavor)
    if placement.required:
        _require(placement)
    return placement


def _require(placement: Placement) -> None:
    """The required node expressions, in every term of the required node affinity (a node must meet
    one term: each term gets them all), beside what capacity placed there."""
    node_affinity = placement.affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution",
                                        {"nodeSelectorTerms": [{"matchExpressions": []}]})
    for term in required["nodeSelectorTerms"]:
        term.setdefault("matchExpressions", []).extend(dict(e) for e in placement.required)


def _place_gpus(placement: Placement, gpus: list[dict], flavor: Flavor) -> None:
    if len(gpus) > 1:
        raise PlacementError("ask for one GPU model per app; put the count on a single device", ("resources", "devices", 1))
    gpu = gpus[0]
    count = int(gpu.get("count", 1))  # 2.0 is a whole count; an extended resource is written "2"
    placement.resources["limits"]["nvidia.com/gpu"] = str(count)
    placement.resources["requests"]["nvidia.com/gpu"] = str(count)
    placement.tolerations.append(dict(_GPU_TOLERATION))
    name = gpu.get("name")
    if not name:
        return
    models = flavor.gpu_models
    if models is not None:
        label = models.values.get(name)
        if label is None:
            raise PlacementError(
                f'GPU "{name}" is not {models.where}; use one of {", ".join(sorted(models.values))}',
                ("resources", "devices", 0, "name"),
            )
        placement.node_selector[models.label] = label
        placement.required.extend(dict(expression) for expression in models.requirements.get(name, ()))
        return
    placement.node_selector.update(flavor.gpu_nodes)
    placement.tolerations.extend(dict(toleration) for toleration in flavor.gpu_tolerations)
    placement.notes.append(flavor.gpu_note.format(flavor=flavor.name, name=name))


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


def _required(label: str, operator: str, values: list[str]) -> dict:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": label, "operator": operator, "values": values}]}]
            }
        }
    }


__all__ = ["place", "Placement", "PlacementError", "cpu_quantity", "DEFAULTS", "Flavor", "FLAVORS", "flavor_named",
           "EKS_GPU_REQUIREMENTS",
           "SpotCapacity", "GpuModels"]
