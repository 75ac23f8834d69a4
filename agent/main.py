"""The agent process: watchers, the reporter loop, the command loop, metrics.

Threads, each a thin loop around a step function (testable one step at a time):

- one ``Watcher`` per followed kind and scope (agent.watch), feeding the
  Tracker and the Outbox whether or not the control plane is reachable;
- the reporter: every ``batch_interval`` sends what is pending (a snapshot
  first, once every watcher has listed, so the first snapshot does not tell
  the control plane that everything is gone), and a heartbeat every
  ``heartbeat_interval``; backoff with jitter while the control plane is
  unreachable (the Outbox coalesces per object meanwhile, so memory stays
  bounded by the number of objects);
- the command loop: long-poll, carry out (agent.commands), send the result.

Prometheus metrics are read from those objects at scrape time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from importlib import metadata

import httpx
import urllib3

from agent.backoff import Backoff, control_plane_retry_after
from contract.addons import RELEASE_KEYS, addon_versions, addons_installed
from agent.commands import Executor
from agent.kube import ApiException, KubeApi
from contract.protocol import Heartbeat
from agent.report import Outbox, Reporter, Tracker, Unauthorized
from agent.settings import AgentSettings
from agent.watch import Watcher, targets

log = logging.getLogger(__name__)

FACTS_INTERVAL = 300.0  # CRD lists are large on big clusters: read them every few minutes, not per heartbeat
SYNC_TIMEOUT = 60.0  # the longest the first snapshot waits for every watcher's first list


def agent_version() -> str:
    try:
        return metadata.version("shipyard")
    except metadata.PackageNotFoundError:
        return "unknown"


class Agent:
    def __init__(self, settings: AgentSettings, rng: random.Random | None = None):
        self.settings = settings
        self.rng = rng or random.Random()
        self.api = KubeApi(settings.kubernetes_configuration())
        self.tracker = Tracker()
        self.outbox = Outbox()
        self.reporter = self._reporter()
        self.command_reporter = self._reporter()  # its own connection: the long-poll never holds up status
        self.executor = Executor(self.api, settings)
        self.watchers = [Watcher(self.api, target, self.tracker, self.outbox, settings, rng=self.rng)
                         for target in targets(settings, self.tracker)]
        self.commands: Counter[tuple[str, str]] = Counter()
        self.facts: dict = {}
        self._facts_at = -FACTS_INTERVAL
        self._next_beat = 0.0
        self._started = time.monotonic()
        self.report_backoff = Backoff(settings.backoff_base, settings.backoff_max, self.rng)
        self.command_backoff = Backoff(settings.backoff_base, settings.backoff_max, self.rng)
        self._threads: list[threading.Thread] = []

    def _reporter(self) -> Reporter:
        client = httpx.Client(base_url=self.settings.url, timeout=httpx.Timeout(30.0, connect=10.0))
        return Reporter(client, self.settings.tenant, self.settings.cluster, self.settings.agent_token(),
                        self.tracker, self.outbox)

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

    def heartbeat_message(self) -> Heartbeat:
        facts = self.cluster_facts()
        return Heartbeat(agent_version=agent_version(), kubernetes_version=facts.get("kubernetes_version"),
                         addons=facts.get("addons", []), crds=facts.get("crds", []),
                         namespaces=facts.get("namespaces", []), objects=len(self.tracker),
                         pending=len(self.outbox), addon_versions=facts.get("addon_versions", {}))

    # --- the loops' bodies ----------------------------------------------------------------------

    def ready_to_report(self) -> bool:
        return (all(w.synced.is_set() for w in self.watchers)
                or time.monotonic() - self._started > SYNC_TIMEOUT)

    def report_step(self) -> float:
        """Heartbeat when due, send what is pending; returns the wait before the next step."""
        try:
            if time.monotonic() >= self._next_beat:
                self.reporter.heartbeat(self.heartbeat_message())
                self._next_beat = time.monotonic() + self.settings.heartbeat_interval
            if self.ready_to_report() and (self.reporter.stream is None or self.outbox.changed.is_set()):
                self.reporter.send_pending()
            self.report_backoff.reset()
            return self.settings.batch_interval
        except Unauthorized as exc:
            self.reporter.token = self.command_reporter.token = self.settings.agent_token()  # rotated?
            log.error("%s; retrying in %.0f s", exc, self.settings.unauthorized_backoff)
            return self.settings.unauthorized_backoff
        except httpx.HTTPError as exc:
            delay = self.report_backoff.next(at_least=control_plane_retry_after(exc))
            log.warning("control plane unreachable (%s); %d changes pending; retrying in %.1f s",
                        type(exc).__name__, len(self.outbox), delay)
            return delay

    def command_step(self) -> float:
        """One long-poll and the commands it brought; returns the wait before the next step."""
        try:
            for command in self.command_reporter.poll_commands(self.settings.command_wait):
                result = self.executor.execute(command)
                self.commands[(command.type, "ok" if result.ok else "error")] += 1
                self.command_reporter.send_result(command.id, result)
            self.command_backoff.reset()
            return self.command_reporter.poll_again_in
        except Unauthorized as exc:
            self.command_reporter.token = self.settings.agent_token()
            log.error("%s; retrying in %.0f s", exc, self.settings.unauthorized_backoff)
            return self.settings.unauthorized_backoff
        except httpx.HTTPError as exc:
            delay = self.command_backoff.next(at_least=control_plane_retry_after(exc))
            log.warning("command poll failed (%s); retrying in %.1f s", type(exc).__name__, delay)
            return delay

    # --- running ----------------------------------------------------------------------------------

    @staticmethod
    def _loop(step, stop: threading.Event) -> None:
        while not stop.is_set():
            delay = step()
            if delay:
                stop.wait(delay)

    def start(self, stop: threading.Event) -> None:
        for watcher in self.watchers:
            self._spawn(f"watch {watcher.target}", watcher.run, stop)
        self._spawn("report", self._loop, self.report_step, stop)
        self._spawn("commands", self._loop, self.command_step, stop)

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

    registry = CollectorRegistry()
    registry.register(AgentCollector())
    return registry


def run(settings: AgentSettings, stop_event: threading.Event) -> Agent:
    """Run the agent until ``stop_event`` is set; returns it (stopped) for inspection."""
    agent = Agent(settings)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, registry=metrics_registry(agent))
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


__all__ = ["Agent", "run", "main", "metrics_registry", "agent_version"]
