"""The ONNX loader: one export per checkpoint, atomic and cached; bad files detected; Ultralytics as fallback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from camera_pod.inference import onnx_export
from camera_pod.inference.onnx_backend import OnnxModel
from camera_pod.inference.selection import InferenceOptions, OnnxLoader
from camera_pod.inference.ultralytics_backend import ModelLoadError, UltralyticsModel
from camera_pod.mpta.loading import ArchiveStore
from tests.camera_pod.inference.conftest import Checkpoints


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every export that really runs, by target."""
    done: list[Path] = []
    real = onnx_export.export

    def counting(checkpoint: Path, target: Path, **options: Any) -> None:
        done.append(target)
        real(checkpoint, target, **options)

    monkeypatch.setattr(onnx_export, "export", counting)
    return done


def loader(cache: Path, **options: Any) -> OnnxLoader:
    return OnnxLoader(cache, InferenceOptions(threads=1, **options))


def leftovers(cache: Path) -> list[str]:
    return sorted(path.name for path in (cache / "onnx").iterdir() if not path.name.endswith(".onnx"))


def test_a_checkpoint_is_exported_once_then_served_from_the_cache(checkpoints: Checkpoints, tmp_path: Path,
                                                                  exports: list[Path]) -> None:
    first = loader(tmp_path)(checkpoints.brand)
    assert isinstance(first, OnnxModel)
    target = onnx_export.cache_path(tmp_path, onnx_export.checkpoint_sha256(checkpoints.brand))
    assert exports == [target] and target.is_file()
    written = target.stat().st_mtime_ns
    second = loader(tmp_path)(checkpoints.brand)  # a new loader: another pod on the same cache
    assert isinstance(second, OnnxModel) and second.names == first.names
    assert exports == [target] and target.stat().st_mtime_ns == written
    assert leftovers(tmp_path) == []  # the scratch folder is gone


def test_concurrent_loads_export_once(checkpoints: Checkpoints, tmp_path: Path, exports: list[Path]) -> None:
    models: list[object] = []
    threads = [threading.Thread(target=lambda: models.append(loader(tmp_path)(checkpoints.body_type)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(exports) == 1
    assert len(models) == 4 and all(isinstance(model, OnnxModel) for model in models)


def test_forced_size_and_square_input_have_their_own_cache_entries(checkpoints: Checkpoints, tmp_path: Path) -> None:
    model = loader(tmp_path, imgsz=320, rect=False)(checkpoints.detector)
    assert isinstance(model, OnnxModel) and model.input_size == (320, 320) and model.stride is None
    sha = onnx_export.checkpoint_sha256(checkpoints.detector)
    assert onnx_export.cache_path(tmp_path, sha, imgsz=320, rect=False).name == f"{sha}-320-square.onnx"
    assert onnx_export.cache_path(tmp_path, sha, imgsz=320, rect=False).is_file()
    classifier = loader(tmp_path, imgsz=320)(checkpoints.brand)  # a classifier keeps its training size
    assert isinstance(classifier, OnnxModel) and classifier.input_size == (64, 64)


def test_a_corrupt_cached_model_is_exported_again(checkpoints: Checkpoints, tmp_path: Path, exports: list[Path],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    target = onnx_export.cache_path(tmp_path, onnx_export.checkpoint_sha256(checkpoints.brand))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x08\x07 half an ONNX file")
    with caplog.at_level(logging.WARNING):
        model = loader(tmp_path)(checkpoints.brand)
    assert isinstance(model, OnnxModel)
    assert exports == [target]
    assert "ONNX model unusable" in caplog.text


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04" + b"\0" * 64])
def test_a_corrupt_checkpoint_raises_the_ultralytics_backend_error(tmp_path: Path, content: bytes) -> None:
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(content)
    with pytest.raises(ModelLoadError) as expected:
        UltralyticsModel(checkpoint)
    with pytest.raises(ModelLoadError) as actual:
        loader(tmp_path / "cache")(checkpoint)
    assert str(actual.value) == str(expected.value)
    assert "broken.pt: cannot load model" in str(actual.value)
    assert not list((tmp_path / "cache" / "onnx").glob("*"))


def test_a_missing_checkpoint_raises_the_ultralytics_backend_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"missing\.pt: file not found"):
        loader(tmp_path)(tmp_path / "missing.pt")


def _failing_export(write_partial: bool) -> Callable[..., Path]:
    def export_onnx(self: UltralyticsModel, **options: Any) -> Path:
        if write_partial:
            (Path(self._yolo.ckpt_path).with_suffix(".onnx")).write_bytes(b"partial")
        raise RuntimeError("tracing failed")

    return export_onnx


@pytest.mark.parametrize("write_partial", [False, True])
def test_a_failed_export_serves_the_model_with_ultralytics(checkpoints: Checkpoints, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, write_partial: bool,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(UltralyticsModel, "export_onnx", _failing_export(write_partial))
    with caplog.at_level(logging.WARNING):
        model = loader(tmp_path)(checkpoints.brand)
    assert isinstance(model, UltralyticsModel)
    assert model.names == ("BMW", "Ford", "Honda", "Toyota")
    assert "ONNX export failed, serving the model with Ultralytics" in caplog.text
    assert list((tmp_path / "onnx").iterdir()) == []  # nothing half-written, no scratch left


def test_an_export_that_does_not_open_serves_the_model_with_ultralytics(
        checkpoints: Checkpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(OnnxLoader, "_open", lambda *args, **kwargs: None)
    with caplog.at_level(logging.WARNING):
        model = loader(tmp_path)(checkpoints.brand)
    assert isinstance(model, UltralyticsModel)
    assert "does not open" in caplog.text


def test_archive_store_serves_with_onnx_runtime_by_default(fixture_mpta: Path, tmp_path: Path) -> None:
    archive = asyncio.run(ArchiveStore(tmp_path / "cache").load(str(fixture_mpta)))
    assert {model_id: type(model) for model_id, model in archive.models.items()} == {
        "car_frontal_detection_v1": OnnxModel, "car_brand_cls_v1": OnnxModel, "car_bodytype_cls_v1": OnnxModel}
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 3


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_pickle_exploit_is_refused_even_when_ultralytics_was_imported_first(tmp_path: Path) -> None:
    import pickle

    import ultralytics.nn.tasks  # read ULTRALYTICS_SAFE_LOAD at import, perhaps before the backend set it

    assert ultralytics.nn.tasks is not None
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    checkpoint.write_bytes(pickle.dumps({"model": _Exploit(marker)}))
    with pytest.raises(ModelLoadError, match="cannot load model"):
        loader(tmp_path / "cache")(checkpoint)
    assert not marker.exists(), "loading a checkpoint ran code from its pickle"
