"""Display changes reach a running camera pod live (embedded mode, a real RTSP stream, the real models).

Two displays on one camera; display B's crop changes, display C is added and removed, B moves to a second
archive, then to broken archives and back to a good one. Throughout: one pod process, one decode (the
stream started once, no reconnect), display A's frames keep flowing (its processed-frame count, sampled
from the pod's /metrics, never stalls beyond the normal pace) and each car at A is announced once.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support import embedded
from tests.support.embedded import VISITS, Backend, Worker
from tests.support.embedded_fixtures import Connect
from tests.support.model_server import serve_mutable
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
A, B, C = "display-live-a;cam-live", "display-live-b;cam-live", "display-live-c;cam-live"
SAMPLE_S = 0.25


def variant(mpta: bytes, root_id: str) -> bytes:
    """The fixture archive with another root modelId: another archive (sha256), the same models."""
    source, out = zipfile.ZipFile(io.BytesIO(mpta)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("pipeline.json"):
                document = json.loads(data)
                document["pipeline"]["modelId"] = root_id
                data = json.dumps(document).encode()
            target.writestr(item.filename, data)
    return out.getvalue()


def unloadable(mpta: bytes) -> bytes:
    """A valid zip and pipeline.json whose detector model is not a model."""
    source, out = zipfile.ZipFile(io.BytesIO(mpta)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item.filename, b"not a torch checkpoint" if item.filename.endswith("detection_v1.pt")
                            else data)
    return out.getvalue()


@pytest.fixture
def archives(fixture_mpta: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    original = fixture_mpta.read_bytes()
    files = {"first.mpta": original, "second.mpta": variant(original, "car_frontal_detection_v2"),
             "next.mpta": b"PK\x03\x04 this is not a zip"}
    with serve_mutable(files) as base:
        yield base, files


def entry(identifier: str, rtsp: RtspServer, model_url: str, **fields: Any) -> dict[str, Any]:
    return {"subscriptionIdentifier": identifier, "rtspUrl": rtsp.url, "modelUrl": model_url, "modelId": 42,
            "modelName": "gas-station", **fields}


class PodProbe:
    """The camera pod's own figures, from its HTTP endpoints: frames processed per display, its report."""

    def __init__(self, pod: psutil.Process) -> None:
        self.pod = pod
        (self.port,) = [c.laddr.port for c in pod.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        self.samples: list[tuple[float, float]] = []  # (monotonic time, frames processed for A)

    async def processed(self, http: httpx.AsyncClient, identifier: str) -> float:
        page = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        found = re.search(r'detector_pipeline_seconds_count\{subscription="' + re.escape(identifier) + r'"\} (\S+)',
                          page)
        return float(found.group(1)) if found else 0.0

    async def report(self, http: httpx.AsyncClient) -> dict[str, Any]:
        return dict((await http.get(f"http://127.0.0.1:{self.port}/healthz")).json()["report"])

    async def sample(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append((time.monotonic(), await self.processed(http, A)))
            await asyncio.sleep(SAMPLE_S)

    def rate(self, start: float, end: float) -> float:
        window = [(t, n) for t, n in self.samples if start <= t <= end]
        if len(window) < 2 or window[-1][0] <= window[0][0]:
            return 0.0
        return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])

    def longest_stall(self, start: float, end: float) -> float:
        """The longest time A's count did not move within [start, end]."""
        window = [(t, n) for t, n in self.samples if start <= t <= end]
        longest, since = 0.0, window[0][0] if window else start
        for (_, before), (at, now) in itertools.pairwise(window):
            if now != before:
                since = at
            longest = max(longest, at - since)
        return longest


async def change(backend: Backend, entries: list[dict[str, Any]], settle_s: float) -> float:
    at = time.monotonic()
    await backend.send({"type": "setSubscriptionList", "subscriptions": entries})
    await asyncio.sleep(settle_s)
    return at


async def test_display_changes_apply_live_without_a_gap_for_the_other_display(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], connect: Connect,
        archives: tuple[str, dict[str, bytes]]) -> None:
    rtsp, _ = camera_servers
    base, files = archives
    embedded.clean_outputs(["display-live-a", "display-live-b", "display-live-c"])
    first, second, next_url = f"{base}/first.mpta", f"{base}/second.mpta", f"{base}/next.mpta"
    backend = await connect(worker.url)
    a = entry(A, rtsp, first)
    b = entry(B, rtsp, first, cropX1=0, cropY1=0, cropX2=640, cropY2=480)
    await backend.send({"type": "setSubscriptionList", "subscriptions": [a, b]})
    await backend.until(lambda: backend.online() == {A: True, B: True}, 120)
    (pod,) = worker.pods()
    probe = PodProbe(pod)
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=5) as http:
        sampler = asyncio.create_task(probe.sample(http, stop))
        await asyncio.sleep(6)  # the pace before any change
        b = {**b, "cropX1": 100, "cropY1": 80, "cropX2": 560, "cropY2": 400}
        changes = {
            "B's crop": await change(backend, [a, b], 5),
            "C added": await change(backend, [a, b, entry(C, rtsp, first)], 5),
            "C removed": await change(backend, [a, b], 5),
            "B to a second archive": await change(backend, [a, {**b, "modelUrl": second, "modelId": 43}], 8),
        }
        report = await probe.report(http)
        assert report["display_errors"] == {}, report

        # Broken archives: B stays on the one it runs, the error in its state; then a good one is taken.
        await change(backend, [a, {**b, "modelUrl": next_url, "modelId": 44}], 0)
        await until(http, probe, lambda r: B in r["display_errors"], 30)  # a corrupt zip is kept out, and said so
        files["next.mpta"] = unloadable(files["first.mpta"])
        await asyncio.sleep(5)
        assert B in (await probe.report(http))["display_errors"], "a model that does not load is kept out"
        b_frames = await probe.processed(http, B)
        await asyncio.sleep(3)
        assert await probe.processed(http, B) > b_frames, "meanwhile B runs on its old model"
        files["next.mpta"] = variant(files["first.mpta"], "car_frontal_detection_v3")
        await until(http, probe, lambda r: r["display_errors"] == {}, 90)
        stop.set()
        await sampler

    assert psutil.Process(pod.pid).is_running() and [p.pid for p in worker.pods()] == [pod.pid], \
        "one pod process throughout"
    log = worker.log.read_text()
    # One reader for the camera all along (it reconnects when the test server's video ends: that is the source).
    assert log.count("stream started") == 1 and "stream stopped" not in log, "the camera's reader was never replaced"
    assert "model swapped" in log and "display added" in log and "display removed" in log

    before = probe.rate(changes["B's crop"] - 6, changes["B's crop"])
    assert before > 0.5, f"A processed {before:.2f} frames/s before the changes"
    for name, at in changes.items():
        after = probe.rate(at, at + 4)
        stall = probe.longest_stall(at, at + 4)
        print(f"{name}: A {before:.2f} -> {after:.2f} frames/s, longest stall {stall:.2f} s "
              f"(at {time.time() - time.monotonic() + at:.2f})")
        assert after >= 0.5 * before, f"{name}: A slowed from {before:.2f} to {after:.2f} frames/s"
        assert stall < 2.5, f"{name}: A processed no frame for {stall:.2f} s"

    cars = embedded.vehicles(backend.detections("display-live-a"))
    for earlier, later in itertools.pairwise(cars):
        assert later == VISITS[(VISITS.index(earlier) + 1) % len(VISITS)], f"A announced a car twice: {cars}"


async def until(http: httpx.AsyncClient, probe: PodProbe, condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition(await probe.report(http)):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out; the pod reports {await probe.report(http)}")
