"""PostgreSQL writes: identifiers quoted with psycopg.sql, every value a parameter."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from camera_pod.mpta.schema import DEFAULT_SCHEMA, PostgresConfig

log = logging.getLogger(__name__)

APPLICATION_NAME = "camera-detector"
INITIAL_TABLE = "car_frontal_info"
# A field whose template renders to exactly this is set to the database's clock (the original's rule).
NOW = "NOW()"

# The initial table as this worker creates it. A table an older worker made lacks some of these columns: they
# are added (ADD COLUMN IF NOT EXISTS, as the original did) before the first write, never a failed write.
INITIAL_COLUMNS: dict[str, str] = {
    "display_id": "VARCHAR(255)",
    "captured_timestamp": "VARCHAR(255)",
    "session_id": "VARCHAR(255) PRIMARY KEY",
    "license_character": "VARCHAR(255) DEFAULT NULL",
    "license_type": "VARCHAR(255) DEFAULT 'No model available'",
    "car_brand": "VARCHAR(255) DEFAULT NULL",
    "car_model": "VARCHAR(255) DEFAULT NULL",
    "car_body_type": "VARCHAR(255) DEFAULT NULL",
    "created_at": "TIMESTAMPTZ DEFAULT NOW()",
    "updated_at": "TIMESTAMPTZ DEFAULT NOW()",
}
# Race losers of concurrent CREATE/ALTER … IF NOT EXISTS by other camera pods ("IF NOT EXISTS" is not atomic).
_ALREADY_THERE = (errors.UniqueViolation, errors.DuplicateObject, errors.DuplicateSchema, errors.DuplicateTable,
                  errors.DuplicateColumn)


def _definition(column: str) -> sql.Composed:
    # The type texts are this module's constants, never input; the name is quoted.
    return sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(INITIAL_COLUMNS[column]))


def create_initial_table_statement() -> sql.Composed:
    return sql.SQL("CREATE TABLE IF NOT EXISTS {table} ({columns})").format(
        table=sql.Identifier(DEFAULT_SCHEMA, INITIAL_TABLE),
        columns=sql.SQL(", ").join(_definition(column) for column in INITIAL_COLUMNS))


def is_initial_table(schema: str, table: str) -> bool:
    return (schema, table) == (DEFAULT_SCHEMA, INITIAL_TABLE)


def column_type(schema: str, table: str, column: str, value: str | None) -> str:
    """The type a missing column is added with: the initial table's own, else by the value written."""
    if is_initial_table(schema, table) and column in INITIAL_COLUMNS:
        return INITIAL_COLUMNS[column]
    return "TIMESTAMPTZ" if value == NOW else "TEXT"


def add_column_statement(schema: str, table: str, column: str, column_sql_type: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type}").format(
        table=sql.Identifier(schema, table), column=sql.Identifier(column), type=sql.SQL(column_sql_type))


def conninfo(config: PostgresConfig, application_name: str) -> str:
    return make_conninfo(host=config.host, port=config.port, dbname=config.database, user=config.username,
                         password=config.password or None, connect_timeout=5, application_name=application_name)


def upsert_statement(schema: str, table: str, key_field: str,
                     fields: Mapping[str, str | None]) -> sql.Composed:
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
        self._columns_ready: set[tuple[str, str, str]] = set()  # (schema, table, column) known present

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str,
                     fields: Mapping[str, str | None]) -> None:
        """Insert or update the row ``key_field = key_value``; a ``None`` field is written as ``NULL``."""
        await self._ensure_open()
        params = [key_value] + [value for value in fields.values() if value != NOW]
        statement = upsert_statement(schema, table, key_field, fields)
        columns = dict(fields)  # not the key: a key column cannot be added after the fact (it needs a constraint)
        if is_initial_table(schema, table):
            columns.setdefault("updated_at", NOW)
        async with self._pool.connection() as connection:
            if is_initial_table(schema, table):
                await self._ensure_initial_table(connection)
            await self._ensure_columns(connection, schema, table, columns)
            try:
                await connection.execute(statement, params)
            except errors.UndefinedColumn:  # the table was replaced since its columns were checked: once more
                await connection.rollback()
                self._columns_ready = {entry for entry in self._columns_ready if entry[:2] != (schema, table)}
                await self._ensure_columns(connection, schema, table, columns)
                await connection.execute(statement, params)

    async def _ensure_columns(self, connection: AsyncConnection[Any], schema: str, table: str,
                              columns: Mapping[str, str | None]) -> None:
        """Add the columns of ``columns`` (name → value written) that the table lacks, once per writer."""
        wanted = [column for column in columns if (schema, table, column) not in self._columns_ready]
        if not wanted:
            return
        for attempt in range(2):
            try:
                async with connection.transaction():
                    cursor = await connection.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                        "AND table_name = %s", (schema, table))
                    present = {row[0] for row in await cursor.fetchall()}
                    if not present:  # no such table (or not visible): the write itself says so
                        return
                    for column in wanted:
                        if column not in present:
                            log.warning("adding a missing column", extra={"table": f"{schema}.{table}",
                                                                          "column": column})
                            await connection.execute(add_column_statement(
                                schema, table, column, column_type(schema, table, column, columns[column])))
                break
            except _ALREADY_THERE:
                if attempt:
                    raise
        self._columns_ready.update((schema, table, column) for column in wanted)

    async def _ensure_initial_table(self, connection: AsyncConnection[Any]) -> None:
        """Create ``gas_station_1.car_frontal_info`` if missing, and bring an older worker's table up to date."""
        if self._initial_table_ready:
            return
        for attempt in range(2):
            try:
                async with connection.transaction():
                    await connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(DEFAULT_SCHEMA)))
                    await connection.execute(create_initial_table_statement())
                break
            except _ALREADY_THERE:
                if attempt:
                    raise
        await self._ensure_columns(connection, DEFAULT_SCHEMA, INITIAL_TABLE,
                                   {column: "" for column in INITIAL_COLUMNS if column != "session_id"})
        self._initial_table_ready = True

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None:
        await self._ensure_open()
        async with self._pool.connection() as connection:
            await self._ensure_initial_table(connection)
            await connection.execute(
                sql.SQL("INSERT INTO {} (display_id, captured_timestamp, session_id) VALUES (%s, %s, %s) "
                        "ON CONFLICT (session_id) DO NOTHING").format(sql.Identifier(DEFAULT_SCHEMA, INITIAL_TABLE)),
                (display_id, captured_timestamp, session_id))
