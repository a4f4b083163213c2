"""Pod → broker events are re-sent until acknowledged, across broker restarts; the event outbox on disk.

No Redis or PostgreSQL here. The small WebSocket servers below play the broker's end of the pod link so a
test can close it before acknowledging, at a chosen moment; the same path with the real broker, Redis and
PostgreSQL (pod and broker killed, backend dropped) is tests/faults/test_delivery_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import websockets

from camera_pod.channel import BrokerChannel
from camera_pod.outbox import EventOutbox
from detector.contract.pods import Ack, DetectionEvent, StreamReport
from tests.support.servers import free_port


def report() -> StreamReport:
    return StreamReport(online=True, state="online", fps=10.0, last_frame_at=None, frames=1, reconnects=0,
                        last_error=None, http_port=1)


async def test_unacknowledged_event_is_resent_to_the_restarted_broker() -> None:
    port = free_port()
    received: list[str] = []
    first_seen = asyncio.Event()

    async def forgetful(socket: websockets.ServerConnection) -> None:
        async for raw in socket:
            message = json.loads(raw)
            if message["kind"] == "detection":
                received.append(message["id"])
                first_seen.set()
                await socket.close()  # the broker dies before acknowledging
                return

    async def reliable(socket: websockets.ServerConnection) -> None:
        async for raw in socket:
            message = json.loads(raw)
            if message["kind"] == "detection":
                received.append(message["id"])
                await socket.send(Ack(ids=[message["id"]]).model_dump_json())

    outbox = EventOutbox(resend_after_s=0.3)
    outbox.add(DetectionEvent(id="e1", subscription="d;c", captured_at=0.0, fields={"brand": "BMW"}, visit="v"))
    channel = BrokerChannel(f"ws://127.0.0.1:{port}/internal/pods/p", outbox, report, report_interval_s=0.1)
    server = await websockets.serve(forgetful, "127.0.0.1", port)
    task = asyncio.create_task(channel.run())
    try:
        await asyncio.wait_for(first_seen.wait(), 10)
        server.close()
        await server.wait_closed()
        assert len(outbox) == 1, "an unacknowledged event must stay in the outbox"
        server = await websockets.serve(reliable, "127.0.0.1", port)
        for _ in range(100):
            if len(outbox) == 0:
                break
            await asyncio.sleep(0.1)
        assert len(outbox) == 0
        assert received[:2] == ["e1", "e1"]
    finally:
        task.cancel()
        server.close()


def test_outbox_is_bounded_and_counts_what_it_drops() -> None:
    outbox = EventOutbox(max_events=2)
    for index in range(3):
        outbox.add(DetectionEvent(id=str(index), subscription="d;c", captured_at=0.0, fields={}, visit="v"))
    assert len(outbox) == 2 and outbox.dropped == 1
    assert [event.id for event in outbox.due(now=100.0)] == ["1", "2"]
    assert outbox.due(now=100.5) == []  # just sent: not due again yet
    outbox.acknowledge(["1"])
    assert [event.id for event in outbox.due(now=200.0)] == ["2"]


def _event(event_id: str) -> DetectionEvent:
    return DetectionEvent(id=event_id, subscription="d;c", captured_at=1.0, fields={"brand": "BMW"}, visit="v")


def test_unacknowledged_events_outlive_the_process(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pod-events.sqlite3"
    first_life = EventOutbox(path)
    for event_id in ("a", "b", "c"):
        first_life.add(_event(event_id))
    first_life.acknowledge(["b"])
    first_life.close()  # or a kill -9: every add() was committed before it returned
    second_life = EventOutbox(path)
    assert [event.id for event in second_life.due(now=10.0)] == ["a", "c"]
    second_life.acknowledge(["a", "c"])
    second_life.close()
    assert len(EventOutbox(path)) == 0


def test_the_bound_also_holds_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    outbox = EventOutbox(path, max_events=2)
    for event_id in ("a", "b", "c"):
        outbox.add(_event(event_id))
    outbox.close()
    assert [event.id for event in EventOutbox(path).due(now=10.0)] == ["b", "c"]


def test_an_unreadable_row_is_dropped_with_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    outbox = EventOutbox(path)
    outbox.add(_event("a"))
    outbox.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO events (id, body) VALUES ('broken', '{not json')")
    assert [event.id for event in EventOutbox(path).due(now=10.0)] == ["a"]


def test_resends_back_off_until_a_new_broker_link() -> None:
    outbox = EventOutbox(resend_after_s=1.0, max_resend_after_s=4.0)
    outbox.add(_event("a"))
    sent_at = [now for now in range(0, 40) if outbox.due(now=float(now))]
    assert sent_at == [0, 1, 3, 7, 11, 15, 19, 23, 27, 31, 35, 39]  # waits 1, 2, 4, then 4 (the cap)
    outbox.send_all_again()
    assert [event.id for event in outbox.due(now=39.5)] == ["a"]
