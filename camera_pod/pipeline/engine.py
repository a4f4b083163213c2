"""Runs a loaded .mpta node tree on one frame, exactly as shared/spec/mpta.md describes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

import numpy as np

from camera_pod.inference.detections import Box, Detections
from camera_pod.inference.models import Image, Model
from camera_pod.mpta.loading import LoadedArchive
from camera_pod.mpta.naming import result_field
from camera_pod.mpta.schema import Node, OcrNode
from camera_pod.ocr.reading import TextRead
from camera_pod.pipeline import cropping, triggering
from camera_pod.pipeline.acting import ActionScope, run_actions
from camera_pod.pipeline.results import ActionOutcome, FrameResult, FrameStatus, NodeResult
from camera_pod.pipeline.reuse import ClassificationReuse
from camera_pod.pipeline.sink import ActionSink, queues_writes

log = logging.getLogger(__name__)
T = TypeVar("T")

# The original worker's rule: a frame showing both creates the car_frontal_info row.
INITIAL_RECORD_CLASSES = ("Car", "Frontal")


@dataclass(frozen=True)
class FrameContext:
    camera_id: str
    display_id: str
    captured_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    session_id: str | None = None
    # Text nodes' reads already known (a visit's voted plate, for the run that writes the visit): used as they are.
    reads: Mapping[str, TextRead] = field(default_factory=dict)


@dataclass
class _Run:
    """Mutable state of one frame's run."""

    context: FrameContext
    session_id: str | None
    sink: ActionSink | None
    reuse: ClassificationReuse | None = None
    share: Hashable | None = None
    outcomes: list[ActionOutcome] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def values(self, node: NodeResult | None = None) -> dict[str, object]:
        captured = self.context.captured_at
        return {
            "timestamp_ms": int(captured.timestamp() * 1000),
            "timestamp": captured.strftime("%Y-%m-%dT%H-%M-%S"),
            "camera_id": self.context.camera_id,
            "display_id": self.context.display_id,
            "session_id": self.session_id,
            "class": node.class_name if node else None,
            "confidence": node.confidence if node else None,
        }


class _Incomplete(Exception):
    """A waited-for branch cannot run on this frame: nothing may be written."""


def _branch_values(node: Node, results: Mapping[str, NodeResult],
                   known_reads: Mapping[str, TextRead]) -> dict[str, dict[str, object]]:
    """What ``parallelActions`` templates read: each branch's fields, and those of the nodes under them (a text
    node on a plate detector's plate: ``{plate_ocr.text}``). As the original, a node that yielded nothing (a
    detector that found nothing) has not finished and gives no fields. A read the run already knows (a visit's voted
    plate, for its write) stands even where its node did not run on this frame (the plate detector missed the plate
    on the visit's best frame)."""
    values: dict[str, dict[str, object]] = {}
    pending = list(results.values())
    while pending:
        result = pending.pop(0)
        if result.yielded:
            values.setdefault(result.model_id, result.fields())
        pending.extend(result.branches.values())
    for _path, under in node.walk()[1:]:
        if isinstance(under, OcrNode) and under.modelId not in values and under.modelId in known_reads:
            read = NodeResult(under.modelId, "ocr", reading=known_reads[under.modelId], result_field=under.resultField)
            values[under.modelId] = read.fields()
    return values


class _SharedPasses:
    """The root detector's pass on a frame, shared by the calls that name the same frame (``share``): displays of
    one camera on the same archive with the same crop (or none) run one detector pass per frame between them."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._passes: OrderedDict[Hashable, asyncio.Future[Detections]] = OrderedDict()

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Detections]]) -> Detections:
        future = self._passes.get(key)
        if future is None:
            future = asyncio.ensure_future(compute())
            self._passes[key] = future
            while len(self._passes) > self._size:
                self._passes.popitem(last=False)
        return await asyncio.shield(future)


class PipelineEngine:
    """One per loaded archive; safe to call from many subscriptions of a camera at once."""

    def __init__(self, archive: LoadedArchive, sink: ActionSink | None, *, max_workers: int = 4) -> None:
        self._archive = archive
        self._sink = sink
        self._postgres = archive.config.postgresql is not None
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="inference")
        self._shared = _SharedPasses()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def process(self, frame: Image, context: FrameContext, *, act: bool = True,
                      reuse: ClassificationReuse | None = None, share: Hashable | None = None) -> FrameResult:
        """Run the tree on ``frame``; with ``act=False`` nothing is written (analysis only).

        ``reuse`` (one per subscription) lets leaf classifiers skip a vehicle they classified recently. Calls with
        the same ``share`` key (the same image: one frame, one crop) run the root detector once between them.
        """
        run = _Run(context, context.session_id, self._sink if act else None, reuse, share)
        started = time.perf_counter()
        root = self._archive.config.pipeline
        try:
            result = await self._run_node(root, frame, run, parent_regions=None)
        except _Incomplete as exc:
            return FrameResult("incomplete", None, str(exc), run.session_id, tuple(run.outcomes),
                               self._timings(run, started))
        status: FrameStatus = "nothing" if result is None or (result.task == "detect" and not result.regions) \
            else "detected"
        return FrameResult(status, result, None, run.session_id, tuple(run.outcomes), self._timings(run, started))

    @staticmethod
    def _timings(run: _Run, started: float) -> dict[str, float]:
        return {**run.timings_ms, "total": (time.perf_counter() - started) * 1000}

    async def _infer(self, run: _Run, node: Node | OcrNode, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        value = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        run.timings_ms[node.modelId] = (time.perf_counter() - started) * 1000
        return value

    async def _run_node(self, node: Node | OcrNode, image: Image, run: _Run,
                        parent_regions: Mapping[str, Box] | None) -> NodeResult | None:
        if isinstance(node, OcrNode):
            return await self._read(node, image, run)
        model = self._archive.models[node.modelId]
        if model.task == "classify":
            return await self._classify(node, model, image, run)
        return await self._detect(node, model, image, run, is_root=parent_regions is None)

    async def _classify(self, node: Node, model: Model, image: Image, run: _Run) -> NodeResult:
        classification = await self._infer(run, node, lambda: model.classify(image))
        result = NodeResult(node.modelId, "classify", classification=classification, result_field=result_field(node))
        if node.actions:
            scope = ActionScope(node.modelId, "actions", image, {}, run.values(result))
            run.outcomes.extend(await run_actions(node.actions, scope, run.sink))
        return result

    async def _read(self, node: OcrNode, image: Image, run: _Run) -> NodeResult:
        reading = run.context.reads.get(node.modelId)
        if reading is None:
            reader = self._archive.readers[node.modelId]
            reading = await self._infer(run, node, lambda: reader.read(image))
        return NodeResult(node.modelId, "ocr", reading=reading, result_field=node.resultField)

    async def _detect(self, node: Node, model: Model, image: Image, run: _Run, *, is_root: bool) -> NodeResult:
        wanted = node.triggerClasses if is_root else []
        class_ids = [model.names.index(name) for name in wanted]
        def detect() -> Awaitable[Detections]:
            return self._infer(run, node, lambda: model.detect(image, classes=class_ids or None,
                                                               min_confidence=node.minConfidence))

        detections = await (self._shared.get((node.modelId, run.share), detect) if is_root and run.share is not None
                            else detect())
        detections = triggering.accepted(detections, node.minConfidence, wanted)
        regions = detections.best_per_class()
        empty = NodeResult(node.modelId, "detect", detections, {})
        if not regions or not triggering.expected_present(node, regions):
            return empty
        triggered, skipped = triggering.plan(node, regions)
        missing = triggering.missing_waited_for(node, triggered)
        if missing:
            reasons = "; ".join(f"{branch}: {skipped.get(branch, 'not a branch of this node')}" for branch in missing)
            raise _Incomplete(f"{node.modelId}: waited-for branches will not run ({reasons})")
        await self._initial_record(node, regions, run)
        partial = NodeResult(node.modelId, "detect", detections, regions)
        scope = ActionScope(node.modelId, "actions", image, regions, run.values(partial))
        run.outcomes.extend(await run_actions(node.actions, scope, run.sink))
        branch_results = await self._run_branches(triggered, image, regions, run, skipped)
        if node.parallelActions:
            scope.list_name = "parallelActions"
            scope.branch_values = _branch_values(node, branch_results, run.context.reads)
            scope.values["session_id"] = run.session_id
            run.outcomes.extend(await run_actions(node.parallelActions, scope, run.sink))
        return NodeResult(node.modelId, "detect", detections, regions, branches=branch_results,
                          skipped_branches=skipped)

    async def _initial_record(self, node: Node, regions: Mapping[str, Box], run: _Run) -> None:
        if not (self._postgres and node.multiClass and all(cls in regions for cls in INITIAL_RECORD_CLASSES)):
            return
        if run.sink is None:
            return
        session_id = str(uuid.uuid4())
        captured = run.context.captured_at.strftime("%Y-%m-%dT%H-%M-%S")
        try:
            await run.sink.create_initial_record(run.context.display_id, captured, session_id)
            status: Literal["done", "queued"] = "queued" if queues_writes(run.sink) else "done"
            outcome = ActionOutcome(node.modelId, "initial_record", 0, "postgresql_insert", status, session_id)
        except Exception as exc:
            log.error("initial record failed", extra={"node": node.modelId, "error": f"{type(exc).__name__}: {exc}"})
            outcome = ActionOutcome(node.modelId, "initial_record", 0, "postgresql_insert", "failed",
                                    f"{type(exc).__name__}: {exc}")
        # The generated id keys this frame's writes even if the insert failed: the later upsert creates the row.
        run.session_id = session_id
        run.outcomes.append(outcome)

    async def _run_branches(self, branches: list[Node | OcrNode], image: Image, regions: Mapping[str, Box],
                            run: _Run, skipped: dict[str, str]) -> dict[str, NodeResult]:
        async def one(branch: Node | OcrNode) -> tuple[str, NodeResult | None]:
            try:
                return branch.modelId, await self._run_branch(branch, image, regions, run)
            except _Incomplete as exc:  # a nested node's waits failed: that subtree writes nothing
                skipped[branch.modelId] = f"incomplete: {exc}"
                return branch.modelId, None
            except Exception as exc:
                log.error("branch failed", extra={"node": branch.modelId, "error": f"{type(exc).__name__}: {exc}"})
                skipped[branch.modelId] = f"failed: {type(exc).__name__}: {exc}"
                return branch.modelId, None

        async def in_order(sequential: list[Node | OcrNode]) -> list[tuple[str, NodeResult | None]]:
            return [await one(branch) for branch in sequential]

        parallel = [branch for branch in branches if branch.parallel]
        sequential = [branch for branch in branches if not branch.parallel]
        parallel_pairs, sequential_pairs = await asyncio.gather(
            asyncio.gather(*(one(branch) for branch in parallel)), in_order(sequential))
        return {model_id: result for model_id, result in [*sequential_pairs, *parallel_pairs] if result is not None}

    async def _run_branch(self, branch: Node | OcrNode, image: Image, regions: Mapping[str, Box],
                          run: _Run) -> NodeResult | None:
        # Text is read on every frame: a visit votes the reads (a classification is reused while the car stays).
        reusable = (run.reuse is not None and isinstance(branch, Node) and branch.crop and not branch.actions
                    and not branch.branches and self._archive.models[branch.modelId].task == "classify")
        if not reusable or run.reuse is None:
            return await self._run_node(branch, self._branch_input(branch, image, regions), run, regions)
        crop_class = triggering.crop_class(branch)
        assert crop_class is not None  # a cropping branch runs only when its crop class was detected
        box = regions[crop_class].xyxy
        now = time.monotonic()
        cached = run.reuse.lookup(branch.modelId, box, now)
        if cached is not None:
            return cached
        result = await self._run_node(branch, self._branch_input(branch, image, regions), run, regions)
        if result is not None:
            run.reuse.store(branch.modelId, box, result, now, (image.shape[1], image.shape[0]))
        return result

    @staticmethod
    def _branch_input(branch: Node | OcrNode, image: Image, regions: Mapping[str, Box]) -> Image:
        crop_class = triggering.crop_class(branch)
        if crop_class is None:
            return image
        cropped = cropping.crop(image, regions[crop_class].xyxy)
        if cropped is None:
            raise ValueError(f"crop of {crop_class!r} is empty")
        if isinstance(branch, Node) and branch.resizeTarget is not None:
            cropped = cropping.resize(cropped, branch.resizeTarget)
        return np.ascontiguousarray(cropped)
