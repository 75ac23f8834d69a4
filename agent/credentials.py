"""The agent token, followed through rotations of the file that holds it.

A token given in the environment never changes. A token file is a mounted
Secret: the kubelet writes every new version into a fresh timestamped
directory and swaps the ``..data`` symlink over to it (kubernetes
pkg/volume/util/atomic_writer.go), so after an update the path resolves to
another file, with another inode. The update reaches the pod up to "the
kubelet sync period + cache propagation delay" after the Secret changed
(Kubernetes, "Secrets": mounted Secrets are updated automatically), a moment
the agent cannot know in advance. So:

- before every request the file is stat'ed through the symlinks (device,
  inode, mtime, size; no read unless one of them changed), and read again
  when it changed: a rotation is picked up by the next request, before the
  control plane's grace for the old token ends;
- after the control plane refused the token (401/403), the loops ask
  ``retry_in`` before each retry: the file is read again every time (whatever
  its stat says) and a new token goes out at once; the same token is tried
  again only every ``retry_refused`` seconds, and meanwhile the file is looked
  at every REFUSED_POLL seconds, so a rotation with no grace stops status for
  the kubelet's delay plus at most REFUSED_POLL;
- a file that cannot be read (deleted, permissions) keeps the token read
  before: logged once per distinct problem, never raised into a loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

REFUSED_POLL = 1.0  # while the control plane refuses the token: how often the file is read again


class AgentToken:
    """The token for the next request to the control plane (call it); thread-safe."""

    def __init__(self, value: str = "", path: str | None = None, retry_refused: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.retry_refused = retry_refused
        self.clock = clock
        self.rereads = 0  # times the file was read again after a change or a refusal
        self._value = value
        self._stamp: tuple | None = None
        self._problem: str | None = None  # the last read problem logged, so a lasting one is logged once
        self._refused: str | None = None  # the token the control plane refused last, until another goes out
        self._refused_at = 0.0
        self._lock = threading.Lock()
        if path:
            self._read(self._stat())

    def __call__(self) -> str:
        if self.path:
            stamp = self._stat()
            if stamp != self._stamp:
                with self._lock:
                    self._read(stamp)
        return self._value

    def reread(self) -> str:
        """Read the file again whatever its stat says (a rewrite in place can keep inode, size and mtime)."""
        if self.path:
            with self._lock:
                self._read(self._stat())
        return self._value

    def refused(self, token: str) -> None:
        """The control plane answered 401/403 to a request that carried ``token``."""
        with self._lock:
            self._refused, self._refused_at = token, self.clock()

    def retry_in(self) -> float:
        """0 when a request may go out now; else the seconds to wait before asking again.

        While the last token sent was refused: a new token in the file may go at once; the
        refused one again once ``retry_refused`` has passed (the control plane may take it
        back, e.g. an operator restored it); otherwise wait and look at the file again.
        """
        if self._refused is None:
            return 0.0
        current = self.reread()
        with self._lock:
            if self._refused is None:
                return 0.0
            if current != self._refused:
                log.info("the agent token changed since the control plane refused it: retrying with the new one")
                self._refused = None
                return 0.0
            left = self._refused_at + self.retry_refused - self.clock()
            if left <= 0:
                self._refused = None  # one more try with it; refused() marks it again if it fails
                return 0.0
            return min(left, REFUSED_POLL)

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # follows token -> ..data/token -> ..<timestamp>/token
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self, stamp: tuple | None) -> None:
        """Read the file (caller holds the lock, or is the constructor); keep the old token on a problem."""
        try:
            text = Path(self.path).read_text().strip()
            problem = None if text else "the file is empty"
        except OSError as exc:
            text, problem = "", f"{type(exc).__name__}: {exc.strerror or exc}"
        if problem is not None:
            if problem != self._problem:
                log.error("cannot read the agent token from %s (%s); %s", self.path, problem,
                          "keeping the token read before" if self._value else "requests go without one")
            self._problem = problem
            return  # stamp not taken: the next request looks at the file again
        if self._problem is not None:
            log.info("the agent token file %s is readable again", self.path)
        if self._stamp is not None and text != self._value:
            log.info("the agent token file %s changed: using the new token", self.path)
        self.rereads += self._stamp is not None
        self._value, self._stamp, self._problem = text, stamp, None


__all__ = ["AgentToken", "REFUSED_POLL"]
