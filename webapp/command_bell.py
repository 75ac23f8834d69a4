"""Waking an agent's command long-poll: the bell of this process, and the watch for other processes.

A long-poll waits on its cluster's condition (``CommandBell``); the API rings
it when it queues a command in this process, and ``CommandWatch`` rings it for
commands another process queued. Both live on the control-plane object
(webapp.plane), one per process, and the server's graceful stop closes the
bell, which answers every waiting long-poll at once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager

from gitops.commands import claimable_clusters

log = logging.getLogger(__name__)

# How often a process looks for commands queued by another one: a commit made in one worker asks the agent
# waiting in another to refresh ArgoCD (gitops.refreshes), which should take well under a second
POLL_INTERVAL = 0.25


class CommandBell:
    """Wakes the long-polls of a cluster in this process when a command for it is queued."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conditions: dict[int, threading.Condition] = {}
        self.closing = threading.Event()  # the server is stopping: long-polls answer now

    def condition(self, cluster_id: int) -> threading.Condition:
        with self._lock:
            return self._conditions.setdefault(cluster_id, threading.Condition())

    def ring(self, cluster_id: int) -> None:
        condition = self.condition(cluster_id)
        with condition:
            condition.notify_all()

    def close(self) -> None:
        """Answer every long-poll of this process (empty) and every later one at once."""
        self.closing.set()
        with self._lock:
            conditions = list(self._conditions.values())
        for condition in conditions:
            with condition:
                condition.notify_all()


class CommandWatch:
    """Rings the bells of this process's waiting long-polls for commands queued by other processes.

    One thread asks the database every POLL_INTERVAL which clusters with a waiting poll have
    commands to hand out: one query per interval, however many agents wait (each poll asking for
    itself cost a query per agent per interval). A command queued in this process rings at once.
    """

    def __init__(self, read_sessions, bell: CommandBell, interval: float = POLL_INTERVAL):
        self.read_sessions = read_sessions
        self.bell = bell
        self.interval = interval
        self._waiting: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def waiting(self, cluster_id: int):
        with self._lock:
            self._waiting[cluster_id] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shipyard-command-watch", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._waiting[cluster_id] -= 1
                if not self._waiting[cluster_id]:
                    del self._waiting[cluster_id]

    def _run(self) -> None:
        while not self.bell.closing.wait(self.interval):
            with self._lock:
                waiting = list(self._waiting)
                if not waiting:  # no poll waits: the thread ends, the next poll starts another
                    self._thread = None
                    return
            try:
                with self.read_sessions() as session:
                    ready = claimable_clusters(session, waiting)
            except Exception:  # noqa: BLE001 - the database away for a moment: the next round asks again
                log.warning("could not look for queued commands", exc_info=True)
                continue
            for cluster_id in ready:
                self.bell.ring(cluster_id)


__all__ = ["CommandBell", "CommandWatch", "POLL_INTERVAL"]
