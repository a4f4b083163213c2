"""The roll budget: at most ``limit`` camera pods are replaced at once; the others wait their turn."""

from __future__ import annotations

from detector.contract.camerasubscription import CameraSubscriptionSpec
from detector_operator.handlers import revision_of
from detector_operator.manifests import PodDefaults
from detector_operator.rolling import RollBudget
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
