"""Visits hold at every cadence the backend may send, and through stalls: synthetic timelines of capture times.

A scene is a function of capture time (cars drive in from the left edge for 1.5 s, stand, drive out for 1.5 s);
the camera samples it every ``interval`` seconds, the way a snapshot camera or a paced RTSP stream does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from camera_pod.inference.detections import Box, Classification, Detections
from camera_pod.pipeline.results import FrameResult, NodeResult
from camera_pod.visits import Cadence, VisitDecision, VisitTracker, agreeing_frames

NAMES = ("Car", "Frontal")
IMAGE = np.zeros((480, 640, 3), np.uint8)
DRIVE_S = 1.5
PARK_X = 220
WIDTH = 200
INTERVALS = [0.2, 1.0, 5.0, 30.0]


@dataclass(frozen=True)
class Car:
    arrives: float
    leaves: float
    brand: str = "Toyota"
    body: str = "Sedan"
    body_while_driving: str | None = None  # what the classifier says while the car still moves

    def box(self, t: float) -> tuple[int, int, int, int] | None:
        if not self.arrives <= t <= self.leaves + DRIVE_S:
            return None
        if t < self.arrives + DRIVE_S:
            x = -WIDTH + (PARK_X + WIDTH) * (t - self.arrives) / DRIVE_S
        elif t <= self.leaves:
            x = PARK_X
        else:
            x = PARK_X + (640 - PARK_X) * (t - self.leaves) / DRIVE_S
        x1, x2 = max(0, round(x)), min(640, round(x) + WIDTH)
        return (x1, 200, x2, 320) if x2 - x1 >= 20 else None

    def moving(self, t: float) -> bool:
        return not self.arrives + DRIVE_S <= t <= self.leaves


def result(box: tuple[int, int, int, int] | None, brand: str = "Toyota", body: str = "Sedan",
           confidence: float = 0.9) -> FrameResult:
    if box is None:
        return FrameResult("nothing", NodeResult("det", "detect", Detections.empty(NAMES), {}))
    car = Box("Car", 0.9, box)
    detections = Detections(np.array([box], np.float32), np.array([0.9], np.float32), np.array([0]), NAMES)
    branches = {"brand_cls": NodeResult("brand_cls", "classify", result_field="brand",
                                        classification=Classification(brand, confidence)),
                "body_cls": NodeResult("body_cls", "classify", result_field="body_type",
                                       classification=Classification(body, confidence))}
    return FrameResult("detected", NodeResult("det", "detect", detections, {"Car": car}, branches=branches))


def scene_frame(cars: list[Car], t: float) -> FrameResult:
    for car in cars:
        box = car.box(t)
        if box is not None:
            body = car.body_while_driving if car.body_while_driving and car.moving(t) else car.body
            return result(box, car.brand, body)
    return result(None)


def run(cars: list[Car], interval: float, until: float, *, start: float = 0.0, stall: tuple[float, float] | None = None,
        tracker: VisitTracker | None = None, prior: bool = True) -> tuple[VisitTracker, list[VisitDecision]]:
    """Sample the scene every ``interval`` s; frames captured during ``stall`` (from, to) are never processed."""
    tracker = tracker or VisitTracker(stable_frames=3, expected_interval_s=interval if prior else None)
    decisions = []
    for index in range(int((until - start) / interval) + 1):
        t = start + index * interval
        if stall is not None and stall[0] <= t < stall[1]:
            continue
        decisions.extend(tracker.observe(scene_frame(cars, t), IMAGE, captured_at=1_700_000_000.0 + t))
    return tracker, decisions


def dwell(interval: float) -> float:
    """Long enough for several frames of a standing car at this interval (60 s at most, as a pump visit)."""
    return max(60.0, 6 * interval)


@pytest.mark.parametrize("interval", INTERVALS)
def test_a_standing_car_is_announced_exactly_once(interval: float) -> None:
    car = Car(arrives=3.0, leaves=3.0 + dwell(interval))
    _, decisions = run([car], interval, until=car.leaves + 10 * interval)
    assert [(d.fields, d.update) for d in decisions] == [({"brand": "Toyota", "body_type": "Sedan"}, False)]


@pytest.mark.parametrize("interval", INTERVALS)
def test_the_announcement_comes_within_a_few_frames_of_the_car_standing(interval: float) -> None:
    car = Car(arrives=3.0, leaves=3.0 + dwell(interval))
    _, decisions = run([car], interval, until=car.leaves)
    standing = car.arrives + DRIVE_S
    assert len(decisions) == 1
    assert decisions[0].captured_at - 1_700_000_000.0 <= standing + max(2.5, 2 * interval)


@pytest.mark.parametrize("interval", INTERVALS)
def test_a_car_leaving_and_another_arriving_are_two_visits(interval: float) -> None:
    first = Car(arrives=3.0, leaves=3.0 + dwell(interval))
    gap = max(5.0, 3 * interval)  # the pump stays empty for a few frames
    second = Car(arrives=first.leaves + DRIVE_S + gap, leaves=first.leaves + DRIVE_S + gap + dwell(interval),
                 brand="Ford", body="Pickup")
    _, decisions = run([first, second], interval, until=second.leaves + 10 * interval)
    assert [(d.fields["brand"], d.update) for d in decisions] == [("Toyota", False), ("Ford", False)]
    assert decisions[0].visit_id != decisions[1].visit_id


@pytest.mark.parametrize("interval", INTERVALS)
def test_the_same_car_model_twice_is_still_two_visits(interval: float) -> None:
    first = Car(arrives=3.0, leaves=3.0 + dwell(interval))
    gap = max(5.0, 3 * interval)
    second = Car(arrives=first.leaves + DRIVE_S + gap, leaves=first.leaves + DRIVE_S + gap + dwell(interval))
    _, decisions = run([first, second], interval, until=second.leaves + 10 * interval)
    assert [d.update for d in decisions] == [False, False]
    assert decisions[0].visit_id != decisions[1].visit_id


@pytest.mark.parametrize("interval", INTERVALS)
def test_a_pipeline_stall_does_not_split_a_visit(interval: float) -> None:
    """No frame processed for many seconds (a slow action, Redis down, an overloaded node): the car is still there."""
    car = Car(arrives=3.0, leaves=3.0 + dwell(interval) + 60.0)
    stall_s = max(8.0, 3 * interval)
    stall = (car.arrives + DRIVE_S + 2.5 * interval + 3.0, car.arrives + DRIVE_S + 2.5 * interval + 3.0 + stall_s)
    tracker, decisions = run([car], interval, until=car.leaves, stall=stall)
    assert [d.update for d in decisions] == [False]
    assert len(tracker.visits) == 1


def test_a_stall_while_the_car_drives_in_does_not_split_or_hide_the_visit() -> None:
    """The tracker cannot follow a car across a stall; the visit it was in continues."""
    car = Car(arrives=3.0, leaves=60.0)
    tracker, decisions = run([car], 0.04, until=59.0, stall=(3.3, 10.0))
    assert [d.update for d in decisions] == [False]
    assert len(tracker.visits) == 1


@pytest.mark.parametrize("interval", [0.2, 1.0, 5.0])
def test_one_frame_without_the_car_does_not_end_its_visit(interval: float) -> None:
    """A single missed detection (someone walks by): departure needs frames that show no vehicle, more than one."""
    car = Car(arrives=3.0, leaves=3.0 + dwell(interval))
    tracker = VisitTracker(stable_frames=3, expected_interval_s=interval)
    decisions = []
    for index in range(int((car.leaves - 1) / interval)):
        t = index * interval
        frame = result(None) if index == int((car.arrives + DRIVE_S + 20) / interval) else scene_frame([car], t)
        decisions.extend(tracker.observe(frame, IMAGE, captured_at=t))
    assert [d.update for d in decisions] == [False]


@pytest.mark.parametrize("interval", [0.04, 0.2, 1.0])
def test_a_car_announced_while_arriving_would_be_wrong_so_it_waits_until_it_stands(interval: float) -> None:
    """The BMW SUV case: classified 'Pickup' while it drives in; the first announcement is already 'SUV'."""
    car = Car(arrives=3.0, leaves=40.0, brand="BMW", body="SUV", body_while_driving="Pickup")
    _, decisions = run([car], interval, until=45.0)
    assert [(d.fields["body_type"], d.update) for d in decisions] == [("SUV", False)]


def test_a_better_answer_after_the_announcement_is_an_update() -> None:
    """Announced from what it saw; later frames outvote it: an update of the same visit, once."""
    tracker = VisitTracker(stable_frames=3, expected_interval_s=1.0)
    frames = [result((200, 200, 400, 320), body="Pickup")] * 4 + [result((200, 200, 400, 320), body="SUV")] * 20
    decisions = []
    for index, frame in enumerate(frames):
        decisions.extend(tracker.observe(frame, IMAGE, captured_at=float(index)))
    assert [(d.fields["body_type"], d.update) for d in decisions] == [("Pickup", False), ("SUV", True)]
    assert len({d.visit_id for d in decisions}) == 1


def test_one_odd_frame_does_not_change_the_answer() -> None:
    tracker = VisitTracker(stable_frames=3, expected_interval_s=0.2)
    frames = [result((200, 200, 400, 320))] * 10 + [result((200, 200, 400, 320), body="SUV", confidence=1.0)]
    frames += [result((200, 200, 400, 320))] * 10
    decisions = []
    for index, frame in enumerate(frames):
        decisions.extend(tracker.observe(frame, IMAGE, captured_at=index * 0.2))
    assert [(d.fields["body_type"], d.update) for d in decisions] == [("Sedan", False)]


@pytest.mark.parametrize("interval", INTERVALS)
def test_the_measured_interval_wins_over_a_wrong_configuration(interval: float) -> None:
    """Configured as 25 frames/s (or not at all), the camera really sends a frame every ``interval`` s."""
    car = Car(arrives=3.0, leaves=3.0 + dwell(interval))
    for prior in (0.04, None):
        tracker = VisitTracker(stable_frames=3, expected_interval_s=prior)
        _, decisions = run([car], interval, until=car.leaves + 10 * interval, tracker=tracker)
        assert [d.update for d in decisions] == [False]
        assert tracker.cadence.interval_s == pytest.approx(interval)


def test_the_measured_interval_ignores_a_stall() -> None:
    cadence = Cadence(prior_s=1.0)
    assert cadence.interval_s == 1.0
    for t in [0.0, 0.2, 0.4, 0.6, 9.0, 9.2, 9.4, 9.6]:
        cadence.tick(t)
    assert cadence.interval_s == pytest.approx(0.2)
    cadence.tick(5.0)  # out of order: no negative interval
    assert cadence.interval_s == pytest.approx(0.2)


@pytest.mark.parametrize(("stable", "interval", "frames"), [
    (3, 0.04, 11), (3, 0.1, 5), (3, 0.2, 3), (3, 0.5, 2), (3, 1.0, 2), (3, 5.0, 2), (3, 10.0, 2), (3, 30.0, 1),
    (1, 0.04, 1), (5, 0.2, 5), (5, 1.0, 2),
])
def test_agreeing_frames_scale_with_the_interval(stable: int, interval: float, frames: int) -> None:
    assert agreeing_frames(stable, interval) == frames


def test_frames_seconds_apart_without_the_car_end_the_visit_only_after_two_of_them() -> None:
    """At a 30 s interval the pump is seen empty twice (60 s) before the next car is a new visit."""
    tracker = VisitTracker(stable_frames=3, expected_interval_s=30.0)
    box = (200, 200, 400, 320)
    timeline = [result(box)] * 3 + [result(None)] + [result(box)] * 2 + [result(None)] * 2
    timeline += [result(box, brand="Ford", body="Pickup")] * 3
    decisions = []
    for index, frame in enumerate(timeline):
        decisions.extend(tracker.observe(frame, IMAGE, captured_at=30.0 * index))
    assert [(d.fields["brand"], d.update) for d in decisions] == [("Toyota", False), ("Ford", False)]


@pytest.mark.parametrize("interval", [0.04, 1.0, 30.0])
def test_a_car_that_moved_while_no_frame_was_processed_keeps_its_visit(interval: float) -> None:
    """Announced, then a stall (or the next snapshot) finds it pulled forward: the tracker lost it, its visit not."""
    tracker = VisitTracker(stable_frames=3, expected_interval_s=interval)
    timeline = [(index * interval, (100, 200, 300, 320)) for index in range(20)]
    timeline += [(20 * interval + 8.0 + index * interval, (380, 200, 580, 320)) for index in range(20)]
    decisions = []
    for at, box in timeline:
        decisions.extend(tracker.observe(result(box), IMAGE, captured_at=at))
    assert [d.update for d in decisions] == [False]
    assert len(tracker.visits) == 1


def two_cars(big: tuple[int, int, int, int] | None, small: tuple[int, int, int, int], big_brand: str,
             small_brand: str) -> FrameResult:
    boxes = [box for box in (big, small) if box is not None]
    detections = Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32),
                            np.zeros(len(boxes), np.int64), NAMES)
    brand = big_brand if big is not None else small_brand
    main = big or small
    branches = {"brand_cls": NodeResult("brand_cls", "classify", result_field="brand",
                                        classification=Classification(brand, 0.9))}
    return FrameResult("detected", NodeResult("det", "detect", detections, {"Car": Box("Car", 0.9, main)},
                                              branches=branches))


def test_the_car_waiting_behind_is_a_visit_of_its_own_when_it_moves_up() -> None:
    """No empty frame between them: the tracker saw both cars at once, so the one moving up is another car."""
    tracker = VisitTracker(stable_frames=3, expected_interval_s=0.2)
    decisions = []
    timeline = [two_cars((200, 200, 440, 340), (20, 60, 120, 110), "Toyota", "Ford") for _ in range(20)]
    timeline += [two_cars(None, (20 + 10 * i, 60 + 8 * i, 120 + 18 * i, 110 + 13 * i), "", "Ford") for i in range(15)]
    timeline += [two_cars(None, (170, 180, 390, 305), "", "Ford") for _ in range(20)]
    for index, frame in enumerate(timeline):
        decisions.extend(tracker.observe(frame, IMAGE, captured_at=index * 0.2))
    assert [(d.fields["brand"], d.update) for d in decisions] == [("Toyota", False), ("Ford", False)]
    assert decisions[0].visit_id != decisions[1].visit_id
