"""One simulated cluster: ArgoCD's loop over its repository, the apps' state machine, and the agent's side.

``SimulatedCluster`` plays three parts in one object, because in a real
cluster they meet only through the cluster's API and here there is none:

- ArgoCD: ``sync_repository`` fetches the repository (simulation.repository)
  when its poll is due or a refresh was asked, starts a sync for every app
  whose files the new revision changed, moves the untouched ones to the new
  revision (as manifest-generate-paths does) and prunes apps that left;
- the cluster: ``advance`` moves every app along OutOfSync -> sync operation
  Running -> Synced, health Progressing -> Healthy (or the fault its switch
  injects, simulation.switches), each step taking ``step_seconds``, and
  records the objects the app has at that moment (simulation.workloads);
- the agent: it reports those objects through the agent's own Tracker,
  Outbox and Reporter (agent.report), heartbeats as a simulated agent
  (``simulated: true``, agent version ``simulated-<version>``), retries with
  the agent's jittered back-off (agent.backoff), and carries out the control
  plane's commands on the simulation: refresh (fetch now; a commit's refresh,
  queued by the control plane after each commit, only when the commit is not
  the revision fetched already), restart (pods
  restart and the workload rolls again), run-job (a Workflow, or a Job for a
  CronJob, that runs, then succeeds), logs (a few ``[simulated]`` lines).

``run_once`` is one iteration of the loop (tests drive it with a fake clock);
``run`` loops until a stop event or an iteration count, with the command
long-poll in a second thread.
"""

from __future__ import annotations

import datetime as dt
import dataclasses
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable

import httpx

from agent.backoff import Backoff, control_plane_retry_after
from contract.addons import ADDON_CRDS, ARGOCD, addons_installed
from contract.protocol import COMMANDS, COMMIT_REFRESH_REASON, MAX_LOG_LINES, Command, CommandResult, Heartbeat
from agent.report import Outbox, Reporter, Tracker, Unauthorized
from simulation.errors import SimulationError
from simulation.repository import GitMirror
from simulation.settings import SimulationSettings
from simulation.switches import NO_FAULT, Fault, Switches
from simulation.workloads import AppSimulation, app_health, app_states, kubernetes_time, rollout_seconds

log = logging.getLogger(__name__)

SIMULATOR_VERSION = "0.1.0"
AGENT_VERSION = f"simulated-{SIMULATOR_VERSION}"
MAX_WORKFLOWS_PER_APP = 10


class SimulatedCluster:
    """One simulated cluster: ArgoCD reading its repository, the workloads, and the agent reporting them."""

    def __init__(self, settings: SimulationSettings, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.settings = settings
        self.clock = clock
        # the agent's own back-off: jittered, so simulated clusters that lost the control plane
        # together (all of them, in a load test) do not come back in step
        rng = rng or random.Random()
        self.report_backoff = Backoff(settings.backoff_base, settings.backoff_max, rng)
        self.command_backoff = Backoff(settings.backoff_base, settings.backoff_max, rng)
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
        self._next_report = 0.0  # later than now while backing off from an unreachable control plane
        self._refresh = threading.Event()
        # the objects each app has reported, so the ones it no longer has are reported deleted
        self._owned: dict[tuple[str, str], set[tuple[str, str, str]]] = {}

    # -- the loop ------------------------------------------------------------------------------------

    def run_once(self) -> None:
        """One iteration: fetch when due, advance the simulation, report, heartbeat when due.

        Errors talking to git are logged and retried on a later iteration; an unreachable
        control plane is retried after the agent's back-off (the outbox keeps what was not
        acknowledged, coalesced per object, while the simulation moves on); a refused agent
        token stops the loop.
        """
        now = self.clock()
        if now >= self._next_fetch or self._refresh.is_set():
            self._refresh.clear()
            self._next_fetch = now + self.settings.poll_seconds
            try:
                self.sync_repository()
            except SimulationError as exc:
                self.log_failure("reading the repository", exc)
        self.switches.reload()
        self.advance()
        if self.clock() < self._next_report:
            return
        try:
            self.reporter.send_pending()
            if self.clock() >= self._next_heartbeat:
                self.reporter.heartbeat(self.heartbeat())
                self._next_heartbeat = self.clock() + self.settings.heartbeat_seconds
            self.last_error = None
            self.report_backoff.reset()
        except httpx.HTTPError as exc:
            self.log_failure("reporting to the control plane", exc)
            self._next_report = self.clock() + self.report_backoff.next(at_least=control_plane_retry_after(exc))

    def log_failure(self, doing: str, exc: Exception) -> None:
        """Log what failed (once per distinct error, not once per tick) and keep it as ``last_error``."""
        message = f"{doing}: {exc}"
        if message != self.last_error:
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
        count = 0
        while not stop.is_set() and (iterations is None or count < iterations):
            count += 1
            try:
                commands = self.reporter.poll_commands(self.settings.command_wait_seconds)
                self.command_backoff.reset()
                for command in commands:
                    self.reporter.send_result(command.id, self.handle(command))
                    self.commands_handled += 1
                if self.reporter.poll_again_in and not commands:
                    stop.wait(self.reporter.poll_again_in)
            except Unauthorized as exc:
                log.error("simulated cluster %s: commands stop: %s", self.settings.cluster, exc)
                return
            except httpx.HTTPError as exc:
                self.log_failure("polling for commands", exc)
                stop.wait(self.command_backoff.next(at_least=control_plane_retry_after(exc)))

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
                    health = app_health(sim, self.fault(sim))[0]
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

    def advance(self) -> None:
        """Move every app along its sync and rollout, and record the resulting states."""
        now = self.clock()
        step = self.settings.step_seconds
        with self._lock:
            for sim in self.apps.values():
                fault = self.fault(sim)
                if sim.phase == "outofsync" and now - sim.since >= step:
                    sim.phase, sim.since, sim.operation_revision = "syncing", sim.since + step, sim.revision
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
                    sim.phase, sim.since, sim.operation_revision = "syncing", now, sim.revision
                if sim.phase == "rolling" and now - sim.since >= rollout_seconds(self.settings, fault):
                    sim.phase, sim.since, sim.previous = "done", sim.since + rollout_seconds(self.settings, fault), None
                self._observe(sim, fault, now)

    def _observe(self, sim: AppSimulation, fault: Fault, now: float) -> None:
        states = app_states(self.settings, sim, fault, now)
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

    # -- the agent's side ---------------------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        # what a real agent would find: ArgoCD's CRDs and those of every addon the cluster runs
        crds = {crd for addon in (ARGOCD, *self.settings.addons) for crd in ADDON_CRDS.get(addon, ())}
        with self._lock:
            namespaces = sorted({sim.source.namespace for sim in self.apps.values()})
        return Heartbeat(agent_version=AGENT_VERSION, kubernetes_version=self.settings.kubernetes_version,
                         addons=addons_installed(crds), crds=sorted(crds), namespaces=namespaces,
                         objects=len(self.tracker), pending=len(self.outbox), simulated=True)

    def handle(self, command: Command) -> CommandResult:
        """Carry out one command on the simulation; every result says it is simulated."""
        if command.type not in COMMANDS:
            return CommandResult(False, {"simulated": True}, f"unknown command {command.type!r}")
        with self._lock:
            if command.type == "refresh":
                if command.params.get("reason") == COMMIT_REFRESH_REASON:
                    return self._refresh_for_commit(command)
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
                return CommandResult(True, {"simulated": True, "restartedAt": kubernetes_time(self.clock())})
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
            container = command.params.get("container") or owner.source.name
            lines = self._log_lines(owner, command)
            if lines is None:  # the API server's answer when no container ran before this one
                return CommandResult(False, {"simulated": True}, f'previous terminated container "{container}" in '
                                                                 f'pod "{command.name}" not found (simulated)')
            return CommandResult(True, {"simulated": True, "container": container, "lines": lines})

    def _refresh_for_commit(self, command: Command) -> CommandResult:
        """A commit's refresh (agent.commands): a no-op when ArgoCD compares at that commit already (its
        poll got there first), else a fetch at once. The simulation compares every Application at the
        one revision it fetched, so whichever the command names (an app's, the app of apps, one the
        commit adds) is served by that fetch."""
        commit = command.params.get("commit")
        if commit == self.revision:
            return CommandResult(True, {"simulated": True, "refresh": "skipped", "seen": True, "commit": commit})
        self.refresh()
        return CommandResult(True, {"simulated": True, "refresh": "normal", "commit": commit})

    def fault(self, sim: AppSimulation) -> Fault:
        """The app's switch, unless it names an image the app does not run now."""
        fault = self.switches.fault_for(sim.source.workspace, sim.source.name)
        return NO_FAULT if fault.image is not None and fault.image not in sim.source.images else fault

    def _find(self, match: Callable[[AppSimulation], bool]) -> AppSimulation | None:
        return next((sim for sim in self.apps.values() if match(sim)), None)

    @staticmethod
    def _not_found(command: Command) -> CommandResult:
        return CommandResult(False, {"simulated": True},
                             f"{command.kind} {command.namespace}/{command.name} not found in the simulated cluster")

    def _log_lines(self, sim: AppSimulation, command: Command) -> list[str] | None:
        """What a container of the app wrote, by the logs command's params (tail_lines, previous,
        since_time, timestamps); None for ``previous`` when the container never restarted."""
        params = command.params
        tail = max(1, min(int(params.get("tail_lines") or 20), MAX_LOG_LINES))
        fault = self.fault(sim)
        crashing = fault.pods in ("CrashLoopBackOff", "OOMKilled")
        if params.get("previous") and not (crashing or sim.restarts):
            return None
        start = sim.since
        image = sim.source.images[0] if sim.source.images else "no image"
        entries = [(start, f"[simulated] container {sim.source.name} started ({image})"),
                   (start + 1, "[simulated] listening; this is a simulated compute plane, no process runs"),
                   (start + 2, f"[simulated] revision {sim.revision[:12]}, generation {sim.generation}")]
        if crashing:
            entries.append((start + 3, "[simulated] fatal: " + (
                "out of memory (killed)" if fault.pods == "OOMKilled" else "exiting with status 1")))
            if not params.get("previous"):
                entries = entries[:1]  # the current container has just started again
        elif params.get("previous"):
            entries.append((start + 3, "[simulated] received SIGTERM (restart); shutting down"))
        since = params.get("since_time")
        if since:
            moment = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
            entries = [e for e in entries if e[0] >= moment]
        lines = [f"{kubernetes_time(at)} {text}" if params.get("timestamps") else text for at, text in entries]
        return lines[-tail:]


def states_by_kind(cluster: SimulatedCluster) -> dict[str, dict[str, dict]]:
    """What the cluster reports, by kind and "<namespace>/<name>" (for tests and the demo's own checks)."""
    found: dict[str, dict[str, dict]] = {}
    for delta in cluster.tracker.snapshot():
        found.setdefault(delta.kind, {})[f"{delta.namespace}/{delta.name}"] = delta.state
    return found


__all__ = ["AGENT_VERSION", "SimulatedCluster", "states_by_kind"]
