"""stateReport's load figures: ``cpuUsage``, ``memoryUsage``, ``gpuUsage``, ``gpuMemoryUsage`` (percent).

The backend judges a worker's load by them, so they describe the machines that do the camera work:
- local runner (the embedded default): the camera pods are processes of this machine, so the figures are
  this machine's (psutil: all CPUs, all memory; NVML: every GPU);
- kubernetes runner: the broker's own pod does no camera work, so the figures are the camera pods' own,
  as each reports them (``detector.contract.pods.PodUsage``): CPU used over the CPUs they may use (their
  limits), memory used over their memory limits, and the GPUs assigned to them, each GPU counted once.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil

from detector.contract.pods import PodUsage
from detector.kit.gpus import GpuProbe, GpuReading, summarize

Usage = dict[str, float | None]


def machine_usage(gpu: GpuProbe) -> Usage:
    gpu_usage, gpu_memory = summarize(gpu.readings())
    return {"cpuUsage": psutil.cpu_percent(interval=None), "memoryUsage": psutil.virtual_memory().percent,
            "gpuUsage": gpu_usage, "gpuMemoryUsage": gpu_memory}


def workload_usage(reports: Iterable[PodUsage | None]) -> Usage:
    """The camera pods' figures together; 0 % CPU and memory (and no GPU figures) while none reports."""
    usages = [usage for usage in reports if usage is not None]
    cpus = sum(u.cpu_limit_cores for u in usages)
    memory = sum(u.memory_limit_bytes for u in usages)
    gpu_usage, gpu_memory = summarize([GpuReading(g.uuid, g.utilisation_percent, g.memory_used_bytes,
                                                  g.memory_total_bytes) for u in usages for g in u.gpus])
    # Each pod's share is capped at its limit: a process's CPU time between two samples can exceed what its
    # limit allows for that instant (sampling jitter, a burst before the throttle), never on average.
    used_cores = sum(min(u.cpu_used_cores, u.cpu_limit_cores) for u in usages)
    used_memory = sum(min(u.memory_used_bytes, u.memory_limit_bytes) for u in usages)
    return {"cpuUsage": round(used_cores / cpus * 100, 1) if cpus else 0.0,
            "memoryUsage": round(used_memory / memory * 100, 1) if memory else 0.0,
            "gpuUsage": gpu_usage, "gpuMemoryUsage": gpu_memory}
