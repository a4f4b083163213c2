"""Typed results of one frame through the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from camera_pod.inference.detections import Box, Classification, Detections
from camera_pod.inference.models import Task
from camera_pod.ocr.reading import TextRead

ActionList = Literal["initial_record", "actions", "parallelActions"]
FrameStatus = Literal["detected", "nothing", "incomplete"]
NodeTask = Task | Literal["ocr"]


@dataclass(frozen=True)
class ActionOutcome:
    node_id: str
    list_name: ActionList
    index: int
    action_type: str
    status: Literal["done", "queued", "failed", "skipped"]  # queued: accepted by a durable outbox, applied later
    detail: str  # the key/channel/row written (or queued), or why it failed or was skipped


@dataclass(frozen=True)
class NodeResult:
    model_id: str
    task: NodeTask
    detections: Detections | None = None
    regions: Mapping[str, Box] = field(default_factory=dict)
    classification: Classification | None = None
    result_field: str | None = None
    branches: Mapping[str, NodeResult] = field(default_factory=dict)
    skipped_branches: Mapping[str, str] = field(default_factory=dict)
    reading: TextRead | None = None  # a text (OCR) node's read: its class_name is the text

    @property
    def best(self) -> Box | None:
        return max(self.regions.values(), key=lambda box: box.confidence, default=None)

    @property
    def class_name(self) -> str | None:
        if self.reading is not None:
            return self.reading.text
        if self.classification is not None:
            return self.classification.class_name
        best = self.best
        return best.class_name if best else None

    @property
    def confidence(self) -> float | None:
        if self.reading is not None:
            return self.reading.confidence
        if self.classification is not None:
            return self.classification.confidence
        best = self.best
        return best.confidence if best else None

    @property
    def yielded(self) -> bool:
        """A classification, a read (even of nothing: the text node ran), or a detection with at least one region
        (what the original returned non-empty)."""
        return self.classification is not None or self.reading is not None or bool(self.regions)

    def fields(self) -> dict[str, object]:
        """What ``{modelId.<field>}`` templates can read from this node."""
        if self.reading is not None:  # {plate_ocr.text}, {plate_ocr.confidence}, {plate_ocr.license_plate}
            read: dict[str, object] = {"text": self.reading.text, "confidence": self.reading.confidence}
            return {**read, self.result_field: self.reading.text} if self.result_field else read
        values: dict[str, object] = {"class": self.class_name, "confidence": self.confidence}
        if self.result_field:
            values[self.result_field] = self.class_name
        return values


def confidence_field(result_field: str) -> str:
    """Where a text's confidence travels beside it: ``license_plate`` → ``license_plate_confidence``."""
    return f"{result_field}_confidence"


@dataclass(frozen=True)
class FrameResult:
    status: FrameStatus
    root: NodeResult | None
    reason: str | None = None
    session_id: str | None = None
    actions: tuple[ActionOutcome, ...] = ()
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    def all_nodes(self) -> dict[str, NodeResult]:
        found: dict[str, NodeResult] = {}
        pending = [self.root] if self.root else []
        while pending:
            node = pending.pop()
            found[node.model_id] = node
            pending.extend(node.branches.values())
        return found

    def classified_fields(self) -> dict[str, str]:
        """``{"brand": "Toyota", "body_type": "Sedan"}`` from every classifier that ran, and every text read with its
        confidence (``"license_plate": "AB123CD", "license_plate_confidence": "0.974"``); nothing for no read."""
        fields = {}
        for node in self.all_nodes().values():
            if node.result_field and node.class_name is not None:
                fields[node.result_field] = node.class_name
                if node.reading is not None and node.reading.confidence is not None:
                    fields[confidence_field(node.result_field)] = f"{node.reading.confidence:.3f}"
        return fields

    @property
    def failed_actions(self) -> list[ActionOutcome]:
        return [outcome for outcome in self.actions if outcome.status == "failed"]
