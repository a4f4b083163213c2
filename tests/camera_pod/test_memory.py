"""Room for a hot model swap: about three times the largest running archive's models must fit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from camera_pod import memory


@dataclass
class Archive:
    root: Path


@dataclass
class Running:
    archive: Archive


def running(tmp_path: Path, *sizes: int) -> list[Running]:
    pipelines = []
    for index, size in enumerate(sizes):
        root = tmp_path / f"a{index}"
        root.mkdir()
        (root / "det.pt").write_bytes(b"\0" * size)
        (root / "pipeline.json").write_bytes(b"\0" * (size * 10))  # not a model: not counted
        pipelines.append(Running(Archive(root)))
    return pipelines


def test_a_swap_fits_when_three_times_the_largest_archive_is_free(tmp_path: Path) -> None:
    pipelines = running(tmp_path, 30 << 20, 50 << 20)
    memory.check_room_for_another(pipelines, free=150 << 20)
    with pytest.raises(MemoryError, match=r"about 150 MiB needed, 149 MiB free"):
        memory.check_room_for_another(pipelines, free=149 << 20)


def test_small_archives_still_need_the_floor(tmp_path: Path) -> None:
    with pytest.raises(MemoryError, match="64 MiB needed"):
        memory.check_room_for_another(running(tmp_path, 1 << 20), free=63 << 20)
    memory.check_room_for_another([], free=memory.FLOOR_BYTES)


def test_what_this_process_may_still_use_is_measured() -> None:
    assert memory.free_bytes() > 0
