"""Deployment-side Redis/PostgreSQL settings that take precedence over an archive's pipeline.json.

An .mpta is built once and used at many sites: the service hosts and passwords of a cluster belong to
the deployment (the Helm chart's services Secret, loaded into the camera pods' environment), not to
the archive. Each ``DETECTOR_REDIS_*`` / ``DETECTOR_POSTGRES_*`` variable that is set replaces that one
field; with a host set, a section the archive lacks is created.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from camera_pod.mpta.schema import PipelineConfig, PostgresConfig, RedisConfig
from detector.kit.errors import PermanentError

_Config = TypeVar("_Config", RedisConfig, PostgresConfig)


class ConfigurationError(PermanentError):
    pass


class ServiceOverrides(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    redis_host: str | None = None
    redis_port: int | None = Field(None, ge=1, le=65535)
    redis_password: SecretStr | None = None
    redis_db: int | None = Field(None, ge=0)
    postgres_host: str | None = None
    postgres_port: int | None = Field(None, ge=1, le=65535)
    postgres_database: str | None = None
    postgres_username: str | None = None
    postgres_password: SecretStr | None = None

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        redis = _merge(config.redis, RedisConfig, self._fields("redis_"))
        postgres = _merge(config.postgresql, PostgresConfig, self._fields("postgres_"))
        return config.model_copy(update={"redis": redis, "postgresql": postgres})

    def _fields(self, prefix: str) -> dict[str, Any]:
        fields = {}
        for name, value in self:
            if name.startswith(prefix) and value is not None:
                fields[name.removeprefix(prefix)] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return fields


def _merge(current: _Config | None, model: type[_Config], fields: dict[str, Any]) -> _Config | None:
    if not fields or (current is None and "host" not in fields):
        return current
    try:
        return model.model_validate({**(current.model_dump() if current else {}), **fields})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise ConfigurationError(f"DETECTOR_* service overrides for {model.__name__}: {problems}") from None
