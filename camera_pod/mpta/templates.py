"""Action templates: ``{placeholder}`` substitution, JSON-safe for JSON-looking templates.

Placeholders are ``{name}`` or ``{branchModelId.field}``; any other braces are literal text, so a
JSON template such as ``{"session":"{session_id}"}`` needs no escaping.

A missing value (``None``: no session, a text node that read nothing) renders as ``""`` in text, ``""`` inside a
JSON string and ``null`` outside one; a column template that is exactly one placeholder gives ``None`` itself
(``column_value``), so the database gets ``NULL``, never an empty string that reads as a value.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_.-]*[A-Za-z0-9_])?)\}")

BASE_PLACEHOLDERS = frozenset({
    "timestamp_ms", "timestamp", "uuid", "filename", "camera_id", "display_id",
    "session_id", "class", "confidence",
})
IMAGE_KEY = "image_key"


def file_names() -> dict[str, str]:
    """``{uuid}`` and ``{filename}`` (``<uuid>.jpg``, the same uuid) for one node run."""
    drawn = str(uuid.uuid4())
    return {"uuid": drawn, "filename": f"{drawn}.jpg"}


class TemplateError(ValueError):
    """A template cannot be rendered (unknown placeholder, or a JSON template that stops being JSON)."""


@dataclass(frozen=True)
class Placeholder:
    name: str

    @property
    def branch(self) -> str | None:
        return self.name.split(".", 1)[0] if "." in self.name else None

    @property
    def field(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else self.name


def placeholders(template: str) -> list[Placeholder]:
    return [Placeholder(match.group(1)) for match in PLACEHOLDER.finditer(template)]


def _string_spans(template: str) -> Iterator[bool]:
    """For each character: is it inside a JSON string literal?"""
    inside = escaped = False
    for char in template:
        if inside and escaped:
            escaped = False
        elif inside and char == "\\":
            escaped = True
        elif char == '"':
            inside = not inside
            yield True
            continue
        yield inside


def is_json_template(template: str) -> bool:
    """A template is JSON-looking if it is a JSON object/array once its placeholders are filled."""
    stripped = template.strip()
    if not stripped.startswith(("{", "[")):
        return False
    try:
        probe = json.loads(_render_json(template, {}, probing=True))
    except (json.JSONDecodeError, TemplateError):
        return False
    return isinstance(probe, dict | list)


def _plain(value: object) -> str:
    return "" if value is None else str(value)


def _render_json(template: str, values: Mapping[str, object], *, probing: bool = False) -> str:
    in_string = list(_string_spans(template))
    out: list[str] = []
    cursor = 0
    for match in PLACEHOLDER.finditer(template):
        out.append(template[cursor:match.start()])
        name = match.group(1)
        if probing:
            value: object = 0
        elif name in values:
            value = values[name]
        else:
            raise TemplateError(f"unknown placeholder {{{name}}}")
        if in_string[match.start()]:
            out.append(json.dumps(_plain(value))[1:-1])
        else:
            out.append(json.dumps(value))
        cursor = match.end()
    out.append(template[cursor:])
    return "".join(out)


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill every placeholder from ``values``; a JSON-looking template yields valid JSON."""
    if is_json_template(template):
        rendered = _render_json(template, values)
        try:
            json.loads(rendered)
        except json.JSONDecodeError as exc:  # pragma: no cover - defensive, escaping should prevent it
            raise TemplateError(f"rendered JSON is invalid: {exc}") from exc
        return rendered

    def _substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"unknown placeholder {{{name}}}")
        return _plain(values[name])

    return PLACEHOLDER.sub(_substitute, template)


def column_value(template: str, values: Mapping[str, object]) -> str | None:
    """A database column's value: ``None`` (SQL ``NULL``) when the template is exactly one placeholder whose value
    is missing (``"{plate_ocr.text}"`` for a plate that was not read), else ``render(template, values)`` (a
    placeholder inside a longer text still renders a missing value as ``""``)."""
    lone = PLACEHOLDER.fullmatch(template)
    if lone is not None and lone.group(1) in values and values[lone.group(1)] is None:
        return None
    return render(template, values)
