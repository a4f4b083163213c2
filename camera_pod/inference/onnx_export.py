"""Ultralytics ``.pt`` → ONNX, once per checkpoint content, in a cache shared by every camera pod.

``<cache_dir>/onnx/<sha256 of the .pt>.onnx``, or ``<sha256>[-<imgsz>][-square].onnx`` when an input size
or a fixed square input is asked for.
A file there is always complete: the export runs in a private scratch folder and is moved in with
``os.replace``; a per-checkpoint file lock makes concurrent loads (threads or processes) export once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from camera_pod.inference.ultralytics_backend import ModelLoadError, UltralyticsModel
from detector.kit.file_locks import file_lock

log = logging.getLogger(__name__)

# Ultralytics' exporter patches torch functions process-wide while it traces: one export at a time.
_EXPORTING = threading.Lock()


class OnnxExportError(Exception):
    """The checkpoint loaded but could not be exported; ``model`` still serves it with the Ultralytics backend."""

    def __init__(self, message: str, model: UltralyticsModel) -> None:
        super().__init__(message)
        self.model = model


def checkpoint_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_path(cache_dir: Path, sha256: str, *, imgsz: int | None = None, rect: bool = True) -> Path:
    size = "" if imgsz is None else f"-{imgsz}"
    shape = "" if rect else "-square"
    return cache_dir / "onnx" / f"{sha256}{size}{shape}.onnx"


def locked(cache_dir: Path, sha256: str) -> contextlib.AbstractContextManager[None]:
    """Hold the export lock of one checkpoint."""
    return file_lock(cache_dir / "locks" / f"onnx-{sha256}.lock")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Ultralytics logs every export step; torch's tracer and ONNX exporter warn about what a trace may miss."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _load(copy: Path, checkpoint: Path) -> UltralyticsModel:
    try:
        return UltralyticsModel(copy)
    except ModelLoadError:
        UltralyticsModel(checkpoint)  # the same bytes fail the same way: raise the error naming the real file
        raise


def export(checkpoint: Path, target: Path, *, imgsz: int | None = None, rect: bool = True) -> None:
    """Export ``checkpoint`` to ``target`` atomically; call it holding :func:`locked`.

    ``imgsz`` forces a detector's input size. With ``rect``, a detector's input height and width are left
    free, so that each frame is letterboxed into the smallest stride-multiple rectangle (as Ultralytics
    predicts with a ``.pt``) rather than a square: a 4:3 frame costs 3/4 of the square's compute, 16:9
    about 5/9. Classifiers are always static.

    Raises the Ultralytics backend's ``ModelLoadError`` when the checkpoint cannot be loaded (corrupt,
    unsafe, unsupported task) and :class:`OnnxExportError` when it loads but does not export.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        # The exporter writes beside its input: give it a private copy, never the shared extracted archive.
        copy = scratch / checkpoint.name
        shutil.copyfile(checkpoint, copy)
        model = _load(copy, checkpoint)
        try:
            with _EXPORTING, _quiet_exporter():
                detector = model.task == "detect"  # a classifier keeps its training size: its crops are resized to it
                exported = model.export_onnx(imgsz=imgsz if detector else None, dynamic=rect and detector)
        except Exception as exc:  # the exporter raises many types (tracing, onnx, assertions)
            raise OnnxExportError(f"{checkpoint.name}: ONNX export failed: {type(exc).__name__}: {exc}",
                                  model) from exc
        if not exported.is_file():
            raise OnnxExportError(f"{checkpoint.name}: ONNX export wrote no file", model)
        os.replace(exported, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("exported model to ONNX", extra={"model": checkpoint.name, "onnx": target.name})
