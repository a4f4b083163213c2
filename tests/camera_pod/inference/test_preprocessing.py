"""Letterbox and classifier inputs: hand-computed geometry, and equal to Ultralytics' own transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image
from ultralytics.data.augment import LetterBox

from camera_pod.inference.preprocessing import PAD_VALUE, Letterbox, classification_input, detection_input


@pytest.mark.parametrize(("source", "target", "stride", "resized", "pads", "shape"), [
    ((480, 640), (640, 640), None, (480, 640), (80, 80, 0, 0), (640, 640)),   # scale 1, 80 above and below
    ((480, 640), (640, 640), 32, (480, 640), (0, 0, 0, 0), (480, 640)),       # minimal rectangle: no padding
    ((480, 640), (256, 256), None, (192, 256), (32, 32, 0, 0), (256, 256)),   # scale 0.4
    ((480, 640), (256, 256), 32, (192, 256), (0, 0, 0, 0), (192, 256)),
    ((1080, 1920), (640, 640), 32, (360, 640), (12, 12, 0, 0), (384, 640)),  # 280 % 32 = 24 → 12 + 12
    ((100, 200), (65, 64), None, (32, 64), (16, 17, 0, 0), (65, 64)),         # odd padding: the extra row below
    ((640, 480), (640, 640), None, (640, 480), (0, 0, 80, 80), (640, 640)),   # portrait: padded left and right
    ((100, 100), (640, 640), None, (640, 640), (0, 0, 0, 0), (640, 640)),     # scaled up
])
def test_letterbox_geometry(source: tuple[int, int], target: tuple[int, int], stride: int | None,
                            resized: tuple[int, int], pads: tuple[int, int, int, int], shape: tuple[int, int]) -> None:
    box = Letterbox.fit(source, target, stride=stride)
    assert box.resized == resized
    assert (box.top, box.bottom, box.left, box.right) == pads
    assert box.shape == shape


def test_letterboxed_image_is_centred_on_grey() -> None:
    image = np.full((480, 640, 3), 7, np.uint8)
    blob, box = detection_input(image, (640, 640))
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32 and blob.flags.c_contiguous
    assert np.allclose(blob[0, :, :80], PAD_VALUE / 255) and np.allclose(blob[0, :, 560:], PAD_VALUE / 255)
    assert np.allclose(blob[0, :, 80:560], 7 / 255)
    assert box.top == 80


def test_channels_are_rgb() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    blob, _ = detection_input(image, (32, 32))
    assert blob[0, 2].min() == 1.0 and blob[0, 0].max() == 0.0


def test_boxes_map_back_to_the_source_and_are_clipped() -> None:
    box = Letterbox.fit((480, 640), (640, 640))
    xyxy = np.array([[10, 90, 110, 190], [-5, 70, 700, 600]], np.float32)
    assert box.to_source(xyxy).tolist() == [[10, 10, 110, 110], [0, 0, 640, 480]]
    half = Letterbox.fit((480, 640), (256, 256), stride=32)  # scale 0.4, no padding
    assert np.allclose(half.to_source(np.array([[40, 40, 80, 120]], np.float32)), [[100, 100, 200, 300]])


@pytest.mark.parametrize("auto", [False, True])
@pytest.mark.parametrize("shape", [(480, 640), (1080, 1920), (333, 517), (640, 480), (50, 400), (256, 256)])
def test_detection_input_equals_ultralytics(shape: tuple[int, int], auto: bool) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    reference = LetterBox((256, 256), auto=auto, stride=32)(image=image)
    expected = reference[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
    blob, _ = detection_input(image, (256, 256), stride=32 if auto else None)
    assert blob.shape == expected.shape
    assert np.allclose(blob, expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 64), (300, 120), (120, 300), (40, 30), (97, 64), (64, 97)])
def test_classification_input_equals_ultralytics_classify_transforms(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    # What Ultralytics' ClassificationPredictor does: PIL Resize + CenterCrop on the BGR array, then BGR→RGB, /255.
    host = np.array(T.Compose([T.Resize(64), T.CenterCrop(64)])(Image.fromarray(image)))
    expected = host[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
    blob = classification_input(image, (64, 64))
    assert blob.shape == (1, 3, 64, 64)
    assert np.allclose(blob, expected, atol=1e-6)


def test_classification_input_for_a_non_square_model_resizes_exactly() -> None:
    image = np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    host = np.array(T.Compose([T.Resize((32, 48)), T.CenterCrop((32, 48))])(Image.fromarray(image)))
    expected = host[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
    assert np.allclose(classification_input(image, (32, 48)), expected, atol=1e-6)
