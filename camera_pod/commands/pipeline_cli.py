"""``detector pipeline run``: run an .mpta on a video, image or stream as a camera pod runs it; print each frame."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

import av
import cv2

from camera_pod.actions.overrides import ServiceOverrides
from camera_pod.actions.services import ServiceSink
from camera_pod.annotating import annotate
from camera_pod.commands.mpta_cli import store_from_settings
from camera_pod.inference.models import Image
from camera_pod.mpta.errors import MptaError
from camera_pod.pipeline.engine import PipelineEngine
from camera_pod.pipeline.results import FrameResult
from camera_pod.processing import Announcement, DisplayProcessor, Processed, visit_tracker
from camera_pod.settings import PodSettings
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.frames import Frame
from camera_pod.streams.hub import StreamHub
from camera_pod.streams.state import StreamState
from detector.contract.pods import PodSpec
from detector.kit.errors import DetectorError, PermanentError
from detector.kit.redaction import redact_text, redact_url


def describe(index: int, result: FrameResult, *, gated_as: int | None = None, actions: bool = True) -> str:
    if gated_as is not None:
        return f"frame {index:5d}  {'gated':10s}  (the picture of frame {gated_as}: detector not run)"
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
    if actions and result.actions:
        parts.append(f"actions {done} done, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    parts.append(f"{result.timings_ms.get('total', 0):.0f} ms")
    return "  ".join(part for part in parts if part)


def describe_visit(announcement: Announcement) -> str:
    decision, written = announcement.decision, announcement.written
    fields = " ".join(f"{key}={value}" for key, value in decision.fields.items())
    line = f"visit {decision.visit_id[:8]}  {'updated' if decision.update else 'announced'}  {fields}"
    if written is not None and written.actions:
        done = sum(outcome.status in ("done", "queued") for outcome in written.actions)
        line += f"  actions {done} done, {len(written.failed_actions)} failed"
    return line


def as_json(index: int, result: FrameResult, *, gated_as: int | None = None,
            announcements: tuple[Announcement, ...] = ()) -> str:
    root = result.root
    return json.dumps({
        "frame": index, "status": result.status, "reason": result.reason, "session_id": result.session_id,
        "gated": gated_as is not None, "as_frame": index if gated_as is None else gated_as,
        "regions": {name: {"confidence": box.confidence, "box": box.xyxy} for name, box in
                    (root.regions.items() if root else [])},
        "fields": result.classified_fields(),
        "actions": [{"node": a.node_id, "type": a.action_type, "status": a.status, "detail": a.detail}
                    for a in result.actions],
        "timings_ms": {key: round(value, 2) for key, value in result.timings_ms.items()},
        "visits": [{"visit": a.decision.visit_id, "fields": a.decision.fields, "update": a.decision.update,
                    "best_frame_at": a.decision.captured_at,
                    "actions": [{"node": o.node_id, "type": o.action_type, "status": o.status, "detail": o.detail}
                                for o in (a.written.actions if a.written else ())]}
                   for a in announcements],
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


def _print(args: argparse.Namespace, index: int, processed: Processed, gated_as: int | None) -> None:
    if args.json:
        print(as_json(index, processed.result, gated_as=gated_as, announcements=processed.announcements), flush=True)
        return
    # In visit mode a frame's own run writes nothing (its actions are all skipped): the visit's announcement writes.
    print(describe(index, processed.result, gated_as=gated_as, actions=args.event_mode == "frame"), flush=True)
    for announcement in processed.announcements:
        print(describe_visit(announcement), flush=True)


async def _run(args: argparse.Namespace) -> int:
    settings = PodSettings() if args.gating is None else PodSettings(gating=args.gating)
    archive = await store_from_settings(settings).load(args.mpta)
    sink = None if args.no_actions else ServiceSink(ServiceOverrides().apply(archive.config))
    engine = PipelineEngine(archive, sink, max_workers=settings.inference_workers)
    defaults = PodSpec.model_fields
    live = stream_config(args.source).kind != "file"
    fps = None if live else _file_fps(args.source)
    visits = visit_tracker(archive, event_mode=args.event_mode, stable_frames=defaults["stable_frames"].default,
                           gap_s=defaults["visit_gap_s"].default, expected_interval_s=1 / fps if fps else None)
    processor = DisplayProcessor.from_settings(args.subscription, settings, write=not args.no_actions)
    writer: _VideoWriter | None = None
    try:
        async with contextlib.aclosing(frames(args.source)) as stream:
            index, last_run, origin = 0, 0, None
            async for frame in stream:
                # A file's frames are captured at its own timeline (read as fast as the pipeline goes).
                origin = frame.captured_at if origin is None else origin
                captured_at = frame.captured_at if live else origin + index / (fps or 10.0)
                processed = await processor.process(engine, visits, frame.image, captured_at)
                last_run = last_run if processed.gated else index
                _print(args, index, processed, last_run if processed.gated else None)
                if args.out or args.show:
                    annotated = annotate(frame.image, processed.result)
                    if args.out:
                        writer = writer or _VideoWriter(Path(args.out), fps)
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


RUN_DESCRIPTION = """\
Runs an .mpta on a file or stream as a camera pod runs a display's frames, so what you see (and how fast) is what a
camera gets. Per frame: the change gate compares a thumbnail of the frame with the frame the detector last ran on and
skips the detector (and the classifiers) on an unchanged picture once the car in view is announced ("gated": the
frame repeats the last processed result), running it on a change, while a visit is in progress, and at least every
DETECTOR_GATING_MAX_SKIP_S (2 s); otherwise the detector runs, the branches classify its boxes (a vehicle classified
less than DETECTOR_CLASSIFY_INTERVAL_S ago reuses its result), and the visit policy follows the cars. A visit is
announced once (a "visit" line) and its best frame runs the pipeline's actions (Redis image, PostgreSQL row) unless
--no-actions. A file's frames are timed by its frame rate, whatever speed they are read at. Settings: the pod's
DETECTOR_* variables (DETECTOR_GATING_IGNORE masks a clock overlay)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pipeline = subparsers.add_parser("pipeline", help="run an .mpta pipeline by hand")
    commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    run = commands.add_parser("run", help="run on a video, image or stream URL as a camera pod does; one line "
                                          "per frame", description=RUN_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--mpta", required=True, help="path or http(s) URL of the .mpta")
    run.add_argument("--source", required=True, help="video/image path or rtsp/http URL")
    run.add_argument("--out", help="write an annotated video here (e.g. annotated.mp4)")
    run.add_argument("--show", action="store_true", help="show frames in a window (needs GUI OpenCV)")
    run.add_argument("--subscription", default="cli;cli", help="subscriptionIdentifier 'display;camera'")
    run.add_argument("--no-actions", action="store_true", help="do not write to Redis/PostgreSQL")
    run.add_argument("--gating", action=argparse.BooleanOptionalAction, default=None,
                     help="the change gate (default: DETECTOR_GATING, on); --no-gating: the detector on every frame")
    run.add_argument("--event-mode", choices=("visit", "frame"), default="visit",
                     help="visit (default): one announcement per vehicle visit, as camera pods; frame: the original "
                          "worker's per-frame results and writes, no gate")
    run.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    run.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    run.set_defaults(handler=run_command)
