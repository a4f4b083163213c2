"""Which branches run on a frame: the original worker's final ``run_pipeline`` rules, as pure functions.

- **Regions.** A detection node keeps, for each class, its highest-confidence box at or above the node's
  ``minConfidence`` (the original's ``regions_dict``), with or without ``multiClass``.
- **Expected classes.** With ``multiClass`` and ``expectedClasses``, at least one expected class must be
  among the regions, else the frame yields nothing.
- **Triggering.** A branch triggers when any of its ``triggerClasses`` is among the regions with a
  confidence at or above the branch's ``minConfidence``; it crops the region of ``cropClass`` (or of its
  first trigger class).
- **Pre-validation.** Every branch a ``postgresql_update_combined`` waits for must run on the frame, else
  nothing is written for it. A cropping branch whose crop class was not detected cannot run, so it counts
  as not running here (the original found that out only after writing the image and the initial row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from camera_pod.inference.detections import Box, Detections
from camera_pod.mpta.schema import Node, OcrNode, PostgresUpdateCombined


def accepted(detections: Detections, min_confidence: float, classes: Sequence[str] = ()) -> Detections:
    """The detections with confidence ≥ ``min_confidence`` (and of ``classes``, when given)."""
    keep = detections.confidence >= min_confidence
    if classes:
        wanted = [index for index, name in enumerate(detections.names) if name in classes]
        keep &= np.isin(detections.class_id, wanted)
    return detections.filter(keep)


def regions(detections: Detections, min_confidence: float, classes: Sequence[str] = ()) -> dict[str, Box]:
    """The best box of each class with confidence ≥ ``min_confidence`` (only ``classes``, when given)."""
    return accepted(detections, min_confidence, classes).best_per_class()


def expected_present(node: Node, found: Mapping[str, Box]) -> bool:
    """False when ``multiClass`` + ``expectedClasses`` and none of the expected classes was detected."""
    if not (node.multiClass and node.expectedClasses):
        return True
    return any(name in found for name in node.expectedClasses)


def trigger(branch: Node | OcrNode, found: Mapping[str, Box]) -> str | None:
    """The class that triggers ``branch`` (the first of its trigger classes that qualifies), or None."""
    for name in branch.triggerClasses:
        if name in found and found[name].confidence >= branch.minConfidence:
            return name
    return None


def crop_class(branch: Node | OcrNode) -> str | None:
    """The class whose best box a cropping branch receives; None when the branch does not crop."""
    if not branch.crop:
        return None
    return branch.cropClass or (branch.triggerClasses[0] if branch.triggerClasses else None)


def why_not(branch: Node | OcrNode, found: Mapping[str, Box]) -> str | None:
    """Why ``branch`` cannot run on ``found``; None when it runs."""
    if trigger(branch, found) is None:
        return f"no {'/'.join(branch.triggerClasses) or 'trigger class'} ≥ {branch.minConfidence}"
    cropped = crop_class(branch)
    if branch.crop and cropped not in found:
        return f"crop class {cropped!r} not detected"
    return None


def plan(node: Node, found: Mapping[str, Box]) -> tuple[list[Node | OcrNode], dict[str, str]]:
    """The branches of ``node`` that run on ``found``, and why each other one does not."""
    runs: list[Node | OcrNode] = []
    skipped: dict[str, str] = {}
    for branch in node.branches:
        reason = why_not(branch, found)
        if reason is None:
            runs.append(branch)
        else:
            skipped[branch.modelId] = reason
    return runs, skipped


def waited_for(node: Node) -> set[str]:
    """Every branch a ``postgresql_update_combined`` of ``node`` waits for."""
    return {branch for action in node.parallelActions if isinstance(action, PostgresUpdateCombined)
            for branch in action.waitForBranches}


def missing_waited_for(node: Node, runs: Sequence[Node | OcrNode]) -> list[str]:
    """The waited-for branches that will not run (pre-validation fails when this is not empty)."""
    return sorted(waited_for(node) - {branch.modelId for branch in runs})
