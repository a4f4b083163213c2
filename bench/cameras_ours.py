"""One trial of ours in the cameras bench: ``detector run`` with N RTSP cameras, measured from outside.

The soak's pieces run it: ``soak.Worker`` (broker + one camera pod process per camera, as a user starts it),
``soak.Backend`` (the backend's WebSocket; it sends the ``setSubscriptionList`` and keeps every
``imageDetection``), the fixture archive over HTTP, Redis and PostgreSQL for the actions. The ONNX exports are in
the cache before the first trial (``warm_cache``), as on any pod start after a machine's first.

Measured per camera, once every camera is online, has processed a frame and ``warmup_s`` has passed, for
``seconds``:

- **lag**: every ``sample_s`` each pod's ``GET /healthz`` (its report, built at the request: the capture time of
  the latest frame each display processed, ``sightings``, and of the latest frame read) gives now − capture time
  of the latest processed frame. This is the frame age that matters (how far what the pipeline knows is behind
  the camera); the reader's own frame age is kept beside it (``reader_age_p99_s``).
- **visits**: the ``imageDetection`` messages received, each mapped by its capture time to the clip's visit
  occurrence, against the occurrences wholly inside the window (``cameras_clip.score``); the camera's clip clock
  comes from the frame-index strip of the pod's ``GET /image`` (and its ``X-Frame-Age-Seconds``).
- **memory** at the end of the window: RSS, PSS and USS of every camera pod and of the broker (psutil).
- **CPU** over the window: the worker and its pods, this script and the RTSP server, and the whole machine
  (what the rest is: other work on a shared machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psutil

from bench import cameras_clip as clip
from bench import common
from bench import soak_services as services
from bench.soak import Backend, Worker, orphans, subscription_list, until
from bench.soak_probe import PodCounters, listening_port
from detector.contract.environment import POD_SPEC_ENV
from detector.contract.pods import PodHealth, PodSpec
from tests.support.model_server import serve_files


def progress(message: str) -> None:
    print(f"[cameras {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warm_cache(mpta: Path, cache: Path) -> None:
    """Extract the archive and export its models to ONNX once, in a child (torch stays out of this process), into
    the cache every trial's pods share."""
    code = ("import asyncio, sys; sys.path.append(sys.argv[1]); from pathlib import Path; "
            "from camera_pod.inference import selection; from camera_pod.mpta.loading import ArchiveStore; "
            "from camera_pod.settings import PodSettings; s = PodSettings(cache_dir=Path(sys.argv[3])); "
            "store = ArchiveStore(s.cache_dir, load_model=selection.model_loader(s.cache_dir, "
            "selection.options_from_settings(s))); asyncio.run(store.load(sys.argv[2]))")
    subprocess.run([sys.executable, "-P", "-c", code, str(clip.REPO), str(mpta), str(cache)], check=True,
                   timeout=600, env={**os.environ, "YOLO_OFFLINE": "1"}, capture_output=True)


class DetectionLog(Backend):
    """The soak's backend, also keeping each imageDetection's answer: (subscription, capture time, brand, body)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.answers: list[tuple[str, float, str | None, str | None]] = []

    def _parse(self, message: dict[str, Any]) -> None:
        super()._parse(message)
        if message.get("type") == "imageDetection":
            captured = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp()
            detection = message.get("data", {}).get("detection", {})
            self.answers.append((message["subscriptionIdentifier"], captured, detection.get("carBrand"),
                                 detection.get("bodyType")))


@dataclass
class Pod:
    process: psutil.Process
    port: int
    identifiers: list[str]


def find_pods(worker_pid: int) -> list[Pod]:
    pods = []
    for child in psutil.Process(worker_pid).children():
        with contextlib.suppress(psutil.Error, KeyError, ValueError):
            if "camera_pod" not in child.cmdline():
                continue
            spec = PodSpec.model_validate_json(child.environ()[POD_SPEC_ENV])
            port = listening_port(child)
            if port is not None:
                pods.append(Pod(child, port, [s.identifier for s in spec.subscriptions]))
    return pods


@dataclass
class Sampler:
    """Lag and reader frame age per display, from each pod's /healthz."""

    pods: list[Pod]
    lags: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    reader_ages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: int = 0

    async def sample(self, http: httpx.AsyncClient) -> None:
        await asyncio.gather(*(self._one(http, pod) for pod in self.pods))

    async def _one(self, http: httpx.AsyncClient, pod: Pod) -> None:
        sent = time.time()
        try:
            response = await http.get(f"http://127.0.0.1:{pod.port}/healthz", timeout=5)
            report = PodHealth.model_validate_json(response.content).report
        except (httpx.HTTPError, ValueError):
            self.failures += 1
            return
        now = (sent + time.time()) / 2
        for identifier in pod.identifiers:
            sighting = report.sightings.get(identifier)
            if sighting is not None:
                self.lags[identifier].append(now - sighting.captured_at)
            if report.last_frame_at is not None:
                self.reader_ages[identifier].append(now - report.last_frame_at)

    def processed_everywhere(self) -> bool:
        return all(self.lags.get(i) for pod in self.pods for i in pod.identifiers)


async def anchor(http: httpx.AsyncClient, pod: Pod, truth: clip.Truth) -> clip.Anchor | None:
    """The camera's clip clock, from the strip of the pod's latest frame."""
    try:
        response = await http.get(f"http://127.0.0.1:{pod.port}/image", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    received = time.time()
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        return None
    age = float(response.headers.get("X-Frame-Age-Seconds", "0"))
    return clip.Anchor(wall=received - age, clip=truth.clip_time(image))


def memory(process: psutil.Process) -> dict[str, float]:
    try:
        info = process.memory_full_info()
    except psutil.Error:
        return {}
    return {"rss_mb": info.rss / 2**20, "pss_mb": info.pss / 2**20, "uss_mb": info.uss / 2**20}


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def worker_environment(setup: clip.Setup, cameras: int) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "DETECTOR_AUTH_TOKEN"}
    environment.update({"DETECTOR_CACHE_DIR": str(setup.cache), "YOLO_OFFLINE": "1", "DETECTOR_LOG_FORMAT": "json",
                        "DETECTOR_LOG_LEVEL": "INFO", "DETECTOR_MAX_STREAMS": str(max(20, cameras))})
    environment.update(services.overrides(setup.redis_url, setup.postgres_dsn))
    environment.update(setup.pod_env)
    return environment


def startup_timeout_s(cameras: int) -> float:
    return 120.0 + 6.0 * cameras  # on 2 cores every pod's imports and model loads share the CPU


async def scrape(http: httpx.AsyncClient, pods: list[Pod]) -> dict[int, PodCounters]:
    """Each pod's /metrics: pipeline passes and their time, frames read and dropped."""
    counters: dict[int, PodCounters] = {}
    for pod in pods:
        with contextlib.suppress(httpx.HTTPError):
            response = await http.get(f"http://127.0.0.1:{pod.port}/metrics", timeout=5)
            counters[pod.process.pid] = PodCounters(str(pod.process.pid))
            counters[pod.process.pid].update(response.text)
    return counters


def delta(before: dict[int, PodCounters], after: dict[int, PodCounters], pid: int, name: str) -> float:
    if pid not in before or pid not in after:
        return float("nan")
    return after[pid].values.get(name, 0.0) - before[pid].values.get(name, 0.0)


@dataclass
class Window:
    """What one measuring window saw, before scoring."""

    start: float = 0.0  # epoch seconds
    end: float = 0.0
    anchors: dict[str, clip.Anchor | None] = field(default_factory=dict)
    drift_s: dict[str, float] = field(default_factory=dict)
    counters: tuple[dict[int, PodCounters], dict[int, PodCounters]] = ({}, {})
    cpu: dict[str, float] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # pod pid or "broker" -> figures


async def measure(setup: clip.Setup, worker_pid: int, pods: list[Pod], sampler: Sampler, server_pid: int) -> Window:
    window = Window()
    products = [psutil.Process(worker_pid), *(pod.process for pod in pods)]
    harness = [psutil.Process(), psutil.Process(server_pid)]
    async with httpx.AsyncClient() as http:
        for pod in pods:
            window.anchors[pod.identifiers[0]] = await anchor(http, pod, setup.truth)
        before = await scrape(http, pods)
        sampler.lags.clear()
        sampler.reader_ages.clear()
        cpu0, own0, machine0 = cpu_seconds(products), cpu_seconds(harness), psutil.cpu_times()
        window.start = time.time()
        for moment in clip.sample_times(window.start, setup.seconds, setup.sample_s):
            await asyncio.sleep(max(0.0, moment - time.time()))
            await sampler.sample(http)
        await asyncio.sleep(max(0.0, window.start + setup.seconds - time.time()))
        window.end = time.time()
        elapsed = window.end - window.start
        cpu1, own1, machine1 = cpu_seconds(products), cpu_seconds(harness), psutil.cpu_times()
        window.counters = (before, await scrape(http, pods))
        window.memory = {str(pod.process.pid): memory(pod.process) for pod in pods}
        window.memory["broker"] = memory(products[0])
        for pod in pods:
            first, last = window.anchors[pod.identifiers[0]], await anchor(http, pod, setup.truth)
            if first is not None and last is not None:
                loop = setup.truth.loop_s
                drift = (first.position(last.wall) - last.clip + loop / 2) % loop - loop / 2
                window.drift_s[pod.identifiers[0]] = drift
    busy = (sum(machine1) - machine1.idle - machine1.iowait) - (sum(machine0) - machine0.idle - machine0.iowait)
    window.cpu = {"product_cores": (cpu1 - cpu0) / elapsed, "bench_cores": (own1 - own0) / elapsed,
                  "machine_cores": busy / elapsed}
    return window


def cameras(setup: clip.Setup, window: Window, sampler: Sampler, backend: DetectionLog,
            pods: list[Pod]) -> list[clip.CameraRun]:
    runs = []
    before, after = window.counters
    elapsed = window.end - window.start
    for pod in pods:
        identifier, pid = pod.identifiers[0], pod.process.pid
        answers = [(t, brand, body) for s, t, brand, body in backend.answers if s == identifier]
        found = window.anchors.get(identifier)
        tally = clip.score(setup.truth, found, (window.start, window.end), answers) if found else clip.Tally()
        passes = delta(before, after, pid, "pipeline_passes")
        extra = {"processed_fps": passes / elapsed,
                 "pass_mean_ms": 1000 * delta(before, after, pid, "pipeline_seconds") / passes if passes else None,
                 "frames_read_fps": delta(before, after, pid, "frames") / elapsed,
                 "reader_age_p99_s": common.percentile(sampler.reader_ages.get(identifier, []), 99),
                 "clock_drift_s": window.drift_s.get(identifier), **window.memory.get(str(pid), {})}
        runs.append(clip.CameraRun(identifier, list(sampler.lags.get(identifier, [])), tally, extra))
    return runs


async def start(setup: clip.Setup, worker: Worker, server: clip.MountServer, model_url: str,
                tag: str) -> tuple[DetectionLog, list[Pod], float]:
    """Worker up, every camera subscribed, online and through its first pipeline pass; returns the seconds."""
    started = time.monotonic()
    await worker.start().wait_ready()
    backend = DetectionLog(worker.url)
    await backend.connect()
    count = len(server.urls())
    message = subscription_list([("rtsp", url) for url in server.urls()], model_url, tag, setup.fps)
    await backend.send(message)
    timeout = startup_timeout_s(count)
    await until(lambda: sum(backend.online.values()) == count, timeout, f"{count} cameras online")
    assert worker.process is not None
    pods: list[Pod] = []
    while len(pods) < count:
        pods = find_pods(worker.process.pid)
        await asyncio.sleep(0.5)
    sampler = Sampler(pods)
    async with httpx.AsyncClient() as http:
        while not sampler.processed_everywhere():
            if time.monotonic() - started > timeout:
                raise RuntimeError("a camera never processed a frame")
            await sampler.sample(http)
            await asyncio.sleep(0.5)
    return backend, pods, time.monotonic() - started


async def trial(setup: clip.Setup, server: clip.MountServer) -> dict[str, Any]:
    """Ours with one camera per mount of ``server``: the cameras' runs, memory, CPU, start-up time."""
    count = len(server.urls())
    tag = f"cams{os.getpid()}"
    services.clean(setup.redis_url, setup.postgres_dsn, tag)
    worker = Worker(setup.workdir / f"ours-{count}.log", worker_environment(setup, count), setup.fps)
    backend: DetectionLog | None = None
    pods: list[Pod] = []
    try:
        with serve_files(setup.mpta) as base:
            backend, pods, startup_s = await start(setup, worker, server, f"{base}/{setup.mpta.name}", tag)
            await asyncio.sleep(setup.warmup_s)
            flips = backend.flips
            sampler = Sampler(pods)
            assert worker.process is not None
            window = await measure(setup, worker.process.pid, pods, sampler, server.pid)
            await asyncio.sleep(2.0)  # announcements of the window's last visits still on their way
            flips = backend.flips - flips
    finally:
        if backend is not None:
            await backend.close()
        worker.stop()
        left = orphans([pod.process for pod in pods])
        services.clean(setup.redis_url, setup.postgres_dsn, tag)
    runs = cameras(setup, window, sampler, backend, pods)
    pods_memory = [figures for key, figures in window.memory.items() if key != "broker"]
    return {"side": "ours", "cameras": count, "startup_s": startup_s, "seconds": window.end - window.start,
            "runs": runs, "online_flips": flips, "orphans": left, "healthz_failures": sampler.failures,
            "memory": {"broker": window.memory.get("broker", {}), "pods": pods_memory}, "cpu": window.cpu}
