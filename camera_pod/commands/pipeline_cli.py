"""``detector pipeline run``: run an .mpta on a video, image or stream and print each result."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2

from camera_pod.actions.overrides import ServiceOverrides
from camera_pod.actions.services import ServiceSink
from camera_pod.annotating import annotate
from camera_pod.commands.mpta_cli import store_from_settings
from camera_pod.inference.models import Image
from camera_pod.mpta.errors import MptaError
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import FrameResult
from camera_pod.settings import PodSettings
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.frames import Frame
from camera_pod.streams.hub import StreamHub
from camera_pod.streams.state import StreamState
from detector.kit.errors import DetectorError, PermanentError
from detector.kit.redaction import redact_text, redact_url


def describe(index: int, result: FrameResult) -> str:
    root = result.root
    boxes = " ".join(f"{name} {box.confidence:.2f}" for name, box in (root.regions.items() if root else []))
    fields = " ".join(f"{key}={value}" for key, value in result.classified_fields().items())
    done = sum(outcome.status == "done" for outcome in result.actions)
    skipped = sum(outcome.status == "skipped" for outcome in result.actions)
    failed = len(result.failed_actions)
    parts = [f"frame {index:5d}", f"{result.status:10s}", boxes, fields]
    if result.session_id:
        parts.append(f"session={result.session_id}")
    if result.reason:
        parts.append(f"({result.reason})")
    if result.actions:
        parts.append(f"actions {done} done, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    parts.append(f"{result.timings_ms.get('total', 0):.0f} ms")
    return "  ".join(part for part in parts if part)


def as_json(index: int, result: FrameResult) -> str:
    root = result.root
    return json.dumps({
        "frame": index, "status": result.status, "reason": result.reason, "session_id": result.session_id,
        "regions": {name: {"confidence": box.confidence, "box": box.xyxy} for name, box in
                    (root.regions.items() if root else [])},
        "fields": result.classified_fields(),
        "actions": [{"node": a.node_id, "type": a.action_type, "status": a.status, "detail": a.detail}
                    for a in result.actions],
        "timings_ms": {key: round(value, 2) for key, value in result.timings_ms.items()},
    })


class _VideoWriter:
    def __init__(self, path: Path, fps: float | None) -> None:
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream("libx264", rate=round(fps or 10))
        self._stream.pix_fmt = "yuv420p"
        self._started = False

    def write(self, image: Image) -> None:
        if not self._started:
            self._stream.width, self._stream.height = image.shape[1] // 2 * 2, image.shape[0] // 2 * 2
            self._started = True
        frame = av.VideoFrame.from_ndarray(image[: self._stream.height, : self._stream.width], format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def stream_config(source: str) -> StreamConfig:
    """Live URLs fail fast (a tool, not a camera pod); files deliver every frame in order."""
    lower = source.lower()
    if lower.startswith(("rtsp://", "rtsps://")):
        return StreamConfig(url=source, kind="rtsp", max_retries=0)
    if lower.startswith(("http://", "https://")):
        return StreamConfig(url=source, kind="snapshot", max_retries=0)
    return StreamConfig(url=source, kind="file", every_frame=True)


async def frames(source: str) -> AsyncGenerator[Frame, None]:
    hub = StreamHub()
    subscription = hub.subscribe("cli;cli", stream_config(source))
    try:
        while True:
            got = await subscription.next_frame_async(1.0)
            if got is not None:
                yield got.frame
                continue
            status = subscription.status()
            if status.state is StreamState.FAILED:
                raise PermanentError(status.last_error or f"{redact_url(source)}: failed")
            if status.state is StreamState.STOPPED:
                return
    finally:
        await asyncio.to_thread(hub.close)


def _file_fps(source: str) -> float | None:
    try:
        with av.open(source) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else None
    except (av.FFmpegError, OSError, IndexError):
        return None


async def _run(args: argparse.Namespace) -> int:
    settings = PodSettings()
    archive = await store_from_settings(settings).load(args.mpta)
    sink = None if args.no_actions else ServiceSink(ServiceOverrides().apply(archive.config))
    engine = PipelineEngine(archive, sink, max_workers=settings.inference_workers)
    writer: _VideoWriter | None = None
    display_id, _, camera = args.subscription.partition(";")
    try:
        async with contextlib.aclosing(frames(args.source)) as stream:
            index = 0
            async for frame in stream:
                context = FrameContext(camera_id=args.subscription, display_id=display_id or camera,
                                       captured_at=datetime.fromtimestamp(frame.captured_at, UTC))
                result = await engine.process(frame.image, context)
                print(as_json(index, result) if args.json else describe(index, result), flush=True)
                if args.out or args.show:
                    annotated = annotate(frame.image, result)
                    if args.out:
                        writer = writer or _VideoWriter(Path(args.out), _file_fps(args.source))
                        writer.write(annotated)
                    if args.show:
                        cv2.imshow("detector", annotated)
                        cv2.waitKey(1)
                index += 1
                if args.max_frames and index >= args.max_frames:
                    break
    finally:
        if writer:
            writer.close()
        engine.close()
        if sink:
            await sink.close()
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.show and not hasattr(cv2, "imshow"):
        print("--show needs an OpenCV build with a GUI; this server build is headless: use --out", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except MptaError as exc:
        print(f"invalid .mpta {args.mpta}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    except cv2.error as exc:
        print(f"--show failed (headless OpenCV has no windows): {exc}; use --out", file=sys.stderr)
        return 2
    except DetectorError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pipeline = subparsers.add_parser("pipeline", help="run an .mpta pipeline by hand")
    commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    run = commands.add_parser("run", help="run on a video, image or stream URL; one line per frame")
    run.add_argument("--mpta", required=True, help="path or http(s) URL of the .mpta")
    run.add_argument("--source", required=True, help="video/image path or rtsp/http URL")
    run.add_argument("--out", help="write an annotated video here (e.g. annotated.mp4)")
    run.add_argument("--show", action="store_true", help="show frames in a window (needs GUI OpenCV)")
    run.add_argument("--subscription", default="cli;cli", help="subscriptionIdentifier 'display;camera'")
    run.add_argument("--no-actions", action="store_true", help="do not write to Redis/PostgreSQL")
    run.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    run.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    run.set_defaults(handler=run_command)

