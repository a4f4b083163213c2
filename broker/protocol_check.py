"""``detector protocol-test``: walk the spec's typical flow against any worker, one PASS/FAIL per step.

A worker loads models from http(s) URLs only; a local ``--model-url`` file is served over HTTP on
127.0.0.1 for the duration of the walk (so it works against a worker on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from detector.contract.environment import AUTH_TOKEN_ENV
from detector.kit.redaction import redact_text, redact_url

Message = dict[str, Any]


@dataclass
class FlowClient:
    socket: websockets.ClientConnection
    inbox: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        await self.socket.send(json.dumps(message))

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.inbox:
                if predicate(message):
                    self.inbox.remove(message)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message")
            raw = await asyncio.wait_for(self.socket.recv(), remaining)
            self.inbox.append(json.loads(raw))


def _report_lists(identifier: str, online: bool | None = None) -> Callable[[Message], bool]:
    def matches(message: Message) -> bool:
        if message.get("type") != "stateReport":
            return False
        cameras = {c["subscriptionIdentifier"]: c for c in message.get("cameraConnections", [])}
        if online is None:
            return identifier not in cameras
        return identifier in cameras and cameras[identifier]["online"] is online
    return matches


@contextlib.contextmanager
def served_model(source: str) -> Iterator[str]:
    """``source`` if it is an http(s) URL; else the local file, served on 127.0.0.1 while the block runs."""
    if source.lower().startswith(("http://", "https://")):
        yield source
        return
    archive = Path(source).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()
            self.wfile.write(archive)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{Path(source).name}"
    finally:
        server.shutdown()
        server.server_close()


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def walk(url: str, subscription: Message, timeout: float, report: Callable[[str, bool, str], None],
               token: str | None = None) -> bool:
    identifier = subscription["subscriptionIdentifier"]
    display = identifier.split(";")[0]
    results: list[bool] = []

    async def step(name: str, action: Callable[[], Awaitable[str]]) -> None:
        try:
            detail = await action()
            results.append(True)
            report(name, True, detail)
        except Exception as exc:
            results.append(False)
            report(name, False, f"{type(exc).__name__}: {exc}")

    async with websockets.connect(url, open_timeout=timeout, max_size=16 << 20,
                                  additional_headers=auth_headers(token)) as socket:
        client = FlowClient(socket)

        async def heartbeat() -> str:
            started = time.monotonic()
            await client.wait_for(lambda m: m.get("type") == "stateReport", 3)
            return f"first stateReport after {time.monotonic() - started:.1f} s"

        async def subscribe() -> str:
            await client.send({"type": "setSubscriptionList", "subscriptions": [subscription]})
            await client.wait_for(_report_lists(identifier, online=True), timeout)
            return f"{identifier} online"

        async def request_state() -> str:
            await client.send({"type": "requestState"})
            await client.wait_for(lambda m: m.get("type") == "stateReport", 3)
            return "stateReport answered"

        async def image() -> str:
            http_url = url.replace("ws://", "http://").replace("wss://", "https://").rstrip("/")
            async with httpx.AsyncClient(timeout=10, headers=auth_headers(token)) as http:
                response = await http.get(f"{http_url}/camera/{identifier.replace(';', '%3B')}/image")
            if response.status_code != 200 or response.headers.get("content-type") != "image/jpeg":
                raise AssertionError(f"HTTP {response.status_code} {response.headers.get('content-type')}")
            return f"{len(response.content)} bytes of JPEG"

        async def session() -> str:
            for message in ({"type": "setSessionId", "payload": {"displayIdentifier": display, "sessionId": 4242}},
                            {"type": "setProgressionStage", "payload": {"displayIdentifier": display,
                                                                        "progressionStage": "car_fueling"}},
                            {"type": "setSessionId", "payload": {"displayIdentifier": display, "sessionId": None}}):
                await client.send(message)
            await client.send({"type": "requestState"})
            await client.wait_for(_report_lists(identifier, online=True), 5)
            return "session set, stage set, session cleared; worker still answering"

        async def garbage() -> str:
            await client.send({"type": "noSuchMessage"})
            await socket.send("{not json")
            await client.send({"type": "requestState"})
            await client.wait_for(lambda m: m.get("type") == "stateReport", 5)
            return "bad messages ignored, connection kept"

        async def unsubscribe() -> str:
            await client.send({"type": "setSubscriptionList", "subscriptions": []})
            await client.wait_for(_report_lists(identifier, online=None), timeout)
            return f"{identifier} no longer reported"

        for name, action in (("heartbeat", heartbeat), ("subscribe", subscribe), ("requestState", request_state),
                             ("image", image), ("session", session), ("bad input", garbage),
                             ("unsubscribe", unsubscribe)):
            await step(name, action)
    return all(results)


def protocol_test_command(args: argparse.Namespace) -> int:
    subscription: Message = {"subscriptionIdentifier": args.subscription, "modelId": 1, "modelName": "protocol-test"}
    if args.rtsp_url:
        subscription["rtspUrl"] = args.rtsp_url
    else:
        subscription.update(snapshotUrl=args.snapshot_url, snapshotInterval=args.snapshot_interval)

    def report(name: str, ok: bool, detail: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {name:14s} {redact_text(detail)}", flush=True)

    with served_model(args.model_url) as model_url:
        subscription["modelUrl"] = model_url
        try:
            passed = asyncio.run(walk(args.url, subscription, args.timeout, report, token=args.token))
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:  # no connection at all
            report("connect", False, f"{redact_url(args.url)}: {type(exc).__name__}: {exc}")
            passed = False
    print("all steps passed" if passed else "some steps failed")
    return 0 if passed else 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser("protocol-test", help="walk the backend protocol against a running worker")
    check.add_argument("--url", default="ws://127.0.0.1:8000/", help="the worker's WebSocket URL")
    check.add_argument("--model-url", required=True,
                       help=".mpta http(s) URL, or a local file (served on 127.0.0.1 to a worker on this machine)")
    camera = check.add_mutually_exclusive_group(required=True)
    camera.add_argument("--rtsp-url")
    camera.add_argument("--snapshot-url")
    check.add_argument("--snapshot-interval", type=int, default=500, help="ms")
    check.add_argument("--subscription", default="protocol-test;cam-1")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a camera to go online")
    check.add_argument("--token", default=os.environ.get(AUTH_TOKEN_ENV) or None,
                       help=f"the worker's auth token (default: env {AUTH_TOKEN_ENV}; prefer the variable, a "
                            "command line is visible to every user of the machine)")
    check.set_defaults(handler=protocol_test_command)
