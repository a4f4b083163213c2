"""The few blocking Kubernetes calls the broker's runner makes (run them in a thread, never on the event loop).

Objects go in and come out as plain JSON dicts (``_preload_content=False``): the runner builds them as
dicts, checks them against the schemas as dicts, and never needs the client's models. Every answer is read
to its end and its connection handed back to the pool: an unread one is dropped, and the next call opens
a new connection (a TLS handshake on a cluster).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detector.contract.camerasubscription import GROUP, PLURAL, VERSION

FIELD_MANAGER = "detector-broker"
APPLY_PATCH = "application/apply-patch+yaml"


def _json(response: Any) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return document


def _done(response: Any) -> None:
    """An answer whose body is not wanted: read it anyway, so that its connection is reused."""
    response.drain_conn()
    response.release_conn()


@dataclass(frozen=True)
class Secrets:
    core: client.CoreV1Api
    namespace: str

    def apply(self, name: str, body: dict[str, Any]) -> None:
        _done(self.core.patch_namespaced_secret(name, self.namespace, body, field_manager=FIELD_MANAGER,
                                                force=True, _content_type=APPLY_PATCH, _preload_content=False))

    def create(self, body: dict[str, Any]) -> None:
        _done(self.core.create_namespaced_secret(self.namespace, client.V1Secret.model_validate(body),
                                                 field_manager=FIELD_MANAGER, _preload_content=False))

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return _json(self.core.read_namespaced_secret(name, self.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_secret(self.namespace, label_selector=label_selector,
                                                    _preload_content=False)
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def delete(self, name: str) -> None:
        """Gone already (404) is success."""
        try:
            _done(self.core.delete_namespaced_secret(name, self.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise


@dataclass(frozen=True)
class CameraSubscriptions:
    custom: client.CustomObjectsApi
    namespace: str

    def apply(self, name: str, body: dict[str, Any]) -> None:
        _done(self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body,
                                                         field_manager=FIELD_MANAGER, force=True,
                                                         _content_type=APPLY_PATCH, _preload_content=False))

    def create(self, body: dict[str, Any]) -> None:
        _done(self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body,
                                                          field_manager=FIELD_MANAGER, _preload_content=False))

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return _json(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                                  _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        response = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                             label_selector=label_selector, _preload_content=False)
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def delete(self, name: str) -> None:
        """Gone already (404) is success."""
        try:
            _done(self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                              _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise


def server_side_apply(objects: Secrets | CameraSubscriptions, body: dict[str, Any]) -> None:
    """Apply ``body`` (force, field manager ``detector-broker``); create it where the server will not.

    A real API server creates a missing object on an apply PATCH, so the fallback below never runs there.
    kmock (the emulator the tests use) answers 404 instead: then the object is POSTed, and if someone
    created it meanwhile (409) it is applied once more. Harmless on a real cluster, needed on the emulator.
    """
    name = body["metadata"]["name"]
    try:
        objects.apply(name, body)
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    try:
        objects.create(body)
        return
    except ApiException as exc:
        if exc.status != 409:
            raise
    objects.apply(name, body)
