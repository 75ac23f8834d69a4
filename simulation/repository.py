"""The cluster repository read as ArgoCD reads it: fetched over git, each app found through ``apps/``.

``GitMirror`` keeps a local bare mirror fetched with the ``git`` CLI over
smart HTTP (the very protocol and credentials ArgoCD's repo-server uses), and
``read_apps`` lists, at one revision, every ``apps/<ws>/<app>.yaml``
Application with the manifests under ``workspaces/<ws>/<app>/``, boiled down
to what the simulation needs (``AppSource``).

The repository layout and the Application naming are read here as the
README documents them; nothing is imported from gitops, which writes them,
since this package stands on the agent's side of the wire.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from contract.repository import (APPS_DIR, WORKSPACES_DIR, app_of_application_file, app_of_manifest_file,
                                 kind_of_filename)
from simulation.errors import SimulationError

log = logging.getLogger(__name__)

WORKLOAD_KINDS = ("Deployment", "Rollout")
JOB_KINDS = ("WorkflowTemplate", "CronWorkflow", "CronJob")
SCALER_KINDS = ("ScaledObject", "HorizontalPodAutoscaler")
# the files ArgoCD's simulated sync parses; the rest of an app's directory is only listed
_READ_KINDS = frozenset(kind.lower() for kind in (*WORKLOAD_KINDS, *JOB_KINDS, *SCALER_KINDS))


@dataclasses.dataclass(frozen=True)
class AppSource:
    """What the repository says about one app at a revision."""

    workspace: str
    name: str
    application: str  # the Application's name, "<ws>.<app>"
    argocd_namespace: str
    namespace: str  # its destination namespace
    digest: str  # of its Application and manifests: changes exactly when a sync has something to do
    workload_kind: str | None  # Deployment or Rollout; None for jobs and apps without pods
    workload_name: str | None
    replicas: int
    images: tuple[str, ...]
    jobs: tuple[tuple[str, str], ...]  # (kind, name) of WorkflowTemplates, CronWorkflows, CronJobs
    canary_steps: int  # steps of an Argo Rollout canary strategy


class GitMirror:
    """A local bare mirror of the cluster repository, fetched with the git CLI.

    The read token travels in an HTTP header set through git's environment
    configuration, never in the URL (which git may print, and which shows in
    the process list).
    """

    def __init__(self, path: Path, url: str, branch: str, read_token: str | None):
        self.path, self.url, self.branch = path, url, branch
        self._env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        if read_token:
            basic = base64.b64encode(f"simulated:{read_token}".encode()).decode()
            self._env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                              "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
        self._blob_cache: dict[str, Any] = {}

    def _git(self, *args: str, stdin: bytes | None = None) -> bytes:
        try:
            done = subprocess.run(["git", "--git-dir", str(self.path), *args], input=stdin, env=self._env,
                                  capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SimulationError(f"git {args[0]}: {exc}") from exc
        if done.returncode != 0:
            raise SimulationError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()[:500]}")
        return done.stdout

    def fetch(self) -> str | None:
        """Fetch the branch; its revision, or None while the repository has no commit on it."""
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "--bare", str(self.path)], check=True, env=self._env,
                           capture_output=True)
        self._git("fetch", "-q", "--no-tags", "--force", self.url, f"+refs/heads/{self.branch}:refs/heads/{self.branch}")
        try:
            return self._git("rev-parse", "--verify", "-q", f"refs/heads/{self.branch}").decode().strip() or None
        except SimulationError:
            return None

    def read_apps(self, revision: str) -> dict[tuple[str, str], AppSource]:
        """Every app of the repository at ``revision``, as ArgoCD's root app-of-apps would find them."""
        listing = self._git("ls-tree", "-r", "-z", revision, "--", APPS_DIR, WORKSPACES_DIR)
        blobs: dict[str, str] = {}
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, path = entry.split(b"\t", 1)
            blobs[path.decode()] = meta.split()[2].decode()
        wanted = []
        app_files: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for path, blob in blobs.items():
            app = app_of_application_file(path)
            if app:
                app_files.setdefault(app, []).append((path, blob))
                wanted.append(blob)
        for path, blob in blobs.items():
            manifest = app_of_manifest_file(path)
            if manifest and manifest[:2] in app_files:
                app_files[manifest[:2]].append((path, blob))
                if kind_of_filename(manifest[2]) in _READ_KINDS:
                    wanted.append(blob)
        self._load_blobs(wanted)
        apps = {}
        for (workspace, name), files in app_files.items():
            try:
                apps[(workspace, name)] = self._app_source(workspace, name, files)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("simulated cluster: %s/%s skipped: its files are not what ArgoCD expects: %s",
                            workspace, name, exc)
        return apps

    def _load_blobs(self, blob_ids: Iterable[str]) -> None:
        """Parse the blobs not parsed before (blobs never change, so the cache is by id)."""
        missing = sorted({b for b in blob_ids if b not in self._blob_cache})
        if not missing:
            return
        out = self._git("cat-file", "--batch", stdin="".join(f"{b}\n" for b in missing).encode())
        position = 0
        for blob in missing:
            header_end = out.index(b"\n", position)
            size = int(out[position:header_end].split()[2])
            body = out[header_end + 1: header_end + 1 + size]
            position = header_end + 1 + size + 1
            try:
                self._blob_cache[blob] = yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError as exc:
                log.warning("simulated cluster: blob %s is not YAML: %s", blob, exc)
                self._blob_cache[blob] = None
        if len(self._blob_cache) > 20_000:  # old revisions' blobs; parse again when needed
            self._blob_cache = {b: self._blob_cache[b] for b in blob_ids if b in self._blob_cache}

    def _app_source(self, workspace: str, name: str, files: list[tuple[str, str]]) -> AppSource:
        digest = hashlib.blake2b("\n".join(f"{p} {b}" for p, b in sorted(files)).encode(), digest_size=10).hexdigest()
        objects = [self._blob_cache.get(blob) for _, blob in sorted(files)]
        objects = [o for o in objects if isinstance(o, dict)]
        application = next(o for o in objects if o.get("kind") == "Application")
        workload = next((o for o in objects if o.get("kind") in WORKLOAD_KINDS), None)
        replicas = 0
        images: list[str] = []
        steps = 0
        if workload is not None:
            spec = workload.get("spec") or {}
            replicas = spec.get("replicas")
            if replicas is None:  # an autoscaler owns them: start at its minimum, as it would
                scaler = next((o for o in objects if o.get("kind") in SCALER_KINDS), {})
                scaler_spec = scaler.get("spec") or {}
                replicas = scaler_spec.get("minReplicaCount", scaler_spec.get("minReplicas", 1))
            template = (spec.get("template") or {}).get("spec") or {}
            images = [c.get("image", "") for c in template.get("containers") or []]
            steps = len(((spec.get("strategy") or {}).get("canary") or {}).get("steps") or [])
        metadata = application["metadata"]
        return AppSource(
            workspace=workspace, name=name, application=metadata["name"],
            argocd_namespace=metadata.get("namespace") or "argocd",
            namespace=(application["spec"].get("destination") or {}).get("namespace") or workspace,
            digest=digest,
            workload_kind=workload["kind"] if workload else None,
            workload_name=workload["metadata"]["name"] if workload else None,
            replicas=max(0, int(replicas or 0)), images=tuple(images),
            jobs=tuple((o["kind"], o["metadata"]["name"]) for o in objects if o.get("kind") in JOB_KINDS),
            canary_steps=steps,
        )


__all__ = ["WORKLOAD_KINDS", "JOB_KINDS", "AppSource", "GitMirror"]
