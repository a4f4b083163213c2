"""DETECTOR_INFERENCE_DEVICE: where the Ultralytics backend runs, from the setting to the loaded model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from camera_pod.inference.selection import InferenceOptions, UltralyticsLoader, model_loader, options_from_settings
from camera_pod.inference.ultralytics_backend import ModelLoadError, UltralyticsModel, resolve_device
from camera_pod.settings import PodSettings
from tests.camera_pod.inference.conftest import Checkpoints

VISIBLE = "cuda" if torch.cuda.is_available() else "cpu"
MISSING = f"cuda:{torch.cuda.device_count()}"  # one past the last device torch sees: never there


@pytest.mark.parametrize(("value", "expected"), [(None, "auto"), ("cpu", "cpu"), ("cuda", "cuda"),
                                                 ("cuda:1", "cuda:1")])
def test_the_setting_reaches_the_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None,
                                        expected: str) -> None:
    monkeypatch.setenv("DETECTOR_INFERENCE_BACKEND", "ultralytics")
    if value is not None:
        monkeypatch.setenv("DETECTOR_INFERENCE_DEVICE", value)
    options = options_from_settings(PodSettings())
    assert options.device == expected
    assert model_loader(tmp_path, options) == UltralyticsLoader(expected)


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_a_device_it_cannot_name_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DETECTOR_INFERENCE_DEVICE", value)
    with pytest.raises(ValueError, match="inference_device"):
        PodSettings()


def test_auto_is_the_gpu_when_torch_sees_one() -> None:
    assert resolve_device("auto") == VISIBLE
    assert resolve_device("cpu") == "cpu"


def test_a_cuda_device_torch_cannot_see_is_refused_at_load(checkpoints: Checkpoints) -> None:
    with pytest.raises(ModelLoadError, match=rf"'{MISSING}'.*torch sees {torch.cuda.device_count()} CUDA"):
        UltralyticsModel(checkpoints.brand, device=MISSING)


def test_models_load_on_the_chosen_device(checkpoints: Checkpoints, tmp_path: Path) -> None:
    auto = model_loader(tmp_path, InferenceOptions(backend="ultralytics"))(checkpoints.brand)
    cpu = model_loader(tmp_path, InferenceOptions(backend="ultralytics", device="cpu"))(checkpoints.detector)
    assert isinstance(auto, UltralyticsModel) and auto.device == VISIBLE
    assert isinstance(cpu, UltralyticsModel) and cpu.device == "cpu"
