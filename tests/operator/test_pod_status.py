"""Pod status → CameraSubscription status, and which old pods may go (pure functions, no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from detector.contract.camerasubscription import CameraSubscriptionStatus
from detector.contract.pods import PodHealth, StreamReport
from detector_operator.pod_status import PodView, stale_pods, summarize

NOW = 1_764_000_000.0
HEALTHY = PodHealth(ok=True, detail="frames flowing", report=StreamReport(
    online=True, state="streaming", fps=12.345, last_frame_at=NOW - 1, frames=10, reconnects=0, last_error=None,
    http_port=8080))


def pod(name: str = "cam-1-aaa", phase: str = "Running", ready: bool = True, **status: Any) -> PodView:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}, *status.pop("conditions", [])]
    return PodView.of({"metadata": {"name": name}, "status": {"phase": phase, "podIP": "10.1.2.3",
                                                              "conditions": conditions, **status}})


def status_of(current: PodView | None, health: PodHealth | None = HEALTHY,
              previous: CameraSubscriptionStatus | None = None) -> CameraSubscriptionStatus:
    return summarize(current, health, None, 2, 3, previous or CameraSubscriptionStatus(), NOW)


def test_a_ready_pod_with_frames_is_running() -> None:
    status = status_of(pod())
    assert (status.phase, status.fps, status.lastFrameTime, status.podIP) == \
        ("Running", 12.35, "2025-11-24T15:59:59Z", "10.1.2.3")
    assert status.conditions[0].status == "True" and status.observedGeneration == 3


@pytest.mark.parametrize(("view", "phase", "error"), [
    (pod(phase="Pending", ready=False, conditions=[{"type": "PodScheduled", "status": "False",
                                                     "reason": "Unschedulable",
                                                     "message": "0/3 nodes: Insufficient nvidia.com/gpu"}]),
     "Pending", "0/3 nodes: Insufficient nvidia.com/gpu"),
    (pod(phase="Pending", ready=False, containerStatuses=[{"restartCount": 0, "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "pull access denied"}}}]),
     "Degraded", "ImagePullBackOff: pull access denied"),
    (pod(phase="Pending", ready=False, containerStatuses=[{"state": {"waiting": {
        "reason": "CreateContainerConfigError", "message": 'secret "cam-url" not found'}}}]),
     "Degraded", 'CreateContainerConfigError: secret "cam-url" not found'),
    (pod(ready=False, containerStatuses=[{"restartCount": 2, "state": {"terminated": {"exitCode": 137,
                                                                                       "reason": "OOMKilled"}}}]),
     "Degraded", "OOMKilled: exit code 137 (restarts: 2)"),
    (pod(phase="Failed", ready=False, reason="Evicted", message="low on memory"), "Failed", "Evicted: low on memory"),
])
def test_pod_problems_become_phase_and_reason(view: PodView, phase: str, error: str) -> None:
    status = status_of(view, health=None)
    assert (status.phase, status.lastError) == (phase, error)
    assert status.conditions[0].status == "False"


def test_an_unhealthy_camera_is_degraded_with_the_stream_error() -> None:
    failing = HEALTHY.model_copy(update={"ok": False, "detail": "no frames", "report": HEALTHY.report.model_copy(
        update={"last_error": "401 Unauthorized"})})
    assert (status_of(pod(), failing).phase, status_of(pod(), failing).lastError) == ("Degraded", "401 Unauthorized")


def test_a_ready_pod_whose_health_cannot_be_read_is_degraded_with_the_reason() -> None:
    status = summarize(pod(), None, "health endpoint unreachable: ConnectTimeout", 2, 1,
                       CameraSubscriptionStatus(), NOW)
    assert (status.phase, status.lastError) == ("Degraded", "health endpoint unreachable: ConnectTimeout")


def test_transition_time_is_kept_while_readiness_does_not_change() -> None:
    first = summarize(pod(), HEALTHY, None, 2, 1, CameraSubscriptionStatus(), NOW)
    later = summarize(pod(), HEALTHY, None, 2, 1, first, NOW + 60)
    assert later.conditions[0].lastTransitionTime == first.conditions[0].lastTransitionTime
    degraded = summarize(pod(ready=False), None, "unreachable", 2, 1, later, NOW + 120)
    assert degraded.conditions[0].lastTransitionTime != first.conditions[0].lastTransitionTime


def test_a_replaced_pod_reason_stays_until_the_new_pod_runs() -> None:
    failed = summarize(None, None, None, 2, 1, CameraSubscriptionStatus(), NOW,
                       replaced=pod(phase="Failed", ready=False, reason="Evicted"))
    assert (failed.phase, failed.lastError) == ("Failed", "Evicted")
    restarting = summarize(pod(phase="Pending", ready=False), None, None, 2, 1, failed, NOW + 5)
    assert (restarting.phase, restarting.lastError) == ("Pending", "Evicted")
    assert summarize(pod(), HEALTHY, None, 2, 1, restarting, NOW + 30).lastError is None


def test_old_pods_go_once_the_new_one_is_ready_or_cannot_be_scheduled() -> None:
    old = pod("cam-1-old")
    assert stale_pods([old, pod("cam-1-new", phase="Pending", ready=False)],
                      pod("cam-1-new", phase="Pending", ready=False)) == []
    assert stale_pods([old, pod("cam-1-new")], pod("cam-1-new")) == ["cam-1-old"]
    waiting_for_gpu = pod("cam-1-new", phase="Pending", ready=False, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}])
    assert stale_pods([old, waiting_for_gpu], waiting_for_gpu) == ["cam-1-old"]
    assert stale_pods([pod("cam-1-old", ready=False)], None) == ["cam-1-old"]


def test_with_a_shared_state_volume_old_pods_go_at_once_and_terminating_ones_are_left_alone() -> None:
    old, new = pod("cam-1-old"), pod("cam-1-new", phase="Pending", ready=False)
    assert stale_pods([old], None, exclusive=True) == ["cam-1-old"], "a ready old pod goes before the new starts"
    assert stale_pods([old, new], new, exclusive=True) == ["cam-1-old"]
    assert stale_pods([old, new], new, exclusive=True) != stale_pods([old, new], new)
    leaving = PodView.of({"metadata": {"name": "cam-1-old", "deletionTimestamp": "2025-11-24T16:00:00Z"},
                          "status": {"phase": "Running"}})
    assert leaving.terminating and not pod("cam-1-old").terminating
    assert stale_pods([leaving], None, exclusive=True) == []
    assert stale_pods([leaving, pod("cam-1-new")], pod("cam-1-new")) == [], "deleted once, not on every round"
