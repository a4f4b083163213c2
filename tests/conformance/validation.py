"""The JSON Schemas of schemas/ (draft 2020-12), loaded into one registry, and a validating backend."""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import websockets
from referencing import Registry, Resource

from tests.support.embedded import Backend

SCHEMAS = Path(__file__).with_name("schemas")
BASE = "https://conformance.detector.test/"
WORKER_TO_BACKEND = {"stateReport", "imageDetection", "patchSession"}
BACKEND_TO_WORKER = {"subscribe", "unsubscribe", "setSubscriptionList", "requestState", "setSessionId",
                     "setProgressionStage", "patchSessionResult"}


@cache
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMAS.glob("*.json")):
        document = json.loads(path.read_text())
        resources.append((document["$id"], Resource.from_contents(document)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    document = json.loads((SCHEMAS / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    return cls(document, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


def problems(message: Any, schema: str | None = None) -> list[str]:
    """Every way ``message`` breaks its schema (chosen by its ``type`` unless given); [] when it conforms."""
    if schema is None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in WORKER_TO_BACKEND | BACKEND_TO_WORKER:
            return [f"no message type {kind!r} in the original's protocol"]
        schema = kind
    return [f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
            for error in validator(schema).iter_errors(message)]


class ValidatingBackend(Backend):
    """The e2e tests' ``Backend`` that checks every message the worker sends, as it arrives, against the schemas.

    ``violations`` holds (message, problems) for each bad one; ``send`` also checks what the test sends
    unless ``check=False`` (for entries that are wrong on purpose).
    """

    def __init__(self, socket: websockets.ClientConnection, check_sent: bool = True) -> None:
        self.violations: list[tuple[dict[str, Any], list[str]]] = []
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.check_sent = check_sent
        super().__init__(socket)

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                if kind := (message.get("type") if isinstance(message, dict) else None):
                    if kind in BACKEND_TO_WORKER:
                        found = [f"{kind!r} is a backend->worker message"]
                    else:
                        found = problems(message)
                else:
                    found = ["not an object with a type"]
                if found:
                    self.violations.append((message, found))
                self.received.append(message)
                self.arrived.append(time.monotonic())
        except websockets.ConnectionClosed as closed:
            self.closed_by = closed

    async def send(self, message: dict[str, Any], check: bool = True) -> None:
        if check and self.check_sent:
            assert problems(message) == [], f"the test sends a message the original's schema refuses: {message}"
        self.sent.append((time.monotonic(), message))
        await super().send(message)

    def assert_conforms(self) -> None:
        shown = [f"{m.get('type') if isinstance(m, dict) else m}: {p}" for m, p in self.violations[:5]]
        assert not self.violations, f"{len(self.violations)} worker messages break the schemas: {shown}"
