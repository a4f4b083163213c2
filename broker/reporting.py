"""stateReport: machine load (psutil, NVML when a GPU exists) and the camera list."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psutil

log = logging.getLogger(__name__)


@dataclass
class GpuProbe:
    """NVML when the driver is there; None values otherwise (never an error on CPU-only machines)."""

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

    def usage(self) -> tuple[float | None, float | None]:
        if not self._init():
            return None, None
        import pynvml

        try:
            utilisation = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles or []]
            memory = [pynvml.nvmlDeviceGetMemoryInfo(h) for h in self._handles or []]
        except pynvml.NVMLError as exc:
            log.warning("NVML query failed", extra={"error": str(exc)})
            return None, None
        used = sum(m.used for m in memory) / max(1, sum(m.total for m in memory)) * 100
        return float(sum(utilisation) / len(utilisation)), round(used, 1)


def machine_usage(gpu: GpuProbe) -> dict[str, float | None]:
    gpu_usage, gpu_memory = gpu.usage()
    return {"cpuUsage": psutil.cpu_percent(interval=None), "memoryUsage": psutil.virtual_memory().percent,
            "gpuUsage": gpu_usage, "gpuMemoryUsage": gpu_memory}
