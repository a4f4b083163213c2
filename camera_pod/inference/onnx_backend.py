"""ONNX Runtime backend of the inference interface, for models exported by Ultralytics.

The ``.onnx`` is self-describing: Ultralytics writes ``task``, ``names``, ``imgsz``, ``stride`` and ``end2end``
into its metadata. One ``InferenceSession`` per model; ``run`` is thread-safe, so callers are not serialised
(only the optional tracker is). The session can be replaced while the model serves (:meth:`OnnxModel.serve`:
its int8 form, see ``inference.precision``); a call in flight finishes on the session it started with.
"""

from __future__ import annotations

import ast
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from camera_pod.inference import postprocessing, preprocessing
from camera_pod.inference.detections import Classification, Detections
from camera_pod.inference.models import DescribedModel, Image, Task
from camera_pod.inference.ultralytics_backend import ModelLoadError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PREFERRED_PROVIDERS = (*GPU_PROVIDERS, CPU)
_TASKS: tuple[Task, ...] = ("detect", "classify")
Precision = Literal["fp32", "int8"]


class InputObserver(Protocol):
    """Sees every model input in service: the blob, whether the model found something in it (always true for
    a classifier) and how long the model call took (seconds)."""

    def __call__(self, blob: preprocessing.Blob, found: bool, seconds: float) -> None: ...


class OnnxLoadError(ModelLoadError):
    """The ``.onnx`` cannot serve: unreadable, not an Ultralytics export, or an unsupported task."""


def choose_providers(available: Sequence[str], forced: Sequence[str] = ()) -> list[str]:
    """Execution providers, best first: ``forced`` in its order (unavailable ones dropped), else TensorRT,
    CUDA, CPU as offered. The CPU provider is always there (last unless forced elsewhere): a session can run."""
    wanted = list(forced) if forced else list(PREFERRED_PROVIDERS)
    chosen = [name for name in dict.fromkeys(wanted) if name in available]
    missing = [name for name in forced if name not in available]
    if missing:
        log.warning("ONNX Runtime providers not available here, ignored",
                    extra={"providers": missing, "available": list(available)})
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def default_threads() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset, ``taskset``)."""
    return max(1, len(os.sched_getaffinity(0)))


def _provider_options(providers: Sequence[str], cache_dir: Path | None) -> list[str | tuple[str, dict[str, Any]]]:
    if cache_dir is None:
        return list(providers)
    trt_options = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir / "tensorrt"),
                   "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache_dir / "tensorrt")}
    return [(name, trt_options) if name == "TensorrtExecutionProvider" else name for name in providers]


def create_session(path: Path, *, providers: Sequence[str], threads: int, cache_dir: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT warns about every node it leaves on the CPU
    # Idle pool threads sleep instead of spinning: the stream decoder and the other models need the cores
    # (measured on 2 cores: no slower per call, about 13 % less CPU).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=_provider_options(providers, cache_dir))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise OnnxLoadError(f"{path.name}: cannot open ONNX model: {type(exc).__name__}: {exc}") from exc


def _metadata(session: Any, path: Path) -> dict[str, str]:
    metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
    if "task" not in metadata or "names" not in metadata:
        raise OnnxLoadError(f"{path.name}: not an Ultralytics export (no task/names metadata)")
    return metadata


def _names(raw: str, path: Path) -> tuple[str, ...]:
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        raise OnnxLoadError(f"{path.name}: unreadable class names metadata") from exc
    if isinstance(names, dict):
        return tuple(str(names[index]) for index in sorted(names))
    return tuple(str(name) for name in names)


def _input_geometry(shape: Sequence[Any], metadata: dict[str, str],
                    path: Path) -> tuple[tuple[int, int], int | None]:
    """The input (h, w), and the stride when height and width are free (then (h, w) is the size to fit in)."""
    height, width = shape[2:4]
    if isinstance(height, int) and isinstance(width, int):
        return (height, width), None
    try:
        imgsz = ast.literal_eval(metadata["imgsz"])
        size = (int(imgsz[0]), int(imgsz[1])) if isinstance(imgsz, list | tuple) else (int(imgsz), int(imgsz))
        return size, int(metadata["stride"])
    except (KeyError, ValueError, SyntaxError, TypeError, IndexError) as exc:
        raise OnnxLoadError(f"{path.name}: free input shape {list(shape)} without imgsz/stride metadata") from exc


class OnnxModel(DescribedModel):
    def __init__(self, path: Path, *, providers: Sequence[str] = (CPU,), threads: int | None = None,
                 cache_dir: Path | None = None) -> None:
        self.path = path  # the float32 export
        self._threads = threads or default_threads()
        self._cache_dir = cache_dir
        self._session = create_session(path, providers=providers, threads=self._threads, cache_dir=cache_dir)
        self.precision: Precision = "fp32"
        self._pending: Path | None = None  # a form of this model to serve from the next call (``serve``)
        self.observer: InputObserver | None = None
        self.upgrade: object = None  # what decides its precision (inference.precision.Int8Upgrade), when anything
        metadata = _metadata(self._session, path)
        task = metadata["task"]
        if task not in _TASKS:
            raise OnnxLoadError(f"{path.name}: task {task!r} is not supported (detect or classify)")
        self._task: Task = task
        self._names = _names(metadata["names"], path)
        self._end_to_end = metadata.get("end2end") == "True"
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self._input_size, self._stride = _input_geometry(model_input.shape, metadata, path)
        self._output_name = self._session.get_outputs()[0].name
        self._trackers: dict[str, Any] = {}
        self._track_lock = threading.Lock()

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w): the input, or with a free input shape the size frames are fitted into."""
        return self._input_size

    @property
    def stride(self) -> int | None:
        """Set when the input shape is free: frames are padded to a multiple of it, not to ``input_size``."""
        return self._stride

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def input_name(self) -> str:
        return str(self._input_name)

    def open_session(self, path: Path) -> Any:
        """A session of another form of this model (its int8 file), on this model's providers and threads."""
        session = create_session(path, providers=self.providers, threads=self._threads, cache_dir=self._cache_dir)
        metadata = _metadata(session, path)
        if metadata["task"] != self._task or _names(metadata["names"], path) != self._names:
            raise OnnxLoadError(f"{path.name}: not the same model as {self.path.name}")
        return session

    def serve(self, path: Path, precision: Precision) -> None:
        """Answer from ``path`` (a form of this model that ``open_session`` opened) from the next call on.

        The serving thread opens its session, not the caller: the caller may be a low-priority background thread,
        and a session's thread pool keeps the priority of the thread that created it, for good."""
        self._pending, self.precision = path, precision

    def _serving_session(self) -> Any:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                self._session = self.open_session(pending)
            except OnnxLoadError as exc:  # it opened a moment ago; if not now, the float32 one goes on
                log.warning("int8 model did not open, serving float32", extra={"onnx": pending.name,
                                                                                "error": str(exc)})
                self.precision = "fp32"
        return self._session

    def prepare(self, image: Image) -> preprocessing.Blob:
        """The model input for a frame (detector) or a crop (classifier)."""
        if self._task == "detect":
            return preprocessing.detection_input(image, self._input_size, stride=self._stride)[0]
        return preprocessing.classification_input(image, self._input_size)

    def infer(self, blob: np.ndarray, session: Any = None) -> Any:
        """The raw output for one input, from ``session`` (default: the one serving)."""
        return (session or self._session).run([self._output_name], {self._input_name: blob})[0]

    def decode(self, output: Any, *, min_confidence: float,
               classes: Sequence[int] | None = None) -> postprocessing.RawBoxes:
        """A detector's raw output → boxes in model-input pixels."""
        if self._end_to_end or output.shape[-1] == 6:
            return postprocessing.decode_end_to_end(output, min_confidence=min_confidence, classes=classes)
        return postprocessing.decode_detect(output, min_confidence=min_confidence, classes=classes)

    def _run(self, blob: np.ndarray) -> tuple[Any, float]:
        session = self._serving_session()
        started = time.perf_counter()
        output = self.infer(blob, session)
        return output, time.perf_counter() - started

    def detect(self, image: Image, *, classes: Sequence[int] | None, min_confidence: float,
               track: bool = False, tracker: str = "bytetrack") -> Detections:
        blob, letterbox = preprocessing.detection_input(image, self._input_size, stride=self._stride)
        output, took = self._run(blob)
        raw = self.decode(output, min_confidence=max(min_confidence, 0.001), classes=classes)
        if self.observer is not None:
            self.observer(blob, len(raw.confidence) > 0, took)
        detections = Detections(letterbox.to_source(raw.xyxy), raw.confidence, raw.class_id, self._names)
        return self._track(detections, image, tracker) if track else detections

    def _track(self, detections: Detections, image: Image, method: str) -> Detections:
        from camera_pod import tracking  # imported only when a caller asks for tracking

        with self._track_lock:
            if method not in self._trackers:
                self._trackers[method] = tracking.ObjectTracker(method)
            result: Detections = self._trackers[method].update(detections, image)
            return result

    def classify(self, image: Image) -> Classification:
        blob = preprocessing.classification_input(image, self._input_size)
        output, took = self._run(blob)
        if self.observer is not None:
            self.observer(blob, True, took)
        probs = postprocessing.probabilities(output)
        top = int(probs.argmax())
        return Classification(self._names[top], float(probs[top]))
