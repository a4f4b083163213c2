"""Broker cost: reconciling a large subscription list, and routing detections pod → broker → backend.

    .venv/bin/python -P bench/broker_bench.py [--quick] [--subscriptions 1000] [--events 20000] [--json FILE]

Reconcile: ``broker.service.Broker.handle`` of a setSubscriptionList of N entries (each checked, then
reconciled; one camera each, so N pods), first apply and no-op re-apply, (i) with a recording runner that
only keeps the specs (the broker's own planning and diff), (ii) with the real ``KubernetesRunner``
against kmock's Kubernetes emulator (HTTP on loopback), and (iii) the same on N subscriptions with a round trip added
to every request (as a real API server costs),
writing one camera at a time and then ``kube_apply_concurrency`` cameras at once.
Routing: the real broker app (``broker.app.build_app``) under uvicorn in its own process; a fake camera pod
sends ``DetectionEvent``s to ``/internal/pods/<name>`` (reading the Acks) and a backend client at ``/``
receives the ``imageDetection``s. Baseline for routing: a bare relay on the same uvicorn/WebSocket stack
that forwards each pod message to the backend and acks it, with no broker logic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

# Appended, not prepended: the repository root holds a package named `operator` that must not shadow the stdlib.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench import common
from broker import protocol
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.pods import Ack, DetectionEvent, PodSpec

SCRIPT = Path(__file__).resolve()
MODEL = {"modelUrl": "https://models.example/gas_station.mpta", "modelId": 7, "modelName": "gas-station"}
TARGETS = {"first apply": ("< 1 s", 1.0), "no-op re-apply": ("< 0.2 s", 0.2)}
ROUTING_TARGET = 5000.0  # events/s
ROUTED_DISPLAYS = 10
POD = "cam-bench"
TOKEN = "bench-shared-token-0123456789"  # presented when the broker has a shared token (DETECTOR_AUTH_TOKEN) to check


def auth_settings() -> dict[str, str]:
    """Turn the broker's token check on where it has one, so routing pays for it as deployments do."""
    return {"auth_token": TOKEN} if "auth_token" in BrokerSettings.model_fields else {}


def parse_backend(raw: str) -> object:
    """How the app parses a backend message (``broker.decoding`` where it exists)."""
    try:
        from broker import decoding
    except ImportError:
        return protocol.BACKEND_MESSAGE.validate_json(raw)
    return decoding.parse_backend_message(raw)


class RecordingRunner:
    """Keeps the specs it is given (what would start or stop), nothing else: the broker's own cost."""

    def __init__(self) -> None:
        self.specs: dict[str, PodSpec] = {}
        self.changed = 0

    async def apply(self, specs: dict[str, PodSpec]) -> None:
        self.changed += sum(1 for name, spec in specs.items()
                            if name not in self.specs or self.specs[name].digest() != spec.digest())
        self.changed += sum(1 for name in self.specs if name not in specs)
        self.specs = dict(specs)

    async def recover(self) -> dict[str, PodSpec]:
        return {}

    async def image_url(self, name: str, report: object) -> str | None:
        return None

    async def close(self) -> None:
        pass

    def running(self) -> dict[str, PodSpec]:
        return dict(self.specs)


def subscription_list(count: int) -> list[dict[str, Any]]:
    """``count`` subscriptions, one camera each; every other one with a crop."""
    wanted = []
    for index in range(count):
        item = {"subscriptionIdentifier": f"display-{index:05d};cam-{index:05d}",
                "rtspUrl": f"rtsp://viewer:secret@10.{index // 65536}.{index // 256 % 256}.{index % 256}:554/live",
                **MODEL}
        if index % 2:
            item.update(cropX1=100, cropY1=80, cropX2=560, cropY2=400)
        wanted.append(item)
    return wanted


def settings_for(count: int) -> BrokerSettings:
    return BrokerSettings(max_streams=max(count, 1), public_url="ws://detector-broker:8000",
                          namespace="cameras", broker_id="bench-broker")


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


# ---- reconcile ------------------------------------------------------------------------------------

async def reconcile_recording(count: int, repeats: int) -> dict[str, Any]:
    raw = json.dumps({"type": "setSubscriptionList", "subscriptions": subscription_list(count)})
    parse, first, again = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        message = parse_backend(raw)
        parse.append(time.perf_counter() - started)
        assert isinstance(message, protocol.SetSubscriptionList)
        runner = RecordingRunner()
        broker = Broker(settings_for(count), runner)
        first.append(await timed(lambda b=broker, m=message: b.handle(m)))
        changed = runner.changed
        again.append(await timed(lambda b=broker, m=message: b.handle(m)))
        if runner.changed != changed or len(runner.specs) != count:
            raise RuntimeError(f"recording runner: {len(runner.specs)} pods, {runner.changed - changed} re-applied")
    return {"subscriptions": count, "pods": count, "repeats": repeats, "parse_s": statistics.median(parse),
            "first_s": statistics.median(first), "noop_s": statistics.median(again)}


@contextlib.asynccontextmanager
async def emulator(latency: float = 0.0) -> AsyncIterator[Any]:
    """kmock's Kubernetes emulator on a loopback port, CameraSubscriptions and Secrets served (as the tests do);
    ``latency`` seconds added to every request; no request log (``served`` counts the requests)."""
    import kmock

    from detector.contract.camerasubscription import GROUP, PLURAL, VERSION
    from tests.support import kube
    from tests.support.kube_metered import MeteredEmulator

    async with MeteredEmulator(latency=latency, keep_log=False) as server, kmock.Server(server):
        kube.register(server, f"{GROUP}/{VERSION}/{PLURAL}", "CameraSubscription", subresources={"status"})
        kube.register(server, "v1/secrets", "Secret")
        yield server


def api_client(server: Any, connections: int) -> Any:
    """A client of the emulator keeping a connection per writer (urllib3 keeps cpu_count * 5 by default)."""
    from kubernetes import client

    return client.ApiClient(client.Configuration(host=str(server.url).rstrip("/"),
                                                 connection_pool_maxsize=connections + 1))


def stored_resources(server: Any, namespace: str) -> int:
    from detector.contract.camerasubscription import GROUP, PLURAL, VERSION
    from tests.support import kube

    return len(kube.live(server, f"{GROUP}/{VERSION}/{PLURAL}", namespace))


async def reconcile_kubernetes(count: int) -> dict[str, Any]:
    """The real runner against kmock, then the same writes without the runner on a fresh emulator (the floor)."""
    from broker.runners.kubernetes import KubernetesRunner

    message = protocol.SetSubscriptionList.model_validate({"type": "setSubscriptionList",
                                                           "subscriptions": subscription_list(count)})
    settings = settings_for(count)
    async with emulator() as server:
        runner = KubernetesRunner(api_client(server, settings.kube_apply_concurrency), settings)
        broker = Broker(settings, runner)
        first = await timed(lambda: broker.handle(message))
        requests_first = server.served
        stored = stored_resources(server, settings.namespace)
        noop = await timed(lambda: broker.handle(message))
        requests_noop = server.served - requests_first
    if stored != count:
        raise RuntimeError(f"kubernetes runner: {stored} CameraSubscriptions for {count} subscriptions")
    async with emulator() as server:
        floor = await timed(lambda: bare_writes(server, runner, list(runner.running().values()),
                                                settings.kube_apply_concurrency))
        requests_floor = server.served
    return {"subscriptions": count, "pods": stored, "concurrency": settings.kube_apply_concurrency,
            "first_s": first, "noop_s": noop, "requests_first": requests_first, "requests_noop": requests_noop,
            "floor_s": floor, "requests_floor": requests_floor}


async def bare_writes(server: Any, runner: Any, specs: list[PodSpec], concurrency: int) -> None:
    """The runner's writes for ``specs`` (its Secret and resource bodies, the same apply-or-create) without it:
    ``concurrency`` cameras at once, each one's calls in a pool of as many threads."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    from broker.runners import kube as calls
    from broker.runners.kubernetes import build_resource, build_secret

    api = api_client(server, concurrency)
    secrets = calls.Secrets(client.CoreV1Api(api), runner.namespace)
    resources = calls.CameraSubscriptions(client.CustomObjectsApi(api), runner.namespace)
    loop, bound = asyncio.get_running_loop(), asyncio.Semaphore(concurrency)

    async def write(spec: PodSpec, threads: ThreadPoolExecutor) -> None:
        async with bound:
            secret = build_secret(spec.name, runner.namespace, spec, runner.labels)
            await loop.run_in_executor(threads, calls.server_side_apply, secrets, secret)
            await loop.run_in_executor(threads, calls.server_side_apply, resources,
                                       build_resource(spec, runner.namespace, runner.labels))

    with ThreadPoolExecutor(concurrency) as threads:
        await asyncio.gather(*(write(spec, threads) for spec in specs))


async def reconcile_concurrency(count: int, latency: float) -> dict[str, Any]:
    """The runner on kmock with ``latency`` added per request: first apply one camera at a time, then with the
    default bound (each on a fresh emulator), then the no-op re-apply."""
    from broker.runners.kubernetes import KubernetesRunner

    message = protocol.SetSubscriptionList.model_validate({"type": "setSubscriptionList",
                                                           "subscriptions": subscription_list(count)})
    default = settings_for(count).kube_apply_concurrency
    result: dict[str, Any] = {"subscriptions": count, "latency_ms": latency * 1000, "concurrency": default}
    for concurrency, key in ((1, "serial"), (default, "concurrent")):
        settings = settings_for(count).model_copy(update={"kube_apply_concurrency": concurrency})
        async with emulator(latency) as server:
            broker = Broker(settings, KubernetesRunner(api_client(server, concurrency), settings))
            result[f"{key}_s"] = await timed(lambda b=broker: b.handle(message))
            result[f"requests_{key}"], result[f"peak_{key}"] = server.served, server.peak
            stored = stored_resources(server, settings.namespace)
            if stored != count:
                raise RuntimeError(f"kubernetes runner: {stored} CameraSubscriptions for {count} subscriptions")
            if concurrency == default:
                result["noop_s"] = await timed(lambda b=broker: b.handle(message))
                result["requests_noop"] = server.served - result["requests_concurrent"]
    return result


# ---- routing: servers (children) ----------------------------------------------------------------

def relay_app() -> FastAPI:
    """The routing baseline: forward every pod message to the backend and ack it; no broker logic."""
    app = FastAPI()
    backends: list[WebSocket] = []

    @app.websocket("/")
    async def backend(ws: WebSocket) -> None:
        await ws.accept()
        backends.append(ws)
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await ws.receive_text()

    @app.websocket("/internal/pods/{name}")
    async def pod(ws: WebSocket, name: str) -> None:
        await ws.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                raw = await ws.receive_text()
                document = json.loads(raw)
                if document.get("kind") == "detection" and backends:
                    await backends[-1].send_text(raw)
                    await ws.send_text(json.dumps({"kind": "ack", "ids": [document["id"]]}))

    return app


def serve(kind: str, port: int) -> None:
    import uvicorn

    from broker.app import build_app

    logging.basicConfig(level=logging.ERROR)  # the backend disconnecting at the end is expected
    app = build_app(Broker(BrokerSettings(port=port, **auth_settings()), RecordingRunner())) \
        if kind == "broker" else relay_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---- routing: the clients (this process) ---------------------------------------------------------

async def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


async def subscribe(backend: Any, displays: int) -> list[str]:
    """setSubscriptionList, then requestState: the stateReport answering it means the list is reconciled."""
    wanted = subscription_list(displays)
    await backend.send(json.dumps({"type": "setSubscriptionList", "subscriptions": wanted}))
    await backend.send(json.dumps({"type": "requestState"}))
    while True:
        message = json.loads(await backend.recv())
        if message.get("type") == "stateReport" and len(message.get("cameraConnections", [])) == displays:
            return [item["subscriptionIdentifier"] for item in wanted]


async def route(port: int, events: int, *, reconciled: bool) -> dict[str, Any]:
    import websockets

    base, headers = f"ws://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    async with websockets.connect(f"{base}/", max_size=16 << 20, additional_headers=headers) as backend, \
            websockets.connect(f"{base}/internal/pods/{POD}", max_size=1 << 20, additional_headers=headers) as pod:
        identifiers = await subscribe(backend, ROUTED_DISPLAYS) if reconciled else \
            [item["subscriptionIdentifier"] for item in subscription_list(ROUTED_DISPLAYS)]
        now = time.time()
        wire = [DetectionEvent(id=uuid.uuid4().hex, subscription=identifiers[index % len(identifiers)],
                               captured_at=now, fields={"brand": "Toyota", "body_type": "Sedan"},
                               visit=uuid.uuid4().hex).model_dump_json() for index in range(events)]

        async def acks() -> int:
            count = 0
            while count < events:
                count += len(Ack.model_validate_json(await pod.recv()).ids)
            return count

        async def detections() -> int:
            count = 0
            while count < events:
                message = json.loads(await backend.recv())
                count += message.get("type") == "imageDetection" or message.get("kind") == "detection"
            return count

        started = time.perf_counter()
        receiving = asyncio.gather(acks(), detections())
        for raw in wire:
            await pod.send(raw)
        acked, delivered = await asyncio.wait_for(receiving, timeout=max(60.0, events / 200))
        elapsed = time.perf_counter() - started
    return {"events": events, "acked": acked, "delivered": delivered, "seconds": elapsed,
            "events_per_s": events / elapsed}


class _Backend:
    """Stands in for the backend's WebSocket (and the pod's, for the Acks): counts what is sent."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_text(self, data: str) -> None:
        self.sent += 1


async def route_in_process(events: int) -> dict[str, Any]:
    """The broker's own work per event, no sockets: parse as the pod endpoint does, ``on_event``, deliver, Ack."""
    from detector.contract.pods import POD_MESSAGE

    broker = Broker(BrokerSettings(), RecordingRunner())
    wanted = [protocol.Subscription.model_validate(item) for item in subscription_list(ROUTED_DISPLAYS)]
    await broker.reconcile(wanted)
    backend, pod = _Backend(), _Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]  # duck-typed: only send_text is used
    broker.pods.attach("pod", pod)  # type: ignore[arg-type]
    wire = [DetectionEvent(id=uuid.uuid4().hex, subscription=wanted[index % len(wanted)].subscriptionIdentifier,
                           captured_at=time.time(), fields={"brand": "Toyota", "body_type": "Sedan"},
                           visit=uuid.uuid4().hex).model_dump_json() for index in range(events)]
    started = time.perf_counter()
    for raw in wire:
        message = POD_MESSAGE.validate_json(raw)
        await broker.on_event(message, "pod")
        await broker.delivery.flush()
    elapsed = time.perf_counter() - started
    return {"events": events, "acked": events, "delivered": backend.sent, "seconds": elapsed,
            "events_per_s": events / elapsed}


async def routing(kind: str, events: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-P", str(SCRIPT), "--serve", kind, "--port", str(port)],
                              cwd=common.REPO)
    try:
        await wait_listening(port, server)
        return await route(port, events, reconciled=kind == "broker")
    finally:
        server.terminate()
        server.wait(10)


# ---- the tables ----------------------------------------------------------------------------------

def reconcile_table(recording: dict[str, Any], kubernetes: dict[str, Any] | None) -> str:
    def met(seconds: float, limit: float, count: int) -> str:
        return ("yes" if seconds < limit else "no") if count >= 1000 else f"({'yes' if seconds < limit else 'no'})"

    n = recording["subscriptions"]
    rows: list[list[object]] = [["parse setSubscriptionList", "(message validation)", n, "", recording["parse_s"],
                                 "", "", ""]]
    for step, key in (("first apply", "first_s"), ("no-op re-apply", "noop_s")):
        label, limit = TARGETS[step]
        rows.append([step, "recording runner", n, "", recording[key], "", label, met(recording[key], limit, n)])
        if kubernetes is not None:
            k = kubernetes["subscriptions"]
            requests = kubernetes["requests_first" if key == "first_s" else "requests_noop"]
            rows.append([step, "KubernetesRunner → kmock", k, requests, kubernetes[key],
                         common.ratio(kubernetes[key], kubernetes["floor_s"]) if key == "first_s" else "", label,
                         met(kubernetes[key], limit, k)])
    if kubernetes is not None:
        rows.append(["first apply", "the same writes, no runner (floor)", kubernetes["subscriptions"],
                     kubernetes["requests_floor"], kubernetes["floor_s"], 1.0, "", ""])
    notes = [f"One camera per subscription, so one pod each; recording runner: median of {recording['repeats']} "
             "runs. Targets are for 1 000 subscriptions: a verdict in parentheses is for fewer."]
    if kubernetes is not None:
        notes.append(f"KubernetesRunner rows: {kubernetes['subscriptions']} subscriptions, "
                     f"{kubernetes['concurrency']} cameras written at once (kube_apply_concurrency). kmock matches "
                     "every request against its whole request log (dropped here once a request is answered) and "
                     "scans every object it holds, so its answers slow as it fills: its cost, not the runner's, "
                     "grows with the count. The floor row makes the runner's own writes on a fresh emulator "
                     "without the runner, as many at once: 'x floor' is the runner's overhead. kmock "
                     "answers an apply PATCH of a missing object with 404, so a first write is PATCH + POST (a "
                     "real API server creates on the PATCH): 4 requests per pod here, 2 on a cluster.")
    else:
        notes.append("KubernetesRunner rows skipped (--no-kubernetes).")
    return common.table("Reconcile (Broker.reconcile)", ["step", "runner", "subscriptions", "API requests",
                                                         "seconds", "x floor", "target", "met"], rows, notes)


def concurrency_table(result: dict[str, Any]) -> str:
    latency, n, bound = result["latency_ms"], result["subscriptions"], result["concurrency"]
    runner = f"KubernetesRunner → kmock + {latency:g} ms/request"
    rows: list[list[object]] = [
        ["first apply", f"{runner}, 1 camera at a time", n, result["requests_serial"], result["serial_s"],
         result["peak_serial"], 1.0],
        ["first apply", f"{runner}, {bound} at a time (default)", n, result["requests_concurrent"],
         result["concurrent_s"], result["peak_concurrent"], common.ratio(result["concurrent_s"], result["serial_s"])],
        ["no-op re-apply", f"{runner}, {bound} at a time (default)", n, result["requests_noop"], result["noop_s"],
         "", ""]]
    return common.table(
        "Reconcile, KubernetesRunner with a round trip per request (kube_apply_concurrency)",
        ["step", "runner", "subscriptions", "API requests", "seconds", "most requests in flight",
         "x one at a time"], rows,
        [f"kmock with {latency:g} ms added to every request before it is served (a real API server's round trip "
         "is ~10-30 ms; kmock alone serves one request at a time, on the bench's event loop, without waiting); "
         "each first apply on a fresh emulator. 4 requests per pod on kmock (see above). What is left "
         f"at {bound} at a time is kmock's and the client's CPU time on {common.cores()} cores, which a real "
         "API server does not share with the broker."])


def routing_table(relay: dict[str, Any], broker: dict[str, Any], alone: dict[str, Any]) -> str:
    rows = [["bare relay (baseline)", relay["events"], relay["seconds"], relay["events_per_s"], 1.0, "", ""],
            ["broker (build_app)", broker["events"], broker["seconds"], broker["events_per_s"],
             common.ratio(broker["events_per_s"], relay["events_per_s"]), f"≥ {ROUTING_TARGET:g} events/s",
             "yes" if broker["events_per_s"] >= ROUTING_TARGET else "no"],
            ["broker logic alone, no sockets (parse, on_event, Ack)", alone["events"], alone["seconds"],
             alone["events_per_s"], common.ratio(alone["events_per_s"], relay["events_per_s"]), "", ""]]
    return common.table(
        "Routing DetectionEvent → imageDetection (pod WebSocket → broker → backend WebSocket)",
        ["server", "events", "seconds", "events/s", "ratio to relay", "target", "met"], rows,
        [f"Server in its own process under uvicorn; pod and backend clients in the bench process; "
         f"{ROUTED_DISPLAYS} subscriptions; clock from the first event sent to the last imageDetection and Ack "
         f"received; {common.cores()} cores. The last row runs in the bench process with stand-in sockets "
         "(each event delivered and acknowledged at once): the ceiling the broker's own code sets."])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    count = args.subscriptions or (100 if args.quick else 1000)
    events = args.events or (2000 if args.quick else 20000)
    print("  reconcile, recording runner ...", file=sys.stderr, flush=True)
    recording = await reconcile_recording(count, 3 if args.quick else 5)
    kubernetes = concurrency = None
    if not args.no_kubernetes:
        print("  reconcile, KubernetesRunner → kmock ...", file=sys.stderr, flush=True)
        kubernetes = await reconcile_kubernetes(args.kube_subscriptions or (20 if args.quick else 100))
        print(f"  reconcile, KubernetesRunner → kmock + {args.kube_latency_ms:g} ms/request, 1 then "
              f"{BrokerSettings().kube_apply_concurrency} at a time ...", file=sys.stderr, flush=True)
        concurrency = await reconcile_concurrency(count, args.kube_latency_ms / 1000)
    print("  routing through a bare relay, then the broker ...", file=sys.stderr, flush=True)
    relay = await routing("relay", events)
    broker = await routing("broker", events)
    alone = await route_in_process(events)
    print(reconcile_table(recording, kubernetes))
    if concurrency is not None:
        print(concurrency_table(concurrency))
    print(routing_table(relay, broker, alone))
    return {"cores": common.cores(),
            "reconcile": {"recording": recording, "kubernetes": kubernetes, "concurrency": concurrency},
            "routing": {"relay": relay, "broker": broker, "in_process": alone}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 subscriptions (20 on kmock), 2 000 events")
    parser.add_argument("--subscriptions", type=int, default=None,
                        help="default 1000 (also for the concurrency rows on kmock)")
    parser.add_argument("--kube-subscriptions", type=int, default=None,
                        help="for the KubernetesRunner on kmock (default 100: kmock slows as it fills)")
    parser.add_argument("--kube-latency-ms", type=float, default=10.0,
                        help="round trip added to each kmock request for the concurrency rows (default 10)")
    parser.add_argument("--events", type=int, default=None, help="default 20000")
    parser.add_argument("--no-kubernetes", action="store_true", help="skip the KubernetesRunner/kmock rows")
    parser.add_argument("--json", metavar="FILE", help="save every result")
    parser.add_argument("--serve", choices=("broker", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    logging.basicConfig(level=logging.WARNING)
    common.write_json(args.json, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
