"""Back-off between retries: exponential delays with jitter, and the server's Retry-After.

Its own module, free of the kubernetes client, because two users share it:
the agent's watcher, reporter and command loops, and the simulated compute
plane (the ``simulation`` package), which reuses the agent's reporting and
has no cluster to load a Kubernetes client for. Jitter keeps
many agents (or many simulated ones) that lost the control plane at the same
moment from coming back at the same moment.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx


class Backoff:
    """Exponential delays with jitter: base, 2·base, 4·base ... up to the cap, each scaled by 0.5–1.

    With ``reset_after``, the delays start again from the base only once that many seconds went by
    without asking for one (sustained health), as client-go's reflector does: its backoff manager
    resets after 2 minutes without a backoff (``wait.NewExponentialBackoffManager(800ms, 30s, 2min,
    ...)`` in client-go tools/cache/reflector.go). A connection that fails again right after each
    short success then keeps backing off instead of starting over every time.
    """

    def __init__(self, base: float, cap: float, rng: random.Random | None = None, reset_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.base, self.cap, self.attempts = base, cap, 0
        self.rng = rng or random.Random()
        self.reset_after, self.clock = reset_after, clock
        self._last: float | None = None

    def next(self, at_least: float = 0.0) -> float:
        now = self.clock()
        if self.reset_after is not None and self._last is not None and now - self._last >= self.reset_after:
            self.attempts = 0
        self._last = now
        delay = min(self.cap, self.base * (2 ** self.attempts))
        self.attempts += 1
        return max(at_least, delay * self.rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempts = 0


def control_plane_retry_after(exc: httpx.HTTPError) -> float:
    """The seconds a control plane's answer asked to wait (Retry-After), 0 when it asked nothing."""
    response = getattr(exc, "response", None)
    try:
        return float(response.headers.get("Retry-After") or 0) if response is not None else 0.0
    except ValueError:
        return 0.0


__all__ = ["Backoff", "control_plane_retry_after"]
