"""Shared fixtures: the committed .mpta fixture, archive builders, real Redis and PostgreSQL."""

from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

os.environ.setdefault("YOLO_OFFLINE", "1")
pytest_plugins = ["tests.support.embedded_fixtures"]

FIXTURES = Path(__file__).parent / "fixtures"
# DETECTOR_TEST_MPTA runs the suite against another archive with the same classes.
FIXTURE_MPTA = Path(os.environ.get("DETECTOR_TEST_MPTA", FIXTURES / "gas_station.mpta"))
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DSN = "host=127.0.0.1 port=5432 dbname=test user=root"


@pytest.fixture(scope="session")
def fixture_mpta() -> Path:
    assert FIXTURE_MPTA.is_file(), "make the fixture models: .venv/bin/python -P tests/fixtures/make_models.py"
    return FIXTURE_MPTA


@pytest.fixture(scope="session")
def fixture_members(fixture_mpta: Path) -> dict[str, bytes]:
    """Every file of the fixture archive by name (pipeline.json and the three .pt models)."""
    with zipfile.ZipFile(fixture_mpta) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


@pytest.fixture(scope="session")
def fixture_pipeline(fixture_members: dict[str, bytes]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(fixture_members["pipeline.json"])
    return document


ArchiveBuilder = Callable[..., Path]


@pytest.fixture
def build_archive(tmp_path: Path, fixture_members: dict[str, bytes],
                  fixture_pipeline: dict[str, Any]) -> ArchiveBuilder:
    """Write an .mpta made of the fixture's models and a (modified) pipeline.json."""
    counter = iter(range(10_000))

    def build(edit: Callable[[dict[str, Any]], None] | None = None, *, pipeline_text: str | bytes | None = None,
              extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
        document = copy.deepcopy(fixture_pipeline)
        if edit:
            edit(document)
        path = tmp_path / f"archive-{next(counter)}.mpta"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("pipeline.json", pipeline_text if pipeline_text is not None else json.dumps(document))
            for name, data in fixture_members.items():
                if name != "pipeline.json" and name not in drop:
                    archive.writestr(name, data)
            for name, data in (extra or {}).items():
                archive.writestr(name, data)
        return path

    return build


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def pg() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        yield connection
