"""The roll budget: at most ``limit`` camera pods are replaced at once; the others wait their turn."""

from __future__ import annotations

from detector.contract.camerasubscription import CameraSubscriptionSpec
from detector_operator.handlers import revision_of
from detector_operator.manifests import PodDefaults
from detector_operator.rolling import RollBudget, rolls_under_way
from tests.operator.test_manifests import SPEC


def test_no_more_than_the_limit_roll_at_once_and_a_finished_roll_frees_its_slot() -> None:
    budget = RollBudget(limit=2)
    assert budget.take("ns/a", now=0) and budget.take("ns/b", now=0)
    assert not budget.take("ns/c", now=1), "the third waits"
    assert budget.take("ns/a", now=1), "a roll in progress keeps its slot"
    budget.release("ns/a")
    assert budget.take("ns/c", now=2) and budget.in_progress == 2


def test_a_roll_that_never_ends_stops_counting() -> None:
    budget = RollBudget(limit=1, stale_s=600)
    assert budget.take("ns/gone", now=0)  # its resource was deleted mid-roll: never released
    assert not budget.take("ns/next", now=599)
    assert budget.take("ns/next", now=601)


def test_the_pod_revision_follows_the_operator_defaults_but_not_the_displays() -> None:
    spec = CameraSubscriptionSpec.model_validate(SPEC)
    fewer_displays = CameraSubscriptionSpec.model_validate({**SPEC, "subscriptions": SPEC["subscriptions"][:1]})
    defaults = PodDefaults(image="camera:1")
    assert revision_of(spec, defaults) == revision_of(fewer_displays, defaults), "displays change live"
    assert revision_of(spec, defaults) != revision_of(spec, PodDefaults(image="camera:2")), "a new image rolls"
    assert revision_of(spec, defaults) != revision_of(spec, PodDefaults(image="camera:1", memory_limit="8Gi"))


def _pod(subscription: str, revision: str, *, going: bool = False) -> dict[str, object]:
    metadata: dict[str, object] = {"name": f"{subscription}-{revision}", "namespace": "ns",
                                   "labels": {"detector.gasstation.dev/subscription": subscription,
                                              "detector.gasstation.dev/revision": revision}}
    if going:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": metadata}


def test_rolls_under_way_are_read_off_the_pods_and_count_whatever_the_limit() -> None:
    pods = [_pod("a", "r1"), _pod("a", "r2"),  # mid-roll
            _pod("b", "r1"),  # settled
            _pod("c", "r1", going=True), _pod("c", "r2"),  # the old one already going: the roll has ended
            {"metadata": {"name": "other", "namespace": "ns", "labels": {}}}]
    assert rolls_under_way(pods) == {"ns/a"}
    budget = RollBudget(limit=1)
    assert budget.take("ns/x", now=0)
    budget.adopt("ns/a", now=0)
    assert budget.in_progress == 2 and not budget.take("ns/y", now=1), "an adopted roll holds its slot"
    budget.release("ns/a")
    budget.release("ns/x")
    assert budget.take("ns/y", now=2)
