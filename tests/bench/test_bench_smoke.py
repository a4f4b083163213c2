"""The benchmarks run end to end on a handful of frames/events and report sane numbers.

Both scripts run as a user runs them (``python -P bench/<name>.py --quick``) in a child process; their
``--json`` results and printed tables are checked: every expected row is there, rates are positive, ratios
finite, and the measured work is the work asked for (the fixture detector finds cars, the untrained one does
not; every routed event reaches the backend and is acknowledged; a no-op reconcile writes nothing).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run_bench(script: str, *args: str, timeout: float) -> tuple[str, dict[str, Any]]:
    out = Path(args[args.index("--json") + 1])
    done = subprocess.run([sys.executable, "-P", str(REPO / "bench" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_pipeline_bench_quick(tmp_path: Path) -> None:
    stdout, results = run_bench("pipeline_bench.py", "--quick", "--frames", "6", "--json", str(tmp_path / "p.json"),
                                timeout=840)
    for title in ("### Throughput", "### Physical limit", "### Frame age", "### Licence plates (OCR)"):
        assert title in stdout
    assert positive(results["machine_gflops"]) and results["cores"] >= 1
    runs = results["runs"]
    measured = {key: value for key, value in runs.items() if not key.startswith("latency")}
    expected = [f"{scenario} {stage} baseline" for scenario in ("fixture", "yolov8n-640")
                for stage in ("pipeline", "detector only")] + ["pump pipeline baseline"]
    assert set(expected) <= set(measured)
    assert any(key.startswith("fixture pipeline ours") for key in measured)
    # Each flavour ran where it says (the settings reached the pod's loader), on the CPU by default.
    assert results["device"] == "cpu"
    assert runs["fixture pipeline ours [onnx]"]["backend"] == "onnx CPUExecutionProvider"
    assert runs["fixture pipeline ours [ultralytics]"]["backend"] == "ultralytics cpu"
    assert runs["fixture pipeline baseline"]["backend"].startswith("ultralytics cpu")
    assert any(key.endswith("classify every frame") for key in measured)
    for key, run in measured.items():
        assert run["frames"] == 6, key
        for field in ("fps", "fps_per_core", "p50_ms", "p99_ms", "cpu_ms_per_frame", "peak_rss_mb"):
            assert positive(run[field]), (key, field, run[field])
        assert run["p99_ms"] >= run["p50_ms"] and run["peak_rss_mb"] > run["frames_mb"], key
    # The same work on both sides: the fixture detector sees the car (on both videos), the untrained YOLOv8n nothing.
    for key, run in measured.items():
        assert (run["car_frames"] > 0) == key.startswith(("fixture", "pump", "plates")), (key, run["car_frames"])
    assert any(key.endswith("no gating") for key in measured) and runs["pump pipeline baseline"]["gated_frames"] == 0
    assert runs["fixture pipeline baseline"]["classifier_calls_per_frame"] > 0
    assert results["gflops"]["yolov8n-640"]["detector"] > 10 * results["gflops"]["fixture"]["detector"] > 0
    # Plates: the plate-free and the plates archive on the same frames (ours only); only the plates one reads.
    plates = {key: run for key, run in measured.items() if key.startswith("plates")}
    assert len(plates) == 6 and {run["backend"] for run in plates.values()} == {"onnx CPUExecutionProvider"}
    for key, run in plates.items():
        assert ("ocr_reads" in run) is key.endswith("plates archive"), key
    assert all(run["ocr_reads"] == 0 for key, run in plates.items() if "no plates" in key and "ocr_reads" in run), \
        "a front without a plate is never read"
    read = [run for key, run in plates.items() if "ocr_reads" in run and "no plates" not in key]
    assert all(run["ocr_reads"] > 0 and run["ocr_reads"] == run["ocr_reads_plate"] + run["ocr_reads_none"]
               and positive(run["ocr_cpu_s"]) and 0 < run["ocr_cpu_share"] < 1 for run in read), read
    assert all(run["ocr_reads_plate"] == 0 for key, run in plates.items()
               if "blank plates" in key and "ocr_reads" in run), "a blank plate reads nothing"
    plate_rows = [line for line in stdout.splitlines() if "| plates archive / plate-free archive |" in line]
    assert len(plate_rows) == 3
    for line in plate_rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert all(math.isfinite(float(cell)) and float(cell) > 0 for cell in cells[3:6]), line
    latency = [run for key, run in runs.items() if key.startswith("latency")]
    assert len(latency) >= 4
    for run in latency:
        assert run["processed"] > 0 and positive(run["pass_p50_ms"]) and positive(run["age_p99_ms"])
        assert run["age_p99_ms"] >= run["pass_p50_ms"] * 0.5
        assert run["processed"] + run["skipped"] + run["backlog"] == run["fed"]
    ratio_rows = [line for line in stdout.splitlines() if "/ baseline |" in line]
    assert len(ratio_rows) >= 5
    for line in ratio_rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        ratios = [float(cell) for cell in cells[5:11]]
        assert all(math.isfinite(value) and value > 0 for value in ratios), line


def test_broker_bench_quick(tmp_path: Path) -> None:
    stdout, results = run_bench("broker_bench.py", "--quick", "--subscriptions", "50", "--kube-subscriptions", "5",
                                "--events", "300", "--json", str(tmp_path / "b.json"), timeout=300)
    assert "### Reconcile" in stdout and "### Routing" in stdout
    for step in ("first apply", "no-op re-apply"):
        assert stdout.count(f"| {step} |") >= 2, step
    recording = results["reconcile"]["recording"]
    assert recording["subscriptions"] == recording["pods"] == 50
    assert all(positive(recording[key]) for key in ("parse_s", "first_s", "noop_s"))
    kubernetes = results["reconcile"]["kubernetes"]
    assert kubernetes["pods"] == 5 and positive(kubernetes["first_s"]) and positive(kubernetes["floor_s"])
    assert kubernetes["requests_first"] >= 2 * 5, "a Secret and a CameraSubscription per pod"
    assert kubernetes["requests_floor"] == kubernetes["requests_first"], "the floor makes the runner's writes"
    assert kubernetes["requests_noop"] == 0, "an unchanged list writes nothing"
    assert "### Reconcile, KubernetesRunner with a round trip per request" in stdout
    concurrency = results["reconcile"]["concurrency"]
    assert concurrency["subscriptions"] == 50 and positive(concurrency["serial_s"])
    assert concurrency["requests_serial"] == concurrency["requests_concurrent"] >= 2 * 50
    assert concurrency["peak_serial"] == 1 < concurrency["peak_concurrent"] <= concurrency["concurrency"]
    assert concurrency["concurrent_s"] < concurrency["serial_s"], "writing cameras at once is faster"
    assert concurrency["requests_noop"] == 0
    for name in ("relay", "broker", "in_process"):
        run = results["routing"][name]
        assert run["delivered"] == run["acked"] == run["events"] == 300, name
        assert positive(run["events_per_s"]), name
