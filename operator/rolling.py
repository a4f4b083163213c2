"""How many camera pods are replaced at once.

A change of what every camera pod is given (the operator's image, resources, GPU settings: after its
restart every resource resumes with a new pod revision) would otherwise replace every camera at the same
moment. A replacement ("roll") starts only while fewer than ``limit`` are in progress; the others keep
their running pod and try again on the next status tick. A roll ends when its old pods are gone; one that
has not ended after ``stale_s`` (its resource deleted mid-roll, say) stops counting. Rolls found under way
(an operator restarted mid-roll) count from the start: ``rolls_under_way`` reads them off the pods.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .manifests import REVISION_LABEL, SUBSCRIPTION_LABEL


def rolls_under_way(pods: Iterable[dict[str, Any]]) -> set[str]:
    """``namespace/name`` of every CameraSubscription with live pods of more than one revision."""
    revisions: dict[str, set[str]] = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if metadata.get("deletionTimestamp") or SUBSCRIPTION_LABEL not in labels:
            continue  # a pod already going ends no roll by itself and starts none
        key = f"{metadata.get('namespace')}/{labels[SUBSCRIPTION_LABEL]}"
        revisions.setdefault(key, set()).add(labels.get(REVISION_LABEL, metadata.get("name", "")))
    return {key for key, seen in revisions.items() if len(seen) > 1}


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

    def adopt(self, key: str, now: float | None = None) -> None:
        """A roll already under way counts, whatever the limit (it cannot be undone, only finished)."""
        self._started.setdefault(key, time.monotonic() if now is None else now)

    def release(self, key: str) -> None:
        self._started.pop(key, None)

    @property
    def in_progress(self) -> int:
        return len(self._started)
