"""Helpers for tests against kmock's Kubernetes emulator (the ``kmock`` pytest fixture).

What kmock 0.8 does and does not do, and how these helpers cope:
- resources are served only once registered (``register``): discovery, list, watch, get, patch, ...;
- label and field selectors are ignored: code under test filters by label itself;
- no uid or resourceVersion is generated; PATCH merges dicts and overwrites lists, whatever the content
  type (a server-side apply PATCH of a missing object is a 404, not a create);
- objects written through the API publish watch events, objects assigned to ``emulator.objects`` do not;
- ``emulator.objects`` keeps soft-deleted objects (``.deleted``): ``live`` skips them;
- every request is logged: iterating the emulator yields them in order (``mark`` / ``writes``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kmock
from kubernetes import client

VERBS = frozenset({"list", "watch", "get", "patch", "create", "delete"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def register(emulator: kmock.KubernetesEmulator, resource: str, kind: str, *, namespaced: bool = True,
             subresources: Iterable[str] = ()) -> None:
    """Make ``resource`` ("group/version/plural", "v1/plural" for the core group) discoverable and served."""
    emulator.resources[resource] = {"kind": kind, "singular": kind.lower(),
                                    "namespaced": namespaced, "verbs": set(VERBS),
                                    "subresources": set(subresources)}


def register_operator_api(emulator: kmock.KubernetesEmulator, *, peering: bool = False) -> None:
    """What the Kopf operator talks to: CameraSubscriptions, pods (with status), state claims, events;
    namespaces and CRDs only discoverable (Kopf waits for them; its cluster scanning is off, so they are
    never listed)."""
    register(emulator, "detector.gasstation.dev/v1/camerasubscriptions", "CameraSubscription",
             subresources={"status"})
    register(emulator, "v1/pods", "Pod", subresources={"status"})
    register(emulator, "v1/persistentvolumeclaims", "PersistentVolumeClaim")
    register(emulator, "v1/events", "Event")
    register(emulator, "v1/namespaces", "Namespace", namespaced=False)
    register(emulator, "apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False)
    if peering:
        register(emulator, "kopf.dev/v1/kopfpeerings", "KopfPeering")


def api_client(emulator: kmock.KubernetesEmulator) -> client.ApiClient:
    """A client of the emulator (never the kubeconfig of the machine running the tests)."""
    return client.ApiClient(client.Configuration(host=str(emulator.url).rstrip("/")))


def plain(stored: Any) -> dict[str, Any]:
    """kmock's stored objects are mapping views; tests want plain JSON-like dicts."""
    result: dict[str, Any] = json.loads(json.dumps(stored, default=dict))
    return result


def live(emulator: kmock.KubernetesEmulator, resource: str, namespace: str | None) -> dict[str, dict[str, Any]]:
    """The current (not deleted) objects of ``resource`` in ``namespace``, by name, as plain dicts."""
    wanted = kmock.resource(resource)
    return {name: plain(stored.raw) for (kind, ns, name), stored in list(emulator.objects.items())
            if kind == wanted and ns == namespace and not stored.deleted}


@dataclass(frozen=True)
class Write:
    method: str
    plural: str
    name: str | None  # a POST names its object in the body
    body: Any  # the parsed JSON the client sent (None for most DELETEs)


def mark(emulator: kmock.KubernetesEmulator) -> int:
    """How many requests the emulator has seen so far: pass it to ``writes(since=...)``."""
    return len(list(emulator))


def writes(emulator: kmock.KubernetesEmulator, since: int = 0) -> list[Write]:
    """The object-changing requests (POST, PUT, PATCH, DELETE) after the first ``since`` requests."""
    found = []
    for request in list(emulator)[since:]:
        method = str(request.method.value).upper()
        if method not in WRITE_METHODS:
            continue
        body, name = request.data, request.name
        if name is None and isinstance(body, dict):
            name = (body.get("metadata") or {}).get("name")
        plural = request.resource.plural if request.resource is not None else str(request.url.path)
        found.append(Write(method, str(plural), name, body))
    return found
