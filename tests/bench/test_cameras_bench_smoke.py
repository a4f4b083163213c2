"""The cameras bench: one camera per side for a few seconds as a user runs it, and its scoring and search.

The run is real (an RTSP server, ``detector run`` with a backend client, the original loop in its child process);
its ``--json`` is read back and must hold sane numbers. The scoring and the search are fed made-up visits and
trial outcomes, so a bench that misses a visit or stops searching early cannot report a pass.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import cameras_bench, cameras_clip
from bench.cameras_clip import Anchor, Strip, Truth, Visit

REPO = Path(__file__).resolve().parents[2]
CARS = REPO / "tests" / "fixtures" / "media" / "cars.mp4"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_camera_each_side(tmp_path: Path) -> None:
    out = tmp_path / "cameras.json"
    done = subprocess.run([sys.executable, "-P", str(REPO / "bench" / "cameras_bench.py"), "--n", "1", "--video",
                           str(CARS), "--seconds", "20", "--warmup-s", "3", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=840, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "### Cameras per machine" in done.stdout and "### Trials" in done.stdout
    results = json.loads(out.read_text())
    assert results["largest"] == {"ours": 1, "original": 1}, results["trials"]
    for side in ("ours", "original"):
        [trial] = results["trials"][side]
        assert trial["cameras"] == 1 and trial["passed"], trial["problems"]
        [camera] = trial["camera_results"]
        assert camera["samples"] >= 15
        assert 0 < camera["lag_p50_s"] <= camera["lag_p99_s"] <= 1.0
        assert 1 <= camera["visits_expected"] == camera["visits_announced"]
        assert camera["announcements_stray"] == 0 and camera["missed"] == []
        assert 0 < camera["processed_fps"] <= 5.5
        assert trial["cpu"]["product_cores"] > 0 and trial["startup_s"] > 0
        assert 100 < trial["pss_per_camera"] <= trial["rss_per_camera"] < 4000
    ours = results["trials"]["ours"][0]
    assert ours["visits_right"] == ours["visits_expected"], "ours announces the clip's own brand and body type"
    assert ours["orphans"] == [] and ours["memory"]["broker"]["rss_mb"] > 50
    assert 0 < ours["camera_results"][0]["reader_age_p99_s"] <= 1.0


TRUTH = Truth(fps=10, frame_count=100, size=(640, 480), strip=Strip(16, 0, 0, 40, 24), visits=(
    Visit(0, 1.0, 3.0, "Toyota", "Sedan"), Visit(1, 6.0, 8.0, "Ford", "Pickup")))


def test_visits_wholly_inside_the_window_are_expected_and_each_counts_once() -> None:
    anchor = Anchor(wall=1000.0, clip=0.0)  # clip time 0 at wall 1000; the clip loops every 10 s
    window = (1000.5, 1029.0)  # clip 0.5-29: visits at 1-3, 6-8, 11-13, 16-18, 21-23, 26-28
    answers = [(1002.0, "Toyota", "Sedan"), (1002.5, "Toyota", "Sedan"),  # one visit, twice
               (1007.0, "Ford", "Sedan"), (1007.5, "Ford", "Pickup"),  # the last answer is the right one
               (1012.0, "Toyota", "SUV"),  # announced, wrong
               (1017.0, "Ford", "Pickup"), (1022.0, "Toyota", "Sedan"),
               (1004.5, "Honda", "SUV")]  # in no visit
    tally = cameras_clip.score(TRUTH, anchor, window, answers)
    assert (tally.expected, tally.announced, tally.right, tally.stray) == (6, 5, 4, 1)
    assert tally.missed == ["loop 2 visit 1 (Ford Pickup)"] and not tally.complete
    assert cameras_clip.score(TRUTH, anchor, window, [*answers, (1027.0, "Ford", "Pickup")]).complete


def test_a_visit_cut_by_the_window_is_not_expected() -> None:
    assert [(loop, v.index) for loop, v in cameras_clip.occurrences(TRUTH, 2.0, 18.0)] == [(0, 1), (1, 0), (1, 1)]
    assert cameras_clip.window_for(TRUTH, 1) <= 10.0 and cameras_clip.window_for(TRUTH, 2) > 5.0


def test_the_strip_reads_back() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    for bit, value in enumerate(f"{1234:016b}"):
        image[0:24, bit * 40:(bit + 1) * 40] = 255 * int(value)
    assert TRUTH.strip.read(image) == 1234 and TRUTH.clip_time(image) == 123.4


def test_the_clip_at_5_fps_keeps_its_frame_numbers(tmp_path: Path) -> None:
    import av

    truth = Truth.read(CARS.with_suffix(".json"))
    videos = cameras_clip.prepare(CARS, tmp_path, 5, 60, phases=3)
    assert len(videos) == 3
    for phase, looped in enumerate(videos):
        with av.open(str(looped)) as reader:
            stream = reader.streams.video[0]
            assert (stream.width, stream.height, float(stream.average_rate or 0)) == (640, 480, 5.0)
            shown = [(float(frame.time or 0), truth.clip_time(frame.to_ndarray(format="bgr24")))
                     for _, frame in zip(range(300), reader.decode(stream), strict=False)]
        assert len(shown) == 300 and shown[-1][0] >= 59.0
        entered = shown[0][1]  # phase k enters at the key frame (every 2 s) at or after k / 3 of the loop
        assert entered == 0.0 if phase == 0 else phase * truth.loop_s / 3 <= entered < phase * truth.loop_s / 3 + 2
        assert all(math.isclose((entered + at) % truth.loop_s, clip_time, abs_tol=0.01) for at, clip_time in shown)


def _trial(passing_up_to: int, tried: list[int]) -> Any:
    def trial(count: int) -> dict[str, Any]:
        tried.append(count)
        return {"side": "ours", "cameras": count, "passed": count <= passing_up_to, "problems": []}
    return trial


@pytest.mark.parametrize(("passing_up_to", "max_n", "bisect", "best", "tried"), [
    (11, 64, True, 11, [1, 2, 4, 8, 16, 12, 10, 11]),
    (11, 64, False, 8, [1, 2, 4, 8, 16]),
    (100, 24, True, 24, [1, 2, 4, 8, 16, 24]),
    (0, 64, True, 0, [1]),
    (45, 64, True, 44, [1, 2, 4, 8, 16, 32, 64, 48, 40, 44]),  # to within 10 %
])
def test_the_search_finds_the_largest_passing_n(passing_up_to: int, max_n: int, bisect: bool, best: int,
                                                 tried: list[int]) -> None:
    seen: list[int] = []
    found, trials = cameras_bench.search(_trial(passing_up_to, seen), "ours", max_n, bisect)
    assert (found, seen) == (best, tried)
    assert [t["cameras"] for t in trials] == tried


@pytest.mark.parametrize(("passing_up_to", "start_n", "best", "tried"), [
    (45, 8, 44, [8, 16, 32, 64, 48, 40, 44]),
    (5, 8, 5, [8, 4, 6, 5]),  # the first N already fails: bisected from 0
])
def test_the_search_can_start_higher(passing_up_to: int, start_n: int, best: int, tried: list[int]) -> None:
    seen: list[int] = []
    found, _ = cameras_bench.search(_trial(passing_up_to, seen), "ours", 64, True, start_n=start_n)
    assert (found, seen) == (best, tried)


def test_the_report_names_its_settings(tmp_path: Path) -> None:
    setup = cameras_clip.Setup(videos=(tmp_path / "clip-5fps-phase0-looped.mp4",) * 8, truth_path=tmp_path / "t.json",
                               truth=TRUTH, mpta=tmp_path / "a.mpta", cache=tmp_path, workdir=tmp_path, fps=5,
                               seconds=80, warmup_s=15, sample_s=1, limit_s=1, redis_url="", postgres_dsn="")
    trials = [{"side": "ours", "cameras": 4, "passed": True, "problems": [], "lag_p99_s": 0.2}]
    text = cameras_bench.report({"ours": (4, trials)}, setup)
    assert "entered at 8 phase(s), 80 s measured per trial after 15 s of warm-up; pass: lag p99 ≤ 1 s" in text
    assert "{" not in text
