"""GPU figures from NVML when the driver is there; none otherwise (never an error on CPU-only machines).

In a Kubernetes pod given ``nvidia.com/gpu``, NVML sees only the GPUs assigned to that container, so the
same probe describes the machine in the embedded mode and the pod's own GPUs in a cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    uuid: str
    utilisation_percent: float
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass
class GpuProbe:
    _handles: list[Any] | None = field(default=None, init=False)
    _available: bool | None = field(default=None, init=False)

    def _init(self) -> bool:
        if self._available is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
                self._available = bool(self._handles)
            except Exception:  # no driver, no library, no device: all mean "no GPU figures"
                self._available = False
        return self._available

    def readings(self) -> list[GpuReading]:
        """One reading per visible GPU; empty without a GPU or when NVML fails (logged)."""
        if not self._init():
            return []
        import pynvml

        try:
            found = []
            for handle in self._handles or []:
                uuid = pynvml.nvmlDeviceGetUUID(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                found.append(GpuReading(uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                                        float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                                        int(memory.used), int(memory.total)))
            return found
        except pynvml.NVMLError as exc:
            log.warning("NVML query failed", extra={"error": str(exc)})
            return []


def summarize(readings: list[GpuReading]) -> tuple[float | None, float | None]:
    """(mean utilisation %, memory used % of all of them), each GPU counted once; (None, None) without any."""
    distinct = list({reading.uuid: reading for reading in readings}.values())
    if not distinct:
        return None, None
    utilisation = sum(r.utilisation_percent for r in distinct) / len(distinct)
    memory = sum(r.memory_used_bytes for r in distinct) / max(1, sum(r.memory_total_bytes for r in distinct)) * 100
    return round(utilisation, 1), round(memory, 1)
