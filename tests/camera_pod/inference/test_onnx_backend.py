"""Provider choice (pure), session tuning, and the settings that drive them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort
import pytest

from camera_pod.inference import onnx_backend
from camera_pod.inference.onnx_backend import CPU, OnnxLoadError, OnnxModel, choose_providers
from camera_pod.inference.selection import (
    InferenceOptions,
    OnnxLoader,
    UltralyticsLoader,
    model_loader,
    nvidia_gpu_present,
    options_from_settings,
    resolve_backend,
)
from camera_pod.settings import PodSettings

TRT, CUDA, AZURE = "TensorrtExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider"


@pytest.mark.parametrize(("available", "forced", "expected"), [
    ([TRT, CUDA, CPU], (), [TRT, CUDA, CPU]),
    ([CPU, CUDA, TRT], (), [TRT, CUDA, CPU]),        # our preference, not the listing order
    ([AZURE, CUDA, CPU], (), [CUDA, CPU]),            # providers we do not know are never picked on their own
    ([AZURE, CPU], (), [CPU]),
    ([], (), [CPU]),
    ([TRT, CUDA, CPU], (CUDA,), [CUDA, CPU]),         # forced: that list, the CPU closing it
    ([TRT, CUDA, CPU], (CPU, CUDA), [CPU, CUDA]),     # forced order is kept
    ([AZURE, CPU], (AZURE, CPU, AZURE), [AZURE, CPU]),  # duplicates dropped
    ([CPU], (CUDA,), [CPU]),                          # unavailable: dropped (and logged)
])
def test_choose_providers(available: list[str], forced: tuple[str, ...], expected: list[str]) -> None:
    assert choose_providers(available, forced) == expected


def test_an_unavailable_forced_provider_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        choose_providers([CPU], (TRT,))
    assert "not available" in caplog.text


def test_threads_default_to_the_cpus_this_process_may_use() -> None:
    assert onnx_backend.default_threads() == len(os.sched_getaffinity(0))


def test_sessions_are_tuned(onnx_models: dict[str, object], onnx_cache: Path) -> None:
    exported = sorted((onnx_cache / "onnx").glob("*.onnx"))
    session = onnx_backend.create_session(exported[0], providers=[CPU], threads=3)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session.get_providers() == [CPU]


def test_a_file_that_is_not_onnx_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage")
    with pytest.raises(OnnxLoadError, match=r"model\.onnx: cannot open ONNX model"):
        OnnxModel(path)


def test_settings_choose_the_backend_and_its_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    defaults = options_from_settings(PodSettings())
    assert defaults == InferenceOptions()
    assert defaults.backend == "auto" and defaults.providers == () and defaults.threads is None and defaults.rect
    monkeypatch.setenv("DETECTOR_INFERENCE_BACKEND", "ultralytics")
    monkeypatch.setenv("DETECTOR_INFERENCE_PROVIDERS", f"{CUDA}, {CPU}")
    monkeypatch.setenv("DETECTOR_INFERENCE_THREADS", "3")
    monkeypatch.setenv("DETECTOR_ONNX_IMGSZ", "320")
    monkeypatch.setenv("DETECTOR_ONNX_RECT", "false")
    options = options_from_settings(PodSettings())
    assert options == InferenceOptions(backend="ultralytics", providers=(CUDA, CPU), threads=3, imgsz=320, rect=False)
    assert model_loader(tmp_path, options) == UltralyticsLoader("auto")


@pytest.mark.parametrize(("providers", "gpu", "expected"), [
    ([CPU], False, "onnx"),  # a CPU machine
    ([CUDA, CPU], True, "onnx"),  # a GPU and the GPU build of ONNX Runtime
    (["TensorrtExecutionProvider", CUDA, CPU], True, "onnx"),
    ([CPU], True, "ultralytics"),  # a GPU the CPU build of ONNX Runtime would leave idle: torch runs on it
])
def test_auto_picks_the_backend_that_uses_the_machine(providers: list[str], gpu: bool, expected: str) -> None:
    assert resolve_backend("auto", providers, gpu_present=gpu) == expected
    assert resolve_backend("onnx", providers, gpu_present=gpu) == "onnx"  # an explicit choice is kept
    assert resolve_backend("ultralytics", providers, gpu_present=gpu) == "ultralytics"


def test_auto_on_this_cpu_machine_loads_through_onnx(tmp_path: Path) -> None:
    loader = model_loader(tmp_path, InferenceOptions())
    expected = "ultralytics" if nvidia_gpu_present() and CUDA not in ort.get_available_providers() else "onnx"
    assert isinstance(loader, UltralyticsLoader if expected == "ultralytics" else OnnxLoader)


@pytest.mark.parametrize(("name", "value"), [("DETECTOR_INFERENCE_BACKEND", "tensorflow"),
                                             ("DETECTOR_INFERENCE_THREADS", "0"),
                                             ("DETECTOR_ONNX_IMGSZ", "300")])
def test_bad_inference_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("DETECTOR_").lower()):
        PodSettings()
