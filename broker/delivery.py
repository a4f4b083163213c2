"""Messages to the backend, in order, and at-least-once delivery of the pods' detection events.

A pod keeps each event on its disk until the broker acknowledges it, and the broker acknowledges an
event only once its message is on the backend's socket (or the broker decided it never will be: a
duplicate, an event past ``max_age_s``). So a broker that dies, a backend that is away, or a queue
that overflows loses nothing: the pods send again what was not acknowledged, and the ids of events
already delivered are remembered to acknowledge (not deliver) a late resend.

One sender task writes to the backend; serialisation happens once, where a message is made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger(__name__)
ACK_BATCH = 256

EventState = Literal["new", "pending", "done"]


class BackendSocket(Protocol):
    async def send_text(self, data: str) -> None: ...


@dataclass(frozen=True)
class Outgoing:
    text: str  # the wire JSON
    kept: bool = True  # kept while no backend is connected (a stateReport is not: a fresh one follows)
    events: tuple[tuple[str, str], ...] = ()  # (pod, event id) acknowledged once this is sent
    captured_at: float | None = None  # epoch seconds of the frame, for the max age and the order
    type: str = "other"  # its message type, for the count of messages sent by type


class Delivery:
    def __init__(self, acknowledge: Callable[[str, list[str]], Awaitable[None]], *, max_kept: int = 10_000,
                 max_age_s: float = 600.0, remembered: int = 100_000) -> None:
        self.acknowledge = acknowledge
        self.max_kept = max_kept
        self.max_age_s = max_age_s
        self.remembered = remembered
        self.backend: BackendSocket | None = None
        # Counts since start (the broker's metrics read them): events dropped for age, events let go when the
        # queue was full (their pod sends them again), events delivered, messages sent by type.
        self.expired = 0
        self.evicted = 0
        self.delivered = 0
        self.sent: dict[str, int] = {}
        self._queue: deque[Outgoing] = deque()
        self._pending: set[str] = set()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._wake = asyncio.Event()

    # ---- the backend link -----------------------------------------------------------------------

    def connect(self, backend: BackendSocket) -> None:
        """Kept messages go out oldest first (after a broker restart pods resend in no common order)."""
        self.backend = backend
        self._queue = deque(sorted(self._queue, key=lambda item: item.captured_at or 0.0))
        self._wake.set()

    def disconnect(self, backend: BackendSocket) -> None:
        if self.backend is backend:
            self.backend = None

    # ---- events ---------------------------------------------------------------------------------

    def state(self, event_id: str) -> EventState:
        if event_id in self._done:
            return "done"
        return "pending" if event_id in self._pending else "new"

    def enqueue(self, item: Outgoing) -> None:
        if self.backend is None and not item.kept:
            return
        if item.kept and len(self._queue) >= self.max_kept:
            self._evict_oldest()
        self._queue.append(item)
        self._pending.update(event_id for _, event_id in item.events)
        self._wake.set()

    async def settle(self, pod: str, event_ids: list[str]) -> None:
        """Events handled without a message (a duplicate, a car already announced): acknowledge them now."""
        for event_id in event_ids:
            self._remember(event_id)
        await self.acknowledge(pod, event_ids)

    def __len__(self) -> int:
        return len(self._queue)

    # ---- the sender -----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send what is queued while a backend is connected; acknowledge the events sent, per pod, in batches."""
        acks: dict[str, list[str]] = {}
        try:
            while self._queue and self.backend is not None:
                item = self._queue[0]
                if self._too_old(item):
                    self._queue.popleft()
                    self.expired += len(item.events)
                    log.warning("event older than the max age; not delivered",
                                extra={"age_s": round(time.time() - (item.captured_at or 0.0), 1),
                                       "max_age_s": self.max_age_s})
                else:
                    backend = self.backend
                    try:
                        await backend.send_text(item.text)
                    except Exception as exc:  # the socket closed under us: keep the message for the next backend
                        log.warning("backend send failed; message kept", extra={"error": type(exc).__name__})
                        self.disconnect(backend)
                        if not item.kept:
                            self._remove(item)
                        break
                    self._remove(item)
                    self.sent[item.type] = self.sent.get(item.type, 0) + 1
                    self.delivered += len(item.events)
                for pod, event_id in item.events:
                    self._remember(event_id)
                    acks.setdefault(pod, []).append(event_id)
                if sum(map(len, acks.values())) >= ACK_BATCH:
                    await self._acknowledge_all(acks)
        finally:
            await self._acknowledge_all(acks)

    # ---- internals ------------------------------------------------------------------------------

    def _too_old(self, item: Outgoing) -> bool:
        return bool(item.events) and item.captured_at is not None and time.time() - item.captured_at > self.max_age_s

    def _remove(self, item: Outgoing) -> None:
        if self._queue and self._queue[0] is item:
            self._queue.popleft()
        else:  # the queue was re-sorted while the item was on the wire
            self._queue.remove(item)

    def _evict_oldest(self) -> None:
        for index, queued in enumerate(self._queue):
            if queued.kept:
                del self._queue[index]
                self._pending.difference_update(event_id for _, event_id in queued.events)
                self.evicted += len(queued.events)
                log.warning("backend queue full: oldest message left to its pod to send again",
                            extra={"max_kept": self.max_kept})
                return

    def _remember(self, event_id: str) -> None:
        self._pending.discard(event_id)
        self._done[event_id] = None
        if len(self._done) > self.remembered:
            self._done.popitem(last=False)

    async def _acknowledge_all(self, acks: dict[str, list[str]]) -> None:
        for pod, ids in acks.items():
            await self.acknowledge(pod, ids)
        acks.clear()
