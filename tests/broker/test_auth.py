"""DETECTOR_AUTH_TOKEN: the backend WebSocket, /camera/ images and the pods' endpoint require it; /healthz never."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from pydantic import SecretStr
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from broker import auth
from broker.app import build_app
from broker.commands import build_runner
from broker.runners.local import LocalRunner
from broker.service import Broker
from broker.settings import BrokerSettings
from camera_pod.channel import BrokerChannel
from camera_pod.outbox import EventOutbox
from detector.contract.pods import StreamReport
from tests.support.recording import RecordingRunner
from tests.support.servers import free_port

TOKEN = "t0ken-0f-the-br0ker-xyz"
REPORT = StreamReport(online=True, state="streaming", fps=5.0, last_frame_at=None, frames=1, reconnects=0,
                      last_error=None, http_port=0)


def broker_with(token: str | None) -> Broker:
    return Broker(BrokerSettings(heartbeat_interval_sec=3600, auth_token=token), RecordingRunner())


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(build_app(broker_with(TOKEN))) as test_client:
        yield test_client


def _close_code(client: TestClient, path: str, **kwargs: object) -> int:
    with client.websocket_connect(path, **kwargs) as socket, \
            pytest.raises(WebSocketDisconnect) as closed:  # type: ignore[arg-type]
        socket.receive_text()
    return closed.value.code


@pytest.mark.parametrize("path", ["/", "/internal/pods/cam-0123456789ab"])
def test_websockets_without_the_right_token_are_closed_with_1008(client: TestClient, path: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert _close_code(client, path) == 1008
    assert _close_code(client, path, headers={"Authorization": "Bearer wrong-token-of-the-same-len"}) == 1008
    assert _close_code(client, f"{path}?token=wrong") == 1008
    assert _close_code(client, path, headers={"Authorization": f"Basic {TOKEN}"}) == 1008
    refusals = [r for r in caplog.records if r.getMessage() == "refused an unauthenticated request"]
    assert [r.reason for r in refusals] == ["no token offered", "wrong token", "wrong token",  # type: ignore[attr-defined]
                                            "no token offered"]
    assert all(r.path == path.split("?")[0] for r in refusals)  # type: ignore[attr-defined]
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "wrong-token-of-the-same-len" not in logged and TOKEN not in logged, "offered tokens are never logged"


def test_the_backend_connects_with_a_bearer_header_or_a_query_token(client: TestClient) -> None:
    with client.websocket_connect("/", headers={"Authorization": f"Bearer {TOKEN}"}) as socket:
        assert socket.receive_json()["type"] == "stateReport"
    with client.websocket_connect(f"/?token={TOKEN}") as socket:
        assert socket.receive_json()["type"] == "stateReport"
        socket.send_text('{"type": "requestState"}')
        assert socket.receive_json()["type"] == "stateReport"


def test_images_need_the_token_and_healthz_does_not(client: TestClient) -> None:
    refused = client.get("/camera/display-1%3Bcam-1/image")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/camera/display-1%3Bcam-1/image", headers={"Authorization": "Bearer nope"}).status_code == 401
    allowed = client.get("/camera/display-1%3Bcam-1/image", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 404, "authenticated: on to the (unknown) subscription"
    assert client.get(f"/camera/display-1%3Bcam-1/image?token={TOKEN}").status_code == 404
    assert client.get("/healthz").status_code == 200, "probes carry no token"


def test_the_console_cookie_opens_http_requests_but_no_websocket(client: TestClient,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    value = auth.cookie_value(SecretStr(TOKEN))
    assert TOKEN not in value and value == auth.cookie_value(SecretStr(TOKEN))
    client.cookies.set(auth.COOKIE, value)
    assert client.get("/camera/display-1%3Bcam-1/image").status_code == 404, "authenticated by the cookie"
    assert client.get("/refusals").status_code == 200
    assert client.get("/camera/display-1%3Bcam-1/image", headers={"Authorization": "Bearer nope"}).status_code == 401, \
        "a wrong token offered is refused, cookie or not"
    assert _close_code(client, "/") == 1008, "a cookie a browser sends on its own never opens a WebSocket"
    client.cookies.set(auth.COOKIE, auth.cookie_value(SecretStr("another-token-0123456789")))
    assert client.get("/refusals").status_code == 401
    reasons = [r.reason for r in caplog.records if r.getMessage() == "refused an unauthenticated request"]  # type: ignore[attr-defined]
    assert reasons == ["wrong token", "no token offered", "stale cookie"]
    assert value not in " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def test_without_a_token_everything_is_open_as_in_embedded_mode() -> None:
    with TestClient(build_app(broker_with(None))) as client:
        with client.websocket_connect("/") as socket:
            assert socket.receive_json()["type"] == "stateReport"
        assert client.get("/camera/display-1%3Bcam-1/image").status_code == 404


def test_the_token_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BrokerSettings().auth_token is None, "off by default"
    monkeypatch.setenv("DETECTOR_AUTH_TOKEN", "")
    assert BrokerSettings.load().auth_token is None, "an empty variable means off"
    monkeypatch.setenv("DETECTOR_AUTH_TOKEN", TOKEN)
    settings = BrokerSettings.load()
    assert settings.auth_token is not None and settings.auth_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    monkeypatch.setenv("DETECTOR_AUTH_TOKEN", "short-secret")
    with pytest.raises(ValueError) as caught:
        BrokerSettings.load()
    assert "at least 16" in str(caught.value) and "short-secret" not in str(caught.value)


def test_the_local_runner_hands_the_token_to_its_pods() -> None:
    runner = build_runner(BrokerSettings(auth_token=TOKEN))
    assert isinstance(runner, LocalRunner) and runner.environment == {"DETECTOR_AUTH_TOKEN": TOKEN}
    plain = build_runner(BrokerSettings())
    assert isinstance(plain, LocalRunner) and plain.environment == {}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Broker, int]]:
    """The broker app on a real port (camera pods connect with the websockets client)."""
    broker = broker_with(TOKEN)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(broker), host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield broker, port
    server.should_exit = True
    await task


def _link(port: int, token: str | None) -> BrokerChannel:
    return BrokerChannel(f"ws://127.0.0.1:{port}/internal/pods/cam-0123456789ab", EventOutbox(), lambda: REPORT,
                         token=token)


async def test_a_camera_pod_presents_its_token(served: tuple[Broker, int]) -> None:
    broker, port = served
    channel = _link(port, TOKEN)
    running = asyncio.create_task(channel.run())
    try:
        for _ in range(100):
            if broker.pods.status("cam-0123456789ab") is not None:
                break
            await asyncio.sleep(0.05)
        assert broker.pods.status("cam-0123456789ab") == REPORT
    finally:
        running.cancel()


async def test_a_camera_pod_with_a_wrong_token_says_so(served: tuple[Broker, int],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    broker, port = served
    channel = _link(port, "not-the-token-of-this-broker")
    running = asyncio.create_task(channel.run())
    try:
        for _ in range(100):
            if any("refused this pod's token" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
    assert broker.pods.status("cam-0123456789ab") is None
    (refusal,) = {r.getMessage() for r in caplog.records if r.levelno == logging.ERROR}
    assert refusal == "the broker refused this pod's token: set DETECTOR_AUTH_TOKEN to the broker's"
