"""DETECTOR_REDIS_* / DETECTOR_POSTGRES_* from the deployment replace the archive's connection fields."""

from __future__ import annotations

import pytest

from camera_pod.actions.overrides import ConfigurationError, ServiceOverrides
from camera_pod.mpta.schema import PipelineConfig, PostgresConfig, RedisConfig

ARCHIVE = PipelineConfig.model_construct(
    redis=RedisConfig(host="10.0.0.1", port=6379, password="from-archive", db=2),
    postgresql=PostgresConfig(host="10.0.0.2", database="gas", username="worker", password="from-archive"))


def test_only_the_fields_that_are_set_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_REDIS_HOST", "redis.detectors.svc")
    monkeypatch.setenv("DETECTOR_REDIS_PASSWORD", "from-secret")
    monkeypatch.setenv("DETECTOR_POSTGRES_PASSWORD", "pg-secret")
    overrides = ServiceOverrides()
    config = overrides.apply(ARCHIVE)
    assert config.redis == RedisConfig(host="redis.detectors.svc", port=6379, password="from-secret", db=2)
    assert config.postgresql == PostgresConfig(host="10.0.0.2", database="gas", username="worker",
                                               password="pg-secret")
    assert "from-secret" not in repr(overrides) and "pg-secret" not in repr(overrides)


def test_nothing_set_keeps_the_archive_and_a_host_adds_a_missing_section(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceOverrides().apply(ARCHIVE) == ARCHIVE
    bare = PipelineConfig.model_construct(redis=None, postgresql=None)
    monkeypatch.setenv("DETECTOR_REDIS_PASSWORD", "x")
    assert ServiceOverrides().apply(bare).redis is None, "a password alone does not invent a server"
    monkeypatch.setenv("DETECTOR_REDIS_HOST", "redis")
    assert ServiceOverrides().apply(bare).redis == RedisConfig(host="redis", password="x")


def test_an_incomplete_new_section_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_POSTGRES_HOST", "pg")
    monkeypatch.setenv("DETECTOR_POSTGRES_PASSWORD", "pg-secret")
    bare = PipelineConfig.model_construct(redis=None, postgresql=None)
    with pytest.raises(ConfigurationError, match="PostgresConfig: database: Field required") as caught:
        ServiceOverrides().apply(bare)
    assert "pg-secret" not in str(caught.value)
