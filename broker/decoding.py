"""From the backend's raw WebSocket text to one ``protocol.BackendMessage``, or one ``BadMessage``.

Strict JSON only: ``NaN``/``Infinity``, duplicate keys (which parsers resolve differently) and
excessive nesting are refused before any model sees the document. Errors name the message type and
the field (``payload.modelId: Input should be a valid integer``), escaped to one line and bounded, and
never echo a URL's credentials (the URL validators mask them).
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

from pydantic import ValidationError

from broker import protocol
from detector.kit.redaction import redact_text

MAX_DETAIL_CHARS = 1000
MAX_DEPTH = 32  # the deepest legitimate message (setSubscriptionList → subscriptions → item) is 3 levels
MESSAGE_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(protocol.BackendMessage)[0]))


class BadMessage(ValueError):
    """A backend message that is refused: ``kind`` is its type (or what it is instead), ``detail`` why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _one_line(text: str, limit: int) -> str:
    """Printable, single-line, bounded: safe to put into a text log line."""
    escaped = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {_one_line(repr(key), 80)}")
        document[key] = value
    return document


def _depth(document: Any) -> int:
    """Nesting depth, iteratively (a hostile document must not cost Python recursion)."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            pending.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def decode_json(raw: str | bytes) -> Any:
    try:
        document = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise BadMessage(_lenient_kind(raw), f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, the hooks' errors, integers of more than 4300 digits
        raise BadMessage(_lenient_kind(raw), f"invalid JSON: {_one_line(str(exc), 200)}") from None
    if _depth(document) > MAX_DEPTH:
        raise BadMessage(_kind(document), f"nested deeper than {MAX_DEPTH} levels")
    return document


_TYPE_NEAR_START = re.compile(r'^\s*\{\s*"type"\s*:\s*"([A-Za-z]{1,64})"')


def peek_type(raw: str) -> str:
    """The type of a message too large to parse, if it leads with it (``{"type": "...", ...``)."""
    found = _TYPE_NEAR_START.match(raw[:200])
    return found.group(1) if found else "(unknown)"


def _lenient_kind(raw: str | bytes) -> str:
    """For the log line of a refused document: its type, if a lenient parser can still find one."""
    try:
        return _kind(json.loads(raw))
    except (ValueError, RecursionError):
        return "(not JSON)"


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (for messages about what was sent instead)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _kind(document: Any) -> str:
    if not isinstance(document, dict):
        return f"({type(document).__name__})"
    kind = document.get("type")
    return _one_line(kind, 64) if isinstance(kind, str) else "(no type)"


def _check_type(document: Any) -> None:
    if not isinstance(document, dict):
        raise BadMessage(_kind(document), "a message must be a JSON object with a \"type\"")
    kind = document.get("type")
    if "type" not in document:
        raise BadMessage("(no type)", "type: missing")
    if not isinstance(kind, str):
        raise BadMessage("(no type)", f"type: must be a string, got {type(kind).__name__}")
    if kind not in MESSAGE_TYPES:
        raise BadMessage(_kind(document), f"type: unknown message type; expected one of {', '.join(MESSAGE_TYPES)}")


def describe(error: ValidationError, kind: str | None = None) -> str:
    """``payload.modelId: Input should be a valid integer; ...`` (the union's tag left out of each path)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        location = [str(part) for part in item["loc"]]
        if kind is not None and location[:1] == [kind]:
            location = location[1:]
        problems.append(f"{'.'.join(location) or '(message)'}: {item['msg']}")
    return _one_line(redact_text("; ".join(problems)), MAX_DETAIL_CHARS)


def parse_backend_message(raw: str | bytes) -> protocol.BackendMessage:
    """The validated message, or ``BadMessage`` naming its type and the offending field."""
    document = decode_json(raw)
    _check_type(document)
    kind = document["type"]
    try:
        return protocol.BACKEND_MESSAGE.validate_python(document)
    except ValidationError as exc:
        raise BadMessage(kind, describe(exc, kind)) from None
