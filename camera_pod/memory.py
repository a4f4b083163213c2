"""Room for one more archive: a hot model swap loads the new archive beside the running ones.

The new archive's cost is not known before it is loaded; the running ones are the estimate (model files on
disk, weights expanded in memory with runtime buffers: ``EXPANSION`` times their size, at least
``FLOOR_BYTES``). A swap is refused with a clear error, and retried later, when that does not fit in what
the pod may still use (its cgroup memory limit, else the machine's available memory).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import psutil

from camera_pod.usage import memory_limit_bytes

EXPANSION = 3
FLOOR_BYTES = 64 << 20
MODEL_SUFFIXES = (".pt", ".onnx")


class _HasRoot(Protocol):
    @property
    def root(self) -> Path: ...


class _Loaded(Protocol):
    @property
    def archive(self) -> _HasRoot: ...


def model_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.suffix in MODEL_SUFFIXES and path.is_file())


def free_bytes() -> int:
    """What this process may still use: its limit minus what it holds, or the machine's available memory."""
    under_limit = memory_limit_bytes() - psutil.Process().memory_info().rss
    return max(0, min(under_limit, int(psutil.virtual_memory().available)))


def check_room_for_another(running: Iterable[_Loaded], free: int | None = None) -> None:
    """Raise ``MemoryError`` (with what is needed and what is free) when one more archive would not fit."""
    sizes = [model_bytes(pipeline.archive.root) for pipeline in running]
    needed = max(FLOOR_BYTES, EXPANSION * max(sizes, default=0))
    available = free_bytes() if free is None else free
    if needed > available:
        raise MemoryError(f"not enough memory for a second model beside the running one: about "
                          f"{needed >> 20} MiB needed, {available >> 20} MiB free under this pod's limit; "
                          "raise the pod's memory limit or free a model")
