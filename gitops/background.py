"""A thread of passes: one every ``interval`` seconds, or at once when woken.

The control plane's background workers (gitops.spec_worker, gitops.webhook_delivery) each repeat
a pass (``background_pass``) on a thread of their own, one per server process: ``start`` begins
it, ``wake`` runs a pass now (a webhook just asked for a sync, an attempt just ended and its
subscription's next delivery may go), ``stop`` ends it once the pass in progress is done. A pass
that raises is logged and the next one runs: the thread outlives any one pass.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Passes:
    """The thread, its wake-up and its stop; a subclass says what a pass is and names its thread."""

    thread_name = "passes"

    def __init__(self, interval: float):
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def background_pass(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Run a pass now."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.background_pass()
            except Exception:  # noqa: BLE001 - the thread outlives any one pass; the next one retries
                log.exception("%s: a pass failed", self.thread_name)
            self._wake.wait(self.interval)
            self._wake.clear()


__all__ = ["Passes"]
