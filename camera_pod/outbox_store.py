"""The action outbox's durable queue: one SQLite file on local disk, bounded, with a dead-letter table.

Why SQLite: it is in the standard library, a commit with ``synchronous=FULL`` is on disk when it
returns (so an accepted write survives a pod crash or restart), WAL mode lets the metrics thread read
while the drainer writes, and a row per write gives ordering (the autoincrement id), attempts and
dead letters without inventing a file format. It is a local queue in front of Redis and PostgreSQL,
not a replacement for either: rows are deleted as soon as their write has been applied.

Every method is synchronous and serialized by one lock; callers on the event loop run them with
``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Service = Literal["redis", "postgres"]
SERVICES: tuple[Service, ...] = ("redis", "postgres")
# Images are the only droppable writes: they expire in Redis anyway (a TTL of minutes), and a visit's
# row and message stay meaningful without them. Messages and rows are dropped only when nothing else is left.
DROPPABLE_KINDS = frozenset({"save_image"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    data BLOB,
    size INTEGER NOT NULL,
    droppable INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_by_service ON items (service, id);
CREATE INDEX IF NOT EXISTS items_droppable ON items (droppable, id);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    data BLOB,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    died_at REAL NOT NULL
);
"""
_COLUMNS = "id, service, key, kind, args, data, created_at, attempts"


@dataclass(frozen=True)
class Item:
    """One queued write. ``key`` orders writes (a Redis key or channel, a table row); ``args`` are JSON."""

    id: int
    service: Service
    key: str
    kind: str
    args: Mapping[str, object]
    data: bytes | None
    created_at: float
    attempts: int


@dataclass(frozen=True)
class Dropped:
    kind: str
    count: int


def _item(row: tuple[object, ...]) -> Item:
    id_, service, key, kind, args, data, created_at, attempts = row
    return Item(int(id_), service, str(key), str(kind), json.loads(str(args)),  # type: ignore[arg-type, call-overload]
                None if data is None else bytes(data), float(created_at), int(attempts))  # type: ignore[arg-type, call-overload]


class OutboxStore:
    def __init__(self, path: Path, *, max_items: int, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is fsync'ed before enqueue returns
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, service: Service, key: str, kind: str, args: Mapping[str, object],
                data: bytes | None = None, *, now: float | None = None) -> list[Dropped]:
        """Store one write durably; returns what the bound made room by dropping (oldest droppable first)."""
        encoded = json.dumps(dict(args), separators=(",", ":"))
        size = len(encoded) + len(key) + (len(data) if data else 0)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO items (service, key, kind, args, data, size, droppable, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (service, key, kind, encoded, data, size, kind in DROPPABLE_KINDS,
                     time.time() if now is None else now))
                dropped = self._enforce_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dropped

    def _enforce_bound(self) -> list[Dropped]:
        dropped: dict[str, int] = {}
        while True:
            count, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items").fetchone()
            if count <= self.max_items and (total <= self.max_bytes or count <= 1):
                break
            row = self._db.execute("SELECT id, kind FROM items ORDER BY droppable DESC, id LIMIT 1").fetchone()
            self._db.execute("DELETE FROM items WHERE id = ?", (row[0],))
            dropped[row[1]] = dropped.get(row[1], 0) + 1
        return [Dropped(kind, count) for kind, count in dropped.items()]

    def head(self, service: Service, limit: int = 64) -> list[Item]:
        """The oldest writes for a service, in the order they were accepted."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE service = ? ORDER BY id LIMIT ?",
                                    (service, limit)).fetchall()
        return [_item(row) for row in rows]

    def delete(self, item_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM items WHERE id = ?", (item_id,))

    def record_attempt(self, item_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE items SET attempts = attempts + 1 WHERE id = ?", (item_id,))

    def bury(self, item: Item, error: str) -> None:
        """Move a write that can never succeed to the dead-letter table, with the error that killed it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR REPLACE INTO dead ({_COLUMNS}, error, died_at) "
                f"SELECT {_COLUMNS}, ?, ? FROM items WHERE id = ?", (error, time.time(), item.id))
            self._db.execute("DELETE FROM items WHERE id = ?", (item.id,))
            self._db.execute("COMMIT")

    def dead(self) -> list[tuple[Item, str]]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS}, error FROM dead ORDER BY id").fetchall()
        return [(_item(row[:-1]), str(row[-1])) for row in rows]

    def stats(self, now: float | None = None) -> dict[Service, tuple[int, float]]:
        """Per service: queued writes and the age in seconds of the oldest (0 when empty)."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute("SELECT service, COUNT(*), MIN(created_at) FROM items GROUP BY service").fetchall()
        found = {service: (int(count), max(0.0, now - float(oldest))) for service, count, oldest in rows}
        return {service: found.get(service, (0, 0.0)) for service in SERVICES}
