"""Files and volumes in an app's pod: TrueFoundry's ``mounts``, and where nothing may be mounted.

A spec's ``mounts`` (TrueFoundry's SecretMount, StringDataMount, VolumeMount) become:

==============  ==============================================================================
``secret``      one file: an entry of the app's ExternalSecret (``<app>-secrets``, the Secret
                its env references use too), mounted with ``subPath`` so the rest of the
                directory stays as the image has it
``string``      one file: a key of a ConfigMap named after its content
                (``<app>-files-<hash>``), mounted with ``subPath``
``volume``      a directory: an existing PersistentVolumeClaim of the app's namespace, named
                by ``tfy-volume://<cluster>:<workspace>:<claim>`` or ``tfy-k8s-volume://<claim>``
==============  ==============================================================================

A file mounted with ``subPath`` is never updated in a running container (Kubernetes,
"Volumes", subPath: "A container using a ConfigMap/Secret as a subPath volume mount will not
receive updates"): the ConfigMap's name changes with its content, so changed data rolls the
pods like any other change of the pod template; a rotated secret reaches the file when the pod
restarts, as it reaches an env variable.

:func:`mount_problems` holds what the schema cannot say (clashing paths, paths a container
needs for itself); :func:`plan_mounts` computes the volumes, mounts and objects. Pure.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Spec(Protocol):
    """What is read of a renderer.spec.Spec (not imported: renderer.spec imports this module's checks)."""

    name: str
    cluster: str
    workspace: str
    body: dict


class Problems(Protocol):
    """renderer.pod.SpecProblems, which collects what the cluster cannot run."""

    def add(self, message: str, *path: Any) -> None: ...


# The kernel's and the runtime's own filesystems: a container runtime mounts proc, sysfs and
# /dev (with /dev/shm and /dev/termination-log, the default terminationMessagePath, in it).
_RUNTIME_TREES = ("/proc", "/sys", "/dev")
# The service account token Kubernetes projects into every pod ("Configure Service Accounts for
# Pods"), under either spelling of /run.
_TOKEN_TREES = ("/var/run/secrets/kubernetes.io", "/run/secrets/kubernetes.io")
# Files the kubelet writes into every container ("Adding entries to Pod /etc/hosts with HostAliases":
# the kubelet manages the hosts file; DNS for Services and Pods: resolv.conf).
_KUBELET_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
# Whole system directories: a volume there would hide the image's programs, libraries or config.
_SYSTEM_DIRS = ("/", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/var", "/run",
                "/var/run", "/boot")

SHARED_MEMORY_PATH = "/dev/shm"


def _within(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def reserved_path_problem(path: str, reserved: dict[str, str] | None = None) -> str | None:
    """Why nothing of a spec may be mounted at ``path``, or None.

    ``reserved`` maps paths Shipyard itself mounts something at to what it mounts there.
    """
    if any(part in (".", "..") for part in path.split("/")) or posixpath.normpath(path) != path:
        return f'mount path "{path}" is not a plain absolute path; write it without ".", ".." or repeated "/"'
    if _within(path, SHARED_MEMORY_PATH):
        return (f'{SHARED_MEMORY_PATH} is the pod\'s shared memory (resources.shared_memory_size sizes it); '
                "mount somewhere else")
    for tree in _RUNTIME_TREES:
        if _within(path, tree):
            return f'"{path}" is inside {tree}, which the container runtime mounts itself; mount somewhere else'
    for tree in _TOKEN_TREES:
        if _within(path, tree) or _within(tree, path):
            return (f'"{path}" would cover {tree}, where Kubernetes puts the pod\'s service account token; '
                    "mount somewhere else")
    if path in _KUBELET_FILES:
        return f'"{path}" is written by the kubelet into every container; mount somewhere else'
    if path in _SYSTEM_DIRS:
        return f'a mount at "{path}" would hide the image\'s own {path} directory; mount a file or a directory below it'
    for where, what in (reserved or {}).items():
        if _within(path, where) or _within(where, path):
            return f'"{path}" clashes with {where}, where {what}; mount somewhere else'
    return None


def mount_problems(body: dict, reserved: dict[str, str] | None = None) -> list[tuple[str, tuple]]:
    """What is wrong with a spec's ``mounts`` beyond its schema: (message, path) pairs."""
    problems: list[tuple[str, tuple]] = []
    files: dict[str, int] = {}  # path of a mounted file -> its index
    seen: dict[str, int] = {}
    mounts = body.get("mounts") or []
    for index, mount in enumerate(mounts):
        path = mount["mount_path"]
        if (wrong := reserved_path_problem(path, reserved)) is not None:
            problems.append((wrong, ("mounts", index, "mount_path")))
            continue
        if path in seen:
            problems.append((f'"{path}" is mounted twice (also at mounts/{seen[path]})', ("mounts", index, "mount_path")))
            continue
        seen[path] = index
        if mount["type"] != "volume":
            files[path] = index
        sub_path = mount.get("sub_path")
        if sub_path is not None and (sub_path.startswith("/") or ".." in sub_path.split("/")):
            problems.append(('sub_path is a path inside the volume: relative, without ".." segments',
                             ("mounts", index, "sub_path")))
    for path, index in seen.items():
        for file_path, file_index in files.items():
            if path != file_path and _within(path, file_path):
                problems.append((f'"{path}" is inside "{file_path}", which mounts/{file_index} makes a file',
                                 ("mounts", index, "mount_path")))
    return problems


@dataclass(frozen=True)
class VolumeRef:
    """An existing PersistentVolumeClaim a volume mount names, and where TrueFoundry said it is."""

    claim: str
    cluster: str | None = None  # tfy-volume:// names cluster and workspace; tfy-k8s-volume:// does not
    workspace: str | None = None


def parse_volume_fqn(fqn: str) -> VolumeRef:
    """A TrueFoundry volume FQN as the claim it names (the schema has checked its form).

    ``tfy-volume://<cluster>:<workspace>:<volume>`` is a TrueFoundry Volume, whose claim is named
    after the volume in its workspace's namespace; ``tfy-k8s-volume://<claim>`` names a claim of the
    app's own namespace directly (TrueFoundry's VolumeMount: "The TrueFoundry volume or
    namespace-scoped Kubernetes PVC that needs to be mounted").
    """
    if fqn.startswith("tfy-k8s-volume://"):
        return VolumeRef(fqn.removeprefix("tfy-k8s-volume://"))
    cluster, workspace, claim = fqn.removeprefix("tfy-volume://").split(":")
    return VolumeRef(claim, cluster, workspace)


@dataclass
class MountPlan:
    """What an app's mounts add to its pod, its container and its objects."""

    volumes: list[dict] = field(default_factory=list)
    volume_mounts: list[dict] = field(default_factory=list)
    secret_data: list[dict] = field(default_factory=list)  # entries of the app's ExternalSecret
    objects: list[tuple[str, dict]] = field(default_factory=list)  # (template, context)


def file_key(index: int) -> str:
    """The key of mount ``index``'s file in its ConfigMap or in the app's Secret, whose other keys are
    env variable names (never with '-'), so the two never meet."""
    return f"file-{index}"


def files_configmap_name(app: str, files: dict[str, str]) -> str:
    """``<app>-files-<hash>``: a name that changes with the content, so new data rolls the pods."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f"{app}-files-{digest[:10]}"


def plan_mounts(spec: Spec, app: dict, secret_entry: Callable[[str, str], dict | str], problems: Problems) -> MountPlan:
    """The volumes, mounts, ExternalSecret entries and objects of a spec's ``mounts``.

    ``secret_entry(key, secret_fqn)`` gives the ExternalSecret data entry that puts a secret in the
    app's Secret under ``key``, or the reason the cluster's store cannot hold it.
    """
    plan = MountPlan()
    files: dict[str, str] = {}
    secret_items: list[dict] = []
    claims: dict[str, str] = {}  # claim -> its volume's name in the pod
    for index, mount in enumerate(spec.body.get("mounts") or []):
        kind, path = mount["type"], mount["mount_path"]
        if kind == "string":
            key = file_key(index)
            files[key] = mount["data"]
            plan.volume_mounts.append({"name": "mounted-files", "mountPath": path, "subPath": key, "readOnly": True})
        elif kind == "secret":
            key = file_key(index)
            entry = secret_entry(key, mount["secret_fqn"])
            if isinstance(entry, str):
                problems.add(entry, "mounts", index, "secret_fqn")
                continue
            plan.secret_data.append(entry)
            secret_items.append({"key": key, "path": key})
            plan.volume_mounts.append({"name": "mounted-secrets", "mountPath": path, "subPath": key, "readOnly": True})
        else:
            ref = parse_volume_fqn(mount["volume_fqn"])
            if ref.cluster is not None and (ref.cluster, ref.workspace) != (spec.cluster, spec.workspace):
                problems.add(
                    f'volume "{mount["volume_fqn"]}" is in {ref.cluster}:{ref.workspace}, and a pod mounts only claims '
                    f"of its own namespace ({spec.cluster}:{spec.workspace}); write "
                    f"tfy-volume://{spec.cluster}:{spec.workspace}:{ref.claim} for the claim {ref.claim} of this workspace",
                    "mounts", index, "volume_fqn",
                )
                continue
            if ref.claim not in claims:
                claims[ref.claim] = f"volume-{len(claims)}"
                plan.volumes.append({"name": claims[ref.claim], "persistentVolumeClaim": {"claimName": ref.claim}})
            entry = {"name": claims[ref.claim], "mountPath": path}
            if mount.get("sub_path"):
                entry["subPath"] = mount["sub_path"]
            plan.volume_mounts.append(entry)
    if files:
        name = files_configmap_name(spec.name, files)
        plan.volumes.append({"name": "mounted-files", "configMap": {"name": name}})
        plan.objects.append(("common/configmap.yaml.j2", {"app": app, "name": name, "data": files}))
    if secret_items:
        # only the mounted keys become files: the env entries of the same Secret stay out of the filesystem
        plan.volumes.append({"name": "mounted-secrets",
                             "secret": {"secretName": f"{spec.name}-secrets", "items": secret_items}})
    return plan


__all__ = [
    "SHARED_MEMORY_PATH",
    "MountPlan",
    "VolumeRef",
    "file_key",
    "files_configmap_name",
    "mount_problems",
    "parse_volume_fqn",
    "plan_mounts",
    "reserved_path_problem",
]
