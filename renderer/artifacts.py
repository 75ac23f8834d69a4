"""Models downloaded before an app starts: TrueFoundry's ``artifacts_download``.

Each Hugging Face artifact (``model_id`` at ``revision``, less its ``ignore_patterns``) is fetched
by an init container that runs Shipyard's downloader (the ``downloader`` package of this project,
built on huggingface_hub's ``snapshot_download``) from the image the cluster profile names
(``artifacts.downloader_image``; by default the Shipyard agent image of the same release, built
from this project with the ``downloader`` extra). Init containers run to completion, one after
another, before the app's containers start (Kubernetes, "Init Containers"), so the files are in
place when the app starts, and the variable the artifact names (``download_path_env_variable``)
holds their directory -- also for ``$(VAR)`` in the command, which Kubernetes expands from the
container's env ("Define a Command and Arguments for a Container").

The files go to a volume mounted at :data:`MOUNT_ROOT`: with ``cache_volume``, a
PersistentVolumeClaim of ``cache_size`` GiB (of ``storage_class``, or the cluster's default
class) that outlives pods, so a restart or a new replica finds the files and the downloader only
checks them against the Hub; without it an emptyDir, which lives as long as the pod and counts
against its ephemeral storage (Kubernetes, "Volumes": emptyDir). TrueFoundry shares one cache
volume between an app's pods; a claim only one node may mount (ReadWriteOnce) would keep a second
pod from starting anywhere else, so the claim is ReadWriteMany whenever two pods can run at once
(replicas or autoscaling above one, a rolling update's surge, a canary or blue-green), and
ReadWriteOnce, which every storage class offers, only where one pod runs at a time (Kubernetes,
"Persistent Volumes": access modes). Access mode, class and size are immutable or may only grow
in a claim, so the claim's name carries a hash of the three: a change makes a new claim (the
files are downloaded again) instead of a sync ArgoCD cannot apply.

TrueFoundry artifacts (``artifact_version_fqn``) live in TrueFoundry's artifact registry, which
only its control plane can hand out downloads from: they are refused (:func:`artifact_problems`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Protocol


class Spec(Protocol):
    """What is read of a renderer.spec.Spec (not imported: renderer.spec imports this module's checks)."""

    name: str
    body: dict


class Profile(Protocol):
    """What is read of a renderer.profiles.ClusterProfile."""

    downloader_image: str


MOUNT_ROOT = "/var/lib/shipyard/artifacts"
VOLUME_NAME = "artifacts"
DOWNLOADER_COMMAND = ["python", "-m", "downloader"]
# TrueFoundry's HuggingfaceArtifactSource.ignore_patterns default
DEFAULT_IGNORE_PATTERNS = ["*.h5", "*.ot", "*.tflite", "*.msgpack"]
# TrueFoundry's ArtifactsCacheVolume.cache_size default, in GB
DEFAULT_CACHE_SIZE = 200
# What the downloader takes from the app's env: a token for gated models and the Hub's address
# (huggingface_hub's environment variables), and the proxies a cluster may reach the Hub through.
DOWNLOADER_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY",
                  "https_proxy", "http_proxy", "no_proxy")
_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def artifact_problems(body: dict) -> list[tuple[str, tuple]]:
    """What is wrong with a spec's ``artifacts_download`` beyond its schema: (message, path) pairs."""
    download = body.get("artifacts_download")
    if not download:
        return []
    problems: list[tuple[str, tuple]] = []
    env = body.get("env") or {}
    named: dict[str, int] = {}
    for index, artifact in enumerate(download["artifacts"]):
        where = ("artifacts_download", "artifacts", index)
        if artifact["type"] == "truefoundry-artifact":
            problems.append((
                (f'artifact "{artifact["artifact_version_fqn"]}" is in TrueFoundry\'s artifact registry, which only '
                 "TrueFoundry's control plane can download from; publish it to the Hugging Face Hub (type: "
                 "huggingface-hub) or put the files into the image"), (*where, "type")))
        variable = artifact["download_path_env_variable"]
        if variable in env:
            problems.append(((f'env "{variable}" is also set in env; download_path_env_variable sets it to where the '
                              "files are, so remove it from env or name another variable"),
                             (*where, "download_path_env_variable")))
        if variable in named:
            problems.append((f'"{variable}" already holds the path of artifacts/{named[variable]}; name another variable',
                             (*where, "download_path_env_variable")))
        named.setdefault(variable, index)
    return problems


def artifact_path(artifact: dict) -> str:
    """Where an artifact's files are: one directory per model and revision, so a cache keeps both."""
    revision = artifact["revision"].replace("/", "--")  # refs/pr/1 is one directory, not three
    return f"{MOUNT_ROOT}/huggingface/{artifact['model_id']}/{revision}"


def _most_pods(body: dict) -> int:
    """How many pods of the app may run at once, rollouts included."""
    replicas = body.get("replicas", 1)
    most = replicas["max_replicas"] if isinstance(replicas, dict) else int(replicas)
    strategy = body.get("rollout_strategy") or {"type": "rolling_update"}
    if strategy["type"] != "rolling_update":
        return most * 2  # a canary or blue-green runs both versions side by side
    # Kubernetes rounds maxSurge up ("Deployments": max surge)
    return most + math.ceil(most * strategy.get("max_surge_percentage", 25) / 100)


def _resources_for_downloader(resources: dict) -> dict:
    """The app container's CPU, memory and ephemeral storage, without devices: a pod's effective
    request is the larger of its init and app containers' ("Init Containers": resource sharing),
    so this asks for nothing more, and a GPU is never held for a download."""
    return {kind: {k: v for k, v in amounts.items() if k in _CONTAINER_RESOURCES}
            for kind, amounts in resources.items()}


def _escaped(text: str) -> str:
    """Text for args, where Kubernetes would expand ``$(VAR)``: ``$$`` is a literal ``$``."""
    return text.replace("$", "$$")


@dataclass
class ArtifactPlan:
    """What an app's artifacts add to its pod, its container and its objects."""

    volumes: list[dict] = field(default_factory=list)
    volume_mounts: list[dict] = field(default_factory=list)
    env: list[dict] = field(default_factory=list)
    init_containers: list[dict] = field(default_factory=list)
    objects: list[tuple[str, dict]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cache_claim(spec: Spec, cache: dict) -> dict:
    """The cache volume's PersistentVolumeClaim: name, access modes, class and size."""
    size = f"{cache.get('cache_size', DEFAULT_CACHE_SIZE)}Gi"
    access_mode = "ReadWriteMany" if _most_pods(spec.body) > 1 else "ReadWriteOnce"
    storage_class = cache.get("storage_class")
    digest = hashlib.sha256(f"{access_mode}\n{storage_class or ''}\n{size}".encode()).hexdigest()
    return {"name": f"{spec.name}-artifacts-{digest[:8]}", "access_modes": [access_mode],
            "storage_class": storage_class, "size": size}


def plan_artifacts(spec: Spec, profile: Profile, app: dict, container: dict) -> ArtifactPlan:
    """Volume, init containers, env and objects for a spec's ``artifacts_download`` (checked by
    :func:`artifact_problems`, so every artifact comes from the Hugging Face Hub)."""
    plan = ArtifactPlan()
    download = spec.body.get("artifacts_download")
    if not download:
        return plan
    cache = download.get("cache_volume")
    if cache is not None:
        claim = cache_claim(spec, cache)
        plan.volumes.append({"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim["name"]}})
        plan.objects.append(("common/persistentvolumeclaim.yaml.j2", {"app": app, "claim": claim}))
        if claim["access_modes"] == ["ReadWriteMany"] and not claim["storage_class"]:
            plan.notes.append(
                "artifacts_download.cache_volume is shared by several pods at once, so it is ReadWriteMany and "
                "names no storage_class: the cluster's default StorageClass must offer ReadWriteMany (block "
                "storage such as EBS, Persistent Disk or Azure Disk does not; EFS, Filestore or Azure Files do)")
    else:
        plan.volumes.append({"name": VOLUME_NAME, "emptyDir": {}})
    plan.volume_mounts.append({"name": VOLUME_NAME, "mountPath": MOUNT_ROOT, "readOnly": True})
    passed_env = [entry for entry in container["env"] if entry["name"] in DOWNLOADER_ENV]
    for index, artifact in enumerate(download["artifacts"]):
        path = artifact_path(artifact)
        patterns = artifact.get("ignore_patterns", DEFAULT_IGNORE_PATTERNS)
        plan.init_containers.append({
            "name": f"download-{index}",
            "image": profile.downloader_image,
            "command": list(DOWNLOADER_COMMAND),
            "args": [
                "huggingface",
                f"--repo-id={_escaped(artifact['model_id'])}",
                f"--revision={_escaped(artifact['revision'])}",
                f"--dest={_escaped(path)}",
                *(f"--ignore-pattern={_escaped(pattern)}" for pattern in patterns),
            ],
            # huggingface_hub keeps its own state under HF_HOME: on the volume, as the image's home may be read-only
            "env": [{"name": "HF_HOME", "value": f"{MOUNT_ROOT}/.huggingface"}, *passed_env],
            "resources": _resources_for_downloader(container["resources"]),
            "volumeMounts": [{"name": VOLUME_NAME, "mountPath": MOUNT_ROOT}],
            # the downloader's last line (why it failed) is what `kubectl describe pod` shows
            # (Kubernetes, "Determine the Reason for Pod Failure": FallbackToLogsOnError)
            "terminationMessagePolicy": "FallbackToLogsOnError",
        })
        plan.env.append({"name": artifact["download_path_env_variable"], "value": path})
    return plan


__all__ = [
    "DEFAULT_IGNORE_PATTERNS",
    "DOWNLOADER_COMMAND",
    "MOUNT_ROOT",
    "ArtifactPlan",
    "artifact_path",
    "artifact_problems",
    "cache_claim",
    "plan_artifacts",
]
