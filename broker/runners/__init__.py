"""How camera pods are run: ``local`` child processes or ``kubernetes`` CameraSubscriptions."""

from __future__ import annotations

from typing import Protocol

from detector.contract.pods import PodSpec, StreamReport


class Runner(Protocol):
    async def apply(self, specs: dict[str, PodSpec]) -> None:
        """Make the running pods exactly ``specs``: start new, stop missing, replace changed."""

    async def recover(self) -> dict[str, PodSpec]:
        """Adopt the pods a previous broker left running (after a restart); what ``running()`` then holds."""

    async def image_url(self, name: str, report: StreamReport | None) -> str | None:
        """Where pod ``name`` serves its latest frame (``report`` is its last status), or None if unknown."""

    async def close(self) -> None: ...

    def running(self) -> dict[str, PodSpec]: ...
