"""Interleaved timing for noisy, shared machines.

Peers measured side by side take turns: each round runs every peer once, in
an order that rotates from round to round, so a burst of load from another
process hits all peers alike instead of one of them. Reports are medians
(and p90), never means, and never assertions: these are numbers to read.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Samples:
    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        if len(self.seconds) < 2:
            return self.seconds[0]
        return statistics.quantiles(self.seconds, n=10, method="inclusive")[-1]

    def row(self, unit: float = 1e3, suffix: str = "ms") -> str:
        return (f"{self.label:<48} median {self.median * unit:9.2f} {suffix}"
                f"   p90 {self.p90 * unit:9.2f} {suffix}   n={len(self.seconds)}")


def interleave(peers: dict[str, Callable[[int], object]], rounds: int, warmup: int = 1,
               setup: Callable[[int], object] | None = None) -> dict[str, Samples]:
    """Run each peer ``rounds`` times, taking turns; ``peer(round)`` is timed alone.

    ``setup(round)``, when given, runs untimed before each round. The first
    ``warmup`` rounds are run but not recorded (caches, first-call imports).
    """
    names = list(peers)
    samples = {name: Samples(name) for name in names}
    for round_index in range(warmup + rounds):
        if setup is not None:
            setup(round_index)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()  # collect garbage from the previous peer outside the timed call
            started = time.perf_counter()
            peers[name](round_index)
            elapsed = time.perf_counter() - started
            if round_index >= warmup:
                samples[name].seconds.append(elapsed)
    return samples


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"
