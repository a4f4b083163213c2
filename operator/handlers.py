"""Thin Kopf handlers: each CameraSubscription becomes one camera pod; manifests come from manifests.py.

create/resume/update converge on the pod of the spec's revision; a timer keeps the status true (pod status
and the pod's /healthz), recreates a pod that vanished or was evicted, and retires older revisions once
the new pod is ready (or before it starts, with a durable state volume). Deleting the resource deletes its
pods and its state claim through their owner reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import kopf
from kubernetes import client as k8s
from pydantic import ValidationError

from detector.contract.camerasubscription import (
    GROUP,
    PLURAL,
    VERSION,
    CameraSubscriptionSpec,
    CameraSubscriptionStatus,
)
from detector.contract.environment import POD_HTTP_PORT

from . import kube
from .health import read_health
from .manifests import PodDefaults, build_claim, build_pod
from .pod_status import PodView, stale_pods, summarize
from .rolling import RollBudget, rolls_under_way

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorContext:
    """What every handler needs, passed as Kopf's ``memo`` (no module-level state)."""

    core: k8s.CoreV1Api
    defaults: PodDefaults
    http: httpx.AsyncClient
    pod_http_port: int = POD_HTTP_PORT
    rolls: RollBudget = field(default_factory=RollBudget)
    namespace: str | None = None  # the one the operator watches (for the start-up scan)


def revision_of(spec: CameraSubscriptionSpec, defaults: PodDefaults) -> str:
    """What the pod itself is given: its stream and settings, and the operator's pod defaults (image,
    resources...: a new operator configuration reaches running cameras, ``RollBudget`` at a time). The display
    subscriptions are not in it: a running pod takes those live from the broker (a crop or model change, a
    display added, rolls no pod)."""
    given = {"spec": spec.model_dump(mode="json", exclude={"subscriptions"}), "defaults": asdict(defaults)}
    return hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()[:10]


def parse_spec(spec: Mapping[str, Any]) -> CameraSubscriptionSpec:
    try:
        return CameraSubscriptionSpec.model_validate(dict(spec))
    except ValidationError as exc:
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors(include_url=False, include_input=False))
        raise kopf.PermanentError(f"invalid spec: {reason}"[:1000]) from None


def _failed(error: kopf.PermanentError, generation: int | None) -> dict[str, Any]:
    return CameraSubscriptionStatus(
        phase="Failed", lastError=str(error), observedGeneration=generation, pod=None, podIP=None,
    ).model_dump(mode="json", exclude={"conditions"}) | {
        "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": str(error)}]}


async def _converge(context: OperatorContext, name: str, namespace: str, uid: str,
                    spec: CameraSubscriptionSpec) -> tuple[PodView | None, PodView | None]:
    """Make the pod of this revision exist; retire the others when safe.

    Returns the current pod (None if not created yet) and the pod replaced because it failed for good.
    """
    wanted = build_pod(name, namespace, uid, spec, context.defaults, revision=revision_of(spec, context.defaults))
    wanted_name = wanted["metadata"]["name"]
    views = [PodView.of(pod) for pod in await asyncio.to_thread(kube.pods_of, context.core, namespace, name)]
    current = next((view for view in views if view.name == wanted_name), None)
    roll = f"{namespace}/{name}"
    older = [view for view in views if view is not current and not view.terminating]
    if current is None and older and not context.rolls.take(roll):
        # Another revision runs and the roll budget is spent: it keeps serving; the next status tick retries.
        serving = next((view for view in older if view.ready), older[0])
        log.info("camera pod %s waits for a roll slot (%d in progress)", wanted_name, context.rolls.in_progress)
        return serving, None
    if current is not None and not older:
        context.rolls.release(roll)
    elif current is not None:
        context.rolls.adopt(roll)
    replaced = None
    if current is not None and current.phase in ("Failed", "Succeeded"):
        # Evicted or lost with its node: a pod never comes back from these phases; replace it.
        log.warning("camera pod %s is %s (%s); replacing it", current.name, current.phase, current.problem)
        await asyncio.to_thread(kube.delete_pod, context.core, namespace, current.name)
        views, current, replaced = [view for view in views if view is not current], None, current
    # A durable state volume makes a spec change a Recreate instead of a rolling replace: the old pod goes
    # first and the new one starts once it is gone. Rolling would keep the old pod until the new one is
    # ready, but a ReadWriteOnce claim attaches to one node: a new pod placed on another node would wait
    # for the volume the old pod holds, for ever. On one node, two camera processes would drain the same
    # queues and read the same camera twice. The price: the camera pauses for the old pod's shutdown and
    # the new pod's start; its writes and events wait on the volume meanwhile.
    exclusive = context.defaults.state_volume.durable
    if exclusive and any(view is not current for view in views):
        await _retire(context, namespace, stale_pods(views, current, exclusive=True))
        return current, replaced  # terminating pods count: the new pod waits until they are gone
    if current is None:
        await _ensure_claim(context, name, namespace, uid)
        if await asyncio.to_thread(kube.create_pod, context.core, namespace, wanted):
            log.info("camera pod %s created", wanted_name)
    await _retire(context, namespace, stale_pods(views, current))
    return current, replaced


async def _ensure_claim(context: OperatorContext, name: str, namespace: str, uid: str) -> None:
    """The state claim the pod mounts; created once, never deleted here (the resource owns it)."""
    volume = context.defaults.state_volume
    if volume.type == "persistentVolumeClaim":
        claim = build_claim(name, namespace, uid, volume)
        if await asyncio.to_thread(kube.create_claim, context.core, namespace, claim):
            log.info("state volume claim %s created", claim["metadata"]["name"])


async def _retire(context: OperatorContext, namespace: str, names: list[str]) -> None:
    for stale in names:
        log.info("retiring camera pod %s of an older spec", stale)
        await asyncio.to_thread(kube.delete_pod, context.core, namespace, stale)


def _namespace_of(name: str, namespace: str | None) -> str:
    """Kopf passes no namespace only for cluster-scoped objects; the CRD makes CameraSubscriptions namespaced."""
    if namespace is None:
        raise kopf.PermanentError(f"CameraSubscription {name} has no namespace")
    return namespace


async def reconcile(spec: kopf.Spec, name: str, namespace: str | None, uid: str, meta: kopf.Meta,
                    patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    context: OperatorContext = memo.context
    try:
        parsed = parse_spec(spec)
    except kopf.PermanentError as error:
        patch.status.update(_failed(error, meta.get("generation")))
        raise
    current, _ = await _converge(context, name, _namespace_of(name, namespace), uid, parsed)
    if current is None:
        patch.status.update({"phase": "Pending", "pod": f"{name}-{revision_of(parsed, context.defaults)}",
                             "podIP": None,
                             "subscribers": len(parsed.subscriptions), "lastError": None,
                             "observedGeneration": meta.get("generation")})


async def refresh_status(spec: kopf.Spec, name: str, namespace: str | None, uid: str, meta: kopf.Meta,
                         status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    context: OperatorContext = memo.context
    try:
        parsed = parse_spec(spec)
    except kopf.PermanentError:
        return  # the create/update handler has written the reason; nothing runs for this spec
    current, replaced = await _converge(context, name, _namespace_of(name, namespace), uid, parsed)
    health, health_error = None, None
    if current is not None and current.ip and current.phase == "Running":
        health, health_error = await read_health(context.http, current.ip, context.pod_http_port)
    previous = CameraSubscriptionStatus.model_validate(dict(status))
    fresh = summarize(current, health, health_error, len(parsed.subscriptions), meta.get("generation"),
                      previous, now=time.time(), replaced=replaced)
    if fresh != previous:
        patch.status.update(fresh.model_dump(mode="json"))


async def adopt_rolls_under_way(memo: kopf.Memo, **kwargs: Any) -> None:
    """Before any resource resumes: rolls an earlier operator started count against the limit (else a restart
    mid-roll would start ``limit`` more on top of them)."""
    context: OperatorContext = memo.context
    if context.namespace is None:
        return
    pods = await asyncio.to_thread(kube.camera_pods, context.core, context.namespace)
    for key in sorted(rolls_under_way(pods)):
        context.rolls.adopt(key)
    if context.rolls.in_progress:
        log.info("%d camera pod rolls under way", context.rolls.in_progress)


def register(registry: kopf.OperatorRegistry, *, status_interval_s: float = 10.0) -> None:
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.startup(registry=registry)(adopt_rolls_under_way)
    kopf.on.create(*resource, registry=registry)(reconcile)
    kopf.on.resume(*resource, registry=registry)(reconcile)
    kopf.on.update(*resource, field="spec", registry=registry)(reconcile)
    kopf.timer(*resource, interval=status_interval_s, registry=registry)(refresh_status)
