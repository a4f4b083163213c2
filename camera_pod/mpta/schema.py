"""pydantic models of ``pipeline.json`` (the contract in shared/spec/mpta.md)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # ASCII only: no lookalikes; used with fullmatch
DEFAULT_SCHEMA = "gas_station_1"


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


class Node(_Closed):
    modelId: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    modelFile: str = Field(min_length=1, max_length=512)
    minConfidence: float = Field(ge=0.0, le=1.0)
    triggerClasses: list[str] = Field(default_factory=list)
    crop: bool = False
    cropClass: str | None = None
    resizeTarget: tuple[Annotated[int, Field(ge=1, le=8192)], Annotated[int, Field(ge=1, le=8192)]] | None = None
    multiClass: bool = False
    expectedClasses: list[str] = Field(default_factory=list)
    parallel: bool = False
    branches: list[Node] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    parallelActions: list[Action] = Field(default_factory=list)
    tracking: TrackingConfig | None = None
    resultField: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("modelFile")
    @classmethod
    def _model_file(cls, value: str) -> str:
        return _archive_member(value)

    @model_validator(mode="after")
    def _expected_needs_multiclass(self) -> Node:
        if self.expectedClasses and not self.multiClass:
            raise ValueError("expectedClasses only applies with multiClass: true")
        return self

    def walk(self, path: str = "pipeline") -> list[tuple[str, Node]]:
        """This node and every descendant, each with its JSON path."""
        found = [(path, self)]
        for index, branch in enumerate(self.branches):
            found.extend(branch.walk(f"{path}.branches[{index}]"))
        return found


class PipelineConfig(_Closed):
    pipeline: Node
    redis: RedisConfig | None = None
    postgresql: PostgresConfig | None = None
