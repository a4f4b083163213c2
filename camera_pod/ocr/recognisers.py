"""The text recogniser: RapidOCR (PP-OCRv6 small detection + recognition, ONNX Runtime on the CPU), offline.

RapidOCR downloads a model whenever its config names none (``model_path`` empty) and a recognition dictionary
when the model carries none. Here every model is named: the detection and recognition models inside the
``rapidocr`` wheel (``BUNDLED_DETECTION``, ``BUNDLED_RECOGNITION``), or an archive's own recognition model (other
scripts: Thai plates need their own), which must carry its dictionary as ``character`` metadata, as RapidOCR's
ONNX models do; one that does not is refused at load instead of fetched. The text-angle classifier is not used
(plates are upright). ``rapidocr`` is imported on the first load, so a pipeline without text recognition never
loads it.

Cost: the text detector runs on every crop (about 3 ms on a car's front); the recogniser only on lines that can
hold text of the wanted length (``min_aspect``: at least that many times as wide as tall), so a car without a
plate, whose whole front the detector tends to box, costs the detector alone. Lines are recognised at their own
width (RapidOCR pads every line to 320 px by default).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camera_pod.inference.models import Image
from detector.kit.errors import PermanentError

log = logging.getLogger(__name__)

_PACKAGE = util.find_spec("rapidocr")
MODELS_DIR = Path(_PACKAGE.origin).parent / "models" if _PACKAGE and _PACKAGE.origin else Path("rapidocr-missing")
BUNDLED_DETECTION = MODELS_DIR / "PP-OCRv6_det_small.onnx"
BUNDLED_RECOGNITION = MODELS_DIR / "PP-OCRv6_rec_small.onnx"
MIN_SIDE = 96  # crops are enlarged to at least this (up to 4x): small plates are found far more often
MAX_UPSCALE = 4.0
DETECTION_SIDE = 320  # the text detector sees at most this many pixels on the longer side
REC_MIN_WIDTH = 96  # recognition input: 48 px high, as wide as the line (at least this), not padded to 320
DEFAULT_THREADS = 1  # ONNX Runtime threads per call: crops are small, and a second thread spins against the
# detector and the classifiers that run beside it (2-4x slower on a busy 2-core machine)


class RecogniserError(PermanentError):
    """A recognition model that cannot be used (not ONNX, no dictionary, a failed first run)."""


@dataclass(frozen=True)
class TextLine:
    """One line of text found in a crop, in the crop's pixels."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 around the line

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _aspect(quad: np.ndarray) -> float:
    """Width over height of a detected line (its four corners, clockwise from the top left)."""
    width = max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]))
    height = max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))
    return float(width / height) if height > 0 else 0.0


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _has_dictionary(model: Path) -> bool:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RecogniserError(f"not an ONNX recognition model: {type(exc).__name__}: {exc}") from exc
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or shape[1] != 3:
        raise RecogniserError(f"not a text recognition model (input {shape}, expected [N, 3, 48, W])")
    return "character" in session.get_modelmeta().custom_metadata_map


def _engine_params(recognition: Path, threads: int) -> dict[str, Any]:
    return {
        "Global.use_cls": False, "Global.text_score": 0.0, "Global.log_level": "warning",
        "Global.model_root_dir": str(MODELS_DIR),
        "Det.model_path": str(BUNDLED_DETECTION), "Det.limit_type": "max", "Det.limit_side_len": DETECTION_SIDE,
        "Rec.model_path": str(recognition), "Rec.rec_img_shape": [3, 48, REC_MIN_WIDTH],
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }


def _quiet_rapidocr_logger() -> None:
    """RapidOCR logs to stderr through its own coloured handler; send its warnings through ours instead."""
    logger = logging.getLogger("RapidOCR")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.WARNING)


class Recogniser:
    """Finds and reads the lines of text in a BGR crop. One object serves many callers (calls are serialised)."""

    def __init__(self, recognition: Path = BUNDLED_RECOGNITION, *, threads: int | None = None) -> None:
        if not recognition.is_file():
            raise RecogniserError(f"no such recognition model: {recognition}")
        if recognition != BUNDLED_RECOGNITION and not _has_dictionary(recognition):
            raise RecogniserError("the recognition model carries no 'character' metadata (its dictionary); "
                                  "RapidOCR would download one: convert it with its dictionary embedded")
        self.recognition = recognition
        self.threads = max(1, min(threads or DEFAULT_THREADS, _usable_cpus()))
        try:
            from rapidocr import RapidOCR  # heavy (omegaconf, shapely): only pipelines that read text pay for it
        except ImportError as exc:
            raise RecogniserError(f"text recognition is not installed: {exc}") from exc

        _quiet_rapidocr_logger()
        self._engine = RapidOCR(params=_engine_params(recognition, self.threads))
        _quiet_rapidocr_logger()
        self._lock = threading.Lock()
        try:  # load both sessions now: a broken model fails the archive's validation, not its first frame
            self._engine._load_det_model()
            self._engine._load_rec_model()
        except Exception as exc:
            raise RecogniserError(f"cannot load the text models: {type(exc).__name__}: {exc}") from exc

    @property
    def model_paths(self) -> tuple[Path, Path]:
        """The detection and recognition models the engine runs (for tests and the validate tree)."""
        return Path(self._engine.cfg.Det.model_path), Path(self._engine.cfg.Rec.model_path)

    def lines(self, crop: Image, min_aspect: float = 0.0) -> list[TextLine]:
        """Every line of text in ``crop`` at least ``min_aspect`` times as wide as tall, with the recogniser's
        confidence (0..1)."""
        if crop.ndim != 3 or crop.shape[0] < 2 or crop.shape[1] < 2:
            return []
        scale = max(1.0, min(MAX_UPSCALE, MIN_SIDE / min(crop.shape[:2])))
        image = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else crop
        with self._lock:
            return self._read(np.ascontiguousarray(image), scale, min_aspect)

    def whole_line(self, crop: Image, min_aspect: float = 0.0) -> list[TextLine]:
        """``crop`` read as one line of text (a plate detector's plate), without the text detector; nothing when it
        is narrower than ``min_aspect`` times its height."""
        if crop.ndim != 3 or min(crop.shape[:2]) < 2 or crop.shape[1] < min_aspect * crop.shape[0]:
            return []
        from rapidocr.main import RapidOCRError

        with self._lock:
            try:
                recognised = self._engine.recognize_txt([np.ascontiguousarray(crop)])
            except RapidOCRError:
                return []
        box = (0.0, 0.0, float(crop.shape[1]), float(crop.shape[0]))
        return [TextLine(str(text), float(score), box)
                for text, score in zip(recognised.txts or (), recognised.scores, strict=False) if str(text).strip()]

    def _read(self, image: Image, scale: float, min_aspect: float) -> list[TextLine]:
        from rapidocr.main import RapidOCRError
        from rapidocr.utils.process_img import map_boxes_to_original

        engine = self._engine
        prepared, record = engine.preprocess_img(image)
        try:  # RapidOCR's own steps, with the lines that cannot be text of interest dropped before recognition
            cut, detected = engine.detect_and_crop(prepared, record)
        except RapidOCRError:  # nothing detected
            return []
        boxes = detected.boxes if detected.boxes is not None else np.zeros((0, 4, 2), np.float32)
        keep = [index for index, quad in enumerate(boxes) if _aspect(quad) >= min_aspect]
        if not keep:
            return []
        try:
            recognised = engine.recognize_txt([cut[index] for index in keep])
        except RapidOCRError:
            return []
        quads = map_boxes_to_original(boxes[keep], record, image.shape[0], image.shape[1]) / scale
        return [TextLine(str(text), float(score), (float(quad[:, 0].min()), float(quad[:, 1].min()),
                                                   float(quad[:, 0].max()), float(quad[:, 1].max())))
                for text, score, quad in zip(recognised.txts or (), recognised.scores, quads, strict=False)
                if str(text).strip()]


class Recognisers:
    """The recognisers of one archive store (one per camera pod): the bundled one loaded once, on first use, and
    shared by every archive that uses it; an archive's own model loaded for that archive."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._bundled: Recogniser | None = None
        self._lock = threading.Lock()

    def bundled(self) -> Recogniser:
        with self._lock:
            if self._bundled is None:
                self._bundled = Recogniser(BUNDLED_RECOGNITION, threads=self.threads)
                log.info("text recogniser loaded", extra={"model": BUNDLED_RECOGNITION.name})
            return self._bundled

    def load(self, recognition: Path | None) -> Recogniser:
        """The bundled recogniser (``recognition`` None), or one on an archive's own recognition model."""
        return self.bundled() if recognition is None else Recogniser(recognition, threads=self.threads)
