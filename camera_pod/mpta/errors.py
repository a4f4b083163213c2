"""Errors of .mpta loading, each naming where in the archive or pipeline.json the problem is."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from detector.kit.errors import PermanentError, TemporaryError

_ACTION_TAGS = frozenset({"redis_save_image", "redis_publish", "postgresql_update_combined"})
_NODE_TAGS = frozenset({"model", "ocr"})  # a branch's kind: after its index, not part of the JSON path


@dataclass(frozen=True)
class Issue:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class MptaError(PermanentError):
    """The archive or its pipeline.json is unusable; ``issues`` lists every problem found."""

    def __init__(self, issues: list[Issue], *, source: str = "") -> None:
        self.issues = issues
        self.source = source
        lines = "\n  ".join(str(issue) for issue in issues)
        prefix = f"invalid .mpta {source}" if source else "invalid .mpta"
        super().__init__(f"{prefix}:\n  {lines}")

    @classmethod
    def single(cls, path: str, problem: str, *, source: str = "") -> MptaError:
        return cls([Issue(path, problem)], source=source)


class MptaFetchError(TemporaryError):
    """The archive could not be downloaded (network, HTTP status); a later retry may succeed."""


def json_path(location: tuple[int | str, ...], root: str = "") -> str:
    """Render a pydantic error location as ``pipeline.branches[1].modelFile``."""
    path = root
    previous: int | str | None = None
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _ACTION_TAGS or (part in _NODE_TAGS and isinstance(previous, int)):
            previous = part
            continue  # the discriminated-union tag is not part of the JSON path
        else:
            path += f".{part}" if path else str(part)
        previous = part
    return path or "(root)"


def issues_from_validation(error: ValidationError) -> list[Issue]:
    issues = []
    for detail in error.errors(include_url=False):
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown field"
        elif detail["type"] == "union_tag_invalid":
            message = f"unknown action type {detail.get('input', {}).get('type')!r}" if isinstance(
                detail.get("input"), dict) else message
        issues.append(Issue(json_path(tuple(detail["loc"])), message))
    return issues
