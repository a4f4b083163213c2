"""Detection events waiting for the broker's acknowledgement, kept on local disk until acknowledged.

The broker acknowledges an event only once it has delivered it to the backend (or decided it never
will: a duplicate, a subscription that is gone, an event past its max age), so this outbox is what
makes a killed pod, a killed broker or an absent backend lose nothing: a restarted pod reopens the
same file and sends again what is still in it. The events live in memory as well (they are few and
small); the SQLite file only makes them outlive the process. With ``path=None`` it is memory only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from pydantic import ValidationError

from detector.contract.pods import DetectionEvent

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, body TEXT NOT NULL);
"""


class EventOutbox:
    def __init__(self, path: Path | None = None, *, max_events: int = 10_000, resend_after_s: float = 3.0,
                 max_resend_after_s: float = 60.0) -> None:
        self.max_events = max_events
        self.resend_after_s = resend_after_s
        self.max_resend_after_s = max_resend_after_s
        self.dropped = 0
        # id -> (event, when last sent, times sent): the wait between sends doubles, so events held for a
        # long absent backend do not flood the broker; a new broker connection sends them all at once.
        self._pending: OrderedDict[str, tuple[DetectionEvent, float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an event is on disk before add() returns
            self._db.executescript(_SCHEMA)
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        for event_id, body in self._db.execute("SELECT id, body FROM events ORDER BY seq").fetchall():
            try:
                self._pending[event_id] = (DetectionEvent.model_validate_json(body), 0.0, 0)
            except ValidationError:
                log.error("event outbox: unreadable event dropped", extra={"event": event_id})
                self._db.execute("DELETE FROM events WHERE id = ?", (event_id,))
        if self._pending:
            log.info("event outbox: resuming unacknowledged events", extra={"events": len(self._pending)})

    def add(self, event: DetectionEvent) -> None:
        with self._lock:
            if len(self._pending) >= self.max_events:
                oldest, _ = self._pending.popitem(last=False)
                self.dropped += 1
                log.error("event outbox full: oldest event dropped", extra={"event": oldest,
                                                                            "max_events": self.max_events})
                self._execute("DELETE FROM events WHERE id = ?", (oldest,))
            self._pending[event.id] = (event, 0.0, 0)
            self._execute("INSERT OR IGNORE INTO events (id, body) VALUES (?, ?)", (event.id, event.model_dump_json()))

    def due(self, now: float | None = None) -> list[DetectionEvent]:
        """Events never sent, or sent and not acknowledged for ``resend_after_s`` (doubling with each send, up
        to ``max_resend_after_s``); marks them sent."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ready = [(event, sends) for event, sent, sends in self._pending.values()
                     if sends == 0 or now - sent >= min(self.resend_after_s * 2 ** (sends - 1),
                                                        self.max_resend_after_s)]
            for event, sends in ready:
                self._pending[event.id] = (event, now, sends + 1)
        return [event for event, _ in ready]

    def send_all_again(self) -> None:
        """A new link to the broker (perhaps a new broker): everything unacknowledged goes at the next send."""
        with self._lock:
            for event_id, (event, _, _) in self._pending.items():
                self._pending[event_id] = (event, 0.0, 0)

    def acknowledge(self, ids: list[str]) -> None:
        with self._lock:
            known = [event_id for event_id in ids if self._pending.pop(event_id, None) is not None]
            if known:
                self._execute(f"DELETE FROM events WHERE id IN ({','.join('?' * len(known))})", tuple(known))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        return len(self._pending)

    def _execute(self, sql: str, parameters: tuple[object, ...]) -> None:
        if self._db is None:
            return
        try:
            self._db.execute(sql, parameters)
        except sqlite3.Error as exc:  # a full or broken disk: keep going in memory, loudly
            log.error("event outbox: disk write failed; the event is kept in memory only",
                      extra={"error": f"{type(exc).__name__}: {exc}"})
