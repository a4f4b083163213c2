"""Subscription entries checked one by one: good ones are kept, each bad one is refused on its own.

A backend's ``setSubscriptionList`` is the whole station: one odd camera (a typo in an identifier, an
``ftp://`` URL, a missing model id) must not stop the others, so the list is never refused for an entry.
A refusal names the entry (its identifier, or its position when it has none usable), a ``reason`` from a
small fixed set (a metric label) and a one-line ``detail`` that never holds a credential.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from broker import decoding, protocol

RefusalReason = Literal["not_an_object", "identifier", "stream", "model", "crop", "duplicate", "invalid"]
REFUSAL_REASONS: tuple[RefusalReason, ...] = ("not_an_object", "identifier", "stream", "model", "crop",
                                              "duplicate", "invalid")

_REASON_OF_FIELD: dict[str, RefusalReason] = {
    "subscriptionIdentifier": "identifier", "rtspUrl": "stream", "snapshotUrl": "stream",
    "snapshotInterval": "stream", "modelUrl": "model", "modelId": "model", "modelName": "model",
    "cropX1": "crop", "cropY1": "crop", "cropX2": "crop", "cropY2": "crop"}


@dataclass(frozen=True)
class Refusal:
    entry: str  # the subscriptionIdentifier as sent (escaped, bounded), or "#<position>" without one
    reason: RefusalReason
    detail: str
    at: float  # epoch seconds


@dataclass(frozen=True)
class Entries:
    accepted: list[protocol.Subscription]
    refused: list[Refusal]


def read(raw_entries: Iterable[Any], now: float) -> Entries:
    """Each entry validated on its own; of two with the same identifier the first is used."""
    accepted: dict[str, protocol.Subscription] = {}
    refused: list[Refusal] = []
    for position, raw in enumerate(raw_entries):
        if isinstance(raw, protocol.Subscription):  # built by our own code, checked already
            raw = raw.model_dump(exclude_none=True)
        name = _name(raw, position)
        if not isinstance(raw, dict):
            refused.append(Refusal(name, "not_an_object", f"an entry must be a JSON object, got "
                                                          f"{decoding.json_type(raw)}", now))
            continue
        try:
            subscription = protocol.Subscription.model_validate(_without_nulls(raw))
        except ValidationError as exc:
            refused.append(Refusal(name, _reason(exc), decoding.describe(exc), now))
            continue
        if subscription.subscriptionIdentifier in accepted:
            refused.append(Refusal(name, "duplicate", f"entry #{position} is a duplicate of an identifier already "
                                                      "in the list; the first one is used", now))
            continue
        accepted[subscription.subscriptionIdentifier] = subscription
    return Entries(list(accepted.values()), refused)


def identifier_of(refusal: Refusal) -> str | None:
    """The refused entry's identifier when it is one a subscription could have (to keep that one running)."""
    if refusal.entry.startswith("#"):
        return None
    try:
        protocol.split_identifier(refusal.entry)
    except ValueError:
        return None
    return refusal.entry


def _without_nulls(entry: dict[str, Any]) -> dict[str, Any]:
    """The original reads every key with ``.get``: a key sent as ``null`` is a key left out."""
    return {key: value for key, value in entry.items() if value is not None}


def _name(raw: Any, position: int) -> str:
    identifier = raw.get("subscriptionIdentifier") if isinstance(raw, dict) else None
    if isinstance(identifier, str) and identifier and identifier.isprintable() and len(identifier) <= 260:
        return identifier
    return f"#{position}"


def _reason(error: ValidationError) -> RefusalReason:
    """The first problem decides: a field's group, or for a whole-entry rule the field its message names."""
    first = error.errors(include_url=False, include_input=False)[0]
    location = [str(part) for part in first["loc"]]
    if location:
        return _REASON_OF_FIELD.get(location[0], "invalid")
    message = first["msg"]
    if "crop" in message:
        return "crop"
    if "Url" in message or "snapshotInterval" in message:
        return "stream"
    return "invalid"
