"""Table and column names from pipeline.json: hostile ones are refused at validation, reserved words are quoted."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from camera_pod.actions.services import ServiceSink
from camera_pod.mpta.errors import MptaError
from camera_pod.mpta.loading import parse_pipeline
from camera_pod.mpta.schema import PostgresUpdateCombined

ACTION_PATH = "pipeline.parallelActions[0]"
HOSTILE_NAMES = [
    "cars; DROP TABLE x",
    "cars;DROP TABLE x--",
    '"quoted"',
    'car"s',
    "a-b",
    "a b",
    "x" * 64,
    "1cars",
    "",
    "cars\n",
    "cars\x00",
    "саrs",  # Cyrillic "а": a lookalike of "cars"
    "ｃars",  # fullwidth "c"
    "cars\u200b",  # zero-width space
    "café",
    "car's",
    "cars/*x*/",
    "$1",
]


def _pipeline_with(fixture_pipeline: dict[str, Any], tmp_path: Path, **changes: Any) -> Path:
    document = copy.deepcopy(fixture_pipeline)
    document["pipeline"]["parallelActions"][0].update(changes)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document))
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(MptaError) as caught:
        parse_pipeline(path)
    return "\n".join(str(issue) for issue in caught.value.issues)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(name)[:24] for name in HOSTILE_NAMES])
@pytest.mark.parametrize("where", ["table", "schema", "key_field", "column"])
def test_hostile_identifiers_are_refused_at_validation(fixture_pipeline: dict[str, Any], tmp_path: Path,
                                                       name: str, where: str) -> None:
    changes: dict[str, Any] = {
        "table": {"table": name}, "schema": {"table": f"{name}.car_frontal_info"}, "key_field": {"key_field": name},
        "column": {"fields": {"car_brand": "{car_brand_cls_v1.brand}", name: "x"}},
    }[where]
    problems = _refusal(_pipeline_with(fixture_pipeline, tmp_path, **changes))
    field = {"schema": "table", "column": "fields"}.get(where, where)
    assert f"{ACTION_PATH}.{field}" in problems
    if name:  # an empty schema name makes ".car_frontal_info": refused all the same
        assert "is not a valid SQL identifier (letters, digits, _; max 63; no leading digit)" in problems


def test_more_than_one_schema_prefix_is_refused(fixture_pipeline: dict[str, Any], tmp_path: Path) -> None:
    problems = _refusal(_pipeline_with(fixture_pipeline, tmp_path, table="db.public.cars"))
    assert f"{ACTION_PATH}.table" in problems and "at most one schema prefix" in problems


def test_the_longest_identifier_is_accepted() -> None:
    action = PostgresUpdateCombined(type="postgresql_update_combined", table="a" * 63, key_field="_" + "b" * 62,
                                    key_value="k", fields={"c" * 63: "v"})
    assert action.schema_and_table == ("gas_station_1", "a" * 63)


@pytest.fixture
def reserved_schema(pg: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema "select_<pid>" holding a table named "user" with the columns "from", "order" and "group"."""
    schema = f"select_{os.getpid()}"
    pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg.execute(sql.SQL('CREATE TABLE {}."user" ("from" TEXT PRIMARY KEY, "order" TEXT, "group" TEXT, '
                       '"select" TIMESTAMPTZ)').format(sql.Identifier(schema)))
    yield schema
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def test_reserved_words_are_quoted_and_work_against_postgresql(
        fixture_pipeline: dict[str, Any], tmp_path: Path, pg: psycopg.Connection[Any], reserved_schema: str) -> None:
    path = _pipeline_with(fixture_pipeline, tmp_path, table=f"{reserved_schema}.user", key_field="from",
                          key_value="{session_id}", fields={"order": "{car_brand_cls_v1.brand}",
                                                            "group": "x'); DROP TABLE x; --", "select": "NOW()"})
    config = parse_pipeline(path)
    (action,) = config.pipeline.parallelActions
    assert isinstance(action, PostgresUpdateCombined)
    schema, table = action.schema_and_table
    assert (schema, table, action.key_field) == (reserved_schema, "user", "from")

    sink = ServiceSink(config, client_name="test-sql-identifiers")
    try:
        for brand in ("Toyota", "Honda"):  # insert, then update the same key
            await sink.upsert(schema, table, action.key_field, "session-1",
                              {"order": brand, "group": action.fields["group"], "select": "NOW()"})
    finally:
        await sink.close()
    rows = pg.execute(sql.SQL('SELECT "from", "order", "group", "select" IS NOT NULL FROM {}."user"').format(
        sql.Identifier(reserved_schema))).fetchall()
    assert rows == [("session-1", "Honda", "x'); DROP TABLE x; --", True)], "values are parameters, never SQL"
