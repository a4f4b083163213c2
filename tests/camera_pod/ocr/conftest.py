"""The bundled recogniser, loaded once for the OCR tests, and readers with a node's rules."""

from __future__ import annotations

from typing import Any

import pytest

from camera_pod.mpta.schema import OcrNode
from camera_pod.ocr import recognisers
from camera_pod.ocr.reading import TextReader, TextRules


def ocr_node(**fields: Any) -> OcrNode:
    return OcrNode.model_validate({"type": "ocr", "modelId": "plate_ocr", "minConfidence": 0.5, **fields})


@pytest.fixture(scope="session")
def pool() -> recognisers.Recognisers:
    return recognisers.Recognisers()


@pytest.fixture(scope="session")
def recogniser(pool: recognisers.Recognisers) -> recognisers.Recogniser:
    return pool.bundled()


@pytest.fixture(scope="session")
def plate_reader(recogniser: recognisers.Recogniser) -> TextReader:
    """The default rules (A-Z0-9, 4-12 characters, minTextConfidence 0.8) on the bundled recogniser."""
    return TextReader(recogniser, TextRules.from_node(ocr_node()))
