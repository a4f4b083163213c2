"""What an OCR node reads on one crop: the recogniser's lines, normalised by the node's rules, or nothing.

1. Lines side by side (boxes overlapping by half their height, at most one and a half heights apart) are one row,
   read left to right: a plate split into words by the text detector (``AB 123`` + ``CD``) is read whole, two
   headlights read as ``0`` are not ``00``. A row's confidence is its least sure line's.
2. Each row is normalised: upper-cased, every character not in ``allowedCharacters`` dropped (spaces, dashes),
   its length within ``minLength``..``maxLength``, and, with a ``pattern``, matched whole and rewritten by
   ``replacement``. A row that does not normalise is no candidate.
3. Rows below ``minTextConfidence`` are no candidates either: the read is the tallest confident candidate (the
   plate's characters are the largest text on a car's front), or nothing — never a guess below the threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from camera_pod.inference.models import Image
from camera_pod.mpta.schema import OcrNode
from camera_pod.ocr.recognisers import Recogniser, TextLine

CHARACTER_ASPECT = 0.5  # a character is at least about half as wide as it is tall: what a line of N must measure
SAME_ROW_OVERLAP = 0.5  # of the shorter line's height
SAME_ROW_GAP = 1.5  # heights of the taller line


@dataclass(frozen=True)
class TextRead:
    """One node's read of one crop."""

    text: str | None  # normalised; None: nothing readable at or above the node's minTextConfidence
    confidence: float | None  # the recogniser's confidence in ``text`` (0..1); None without a text
    raw: str = ""  # what the recogniser read on the chosen row (or the tallest row), before normalisation


NOTHING = TextRead(None, None)


@dataclass(frozen=True)
class TextRules:
    allowed: frozenset[str]
    min_confidence: float
    min_length: int
    max_length: int
    pattern: re.Pattern[str] | None = None
    replacement: str | None = None
    detect_lines: bool = True  # False: the crop is one line, recognised whole (no text detector)

    @classmethod
    def from_node(cls, node: OcrNode) -> TextRules:
        return cls(frozenset(node.allowedCharacters.upper()), node.minTextConfidence, node.minLength,
                   node.maxLength, re.compile(node.pattern) if node.pattern else None, node.replacement,
                   node.detectLines)

    def normalise(self, raw: str) -> str | None:
        """The canonical text of a raw read; None when it cannot be a value (length, pattern)."""
        kept = "".join(char for char in raw.upper() if char in self.allowed)
        if not self.min_length <= len(kept) <= self.max_length:  # also bounds what the pattern ever sees
            return None
        if self.pattern is None:
            return kept
        match = self.pattern.fullmatch(kept)
        if match is None:
            return None
        return match.expand(self.replacement) if self.replacement is not None else kept


def _same_row(a: TextLine, b: TextLine) -> bool:
    overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    gap = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    return overlap >= SAME_ROW_OVERLAP * min(a.height, b.height) and gap <= SAME_ROW_GAP * max(a.height, b.height)


def rows(lines: list[TextLine]) -> list[TextLine]:
    """Lines side by side merged into one, left to right."""
    merged: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda item: (item.box[1] + item.box[3]) / 2):
        row = next((row for row in merged if any(_same_row(line, other) for other in row)), None)
        if row is None:
            merged.append([line])
        else:
            row.append(line)
    result = []
    for row in merged:
        row.sort(key=lambda item: item.box[0])
        box = (min(item.box[0] for item in row), min(item.box[1] for item in row),
               max(item.box[2] for item in row), max(item.box[3] for item in row))
        result.append(TextLine(" ".join(item.text for item in row), min(item.confidence for item in row), box))
    return result


def best_read(lines: list[TextLine], rules: TextRules) -> TextRead:
    """The tallest confident row that normalises, or nothing (see the module's rules)."""
    found = rows(lines)
    candidates = []
    for row in found:
        text = rules.normalise(row.text) if row.confidence >= rules.min_confidence else None
        if text is not None:
            candidates.append((row.height * row.confidence, text, row))
    if not candidates:
        tallest = max(found, key=lambda row: row.height, default=None)
        return TextRead(None, None, tallest.text if tallest else "")
    _score, text, row = max(candidates, key=lambda candidate: candidate[0])
    return TextRead(text, row.confidence, row.text)


@dataclass(frozen=True)
class TextReader:
    """An OCR node's recogniser and rules: ``read(crop)``."""

    recogniser: Recogniser
    rules: TextRules

    def read(self, crop: Image) -> TextRead:
        # A line too narrow for minLength characters is not even recognised (a car front boxed whole, a headlight).
        min_aspect = CHARACTER_ASPECT * self.rules.min_length
        lines = self.recogniser.lines(crop, min_aspect) if self.rules.detect_lines \
            else self.recogniser.whole_line(crop, min_aspect)
        return best_read(lines, self.rules)
