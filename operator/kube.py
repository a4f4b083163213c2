"""The few Kubernetes calls the operator makes, blocking (run them with ``asyncio.to_thread``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .manifests import SUBSCRIPTION_LABEL


def create_pod(core: k8s.CoreV1Api, namespace: str, pod: dict[str, Any]) -> bool:
    """True if created; an existing pod of that name is success too (resume, replayed watch events)."""
    # The client validates a plain dict body into its model anyway; done here, the call is typed.
    body = k8s.V1Pod.model_validate(pod)
    return _created(lambda: core.create_namespaced_pod(namespace, body, _preload_content=False))


def create_claim(core: k8s.CoreV1Api, namespace: str, claim: dict[str, Any]) -> bool:
    """True if created; an existing claim is success: it is never replaced (it holds queued writes)."""
    body = k8s.V1PersistentVolumeClaim.model_validate(claim)
    return _created(lambda: core.create_namespaced_persistent_volume_claim(namespace, body, _preload_content=False))


def _created(create: Callable[[], object]) -> bool:
    try:
        create()
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def pods_of(core: k8s.CoreV1Api, namespace: str, subscription: str) -> list[dict[str, Any]]:
    """The pods of one CameraSubscription, as plain JSON (every revision, oldest first)."""
    response = core.list_namespaced_pod(namespace, label_selector=f"{SUBSCRIPTION_LABEL}={subscription}",
                                        _preload_content=False)
    items: list[dict[str, Any]] = json.loads(_raw_body(response)).get("items", [])
    # Filtered here as well: a selector is a request, not a guarantee (some emulators ignore it).
    mine = [item for item in items if (item["metadata"].get("labels") or {}).get(SUBSCRIPTION_LABEL) == subscription]
    return sorted(mine, key=lambda item: item["metadata"].get("creationTimestamp") or "")


def camera_pods(core: k8s.CoreV1Api, namespace: str) -> list[dict[str, Any]]:
    """Every camera pod of the namespace, as plain JSON."""
    response = core.list_namespaced_pod(namespace, label_selector=f"{SUBSCRIPTION_LABEL}",
                                        _preload_content=False)
    items: list[dict[str, Any]] = json.loads(_raw_body(response)).get("items", [])
    return [item for item in items if SUBSCRIPTION_LABEL in (item["metadata"].get("labels") or {})]


def _raw_body(response: object) -> bytes:
    """The body of a call made with ``_preload_content=False``: the client then returns the raw urllib3
    response, whatever the method's annotation says."""
    if not isinstance(response, urllib3.BaseHTTPResponse):
        raise TypeError(f"expected a raw HTTP response, got {type(response).__name__}")
    return response.data


def delete_pod(core: k8s.CoreV1Api, namespace: str, name: str) -> None:
    try:
        core.delete_namespaced_pod(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status != 404:
            raise
