"""The cluster repository read as ArgoCD reads it: fetched over git, each app found by following the Applications.

``GitMirror`` keeps a local bare mirror fetched with the ``git`` CLI over
smart HTTP (the very protocol and credentials ArgoCD's repo-server uses), and
``read_apps`` finds, at one revision, the Applications ArgoCD would have: the
root (``bootstrap/root.yaml``, the one object applied by hand, which syncs
itself) and every Application in the directory of an Application it leads to
(app of apps: the root's bootstrap/ holds the Application over apps/, whose
files are the workspaces' and apps' Applications). Each app's Application
(``<ws>.<app>``) with the manifests of its directory is boiled down to what
the simulation needs (``AppSource``).

Each Application is checked as ArgoCD checks it against its AppProject (Argo
CD, "Projects"): the project must exist (``default`` always does; any other is
an AppProject an Application syncs at the same revision), one of its
``sourceRepos`` and one of its ``destinations`` must allow the Application's
repository and destination (glob patterns), and no ``!`` rule may deny them.
A refused Application is neither synced nor pruned (ArgoCD shows it with an
InvalidSpecError condition): nothing under it is followed, and a refused app
that was synced before keeps what it had. The directory options used are
``recurse`` (include/exclude are not read: Shipyard writes neither) and kinds
are not checked against the project's lists.

The repository layout and the Application naming are read here as
contract.repository writes them down; nothing is imported from gitops, which
writes them, since this package stands on the agent's side of the wire.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from contract.repository import ROOT_FILE, kind_of_filename, parse_application_name
from simulation.errors import SimulationError

log = logging.getLogger(__name__)

WORKLOAD_KINDS = ("Deployment", "Rollout")
JOB_KINDS = ("WorkflowTemplate", "CronWorkflow", "CronJob")
SCALER_KINDS = ("ScaledObject", "HorizontalPodAutoscaler")
# the files of an app's directory the simulated sync parses; the rest is only listed
_READ_KINDS = frozenset(kind.lower() for kind in (*WORKLOAD_KINDS, *JOB_KINDS, *SCALER_KINDS))
# what a directory-type Application reads (Argo CD, "Directory")
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


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
        self._synced: dict[tuple[str, str], AppSource] = {}  # what each app was last synced to

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
        """Every app ArgoCD would have synced at ``revision``, found from the root Application and
        admitted by its project (the module's docstring)."""
        tree = self._tree(revision)
        found, projects = self._follow(tree)
        admitted, refused = _admit(found, projects)
        apps: dict[tuple[str, str], AppSource] = {}
        for name in admitted:
            key = parse_application_name(name)
            if key is None:
                continue
            entry = found[name]
            try:
                apps[key] = self._app_source(*key, entry.application, [entry.file, *entry.files])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("simulated cluster: %s/%s skipped: its files are not what ArgoCD expects: %s",
                            *key, exc)
        for name in refused:  # neither synced nor pruned: what it had stays
            key = parse_application_name(name)
            if key is not None and key in self._synced:
                apps.setdefault(key, self._synced[key])
        self._synced = apps
        self._keep_blobs({blob for entry in found.values() for _, blob in (entry.file, *entry.files)})
        return apps

    def _tree(self, revision: str) -> dict[str, str]:
        """Every file of the repository at ``revision``: path -> blob id."""
        blobs: dict[str, str] = {}
        for entry in self._git("ls-tree", "-r", "-z", revision).split(b"\0"):
            if entry:
                meta, path = entry.split(b"\t", 1)
                blobs[path.decode()] = meta.split()[2].decode()
        return blobs

    def _follow(self, tree: dict[str, str]) -> tuple[dict[str, _Found], dict[str, dict]]:
        """The Applications reachable from the root (``ROOT_FILE``) through the directories of those
        before them, the root first, and the AppProjects among their files, by name.

        Breadth first, one git call a level. The directory of an app's Application is read only
        as far as the simulation needs (``_READ_KINDS``, by file name); any other Application's
        files are read whole, as they may hold Applications. Only Applications in the root's
        namespace count: ArgoCD follows those of its own namespace.
        """
        root_blob = tree.get(ROOT_FILE)
        if root_blob is not None:
            self._load_blobs([root_blob])
        root = next((o for o in self._documents(root_blob) if o.get("kind") == "Application"), None)
        if root is None:
            log.warning("simulated cluster: no root Application in %s: ArgoCD has nothing to follow", ROOT_FILE)
            return {}, {}
        paths = sorted(tree)
        argocd_namespace = _metadata(root).get("namespace") or "argocd"
        repo_url = _source(root).get("repoURL")
        found: dict[str, _Found] = {}
        projects: dict[str, dict] = {}
        level = {_metadata(root).get("name"): (root, (ROOT_FILE, root_blob))}
        while level:
            entries = []
            for name, (application, file) in level.items():
                found[name] = _Found(application, file, _directory_files(application, tree, paths))
                entries.append(found[name])
            self._load_blobs(blob for entry in entries for path, blob in entry.files
                             if not entry.is_app or kind_of_filename(path.rpartition("/")[2]) in _READ_KINDS)
            level = {}
            for entry in entries:
                if entry.is_app:  # an app's manifests: no Application among them
                    continue
                for path, blob in entry.files:
                    for obj in self._documents(blob):
                        metadata = _metadata(obj)
                        namespace = metadata.get("namespace") or (_spec(entry.application).get("destination")
                                                                  or {}).get("namespace")
                        if namespace != argocd_namespace:
                            continue
                        if obj.get("kind") == "AppProject":
                            projects.setdefault(metadata.get("name"), obj)
                        elif obj.get("kind") == "Application" and _source(obj).get("repoURL") == repo_url:
                            name = metadata.get("name")
                            entry.children.append(name)
                            if name not in found:
                                level.setdefault(name, (obj, (path, blob)))
        return found, projects

    def _documents(self, blob: str | None) -> list[dict]:
        return [doc for doc in self._blob_cache.get(blob) or [] if isinstance(doc, dict)]

    def _load_blobs(self, blob_ids: Iterable[str]) -> None:
        """Parse the blobs not parsed before (blobs never change, so the cache is by id), each as
        the list of its YAML documents."""
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
                self._blob_cache[blob] = list(yaml.load_all(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
            except yaml.YAMLError as exc:
                log.warning("simulated cluster: blob %s is not YAML: %s", blob, exc)
                self._blob_cache[blob] = None

    def _keep_blobs(self, used: set[str]) -> None:
        """Past 20,000 parsed blobs, forget those of older revisions (parsed again when needed)."""
        if len(self._blob_cache) > 20_000:
            self._blob_cache = {b: v for b, v in self._blob_cache.items() if b in used}

    def _app_source(self, workspace: str, name: str, application: dict, files: list[tuple[str, str]]) -> AppSource:
        digest = hashlib.blake2b("\n".join(f"{p} {b}" for p, b in sorted(files)).encode(), digest_size=10).hexdigest()
        objects = [o for _, blob in sorted(files) for o in self._documents(blob)]
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


@dataclasses.dataclass
class _Found:
    """An Application met following the root: the file it is in, the files it syncs, and the names
    of the Applications among them."""

    application: dict
    file: tuple[str, str]  # (path, blob)
    files: list[tuple[str, str]]
    children: list[str] = dataclasses.field(default_factory=list)
    is_app: bool = dataclasses.field(init=False)  # an app's Application, <ws>.<app>: its files are the app's

    def __post_init__(self) -> None:
        self.is_app = parse_application_name(_metadata(self.application).get("name") or "") is not None


def _metadata(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _source(application: dict) -> dict:
    return _spec(application).get("source") or {}


def _directory_files(application: dict, tree: dict[str, str], paths: list[str]) -> list[tuple[str, str]]:
    """(path, blob) of the manifests a directory-type Application syncs: those of its ``path``, and of
    the directories below with ``directory.recurse`` (Argo CD, "Directory")."""
    source = _source(application)
    directory = str(source.get("path") or "").strip("/").removeprefix("./")
    prefix = "" if directory in ("", ".") else directory + "/"
    recurse = bool((source.get("directory") or {}).get("recurse"))
    files = []
    index = bisect.bisect_left(paths, prefix)
    while index < len(paths) and paths[index].startswith(prefix):
        path = paths[index]
        subdirectory, slash, _ = path[len(prefix):].partition("/")
        if slash and not recurse:  # past the subdirectory at once: "0" sorts right after "/"
            index = bisect.bisect_left(paths, f"{prefix}{subdirectory}0", index)
            continue
        if path.endswith(_MANIFEST_SUFFIXES):
            files.append((path, tree[path]))
        index += 1
    return files


def _admit(found: dict[str, _Found], projects: dict[str, dict]) -> tuple[list[str], list[str]]:
    """The Applications ArgoCD syncs, from the root down through admitted ones only, and those it
    refuses (logged with ArgoCD's message)."""
    if not found:
        return [], []
    checks = {name: _ProjectCheck(name, project) for name, project in projects.items()}
    root = next(iter(found))
    admitted, refused, queue, seen = [], [], [root], {root}
    while queue:
        name = queue.pop(0)
        reason = _refusal(found[name].application, checks)
        if reason is not None:
            log.warning("simulated ArgoCD: Application %s is not synced: InvalidSpecError: %s", name, reason)
            refused.append(name)
            continue
        admitted.append(name)
        for child in found[name].children:
            if child in found and child not in seen:
                seen.add(child)
                queue.append(child)
    return admitted, refused


def _refusal(application: dict, checks: dict[str, _ProjectCheck]) -> str | None:
    """Why ArgoCD would not sync ``application``, in its words; None when its project permits it
    (Argo CD, "Projects")."""
    spec = _spec(application)
    name = spec.get("project") or "default"
    check = checks.get(name)
    if check is None:
        # the default project comes with Argo CD and, unless changed, permits everything
        return None if name == "default" else f"Application referencing project {name} which does not exist"
    destination = spec.get("destination") or {}
    return check.refusal(_source(application).get("repoURL") or "",
                         destination.get("server") or "", destination.get("namespace") or "")


class _ProjectCheck:
    """An AppProject's sourceRepos and destinations, made to test many Applications: rules without a
    pattern are looked up, the others matched one by one."""

    def __init__(self, name: str, project: dict):
        rules = _spec(project)
        self.name = name
        self.sources = _Rules([(r,) for r in rules.get("sourceRepos") or []])
        self.destinations = _Rules([(d.get("server") or "", d.get("namespace") or "")
                                    for d in rules.get("destinations") or []])

    def refusal(self, repo: str, server: str, namespace: str) -> str | None:
        if not self.sources.permit((repo,)):
            return f"application repo {repo} is not permitted in project '{self.name}'"
        if not self.destinations.permit((server, namespace)):
            return (f"application destination server '{server}' and namespace '{namespace}' do not match any "
                    f"of the allowed destinations in project '{self.name}'")
        return None


class _Rules:
    """Argo CD's test of a source or a destination against a project's rules: a rule allows when
    each of its patterns matches (a glob; ``!glob`` matches what the glob does not), and a rule
    with a ``!`` pattern that does not match denies, whatever else allows."""

    def __init__(self, rules: list[tuple[str, ...]]):
        self.exact = {rule for rule in rules if not any(_is_pattern(p) for p in rule)}
        self.patterns = [rule for rule in rules if rule not in self.exact]

    def permit(self, value: tuple[str, ...]) -> bool:
        allowed = value in self.exact
        for rule in self.patterns:
            matches = [not fnmatchcase(v, p[1:]) if p.startswith("!") else fnmatchcase(v, p)
                       for p, v in zip(rule, value)]
            if all(matches):
                allowed = True
            elif any(p.startswith("!") and not m for p, m in zip(rule, matches)):
                return False
        return allowed


def _is_pattern(part: str) -> bool:
    return part.startswith("!") or any(c in part for c in "*?[{")


__all__ = ["WORKLOAD_KINDS", "JOB_KINDS", "AppSource", "GitMirror"]
