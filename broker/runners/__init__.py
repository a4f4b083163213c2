"""How camera pods are run: ``local`` child processes or ``kubernetes`` CameraSubscriptions."""

from __future__ import annotations

from typing import Protocol

from detector.contract.pods import PodSpec


class Runner(Protocol):
    async def apply(self, specs: dict[str, PodSpec]) -> None:
        """Make the running pods exactly ``specs``: start new, stop missing, replace changed."""

    async def close(self) -> None: ...

    def running(self) -> dict[str, PodSpec]: ...
