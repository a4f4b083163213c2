"""Helpers shared by the benchmarks: cores, CPU time, peak memory, machine GFLOPS, child runs, tables.

Every figure a benchmark prints is a ratio against a baseline measured in the same run; these helpers
only measure. Variants run in child processes (``run_child``) so each one's peak RSS is its own.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
Row = Sequence[object]


def cores() -> int:
    """CPU cores this process may run on (what "per core" divides by)."""
    return len(os.sched_getaffinity(0))


def cpu_seconds() -> float:
    """User + system CPU time of the whole process, every thread included."""
    return time.process_time()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else math.nan


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else math.nan


def machine_gflops(seconds: float = 1.5, size: int = 1024) -> float:
    """Best float32 matmul rate numpy reaches here (all cores, its BLAS's own threads), in GFLOPS."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    np.matmul(a, b)  # warm-up: BLAS thread pool, page faults
    best = math.inf
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def gpu_gflops(device: str, seconds: float = 1.5, size: int = 4096) -> float:
    """Best float32 matmul rate torch reaches on ``device`` (TF32 off, torch's default), in GFLOPS."""
    import torch

    a, b = torch.rand((size, size), device=device), torch.rand((size, size), device=device)
    torch.matmul(a, b)  # warm-up: cuBLAS handle, kernel choice
    torch.cuda.synchronize(device)
    best = math.inf
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.matmul(a, b)
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def gflops_in_child(threads: int | None, device: str = "cpu") -> float:
    """``machine_gflops`` (or ``gpu_gflops`` on a GPU ``device``) in a fresh process; ``threads=1`` pins numpy's
    BLAS to one thread (one core's rate)."""
    limits = {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")} \
        if threads else {}
    call = "common.machine_gflops()" if device == "cpu" else f"common.gpu_gflops({device!r})"
    code = ("import json, sys; sys.path.append(sys.argv[1]); from bench import common; "
            f"print(json.dumps({{'gflops': {call}}}))")
    done = subprocess.run([sys.executable, "-P", "-c", code, str(REPO)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **limits}, check=True)
    return float(json.loads(done.stdout.splitlines()[-1])["gflops"])


def run_child(script: Path, args: Sequence[str], *, timeout: float = 900,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -P script args`` and return the JSON object it prints as its last stdout line."""
    command = [sys.executable, "-P", str(script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})}, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[2:])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def fmt(value: object, digits: int = 2) -> str:
    """Floats with ``digits`` decimals, small ones (< 0.1) with three significant digits."""
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.3g}" if 0 < abs(value) < 0.1 else f"{value:.{digits}f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """A Markdown table (pastes into README.md as is) with a title line and notes under it."""
    cells = [[fmt(value) for value in row] for row in rows]
    lines = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines += ["", *notes] if notes else []
    return "\n".join(lines) + "\n"


def write_json(path: str | None, document: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(document, indent=2, default=str) + "\n")


FIXTURE_OVERLAY = "0,0,1,0.06"  # DETECTOR_GATING_IGNORE for the fixture videos' frame-index strip (a clock overlay)
