"""A Runner that starts nothing: it records the specs it is given (broker tests without processes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.contract.pods import PodSpec, StreamReport


@dataclass
class RecordingRunner:
    specs: dict[str, PodSpec] = field(default_factory=dict)
    applies: int = 0

    async def apply(self, specs: dict[str, PodSpec]) -> None:
        self.specs = dict(specs)
        self.applies += 1

    async def recover(self) -> dict[str, PodSpec]:
        return {}

    async def image_url(self, name: str, report: StreamReport | None) -> str | None:
        return None

    async def close(self) -> None:
        self.specs = {}

    def running(self) -> dict[str, PodSpec]:
        return dict(self.specs)
