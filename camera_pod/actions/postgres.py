"""PostgreSQL writes: identifiers quoted with psycopg.sql, every value a parameter."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from camera_pod.mpta.schema import DEFAULT_SCHEMA, PostgresConfig

log = logging.getLogger(__name__)

APPLICATION_NAME = "camera-detector"
INITIAL_TABLE = "car_frontal_info"
# A field whose template renders to exactly this is set to the database's clock (the original's rule).
NOW = "NOW()"

_CREATE_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    display_id VARCHAR(255),
    captured_timestamp VARCHAR(255),
    session_id VARCHAR(255) PRIMARY KEY,
    license_character VARCHAR(255) DEFAULT NULL,
    license_type VARCHAR(255) DEFAULT 'No model available',
    car_brand VARCHAR(255) DEFAULT NULL,
    car_model VARCHAR(255) DEFAULT NULL,
    car_body_type VARCHAR(255) DEFAULT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
)""")


def conninfo(config: PostgresConfig, application_name: str) -> str:
    return make_conninfo(host=config.host, port=config.port, dbname=config.database, user=config.username,
                         password=config.password or None, connect_timeout=5, application_name=application_name)


def upsert_statement(schema: str, table: str, key_field: str, fields: Mapping[str, str]) -> sql.Composed:
    columns = [key_field, *fields]
    values = [sql.Placeholder()] + [sql.SQL("NOW()") if value == NOW else sql.Placeholder()
                                    for value in fields.values()]
    updates: list[sql.Composable] = [
        sql.SQL("{column} = EXCLUDED.{column}").format(column=sql.Identifier(column)) for column in fields]
    if table == INITIAL_TABLE and schema == DEFAULT_SCHEMA and "updated_at" not in fields:
        updates.append(sql.SQL("updated_at = NOW()"))
    statement = "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {updates}"
    return sql.SQL(statement).format(
        table=sql.Identifier(schema, table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(values),
        key=sql.Identifier(key_field),
        updates=sql.SQL(", ").join(updates),
    )


class PostgresWriter:
    def __init__(self, config: PostgresConfig, *, pool_timeout_s: float = 5.0, max_size: int = 4,
                 application_name: str = APPLICATION_NAME) -> None:
        self._pool = AsyncConnectionPool(conninfo(config, application_name), min_size=0, max_size=max_size,
                                         timeout=pool_timeout_s, open=False, name="pipeline")
        self._opened = False
        self._initial_table_ready = False

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str, fields: Mapping[str, str]) -> None:
        await self._ensure_open()
        params = [key_value] + [value for value in fields.values() if value != NOW]
        async with self._pool.connection() as connection:
            await connection.execute(upsert_statement(schema, table, key_field, fields), params)

    async def _create_initial_table(self, table: sql.Identifier) -> None:
        try:
            async with self._pool.connection() as connection:
                await connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(DEFAULT_SCHEMA)))
                await connection.execute(_CREATE_TABLE.format(table=table))
        except (errors.UniqueViolation, errors.DuplicateObject, errors.DuplicateSchema, errors.DuplicateTable):
            pass  # another camera pod created it at the same moment ("IF NOT EXISTS" is not atomic)
        self._initial_table_ready = True

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None:
        await self._ensure_open()
        table = sql.Identifier(DEFAULT_SCHEMA, INITIAL_TABLE)
        if not self._initial_table_ready:
            await self._create_initial_table(table)
        async with self._pool.connection() as connection:
            await connection.execute(
                sql.SQL("INSERT INTO {} (display_id, captured_timestamp, session_id) VALUES (%s, %s, %s) "
                        "ON CONFLICT (session_id) DO NOTHING").format(table),
                (display_id, captured_timestamp, session_id))
