"""Pipeline cost and frame latency: the original worker's loop vs. our PipelineEngine, same models, same frames.

    .venv/bin/python -P bench/pipeline_bench.py [--quick] [--device cpu|cuda] [--frames N] [--json FILE] [--profile]

Baseline: the original worker re-implemented in ``bench/original_worker.py`` (Ultralytics
``track(frame, persist=True)`` on the full frame, then one ``predict`` per triggered branch on a 224x224 crop
in a thread pool, wait for all), on ``--device``.
Ours: each frame through ``camera_pod.processing.DisplayProcessor`` (change gate, then
``PipelineEngine.process(..., act=False, reuse=ClassificationReuse(...))``, then the visit tracker, and the
announced visit's write pass), exactly as ``camera_pod.runtime.CameraPod._serve`` runs it per display, with the
models loaded by the pod's own ``ArchiveStore`` and ``PodSettings`` (so ``DETECTOR_INFERENCE_BACKEND`` and
the other ``DETECTOR_*`` settings apply). Every variant runs in its own child process (``--variant``) so
its peak RSS is its own; the parent prints ratios against the baseline measured in the same run.

``--device cpu`` (the default): the baseline and every backend of ours on the CPU. ``--device cuda``: the
baseline on the GPU; ours with ONNX Runtime on its GPU providers (when this onnxruntime has any), with the
Ultralytics backend on the GPU (``DETECTOR_INFERENCE_DEVICE``), and with ONNX Runtime on the CPU for reference.

Scenarios: ``fixture`` (tests/fixtures/gas_station.mpta on tests/fixtures/media/cars.mp4), ``pump`` (the same
archive on tests/fixtures/media/pump.mp4: three cars that each stand about 20 s at the pump, as at a real one;
pipeline only) and ``yolov8n-640`` (an untrained YOLOv8n detector at 640, built offline from its YAML, packed with
the fixture classifiers; it detects nothing, so its detector stage is also measured alone) and ``plates``: what
licence plates cost, ours only (the configured backend, gating on): tests/fixtures/gas_station_plates.mpta (the
same models plus a plate detector on Frontal and a ``plate_ocr`` text node on its plate) against the plate-free
gas_station.mpta on the same frames, on pump.mp4 (every car carries a plate) and on clips drawn in memory of the
fixture's cars (``tests/fixtures/plates.plated_clip``) with blank plates (a plate with nothing to read) and with no
plate at all. Each text node's reads are timed where
they run (wall and the reading thread's CPU, split by whether a plate was read), the visits announced are counted
(and the frames they were announced on, which must not move), and the plates archive's frames/s, CPU ms/frame and
CPU per visit are set against the plate-free archive's in the same run.

Change gating is on in ours, as in a camera pod, with the fixture videos' frame-index strip (16 black/white cells
along the top edge that flip every frame) masked from the gate (``DETECTOR_GATING_IGNORE``, ``FIXTURE_OVERLAY``)
as a camera's clock overlay would be ("strip not masked" rows: the default settings); "no gating" rows run the
detector on every frame. "2 displays" rows run two displays of the camera with the same crop on every frame (one
detector pass between them, or one each); their frames/s are frames of the camera, both displays done.

ONNX Runtime on the CPU is measured in float32 (``DETECTOR_INFERENCE_PRECISION=fp32``) and in int8 (``int8``):
before the measured runs, every model is calibrated once on frames of the video (the detector on every 8th
frame, each classifier on the crops the float32 detector cuts from them), as a camera pod calibrates on its own
frames; the int8 files and their verdicts (what ``auto`` would serve here, and why) sit in the shared cache.
The detector alone is also set against the machine's floors: its work at the float32 matmul rate (numpy, and
ONNX Runtime's MatMul) and at ONNX Runtime's int8 matmul rate (MatMulInteger, u8 × s8 → s32).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import queue
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Appended, not prepended: the repository root holds a package named `operator` that must not shadow the stdlib.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench import common
from bench.common import FIXTURE_OVERLAY
from bench.original_worker import OriginalWorker, StepResult, extract

SCRIPT = Path(__file__).resolve()
VIDEO = common.REPO / "tests" / "fixtures" / "media" / "cars.mp4"
PUMP_VIDEO = common.REPO / "tests" / "fixtures" / "media" / "pump.mp4"
SCENARIO_VIDEOS = {"pump": PUMP_VIDEO}  # others: VIDEO
PUMP_QUICK_FRAMES = 300  # --quick on pump.mp4: from the first car's arrival (frame 30): standing 22 s, leaving
PUMP_QUICK_FIRST_FRAME = 30
FIXTURE_MPTA = common.REPO / "tests" / "fixtures" / "gas_station.mpta"
PLATES_MPTA = common.REPO / "tests" / "fixtures" / "gas_station_plates.mpta"  # FIXTURE_MPTA + a plate_ocr branch
# --video: not a file but a clip drawn in memory: the fixture's cars, each with a blank plate (a plate, no text to
# read), or with no plate at all.
BLANK_PLATES, NO_PLATES = "blank-plates", "no-plates"
_CLIP_CARS = (("Toyota", "Sedan", (40, 40, 200)), ("Ford", "Pickup", (235, 235, 235)), ("BMW", "SUV", (30, 30, 30)),
              ("Honda", "Sedan", (200, 200, 200)))
DRAWN_CLIPS = {BLANK_PLATES: tuple((*car, "") for car in _CLIP_CARS),
               NO_PLATES: tuple((*car, None) for car in _CLIP_CARS)}
# --quick on one: from 4 frames before the first car stops (plated_clip: a 6-frame gap, 12 frames driving in, 15
# standing, 10 leaving, a 6-frame gap per car) to the end of the second car's gap: two visits.
DRAWN_QUICK_FIRST_FRAME, DRAWN_QUICK_FRAMES = 14, 78
# The plates scenario's stages: (stage, the frames it runs on).
PLATES_STAGES = (("pump.mp4, plated cars", str(PUMP_VIDEO)), ("blank plates", BLANK_PLATES),
                 ("no plates", NO_PLATES))
PLATE_FREE, PLATED = "plate-free archive", "plates archive"
IDENTIFIER = "display-1;cam-1"
WARM_FRAMES = (30, 31, 32)  # a car stopped at the pump: every model runs during warm-up
QUICK_FIRST_FRAME = 10  # --quick: start where the first car drives in
REALISTIC_DETECTOR = "yolov8n_640.pt"
LATENCY_TARGET = 1.5  # frame age p99 ≤ 1.5 x one pipeline pass
REALISTIC_FRAMES = 100  # the untrained YOLOv8n finds nothing: every frame costs the same, fewer will do
CALIBRATION_EVERY = 8  # int8 calibration on every 8th frame of the video (34 frames)

CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

FrameStep = Callable[[np.ndarray, float], Awaitable[StepResult]]


def drawn_clip(name: str) -> list[np.ndarray]:
    """``DRAWN_CLIPS[name]``'s cars driving in, standing and leaving one after another (640x480, 10 frames/s), drawn
    in memory."""
    from tests.fixtures import plates

    frames, _visits = plates.plated_clip(DRAWN_CLIPS[name])
    return frames


def scenario_frames(count: int | None, first: int, video: str | None) -> list[np.ndarray]:
    """The frames a variant is measured on: ``count`` from ``first`` of a test video or of a ``DRAWN_CLIPS`` one."""
    if video in DRAWN_CLIPS:
        frames = drawn_clip(video)[first:]
        return frames[:count] if count is not None else frames
    return decode(count, first, video=Path(video) if video else VIDEO)


def decode(count: int | None, first: int = 0, only: Sequence[int] = (), video: Path = VIDEO) -> list[np.ndarray]:
    """Frames of a test video as BGR arrays, decoded once up front (decoding is not what is measured)."""
    import av

    frames = []
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if (only and index in only) or (not only and index >= first):
                frames.append(frame.to_ndarray(format="bgr24"))
            if (only and len(frames) == len(only)) or (count is not None and len(frames) >= count):
                break
    return frames


# ---- ours: the production engine, composed as the camera pod composes it -----------------------

@dataclass
class Ours:
    engine: Any
    archive: Any
    settings: Any
    displays: int = 1  # displays of the camera with the same crop, each frame through all of them
    shared_pass: bool = True  # those displays run one detector pass per frame between them (as a pod does)
    processors: list[Any] = field(default_factory=list)
    trackers: list[Any] = field(default_factory=list)
    frame: int = 0  # frames processed since fresh_state
    announced: list[dict[str, Any]] = field(default_factory=list)  # the first display's announcements, by frame

    def fresh_state(self) -> None:
        """Per display subscription, as CameraPod._serve makes them: its processor (reuse, gate) and visits."""
        from camera_pod import processing
        from detector.contract.pods import PodSpec

        defaults = PodSpec.model_fields
        self.processors = [processing.DisplayProcessor.from_settings(f"display-{index + 1};cam-1", self.settings)
                           for index in range(self.displays)]
        self.trackers = [processing.visit_tracker(self.archive, stable_frames=defaults["stable_frames"].default,
                                                  gap_s=defaults["visit_gap_s"].default)
                         for _ in range(self.displays)]
        self.frame, self.announced = 0, []

    async def process(self, image: np.ndarray, captured_at: float) -> StepResult:
        share = (captured_at, None) if self.shared_pass else None  # (frame, crop), as the pod keys it
        steps = [processor.process(self.engine, tracker, image, captured_at, share=share)
                 for processor, tracker in zip(self.processors, self.trackers, strict=True)]
        first = await steps[0] if len(steps) == 1 else (await asyncio.gather(*steps))[0]
        self.announced += [{"frame": self.frame, "update": announcement.decision.update,
                            "fields": dict(announcement.decision.fields)} for announcement in first.announcements]
        self.frame += 1
        classifiers = 0 if first.gated else sum(1 for key in first.result.timings_ms if key in self.archive.models
                                                and self.archive.models[key].task == "classify")
        regions = first.result.root.regions if first.result.root is not None else {}
        return StepResult(classifiers, "Car" in regions, first.result.classified_fields(), gated=first.gated)

    def detect(self, image: np.ndarray) -> Any:
        """The detector stage alone, called as the engine calls it."""
        root = self.archive.config.pipeline
        model = self.archive.models[root.modelId]
        class_ids = [model.names.index(name) for name in root.triggerClasses]
        return model.detect(image, classes=class_ids or None, min_confidence=root.minConfidence)

    def runs_on(self) -> str:
        """Where the archive's models really ran: ONNX Runtime's first provider or Ultralytics' device."""
        places = set()
        for model in self.archive.models.values():
            providers = getattr(model, "providers", None)
            int8 = " int8" if getattr(model, "precision", "fp32") == "int8" else ""
            places.add(f"onnx {providers[0]}{int8}" if providers else f"ultralytics {getattr(model, 'device', '?')}")
        return ", ".join(sorted(places))


async def open_ours(archive_path: Path, cache: Path, **overrides: Any) -> Ours:
    from camera_pod.pipeline.engine import PipelineEngine
    from camera_pod.runtime import CameraPod
    from camera_pod.settings import PodSettings
    from detector.contract.pods import DisplaySubscription, PodSpec, StreamSpec

    settings = PodSettings(cache_dir=cache, **{"gating_ignore": FIXTURE_OVERLAY, **overrides})
    spec = PodSpec(name="bench", stream=StreamSpec(url=str(VIDEO), kind="file"), broker_url="ws://127.0.0.1:9/",
                   subscriptions=[DisplaySubscription(identifier=IDENTIFIER, model_url=str(archive_path),
                                                      model_id=1, model_name="bench")])
    store = CameraPod(spec, settings).pipelines.store  # the pod's own store: its model loader, its backend
    archive = await store.load(str(archive_path))
    engine = PipelineEngine(archive, None, max_workers=settings.inference_workers)
    ours = Ours(engine, archive, settings)
    ours.fresh_state()
    return ours


class TimedReader:
    """A text node's reader that times every read where it runs (on an inference thread): wall time, that thread's
    CPU time (ONNX Runtime reads a crop on one thread: the calling one), and whether a text was read."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.reads: list[tuple[float, float, bool]] = []  # (wall s, CPU s, read a text)

    def read(self, crop: np.ndarray) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        value = self.reader.read(crop)
        self.reads.append((time.perf_counter() - wall, time.thread_time() - cpu, value.text is not None))
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


def time_reads(ours: Ours) -> list[TimedReader]:
    """Put a ``TimedReader`` in place of each of the archive's text readers (the engine looks them up per read)."""
    readers = ours.archive.readers
    timed = {model_id: TimedReader(reader) for model_id, reader in readers.items()}
    readers.update(timed)
    return list(timed.values())


def text_fields(archive: Any) -> set[str]:
    """The result fields of the archive's text nodes (``license_plate``)."""
    from camera_pod.mpta.schema import OcrNode

    found, pending = set(), [archive.config.pipeline]
    while pending:
        node = pending.pop()
        if isinstance(node, OcrNode):
            found.add(node.resultField)
        else:
            pending.extend(node.branches)
    return found


def reading_costs(readers: list[TimedReader], run: dict[str, Any], visits: int) -> dict[str, Any]:
    """The text reads of a measured run: per read (a plate read or none: wall ms mean and p90, CPU ms mean), their
    CPU in all, per visit announced and as a share of the run's CPU."""
    reads = [read for reader in readers for read in reader.reads]
    costs: dict[str, Any] = {"ocr_reads": len(reads)}
    for name, wanted in (("plate", True), ("none", False)):
        chosen = [(wall, cpu) for wall, cpu, found in reads if found is wanted]
        costs[f"ocr_reads_{name}"] = len(chosen)
        costs[f"ocr_ms_{name}"] = float(np.mean([wall for wall, _ in chosen]) * 1000) if chosen else math.nan
        costs[f"ocr_ms_{name}_p90"] = common.percentile([wall for wall, _ in chosen], 90) * 1000
        costs[f"ocr_cpu_ms_{name}"] = float(np.mean([cpu for _, cpu in chosen]) * 1000) if chosen else math.nan
    cpu_s = sum(cpu for _, cpu, _ in reads)
    run_cpu_s = run["cpu_ms_per_frame"] * run["frames"] / 1000
    costs.update(ocr_cpu_s=cpu_s, ocr_cpu_ms_per_read=cpu_s / len(reads) * 1000 if reads else math.nan,
                 ocr_cpu_s_per_visit=cpu_s / visits if visits else math.nan,
                 ocr_cpu_share=common.ratio(cpu_s, run_cpu_s))
    return costs


def torch_threads() -> int | None:
    """Intra-op threads of torch if this process loaded it (never imported just to ask)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


# ---- child: one variant, one process ------------------------------------------------------------

async def measure(step: FrameStep, frames: list[np.ndarray]) -> dict[str, Any]:
    latencies, classifier_calls, cars, gated = [], 0, 0, 0
    cpu0, wall0 = common.cpu_seconds(), time.perf_counter()
    for index, image in enumerate(frames):
        started = time.perf_counter()
        result = await step(image, wall0 + index / 10)
        latencies.append(time.perf_counter() - started)
        classifier_calls += result.classifier_calls
        cars += result.car
        gated += result.gated
    wall, cpu = time.perf_counter() - wall0, common.cpu_seconds() - cpu0
    n = len(frames)
    return {"frames": n, "wall_s": wall, "fps": n / wall, "fps_per_core": n / wall / common.cores(),
            "p50_ms": common.percentile(latencies, 50) * 1000, "p99_ms": common.percentile(latencies, 99) * 1000,
            "cpu_ms_per_frame": cpu / n * 1000, "cpu_cores_busy": cpu / wall,
            "classifier_calls_per_frame": classifier_calls / n, "car_frames": cars, "gated_frames": gated}


def baseline_step(worker: OriginalWorker, detect_only: bool) -> FrameStep:
    async def step(image: np.ndarray, _: float) -> StepResult:
        if detect_only:
            return StepResult(car=any(worker.regions(worker.detect(image, track=False))))
        return worker.process(image)
    return step


def ours_step(ours: Ours, detect_only: bool) -> FrameStep:
    async def step(image: np.ndarray, captured_at: float) -> StepResult:
        if detect_only:
            return StepResult(car=len(ours.detect(image)) > 0)
        return await ours.process(image, captured_at)
    return step


OURS_VARIANTS: dict[str, dict[str, Any]] = {"ours-noreuse": {"classify_interval_s": 0},
                                            "ours-nogate": {"gating": False}, "ours-unmasked": {"gating_ignore": ()}}


async def child(args: argparse.Namespace) -> dict[str, Any]:
    frames = scenario_frames(args.frames, args.first_frame, args.video)
    warm = decode(None, only=WARM_FRAMES)
    frames_mb = sum(frame.nbytes for frame in frames + warm) / 2**20
    archive = Path(args.archive)
    detect_only = args.variant.endswith("-detect")
    warm *= 1 if args.device == "cpu" else 5  # GPU kernels pick their algorithms over the first calls
    readers: list[TimedReader] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as scratch:
        if "baseline" in args.variant:
            worker = OriginalWorker(extract(archive, Path(scratch)), args.baseline_tracker, args.device)
            step, backend = baseline_step(worker, detect_only), f"ultralytics {args.device} (original loop)"
            for image in warm:
                await step(image, 0.0)
        else:
            cache = Path(args.cache) if args.cache else Path(scratch)
            ours = await open_ours(archive, cache, **OURS_VARIANTS.get(args.variant, {}))
            if args.variant.startswith("ours-2displays"):
                ours.displays, ours.shared_pass = 2, args.variant == "ours-2displays"
            step, backend = ours_step(ours, detect_only), ours.runs_on()
            readers = time_reads(ours)
            for image in warm:  # (a text node reads during warm-up too: its first read is not measured)
                await step(image, time.time())
            ours.fresh_state()
            for reader in readers:
                reader.reads.clear()
        if args.variant.startswith("latency"):
            result = await latency(args, step, frames)
        else:
            result = await measure(step, frames)
        if not ("baseline" in args.variant or detect_only or args.variant.startswith("latency")):
            texts = text_fields(ours.archive)
            visits = [entry for entry in ours.announced if not entry["update"]]
            result.update(visits=len(visits), visit_frames=[args.first_frame + entry["frame"] for entry in visits],
                          visits_with_text=sum(1 for entry in visits if texts & set(entry["fields"])),
                          updates=len(ours.announced) - len(visits))
            if readers:
                result.update(reading_costs(readers, result, len(visits)))
    return {**result, "variant": args.variant, "backend": backend, "torch_threads": torch_threads(),
            "peak_rss_mb": common.peak_rss_mb(), "frames_mb": frames_mb}


# ---- child: frame age through the latest-frame slot (ours) or a FIFO queue (baseline) ------------

def feed(frames: list[np.ndarray], rate: float, put: Callable[[np.ndarray, float], object],
         done: threading.Event) -> threading.Thread:
    def run() -> None:
        started = time.perf_counter()
        for index, image in enumerate(frames):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            put(image, time.time())
        done.set()
    thread = threading.Thread(target=run, name="feeder", daemon=True)
    thread.start()
    return thread


async def latency(args: argparse.Namespace, step: FrameStep, frames: list[np.ndarray]) -> dict[str, Any]:
    ages: list[float] = []
    passes: list[float] = []
    done = threading.Event()
    if args.variant.startswith("latency-latest"):
        from camera_pod.streams.config import StreamConfig
        from camera_pod.streams.hub import StreamSubscription
        from camera_pod.streams.supervisor import StreamSupervisor

        # The production hand-over: a stream's LatestFrame slot read through a hub subscription. The supervisor
        # is never started; the feeder below is its reader thread, publishing decoded frames at ``rate``.
        supervisor = StreamSupervisor(StreamConfig(url=str(VIDEO), kind="file"), name="bench")
        subscription = StreamSubscription(IDENTIFIER, None, supervisor)
        feed(frames, args.rate, lambda image, at: supervisor.output.put(image, at), done)
        while True:
            got = await subscription.next_frame_async(0.25)
            if got is None:
                if done.is_set():
                    break
                continue
            started = time.perf_counter()
            await step(np.asarray(got.image), got.frame.captured_at)
            passes.append(time.perf_counter() - started)
            ages.append(time.time() - got.frame.captured_at)
        skipped, backlog = supervisor.output.dropped, 0
    else:
        fifo: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()
        feed(frames, args.rate, lambda image, at: fifo.put((image, at)), done)
        deadline = time.perf_counter() + len(frames) / args.rate + 1.0  # the feed, then one second to catch up
        while time.perf_counter() < deadline and not (done.is_set() and fifo.empty()):
            try:
                image, captured_at = fifo.get(timeout=0.25)
            except queue.Empty:
                continue
            started = time.perf_counter()
            await step(image, captured_at)
            passes.append(time.perf_counter() - started)
            ages.append(time.time() - captured_at)
        skipped, backlog = 0, fifo.qsize()
    waits = [age - took for age, took in zip(ages, passes, strict=True)]
    pass_p99, age_p99 = common.percentile(passes, 99) * 1000, common.percentile(ages, 99) * 1000
    return {"rate": args.rate, "fed": len(frames), "processed": len(ages), "skipped": skipped, "backlog": backlog,
            "pass_p50_ms": common.percentile(passes, 50) * 1000, "pass_p99_ms": pass_p99,
            "age_p50_ms": common.percentile(ages, 50) * 1000, "age_p99_ms": age_p99,
            "wait_p50_ms": common.percentile(waits, 50) * 1000, "wait_p99_ms": common.percentile(waits, 99) * 1000,
            "age_p99_per_pass": common.ratio(age_p99, pass_p99)}


# ---- child: build the realistic archive, count model GFLOPs -------------------------------------

def letterboxed(height: int, width: int, imgsz: int, stride: int = 32) -> tuple[int, int]:
    """The input shape Ultralytics' rectangular letterbox gives a frame (what a detector pass costs)."""
    scale = min(imgsz / height, imgsz / width)
    return (math.ceil(round(height * scale) / stride) * stride, math.ceil(round(width * scale) / stride) * stride)


def build_realistic(folder: Path) -> Path:
    """YOLOv8n (untrained, from its YAML, classes Car/Frontal, imgsz 640) + the fixture classifiers → .mpta."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from camera_pod.mpta.packing import pack

    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(FIXTURE_MPTA) as source:
        source.extractall(folder)
    document = json.loads((folder / "pipeline.json").read_text())
    (folder / document["pipeline"]["modelFile"]).unlink()
    document["pipeline"]["modelId"], document["pipeline"]["modelFile"] = "yolov8n_640", REALISTIC_DETECTOR
    (folder / "pipeline.json").write_text(json.dumps(document, indent=2))
    model = YOLO("yolov8n.yaml")  # builds offline: no weights are downloaded
    model.model = DetectionModel({**model.model.yaml, "nc": 2}, nc=2, verbose=False)
    model.model.names = {0: "Car", 1: "Frontal"}
    model.model.args = {"imgsz": 640, "task": "detect"}
    model.save(str(folder / REALISTIC_DETECTOR))  # the checkpoint form YOLO(path) loads (weights-only safe)
    output = folder.parent / "yolov8n-640.mpta"
    pack(folder, output)
    return output


def model_gflops(archive: Path, folder: Path, frame_hw: tuple[int, int]) -> dict[str, Any]:
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    extract(archive, folder)
    config = json.loads((folder / "pipeline.json").read_text())["pipeline"]
    detector = YOLO(str(folder / config["modelFile"]))
    imgsz = int(detector.overrides.get("imgsz", 640))
    shape = letterboxed(*frame_hw, imgsz)
    classifiers = {}
    for branch in config["branches"]:
        classifier = YOLO(str(folder / branch["modelFile"]))
        classifiers[branch["modelId"]] = get_flops(classifier.model, int(classifier.overrides.get("imgsz", 224)))
    return {"detector": get_flops(detector.model, list(shape)), "detector_input": f"{shape[1]}x{shape[0]}",
            "classifier": float(np.mean(list(classifiers.values()))) if classifiers else 0.0}


def calibrate_int8(ours: Ours, frames: list[np.ndarray]) -> dict[str, Any]:
    """Quantise every model of ``ours`` (loaded with precision int8) on the camera's frames: the detector on
    ``frames``, each classifier on the crops of its class that the float32 detector finds in them. Returns each
    model's verdict (what ``auto`` would serve here and why); a model calibrated before (a classifier shared by
    both archives) keeps its verdict."""
    from camera_pod.inference import precision
    from camera_pod.pipeline import cropping

    root = ours.archive.config.pipeline
    detector = ours.archive.models[root.modelId]
    crops: dict[str, list[np.ndarray]] = {branch.modelId: [] for branch in root.branches}
    for image in frames:
        best = detector.detect(image, classes=None, min_confidence=root.minConfidence).best_per_class()
        for branch in root.branches:
            box = best.get(branch.cropClass or "")
            crop = cropping.crop(image, box.xyxy) if box is not None else None
            if crop is not None:
                crops[branch.modelId].append(cropping.resize(crop, branch.resizeTarget) if branch.resizeTarget
                                             else crop)
    precision.calibrate(detector, frames)
    for model_id, images in crops.items():
        precision.calibrate(ours.archive.models[model_id], images)
    verdicts = {}
    for model_id, model in ours.archive.models.items():
        upgrade = precision.upgrade_of(model)
        verdict = upgrade.verdict if upgrade is not None else None
        verdicts[model_id] = {"served": getattr(model, "precision", "?"),
                              "auto": verdict.precision if verdict else "?",
                              "reason": verdict.reason if verdict else "not calibrated (no crops of its class)"}
    return verdicts


def prepare(out: Path) -> dict[str, Any]:
    """Build the realistic archive, count GFLOPs, and load both archives once with the ONNX backend into the
    shared cache (an ONNX export happens once per model, as on a pod's first start), then once more in int8,
    calibrated on frames of the video: the measured children load from it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    realistic = build_realistic(out / "yolov8n-640")
    frame_hw = decode(1)[0].shape[:2]
    archives = {"fixture": FIXTURE_MPTA, "yolov8n-640": realistic}
    calibration = decode(None)[::CALIBRATION_EVERY]
    verdicts = {}
    for scenario, archive in archives.items():
        ours = asyncio.run(open_ours(archive, out / "cache", inference_backend="onnx",
                                     inference_providers=(CPU_PROVIDER,), inference_precision="fp32"))
        ours.engine.close()
        ours = asyncio.run(open_ours(archive, out / "cache", inference_backend="onnx",
                                     inference_providers=(CPU_PROVIDER,), inference_precision="int8"))
        verdicts[scenario] = calibrate_int8(ours, calibration)
        ours.engine.close()
    import torch

    return {"archives": {name: str(path) for name, path in archives.items()}, "int8_verdicts": verdicts,
            "gpu_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "gflops": {"fixture": model_gflops(FIXTURE_MPTA, out / "flops-fixture", frame_hw),
                       "yolov8n-640": model_gflops(realistic, out / "flops-realistic", frame_hw)}}


# ---- child: where one `process` call of ours spends its time ------------------------------------

async def profile(args: argparse.Namespace, top: int = 10) -> str:
    """cProfile sees only its own thread, so model calls run inline here (branches in turn, not in parallel)."""
    from camera_pod.pipeline.engine import PipelineEngine

    async def inline(self: Any, run: Any, node: Any, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = call()
        run.timings_ms[node.modelId] = (time.perf_counter() - started) * 1000
        return value

    frames = decode(None, only=WARM_FRAMES)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as scratch:
        ours = await open_ours(Path(args.archive), Path(scratch), classify_interval_s=0, gating=False)
        PipelineEngine._infer = inline  # type: ignore[method-assign]
        for image in frames[:-1]:
            await ours.process(image, time.time())
        profiler = cProfile.Profile()
        profiler.enable()
        await ours.process(frames[-1], time.time())
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


# ---- parent: run every variant, print the tables ------------------------------------------------

@dataclass(frozen=True)
class Flavour:
    """One way the pod can serve ours: a label and the ``DETECTOR_*`` settings that select it."""

    label: str
    env: tuple[tuple[str, str], ...]
    gpu: bool = False


def flavours(device: str) -> list[Flavour]:
    """What ours is measured as. ``cpu``: every backend PodSettings offers (the configured one first), on the
    CPU. Otherwise: ONNX Runtime on its GPU providers (when this onnxruntime build has any), the Ultralytics
    backend on ``device``, and ONNX Runtime on the CPU for reference."""
    import typing

    import onnxruntime

    from camera_pod.inference import selection
    from camera_pod.settings import PodSettings

    def onnx(providers: Sequence[str], precision: str = "fp32") -> tuple[tuple[str, str], ...]:
        return (("DETECTOR_INFERENCE_BACKEND", "onnx"), ("DETECTOR_INFERENCE_PROVIDERS", ",".join(providers)),
                ("DETECTOR_INFERENCE_PRECISION", precision))

    ultralytics = (("DETECTOR_INFERENCE_BACKEND", "ultralytics"), ("DETECTOR_INFERENCE_DEVICE", device))
    if device == "cpu":
        configured = selection.resolve_backend(PodSettings().inference_backend, [CPU_PROVIDER], gpu_present=False)
        offered = [name for name in typing.get_args(PodSettings.model_fields["inference_backend"].annotation)
                   if name != "auto"]
        backends = [configured, *(value for value in offered if value != configured)]
        chosen = []
        for name in backends:
            if name == "onnx":
                chosen += [Flavour("ours [onnx]", onnx([CPU_PROVIDER])),
                           Flavour("ours [onnx int8]", onnx([CPU_PROVIDER], "int8"))]
            else:
                chosen.append(Flavour(f"ours [{name}]", ultralytics))
        return chosen
    gpu = [name for name in GPU_PROVIDERS if name in onnxruntime.get_available_providers()]
    return [*([Flavour(f"ours [onnx {gpu[0].removesuffix('ExecutionProvider')}]", onnx([*gpu, CPU_PROVIDER]),
                       gpu=True)] if gpu else []),
            Flavour(f"ours [ultralytics {device}]", ultralytics, gpu=True),
            Flavour("ours [onnx CPU]", onnx([CPU_PROVIDER])),
            Flavour("ours [onnx CPU int8]", onnx([CPU_PROVIDER], "int8"))]


@dataclass(frozen=True)
class Job:
    scenario: str
    stage: str  # "pipeline" or "detector only"
    label: str  # "baseline", "ours [onnx]", ...
    variant: str  # the child's --variant
    flavour: Flavour | None = None  # None: the baseline
    archive: str = ""  # "": the scenario's archive
    video: str = ""  # "": the scenario's video (a file, or a DRAWN_CLIPS name)

    @property
    def key(self) -> str:
        return f"{self.scenario} {self.stage} {self.label}"


@dataclass
class Plan:
    frames: int | None
    first_frame: int
    baseline_tracker: str
    device: str
    flavours: list[Flavour]
    cache: str = ""
    archives: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    pump_frames: int | None = None  # None: all 840
    drawn_frames: int | None = None  # None: the whole of a DRAWN_CLIPS clip (178 frames)

    def first_frame_of(self, video: str) -> int:
        """Where a variant starts on ``video``: 0, or with --quick where the first car arrives."""
        if not self.first_frame:
            return 0
        if video in DRAWN_CLIPS:
            return DRAWN_QUICK_FIRST_FRAME
        return PUMP_QUICK_FIRST_FRAME if video == str(PUMP_VIDEO) else self.first_frame

    def run(self, key: str, archive: str, variant: str, *, flavour: Flavour | None = None,
            rate: float | None = None, frames: int | None = None, scenario: str = "fixture",
            video: str = "") -> dict[str, Any]:
        video = video or str(SCENARIO_VIDEOS.get(scenario, VIDEO))
        args = ["--variant", variant, "--archive", archive, "--first-frame", str(self.first_frame_of(video)),
                "--baseline-tracker", self.baseline_tracker, "--device", self.device, "--video", video]
        frames = frames or self.frames
        args += ["--frames", str(frames)] if frames else []
        args += ["--rate", str(rate)] if rate else []
        args += ["--cache", self.cache] if self.cache else []
        print(f"  {key} ...", file=sys.stderr, flush=True)
        return common.run_child(SCRIPT, args, env=dict(flavour.env) if flavour else None)

    def jobs(self) -> list[Job]:
        jobs = []
        for scenario in self.archives:
            if scenario == "plates":  # ours only, as a pod serves it: the plate-free archive, then the plates one
                flavour = self.flavours[0]
                jobs += [Job(scenario, stage, f"{flavour.label}, {name}", "ours", flavour, archive, video)
                         for stage, video in PLATES_STAGES
                         for name, archive in ((PLATE_FREE, str(FIXTURE_MPTA)), (PLATED, str(PLATES_MPTA)))]
                continue
            stages = (("pipeline", ""),) if scenario == "pump" else (("pipeline", ""), ("detector only", "-detect"))
            for stage, suffix in stages:
                jobs.append(Job(scenario, stage, "baseline", "baseline" + suffix))
                for flavour in self.flavours:
                    jobs.append(Job(scenario, stage, flavour.label, "ours" + suffix, flavour))
                    if (stage, flavour) == ("pipeline", self.flavours[0]) and scenario in ("fixture", "pump"):
                        jobs.append(Job(scenario, stage, f"{flavour.label}, no gating", "ours-nogate", flavour))
                        jobs.append(Job(scenario, stage, f"{flavour.label}, strip not masked", "ours-unmasked",
                                        flavour))
                    if (scenario, stage, flavour) == ("fixture", "pipeline", self.flavours[0]):
                        jobs.append(Job(scenario, stage, f"{flavour.label}, classify every frame", "ours-noreuse",
                                        flavour))
                        jobs.append(Job(scenario, stage, f"{flavour.label}, 2 displays, one detector pass",
                                        "ours-2displays", flavour))
                        jobs.append(Job(scenario, stage, f"{flavour.label}, 2 displays, a pass each",
                                        "ours-2displays-own", flavour))
        return jobs

    def on_gpu(self, job: Job) -> bool:
        return job.flavour.gpu if job.flavour else self.device != "cpu"

    def best_of(self, rounds: int, between: Callable[[], None]) -> None:
        """Each job once per round, every other round in reverse order; the round with the most frames/s wins
        (load from other work on a shared machine comes and goes: it only ever slows a run down)."""
        jobs = self.jobs()
        for index in range(rounds):
            for job in jobs if index % 2 == 0 else reversed(jobs):
                video = job.video or str(SCENARIO_VIDEOS.get(job.scenario, VIDEO))
                frames = min(self.frames or REALISTIC_FRAMES, REALISTIC_FRAMES) if job.scenario == "yolov8n-640" \
                    else self.pump_frames if video == str(PUMP_VIDEO) else self.drawn_frames \
                    if video in DRAWN_CLIPS else None
                result = self.run(f"round {index + 1}: {job.key}", job.archive or self.archives[job.scenario],
                                  job.variant, flavour=job.flavour, frames=frames, scenario=job.scenario, video=video)
                best = self.results.get(job.key)
                fps = [*(best["rounds_fps"] if best else []), result["fps"]]
                self.results[job.key] = {**(result if best is None or result["fps"] > best["fps"] else best),
                                         "rounds_fps": fps}
            between()


def onnx_matmul_rate(op: str, threads: int, seconds: float = 1.5, size: int = 1024) -> float:
    """Best rate of one ``size``² matmul through ONNX Runtime's CPU provider on ``threads`` threads, in G(FL)OPS:
    ``MatMul`` (float32) or ``MatMulInteger`` (u8 × s8 → s32: MLAS's VNNI kernels where the CPU has them)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    integer = op == "MatMulInteger"
    a = rng.integers(0, 256, (size, size), dtype=np.uint8) if integer else rng.random((size, size), np.float32)
    b = rng.integers(-128, 128, (size, size), dtype=np.int8) if integer else rng.random((size, size), np.float32)
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])], "floor",
        [helper.make_tensor_value_info("A", TensorProto.UINT8 if integer else TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32 if integer else TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(b, "B")])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), options, providers=[CPU_PROVIDER])
    session.run(None, {"A": a})  # warm-up: thread pool, packed weights
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        session.run(None, {"A": a})
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def floors() -> dict[str, float]:
    """ONNX Runtime's float32 and int8 matmul rates here, on all cores and on one (a child: its own threads)."""
    cores = common.cores()
    return {"ort_fp32": onnx_matmul_rate("MatMul", cores), "ort_fp32_one_core": onnx_matmul_rate("MatMul", 1),
            "int8": onnx_matmul_rate("MatMulInteger", cores), "int8_one_core": onnx_matmul_rate("MatMulInteger", 1)}


@dataclass
class Machine:
    """Float32 matmul rates: all cores (numpy's BLAS threads), one core, and the GPU (torch, full float32, when
    the bench runs on one); ONNX Runtime's float32 and int8 matmul rates on the CPU; the best seen during the
    run."""

    device: str = "cpu"
    all_cores: float = 0.0
    one_core: float = 0.0
    gpu: float = 0.0
    onnx: dict[str, float] = field(default_factory=dict)

    def measure(self) -> None:
        self.all_cores = max(self.all_cores, common.gflops_in_child(threads=None))
        self.one_core = max(self.one_core, common.gflops_in_child(threads=1))
        if self.device != "cpu":
            self.gpu = max(self.gpu, common.gflops_in_child(threads=None, device=self.device))
        measured = common.run_child(SCRIPT, ["--variant", "floors"])
        self.onnx = {name: max(rate, self.onnx.get(name, 0.0)) for name, rate in measured.items()}

    @property
    def peak(self) -> float:
        return max(self.all_cores, self.one_core * common.cores())

    @property
    def ort_fp32_peak(self) -> float:
        return max(self.onnx["ort_fp32"], self.onnx["ort_fp32_one_core"] * common.cores())

    @property
    def int8_peak(self) -> float:
        return max(self.onnx["int8"], self.onnx["int8_one_core"] * common.cores())


def throughput_rows(plan: Plan, gflops: dict[str, Any], machine: Machine) -> tuple[list[list[object]],
                                                                                   list[list[object]]]:
    rows, limits = [], []
    for job in plan.jobs():
        if job.scenario == "plates":  # its own table: against the plate-free archive, not the original loop
            continue
        r, base = plan.results[job.key], plan.results[Job(job.scenario, job.stage, "baseline", "").key]
        rss = r["peak_rss_mb"] - r["frames_mb"]
        rows.append([job.scenario, job.stage, job.label, r["backend"], r["frames"], r["fps"], r["fps_per_core"],
                     r["p50_ms"], r["p99_ms"], r["cpu_ms_per_frame"], rss, r["classifier_calls_per_frame"],
                     r["car_frames"], r.get("gated_frames", 0)])
        if job.label != "baseline":
            rows.append([job.scenario, job.stage, f"{job.label} / baseline", "", "",
                         common.ratio(r["fps"], base["fps"]), common.ratio(r["fps_per_core"], base["fps_per_core"]),
                         common.ratio(r["p50_ms"], base["p50_ms"]), common.ratio(r["p99_ms"], base["p99_ms"]),
                         common.ratio(r["cpu_ms_per_frame"], base["cpu_ms_per_frame"]),
                         common.ratio(rss, base["peak_rss_mb"] - base["frames_mb"]), "", "", ""])
        per_frame = gflops[job.scenario]
        work = per_frame["detector"] + (per_frame["classifier"] * r["classifier_calls_per_frame"]
                                        if job.stage == "pipeline" else 0.0)
        achieved = work * r["fps"]
        gpu = plan.on_gpu(job)
        peak = machine.gpu if gpu else machine.peak
        limits.append([job.scenario, job.stage, job.label, "GPU" if gpu else "CPU", work, work / peak * 1000,
                       1000 / r["fps"], achieved, achieved / peak * 100,
                       math.nan if gpu else achieved / machine.one_core * 100])
    return rows, limits


def floor_rows(plan: Plan, gflops: dict[str, Any], machine: Machine) -> list[list[object]]:
    """The detector alone (CPU variants): its time per frame against its work at each floor's rate."""
    rows = []
    for job in plan.jobs():
        if job.stage != "detector only" or plan.on_gpu(job):
            continue
        r, work = plan.results[job.key], gflops[job.scenario]["detector"]
        actual = 1000 / r["fps"]
        row: list[object] = [job.scenario, job.label, r["backend"], work, actual]
        for peak in (machine.peak, machine.ort_fp32_peak, machine.int8_peak):
            floor = work / peak * 1000
            row += [floor, actual / floor * 100]
        rows.append(row)
    return rows


def plates_rows(plan: Plan) -> list[list[object]]:
    """Per stage: the plate-free archive, the plates archive, and the plates archive / the plate-free one."""

    def ms(r: dict[str, Any], name: str) -> str:
        count = r.get(f"ocr_reads_{name}", 0)
        return f"{r[f'ocr_ms_{name}']:.1f} (p90 {r[f'ocr_ms_{name}_p90']:.1f}), {count}" if count else "—"

    def cpu_per_visit(r: dict[str, Any]) -> float:
        return r["cpu_ms_per_frame"] * r["frames"] / 1000 / r["visits"] if r["visits"] else math.nan

    def rss(r: dict[str, Any]) -> float:
        return float(r["peak_rss_mb"] - r["frames_mb"])

    rows: list[list[object]] = []
    for stage, _video in PLATES_STAGES:
        jobs = {job.archive: job for job in plan.jobs() if job.scenario == "plates" and job.stage == stage}
        free, plated = plan.results[jobs[str(FIXTURE_MPTA)].key], plan.results[jobs[str(PLATES_MPTA)].key]
        for job, r in ((jobs[str(FIXTURE_MPTA)], free), (jobs[str(PLATES_MPTA)], plated)):
            row: list[object] = [stage, job.label, r["frames"], r["fps"], r["cpu_ms_per_frame"], rss(r),
                                 r["gated_frames"], f"{r['visits']} ({r['visits_with_text']})",
                                 ", ".join(map(str, r["visit_frames"])) or "—"]
            if "ocr_reads" in r:
                row += [r["ocr_reads"], ms(r, "plate"), ms(r, "none"), r["ocr_cpu_ms_per_read"],
                        r["ocr_cpu_share"] * 100, r["ocr_cpu_s_per_visit"]]
            else:
                row += ["—", "—", "—", math.nan, math.nan, math.nan]
            rows.append([*row, cpu_per_visit(r)])
        same = "same frames" if free["visit_frames"] == plated["visit_frames"] else "moved"
        rows.append([stage, f"{PLATED} / {PLATE_FREE}", "", common.ratio(plated["fps"], free["fps"]),
                     common.ratio(plated["cpu_ms_per_frame"], free["cpu_ms_per_frame"]),
                     common.ratio(rss(plated), rss(free)), "", "", same, "", "", "", math.nan, math.nan, math.nan,
                     cpu_per_visit(plated) - cpu_per_visit(free)])
    return rows


def latency_rows(plan: Plan, rates: Sequence[float]) -> list[list[object]]:
    rows = []
    archive = plan.archives["fixture"]
    for rate in rates:
        for variant, label in (("latency-fifo-baseline", "FIFO queue → original loop (baseline)"),
                               ("latency-latest-ours", f"latest-frame slot → {plan.flavours[0].label}")):
            key = f"latency {rate:g} fps {variant}"
            r = plan.results[key] = plan.run(key, archive, variant, rate=rate,
                                             flavour=plan.flavours[0] if "ours" in variant else None)
            verdict = "yes" if r["age_p99_per_pass"] <= LATENCY_TARGET else "no"
            rows.append([f"{rate:g}", label, r["fed"], r["processed"], r["skipped"], r["backlog"],
                         r["pass_p50_ms"], r["pass_p99_ms"], r["age_p50_ms"], r["age_p99_ms"], r["wait_p50_ms"],
                         r["wait_p99_ms"], r["age_p99_per_pass"], verdict])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 frames from the first car's arrival (pump: "
                        f"{PUMP_QUICK_FRAMES}), one round")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where the baseline runs, "
                        "and on a GPU: ours on ONNX Runtime's GPU providers, Ultralytics on the GPU, ONNX on the CPU")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per variant (default: all 270, {REALISTIC_FRAMES} for yolov8n-640, 840 for pump; "
                        "quick: 30)")
    parser.add_argument("--rounds", type=int, default=None, help="runs per variant, best kept (default 2; quick 1)")
    parser.add_argument("--json", metavar="FILE", help="save every result (children: print to stdout as well)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one `process` call of ours")
    parser.add_argument("--baseline-tracker", default="botsort", choices=("botsort", "bytetrack"),
                        help="the original's tracker: Ultralytics' default for track() is botsort")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    parser.add_argument("--first-frame", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default="fixture,pump,yolov8n-640,plates",
                        help="comma-separated: fixture (always), pump, yolov8n-640, plates")
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    os.environ.setdefault("YOLO_OFFLINE", "1")
    frames = args.frames or (30 if args.quick else None)
    machine = Machine(args.device)
    machine.measure()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as scratch:
        plan = Plan(frames, QUICK_FIRST_FRAME if args.quick else 0, args.baseline_tracker, args.device,
                    flavours(args.device), cache=str(Path(scratch) / "cache"),
                    pump_frames=args.frames or (PUMP_QUICK_FRAMES if args.quick else None),
                    drawn_frames=args.frames or (DRAWN_QUICK_FRAMES if args.quick else None))
        print("  preparing the yolov8n-640 archive and the ONNX exports, counting GFLOPs ...", file=sys.stderr,
              flush=True)
        prepared = common.run_child(SCRIPT, ["--variant", "prepare", "--out", scratch])
        wanted = {"fixture", *args.scenarios.split(",")}
        plan.archives = {name: path for name, path in {**prepared["archives"], "pump": prepared["archives"]["fixture"],
                                                       "plates": str(PLATES_MPTA)}.items() if name in wanted}
        prepared["gflops"]["pump"] = prepared["gflops"]["fixture"]
        plan.best_of(args.rounds or (1 if args.quick else 2), machine.measure)
        rows, limits = throughput_rows(plan, prepared["gflops"], machine)
        plates = plates_rows(plan) if "plates" in plan.archives else []
        floor = floor_rows(plan, prepared["gflops"], machine)
        fastest = max(r["fps"] for key, r in plan.results.items() if key.startswith("fixture pipeline"))
        overload = float(math.ceil(1.5 * fastest))
        lat = latency_rows(plan, [10.0, 30.0] + ([overload] if overload > 30 else []))
        profiled = common.run_child(SCRIPT, ["--variant", "profile", "--archive", str(FIXTURE_MPTA),
                                             "--cache", plan.cache], env=dict(plan.flavours[0].env)) \
            if args.profile else None
    machine.measure()
    report(plan, prepared, rows, limits, lat, machine, profiled, floor, plates)
    common.write_json(args.json, {"device": args.device, "gpu_name": prepared.get("gpu_name"),
                                  "machine_gflops": machine.peak, "machine_gflops_all_cores": machine.all_cores,
                                  "machine_gflops_one_core": machine.one_core, "gpu_gflops": machine.gpu,
                                  "onnx_runtime_floors": machine.onnx, "int8_verdicts": prepared["int8_verdicts"],
                                  "cores": common.cores(), "gflops": prepared["gflops"], "archives": plan.archives,
                                  "runs": plan.results, "profile": profiled})


def report(plan: Plan, prepared: dict[str, Any], rows: list[list[object]], limits: list[list[object]],
           lat: list[list[object]], machine: Machine, profiled: dict[str, Any] | None,
           floor: list[list[object]], plates: list[list[object]]) -> None:
    some = next(iter(plan.results.values()))
    cores, rounds = common.cores(), len(some["rounds_fps"])
    where = f"{cores} cores" + (f", {prepared['gpu_name']} ({plan.device})" if plan.device != "cpu" else "")
    print(common.table(
        "Throughput (each variant in its own process; ratios = ours / baseline, same run)",
        ["scenario", "stage", "variant", "runs on", "frames", "frames/s", "frames/s per core", "p50 ms", "p99 ms",
         "CPU ms/frame", "peak RSS MB", "classifier calls/frame", "frames with a Car", "frames gated"], rows,
        [f"{where}; best of {rounds} round(s) per variant (alternating order); torch threads per call "
         f"{some['torch_threads']}; frames decoded up front with PyAV (not measured; the {some['frames_mb']:.0f} MB "
         "they take are subtracted from peak RSS). Baseline detector stage: "
         f"`track(persist=True, tracker={plan.baseline_tracker})` on {plan.device}; 'detector only' = one "
         "`predict` vs our `Model.detect`. 'runs on': where the models really ran (ONNX Runtime's first provider, "
         "or Ultralytics' device). The yolov8n-640 detector is untrained: it finds no car, so its pipeline rows run "
         "no classifier and its 'detector only' rows are the comparison that matters there. Ours counts a Car "
         "only on frames the engine completes (a frame without Frontal is 'incomplete'). "
         "Ratios: > 1 is better for frames/s, < 1 is better for the others."]))
    gpu = f"; GPU float32 (no TF32) {machine.gpu:.0f} GFLOPS" if plan.device != "cpu" else ""
    print(common.table(
        f"Physical limit (numpy float32 matmul: {machine.all_cores:.1f} GFLOPS on {cores} cores, "
        f"{machine.one_core:.1f} on one; CPU peak taken as {machine.peak:.1f}{gpu})",
        ["scenario", "stage", "variant", "peak of", "GFLOP/frame", "floor ms/frame", "actual ms/frame",
         "achieved GFLOPS", "% of peak", "% of one core"], limits,
        [f"GFLOP/frame = detector at its letterboxed input ({prepared['gflops']['fixture']['detector_input']} "
         f"fixture, {prepared['gflops']['yolov8n-640']['detector_input']} yolov8n) + classifier GFLOPs x the "
         "classifier calls that variant made; floor = that work at the peak rate of where it ran (CPU: the larger "
         "of the all-core matmul and cores x the one-core matmul; GPU: a 4096² torch float32 matmul), best seen "
         "during the run."]))
    print(common.table(
        f"Detector alone against the machine's floors (float32: numpy {machine.peak:.0f} GFLOPS, ONNX Runtime MatMul "
        f"{machine.ort_fp32_peak:.0f} GFLOPS; int8: ONNX Runtime MatMulInteger {machine.int8_peak:.0f} GOPS)",
        ["scenario", "variant", "runs on", "G(FL)OP/frame", "actual ms/frame", "fp32 floor ms (numpy)",
         "time as % of it", "fp32 floor ms (ORT)", "time as % of it", "int8 floor ms (ORT)", "time as % of it"], floor,
        ["floor = the detector's work at its letterboxed input (multiply-adds x 2, whatever the precision) at the "
         "rate of a 1024² matmul on every core of this machine (the larger of all-core and cores x one-core), best "
         "seen during the run; 100 % would be a detector as efficient as one large matmul. int8 rows keep the "
         "head's decoding in float32 (see camera_pod/inference/quantisation.py)."]))
    verdicts = "; ".join(f"{scenario} {model}: {v['auto']} ({v['reason']})"
                         for scenario, models in prepared["int8_verdicts"].items() for model, v in models.items())
    print(f"What DETECTOR_INFERENCE_PRECISION=auto serves here, per model (calibrated on every "
          f"{CALIBRATION_EVERY}th frame): {verdicts}\n")
    print(common.table(
        "Frame age at the end of processing (frames fed at a fixed rate while the pipeline runs)",
        ["fed fps", "hand-over → pipeline", "fed", "processed", "skipped (slot)", "left queued", "pass p50 ms",
         "pass p99 ms", "age p50 ms", "age p99 ms", "wait p50 ms", "wait p99 ms", "age p99 ÷ pass p99",
         f"≤ {LATENCY_TARGET}"], lat,
        ["fixture archive on cars.mp4, frames published at the fed rate by a feeder thread (as a reader thread "
         "does); age = now − capture time when the frame's pipeline pass (and visit tracking) ends; wait = age − "
         "that pass (the hand-over and any queueing). 'One pipeline pass' in the target is the p99 pass, one "
         "that runs every model (passes that reuse classifications are shorter and set p50). The last rate, "
         "when shown, is 1.5 x the fastest fixture pipeline's frames/s: more than any variant keeps up with. "
         "The FIFO consumer stops one second after the feed ends ('left queued' frames were never processed)."]))
    if plates:
        print(common.table(
            "Licence plates (OCR): the plates archive against the plate-free one, same frames, same run",
            ["stage", "variant", "frames", "frames/s", "CPU ms/frame", "peak RSS MB", "frames gated",
             "visits (with a plate)", "announced at frame", "OCR reads", "OCR ms per read: a plate (p90), reads",
             "OCR ms per read: none (p90), reads", "OCR CPU ms/read", "OCR % of CPU", "OCR CPU s/visit",
             "CPU s/visit"], plates,
            [f"Ours with {plan.flavours[0].label.removeprefix('ours ')}, gating on, one display: "
             f"{FIXTURE_MPTA.name} ({PLATE_FREE}) and {PLATES_MPTA.name} ({PLATED}: the same models plus a plate "
             "detector on Frontal and a plate_ocr text node on its plate) on the same frames, each in its own process. "
             "'pump.mp4, plated cars': every car carries a plate; 'blank plates': the fixture's cars drawn with blank "
             "plates (tests/fixtures/plates.plated_clip), a plate with nothing to read; 'no plates': the same cars "
             "without a plate. A text node reads once per frame the plate detector finds a plate (OCR reads = frames "
             "that ran OCR), timed on the inference thread that "
             "runs it: wall ms (mean, p90), split by whether it read a plate, and that thread's CPU. OCR CPU s/visit "
             "= the reads' CPU ÷ visits announced; CPU s/visit = the whole process's CPU ÷ visits announced (the "
             "ratio row: plates − plate-free, what plates add per visit). 'announced at frame': the video frames "
             "the visits were announced on; 'same frames' when plates moved no announcement. A visit cut by the "
             "end of the frames (--quick, --frames) still counts its reads."]))
    if profiled:
        print(f"### cProfile of one `process` call (fixture, classify every frame, model calls inline)\n\n```\n"
              f"{profiled['text'].strip()}\n```")


def run_variant(args: argparse.Namespace) -> None:
    if args.variant == "prepare":
        result = prepare(Path(args.out))
    elif args.variant == "floors":
        result = floors()
    elif args.variant == "profile":
        result = {"text": asyncio.run(profile(args))}
    else:
        result = asyncio.run(child(args))
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(result, default=str))
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
