"""A text node's rules: normalisation, rows, the confidence threshold (pure, on hand-made lines)."""

from __future__ import annotations

from typing import Any

import pytest

from camera_pod.ocr.reading import NOTHING, TextRead, TextRules, best_read, rows
from camera_pod.ocr.recognisers import TextLine
from tests.camera_pod.ocr.conftest import ocr_node

EURO = {"pattern": r"([A-Z]{2})([0-9]{3})([A-Z]{2})", "replacement": r"\1-\2-\3"}


def rules(**fields: Any) -> TextRules:
    return TextRules.from_node(ocr_node(**fields))


@pytest.mark.parametrize(("node", "raw", "value"), [
    ({}, "ab 123 cd", "AB123CD"),  # upper-cased, separators dropped
    ({}, "AB-123-CD", "AB123CD"),
    ({}, "A·B:1_2!3", "AB123"),  # any character not allowed is dropped
    ({}, "ÄB123", "B123"),  # only A-Z0-9 by default
    ({}, "AB1", None),  # shorter than minLength (4)
    ({}, "ABCDEFGHJKLMN", None),  # longer than maxLength (12)
    ({"minLength": 2}, "AB", "AB"),
    ({"allowedCharacters": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "}, "AB 123 CD", "AB 123 CD"),  # spaces kept
    ({"allowedCharacters": "กขคง0123456789"}, "กข 1234", "กข1234"),  # other scripts
    (EURO, "ab 123 cd", "AB-123-CD"),  # the pattern's normal form
    (EURO, "AB 123 C0", None),  # does not match: no value, never a guess
    (EURO, "XAB123CD", None),  # matched whole, not searched
    ({"pattern": "[0-9][A-Z]{3}[0-9]{3}"}, "1abc234", "1ABC234"),  # no replacement: the filtered text
])
def test_normalisation(node: dict[str, Any], raw: str, value: str | None) -> None:
    assert rules(**node).normalise(raw) == value


def line(text: str, confidence: float, box: tuple[float, float, float, float]) -> TextLine:
    return TextLine(text, confidence, box)


def test_words_of_one_row_are_read_left_to_right_and_far_apart_ones_are_not() -> None:
    merged = rows([line("CD", 0.9, (80, 41, 110, 60)), line("AB 123", 0.95, (10, 40, 70, 60)),
                   line("0", 0.99, (0, 0, 12, 12)), line("0", 0.99, (100, 0, 112, 12))])
    assert sorted((row.text, row.confidence) for row in merged) == [("0", 0.99), ("0", 0.99), ("AB 123 CD", 0.9)]
    assert next(row for row in merged if row.text == "AB 123 CD").box == (10, 40, 110, 60)


@pytest.mark.parametrize(("lines", "expected"), [
    ([line("AB 123 CD", 0.95, (0, 40, 100, 60))], TextRead("AB123CD", 0.95, "AB 123 CD")),
    # below minTextConfidence (0.8): nothing, and no other guess in its place
    ([line("AB 123 CD", 0.79, (0, 40, 100, 60))], TextRead(None, None, "AB 123 CD")),
    # a confident plate under an unsure taller text: the plate
    ([line("WXYZ", 0.5, (0, 0, 100, 30)), line("AB 123 CD", 0.9, (0, 40, 100, 60))],
     TextRead("AB123CD", 0.9, "AB 123 CD")),
    # the tallest confident candidate: a plate's characters are the largest text on a car's front
    ([line("FUEL", 0.99, (0, 0, 40, 8)), line("KL 482 TX", 0.9, (0, 40, 100, 60))],
     TextRead("KL482TX", 0.9, "KL 482 TX")),
    ([line("==", 0.99, (0, 40, 100, 60))], TextRead(None, None, "==")),  # nothing allowed in it
    ([], NOTHING),
])
def test_the_read_is_the_tallest_confident_candidate_or_nothing(lines: list[TextLine], expected: TextRead) -> None:
    assert best_read(lines, rules()) == expected


def test_a_pattern_picks_the_candidate_that_is_a_plate() -> None:
    lines = [line("STOP 3", 0.99, (0, 0, 100, 25)), line("AB 123 CD", 0.9, (0, 40, 100, 60))]
    assert best_read(lines, rules(**EURO)).text == "AB-123-CD"
    assert best_read(lines, rules()).text == "STOP3"  # without one, the taller text wins
