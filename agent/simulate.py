"""A simulated compute plane: a stand-in for ArgoCD and a cluster, for demos, end-to-end and load tests.

No Kubernetes API server, ArgoCD or container runtime runs here, so this module
plays their part, and says so wherever it shows (heartbeats carry
``simulated: true`` and agent version ``simulated-<version>``, nodes are named
``simulated-node-<n>``, log lines start with ``[simulated]``).

What is real: it reads the cluster repository exactly as ArgoCD would, with
``git fetch`` over smart HTTP from ``/git/<tenant>/<cluster>.git`` and the
cluster's read token, polling (ArgoCD's default is every 3 minutes), into a
local bare mirror; and it reports through the agent's own reporting code
(agent.report: Tracker, Outbox, Reporter), so the control plane sees the very
protocol, endpoints and compact states (agent.summaries on synthesized
Kubernetes objects) a real agent sends.

What is simulated: for every ``apps/<ws>/<app>.yaml`` Application at the
fetched revision, an ArgoCD sync (OutOfSync -> operation Running -> Synced at
the revision, health Progressing -> Healthy) and the app's workload
(Deployment or Argo Rollout with the manifest's replicas, Pods coming up
ready one by one), each transition taking ``step_seconds`` (a rollout
``rollout_seconds``). Apps whose files a commit does not touch just move to
the new revision, as with ArgoCD's manifest-generate-paths. An app removed
from the repository is removed with its objects.

Faults are injected with switches, per app (``<ws>/<app>``) or for all
(``"*"``), in code (``SimulatedCluster.switches``) or in a JSON/YAML file
re-read when it changes::

    "*": {rollout_seconds: 30}                       # slow rollouts everywhere
    storefront/web: {health: Degraded, message: "..."}
    payments/ledger: {sync: Failed}                  # sync operations fail (ArgoCD-like message)
    storefront/catalog: {pods: CrashLoopBackOff}     # or ImagePullBackOff, OOMKilled

Commands from the control plane (long-poll, as the agent) are carried out on
the simulation: refresh (fetch now), restart (pods restart and the workload
rolls again), run-job (a Workflow, or a Job for a CronJob, that runs, then succeeds), logs (a few
synthetic lines).

``SimulatedCluster.run_once`` is one iteration of the loop (testable with a
clock); ``run`` loops until a stop event or an iteration count;
``run_many`` runs many simulated clusters in one process for load tests.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

from agent import summaries
from agent.protocol import COMMANDS, MAX_LOG_LINES, Command, CommandResult, Heartbeat
from agent.report import Outbox, Reporter, Tracker, Unauthorized

log = logging.getLogger(__name__)

SIMULATOR_VERSION = "0.1.0"
AGENT_VERSION = f"simulated-{SIMULATOR_VERSION}"
ARGOCD_POLL_SECONDS = 180.0  # ArgoCD's default timeout.reconciliation
POD_FAULTS = ("CrashLoopBackOff", "ImagePullBackOff", "OOMKilled")
MAX_PODS_PER_APP = 50  # a simulated app with more replicas shows this many pods
MAX_WORKFLOWS_PER_APP = 10
WORKLOAD_KINDS = ("Deployment", "Rollout")
JOB_KINDS = ("WorkflowTemplate", "CronWorkflow", "CronJob")
# What the addons of a cluster profile install, as the CRD names a real agent would report.
ADDON_CRDS = {
    "argo_rollouts": ["rollouts.argoproj.io"],
    "argo_workflows": ["workflows.argoproj.io", "workflowtemplates.argoproj.io", "cronworkflows.argoproj.io"],
    "keda": ["scaledobjects.keda.sh"],
    "istio": ["virtualservices.networking.istio.io"],
    "gateway_api": ["httproutes.gateway.networking.k8s.io"],
    "external_secrets": ["externalsecrets.external-secrets.io", "clustersecretstores.external-secrets.io"],
    "prometheus_operator": ["servicemonitors.monitoring.coreos.com"],
}


class SimulationError(Exception):
    """The simulated cluster cannot read its repository or its switches."""


# --- settings and switches ----------------------------------------------------------------------------


@dataclasses.dataclass
class SimulationSettings:
    """One simulated cluster. ``url`` is the control plane; git and agent endpoints hang off it."""

    url: str
    tenant: str
    cluster: str
    agent_token: str
    read_token: str
    mirror_dir: Path  # the local bare mirror of the cluster repository (created when missing)
    branch: str = "main"
    git_url: str | None = None  # default: <url>/git/<tenant>/<cluster>.git
    poll_seconds: float = ARGOCD_POLL_SECONDS
    step_seconds: float = 1.0  # each sync transition
    rollout_seconds: float | None = None  # Progressing -> Healthy; default step_seconds
    heartbeat_seconds: float = 15.0
    command_wait_seconds: float = 20.0  # the long-poll of GET commands
    tick_seconds: float = 0.25  # how often the loop advances the simulation
    switch_file: Path | None = None
    kubernetes_version: str | None = None
    addons: list[str] = dataclasses.field(default_factory=list)

    @property
    def repository_url(self) -> str:
        return self.git_url or f"{self.url.rstrip('/')}/git/{self.tenant}/{self.cluster}.git"


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to inject into an app's simulation (every field optional)."""

    health: str | None = None  # "Degraded" (or "Suspended", "Missing", ...): health after the sync
    sync: str | None = None  # "Failed": sync operations fail
    pods: str | None = None  # one of POD_FAULTS
    message: str | None = None  # the message ArgoCD / the pods show with the fault
    rollout_seconds: float | None = None  # a slow rollout

    @classmethod
    def parse(cls, where: str, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise SimulationError(f"switch {where}: expected a mapping, not {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SimulationError(f"switch {where}: unknown field(s) {', '.join(sorted(unknown))}")
        fault = cls(**data)
        if fault.pods is not None and fault.pods not in POD_FAULTS:
            raise SimulationError(f"switch {where}: pods must be one of {', '.join(POD_FAULTS)}, not {fault.pods!r}")
        if fault.sync is not None and fault.sync != "Failed":
            raise SimulationError(f"switch {where}: sync can only be Failed, not {fault.sync!r}")
        if fault.rollout_seconds is not None and not (isinstance(fault.rollout_seconds, (int, float))
                                                      and fault.rollout_seconds >= 0):
            raise SimulationError(f"switch {where}: rollout_seconds must be a number >= 0")
        return fault

    def merged(self, other: Fault | None) -> Fault:
        """This fault with ``other``'s set fields on top (an app's switch over the "*" one)."""
        if other is None:
            return self
        return dataclasses.replace(self, **{k: v for k, v in dataclasses.asdict(other).items() if v is not None})


NO_FAULT = Fault()


class Switches:
    """Faults by app (``<ws>/<app>``, or ``"*"`` for all), set in code or read from a JSON/YAML file."""

    def __init__(self, path: Path | None = None):
        self._faults: dict[str, Fault] = {}
        self._from_file: dict[str, Fault] = {}
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def set(self, app: str = "*", **fault: Any) -> None:
        """Inject a fault (``set("shop/web", pods="CrashLoopBackOff")``); no fields clears the app's switch."""
        parsed = Fault.parse(app, fault)
        with self._lock:
            if parsed == NO_FAULT:
                self._faults.pop(app, None)
            else:
                self._faults[app] = parsed

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reload(self) -> None:
        """Re-read the switch file when it changed; a broken file keeps the previous switches (and says why)."""
        if self._path is None:
            return
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            with self._lock:
                self._from_file, self._stamp = {}, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            data = yaml.safe_load(self._path.read_text()) or {}
            if not isinstance(data, dict):
                raise SimulationError("the switch file must be a mapping of app (or \"*\") to fault")
            faults = {str(app): Fault.parse(str(app), fault or {}) for app, fault in data.items()}
        except (OSError, yaml.YAMLError, SimulationError, TypeError) as exc:
            log.warning("simulated cluster: switch file %s ignored: %s", self._path, exc)
            return
        with self._lock:
            self._from_file = faults
        log.info("simulated cluster: switches from %s: %s", self._path, ", ".join(sorted(faults)) or "none")

    def fault_for(self, workspace: str, app: str) -> Fault:
        key = f"{workspace}/{app}"
        with self._lock:
            everywhere = self._from_file.get("*", NO_FAULT).merged(self._faults.get("*"))
            return everywhere.merged(self._from_file.get(key)).merged(self._faults.get(key))


# --- reading the repository as ArgoCD does ------------------------------------------------------------


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
        listing = self._git("ls-tree", "-r", "-z", revision, "--", "apps", "workspaces")
        blobs: dict[str, str] = {}
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, path = entry.split(b"\t", 1)
            blobs[path.decode()] = meta.split()[2].decode()
        wanted = []
        app_files: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for path, blob in blobs.items():
            parts = path.split("/")
            if parts[0] == "apps" and len(parts) == 3 and parts[2].endswith(".yaml"):
                app_files.setdefault((parts[1], parts[2][:-5]), []).append((path, blob))
                wanted.append(blob)
        for path, blob in blobs.items():
            parts = path.split("/")
            if parts[0] == "workspaces" and len(parts) == 4 and (parts[1], parts[2]) in app_files:
                app_files[(parts[1], parts[2])].append((path, blob))
                if parts[3].split("-", 1)[0] in ("deployment", "rollout", "scaledobject",
                                                 "horizontalpodautoscaler", "workflowtemplate",
                                                 "cronworkflow", "cronjob"):
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
                scaler = next((o for o in objects if o.get("kind") in ("ScaledObject", "HorizontalPodAutoscaler")), {})
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


# --- the simulated sync and rollout of one app --------------------------------------------------------


@dataclasses.dataclass
class AppSimulation:
    """One app's simulated life: the revision ArgoCD compared, its sync operation, its workload."""

    source: AppSource
    revision: str  # the revision ArgoCD compares against (sync.revision)
    phase: str  # "outofsync" -> "syncing" -> "rolling" -> "done"; or "failed"
    since: float  # when the phase started
    previous: AppSource | None = None  # what ran before this sync (its pods stay until the new ones are ready)
    previous_health: str = "Missing"
    operation: str | None = None  # phase of the last finished sync operation
    operation_message: str | None = None
    generation: int = 1
    restarts: int = 0  # bumped by the restart command
    # name -> (started, template, kind of template): runs of its WorkflowTemplates and CronJobs
    workflows: dict[str, tuple[float, str, str]] = dataclasses.field(default_factory=dict)


def _short_hash(*parts: Any, size: int = 5) -> str:
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).hexdigest()[:size]


def _labels(source: AppSource) -> dict[str, str]:
    return {"app.kubernetes.io/name": source.name, summaries.MANAGED_LABEL: "shipyard",
            summaries.WORKSPACE_LABEL: source.workspace, summaries.APP_LABEL: source.name}


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class SimulatedCluster:
    """One simulated cluster: ArgoCD reading its repository, the workloads, and the agent reporting them."""

    def __init__(self, settings: SimulationSettings, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.switches = Switches(settings.switch_file)
        self.mirror = GitMirror(settings.mirror_dir, settings.repository_url, settings.branch, settings.read_token)
        self._own_client = client is None
        self.client = client or httpx.Client(base_url=settings.url, timeout=30.0)
        self.tracker = Tracker()
        self.outbox = Outbox()
        self.reporter = Reporter(self.client, settings.tenant, settings.cluster, settings.agent_token,
                                 self.tracker, self.outbox, clock=clock)
        self.apps: dict[tuple[str, str], AppSimulation] = {}
        self.revision: str | None = None
        self.last_error: str | None = None
        self.commands_handled = 0
        self._lock = threading.RLock()  # the loop and the command thread both touch the apps
        self._next_fetch = 0.0
        self._next_heartbeat = 0.0
        self._refresh = threading.Event()
        # the objects each app has reported, so the ones it no longer has are reported deleted
        self._owned: dict[tuple[str, str], set[tuple[str, str, str]]] = {}

    # -- the loop ------------------------------------------------------------------------------------

    def run_once(self) -> None:
        """One iteration: fetch when due, advance the simulation, report, heartbeat when due.

        Errors talking to git or the control plane are logged and retried on a later
        iteration (the outbox keeps what was not acknowledged); a refused agent token stops the loop.
        """
        now = self.clock()
        if now >= self._next_fetch or self._refresh.is_set():
            self._refresh.clear()
            self._next_fetch = now + self.settings.poll_seconds
            try:
                self.sync_repository()
            except SimulationError as exc:
                self._failed("reading the repository", exc)
        self.switches.reload()
        self.advance()
        try:
            self.reporter.send_pending()
            if self.clock() >= self._next_heartbeat:
                self.reporter.heartbeat(self.heartbeat())
                self._next_heartbeat = self.clock() + self.settings.heartbeat_seconds
            self.last_error = None
        except httpx.HTTPError as exc:
            self._failed("reporting to the control plane", exc)

    def _failed(self, doing: str, exc: Exception) -> None:
        message = f"{doing}: {exc}"
        if message != self.last_error:  # once per distinct error, not once per tick
            log.warning("simulated cluster %s: %s", self.settings.cluster, message)
        self.last_error = message

    def run(self, stop: threading.Event, iterations: int | None = None, commands: bool = True) -> None:
        """Loop until ``stop`` is set (or ``iterations`` ran), serving commands in a second thread."""
        poller = None
        if commands:
            poller = threading.Thread(target=self.serve_commands, args=(stop,), daemon=True,
                                      name=f"simulated-{self.settings.cluster}-commands")
            poller.start()
        count = 0
        try:
            while not stop.is_set() and (iterations is None or count < iterations):
                try:
                    self.run_once()
                except Unauthorized as exc:
                    log.error("simulated cluster %s stops: %s", self.settings.cluster, exc)
                    stop.set()
                    break
                count += 1
                self._refresh.wait(self.settings.tick_seconds) or stop.wait(0)
        finally:
            if poller is not None:  # its long-poll ends within command_wait_seconds; close() must come after
                stop.set()
                poller.join(self.settings.command_wait_seconds + 15)

    def serve_commands(self, stop: threading.Event, iterations: int | None = None) -> None:
        """Long-poll for commands and carry them out until ``stop`` (or ``iterations`` polls)."""
        count, backoff = 0, 0.5
        while not stop.is_set() and (iterations is None or count < iterations):
            count += 1
            try:
                commands = self.reporter.poll_commands(self.settings.command_wait_seconds)
                backoff = 0.5
                for command in commands:
                    self.reporter.send_result(command.id, self.handle(command))
                    self.commands_handled += 1
                if self.reporter.poll_again_in and not commands:
                    stop.wait(self.reporter.poll_again_in)
            except Unauthorized as exc:
                log.error("simulated cluster %s: commands stop: %s", self.settings.cluster, exc)
                return
            except httpx.HTTPError as exc:
                self._failed("polling for commands", exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # -- ArgoCD: the repository ---------------------------------------------------------------------

    def sync_repository(self) -> None:
        """Fetch; on a new revision, start a sync for every app whose files changed, drop removed apps."""
        revision = self.mirror.fetch()
        if revision is None or revision == self.revision:
            return
        sources = self.mirror.read_apps(revision)
        now = self.clock()
        with self._lock:
            for key in [k for k in self.apps if k not in sources]:
                self._remove(self.apps.pop(key))
            for key, source in sources.items():
                sim = self.apps.get(key)
                if sim is None:
                    self.apps[key] = AppSimulation(source, revision, "outofsync", now)
                elif sim.source.digest != source.digest:
                    previous = sim.source if sim.phase == "done" else sim.previous
                    health = self._health(sim, now)[0]
                    self.apps[key] = dataclasses.replace(
                        sim, source=source, revision=revision, phase="outofsync", since=now, previous=previous,
                        previous_health=health, generation=sim.generation + 1)
                else:  # untouched by the commit: compared again at the new revision, nothing to sync
                    sim.revision = revision
            self.revision = revision
        log.info("simulated cluster %s: revision %s, %d apps", self.settings.cluster, revision[:12], len(sources))

    def refresh(self) -> None:
        """Fetch on the next iteration (the refresh command)."""
        self._refresh.set()

    # -- the state machine ---------------------------------------------------------------------------

    def _rollout_seconds(self, fault: Fault) -> float:
        if fault.rollout_seconds is not None:
            return float(fault.rollout_seconds)
        if self.settings.rollout_seconds is not None:
            return self.settings.rollout_seconds
        return self.settings.step_seconds

    def advance(self) -> None:
        """Move every app along its sync and rollout, and record the resulting states."""
        now = self.clock()
        step = self.settings.step_seconds
        with self._lock:
            for sim in self.apps.values():
                fault = self.switches.fault_for(sim.source.workspace, sim.source.name)
                if sim.phase == "outofsync" and now - sim.since >= step:
                    sim.phase, sim.since = "syncing", sim.since + step
                if sim.phase == "syncing" and now - sim.since >= step:
                    if fault.sync == "Failed":
                        sim.phase, sim.since = "failed", sim.since + step
                        sim.operation = "Failed"
                        sim.operation_message = fault.message or (
                            "one or more objects failed to apply, reason: (simulated) admission webhook "
                            f"\"validate.simulated\" denied the request: {sim.source.workload_kind or 'Application'} "
                            f"\"{sim.source.workload_name or sim.source.name}\" is invalid")
                    else:
                        sim.phase, sim.since = "rolling", sim.since + step
                        sim.operation, sim.operation_message = "Succeeded", "successfully synced (all tasks run)"
                if sim.phase == "failed" and fault.sync != "Failed" and now - sim.since >= step:
                    # the switch is off: ArgoCD's retry (or selfHeal) syncs again
                    sim.phase, sim.since = "syncing", now
                if sim.phase == "rolling" and now - sim.since >= self._rollout_seconds(fault):
                    sim.phase, sim.since, sim.previous = "done", sim.since + self._rollout_seconds(fault), None
                self._observe(sim, fault, now)

    def _health(self, sim: AppSimulation, now: float, fault: Fault | None = None) -> tuple[str, str | None]:
        fault = fault or self.switches.fault_for(sim.source.workspace, sim.source.name)
        if sim.phase in ("outofsync", "syncing", "failed"):
            if sim.phase == "syncing" and sim.previous_health == "Missing":
                return "Progressing", None
            return sim.previous_health, None
        kind, name = sim.source.workload_kind, sim.source.workload_name
        if fault.health:
            return fault.health, fault.message or f"{kind or 'Application'} \"{name or sim.source.name}\" " \
                                                  "has timed out progressing. (simulated)"
        if fault.pods and kind is not None and sim.source.replicas > 0:
            if sim.phase == "rolling":
                return "Progressing", f"Waiting for rollout to finish: 0 of {sim.source.replicas} updated " \
                                      "replicas are available..."
            return "Degraded", f"{kind} \"{name}\" exceeded its progress deadline"
        if sim.phase == "rolling":
            return "Progressing", (f"Waiting for rollout to finish: {sim.source.replicas} replicas updating"
                                   if kind else None)
        return "Healthy", None

    def _observe(self, sim: AppSimulation, fault: Fault, now: float) -> None:
        states = self._states(sim, fault, now)
        for kind, namespace, name, state in states:
            delta = self.tracker.observe(kind, namespace, name, state)
            if delta is not None:
                self.outbox.put(delta)
        # objects of this app no longer there (old pods after a rollout, workflows beyond the kept ones)
        current = {(k, ns, n) for k, ns, n, _ in states}
        for key in self._owned.get((sim.source.workspace, sim.source.name), set()) - current:
            delta = self.tracker.observe(*key, None)
            if delta is not None:
                self.outbox.put(delta)
        self._owned[(sim.source.workspace, sim.source.name)] = current

    def _remove(self, sim: AppSimulation) -> None:
        """The app left the repository: ArgoCD prunes it (the Application's finalizer deletes its objects)."""
        for key in self._owned.pop((sim.source.workspace, sim.source.name), set()):
            delta = self.tracker.observe(*key, None)
            if delta is not None:
                self.outbox.put(delta)

    def _states(self, sim: AppSimulation, fault: Fault, now: float) -> list[tuple[str, str, str, dict]]:
        """The compact states of the app's objects right now (through agent.summaries, as the agent does)."""
        source = sim.source
        health, message = self._health(sim, now, fault)
        synced = sim.phase in ("rolling", "done")
        operation = {"syncing": "Running"}.get(sim.phase, sim.operation)
        op_message = "waiting for completion of hook and sync (simulated)" if sim.phase == "syncing" \
            else sim.operation_message
        status: dict[str, Any] = {
            "sync": {"status": "Synced" if synced else "OutOfSync", "revision": sim.revision},
            "health": {"status": health, **({"message": message} if message else {})},
        }
        if operation:
            status["operationState"] = {"phase": operation, "message": op_message}
        if sim.phase == "failed":
            status["conditions"] = [{"type": "SyncError", "message": sim.operation_message}]
        application = {"metadata": {"name": source.application, "namespace": source.argocd_namespace,
                                    "labels": _labels(source)}, "status": status}
        states = [("Application", source.argocd_namespace, source.application, summaries.application(application))]
        if (source.workload_kind and sim.phase != "outofsync") or sim.previous is not None:
            states.extend(self._workload_states(sim, fault, now))
        for name, (started, template, kind) in sim.workflows.items():
            if kind == "CronJob":  # kubectl create job --from=cronjob/...: a Job
                states.append(("Job", source.namespace, name, summaries.job(self._job(
                    source, name, template, started, now))))
            else:
                states.append(("Workflow", source.namespace, name, summaries.workflow(self._workflow(
                    source, name, template, started, now))))
        return states

    def _workload_states(self, sim: AppSimulation, fault: Fault, now: float) -> list[tuple[str, str, str, dict]]:
        source = sim.source
        states = []
        new_ready = 0
        rolled_out = sim.phase == "done"
        running = sim.phase in ("rolling", "done")
        broken = fault.pods is not None
        if source.workload_kind and running and source.replicas > 0:
            if rolled_out:
                new_ready = source.replicas
            else:
                fraction = (now - sim.since) / max(self._rollout_seconds(fault), 1e-9)
                new_ready = min(source.replicas, int(fraction * source.replicas))
            if broken:
                new_ready = 0
        old = sim.previous if not rolled_out else None
        old_pods = 0 if old is None or old.workload_kind is None else old.replicas
        if source.workload_kind:
            shown = source if running or old is None else old
            states.append(self._workload(sim, shown, fault, new_ready if running else old_pods,
                                         rolled_out, now))
            if running:
                template = _short_hash(source.digest, size=10)
                for index in range(min(source.replicas, MAX_PODS_PER_APP)):
                    states.append(self._pod(sim, source, template, index, index < new_ready, fault, now))
        if old is not None and old.workload_kind:
            template = _short_hash(old.digest, size=10)
            for index in range(min(old_pods, MAX_PODS_PER_APP)):
                states.append(self._pod(sim, old, template, index, True, NO_FAULT, now))
        return states

    def _workload(self, sim: AppSimulation, source: AppSource, fault: Fault, ready: int, rolled_out: bool,
                  now: float) -> tuple[str, str, str, dict]:
        replicas = source.replicas
        progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
        if fault.pods and replicas > 0:
            available = {**available, "status": "False", "reason": "MinimumReplicasUnavailable"}
            if rolled_out:
                progressing = {**progressing, "status": "False", "reason": "ProgressDeadlineExceeded"}
        elif not rolled_out:
            progressing = {**progressing, "reason": "ReplicaSetUpdated"}
        raw: dict[str, Any] = {
            "metadata": {"name": source.workload_name, "namespace": source.namespace, "generation": sim.generation,
                         "labels": _labels(source)},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": sim.generation, "replicas": replicas, "readyReplicas": ready,
                       "updatedReplicas": replicas if sim.phase in ("rolling", "done") else 0,
                       "availableReplicas": ready, "unavailableReplicas": max(0, replicas - ready),
                       "conditions": [available, progressing]},
        }
        if source.workload_kind == "Rollout":
            health, message = self._health(sim, now, fault)
            raw["status"].update({
                "phase": {"Healthy": "Healthy", "Degraded": "Degraded"}.get(health, "Progressing"),
                "message": message,
                "currentStepIndex": source.canary_steps if rolled_out else 0,
            })
            return "Rollout", source.namespace, source.workload_name, summaries.rollout(raw)
        return "Deployment", source.namespace, source.workload_name, summaries.deployment(raw)

    def _pod(self, sim: AppSimulation, source: AppSource, template: str, index: int, ready: bool, fault: Fault,
             now: float) -> tuple[str, str, str, dict]:
        name = f"{source.workload_name}-{template}-{_short_hash(template, index)}"
        container = source.name
        image = source.images[0] if source.images else "unknown"
        restarts = sim.restarts
        state: dict[str, Any] = {"running": {"startedAt": _iso(sim.since)}}
        last_state: dict[str, Any] = {}
        phase = "Running"
        if fault.pods == "ImagePullBackOff":
            phase = "Pending"
            state = {"waiting": {"reason": "ImagePullBackOff", "message": fault.message or
                                 f"Back-off pulling image \"{image}\" (simulated)"}}
        elif fault.pods in ("CrashLoopBackOff", "OOMKilled"):
            # restarts climb while it crash-loops, as a real kubelet's back-off would have them do
            restarts += 1 + int(max(0.0, now - sim.since) / max(self.settings.step_seconds * 4, 1.0))
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": fault.message or
                                 f"back-off 40s restarting failed container={container} pod={name} (simulated)"}}
            if fault.pods == "OOMKilled":
                last_state = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
            else:
                last_state = {"terminated": {"reason": "Error", "exitCode": 1}}
        elif not ready:
            state = {"waiting": {"reason": "ContainerCreating"}} if sim.phase == "rolling" else state
        raw = {
            "metadata": {"name": name, "namespace": source.namespace, "labels": _labels(source)},
            "spec": {"nodeName": f"simulated-node-{int(_short_hash(name, size=4), 16) % 3 + 1}"},
            "status": {"phase": phase, "containerStatuses": [
                {"name": container, "image": image, "ready": ready and not fault.pods, "restartCount": restarts,
                 "state": state, **({"lastState": last_state} if last_state else {})}]},
        }
        return "Pod", source.namespace, name, summaries.pod(raw)

    def _workflow(self, source: AppSource, name: str, template: str, started: float, now: float) -> dict:
        finished = now - started >= self._rollout_seconds(NO_FAULT) + self.settings.step_seconds
        status = {"phase": "Succeeded" if finished else "Running", "startedAt": _iso(started)}
        if finished:
            status["finishedAt"] = _iso(started + self.settings.step_seconds)
            status["message"] = "simulated run"
        return {"metadata": {"name": name, "namespace": source.namespace, "labels": _labels(source)},
                "spec": {"workflowTemplateRef": {"name": template}}, "status": status}

    def _job(self, source: AppSource, name: str, cronjob: str, started: float, now: float) -> dict:
        finished = now - started >= self._rollout_seconds(NO_FAULT) + self.settings.step_seconds
        status: dict[str, Any] = {"startTime": _iso(started)}
        if finished:
            done = _iso(started + self.settings.step_seconds)
            status.update(succeeded=1, completionTime=done,
                          conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": done}])
        else:
            status["active"] = 1
        return {"metadata": {"name": name, "namespace": source.namespace, "labels": _labels(source),
                             "ownerReferences": [{"kind": "CronJob", "name": cronjob}]}, "status": status}

    # -- the agent's side ---------------------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        crds = ["applications.argoproj.io"] + [c for addon in self.settings.addons for c in ADDON_CRDS.get(addon, [])]
        with self._lock:
            namespaces = sorted({sim.source.namespace for sim in self.apps.values()})
        return Heartbeat(agent_version=AGENT_VERSION, kubernetes_version=self.settings.kubernetes_version,
                         addons=sorted(self.settings.addons), crds=sorted(set(crds)), namespaces=namespaces,
                         objects=len(self.tracker), pending=len(self.outbox), simulated=True)

    def handle(self, command: Command) -> CommandResult:
        """Carry out one command on the simulation; every result says it is simulated."""
        if command.type not in COMMANDS:
            return CommandResult(False, {"simulated": True}, f"unknown command {command.type!r}")
        with self._lock:
            if command.type == "refresh":
                sim = self._find(lambda s: (command.namespace, command.name)
                                 == (s.source.argocd_namespace, s.source.application))
                if sim is None:
                    return self._not_found(command)
                self.refresh()
                return CommandResult(True, {"simulated": True, "refreshing": True, "revision": self.revision})
            if command.type == "restart":
                sim = self._find(lambda s: (command.kind, command.namespace, command.name)
                                 == (s.source.workload_kind, s.source.namespace, s.source.workload_name))
                if sim is None:
                    return self._not_found(command)
                sim.restarts += 1
                sim.generation += 1
                if sim.phase == "done":
                    sim.phase, sim.since = "rolling", self.clock()
                return CommandResult(True, {"simulated": True, "restartedAt": _iso(self.clock())})
            if command.type == "run-job":
                sim = self._find(lambda s: s.source.namespace == command.namespace
                                 and (command.kind, command.name) in s.source.jobs)
                if sim is None:
                    return self._not_found(command)
                name = f"{command.name}-{uuid.uuid4().hex[:5]}"
                if command.kind == "CronJob":
                    name = f"{command.name[:40]}-manual-{uuid.uuid4().hex[:5]}"
                sim.workflows[name] = (self.clock(), command.name, command.kind)
                while len(sim.workflows) > MAX_WORKFLOWS_PER_APP:
                    sim.workflows.pop(next(iter(sim.workflows)))
                if command.kind == "CronJob":
                    return CommandResult(True, {"simulated": True, "kind": "Job", "name": name})
                return CommandResult(True, {"simulated": True, "workflow": name,
                                            "parameters": command.params.get("parameters") or {}})
            # logs
            pod_key = ("Pod", command.namespace, command.name)
            owner = self._find(lambda s: pod_key in self._owned.get((s.source.workspace, s.source.name), set()))
            if owner is None:
                return self._not_found(command)
            return CommandResult(True, {"simulated": True, "container": command.params.get("container") or
                                        owner.source.name, "lines": self._log_lines(owner, command)})

    def _find(self, match: Callable[[AppSimulation], bool]) -> AppSimulation | None:
        return next((sim for sim in self.apps.values() if match(sim)), None)

    @staticmethod
    def _not_found(command: Command) -> CommandResult:
        return CommandResult(False, {"simulated": True},
                             f"{command.kind} {command.namespace}/{command.name} not found in the simulated cluster")

    def _log_lines(self, sim: AppSimulation, command: Command) -> list[str]:
        tail = max(1, min(int(command.params.get("tail_lines") or 20), MAX_LOG_LINES))
        start = sim.since
        lines = [f"{_iso(start)} [simulated] container {sim.source.name} started "
                 f"({sim.source.images[0] if sim.source.images else 'no image'})",
                 f"{_iso(start + 1)} [simulated] listening; this is a simulated compute plane, no process runs",
                 f"{_iso(start + 2)} [simulated] revision {sim.revision[:12]}, generation {sim.generation}"]
        fault = self.switches.fault_for(sim.source.workspace, sim.source.name)
        if fault.pods in ("CrashLoopBackOff", "OOMKilled"):
            lines.append(f"{_iso(self.clock())} [simulated] fatal: "
                         + ("out of memory (killed)" if fault.pods == "OOMKilled" else "exiting with status 1"))
        return lines[-tail:]


# --- many clusters in one process ---------------------------------------------------------------------


def run_many(clusters: list[SimulatedCluster], stop: threading.Event, workers: int = 16,
             tick_seconds: float = 0.5, commands: bool = True) -> list[threading.Thread]:
    """Run many simulated clusters in this process cheaply, until ``stop`` is set (for load tests).

    One scheduler thread advances every cluster each tick through a small pool
    (fetches are subprocesses, so a pool keeps them overlapping), and each
    cluster holds its own command long-poll in a thread, as real agents would
    each hold a connection. Returns the started threads.
    """
    def schedule():
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulated-step") as pool:
            while not stop.is_set():
                started = time.monotonic()
                for future in [pool.submit(_step, cluster) for cluster in clusters]:
                    future.result()
                stop.wait(max(0.0, tick_seconds - (time.monotonic() - started)))

    def _step(cluster: SimulatedCluster) -> None:
        try:
            cluster.run_once()
        except Unauthorized as exc:
            cluster._failed("reporting", exc)

    threads = [threading.Thread(target=schedule, daemon=True, name="simulated-scheduler")]
    if commands:
        threads += [threading.Thread(target=c.serve_commands, args=(stop,), daemon=True,
                                     name=f"simulated-{c.settings.cluster}-commands") for c in clusters]
    for thread in threads:
        thread.start()
    return threads


def start_in_background(settings: SimulationSettings) -> tuple[SimulatedCluster, threading.Event, threading.Thread]:
    """One simulated cluster in a daemon thread (what ``shipyard up`` runs); set the event to stop it."""
    cluster = SimulatedCluster(settings)
    stop = threading.Event()
    thread = threading.Thread(target=cluster.run, args=(stop,), daemon=True, name=f"simulated-{settings.cluster}")
    thread.start()
    return cluster, stop, thread


def states_by_kind(cluster: SimulatedCluster) -> dict[str, dict[str, dict]]:
    """What the cluster reports, by kind and "<namespace>/<name>" (for tests and the demo's own checks)."""
    found: dict[str, dict[str, dict]] = {}
    for delta in cluster.tracker.snapshot():
        found.setdefault(delta.kind, {})[f"{delta.namespace}/{delta.name}"] = delta.state
    return found


__all__ = [
    "AGENT_VERSION",
    "ARGOCD_POLL_SECONDS",
    "POD_FAULTS",
    "SimulationSettings",
    "SimulationError",
    "Fault",
    "Switches",
    "AppSource",
    "GitMirror",
    "SimulatedCluster",
    "run_many",
    "start_in_background",
    "states_by_kind",
]
