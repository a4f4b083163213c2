"""A camera pod's own load figures: CPU and memory against its cgroup limits (v2 and v1), or the machine's."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from camera_pod.usage import UsageSampler, cpu_limit_cores, memory_limit_bytes

CPUS = float(len(os.sched_getaffinity(0)))
TOTAL = int(psutil.virtual_memory().total)


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return tmp_path


@pytest.mark.parametrize(("files", "cores"), [
    ({"cpu.max": "50000 100000"}, min(CPUS, 0.5)),            # v2: half a core
    ({"cpu.max": "max 100000"}, CPUS),                         # v2: no quota
    ({"cpu/cpu.cfs_quota_us": "25000", "cpu/cpu.cfs_period_us": "100000"}, min(CPUS, 0.25)),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, CPUS),  # v1: no quota
    ({}, CPUS),                                                # no cgroup files at all
])
def test_cpu_limit(tmp_path: Path, files: dict[str, str], cores: float) -> None:
    assert cpu_limit_cores(cgroup(tmp_path, files)) == pytest.approx(cores)


@pytest.mark.parametrize(("files", "limit"), [
    ({"memory.max": str(512 << 20)}, min(TOTAL, 512 << 20)),
    ({"memory.max": "max"}, TOTAL),
    ({"memory/memory.limit_in_bytes": str(256 << 20)}, min(TOTAL, 256 << 20)),
    ({"memory/memory.limit_in_bytes": str(2**63 - 4096)}, TOTAL),  # v1's "no limit"
    ({}, TOTAL),
])
def test_memory_limit(tmp_path: Path, files: dict[str, str], limit: int) -> None:
    assert memory_limit_bytes(cgroup(tmp_path, files)) == limit


def test_a_sample_measures_this_process(tmp_path: Path) -> None:
    sampler = UsageSampler(cgroup_root=cgroup(tmp_path, {"cpu.max": "100000 100000", "memory.max": str(TOTAL)}))
    sampler.sample()
    sum(i * i for i in range(300_000))  # some CPU time between two samples
    usage = sampler.sample()
    assert usage.cpu_used_cores > 0 and usage.cpu_limit_cores == pytest.approx(min(CPUS, 1.0))
    assert 0 < usage.memory_used_bytes <= usage.memory_limit_bytes
