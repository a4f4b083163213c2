"""Hostile backend input through the broker's real WebSocket handler, with a runner that starts nothing.

Every bad message: the broker does not crash, the connection stays open (a ``requestState`` right after
it is answered), exactly one log line names the message type and the field (one per refused entry of a
subscription list), nothing changes but what its good entries ask, and memory does not grow with the
number of bad messages. Hand-written cases come from test_protocol.BAD;
hypothesis generates the rest (valid messages with one hostile field, random JSON, random text).
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketTestSession

from broker import app as broker_app
from broker.app import build_app
from broker.decoding import MESSAGE_TYPES
from broker.service import Broker
from broker.settings import BrokerSettings
from tests.broker.test_protocol import BAD, GOOD_SUBSCRIPTION, sub
from tests.support.recording import RecordingRunner

REFUSED = {"invalid backend message; ignored", "backend message too large; ignored", "subscription entry refused"}
SNAPSHOT = sub(subscriptionIdentifier="display-002;cam-002", rtspUrl=..., snapshotUrl="http://cam-2/snap.jpg",
               snapshotInterval=500, cropX1=..., cropY1=..., cropX2=..., cropY2=...)
VALID: dict[str, dict[str, Any]] = {
    "setSubscriptionList": {"type": "setSubscriptionList", "subscriptions": [GOOD_SUBSCRIPTION, SNAPSHOT]},
    "subscribe": {"type": "subscribe", "payload": GOOD_SUBSCRIPTION},
    "unsubscribe": {"type": "unsubscribe", "payload": {"subscriptionIdentifier": "display-001;cam-001"}},
    "requestState": {"type": "requestState"},
    "setSessionId": {"type": "setSessionId", "payload": {"displayIdentifier": "display-001", "sessionId": 12345}},
    "setProgressionStage": {"type": "setProgressionStage", "payload": {"displayIdentifier": "display-001",
                                                                       "progressionStage": "car_fueling"}},
    "patchSessionResult": {"type": "patchSessionResult", "payload": {"sessionId": 1, "success": True,
                                                                     "message": "ok"}},
}
HOSTILE_STRINGS = [
    "", " ", "a;b;c", ";", "d;cam\n", "\x00", "\u202e", "\ud800", "🚗" * 100, "' OR 1=1 --", "../../etc/passwd",
    "file:///etc/passwd", "rtmp://cam/live", "javascript:alert(1)", "gopher://h:70/", "http://", "rtsp://u:p@",
    "ftp://models/a.mpta", "/models/a.mpta", "NaN", "12", "true", "null", "{}", "[]", "%00", "rtsp://cam:99999/x",
]


def text_of(message: Any) -> str:
    return message if isinstance(message, str) else json.dumps(message)


def refusals(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [record for record in records if record.name in ("broker.app", "broker.service")
            and record.getMessage() in REFUSED]


def entry_refusal(record: logging.LogRecord) -> bool:
    return record.getMessage() == "subscription entry refused"


def failures(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """Anything worse than a refusal: an exception reached the handler's last line of defence."""
    return [record for record in records if record.exc_info or "unexpected failure" in record.getMessage()
            or "handling a backend message failed" in record.getMessage()]


@pytest.fixture
def broker() -> Broker:
    return Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner())


# ---- hand-written cases, one by one through the handler ------------------------------------------------

@pytest.mark.parametrize(("message", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
async def test_each_bad_message_is_one_log_line_naming_type_and_field(
        broker: Broker, caplog: pytest.LogCaptureFixture, message: Any, expected: str) -> None:
    await broker_app._handle_backend_text(broker, text_of(message))
    (refusal,) = refusals(caplog.records)
    assert failures(caplog.records) == []
    document_type = message.get("type") if isinstance(message, dict) else None
    if isinstance(document_type, str) and document_type in MESSAGE_TYPES:
        assert refusal.type == document_type  # type: ignore[attr-defined]
    if len(text_of(message)) > broker.settings.max_message_bytes:
        assert refusal.getMessage() == "backend message too large; ignored"
    else:
        assert expected in f"{refusal.type}: {refusal.error}"  # type: ignore[attr-defined]
    # Of two entries with the same identifier the first is used: the only case where something runs.
    running = {"display-001;cam-001"} if expected == "duplicate" else set()
    assert set(broker.subscriptions) == running and isinstance(broker.runner, RecordingRunner)
    assert len(broker.runner.specs) == len(running)


async def test_a_10_mb_message_is_refused_by_size_naming_its_type(broker: Broker,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    padded = json.dumps({"type": "setSubscriptionList", "subscriptions": [], "padding": "x" * (10 << 20)})
    await broker_app._handle_backend_text(broker, padded)
    (refusal,) = refusals(caplog.records)
    assert refusal.getMessage() == "backend message too large; ignored"
    assert (refusal.type, refusal.limit) == ("setSubscriptionList", 1 << 20)  # type: ignore[attr-defined]


# ---- the same and generated input through the WebSocket ---------------------------------------------

@pytest.fixture
def backend(broker: Broker) -> Iterator[WebSocketTestSession]:
    with TestClient(build_app(broker)) as client, client.websocket_connect("/") as socket:
        assert socket.receive_json()["type"] == "stateReport"
        yield socket


def exchange(socket: WebSocketTestSession, caplog: pytest.LogCaptureFixture, raw: str) -> list[logging.LogRecord]:
    """Send ``raw``, then prove the connection alive with a requestState; the refusals ``raw`` caused."""
    caplog.clear()
    socket.send_text(raw)
    socket.send_text('{"type": "requestState"}')
    assert socket.receive_json()["type"] == "stateReport", "the connection must stay open and answering"
    assert failures(caplog.records) == [], [record.getMessage() for record in caplog.records]
    return refusals(caplog.records)


def test_hand_written_bad_messages_over_the_websocket(backend: WebSocketTestSession, broker: Broker,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    for name, message, _ in BAD:
        assert len(exchange(backend, caplog, text_of(message))) == 1, name
    assert broker.subscriptions == {}, "the last list sent ([null]) wants nothing; no bad entry ever ran"
    backend.send_bytes(b"\xff\xfe not UTF-8")  # a binary frame: read as text, refused, connection kept
    backend.send_text('{"type": "requestState"}')
    assert backend.receive_json()["type"] == "stateReport"


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a document a hostile value can go (all but the root)."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    found: list[tuple[str | int, ...]] = []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


HOSTILE_VALUES = st.one_of(
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),  # any code point, surrogates too
    st.sampled_from(HOSTILE_STRINGS),
    st.sampled_from([257, 2049, 70_000, (1 << 20) + 1]).map(lambda size: "x" * size),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(min_value=1, max_value=80).map(_nested),
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> tuple[str, tuple[str | int, ...], str]:
    """A valid message of some type with one field replaced by a hostile value, or removed."""
    kind = draw(st.sampled_from(sorted(VALID)))
    document = copy.deepcopy(VALID[kind])
    path = draw(st.sampled_from(_paths(document)))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(path[-1], str) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(HOSTILE_VALUES)
    return kind, path, json.dumps(document)  # NaN/Infinity are written as such: hostile JSON too


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30)
RANDOM_INPUT = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(MESSAGE_TYPES)},
                          optional={"payload": JSON_VALUES, "subscriptions": JSON_VALUES}).map(json.dumps),
    st.text(max_size=200),
)
FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _names_the_field(refusal: logging.LogRecord, path: tuple[str | int, ...]) -> bool:
    error: str = refusal.error  # type: ignore[attr-defined]
    field = str(path[-1]) if isinstance(path[-1], str) else ".".join(map(str, path))
    whole_entry = entry_refusal(refusal) and "must be a JSON object" in error  # named by its position
    return field in error or whole_entry or "nested deeper than" in error or "invalid JSON" in error


def test_fuzzed_fields_of_every_message_type(backend: WebSocketTestSession, caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, int] = {}

    @FUZZ
    @given(mutated_messages())
    def one(case: tuple[str, tuple[str | int, ...], str]) -> None:
        kind, path, raw = case
        found = exchange(backend, caplog, raw)
        assert len(found) <= 1 or all(map(entry_refusal, found)), "one line per bad message, or per bad entry"
        if not found:
            return  # the hostile value happened to be valid: accepted like any other message
        seen[kind] = seen.get(kind, 0) + 1
        refusal = found[0]
        if path != ("type",):
            assert refusal.type == kind  # type: ignore[attr-defined]
        if refusal.getMessage() == "backend message too large; ignored":
            return
        assert _names_the_field(refusal, path), (path, refusal.error)  # type: ignore[attr-defined]

    one()
    assert set(seen) == set(MESSAGE_TYPES), f"every message type was refused at least once: {seen}"


def test_random_json_and_text(backend: WebSocketTestSession, caplog: pytest.LogCaptureFixture) -> None:
    @FUZZ
    @given(RANDOM_INPUT)
    def one(raw: str) -> None:
        found = exchange(backend, caplog, raw)
        assert len(found) <= 1 or all(map(entry_refusal, found))
        if found:
            assert found[0].type and found[0].error  # type: ignore[attr-defined]

    one()


# ---- memory ----------------------------------------------------------------------------------------

class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


async def test_bad_messages_do_not_grow_memory(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a warm-up, 2000 bad messages grow traced memory by less than 64 KiB (32 bytes a message)."""
    loggers = [logging.getLogger("broker.app"), logging.getLogger("broker.service")]
    counter = _Counter()
    for logger in loggers:
        monkeypatch.setattr(logger, "propagate", False)  # pytest's own handlers keep every record: not ours
        logger.addHandler(counter)
    messages = [text_of(message) for _, message, _ in BAD if len(text_of(message)) < 100_000]
    try:
        for raw in messages * 3:  # warm-up: caches, interned strings, pydantic's lazily built validators
            await broker_app._handle_backend_text(broker, raw)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for index in range(2000):
            await broker_app._handle_backend_text(broker, messages[index % len(messages)])
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for logger in loggers:
            logger.removeHandler(counter)
    # One line per bad message; the duplicate-identifier list also starts its first entry (one more line).
    assert counter.count >= 3 * len(messages) + 2000, "one log line per bad message"
    assert grown < 64 << 10, f"traced memory grew by {grown} bytes over 2000 bad messages"
