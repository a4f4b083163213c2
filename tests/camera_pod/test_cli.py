"""The ``detector`` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import av

from tests.conftest import FIXTURES, ArchiveBuilder

VIDEO = FIXTURES / "media" / "cars.mp4"


def detector(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "detector.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=None)


def test_validate_prints_the_node_tree(fixture_mpta: Path) -> None:
    result = detector("mpta", "validate", str(fixture_mpta))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"OK {fixture_mpta}")
    assert lines[1].startswith("car_frontal_detection_v1 [detect: Car, Frontal]")
    tree = "\n".join(lines)
    for expected in ("├── action: redis_save_image jpeg region=Frontal", "car_brand_cls_v1 [classify:",
                     "→ brand", "→ body_type", "└── after branches: postgresql_update_combined "
                     "gas_station_1.car_frontal_info (car_brand, car_body_type) after car_brand_cls_v1, "
                     "car_bodytype_cls_v1", "services: redis 127.0.0.1:6379/0, postgresql root@127.0.0.1:5432/test"):
        assert expected in tree, tree


def test_validate_broken_archive_exits_non_zero_with_the_errors(build_archive: ArchiveBuilder) -> None:
    def broken(document: dict) -> None:  # type: ignore[type-arg]
        document["pipeline"]["branches"][1]["modelFile"] = "missing.pt"

    result = detector("mpta", "validate", str(build_archive(broken)))
    assert result.returncode == 2
    assert "pipeline.branches[1].modelFile: file not in archive: 'missing.pt'" in result.stderr


def test_pack_then_validate_round_trip(fixture_mpta: Path, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    with zipfile.ZipFile(fixture_mpta) as archive:
        archive.extractall(folder)
    (folder / "notes.txt").write_text("not part of the pipeline")
    packed = tmp_path / "out.mpta"
    result = detector("mpta", "pack", str(folder), "-o", str(packed))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(packed) as archive:
        assert sorted(archive.namelist()) == sorted(["pipeline.json", "car_frontal_detection_v1.pt",
                                                     "car_brand_cls_v1.pt", "car_bodytype_cls_v1.pt"])
    assert detector("mpta", "validate", str(packed)).returncode == 0


def test_pack_refuses_a_folder_missing_a_model(fixture_mpta: Path, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    with zipfile.ZipFile(fixture_mpta) as archive:
        archive.extractall(folder)
    (folder / "car_brand_cls_v1.pt").unlink()
    result = detector("mpta", "pack", str(folder), "-o", str(tmp_path / "x.mpta"))
    assert result.returncode == 2
    assert "car_brand_cls_v1.pt" in result.stderr
    assert not (tmp_path / "x.mpta").exists()


def test_pipeline_run_prints_results_and_writes_an_annotated_video(fixture_mpta: Path, tmp_path: Path) -> None:
    cars = json.loads((FIXTURES / "media" / "cars.json").read_text())
    frames = 60
    out = tmp_path / "annotated.mp4"
    result = detector("pipeline", "run", "--mpta", str(fixture_mpta), "--source", str(VIDEO), "--no-actions",
                      "--json", "--max-frames", str(frames), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["frame"] for line in lines] == list(range(frames))
    assert {line["status"] for line in lines} <= {"detected", "nothing", "incomplete"}
    visit = cars["visits"][0]
    first, last = visit["stopped_frames"]
    assert last < frames
    stopped = [line for line in lines if first <= line["frame"] <= last]
    truth = {"brand": visit["brand"], "body_type": visit["body_type"]}
    right = sum(line["status"] == "detected" and line["fields"] == truth for line in stopped)
    assert right >= 0.9 * len(stopped), [line["fields"] for line in stopped]
    assert all(line["status"] == "nothing" for line in lines[: visit["first_frame"]])
    with av.open(str(out)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == frames


def test_pipeline_run_reports_a_bad_source_clearly(fixture_mpta: Path, tmp_path: Path) -> None:
    result = detector("pipeline", "run", "--mpta", str(fixture_mpta), "--source",
                      "rtsp://admin:hunter2@127.0.0.1:9/stream", "--no-actions")
    assert result.returncode == 1
    assert "cannot open" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_pipeline_run_runs_a_file_as_a_camera_pod_does(fixture_mpta: Path, tmp_path: Path) -> None:
    """Gate, pipeline, visits: one announcement per car of pump.mp4, and the standing cars' frames gated."""
    pump = json.loads((FIXTURES / "media" / "pump.json").read_text())
    done = subprocess.run([sys.executable, "-P", "-m", "detector.cli", "pipeline", "run", "--mpta", str(fixture_mpta),
                           "--source", str(FIXTURES / "media" / "pump.mp4"), "--no-actions", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "DETECTOR_GATING_IGNORE": "0,0,1,0.06"})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["frame"] for line in lines] == list(range(pump["frame_count"]))
    visits = [visit for line in lines for visit in line["visits"]]
    assert [(v["fields"], v["update"]) for v in visits] == [
        ({"brand": v["brand"], "body_type": v["body_type"]}, False) for v in pump["visits"]]
    gated = [line for line in lines if line["gated"]]
    assert len(gated) > 0.7 * len(lines)
    assert all(lines[line["as_frame"]]["fields"] == line["fields"] and not lines[line["as_frame"]]["gated"]
               for line in gated)
    text = subprocess.run([sys.executable, "-P", "-m", "detector.cli", "pipeline", "run", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout
    assert "Per frame: the change gate" in " ".join(text.split())
