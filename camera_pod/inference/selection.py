"""Which backend serves an archive's models, and the ONNX loader: export once, cache, fall back.

``onnx`` (what ``auto``, the default, picks unless an NVIDIA GPU is present and this ONNX Runtime has no
GPU provider — then ``ultralytics``): each ``.pt`` is exported to ONNX once (cached by its sha256) and served by ONNX
Runtime; a checkpoint that loads but does not export, or whose export does not open, is served by the
Ultralytics backend instead, with a warning. ``ultralytics``: every model is served by Ultralytics, on
``InferenceOptions.device`` (``auto``: the GPU when torch sees one). An ONNX model then serves in float32 or int8
as ``InferenceOptions.precision`` asks (``inference.precision``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from camera_pod.inference import onnx_backend, onnx_export
from camera_pod.inference.models import Model
from camera_pod.inference.onnx_backend import OnnxLoadError, OnnxModel
from camera_pod.inference.precision import Int8Upgrade, Precision, PrecisionPolicy
from camera_pod.inference.ultralytics_backend import UltralyticsModel
from camera_pod.settings import PodSettings

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "ultralytics"]
# Seen without importing torch (which would cost a CPU-only pod ~500 MB): the NVIDIA driver's device files.
NVIDIA_DRIVER_FILES = (Path("/dev/nvidiactl"), Path("/proc/driver/nvidia/gpus"))
ModelLoaderFn = Callable[[Path], Model]


@dataclass(frozen=True)
class InferenceOptions:
    backend: Backend = "auto"
    providers: tuple[str, ...] = ()  # ONNX Runtime execution providers; empty: TensorRT, CUDA, CPU as available
    threads: int | None = None  # ONNX Runtime intra-op threads; None: the CPUs this process may use
    imgsz: int | None = None  # export detectors at this input size; None: their training size
    rect: bool = True  # detectors letterbox into the smallest stride-multiple rectangle; False: a fixed square
    device: str = "auto"  # where Ultralytics runs models: cpu, cuda, cuda:N; auto: cuda when torch sees one
    precision: Precision = "auto"  # ONNX models: fp32, int8, or auto (int8 where it is checked to pay)


@dataclass(frozen=True)
class UltralyticsLoader:
    """``load(path) -> Model`` for the Ultralytics backend, on one device."""

    device: str = "auto"

    def __call__(self, path: Path) -> Model:
        return UltralyticsModel(path, device=self.device)


@dataclass(frozen=True)
class OnnxLoader:
    """``load(path) -> Model`` for the ONNX backend; ``cache_dir`` holds ``onnx/`` and ``locks/``."""

    cache_dir: Path
    options: InferenceOptions = InferenceOptions()

    def __call__(self, path: Path) -> Model:
        if not path.is_file():
            return UltralyticsModel(path)  # the same "file not found" error as the Ultralytics backend
        model = self._onnx_model(path)
        if isinstance(model, OnnxModel):
            log.info("model served by ONNX Runtime", extra={"model": path.name, "providers": model.providers})
            lock = functools.partial(onnx_export.locked, self.cache_dir, f"{model.path.stem}-int8")
            Int8Upgrade(model, PrecisionPolicy(self.options.precision), lock).start(path)
        return model

    def _onnx_model(self, path: Path) -> Model:
        sha = onnx_export.checkpoint_sha256(path)
        target = onnx_export.cache_path(self.cache_dir, sha, imgsz=self.options.imgsz, rect=self.options.rect)
        if target.is_file() and (model := self._open(target, path, quiet=True)) is not None:
            return model
        with onnx_export.locked(self.cache_dir, sha):
            if target.is_file():  # exported meanwhile by another loader, or a bad file to replace
                if (model := self._open(target, path, quiet=False)) is not None:
                    return model
                target.unlink(missing_ok=True)
            try:
                onnx_export.export(path, target, imgsz=self.options.imgsz, rect=self.options.rect)
            except onnx_export.OnnxExportError as exc:
                log.warning("ONNX export failed, serving the model with Ultralytics",
                            extra={"model": path.name, "error": str(exc)})
                return exc.model
            if (model := self._open(target, path, quiet=False)) is not None:
                return model
        log.warning("exported ONNX model does not open, serving the model with Ultralytics",
                    extra={"model": path.name})
        return UltralyticsLoader(self.options.device)(path)

    def _open(self, target: Path, checkpoint: Path, *, quiet: bool) -> OnnxModel | None:
        providers = onnx_backend.choose_providers(_available_providers(), self.options.providers)
        try:
            return OnnxModel(target, providers=providers, threads=self.options.threads,
                             cache_dir=self.cache_dir / "onnx")
        except OnnxLoadError as exc:
            if not quiet:
                log.warning("ONNX model unusable", extra={"model": checkpoint.name, "onnx": target.name,
                                                          "error": str(exc)})
            return None


def _available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def options_from_settings(settings: PodSettings) -> InferenceOptions:
    return InferenceOptions(backend=settings.inference_backend, providers=settings.inference_providers,
                            threads=settings.inference_threads, imgsz=settings.onnx_imgsz, rect=settings.onnx_rect,
                            device=settings.inference_device, precision=settings.inference_precision)


def resolve_backend(requested: Backend, available_providers: list[str], gpu_present: bool) -> Backend:
    """``auto``: ONNX Runtime, unless a GPU would sit idle because this ONNX Runtime build has no GPU provider
    (the CPU wheel): then Ultralytics, which runs the models on CUDA through torch."""
    if requested != "auto":
        return requested
    if gpu_present and not any(name in available_providers for name in onnx_backend.GPU_PROVIDERS):
        return "ultralytics"
    return "onnx"


def nvidia_gpu_present() -> bool:
    return any(path.exists() for path in NVIDIA_DRIVER_FILES)


def model_loader(cache_dir: Path, options: InferenceOptions = InferenceOptions()) -> ModelLoaderFn:
    """The loader an ``ArchiveStore`` uses for every model file of an archive."""
    if options.backend == "auto":
        backend = resolve_backend("auto", _available_providers(), nvidia_gpu_present())
        log.info("inference backend chosen", extra={"backend": backend})
        options = dataclasses.replace(options, backend=backend)
    if options.backend == "ultralytics":
        return UltralyticsLoader(options.device)
    return OnnxLoader(cache_dir, options)
