"""Change gating: the detector skips an unchanged picture, and no visit is ever lost or mislabelled for it.

Three levels: the gate on drawn pictures; the visit tracker's side (a gated frame is the last processed frame
again, never a frame without the car); and ``DisplayProcessor`` (what camera pods and ``detector pipeline run``
run) on synthetic scenes with a stand-in pipeline and on the fixture videos with the real models (cars.mp4 and
pump.mp4, whose frame-index strip flips like a clock overlay: with it masked, and with the default settings).
tests/camera_pod/test_visit_answers.py replays the fixture video at every cadence with gating too.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from camera_pod.gating import ChangeGate, GateSettings, Look
from camera_pod.inference import selection
from camera_pod.inference.models import Image
from camera_pod.mpta.loading import ArchiveStore
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import FrameResult
from camera_pod.pipeline.reuse import ClassificationReuse
from camera_pod.processing import DisplayProcessor, Processed
from camera_pod.settings import PodSettings
from camera_pod.streams.frames import to_bgr
from camera_pod.visits import PENDING_PATIENCE_S, VisitTracker
from tests.camera_pod.test_visit_cadence import DRIVE_S, Car, result, scene_frame
from tests.conftest import FIXTURES

EPOCH = 1_700_000_000.0
STRIP = (0.0, 0.0, 1.0, 0.06)  # the fixture videos' frame-index strip: 16 black/white cells flipping every frame


def background(seed: int = 7) -> Image:
    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.normal(110, 25, (12, 16)).astype(np.float32), (640, 480), interpolation=cv2.INTER_CUBIC)
    return np.clip(low[..., None] + rng.normal(0, 4, (480, 640, 3)), 0, 255).astype(np.uint8)


BACKGROUND = background()
NOISY = [np.clip(BACKGROUND + np.random.default_rng(seed).normal(0, 2.0, BACKGROUND.shape[:2])[..., None], 0, 255)
         .astype(np.uint8) for seed in range(8)]  # camera noise, a different draw per frame


def picture(box: tuple[int, int, int, int] | None = None, *, gain: float = 1.0, seed: int | None = None) -> Image:
    """The background (with camera noise when ``seed`` is given) with a car-like block (body, windows, wheels) in
    ``box``, under lighting ``gain``."""
    image = (BACKGROUND if seed is None else NOISY[seed % len(NOISY)]).copy()
    if box is not None:
        x1, y1, x2, y2 = box
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (40, 40, 200), -1)
        for k in range(3):
            wx = x1 + (x2 - x1) * (k + 1) // 5
            cv2.rectangle(image, (wx, y1 + 10), (wx + 25, y1 + 45), (95, 75, 55), -1)
        for wx in (x1 + (x2 - x1) // 5, x1 + 4 * (x2 - x1) // 5):
            cv2.circle(image, (wx, y2 - 15), 15, (20, 20, 20), -1)
    if gain != 1.0:
        image = np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return image


def looked(gate: ChangeGate, image: Image, at: float, *, busy: bool = False) -> Look:
    """The gate's verdict; a frame it lets through is one the detector ran on."""
    look = gate.look(image, at, busy=busy)
    if look.run:
        gate.ran(look, at)
    return look


# ---- the gate --------------------------------------------------------------------------------------------------

def test_the_first_frame_runs_and_the_same_picture_is_gated() -> None:
    gate = ChangeGate()
    assert looked(gate, picture(), 0.0).outcome == "changed"
    assert [looked(gate, picture(), 0.1 * k).outcome for k in range(1, 10)] == ["gated"] * 9


def test_camera_noise_and_a_lighting_change_are_no_change() -> None:
    gate = ChangeGate()
    looked(gate, picture((220, 200, 420, 320)), 0.0)
    for k, gain in enumerate((1.03, 0.97, 1.08, 0.93), start=1):
        look = looked(gate, picture((220, 200, 420, 320), gain=gain, seed=k), 0.1 * k)
        assert look.outcome == "gated", (gain, look.change)


@pytest.mark.parametrize("box", [(0, 200, 40, 320), (600, 200, 640, 320)], ids=["left", "right"])
def test_a_car_driving_in_is_a_change_from_its_first_frame(box: tuple[int, int, int, int]) -> None:
    gate = ChangeGate()
    looked(gate, picture(), 0.0)
    assert looked(gate, picture(box), 0.1).outcome == "changed"


@pytest.mark.parametrize("shift", [2, 3, 4, 8, 16])
def test_a_standing_car_starting_to_leave_is_a_change_once_it_moved_6_px(shift: int) -> None:
    """Compared with the frame the detector last ran on, a creeping car's change adds up from frame to frame."""
    gate = ChangeGate()
    looked(gate, picture((220, 200, 420, 320)), 0.0)
    moved = next(k * shift for k in range(1, 10)
                 if looked(gate, picture((220 + k * shift, 200, 420 + k * shift, 320)), 0.1 * k).run)
    assert moved - shift < 6, "seen on the first frame that has it 6 px or more from where it stood"


def test_a_passer_by_is_no_change() -> None:
    gate = ChangeGate()
    looked(gate, picture((220, 200, 420, 320)), 0.0)
    walker = picture((220, 200, 420, 320))
    cv2.rectangle(walker, (500, 380), (512, 434), (150, 60, 40), -1)
    assert looked(gate, walker, 0.1).outcome == "gated"


@pytest.mark.parametrize(("ignore", "expected"), [((), "changed"), ((STRIP,), "gated")])
def test_an_ignored_region_is_no_change(ignore: tuple[tuple[float, float, float, float], ...],
                                        expected: str) -> None:
    """A clock overlay (here: the fixture videos' frame-index strip) changes every frame."""
    gate = ChangeGate(GateSettings(ignore=ignore))
    first = picture()
    first[:24, :] = 0
    looked(gate, first, 0.0)
    second = picture()
    second[:24, :320] = 255  # eight cells flip at once (frame 127 -> 128)
    assert looked(gate, second, 0.1).outcome == expected


def test_the_detector_runs_at_least_every_max_skip_s_and_whenever_a_visit_needs_it() -> None:
    gate = ChangeGate(GateSettings(max_skip_s=2.0))
    outcomes = [looked(gate, picture(), 0.1 * k).outcome for k in range(41)]
    assert [0.1 * k for k, outcome in enumerate(outcomes) if outcome != "gated"] == pytest.approx([0.0, 2.0, 4.0])
    assert looked(gate, picture(), 4.1, busy=True).outcome == "visit"
    assert looked(gate, picture(), 3.0).outcome == "refresh", "a capture time going back never waits"


def test_a_reset_or_a_new_picture_size_runs_the_next_frame() -> None:
    gate = ChangeGate()
    looked(gate, picture(), 0.0)
    gate.reset()
    assert looked(gate, picture(), 0.1).outcome == "changed"
    assert looked(gate, picture()[100:400, 50:600], 0.2).outcome == "changed", "a crop view, another size"
    assert looked(gate, picture()[100:400, 50:600], 0.3).outcome == "gated"


@pytest.mark.parametrize("value", ["0,0,1", "0.5,0,0.2,1", "0,0,1,1.5", "a,b,c,d"])
def test_bad_ignored_regions_are_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_GATING_IGNORE", value)
    with pytest.raises(ValidationError):
        PodSettings()


def test_ignored_regions_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_GATING_IGNORE", "0,0,1,0.06; 0.8,0.9,1,1")
    assert PodSettings().gating_ignore == (STRIP, (0.8, 0.9, 1.0, 1.0))


# ---- the visit tracker's side ----------------------------------------------------------------------------------

def standing_then_hidden(hold: bool) -> tuple[VisitTracker, list[bool]]:
    """A car announced, then 20 s of gated frames (held, or not told at all), then two processed frames in which
    a passer-by hides it, then the car again. Returns the tracker and which frames announced a (new) visit."""
    tracker = VisitTracker(stable_frames=3, expected_interval_s=0.1)
    box = (220, 200, 420, 320)
    announced = [bool(tracker.observe(result(box), picture(box), EPOCH + 0.1 * k)) for k in range(20)]
    for k in range(20, 220):
        if hold:
            tracker.hold(EPOCH + 0.1 * k)
    for k in range(220, 240):
        frame = None if k < 222 else box
        announced.append(bool(tracker.observe(result(frame), picture(frame), EPOCH + 0.1 * k)))
    return tracker, announced


def test_a_gated_frame_never_counts_as_a_frame_without_the_car() -> None:
    _, announced = standing_then_hidden(hold=True)
    assert sum(announced) == 1, "the car hidden for two frames after a still period is still the same visit"
    _, unheld = standing_then_hidden(hold=False)
    assert sum(unheld) == 2, "without hold() the stale last sighting ends the visit: this test has teeth"


def test_a_visit_needs_every_frame_until_announced_and_while_its_car_is_missing() -> None:
    tracker = VisitTracker(stable_frames=3, expected_interval_s=0.1)
    box = (220, 200, 420, 320)
    assert not tracker.needs_every_frame(EPOCH), "nothing in view"
    tracker.observe(result(box), picture(box), EPOCH)
    assert tracker.needs_every_frame(EPOCH), "a car not announced yet"
    k = next(k for k in range(1, 50) if tracker.observe(result(box), picture(box), EPOCH + 0.1 * k))
    assert not tracker.needs_every_frame(EPOCH + 0.1 * k), "announced and in view"
    tracker.observe(result(None), picture(), EPOCH + 0.1 * (k + 1))
    assert tracker.needs_every_frame(EPOCH + 0.1 * (k + 1)), "missing from the last frame, its visit not ended"
    unclassified = VisitTracker(stable_frames=3, expected_interval_s=0.1)
    unclassified.observe(result((0, 200, 200, 320)), picture(), EPOCH)  # cut by the frame edge: never announced
    assert unclassified.needs_every_frame(EPOCH + PENDING_PATIENCE_S - 0.1)
    assert not unclassified.needs_every_frame(EPOCH + PENDING_PATIENCE_S + 0.1)


# ---- the processor on synthetic scenes (a stand-in pipeline) ----------------------------------------------------

@dataclass
class SceneEngine:
    """Stands in for the pipeline: the scene's detections and classifications at the frame's capture time (none
    while something passes in front of the car: ``hidden``)."""

    cars: list[Car]
    hidden: tuple[float, float] = (-1.0, -1.0)
    ran_at: list[float] = field(default_factory=list)

    async def process(self, frame: Image, context: FrameContext, *, act: bool = True,
                      reuse: ClassificationReuse | None = None, share: Hashable | None = None) -> FrameResult:
        t = round(context.captured_at.timestamp() - EPOCH, 3)
        if not act:
            self.ran_at.append(t)
        return scene_frame([] if self.hidden[0] <= t < self.hidden[1] else self.cars, t)


def box_at(cars: list[Car], t: float) -> tuple[int, int, int, int] | None:
    return next((box for car in cars if (box := car.box(t)) is not None), None)


def scene_picture(engine: SceneEngine, t: float, seed: int) -> Image:
    image = picture(box_at(engine.cars, t), seed=seed)
    if engine.hidden[0] <= t < engine.hidden[1]:  # a van passing close to the camera
        cv2.rectangle(image, (150, 120), (500, 400), (200, 200, 200), -1)
    return image


def run_scene(cars: list[Car], interval: float, until: float, settings: PodSettings | None = None,
              hidden: tuple[float, float] = (-1.0, -1.0)) -> tuple[SceneEngine, list[Processed], list[float]]:
    engine = SceneEngine(cars, hidden)
    tracker = VisitTracker(stable_frames=3, expected_interval_s=interval)
    processor = DisplayProcessor.from_settings("d;c", settings or PodSettings(), write=False)
    times = [round(k * interval, 3) for k in range(int(until / interval) + 1)]

    async def run() -> list[Processed]:
        return [await processor.process(engine, tracker, scene_picture(engine, t, k), EPOCH + t)
                for k, t in enumerate(times)]

    return engine, asyncio.run(run()), times


def motion_starts(cars: list[Car], times: list[float]) -> list[float]:
    """The first frame of every arrival and of every departure: the detector must run on each."""
    starts = []
    for car in cars:
        starts.append(next(t for t in times if car.box(t) is not None))
        starts.append(next(t for t in times if t > car.leaves and car.box(t) != car.box(car.leaves)))
    return starts


def announced(processed: list[Processed]) -> list[tuple[str, str, bool]]:
    return [(a.decision.fields["brand"], a.decision.visit_id, a.decision.update)
            for p in processed for a in p.announcements]


def announced_at(processed: list[Processed], times: list[float]) -> list[float]:
    return [t for p, t in zip(processed, times, strict=True) for a in p.announcements if not a.decision.update]


@pytest.mark.parametrize("interval", [0.04, 0.1, 0.2, 1.0])
def test_a_car_arriving_after_a_long_still_period_is_announced(interval: float) -> None:
    """As soon as without gating (test_visit_cadence's bound): a car not announced yet has the detector every frame."""
    car = Car(arrives=30.0, leaves=45.0)
    engine, processed, times = run_scene([car], interval, until=50.0)
    assert [(brand, update) for brand, _, update in announced(processed)] == [("Toyota", False)]
    assert announced_at(processed, times)[0] <= car.arrives + DRIVE_S + max(2.5, 2 * interval)
    assert set(motion_starts([car], times)) <= set(engine.ran_at)
    if interval <= 0.2:
        assert sum(p.gated for p in processed) >= 0.7 * len(processed), "the still picture is gated"


@pytest.mark.parametrize("interval", [0.04, 0.1, 0.2, 1.0])
def test_a_departure_then_a_car_of_another_brand_is_a_new_visit(interval: float) -> None:
    first = Car(arrives=3.0, leaves=20.0)
    second = Car(arrives=20.0 + DRIVE_S + 5.0, leaves=40.0, brand="Ford", body="Pickup")
    engine, processed, times = run_scene([first, second], interval, until=45.0)
    visits = announced(processed)
    assert [(brand, update) for brand, _, update in visits] == [("Toyota", False), ("Ford", False)]
    assert visits[0][1] != visits[1][1]
    assert set(motion_starts([first, second], times)) <= set(engine.ran_at)


@pytest.mark.parametrize("interval", [0.04, 0.1, 0.2])
def test_a_car_hidden_for_a_moment_after_a_still_period_is_still_the_same_visit(interval: float) -> None:
    """A van passes in front of the announced car after 20 s of gated frames: the detector sees no car on a few
    frames, which must not end a visit whose car was last *processed* 2 s before (gated frames still show it)."""
    car = Car(arrives=3.0, leaves=40.0)
    _, processed, _ = run_scene([car], interval, until=45.0, hidden=(25.0, 25.0 + 2.5 * interval))
    assert [(brand, update) for brand, _, update in announced(processed)] == [("Toyota", False)]


def test_the_same_car_back_after_leaving_is_a_new_visit() -> None:
    first = Car(arrives=3.0, leaves=15.0)
    again = Car(arrives=15.0 + DRIVE_S + 8.0, leaves=35.0)
    _, processed, _ = run_scene([first, again], 0.1, until=40.0)
    assert [brand for brand, _, update in announced(processed) if not update] == ["Toyota", "Toyota"]


def test_without_gating_every_frame_runs() -> None:
    car = Car(arrives=3.0, leaves=20.0)
    engine, processed, times = run_scene([car], 0.1, until=25.0, settings=PodSettings(gating=False))
    assert not any(p.gated for p in processed) and len(engine.ran_at) == len(times)
    assert [brand for brand, _, _ in announced(processed)] == ["Toyota"]


def test_a_standing_car_is_checked_at_least_every_max_skip_s() -> None:
    car = Car(arrives=3.0, leaves=30.0)
    engine, _, _ = run_scene([car], 0.1, until=30.0, settings=PodSettings(gating_max_skip_s=1.5))
    standing = [t for t in engine.ran_at if car.arrives + DRIVE_S + 3.0 <= t <= car.leaves]
    assert standing and max(np.diff(standing)) <= 1.5 + 1e-6


def test_the_picture_of_a_gated_frame_is_the_last_processed_one() -> None:
    car = Car(arrives=1.0, leaves=20.0)
    _, processed, _ = run_scene([car], 0.1, until=20.0)
    last = None
    for p in processed:
        if p.gated:
            assert p.result is last
        last = p.result


# ---- the fixture videos through the real models ----------------------------------------------------------

def decoded(name: str) -> Iterator[Image]:
    with av.open(str(FIXTURES / "media" / name)) as container:
        for frame in container.decode(video=0):
            yield to_bgr(frame)


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory, fixture_mpta: Path) -> Iterator[PipelineEngine]:
    cache = tmp_path_factory.mktemp("gating-models")
    archive = asyncio.run(ArchiveStore(cache, load_model=selection.model_loader(cache)).load(str(fixture_mpta)))
    engine = PipelineEngine(archive, None)
    yield engine
    engine.close()


def through_a_pod(engine: PipelineEngine, video: str, settings: PodSettings) -> tuple[list[Processed], dict]:
    truth = json.loads((FIXTURES / "media" / video).with_suffix(".json").read_text())
    tracker = VisitTracker(stable_frames=3, expected_interval_s=1 / truth["fps"])
    processor = DisplayProcessor.from_settings("d;c", settings, write=False)

    async def run() -> list[Processed]:
        return [await processor.process(engine, tracker, image, EPOCH + index / truth["fps"])
                for index, image in enumerate(decoded(video))]

    return asyncio.run(run()), truth


@pytest.mark.parametrize("video", ["cars.mp4", "pump.mp4"])
@pytest.mark.parametrize("ignore", [(), (STRIP,)], ids=["default", "strip-masked"])
def test_every_visit_of_the_fixture_videos_is_announced_once_and_right_with_gating(
        real_engine: PipelineEngine, video: str, ignore: tuple[tuple[float, float, float, float], ...]) -> None:
    processed, truth = through_a_pod(real_engine, video, PodSettings(gating_ignore=ignore))
    firsts = [a.decision for p in processed for a in p.announcements if not a.decision.update]
    finals = {a.decision.visit_id: a.decision.fields for p in processed for a in p.announcements}
    expected = [{"brand": v["brand"], "body_type": v["body_type"]} for v in truth["visits"]]
    assert [d.fields for d in firsts] == expected
    assert [finals[d.visit_id] for d in firsts] == expected
    ran = {index for index, p in enumerate(processed) if not p.gated}
    for visit in truth["visits"]:
        stopped_last = visit["stopped_frames"][1]
        assert visit["first_frame"] in ran, f"{video}: the arrival of the {visit['brand']} was gated"
        assert {stopped_last + 1, stopped_last + 2} & ran, f"{video}: the departure of the {visit['brand']} was gated"
    gated = sum(p.gated for p in processed) / len(processed)
    print(f"{video} {'strip masked' if ignore else 'default'}: {gated:.3f} of {len(processed)} frames gated")
    if ignore and video == "pump.mp4":
        assert gated >= 0.7, "cars standing still most of the time: the detector skips most frames"


def test_pipeline_results_on_gated_frames_match_a_run_of_the_detector(real_engine: PipelineEngine) -> None:
    """Sampled: the picture of a gated frame gives what the last processed frame gave (same car, same answer)."""
    processed, truth = through_a_pod(real_engine, "pump.mp4", PodSettings(gating_ignore=(STRIP,)))
    images = list(decoded("pump.mp4"))
    context = FrameContext("d;c", "d")
    gated = [index for index, p in enumerate(processed) if p.gated][:: max(1, math.ceil(len(processed) / 40))]

    def regions(result: FrameResult) -> set[str]:
        return set(result.root.regions) if result.root is not None else set()

    async def check() -> None:
        for index in gated:
            fresh = await real_engine.process(images[index], context, act=False)
            assert fresh.classified_fields() == processed[index].result.classified_fields(), index
            assert regions(fresh) == regions(processed[index].result), index

    asyncio.run(check())
    assert truth["frame_count"] == len(images)
