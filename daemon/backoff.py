"""Exponential back-off with full jitter and a cap, for failed syncs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay after the n-th consecutive failure: uniform in [base·2ⁿ⁻¹/2, base·2ⁿ⁻¹], capped.

    Half-jitter rather than full jitter: a retry never comes sooner than half the nominal
    delay, so a dead server is not hammered, while many devices still spread out.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def failed(self) -> float:
        """Record a failure; return how long to wait before the next try."""
        self.failures += 1
        nominal = min(self.cap_s, self.base_s * 2 ** min(self.failures - 1, 30))
        return self.rng.uniform(nominal / 2, nominal)

    def succeeded(self) -> None:
        self.failures = 0
