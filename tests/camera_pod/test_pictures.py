"""Pictures: a frame's grey levels for the change gate (a video frame's luma as decoded), its BGR pixels on demand."""

from __future__ import annotations

import av
import cv2
import numpy as np

from camera_pod.pictures import Grey, StillPicture, as_picture
from camera_pod.streams.cropping import Crop
from camera_pod.streams.frames import Frame
from camera_pod.streams.hub import CroppedFrame


def _video_frame(format_name: str = "yuv420p") -> av.VideoFrame:
    rng = np.random.default_rng(3)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2)
    return av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format=format_name)


def test_limited_range_luma_is_rescaled_to_full_range() -> None:
    grey = Grey(np.array([[16, 235, 126]], np.uint8), limited_range=True)
    assert grey.full_range(grey.pixels.astype(np.int16)).tolist() == [[0, 255, 128]]
    full = Grey(np.array([[16, 235]], np.uint8))
    assert full.full_range(full.pixels.astype(np.int16)).tolist() == [[16, 235]]


def test_a_video_frame_is_converted_only_when_its_pixels_are_asked_for() -> None:
    frame = Frame(_video_frame(), 0.0, 1)
    grey = frame.grey
    assert "image" not in frame.__dict__  # the luma plane needed no conversion
    assert grey.limited_range and grey.pixels.shape == (48, 64)
    assert frame.image.shape == (48, 64, 3) and frame.image is frame.image  # converted once
    rescaled = grey.full_range(grey.pixels.astype(np.int16))
    assert np.abs(rescaled - cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)).mean() < 2


def test_full_range_and_other_formats() -> None:
    assert not Frame(_video_frame("yuvj420p"), 0.0, 1).grey.limited_range
    rgb = Frame(_video_frame("rgb24"), 0.0, 1)  # no luma plane: grey from the converted image
    assert not rgb.grey.limited_range and rgb.grey.pixels.shape == (48, 64)
    image = np.zeros((4, 6, 3), np.uint8)
    assert Frame(image, 0.0, 1).image is image and Frame(image, 0.0, 1).grey.pixels.shape == (4, 6)


def test_a_subscription_crop_crops_both_the_grey_levels_and_the_image() -> None:
    frame = Frame(_video_frame(), 0.0, 1)
    cropped = CroppedFrame(frame, Crop(x1=8, y1=4, x2=40, y2=200))  # clipped to the frame, as the image is
    assert cropped.grey.pixels.shape == cropped.image.shape[:2] == (44, 32)
    assert np.array_equal(cropped.grey.pixels, frame.grey.pixels[4:48, 8:40])


def test_a_bgr_image_is_its_own_picture() -> None:
    image = np.full((5, 7, 3), (10, 200, 30), np.uint8)
    picture = as_picture(image)
    assert isinstance(picture, StillPicture) and picture.image is image
    assert picture.grey.pixels.shape == (5, 7) and not picture.grey.limited_range
    assert as_picture(picture) is picture
