"""Which precision serves an ONNX model: its float32 export, or an int8 form where this machine and the model's
own answers allow (``DETECTOR_INFERENCE_PRECISION``).

``fp32``: the export as it is. ``int8``: the int8 form as soon as one is calibrated (its agreement with float32
and its speed are measured and logged, not required). ``auto``: int8 only when all of these hold, else float32:

1. the model runs on ONNX Runtime's CPU provider, on a CPU with an int8 dot product (VNNI or AMX flags);
2. a float32 call takes at least ``min_fp32_ms`` here (the fixture's models take 1.6 and 0.2 ms and gain
   nothing measurable: they are not worth a calibration);
3. int8 gives float32's answers on the calibration inputs: ≥ ``min_agreement`` of the boxes (both ways, same
   class, IoU ≥ 0.7) or of the classifier top-1s, resting on at least ``min_evidence`` of them;
4. int8 is at least ``min_speedup`` × faster here (best of interleaved calls).

The calibration inputs are the archive's sample images when it has any (decided at load), else the camera's
own frames as the model sees them: the model serves in float32 meanwhile, keeps some of its inputs, and once it
has enough, a background thread at low priority quantises, checks and swaps the session (``calibration``).
A caller can also hand frames in (:func:`calibrate`). Every decision is logged with its reason and stored
beside the export (``calibration.Verdict``): a restarted pod, or another pod on the same cache, serves it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from camera_pod.inference import calibration, parity, quantisation
from camera_pod.inference.calibration import Blob, Source, Verdict
from camera_pod.inference.models import Image, Model
from camera_pod.inference.onnx_backend import CPU, OnnxLoadError, OnnxModel

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "int8"]
Lock = Callable[[], contextlib.AbstractContextManager[None]]
TIMED_CALLS = 8  # float32 calls timed in service (the fastest counts) before deciding a model is too small to gain
DETECTOR_SAMPLE_EVERY = 5  # keep every 5th detector input: spread over time, not one car's consecutive frames


@dataclass(frozen=True)
class PrecisionPolicy:
    precision: Precision = "auto"
    samples: int = 16  # calibration inputs kept from service (at least half with something found)
    min_agreement: float = 0.95
    min_evidence: int = 8  # boxes (detector) or crops (classifier) the agreement must rest on
    min_fp32_ms: float = 5.0
    min_speedup: float = 1.25
    cpu_flags: tuple[str, ...] | None = None  # None: this machine's (/proc/cpuinfo)


def machine_refusal(policy: PrecisionPolicy, providers: Sequence[str]) -> str | None:
    """Why ``auto`` keeps float32 on this machine before looking at the model; None when int8 may pay."""
    if providers and providers[0] != CPU:
        return f"runs on {providers[0]}, not the CPU"
    flags = quantisation.cpu_int8_flags() if policy.cpu_flags is None else policy.cpu_flags
    if not flags:
        return "this CPU has no int8 dot product (no avx512_vnni, avx_vnni or amx_int8 flag)"
    return None


def choose(policy: PrecisionPolicy, agreement: parity.Agreement, evidence: int, fp32_ms: float,
           int8_ms: float) -> tuple[Literal["fp32", "int8"], str]:
    """What ``auto`` serves, and why, once an int8 form has been measured against float32 (``int8`` serves it
    whatever this says)."""
    measured = f"agreement {agreement}, {fp32_ms:.2f} → {int8_ms:.2f} ms per call"
    if evidence < policy.min_evidence:
        return "fp32", f"too few answers to compare ({evidence} < {policy.min_evidence}; {measured})"
    if agreement.share < policy.min_agreement:
        return "fp32", f"int8 disagrees with float32 ({measured}; needs {policy.min_agreement:.0%})"
    if fp32_ms < int8_ms * policy.min_speedup:
        return "fp32", f"int8 is not {policy.min_speedup:g}x faster here ({measured})"
    return "int8", f"int8 agrees and is faster ({measured})"


def best_ms(run: Callable[[], Any], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000


class Int8Upgrade:
    """One model's way from float32 to int8: ``start`` at load, then (when collecting) its ``observer`` hook."""

    def __init__(self, model: OnnxModel, policy: PrecisionPolicy, lock: Lock) -> None:
        self.model = model
        self.policy = policy
        self.verdict: Verdict | None = None
        self.settled = threading.Event()  # set once the precision is decided (for good, in this process)
        self._lock = lock
        self._samples = calibration.InputSamples(policy.samples,
                                                 every=DETECTOR_SAMPLE_EVERY if model.task == "detect" else 1)
        self._fp32_ms: list[float] = []
        self._guard = threading.Lock()
        model.upgrade = self

    def start(self, checkpoint: Path) -> None:
        """Serve the stored verdict, or decide on the archive's images, or start collecting the camera's inputs."""
        refusal = machine_refusal(self.policy, self.model.providers) if self.policy.precision == "auto" else None
        if self.policy.precision == "fp32" or refusal is not None:
            self._settle(Verdict("fp32", refusal or "DETECTOR_INFERENCE_PRECISION=fp32"), None, store=False)
            return
        paths = calibration.archive_images(checkpoint, self.model.task)
        archive_digest = calibration.files_digest(paths) if paths else None
        if self._serve_stored(archive_digest):
            return
        blobs = [self.model.prepare(image) for image in calibration.read_images(paths)]
        if blobs:
            self._decide_safely(blobs, "archive", archive_digest)
        else:
            self.model.observer = self._observe

    def calibrate(self, images: Sequence[Image]) -> Verdict | None:
        """Decide now on frames (detector) or crops (classifier) of the camera handed in by the caller, instead of
        waiting for the model's own inputs (blocking: call it off the frame loop). None when not collecting."""
        with self._guard:
            if self.model.observer is None or not images:
                return None
            self.model.observer = None
        return self._decide_safely([self.model.prepare(image) for image in images], "camera")

    def decide(self, blobs: Sequence[Blob], source: Source, archive_digest: str | None = None) -> Verdict:
        """Quantise on ``blobs`` (unless this model is too small to gain), measure, choose, store and serve.
        ``archive_digest`` names the archive's images the blobs come from (else the blobs are digested)."""
        fp32_ms = best_ms(lambda: self.model.infer(blobs[0]))
        if self.policy.precision == "auto" and fp32_ms < self.policy.min_fp32_ms:
            return self._settle(self._too_small(fp32_ms), None, store=True)
        with self._lock():
            if self._serve_stored(archive_digest):  # decided meanwhile by another loader of the same cache
                assert self.verdict is not None
                return self.verdict
            verdict, session = self._measure(blobs, source, archive_digest or calibration.digest(blobs))
            calibration.write_verdict(self.model.path, verdict)
        return self._settle(verdict, session, store=False)

    def _measure(self, blobs: Sequence[Blob], source: Source, digest: str) -> tuple[Verdict, Any]:
        target = calibration.int8_path(self.model.path, digest)
        session = self._open_quantised(target, blobs)
        agreement, evidence = self._compare(session, blobs)
        fp32_ms, int8_ms = self._time(session, blobs[0])
        precision, reason = choose(self.policy, agreement, evidence, fp32_ms, int8_ms)
        return Verdict(precision, reason, source, digest, target.name, round(agreement.share, 4),
                       round(fp32_ms, 3), round(int8_ms, 3)), session

    def _open_quantised(self, target: Path, blobs: Sequence[Blob]) -> Any:
        """The int8 file of these calibration inputs, quantised unless a usable one is there already."""
        if target.is_file():
            try:
                return self.model.open_session(target)
            except OnnxLoadError:
                target.unlink(missing_ok=True)
        quantisation.quantise(self.model.path, target, blobs, input_name=self.model.input_name,
                              detector=self.model.task == "detect")
        return self.model.open_session(target)

    def _compare(self, session: Any, blobs: Sequence[Blob]) -> tuple[parity.Agreement, int]:
        total, evidence = parity.Agreement(), 0
        for blob in blobs:
            reference, candidate = self.model.infer(blob), self.model.infer(blob, session)
            if self.model.task == "classify":
                total, evidence = total + parity.classifications(reference, candidate), evidence + 1
                continue
            floor = parity.CONFIDENCE - parity.MARGIN
            reference_boxes = self.model.decode(reference, min_confidence=floor)
            total += parity.detections(reference_boxes, self.model.decode(candidate, min_confidence=floor))
            evidence += parity.reference_boxes(reference_boxes)
        return total, evidence

    def _time(self, session: Any, blob: Blob, rounds: int = 5) -> tuple[float, float]:
        """Best of ``rounds`` interleaved calls each: load from elsewhere slows both alike."""
        fp32 = int8 = float("inf")
        for _ in range(rounds):
            fp32 = min(fp32, best_ms(lambda: self.model.infer(blob), 1))
            int8 = min(int8, best_ms(lambda: self.model.infer(blob, session), 1))
        return fp32, int8

    def _too_small(self, fp32_ms: float) -> Verdict:
        return Verdict("fp32", f"a float32 call takes {fp32_ms:.2f} ms < {self.policy.min_fp32_ms:g} ms: "
                               "too small to gain from int8", fp32_ms=round(fp32_ms, 3))

    def _serve_stored(self, archive_digest: str | None) -> bool:
        """Serve the verdict stored for this export, when it still applies: made on the same archive images, and
        with an int8 file when int8 is forced. A stored int8 file that does not open is decided again."""
        stored = calibration.read_verdict(self.model.path)
        if stored is None or (archive_digest is not None and stored.calibration not in (archive_digest, None)):
            return False
        wanted = self.policy.precision == "int8" or stored.precision == "int8"
        if not wanted:
            self._settle(stored, None, store=False)
            return True
        if stored.int8_file is None:
            return False
        try:
            session = self.model.open_session(self.model.path.with_name(stored.int8_file))
        except (OnnxLoadError, ValueError) as exc:  # ValueError: not a file name
            log.warning("stored int8 model unusable, deciding again", extra={"onnx": self.model.path.name,
                                                                             "error": str(exc)})
            return False
        self._settle(stored, session, store=False)
        return True

    def _observe(self, blob: Blob, found: bool, seconds: float) -> None:
        with self._guard:
            if self.model.observer is None:  # already handed over to the background decision
                return
            if len(self._fp32_ms) < TIMED_CALLS:
                self._fp32_ms.append(seconds * 1000)
            elif self.policy.precision == "auto" and min(self._fp32_ms) < self.policy.min_fp32_ms:
                self.model.observer = None  # the fastest call, as load from elsewhere only ever slows one down
                self._settle(self._too_small(min(self._fp32_ms)), None, store=True)
                return
            self._samples.offer(blob, found)
            with_found, without = self._samples.counts()
            if with_found < self.policy.samples // 2 or with_found + without < self.policy.samples:
                return
            self.model.observer = None
        threading.Thread(target=self._decide_in_background, name=f"int8-{self.model.path.stem[:12]}",
                         daemon=True).start()

    def _decide_in_background(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # low priority: the camera's own frames come first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # this thread (Linux), and its children
        self._decide_safely(self._samples.take(), "camera")

    def _decide_safely(self, blobs: Sequence[Blob], source: Source, archive_digest: str | None = None) -> Verdict:
        try:
            return self.decide(blobs, source, archive_digest)
        except Exception as exc:  # a failed calibration must never stop the model or the camera: float32 it is
            log.warning("int8 calibration failed, serving float32", extra={"onnx": self.model.path.name,
                                                                           "error": f"{type(exc).__name__}: {exc}"})
            return self._settle(Verdict("fp32", f"int8 calibration failed: {exc}", source), None, store=False)

    def _settle(self, verdict: Verdict, session: Any, *, store: bool) -> Verdict:
        if store:
            with contextlib.suppress(OSError):
                calibration.write_verdict(self.model.path, verdict)
        forced = self.policy.precision == "int8"
        if session is not None and (forced or verdict.precision == "int8"):
            assert verdict.int8_file is not None
            self.model.serve(self.model.path.with_name(verdict.int8_file), "int8")
        self.verdict = verdict
        self.settled.set()
        reason = f"DETECTOR_INFERENCE_PRECISION=int8; auto would serve {verdict.precision}: {verdict.reason}" \
            if forced else verdict.reason
        log.info("model precision chosen", extra={"onnx": self.model.path.name, "precision": self.model.precision,
                                                  "reason": reason, "calibration": verdict.source})
        return verdict


def upgrade_of(model: Model) -> Int8Upgrade | None:
    """The precision decision of a model loaded by the ONNX backend (None for other backends)."""
    upgrade = getattr(model, "upgrade", None)
    return upgrade if isinstance(upgrade, Int8Upgrade) else None


def calibrate(model: Model, images: Sequence[Image]) -> Verdict | None:
    """Hand a model still collecting its inputs some frames or crops of its camera (:meth:`Int8Upgrade.calibrate`)."""
    upgrade = upgrade_of(model)
    return upgrade.calibrate(images) if upgrade is not None else None
