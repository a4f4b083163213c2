"""How many camera pods are replaced at once.

A change of what every camera pod is given (the operator's image, resources, GPU settings: after its
restart every resource resumes with a new pod revision) would otherwise replace every camera at the same
moment. A replacement ("roll") starts only while fewer than ``limit`` are in progress; the others keep
their running pod and try again on the next status tick. A roll ends when its old pods are gone; one that
has not ended after ``stale_s`` (its resource deleted mid-roll, say) stops counting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RollBudget:
    limit: int = 4
    stale_s: float = 600.0
    _started: dict[str, float] = field(default_factory=dict)  # resource key -> when its roll started

    def take(self, key: str, now: float | None = None) -> bool:
        """True when ``key`` may roll now (it already does, or a slot is free)."""
        now = time.monotonic() if now is None else now
        for stale in [k for k, started in self._started.items() if now - started > self.stale_s]:
            del self._started[stale]
        if key in self._started:
            return True
        if len(self._started) >= self.limit:
            return False
        self._started[key] = now
        return True

    def release(self, key: str) -> None:
        self._started.pop(key, None)

    @property
    def in_progress(self) -> int:
        return len(self._started)
