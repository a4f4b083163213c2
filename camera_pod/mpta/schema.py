"""pydantic models of ``pipeline.json`` (the contract in shared/spec/mpta.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from camera_pod.mpta import patterns

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # ASCII only: no lookalikes; used with fullmatch
DEFAULT_SCHEMA = "gas_station_1"
PLATE_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MODEL_ID = r"^[A-Za-z0-9_.-]+$"
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _archive_member(value: str) -> str:
    normalized = value.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise ValueError("must be a path inside the archive, not an absolute path")
    if ".." in normalized.split("/"):
        raise ValueError("must not contain '..'")
    if not normalized or normalized.endswith("/"):
        raise ValueError("must name a file")
    return normalized


def _identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):  # ("$" would let "cars\n" through)
        raise ValueError(f"{value!r} is not a valid SQL identifier (letters, digits, _; max 63; no leading digit)")
    return value


class RedisConfig(_Closed):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(6379, ge=1, le=65535)
    password: str | None = None
    db: int = Field(0, ge=0, le=1023)


class PostgresConfig(_Closed):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(5432, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=63)
    username: str = Field(min_length=1, max_length=63)
    password: str = ""


class TrackingConfig(_Closed):
    enabled: bool = True
    method: Literal["bytetrack", "botsort"] = "bytetrack"
    stabilityThreshold: int = Field(3, ge=1, le=1000, description="consistent frames before a track is stable")


class RedisSaveImage(_Closed):
    type: Literal["redis_save_image"]
    key: str = Field(min_length=1, max_length=1024)
    region: str | None = None
    format: Literal["jpeg", "png"] = "jpeg"
    quality: int = Field(90, ge=1, le=100)
    expire_seconds: int | None = Field(None, ge=1)

    @field_validator("format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class RedisPublish(_Closed):
    type: Literal["redis_publish"]
    channel: str = Field(min_length=1, max_length=1024)
    message: str = Field(max_length=65536)


class PostgresUpdateCombined(_Closed):
    type: Literal["postgresql_update_combined"]
    table: str
    key_field: str
    key_value: str = Field(min_length=1)
    waitForBranches: list[str] = Field(default_factory=list)
    fields: dict[str, str] = Field(min_length=1)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2:
            raise ValueError(f"{value!r}: at most one schema prefix (schema.table)")
        for part in parts:
            _identifier(part)
        return value

    @field_validator("key_field")
    @classmethod
    def _key_field(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("fields")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            _identifier(column)
        return value

    @property
    def schema_and_table(self) -> tuple[str, str]:
        schema, _, table = self.table.rpartition(".")
        return (schema or DEFAULT_SCHEMA, table)


Action = Annotated[RedisSaveImage | RedisPublish | PostgresUpdateCombined, Field(discriminator="type")]


class OcrNode(_Closed):
    """A text-recognition branch (``"type": "ocr"``): reads the text on its crop, e.g. a licence plate.

    ``minConfidence`` gates the branch on its trigger class, as on every branch; ``minTextConfidence`` is the
    least recognition confidence of a read (below it the node reads nothing).
    """

    type: Literal["ocr"]
    modelId: str = Field(min_length=1, max_length=128, pattern=MODEL_ID)
    modelFile: str | None = Field(None, min_length=1, max_length=512,
                                  description="an ONNX text recognition model in the archive; none: the bundled one")
    minConfidence: float = Field(ge=0.0, le=1.0)
    triggerClasses: list[str] = Field(default_factory=list)
    crop: bool = False
    cropClass: str | None = None
    parallel: bool = False
    minTextConfidence: float = Field(0.8, ge=0.0, le=1.0)
    allowedCharacters: str = Field(PLATE_CHARACTERS, min_length=1, max_length=512)
    minLength: int = Field(4, ge=1, le=patterns.MAX_TEXT_CHARS)
    maxLength: int = Field(12, ge=1, le=patterns.MAX_TEXT_CHARS)
    pattern: str | None = Field(None, min_length=1, max_length=patterns.MAX_PATTERN_CHARS)
    replacement: str | None = Field(None, max_length=patterns.MAX_REPLACEMENT_CHARS)
    resultField: str = Field("license_plate", max_length=63, pattern=FIELD_NAME)
    detectLines: bool = Field(True, description="false: the crop is one line of text (a plate detector's plate), "
                                                "recognised whole without the text detector")

    @field_validator("modelFile")
    @classmethod
    def _model_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.lower().endswith(".onnx"):
            raise ValueError("must be an ONNX text recognition model (.onnx)")
        return _archive_member(value)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        problem = patterns.pattern_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("maxLength")
    @classmethod
    def _lengths(cls, value: int, info: ValidationInfo) -> int:
        least = info.data.get("minLength")
        if least is not None and least > value:
            raise ValueError(f"less than minLength ({least})")
        return value

    @field_validator("replacement")
    @classmethod
    def _replacement(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "pattern" not in info.data:
            return value  # the pattern itself is refused
        if info.data["pattern"] is None:
            raise ValueError("needs a pattern")
        problem = patterns.replacement_problem(value, info.data["pattern"])
        if problem:
            raise ValueError(problem)
        return value

    def walk(self, path: str) -> list[tuple[str, Node | OcrNode]]:
        return [(path, self)]


def _node_kind(value: Any) -> str:
    """``"ocr"`` for a text node; a node without ``type`` is a model node; another ``type`` is refused."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None:
        return "model"
    return kind if isinstance(kind, str) else repr(kind)


Branch = Annotated[Annotated["Node", Tag("model")] | Annotated[OcrNode, Tag("ocr")],
                   Discriminator(_node_kind, custom_error_type="node_type",
                                 custom_error_message="unknown node type (a model node has no \"type\"; "
                                                      "text recognition is \"ocr\")")]


class Node(_Closed):
    modelId: str = Field(min_length=1, max_length=128, pattern=MODEL_ID)
    modelFile: str = Field(min_length=1, max_length=512)
    minConfidence: float = Field(ge=0.0, le=1.0)
    triggerClasses: list[str] = Field(default_factory=list)
    crop: bool = False
    cropClass: str | None = None
    resizeTarget: tuple[Annotated[int, Field(ge=1, le=8192)], Annotated[int, Field(ge=1, le=8192)]] | None = None
    multiClass: bool = False
    expectedClasses: list[str] = Field(default_factory=list)
    parallel: bool = False
    branches: list[Branch] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    parallelActions: list[Action] = Field(default_factory=list)
    tracking: TrackingConfig | None = None
    resultField: str | None = Field(None, pattern=FIELD_NAME)

    @field_validator("modelFile")
    @classmethod
    def _model_file(cls, value: str) -> str:
        return _archive_member(value)

    @model_validator(mode="after")
    def _expected_needs_multiclass(self) -> Node:
        if self.expectedClasses and not self.multiClass:
            raise ValueError("expectedClasses only applies with multiClass: true")
        return self

    def walk(self, path: str = "pipeline") -> list[tuple[str, Node | OcrNode]]:
        """This node and every descendant, each with its JSON path."""
        found: list[tuple[str, Node | OcrNode]] = [(path, self)]
        for index, branch in enumerate(self.branches):
            found.extend(branch.walk(f"{path}.branches[{index}]"))
        return found


Node.model_rebuild()


class PipelineConfig(_Closed):
    pipeline: Node
    redis: RedisConfig | None = None
    postgresql: PostgresConfig | None = None
