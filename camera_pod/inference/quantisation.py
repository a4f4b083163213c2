"""Static int8 quantisation of an exported model with ONNX Runtime's own tools, and the CPU that makes it pay.

QDQ format, weights int8 per output channel, activations uint8 (U8S8), MinMax calibration: the pairing ONNX
Runtime's x86 kernels run fastest with VNNI. Measured on the 2-core AMD EPYC (AVX-512 VNNI), 640×480 frames:
YOLOv8n-640 27.7 → 12.9 ms per call; signed activations (S8S8) ran *slower* than float32 (33.5 ms), and
``quantize_dynamic`` made the fixture's classifiers 4-6× slower (an activation quantised per call).

A detector's decoding tail stays float: the head's own operations (DFL, anchors and strides, the final
Concat of pixel boxes with 0..1 scores) are left out of quantisation. Quantised with the rest, boxes and scores
share one scale and 1 % of the fixture detector's boxes on the fixture video were lost (IoU < 0.7 or a
confidence off by 0.5); left out, none (worst IoU 0.95). Its convolutions (``cv2``/``cv3``) are quantised.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Blob = npt.NDArray[np.float32]
CPUINFO = Path("/proc/cpuinfo")
# Instructions with an int8 dot product (u8 × s8 → s32): what turns int8 weights into fewer cycles per MAC.
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


class QuantisationError(Exception):
    """ONNX Runtime could not quantise the model (it raises many types; the message names the cause)."""


def cpu_int8_flags(cpuinfo: Path = CPUINFO) -> tuple[str, ...]:
    """The int8 dot-product instructions this CPU announces (empty when none, or off Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(flag for flag in INT8_CPU_FLAGS if flag in flags)


def decoding_nodes(model: Any) -> list[str]:
    """Names of a YOLO head's own operations (``/model.<head>/<op>`` and ``/model.<head>/dfl/...``): what turns
    the head convolutions' maps into boxes and scores. Empty when the graph is not named the Ultralytics way."""
    output = model.graph.output[0].name
    producer = next((node for node in model.graph.node if output in node.output), None)
    found = re.match(r"(/model\.\d+)/", producer.name) if producer is not None else None
    if found is None:
        return []
    head = re.escape(found.group(1))
    pattern = re.compile(rf"{head}/[^/]+|{head}/dfl/.*")
    return [node.name for node in model.graph.node if pattern.fullmatch(node.name)]


class _Inputs:
    """ONNX Runtime's ``CalibrationDataReader``: one input dict per calibration blob."""

    def __init__(self, name: str, blobs: Sequence[Blob]) -> None:
        self._feeds: Iterator[dict[str, Blob]] = iter([{name: blob} for blob in blobs])

    def get_next(self) -> dict[str, Blob] | None:
        return next(self._feeds, None)


def quantise(fp32: Path, target: Path, blobs: Sequence[Blob], *, input_name: str, detector: bool) -> None:
    """Write the int8 QDQ form of ``fp32`` to ``target`` atomically, calibrated on ``blobs`` (model inputs).

    Call it holding the model's int8 lock. Raises :class:`QuantisationError`.
    """
    import onnx
    from onnxruntime import quantization

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".quantise-", dir=target.parent))
    try:
        prepared, written = scratch / "prepared.onnx", scratch / "int8.onnx"
        # ONNX shape inference + ORT's basic graph optimisations, as ORT advises before quantising (the symbolic
        # shape pass cannot follow a free input size, and needs none here).
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        excluded = decoding_nodes(onnx.load(str(prepared), load_external_data=False)) if detector else []
        quantization.quantize_static(
            str(prepared), str(written), _Inputs(input_name, blobs),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=quantization.CalibrationMethod.MinMax)
        os.replace(written, target)
    except Exception as exc:  # onnx and onnxruntime raise many types (shape inference, protobuf, calibration)
        raise QuantisationError(f"{fp32.name}: int8 quantisation failed: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("quantised model to int8", extra={"onnx": fp32.name, "int8": target.name, "calibration": len(blobs),
                                                "float_nodes": len(excluded)})
