"""Soak: the embedded worker with N cameras (half RTSP, half snapshot), the full pipeline, for an hour.

    .venv/bin/python -P bench/soak.py                      # 8 cameras, 60 min, a sample a minute
    .venv/bin/python -P bench/soak.py --duration-min 3 --sample-s 30

Starts ``detector run`` (broker + one camera pod process per camera) as a user does, RTSP servers and an HTTP
snapshot camera that play tests/fixtures/media/cars.mp4 on a loop, and the fixture .mpta over HTTP; a backend
WebSocket client subscribes every camera and counts the imageDetection messages. Writes go to the real Redis
and PostgreSQL (``--redis-url``, ``--postgres-dsn``). Every ``--sample-s``: RSS, open fds and CPU of the worker
and each pod, events received and produced (the pods' ``detector_events_total``), cameras online, reconnects.

At the end the cameras stop (a quiet period: no new visits), in-flight events get ``--drain-s`` to arrive, and
produced is compared with received: lost, duplicates. Then the worker is stopped and no camera pod may outlive
it. Prints Markdown (progress goes to stderr), writes the JSON report (``--out``, default
bench/results/soak-<time>.json, with the worker's log beside it) and exits 1 when a target is missed: RSS and
fd growth < 5 % from the end of the warm-up to the last sample, no event lost or duplicated, no orphan pod.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Appended, not prepended: the repository root holds a package named `operator` that must not shadow the stdlib.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import httpx
import psutil
import websockets
from pydantic import ValidationError

from bench import soak_report as report
from bench import soak_services as services
from bench.common import REPO
from bench.soak_cameras import VIDEO_SECONDS, CameraSet
from bench.soak_probe import Probe
from broker import entries, protocol
from tests.support.model_server import serve_files
from tests.support.servers import free_port

VIDEO = REPO / "tests" / "fixtures" / "media" / "cars.mp4"
VISITS_PER_LOOP = len(json.loads(VIDEO.with_suffix(".json").read_text())["visits"])
DEFAULT_MPTA = Path(os.environ.get("DETECTOR_TEST_MPTA", REPO / "tests" / "fixtures" / "gas_station.mpta"))


def progress(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Worker:
    """``detector run`` in its own process, its log (JSON lines, pods included) in a file."""

    log: Path
    environment: dict[str, str]
    fps: float
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        command = [sys.executable, "-P", "-m", "detector.cli", "run", "--host", "127.0.0.1", "--port",
                   str(self.port), "--target-fps", f"{self.fps:g}", "--heartbeat-interval-sec", "1"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.environment, stdout=subprocess.DEVNULL,
                                            stderr=log)
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise RuntimeError("the worker did not start:\n" + self.log.read_text()[-3000:])

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (what a service manager sends), SIGKILL only past ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            progress("the worker ignored SIGTERM; killing it")
            self.process.kill()
            return self.process.wait(10)


@dataclass
class Backend:
    """The CMS side: one WebSocket to the worker; it keeps what arrives."""

    url: str
    detections: list[tuple[str, str, float]] = field(default_factory=list)  # (subscription, timestamp, age s)
    online: dict[str, bool] = field(default_factory=dict)
    flips: int = 0  # online -> offline
    reconnects: int = 0
    invalid: Counter[str] = field(default_factory=Counter)  # messages the protocol models refused, by type
    _socket: websockets.ClientConnection | None = None
    _reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._socket = await websockets.connect(self.url, max_size=16 << 20)
        self._reader = asyncio.create_task(self._read(self._socket))

    async def _read(self, socket: websockets.ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in socket:
                self._receive(json.loads(raw))

    def _receive(self, message: dict[str, Any]) -> None:
        try:
            self._parse(message)
        except ValidationError as exc:  # counted and reported; the soak goes on
            self.invalid[str(message.get("type"))] += 1
            progress(f"invalid {message.get('type')} message: {str(exc)[:300]}")

    def _parse(self, message: dict[str, Any]) -> None:
        if message.get("type") == "imageDetection":
            detection = protocol.ImageDetection.model_validate(message)
            captured = datetime.fromisoformat(detection.timestamp.replace("Z", "+00:00")).timestamp()
            self.detections.append((detection.subscriptionIdentifier, detection.timestamp, time.time() - captured))
        elif message.get("type") == "stateReport":
            for camera in protocol.StateReport.model_validate(message).cameraConnections:
                if self.online.get(camera.subscriptionIdentifier) and not camera.online:
                    self.flips += 1
                self.online[camera.subscriptionIdentifier] = camera.online

    async def send(self, message: dict[str, Any]) -> None:
        assert self._socket is not None
        await self._socket.send(json.dumps(message))

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await self._reader
        self._socket = self._reader = None

    async def reconnect(self, subscriptions: dict[str, Any]) -> None:
        """As a backend restart does: a new connection, the same subscription list sent again."""
        await self.close()
        await self.connect()
        await self.send(subscriptions)
        self.reconnects += 1


def subscription_list(cameras: list[tuple[str, str]], model_url: str, tag: str, fps: float) -> dict[str, Any]:
    subscriptions = []
    for number, (kind, url) in enumerate(cameras, start=1):
        entry: dict[str, Any] = {"subscriptionIdentifier": f"{tag}-{number:02d};cam-{number:02d}",
                                 "modelUrl": model_url, "modelId": 1, "modelName": "soak"}
        if kind == "rtsp":
            entry["rtspUrl"] = url
        else:
            entry.update(snapshotUrl=url, snapshotInterval=round(1000 / fps))
        subscriptions.append(entry)
    message = {"type": "setSubscriptionList", "subscriptions": subscriptions}
    checked = entries.read(protocol.SetSubscriptionList.model_validate(message).subscriptions, time.time())
    if checked.refused:  # the script's own entries must be valid
        raise ValueError(f"soak subscriptions refused: {checked.refused}")
    return message


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.5)


@dataclass
class Run:
    args: argparse.Namespace
    cameras: CameraSet
    worker: Worker
    backend: Backend
    subscriptions: dict[str, Any]
    probe: Probe | None = None
    samples: list[report.Sample] = field(default_factory=list)
    started: float = 0.0  # monotonic time every camera was online: minute 0
    _ages_seen: int = 0

    async def sample(self, http: httpx.AsyncClient, due_s: float) -> report.Sample:
        assert self.probe is not None
        stats, product, harness, machine = await self.probe.sample(http)
        ages = [age for _, _, age in self.backend.detections[self._ages_seen:]]
        self._ages_seen = len(self.backend.detections)
        sample = report.Sample(
            minute=round(due_s / 60, 2), elapsed_s=round(time.monotonic() - self.started, 1),
            rss_mb=round(sum(s.rss_mb for s in stats), 1), fds=sum(s.fds for s in stats),
            cpu_cores=round(product, 3), harness_cpu_cores=round(harness, 3), machine_cpu_cores=round(machine, 3),
            events_received=len(self.backend.detections), events_produced=sum(self.probe.produced().values()),
            event_age_max_s=max(ages) if ages else None, pods=len(self.probe.live_pods),
            cameras_online=sum(self.backend.online.values()), stream_reconnects=int(self.probe.total("reconnects")),
            online_flips=self.backend.flips, pod_restarts=self.probe.restarts(),
            outbox_events=int(self.probe.total("outbox_events", live_only=True)),
            action_outbox_items=int(self.probe.total("action_outbox_items", live_only=True)), processes=stats)
        self.samples.append(sample)
        progress(f"minute {sample.minute:g}: RSS {sample.rss_mb:.0f} MB, fds {sample.fds}, CPU "
                 f"{sample.cpu_cores:.2f} cores (machine {sample.machine_cpu_cores:.2f}), events "
                 f"{sample.events_received} received / {sample.events_produced} produced, online "
                 f"{sample.cameras_online}/{len(self.subscriptions['subscriptions'])}")
        return sample

    async def run(self) -> None:
        count = len(self.subscriptions["subscriptions"])
        assert self.worker.process is not None
        self.probe = Probe(self.worker.process.pid, harness_pids=self.cameras.pids())
        self.probe.start()  # minute 0's CPU is the start-up's: model downloads, ONNX exports, stream opening
        await self.backend.send(self.subscriptions)
        await until(lambda: sum(self.backend.online.values()) == count, self.args.startup_timeout_s,
                    f"{count} cameras online")
        self.started = time.monotonic()
        duration_s, step = self.args.duration_min * 60, self.args.sample_s
        reconnect_every = self.args.backend_reconnect_min * 60 or None
        next_reconnect = reconnect_every
        async with httpx.AsyncClient() as http:
            await self.sample(http, 0.0)
            for index in range(1, int(duration_s // step) + 2):
                due = min(index * step, duration_s)
                while (elapsed := time.monotonic() - self.started) < due:
                    if next_reconnect is not None and elapsed >= next_reconnect:
                        await self.backend.reconnect(self.subscriptions)
                        next_reconnect += reconnect_every or 0
                    await asyncio.sleep(min(1.0, due - elapsed))
                await self.sample(http, due)
                if due >= duration_s:
                    break

    async def drain(self) -> None:
        """Cameras off: no new visit starts; wait until every event a pod produced has arrived and every
        Redis/PostgreSQL write is applied (or ``drain_s``)."""
        assert self.probe is not None
        self.cameras.stop()
        deadline = time.monotonic() + self.args.drain_s
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                await self.probe.scrape_all(http)
                received = {s for s, _, _ in self.backend.detections}
                arrived = {(s, t) for s, t, _ in self.backend.detections}
                unique = {s: sum(1 for r, _ in arrived if r == s) for s in received}
                waiting = self.probe.total("outbox_events", live_only=True) + \
                    self.probe.total("action_outbox_items", live_only=True)
                if waiting == 0 and all(unique.get(s, 0) >= n for s, n in self.probe.produced().items()):
                    return
        progress(f"events still in flight after {self.args.drain_s:g} s")


def orphans(pods: list[psutil.Process], wait_s: float = 15) -> list[int]:
    """Camera pods still running ``wait_s`` after the worker exited (they poll their parent each second)."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = [p for p in pods if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for process in alive:  # started by this run's worker: do not leave them behind
        with contextlib.suppress(psutil.Error):
            process.kill()
    return [p.pid for p in alive]


def worker_environment(args: argparse.Namespace, cache: Path, cameras: int) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "DETECTOR_AUTH_TOKEN"}
    environment.update({"DETECTOR_CACHE_DIR": str(cache), "YOLO_OFFLINE": "1", "DETECTOR_LOG_FORMAT": "json",
                        "DETECTOR_LOG_LEVEL": "INFO", "DETECTOR_MAX_STREAMS": str(max(20, cameras))})
    environment.update(services.overrides(args.redis_url, args.postgres_dsn))
    return environment


async def soak(args: argparse.Namespace, workdir: Path, log: Path) -> report.SoakReport:
    tag = f"soak{os.getpid()}"
    services.clean(args.redis_url, args.postgres_dsn, tag)
    rtsp = args.cameras // 2
    seconds = args.duration_min * 60 + args.startup_timeout_s + 120
    cameras = CameraSet(VIDEO, workdir, rtsp=rtsp, snapshot=args.cameras - rtsp, seconds=seconds)
    worker = Worker(log, worker_environment(args, args.cache_dir or workdir / "cache", args.cameras), args.fps)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with serve_files(args.mpta) as base:
        try:
            progress(f"starting {rtsp} RTSP + {args.cameras - rtsp} snapshot cameras and the worker")
            cameras.start()
            await worker.start().wait_ready()
            backend = Backend(worker.url)
            await backend.connect()
            message = subscription_list(cameras.urls(), f"{base}/{args.mpta.name}", tag, args.fps)
            run = Run(args, cameras, worker, backend, message)
            await run.run()
            quiet_at = time.time()
            shown = (time.monotonic() - run.started) / VIDEO_SECONDS * VISITS_PER_LOOP * args.cameras
            await run.drain()
            await backend.close()
            assert run.probe is not None
            pods = list({p.pid: p for p in [*run.probe.seen_pods(), *run.probe.pod_processes()]}.values())
            rows = services.postgres_rows(args.postgres_dsn, tag)
            stop_started = time.monotonic()
            exit_code = worker.stop()
            shutdown = report.Shutdown(worker_exit_code=exit_code, worker_stop_s=time.monotonic() - stop_started,
                                       orphans=orphans(pods))
        finally:
            worker.stop()
            cameras.stop()
            services.clean(args.redis_url, args.postgres_dsn, tag)
    logged, problems = services.read_log(log, quiet_at)
    problems.update({f"backend: invalid {kind} message": n for kind, n in backend.invalid.items()})
    events = report.tally(run.probe.produced(), [(s, t) for s, t, _ in backend.detections],
                          produced_logged=logged, updates_produced=sum(run.probe.produced("update").values()),
                          video_visits=round(shown), postgres_rows=rows)
    last = run.samples[-1]
    reconnects = report.Reconnects(stream=last.stream_reconnects, online_flips=last.online_flips,
                                   backend=backend.reconnects, pod_restarts=last.pod_restarts)
    grown = report.growth(run.samples, min(args.warmup_min, args.duration_min / 3))
    checks = report.checks(events, grown, shutdown)
    kinds = {s["subscriptionIdentifier"]: "rtsp" if "rtspUrl" in s else "snapshot" for s in message["subscriptions"]}
    return report.SoakReport(
        started_at=started_at, settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                                         if k not in ("redis_url", "postgres_dsn")},
        cameras=[report.Camera(identifier=i, kind=k) for i, k in kinds.items()], samples=run.samples,
        events=events, growth=grown, reconnects=reconnects, shutdown=shutdown, log_problems=problems,
        checks=checks, passed=all(c.passed for c in checks))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-min", type=float, default=60.0, help="measured time, after every camera is "
                                                                          "online (fractions allowed)")
    parser.add_argument("--cameras", type=int, default=8, help="half RTSP (rounded down), the rest snapshot")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second per camera: the worker's "
                        "--target-fps (RTSP: a 10 fps stream) and snapshotInterval = 1000/fps ms")
    parser.add_argument("--warmup-min", type=float, default=5.0, help="growth is measured from the first sample "
                        "at or after this minute (a third of the duration in shorter runs)")
    parser.add_argument("--drain-s", type=float, default=30.0, help="after the cameras stop, time for events "
                                                                    "in flight to arrive")
    parser.add_argument("--startup-timeout-s", type=float, default=300.0, help="for every camera to be online")
    parser.add_argument("--backend-reconnect-min", type=float, default=0.0,
                        help="reconnect the backend WebSocket this often (0: never)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / f"soak-{stamp}.json",
                        help="JSON report; the worker's log is written beside it (.log)")
    parser.add_argument("--mpta", type=Path, default=DEFAULT_MPTA, help="served to the pods over HTTP")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the pods' DETECTOR_CACHE_DIR (default: a fresh one, removed afterwards)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres-dsn", default="host=127.0.0.1 port=5432 dbname=test user=root")
    args = parser.parse_args(argv)
    if args.cameras < 1 or args.duration_min <= 0 or args.sample_s <= 0 or args.fps <= 0:
        parser.error("--cameras, --duration-min, --sample-s and --fps must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        result = asyncio.run(soak(args, workdir, log))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.write_text(result.model_dump_json(indent=2) + "\n")
    print(report.markdown(result))
    progress(f"report: {args.out}, worker log: {log}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
