"""The one exception of the simulated compute plane.

Git and switch-file failures become a ``SimulationError`` where they happen
(``raise SimulationError(...) from exc``), so the loop catches one type, logs
it and tries again on a later iteration, as ArgoCD keeps polling a repository
it could not read.
"""

from __future__ import annotations


class SimulationError(Exception):
    """The simulated cluster cannot read its repository or its switches."""


__all__ = ["SimulationError"]
