"""The soak's side of Redis, PostgreSQL and the worker's log: pod overrides, clean-up, counts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support.redis_keys import delete_keys

SCHEMA, TABLE = "gas_station_1", "car_frontal_info"  # what the fixture archive's pipeline.json writes


def overrides(redis_url: str, postgres_dsn: str) -> dict[str, str]:
    """``DETECTOR_REDIS_*`` / ``DETECTOR_POSTGRES_*``: the pods write where the soak was told, whatever the
    archive's pipeline.json says."""
    parts = urlsplit(redis_url)
    found = {"REDIS_HOST": parts.hostname, "REDIS_PORT": parts.port, "REDIS_PASSWORD": parts.password,
             "REDIS_DB": parts.path.strip("/") or None}
    dsn = conninfo_to_dict(postgres_dsn)
    found.update({"POSTGRES_HOST": dsn.get("host"), "POSTGRES_PORT": dsn.get("port"),
                  "POSTGRES_DATABASE": dsn.get("dbname"), "POSTGRES_USERNAME": dsn.get("user"),
                  "POSTGRES_PASSWORD": dsn.get("password")})
    return {f"DETECTOR_{key}": str(value) for key, value in found.items() if value not in (None, "")}


def _table_exists(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{TABLE}",)).fetchone()
    return row is not None and row[0] is not None


def postgres_rows(postgres_dsn: str, tag: str) -> int | None:
    """Rows the run's displays (``<tag>-NN``) wrote; None when the table does not exist."""
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        if not _table_exists(connection):
            return None
        query = sql.SQL("SELECT count(*) FROM {} WHERE display_id LIKE %s").format(sql.Identifier(SCHEMA, TABLE))
        row = connection.execute(query, (f"{tag}-%",)).fetchone()
        return int(row[0]) if row else 0


def clean(redis_url: str, postgres_dsn: str, tag: str) -> None:
    """Remove what the run's displays wrote: ``inference:<tag>-*`` keys and their rows."""
    delete_keys(redis_url, f"inference:{tag}-*")
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        if _table_exists(connection):
            query = sql.SQL("DELETE FROM {} WHERE display_id LIKE %s").format(sql.Identifier(SCHEMA, TABLE))
            connection.execute(query, (f"{tag}-%",))


def read_log(path: Path, quiet_at: float) -> tuple[int, dict[str, int]]:
    """The pods' "detection" lines of new visits, and warning/error messages logged before ``quiet_at`` (the
    cameras stopping on purpose makes the pods complain afterwards), by message, most frequent first."""
    logged, problems = 0, Counter[str]()
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            problems["(lines not in JSON: third-party output)"] += 1
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("msg") == "detection" and entry.get("update") is False:
            logged += 1
        elif entry.get("level") in ("warning", "error", "critical") and _before(entry.get("ts"), quiet_at):
            problems[f"{entry['level']}: {entry.get('msg')}"] += 1
    return logged, dict(problems.most_common())


def _before(stamp: Any, moment: float) -> bool:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() < moment
    except ValueError:
        return True
