"""Cameras per machine: the largest N of RTSP cameras ours and the original loop each keep up with, same run.

    .venv/bin/python -P bench/cameras_bench.py                 # both searches (tens of minutes on 2 cores)
    .venv/bin/python -P bench/cameras_bench.py --quick         # N up to 4, no bisection
    .venv/bin/python -P bench/cameras_bench.py --n 8           # one trial of each side at N = 8
    .venv/bin/python -P bench/cameras_bench.py --max-n 48 --seconds 120 --json cameras.json

A trial at N: one RTSP server process with N mounts (``tests/support/rtsp_server.py --mounts N``) each playing the
gas-station clip (``cameras_clip``: pump.mp4 when present, else cars.mp4; re-encoded at ``--fps`` 5, 640x480,
looped; camera i enters the loop at phase i of ``--phases`` 8 spread over it, so cars do not arrive at every
camera at the same moment), then either ours — ``detector run`` with N subscriptions from a backend WebSocket
client, one camera pod per camera (``cameras_ours``) — or the original loop in one process, two threads per camera
(``cameras_original``).
A camera passes when its lag (now − capture time of its latest processed frame, sampled every ``--sample-s``) has
p99 ≤ ``--limit-s`` (1 s) and every visit of the clip wholly inside the window was announced. A trial passes when
every camera does. The search doubles N from 1 while trials pass, then bisects between the last pass and the
first failure (to within 10 %). Prints Markdown tables (progress on stderr); ``--json`` saves every trial.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Appended, not prepended: the repository root holds a package named `operator` that must not shadow the stdlib.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import psutil

from bench import cameras_clip as clip
from bench import cameras_original as original
from bench import cameras_ours as ours
from bench import common
from bench.cameras_ours import progress
from bench.common import FIXTURE_OVERLAY

DEFAULT_MPTA = Path(os.environ.get("DETECTOR_TEST_MPTA", common.REPO / "tests" / "fixtures" / "gas_station.mpta"))
Trial = Callable[[int], dict[str, Any]]


def verdict(result: dict[str, Any], limit_s: float) -> dict[str, Any]:
    """The trial's camera summaries, its problems and whether it passed, added to ``result``."""
    runs: list[clip.CameraRun] = result.pop("runs", [])
    cameras = [run.summary(limit_s) for run in runs]
    problems = [f"{c['identifier']}: {p}" for c in cameras for p in c["problems"]]
    if len(cameras) != result["cameras"]:
        problems.append(f"{len(cameras)} of {result['cameras']} cameras measured")
    if result.get("orphans"):
        problems.append(f"camera pods left running: {result['orphans']}")
    if result.get("online_flips"):
        problems.append(f"{result['online_flips']} cameras went offline")
    lag = [c["lag_p99_s"] for c in cameras if not math.isnan(c["lag_p99_s"])]
    result.update(camera_results=cameras, problems=problems, passed=not problems,
                  lag_p99_s=max(lag, default=math.nan),
                  lag_p50_s=common.percentile([c["lag_p50_s"] for c in cameras], 50),
                  visits_expected=sum(c["visits_expected"] for c in cameras),
                  visits_announced=sum(c["visits_announced"] for c in cameras),
                  visits_right=sum(c["visits_right"] for c in cameras),
                  processed_fps=common.percentile([c["processed_fps"] for c in cameras], 50),
                  **per_camera_memory(result))
    return result


def per_camera_memory(result: dict[str, Any]) -> dict[str, float]:
    count, memory = max(1, result["cameras"]), result.get("memory", {})
    if result["side"] == "ours":
        pods = memory.get("pods", [])
        figures = {f"{k}_per_camera": sum(p.get(f"{k}_mb", 0.0) for p in pods) / count for k in ("rss", "pss", "uss")}
        figures["broker_rss_mb"] = memory.get("broker", {}).get("rss_mb", math.nan)
        return figures
    process, base = memory.get("process", {}), memory.get("base", {})
    figures = {f"{k}_per_camera": process.get(f"{k}_mb", math.nan) / count for k in ("rss", "pss", "uss")}
    figures["marginal_rss_per_camera"] = (process.get("rss_mb", math.nan) - base.get("rss_mb", math.nan)) / count
    return figures


def failed(side: str, count: int, reason: str) -> dict[str, Any]:
    return {"side": side, "cameras": count, "passed": False, "problems": [reason], "camera_results": []}


def run_trial(setup: clip.Setup, side: str, count: int) -> dict[str, Any]:
    progress(f"{side}: {count} camera(s)")
    server = clip.MountServer(setup.videos, count).start()
    try:
        if side == "ours":
            result = asyncio.run(ours.trial(setup, server))
        else:
            result = original.trial(setup, server, ours.startup_timeout_s(count))
        result = verdict(result, setup.limit_s)
    except Exception as exc:  # a trial that cannot finish (a start-up timeout, a crash) is a failed N
        result = failed(side, count, f"{type(exc).__name__}: {exc}")
    finally:
        server.stop()
    progress(f"{side} at {count}: {'pass' if result['passed'] else 'FAIL'}; lag p99 "
             f"{result.get('lag_p99_s', math.nan):.2f} s, visits {result.get('visits_announced', 0)}/"
             f"{result.get('visits_expected', 0)}" + ("" if result["passed"] else f"; {result['problems'][:3]}"))
    return result


def fits(trials: list[dict[str, Any]], count: int) -> str | None:
    """Why ``count`` cameras would not fit in the memory available now (from the last trial's PSS per camera)."""
    measured = [t for t in trials if t.get("pss_per_camera")]
    if not measured:
        return None
    need_mb = 1.2 * count * measured[-1]["pss_per_camera"]
    free_mb = psutil.virtual_memory().available / 2**20
    return None if need_mb < free_mb else f"needs about {need_mb:.0f} MB, {free_mb:.0f} MB available"


def search(trial: Trial, side: str, max_n: int, bisect: bool, start_n: int = 1) -> tuple[int, list[dict[str, Any]]]:
    """Doubling from ``start_n`` while trials pass, then bisection (from 0 when ``start_n`` already fails); returns
    the largest passing N and every trial."""
    trials: list[dict[str, Any]] = []

    def attempt(count: int) -> bool:
        reason = fits(trials, count)
        trials.append(failed(side, count, f"not run: {reason}") if reason else trial(count))
        return bool(trials[-1]["passed"])

    best, worst, count = 0, None, min(start_n, max_n)
    while count <= max_n:
        if not attempt(count):
            worst = count
            break
        best = count
        if count == max_n:
            break
        count = min(2 * count, max_n)
    while bisect and worst is not None and worst - best > max(1, best // 10):
        middle = (best + worst) // 2
        if attempt(middle):
            best = middle
        else:
            worst = middle
    return best, trials


def at(trials: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """The last trial at ``count`` cameras (an empty one when there was none)."""
    return next((t for t in reversed(trials) if t["cameras"] == count), {})


def summary_rows(found: dict[str, tuple[int, list[dict[str, Any]]]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for side, (best, trials) in found.items():
        top = at(trials, best)
        failing = [t for t in trials if not t["passed"] and t["cameras"] > best]
        first_fail = min(failing, key=lambda t: t["cameras"]) if failing else None
        why = f"{first_fail['cameras']}: {first_fail['problems'][0]}" if first_fail else "none up to --max-n"
        rows.append([side, best, why[:90], top.get("lag_p99_s", math.nan),
                     f"{top.get('visits_announced', 0)}/{top.get('visits_expected', 0)}",
                     top.get("processed_fps", math.nan), top.get("cpu", {}).get("product_cores", math.nan),
                     top.get("cpu", {}).get("machine_cores", math.nan), top.get("rss_per_camera", math.nan),
                     top.get("pss_per_camera", math.nan)])
    if "ours" in found and "original" in found:
        ratio = common.ratio(found["ours"][0], found["original"][0]) if found["original"][0] else math.inf
        rows.append(["ours / original", f"**{common.fmt(ratio)}**", "", "", "", "", "", "", "", ""])
    return rows


def trial_rows(found: dict[str, tuple[int, list[dict[str, Any]]]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for side, (_, trials) in found.items():
        for t in sorted(trials, key=lambda t: t["cameras"]):
            cpu = t.get("cpu", {})
            rows.append([side, t["cameras"], "pass" if t["passed"] else "fail", t.get("lag_p50_s", math.nan),
                         t.get("lag_p99_s", math.nan), f"{t.get('visits_announced', 0)}/{t.get('visits_expected', 0)}",
                         t.get("visits_right", 0), t.get("processed_fps", math.nan),
                         cpu.get("product_cores", math.nan), cpu.get("machine_cores", math.nan),
                         t.get("rss_per_camera", math.nan), t.get("pss_per_camera", math.nan),
                         t.get("uss_per_camera", math.nan), t.get("startup_s", math.nan),
                         "; ".join(t["problems"][:2])[:100]])
    return rows


def report(found: dict[str, tuple[int, list[dict[str, Any]]]], setup: clip.Setup) -> str:
    notes = [f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB; clip "
             f"{setup.videos[0].name} at {setup.fps} fps entered at {len(setup.videos)} phase(s), {setup.seconds:g} s "
             f"measured per trial after {setup.warmup_s:g} s of warm-up; pass: "
             f"lag p99 ≤ {setup.limit_s:g} s and every visit announced on every camera. 'machine' is the whole "
             "machine's busy CPU over the window (the rest of it is other work)."]
    summary = common.table("Cameras per machine", [
        "side", "largest N passing", "first N failing: why", "lag p99 s at N", "visits at N",
        "processed fps per camera", "CPU cores (worker)", "CPU cores (machine)", "RSS MB per camera",
        "PSS MB per camera"], summary_rows(found), notes)
    trials = common.table("Trials", [
        "side", "N", "result", "lag p50 s", "lag p99 s (worst camera)", "visits", "right answers",
        "processed fps per camera", "CPU cores (worker)", "CPU cores (machine)", "RSS MB per camera",
        "PSS MB per camera", "USS MB per camera", "start-up s", "problems"], trial_rows(found))
    return summary + "\n" + trials


def build_setup(args: argparse.Namespace, workdir: Path) -> clip.Setup:
    truth_path = args.video.with_suffix(".json")
    truth = clip.Truth.read(truth_path)
    seconds = args.seconds or 5 * math.ceil(max(30.0, clip.window_for(truth, 1 if args.quick else 2)) / 5)
    length = seconds + args.warmup_s + ours.startup_timeout_s(args.max_n) + 60
    progress(f"preparing the clip ({args.video.name} at {args.fps} fps) and the ONNX cache")
    videos = clip.prepare(args.video, workdir, args.fps, length, phases=args.phases)
    cache = args.cache_dir or workdir / "cache"
    ours.warm_cache(args.mpta, cache)
    pod_env = {} if args.strip_unmasked else {"DETECTOR_GATING_IGNORE": FIXTURE_OVERLAY}
    pod_env.update(item.split("=", 1) for item in args.pod_env)
    return clip.Setup(videos=videos, truth_path=truth_path, truth=truth, mpta=args.mpta, cache=cache, workdir=workdir,
                      fps=args.fps, seconds=seconds, warmup_s=args.warmup_s, sample_s=args.sample_s,
                      limit_s=args.limit_s, redis_url=args.redis_url, postgres_dsn=args.postgres_dsn, pod_env=pod_env)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N up to 4 (--max-n), no bisection, one visit")
    parser.add_argument("--max-n", type=int, default=None, help="largest N tried (default 64; --quick: 4)")
    parser.add_argument("--n", type=int, default=None, help="one trial per side at this N, no search")
    parser.add_argument("--start-n", type=int, default=1,
                        help="the search's first N (e.g. 8: skips the trials at 1, 2 and 4; default 1)")
    parser.add_argument("--strip-unmasked", action="store_true",
                        help="leave the clip's frame-index strip in the change gate's view (by default it is masked, "
                             "DETECTOR_GATING_IGNORE, as a camera's clock overlay would be)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measured per trial (default: long enough for two whole visits at any phase, ≥ 30)")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="after every camera processed a frame")
    parser.add_argument("--sample-s", type=float, default=1.0, help="lag sampling interval")
    parser.add_argument("--limit-s", type=float, default=1.0, help="lag p99 limit per camera")
    parser.add_argument("--fps", type=int, default=5, help="frames per second of every camera stream")
    parser.add_argument("--phases", type=int, default=8,
                        help="the cameras enter the looped clip at this many points spread over it (camera i at "
                             "phase i %% P), as cameras at different pumps do not see cars arrive at the same moment; "
                             "1: every camera in step (the worst case for change gating)")
    parser.add_argument("--video", type=Path, default=clip.default_video(), help="the clip (its .json beside it)")
    parser.add_argument("--mpta", type=Path, default=DEFAULT_MPTA)
    parser.add_argument("--sides", default="ours,original", help="ours, original or both (comma-separated)")
    parser.add_argument("--pod-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the worker and its camera pods (repeatable)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the pods' cache (default: a fresh one)")
    parser.add_argument("--json", help="save every trial here")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres-dsn", default="host=127.0.0.1 port=5432 dbname=test user=root")
    args = parser.parse_args(argv)
    args.max_n = args.max_n or (4 if args.quick else 64)
    if args.n is not None:
        args.max_n = args.n
    sides = [side.strip() for side in args.sides.split(",") if side.strip()]
    if not sides or set(sides) - {"ours", "original"}:
        parser.error("--sides: ours, original or both")
    args.sides = sides
    if min(args.max_n, args.n or 1, args.fps, args.start_n, args.phases) < 1:
        parser.error("--n, --start-n, --max-n, --fps and --phases must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cameras-bench-"))
    started = time.monotonic()
    try:
        setup = build_setup(args, workdir)
        found: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        for side in args.sides:
            if args.n is not None:
                result = run_trial(setup, side, args.n)
                found[side] = (args.n if result["passed"] else 0, [result])
            else:
                found[side] = search(functools.partial(run_trial, setup, side), side, args.max_n,
                                     bisect=not args.quick, start_n=args.start_n)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(found, setup))
    common.write_json(args.json, {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "clip": {"video": str(args.video), "fps": setup.fps, "loop_s": setup.truth.loop_s,
                 "visits_per_loop": len(setup.truth.visits)},
        "seconds": setup.seconds, "cores": common.cores(), "memory_gib": psutil.virtual_memory().total / 2**30,
        "elapsed_s": time.monotonic() - started,
        "largest": {side: best for side, (best, _) in found.items()},
        "trials": {side: trials for side, (_, trials) in found.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
