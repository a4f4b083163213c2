"""What this camera pod uses of what it may use: CPU and memory against its cgroup limits, and its GPUs.

In a Kubernetes pod the limits are the container's (cgroup v2 ``cpu.max``/``memory.max``, or v1's
``cpu.cfs_quota_us``/``memory.limit_in_bytes``); without limits, the CPUs it may run on and the machine's
memory. The broker adds these up for a cluster's stateReport (``broker.reporting``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from detector.contract.pods import GpuUsage, PodUsage
from detector.kit.gpus import GpuProbe

CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_limit_cores(root: Path = CGROUP) -> float:
    """The CPU quota in cores, or the number of CPUs this process may run on."""
    available = float(len(os.sched_getaffinity(0)))
    quota = _read(root / "cpu.max")
    if quota is not None:
        limit, _, period = quota.partition(" ")
        if limit != "max" and period:
            return min(available, int(limit) / int(period))
        return available
    v1_quota, v1_period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if v1_quota and v1_period and int(v1_quota) > 0:
        return min(available, int(v1_quota) / int(v1_period))
    return available


def memory_limit_bytes(root: Path = CGROUP) -> int:
    """The memory limit, or the machine's memory (a v1 'no limit' is a huge number: capped to it too)."""
    total = int(psutil.virtual_memory().total)
    for candidate in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        value = _read(candidate)
        if value is not None and value.isdigit():
            return min(total, int(value))
    return total


@dataclass
class UsageSampler:
    """Each ``sample`` measures CPU since the previous one (the first one since the process started)."""

    cgroup_root: Path = CGROUP
    gpu: GpuProbe = field(default_factory=GpuProbe)
    _process: psutil.Process = field(default_factory=psutil.Process, init=False)

    def sample(self) -> PodUsage:
        cpu_percent = self._process.cpu_percent(interval=None)
        return PodUsage(cpu_used_cores=round(cpu_percent / 100, 3), cpu_limit_cores=cpu_limit_cores(self.cgroup_root),
                        memory_used_bytes=int(self._process.memory_info().rss),
                        memory_limit_bytes=memory_limit_bytes(self.cgroup_root),
                        gpus=[GpuUsage(uuid=g.uuid, utilisation_percent=g.utilisation_percent,
                                       memory_used_bytes=g.memory_used_bytes, memory_total_bytes=g.memory_total_bytes)
                              for g in self.gpu.readings()])
