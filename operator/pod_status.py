"""From a camera pod's Kubernetes status and its /healthz to the CameraSubscription's status (pure)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from detector.contract.camerasubscription import CameraSubscriptionStatus, Condition, Phase
from detector.contract.pods import PodHealth

# Container waiting reasons that will not fix themselves without someone acting.
STUCK_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class PodView:
    """The parts of a Pod object the operator reasons about."""

    name: str
    phase: str
    ready: bool
    ip: str | None
    unschedulable: str | None  # the scheduler's message when it cannot place the pod
    problem: str | None  # "Reason: message" from the status or a container state
    terminating: bool = False  # deleted, still shutting down (its containers may still run)

    @classmethod
    def of(cls, pod: dict[str, Any]) -> PodView:
        status = pod.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        scheduled = conditions.get("PodScheduled") or {}
        unschedulable = None
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            unschedulable = scheduled.get("message") or "Unschedulable"
        return cls(name=pod["metadata"]["name"], phase=status.get("phase") or "Pending",
                   ready=(conditions.get("Ready") or {}).get("status") == "True", ip=status.get("podIP"),
                   unschedulable=unschedulable, problem=_problem(status),
                   terminating=bool(pod["metadata"].get("deletionTimestamp")))


def _problem(status: dict[str, Any]) -> str | None:
    if status.get("reason"):  # the pod as a whole: Evicted, NodeLost, ...
        return _join(status["reason"], status.get("message"), None)
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason") in STUCK_REASONS:
            return _join(waiting["reason"], waiting.get("message"), container.get("restartCount"))
        if terminated and terminated.get("exitCode", 0) != 0:
            return _join(terminated.get("reason") or "Error", f"exit code {terminated.get('exitCode')}",
                         container.get("restartCount"))
    return None


def _join(reason: str, message: str | None, restarts: int | None) -> str:
    text = f"{reason}: {message}" if message else reason
    return f"{text} (restarts: {restarts})" if restarts else text


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(current: PodView | None, health: PodHealth | None, health_error: str | None,
              subscribers: int, generation: int | None, previous: CameraSubscriptionStatus,
              now: float, replaced: PodView | None = None) -> CameraSubscriptionStatus:
    """The status to show; ``previous`` keeps transition times and the last frame time when unchanged.

    ``replaced`` is a pod that failed for good this round (evicted, node lost) and is being replaced: its
    reason is the status until the replacement runs.
    """
    phase: Phase
    error: str | None
    if replaced is not None:
        phase, error = "Failed", replaced.problem or f"camera pod {replaced.phase.lower()}"
    else:
        phase, error = _phase(current, health, health_error)
        if phase == "Pending" and error is None and previous.phase in ("Failed", "Degraded"):
            error = previous.lastError  # why the pod is being started again
    report = health.report if health else None
    ready = "True" if phase == "Running" else "False"
    old = next((c for c in previous.conditions if c.type == "Ready"), None)
    since = old.lastTransitionTime if old and old.status == ready else _iso(now)
    condition = Condition(type="Ready", status=ready, reason=phase, message=error or _detail(phase, health),
                          lastTransitionTime=since)
    return CameraSubscriptionStatus(
        phase=phase, pod=current.name if current else previous.pod, podIP=current.ip if current else None,
        subscribers=subscribers, fps=round(report.fps, 2) if report else 0.0,
        lastFrameTime=_iso(report.last_frame_at) if report and report.last_frame_at else previous.lastFrameTime,
        lastError=error, observedGeneration=generation, conditions=[condition])


def _phase(current: PodView | None, health: PodHealth | None, health_error: str | None) -> tuple[Phase, str | None]:
    if current is None:
        return "Pending", None
    if current.phase in ("Failed", "Succeeded"):
        return "Failed", current.problem or f"camera pod {current.phase.lower()}"
    if current.phase == "Pending":
        if current.problem:
            return "Degraded", current.problem
        return "Pending", current.unschedulable
    if not current.ready:
        return "Degraded", current.problem or (health.detail if health else health_error) or "pod not ready"
    if health is not None and not health.ok:
        return "Degraded", health.report.last_error or health.detail
    if health is None and health_error:
        # Ready for the kubelet, but the operator cannot see fps or frames: say so instead of "Running".
        return "Degraded", health_error
    return "Running", None


def _detail(phase: Phase, health: PodHealth | None) -> str:
    if health is not None:
        return health.detail
    return {"Pending": "waiting for the camera pod", "Running": "frames flowing"}.get(phase, phase)


def stale_pods(pods: list[PodView], current: PodView | None, *, exclusive: bool = False) -> list[str]:
    """Older revisions to delete: once the new pod is ready (rolling), or at once when keeping them is useless.

    An unschedulable new pod usually waits for the GPU the old pod holds: then the old one goes first.
    ``exclusive`` (pods that share a durable state volume): every other pod goes at once. Pods already
    terminating are left to finish.
    """
    others = [pod for pod in pods if (current is None or pod.name != current.name) and not pod.terminating]
    if exclusive or (current is not None and (current.ready or current.unschedulable)):
        return [pod.name for pod in others]
    return [pod.name for pod in others if not pod.ready]
