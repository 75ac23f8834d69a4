"""The agent process: watchers, the reporter loop, the command loop, metrics.

Threads, each a thin loop around a step function (testable one step at a time):

- one ``Watcher`` per followed kind and scope (agent.watch), feeding the
  Tracker and the Outbox whether or not the control plane is reachable;
- the reporter: every ``batch_interval`` sends what is pending (a snapshot
  first, once every watcher has listed, so the first snapshot does not tell
  the control plane that everything is gone); backoff with jitter while the
  control plane is unreachable (the Outbox coalesces per object meanwhile,
  so memory stays bounded by the number of objects);
- the heartbeat: every ``heartbeat_interval``, with the facts last read;
- the facts: Kubernetes version, CRDs, addons, namespaces, every FACTS_INTERVAL;
- the command loop: long-poll, carry out (agent.commands; a commit's refreshes of one
  Application in a batch once), send each result.

No loop dies: an exception a step did not expect is logged with its
traceback the first time it comes from a place (once again without it),
counted in shipyard_agent_loop_failures_total{loop}, and the loop goes on
after a backoff. A refused agent token (401/403) waits for a new one in its
file (agent.credentials), looked at every second, so a rotation with no
grace stops status for about that long once the kubelet updated the file.

Each loop records its progress (agent.liveness) and ``/livez`` on the
metrics port fails, so that the kubelet restarts the agent, when one goes
longer than its budget without any: a step started, an answer, a batch or a
command done, a step ended and waiting. Budgets (longer than the slowest step
that still works; an outage or a refused token is waiting, never stuck):

==========  ===================================================================
report      REQUEST_BUDGET per answer from the control plane (status batches)
heartbeat   REQUEST_BUDGET per heartbeat
commands    command_wait + COMMAND_BUDGET per long-poll answered and per command
facts       FACTS_BUDGET per reading (a few API requests of KubeApi.request_timeout)
watch ...   2 × watch_timeout + WATCH_READ_TIMEOUT + the longest backoff + margin
            per list or watch connection (ends at timeoutSeconds, or read timeout)
==========  ===================================================================

Prometheus metrics are read from those objects at scrape time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from functools import partial
from importlib import metadata

import httpx
import urllib3

from agent.backoff import Backoff, control_plane_retry_after
from contract.addons import RELEASE_KEYS, addon_versions, addons_installed
from agent.commands import Executor, answer_for, coalesced
from agent.credentials import REFUSED_POLL, AgentToken
from agent.kube import ApiException, KubeApi
from agent.liveness import Liveness, Progress, health_app, serve
from contract.protocol import Command, CommandResult, Heartbeat
from agent.report import Outbox, Reporter, Tracker, Unauthorized
from agent.settings import AgentSettings
from agent.watch import Watcher, targets

log = logging.getLogger(__name__)

FACTS_INTERVAL = 300.0  # CRD lists are large on big clusters: read them every few minutes, not per heartbeat
SYNC_TIMEOUT = 60.0  # the longest the first snapshot waits for every watcher's first list
# Liveness budgets (see the table above). A control-plane request ends within the client's
# timeouts (connect 10 s, 30 s per read or write: _reporter); an API request within
# KubeApi.request_timeout (60 s); a watch after timeoutSeconds, or a read timeout of silence.
REQUEST_BUDGET = 120.0
COMMAND_BUDGET = 300.0  # a command is a few API requests (run-job: get + create), then its result is sent
FACTS_BUDGET = 600.0
WATCH_READ_TIMEOUT = 90.0
FIRST_FACTS_WAIT = 0.1  # the first heartbeat waits for the first reading of the facts, polling this often


def agent_version() -> str:
    try:
        return metadata.version("shipyard")
    except metadata.PackageNotFoundError:
        return "unknown"


class Agent:
    def __init__(self, settings: AgentSettings, rng: random.Random | None = None):
        self.settings = settings
        self.rng = rng or random.Random()
        self.tracker = Tracker()
        followed = targets(settings, self.tracker)
        # A pooled connection for each watch, and a few for lists, facts and commands (agent.kube).
        self.api = KubeApi(settings.kubernetes_configuration(), connections=len(followed) + 8)
        self.outbox = Outbox()
        self.token = AgentToken(settings.token, settings.token_file, settings.unauthorized_backoff)
        self.liveness = Liveness()
        self.loop_failures: Counter[str] = Counter()
        self.facts_read = threading.Event()  # set after the first reading of the facts, done or failed
        self.progress = {name: self.liveness.track(name, budget) for name, budget in (
            ("report", REQUEST_BUDGET), ("heartbeat", REQUEST_BUDGET), ("facts", FACTS_BUDGET),
            ("commands", settings.command_wait + COMMAND_BUDGET))}
        self.reporter = self._reporter(self.progress["report"])
        self.heartbeat_reporter = self._reporter(self.progress["heartbeat"])  # a slow heartbeat holds up no batch
        self.command_reporter = self._reporter(self.progress["commands"])  # the long-poll never holds up status
        self.executor = Executor(self.api, settings)
        self.watchers = [Watcher(self.api, target, self.tracker, self.outbox, settings, rng=self.rng)
                         for target in followed]
        self.commands: Counter[tuple[str, str]] = Counter()
        self.facts: dict = {}
        self._facts_at = -FACTS_INTERVAL
        self._started = time.monotonic()
        self.report_backoff = Backoff(settings.backoff_base, settings.backoff_max, self.rng)
        self.heartbeat_backoff = Backoff(settings.backoff_base, settings.backoff_max, self.rng)
        self.facts_backoff = Backoff(settings.backoff_base, settings.backoff_max, self.rng)
        self.command_backoff = Backoff(settings.backoff_base, settings.backoff_max, self.rng)
        self._threads: list[threading.Thread] = []

    def _reporter(self, progress: Progress) -> Reporter:
        client = httpx.Client(base_url=self.settings.url, timeout=httpx.Timeout(30.0, connect=10.0))
        return Reporter(client, self.settings.tenant, self.settings.cluster, self.token(), self.tracker, self.outbox,
                        token_source=self.token, on_answer=progress.advanced)

    # --- cluster facts for heartbeats ---------------------------------------------------------

    def cluster_facts(self) -> dict:
        """Kubernetes version, CRDs, addons and their versions, namespaces; re-read every FACTS_INTERVAL,
        kept on errors."""
        now = time.monotonic()
        if self.facts and now - self._facts_at < FACTS_INTERVAL:
            return self.facts
        facts = dict(self.facts)
        try:
            facts["kubernetes_version"] = self.api.version().get("gitVersion")
            crds = self.api.crds(RELEASE_KEYS)
            facts["crds"] = sorted(crds)
            facts["addons"] = addons_installed(set(crds))
            facts["addon_versions"] = addon_versions(crds, self._served_versions())
            fixed = self.settings.fixed_namespaces
            names = fixed if fixed is not None else self.api.namespace_names()
            facts["namespaces"] = [n for n in names if self.settings.namespace_allowed(n)]
            self._facts_at = now
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError) as exc:
            # facts are best effort; the heartbeat goes out with what is known
            log.warning("could not read cluster facts: %s", exc)
        self.facts = facts
        return facts

    def _served_versions(self) -> dict[str, list[str]] | None:
        """The API versions the server serves, by group; None when discovery cannot be read (the addons'
        versions then go without them, and the control plane checks none)."""
        try:
            return self.api.served_versions()
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("could not read the API versions the cluster serves: %s", exc)
            return None

    def heartbeat_message(self, facts: dict | None = None) -> Heartbeat:
        """The heartbeat, with ``facts`` (the heartbeat loop: what the facts loop read last), else read now."""
        facts = self.cluster_facts() if facts is None else facts
        return Heartbeat(agent_version=agent_version(), kubernetes_version=facts.get("kubernetes_version"),
                         addons=facts.get("addons", []), crds=facts.get("crds", []),
                         namespaces=facts.get("namespaces", []), objects=len(self.tracker),
                         pending=len(self.outbox), addon_versions=facts.get("addon_versions", {}),
                         watch_faults=[dict(w.fault) for w in self.watchers if w.fault is not None])

    # --- the loops' bodies ----------------------------------------------------------------------

    def ready_to_report(self) -> bool:
        return (all(w.synced.is_set() for w in self.watchers)
                or time.monotonic() - self._started > SYNC_TIMEOUT)

    def report_step(self) -> float:
        """Send what is pending; returns the wait before the next step."""
        if wait := self.token.retry_in():
            return wait
        try:
            reporter = self.reporter
            if self.ready_to_report() and (reporter.stream is None or self.outbox.changed.is_set()
                                           or reporter.unacknowledged):  # owed even when nothing changed since
                reporter.send_pending()
            self.report_backoff.reset()
            return self.settings.batch_interval
        except Unauthorized as exc:
            return self._refused(exc, "status")
        except httpx.HTTPError as exc:
            delay = self.report_backoff.next(at_least=control_plane_retry_after(exc))
            log.warning("control plane unreachable (%s); %d changes pending; retrying in %.1f s",
                        type(exc).__name__, len(self.outbox), delay)
            return delay

    def heartbeat_step(self) -> float:
        """One heartbeat with the facts last read; returns the wait before the next one."""
        if not self.facts_read.is_set():
            return FIRST_FACTS_WAIT  # the first heartbeat tells the control plane what the cluster has
        if wait := self.token.retry_in():
            return wait
        try:
            self.heartbeat_reporter.heartbeat(self.heartbeat_message(self.facts))
            self.heartbeat_backoff.reset()
            return self.settings.heartbeat_interval
        except (Unauthorized, httpx.HTTPError) as exc:
            return self._control_plane_failed(exc, self.heartbeat_backoff, "heartbeats", "heartbeat")

    def facts_step(self) -> float:
        """Read the cluster facts; returns the wait before the next reading (sooner after a failure)."""
        read_before = self._facts_at
        try:
            self.cluster_facts()
        finally:  # done or failed, the heartbeat waits no longer for it
            self.facts_read.set()
        if self._facts_at == read_before:  # not read (logged): try again after a backoff
            return self.facts_backoff.next()
        self.facts_backoff.reset()
        return FACTS_INTERVAL

    def command_step(self) -> float:
        """One long-poll and the commands it brought; returns the wait before the next step."""
        if wait := self.token.retry_in():
            return wait
        try:
            # a group is one command, or one Application's commit refreshes: carried out at the newest
            for group in coalesced(self.command_reporter.poll_commands(self.settings.command_wait)):
                self.progress["commands"].advanced()
                result = self._carry_out(group[-1])
                for command in group:
                    answer = answer_for(command, result)
                    self.commands[(command.type, "ok" if answer.ok else "error")] += 1
                    self.command_reporter.send_result(command.id, answer)
            self.command_backoff.reset()
            return self.command_reporter.poll_again_in
        except (Unauthorized, httpx.HTTPError) as exc:
            return self._control_plane_failed(exc, self.command_backoff, "commands", "command poll")

    def _control_plane_failed(self, exc: Exception, backoff, refused: str, what: str) -> float:
        """The wait after the control plane refused the token (``refused`` names what it refused) or could
        not be reached or answered an error (backed off, its Retry-After honoured)."""
        if isinstance(exc, Unauthorized):
            return self._refused(exc, refused)
        delay = backoff.next(at_least=control_plane_retry_after(exc))
        log.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
        return delay

    def _carry_out(self, command: Command) -> CommandResult:
        """The command's result; a failure the executor did not expect answers it as failed too."""
        try:
            return self.executor.execute(command)
        except Exception as exc:  # one command's top-level handler: the control plane hears of it, the loop goes on
            log.exception("command %s (%s %s/%s/%s) failed in the agent", command.id, command.type, command.kind,
                          command.namespace, command.name)
            self.loop_failures["commands"] += 1
            return CommandResult(ok=False, error=f"the agent failed carrying it out: {type(exc).__name__}: {exc}")

    def _refused(self, exc: Unauthorized, what: str) -> float:
        self.token.refused(exc.token)
        where = f"the file {self.settings.token_file}" if self.settings.token_file else "SHIPYARD_AGENT_TOKEN"
        log.error("%s; %s wait for a new agent token in %s (tried again every %.0f s)", exc, what, where,
                  self.settings.unauthorized_backoff)
        return REFUSED_POLL

    # --- running ----------------------------------------------------------------------------------

    def _loop(self, name: str, step, stop: threading.Event, progress: Progress) -> None:
        """Run ``step`` until ``stop``: whatever it raises is logged, counted and backed off from, never the end."""
        backoff = Backoff(self.settings.backoff_base, self.settings.backoff_max, self.rng)
        reported: set[tuple] = set()  # where failures came from, logged with a traceback once each
        while not stop.is_set():
            progress.advanced()
            try:
                delay = step() or 0.0
                backoff.reset()
            except Exception as exc:  # the thread's one top-level handler: a bug must not end the loop for good
                delay = backoff.next()
                self.loop_failures[name] += 1
                origin = _origin(exc)
                if origin in reported:
                    log.error("%s loop failed again (%s: %s); retrying in %.1f s", name, type(exc).__name__, exc, delay)
                else:
                    reported.add(origin)
                    log.exception("%s loop failed; retrying in %.1f s", name, delay)
            progress.waiting(delay)
            if delay:
                stop.wait(delay)

    def watch_budget(self) -> float:
        """The longest a watcher's step (one list, or one watch connection, and the wait after it) may take."""
        settings = self.settings
        return (2 * settings.watch_timeout + WATCH_READ_TIMEOUT
                + max(settings.backoff_max, settings.unauthorized_backoff) + REQUEST_BUDGET)

    def start(self, stop: threading.Event) -> None:
        for watcher in self.watchers:
            name = f"watch {watcher.target}"
            progress = self.liveness.track(name, self.watch_budget())
            # Watcher.run, one step per call (agent.watch keeps its loop); this loop survives it.
            self._spawn(name, self._loop, name, partial(watcher.run, stop, 1), stop, progress)
        for name, step in (("facts", self.facts_step), ("heartbeat", self.heartbeat_step),
                           ("report", self.report_step), ("commands", self.command_step)):
            self._spawn(name, self._loop, name, step, stop, self.progress[name])

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """After the stop event is set: interrupt open watches, wait a little for the threads, close clients."""
        for watcher in self.watchers:
            watcher.close()
        # The command long-poll holds its thread for up to SHIPYARD_COMMAND_WAIT: closing its
        # client ends the open request now. The status client stays open for a last batch.
        self.command_reporter.client.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.reporter.client.close()
        self.heartbeat_reporter.client.close()


def metrics_registry(agent: Agent):
    """A Prometheus registry whose collector reads the agent's counters at scrape time."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class AgentCollector:
        def collect(self):
            yield GaugeMetricFamily("shipyard_agent_followed_objects", "Objects the agent follows",
                                    value=len(agent.tracker))
            yield GaugeMetricFamily("shipyard_agent_pending_deltas", "Changes not yet acknowledged by the control plane",
                                    value=len(agent.outbox))
            yield CounterMetricFamily("shipyard_agent_batches_sent", "Status batches acknowledged",
                                      value=agent.reporter.sent_batches)
            yield CounterMetricFamily("shipyard_agent_stream_resyncs", "Snapshots sent (new streams)",
                                      value=agent.reporter.resyncs)
            per_watch = {
                "shipyard_agent_relists": ("Complete lists of a watched kind (start, 410 Gone)", "relists"),
                "shipyard_agent_watch_restarts": ("Watches restarted after an error", "restarts"),
                "shipyard_agent_watch_events": ("Watch events received", "events"),
            }
            for name, (text, attribute) in per_watch.items():
                family = CounterMetricFamily(name, text, labels=["kind", "namespace"])
                for watcher in agent.watchers:
                    family.add_metric([watcher.target.kind.kind, watcher.target.namespace or ""],
                                      getattr(watcher, attribute))
                yield family
            family = CounterMetricFamily("shipyard_agent_commands", "Commands carried out", labels=["type", "outcome"])
            for (kind, outcome), count in sorted(agent.commands.items()):
                family.add_metric([kind, outcome], count)
            yield family
            # Prometheus, "Metric and label naming": an accumulating count ends in _total (added here).
            yield CounterMetricFamily("shipyard_agent_malformed_commands",
                                      "Commands the agent could not read, answered as failed",
                                      value=agent.command_reporter.malformed_commands)
            family = CounterMetricFamily("shipyard_agent_loop_failures",
                                         "Exceptions a loop did not expect; it backed off and went on", labels=["loop"])
            for loop, count in sorted(agent.loop_failures.items()):
                family.add_metric([loop], count)
            yield family

    registry = CollectorRegistry()
    registry.register(AgentCollector())
    return registry


def run(settings: AgentSettings, stop_event: threading.Event) -> Agent:
    """Run the agent until ``stop_event`` is set; returns it (stopped) for inspection."""
    agent = Agent(settings)
    if settings.metrics_port:
        from prometheus_client import make_wsgi_app

        serve(health_app(agent.liveness, make_wsgi_app(metrics_registry(agent))), settings.metrics_port)
    log.info("agent %s for %s/%s: following %d kinds/scopes, reporting to %s", agent_version(), settings.tenant,
             settings.cluster, len(agent.watchers), settings.url)
    agent.start(stop_event)
    stop_event.wait()
    agent.stop()
    return agent


def main(environ=None) -> int:
    """The process entry point (``python -m agent``, ``shipyard agent``): settings from the environment."""
    import os
    import signal

    from agent.settings import SettingsError

    logging.basicConfig(level=os.environ.get("SHIPYARD_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = AgentSettings.from_env(environ)
        settings.kube_configuration = settings.kubernetes_configuration()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(settings, stop)
    return 0


def _origin(exc: BaseException) -> tuple:
    """Where an exception was raised: its type and innermost frame (a repeat is logged without traceback)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    code = frame.tb_frame.f_code if frame is not None else None
    return type(exc).__name__, code and code.co_filename, frame and frame.tb_lineno


__all__ = ["Agent", "run", "main", "metrics_registry", "agent_version"]
