"""One trial of the original loop in the cameras bench: one process, threads per camera, as the original worker.

Per camera, as the original's ``subscribe``/``frame_reader``/``process_streams``: a reader thread reads the RTSP
stream with ``cv2.VideoCapture`` into a one-frame queue (the latest frame only: a full queue is emptied first),
and a thread runs ``bench.original_worker.OriginalWorker`` on each frame it takes — the camera's own models
(the original loaded an archive per camera), Ultralytics ``track(persist=True)`` on the full frame, one
``predict`` per triggered branch on a 224x224 crop. Every processed frame with a brand and a body type is one
``imageDetection`` of the original (it sent one per frame); no actions run (none on either side of the pipeline
bench; ours does write, once per visit).

Measured as for ours (``cameras_ours``), once every camera has processed a frame and ``warmup_s`` has passed:
every ``sample_s`` the lag of each camera (now − capture time of its latest processed frame, the capture time
being when ``read()`` returned it), the visits (its processed frames' own strips give the clip clock), the
process's RSS/PSS/USS at the end (and before any camera's models, ``base``), its CPU over the window.

The parent (``trial``) runs this file as a child process and scores what it prints (a JSON line).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Appended, not prepended: the repository root holds a package named `operator` that must not shadow the stdlib.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import numpy as np
import psutil

from bench import cameras_clip as clip
from bench import common
from bench.original_worker import OriginalWorker, extract

SCRIPT = Path(__file__).resolve()
Frame = tuple[np.ndarray, float]  # image, capture time (epoch s)


@dataclass
class Camera:
    """One camera of the original: its reader and processing threads and what they saw."""

    url: str
    worker: OriginalWorker
    truth: clip.Truth
    slot: queue.Queue[Frame] = field(default_factory=lambda: queue.Queue(maxsize=1))
    stop: threading.Event = field(default_factory=threading.Event)
    measuring: bool = False
    latest_capture: float | None = None
    read: int = 0
    processed: int = 0
    ages: list[float] = field(default_factory=list)  # capture → end of processing, per frame
    answers: list[tuple[float, str | None, str | None]] = field(default_factory=list)
    anchor: tuple[float, float] | None = None  # (capture time, clip time) of the window's first frame

    def start(self) -> None:
        threading.Thread(target=self._read, name=f"reader {self.url}", daemon=True).start()
        threading.Thread(target=self._process, name=f"worker {self.url}", daemon=True).start()

    def _read(self) -> None:
        import cv2

        capture = cv2.VideoCapture(self.url)
        while not self.stop.is_set():
            ok, image = capture.read()
            if not ok:  # the original reopened the stream after a pause
                capture.release()
                time.sleep(1.0)
                capture = cv2.VideoCapture(self.url)
                continue
            captured = time.time()
            if self.slot.full():
                with contextlib.suppress(queue.Empty):
                    self.slot.get_nowait()
            self.slot.put((image, captured))
            self.read += self.measuring
        capture.release()

    def _process(self) -> None:
        while not self.stop.is_set():
            try:
                image, captured = self.slot.get(timeout=1.0)
            except queue.Empty:
                continue
            step = self.worker.process(image)
            done = time.time()
            self.latest_capture = captured
            if not self.measuring:
                continue
            self.processed += 1
            self.ages.append(done - captured)
            if self.anchor is None:
                self.anchor = (captured, self.truth.clip_time(image))
            brand = next((v for k, v in step.fields.items() if "brand" in k.lower()), None)
            body = next((v for k, v in step.fields.items() if "body" in k.lower()), None)
            if brand is not None and body is not None:
                self.answers.append((captured, brand, body))


def memory() -> dict[str, float]:
    info = psutil.Process().memory_full_info()
    return {"rss_mb": info.rss / 2**20, "pss_mb": info.pss / 2**20, "uss_mb": info.uss / 2**20}


def wait_processing(cameras: list[Camera], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(camera.latest_capture is None for camera in cameras):
        if time.monotonic() > deadline:
            raise RuntimeError("a camera of the original loop never processed a frame")
        time.sleep(0.2)


def measure(cameras: list[Camera], args: argparse.Namespace) -> dict[str, Any]:
    lags: list[list[float]] = [[] for _ in cameras]
    for camera in cameras:
        camera.measuring = True
    cpu0, machine0, start = time.process_time(), psutil.cpu_times(), time.time()
    for moment in clip.sample_times(start, args.seconds, args.sample_s):
        time.sleep(max(0.0, moment - time.time()))
        now = time.time()
        for index, camera in enumerate(cameras):
            if camera.latest_capture is not None:
                lags[index].append(now - camera.latest_capture)
    time.sleep(max(0.0, start + args.seconds - time.time()))
    end = time.time()
    cpu1, machine1 = time.process_time(), psutil.cpu_times()
    for camera in cameras:
        camera.measuring = False
    busy = (sum(machine1) - machine1.idle - machine1.iowait) - (sum(machine0) - machine0.idle - machine0.iowait)
    return {"start": start, "end": end, "lags": lags,
            "cpu": {"product_cores": (cpu1 - cpu0) / (end - start), "machine_cores": busy / (end - start)}}


def child(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import cv2  # noqa: F401 - the readers' and Ultralytics' import, before the base figure
    import ultralytics  # noqa: F401

    truth = clip.Truth.read(Path(args.truth))
    base = memory()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="original-") as scratch:
        cameras = []
        for number, url in enumerate(args.urls):  # the original extracted the archive per camera
            folder = extract(Path(args.mpta), Path(scratch) / str(number))
            cameras.append(Camera(url, OriginalWorker(folder, args.tracker), truth))
        for camera in cameras:
            camera.start()
        wait_processing(cameras, args.startup_timeout_s)
        startup_s = time.monotonic() - started
        time.sleep(args.warmup_s)
        window = measure(cameras, args)
        for camera in cameras:
            camera.stop.set()
    return {"startup_s": startup_s, "base": base, "memory": memory(), **window, "cameras": [
        {"url": camera.url, "read": camera.read, "processed": camera.processed, "anchor": camera.anchor,
         "answers": camera.answers, "age_p99_s": common.percentile(camera.ages, 99)} for camera in cameras]}


def trial(setup: clip.Setup, server: clip.MountServer, startup_timeout_s: float) -> dict[str, Any]:
    """The original loop on every mount of ``server``, in a child process; scored like ours."""
    urls = server.urls()
    command = [sys.executable, "-P", str(SCRIPT), "--urls", *urls, "--mpta", str(setup.mpta),
               "--truth", str(setup.truth_path), "--seconds", str(setup.seconds), "--warmup-s", str(setup.warmup_s),
               "--sample-s", str(setup.sample_s), "--startup-timeout-s", str(startup_timeout_s)]
    timeout = startup_timeout_s + setup.warmup_s + setup.seconds + 120
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=common.REPO, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the original loop failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    elapsed = result["end"] - result["start"]
    runs = []
    for number, (camera, lags) in enumerate(zip(result["cameras"], result["lags"], strict=True)):
        anchor = clip.Anchor(*camera["anchor"]) if camera["anchor"] else None
        answers = [tuple(answer) for answer in camera["answers"]]
        tally = clip.score(setup.truth, anchor, (result["start"], result["end"]), answers) if anchor else clip.Tally()
        runs.append(clip.CameraRun(f"original-{number + 1:02d}", lags, tally, {
            "processed_fps": camera["processed"] / elapsed, "frames_read_fps": camera["read"] / elapsed,
            "age_at_end_p99_s": camera["age_p99_s"]}))
    return {"side": "original", "cameras": len(urls), "startup_s": result["startup_s"], "seconds": elapsed,
            "runs": runs, "memory": {"process": result["memory"], "base": result["base"]}, "cpu": result["cpu"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", nargs="+", required=True)
    parser.add_argument("--mpta", required=True)
    parser.add_argument("--truth", required=True, help="the clip's ground truth .json")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=1.0)
    parser.add_argument("--startup-timeout-s", type=float, default=300.0)
    parser.add_argument("--tracker", default="botsort", help="Ultralytics' default, as the original's track()")
    result = child(parser.parse_args())
    print(json.dumps(result, default=float), flush=True)
    os._exit(0)  # the reader threads may sit in a blocking read


if __name__ == "__main__":
    main()
