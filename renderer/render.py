"""Rendering: a validated spec and a cluster profile in, Kubernetes manifests out.

:func:`render` is a pure function: no git, no network, no clock, no
database. Same spec and profile give the same objects and the same bytes.

Python decides *what* to render and computes the values; the Jinja templates
under ``templates/`` give each object its shape (renderer.engine: values
reach template text only through the ``y`` filter, and each template's output
is parsed back and validated against the Kubernetes schema of the cluster's
version, and against the CRD schema where the caller's
:class:`~renderer.kube.KubeSchemas` has the kind).

What a spec becomes depends on its kind: ``KIND_RENDERERS`` maps each kind
(the spec's ``type``) to its renderer, and a kind missing there is an error.
One module per thing rendered:

=====================  =====================================================
renderer.engine        the Jinja environment, ``render_template``, ``warm_up``
renderer.naming        labels and names (the repository's contract)
renderer.pod           the pod template services and jobs share
renderer.mounts        the pod's files and volumes (``mounts``), a ConfigMap
renderer.artifacts     models downloaded by init containers, a cache claim
renderer.service       a service: workload, Services, routes, autoscaling
renderer.job           a job: Argo WorkflowTemplate/CronWorkflow or CronJob
renderer.argocd        an app's or a workspace's ArgoCD Application
renderer.workspace     a workspace's Namespace and ResourceQuota
renderer.bootstrap     bootstrap/: root app, AppProjects, app of apps, the agent
=====================  =====================================================

This module keeps the entry point and re-exports what the other layers use,
so they import rendering from one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from renderer.argocd import render_application
from renderer.bootstrap import agent_env, render_agent, render_bootstrap, render_workspace_agent_access
from renderer.engine import render_template, warm_up
from contract.errors import SpecError
from contract.repository import MANIFEST_SUFFIX, app_dir, application_file
from renderer.job import render_job
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.naming import common_labels, object_filename
from renderer.profiles import ClusterProfile
from renderer.service import render_service
from renderer.spec import Spec
from renderer.workspace import (
    QUOTA_KEYS,
    WorkspaceSettings,
    render_namespace,
    render_quota,
    workspace_settings_problems,
)
from renderer.manifest_yaml import dump_manifest


@dataclass
class Rendering:
    """Everything one spec becomes on one cluster."""

    spec: Spec
    profile: ClusterProfile
    objects: list[dict]  # the app's objects, in apply order
    application: dict  # the ArgoCD Application that syncs them
    notes: list[str] = field(default_factory=list)  # what the renderer changed and why

    @property
    def workspace(self) -> str:
        return self.spec.workspace

    @property
    def name(self) -> str:
        return self.spec.name

    files: dict[str, bytes] = field(init=False)  # file name -> canonical bytes, one object per file
    application_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        # Serializing is part of rendering: the renderer's product is bytes.
        self.files = {object_filename(obj): dump_manifest(obj) for obj in self.objects}
        self.application_bytes = dump_manifest(self.application)

    def write_tree(self, root: Path) -> Path:
        """The app's directory and Application written under ``root`` as a cluster repository lays them
        out (contract.repository), a file the app no longer has removed; returns the directory."""
        directory = root / app_dir(self.workspace, self.name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"*{MANIFEST_SUFFIX}"):
            if stale.name not in self.files:
                stale.unlink()
        for name, data in self.files.items():
            (directory / name).write_bytes(data)
        application = root / application_file(self.workspace, self.name)
        application.parent.mkdir(parents=True, exist_ok=True)
        application.write_bytes(self.application_bytes)
        return directory


# What one kind of spec becomes: its objects in apply order, ArgoCD ignoreDifferences, notes.
KindRenderer = Callable[[Spec, ClusterProfile, KubeSchemas], tuple[list[dict], list[dict], list[str]]]

# Every kind of spec the renderer knows (the deploy spec's ``type``), and its renderer. A kind
# missing here is refused by render(), never handed to another kind's renderer; the spec schema's
# ``type`` enum lists exactly these (tests/test_render_kinds.py holds them together).
KIND_RENDERERS: Mapping[str, KindRenderer] = MappingProxyType({
    "service": render_service,
    "job": render_job,
})


def reserved_namespaces(profile: ClusterProfile) -> set[str]:
    """Namespaces of the cluster's own machinery (ArgoCD, the gateway, the agent): never a workspace."""
    return {profile.argocd_namespace} | {
        profile.addon(router)["gateway"].split("/", 1)[0] for router in ("istio", "gateway_api") if profile.has(router)
    } | ({profile.agent.namespace} if profile.agent is not None else set())


def render(spec: Spec, profile: ClusterProfile, schemas: KubeSchemas = CORE_ONLY) -> Rendering:
    """Render one spec for one cluster. Pure: spec + profile in, manifests out.

    Every object is validated against ``schemas``: core kinds always, custom
    resources when ``schemas`` holds their CRD's schema (the caller says where
    those are; the renderer never looks in the environment).

    Raises SpecError (located in the spec) when the cluster cannot run what the
    spec asks for, or when the spec is of a kind not in KIND_RENDERERS;
    RenderError when a template produced an invalid object.
    """
    if spec.cluster != profile.name:
        raise SpecError([
            spec.problem(
                f'spec targets cluster "{spec.cluster}" but the cluster profile is "{profile.name}"; '
                "fix workspace_fqn or pick the matching --cluster",
                ("workspace_fqn",),
            )
        ])
    if spec.workspace in reserved_namespaces(profile):
        raise SpecError([
            spec.problem(
                f'workspace "{spec.workspace}" is a system namespace of cluster "{profile.name}" '
                "(ArgoCD, the gateway or the Shipyard agent); deploy into a workspace of its own",
                ("workspace_fqn",),
            )
        ])
    kind_renderer = KIND_RENDERERS.get(spec.kind)
    if kind_renderer is None:
        raise SpecError([
            spec.problem(
                f'"{spec.kind}" is not a kind Shipyard renders; the kinds are {", ".join(sorted(KIND_RENDERERS))}',
                ("type",),
            )
        ])
    objects, ignore_differences, notes = kind_renderer(spec, profile, schemas)
    application = render_application(profile, spec.workspace, spec.name, ignore_differences, schemas)
    return Rendering(spec, profile, objects, application, notes)


def render_all(specs: list[Spec], profile: ClusterProfile, schemas: KubeSchemas = CORE_ONLY) -> list[Rendering]:
    """Render many specs; SpecError carries the problems of all of them."""
    renderings, problems = [], []
    for spec in specs:
        try:
            renderings.append(render(spec, profile, schemas))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return renderings


__all__ = [
    "warm_up",
    "render",
    "render_template",
    "KIND_RENDERERS",
    "KindRenderer",
    "reserved_namespaces",
    "render_quota",
    "WorkspaceSettings",
    "QUOTA_KEYS",
    "workspace_settings_problems",
    "render_all",
    "render_application",
    "render_namespace",
    "render_bootstrap",
    "render_workspace_agent_access",
    "render_agent",
    "agent_env",
    "Rendering",
    "object_filename",
    "common_labels",
]
