"""Fault switches: what to inject into a simulated app, set in code or in a file re-read when it changes.

Per app (``<ws>/<app>``) or for all (``"*"``); an app's switch is laid over
the ``"*"`` one, and switches set in code over those from the file::

    "*": {rollout_seconds: 30}                       # slow rollouts everywhere
    storefront/web: {health: Degraded, message: "..."}
    payments/ledger: {sync: Failed}                  # sync operations fail (ArgoCD-like message)
    storefront/catalog: {pods: CrashLoopBackOff}     # or ImagePullBackOff, OOMKilled
    storefront/cart: {pods: CrashLoopBackOff, image: "ghcr.io/acme/cart:2.0"}  # a bad release only

The file (``simulate.yaml`` in the data directory of ``shipyard up``) is
edited by hand while the simulation runs, so a broken edit is logged and the
previous switches stay, rather than stopping the simulation.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import yaml

from simulation.errors import SimulationError

log = logging.getLogger(__name__)

POD_FAULTS = ("CrashLoopBackOff", "ImagePullBackOff", "OOMKilled")


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to inject into an app's simulation (every field optional)."""

    health: str | None = None  # "Degraded" (or "Suspended", "Missing", ...): health after the sync
    sync: str | None = None  # "Failed": sync operations fail
    pods: str | None = None  # one of POD_FAULTS
    message: str | None = None  # the message ArgoCD / the pods show with the fault
    rollout_seconds: float | None = None  # a slow rollout
    image: str | None = None  # only while the app runs this image: a bad release, which a rollback cures

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
        if fault.image is not None and not (isinstance(fault.image, str) and fault.image):
            raise SimulationError(f"switch {where}: image must be an image reference such as ghcr.io/acme/web:2.0")
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


__all__ = ["POD_FAULTS", "NO_FAULT", "Fault", "Switches"]
