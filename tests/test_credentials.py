"""Credentials never leak: camera and model URLs carry a known password, errors are provoked, every output is
searched for it — raw log records of every level (tracebacks included), a camera pod's /metrics and
/healthz, the CameraSubscription the broker writes, the broker's console (page, snapshot, event stream,
assets), and the ``detector`` command's output. The one place
they go is the stateReport to the backend that sent them: it echoes each entry exactly as received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import kmock
import psutil
import pytest
import websockets
from kubernetes import client as k8s
from starlette.testclient import TestClient

from broker import protocol
from broker.app import build_app
from broker.planning import plan
from broker.runners.kubernetes import KubernetesRunner, build_resource, build_secret
from broker.service import Broker
from broker.settings import BrokerSettings
from camera_pod.http_api import build_app as build_pod_app
from camera_pod.runtime import CameraPod, stream_config
from camera_pod.settings import PodSettings
from detector.contract.camerasubscription import CameraSubscriptionSpec
from detector.contract.pods import DisplaySubscription, PodSpec, StreamSpec
from detector_operator.manifests import PodDefaults, build_pod
from tests.broker.test_end_to_end import Worker
from tests.operator.test_operator_kmock import NS, Api, running, until
from tests.support import kube
from tests.support.model_server import serve_files
from tests.support.operator_harness import HealthEndpoint, running_operator
from tests.support.recording import RecordingRunner
from tests.support.servers import free_port

PASSWORD = "Sup3rS3cret!"
SECRETS = (PASSWORD, quote(PASSWORD))  # as written, and percent-encoded ("Sup3rS3cret%21")
CLOSED = free_port()  # nothing listens here: every connection attempt fails
RTSP = f"rtsp://admin:{PASSWORD}@127.0.0.1:{CLOSED}/stream"
SNAPSHOT = f"http://viewer:{PASSWORD}@127.0.0.1:{CLOSED}/snap.jpg"
SNAPSHOT_QUERY = f"http://127.0.0.1:{CLOSED}/snap.jpg?user=viewer&password={PASSWORD}"
MODEL = f"http://deploy:{PASSWORD}@127.0.0.1:{CLOSED}/gas_station.mpta"
CONSOLE = ("/console", "/console/state", "/console/console.js", "/console/console.css")


def subscriptions() -> list[dict[str, Any]]:
    common = {"modelUrl": MODEL, "modelId": 7, "modelName": "gas"}
    return [{"subscriptionIdentifier": "display-1;cam-1", "rtspUrl": RTSP, **common},
            {"subscriptionIdentifier": "display-2;cam-2", "snapshotUrl": SNAPSHOT, "snapshotInterval": 500, **common},
            {"subscriptionIdentifier": "display-3;cam-3", "snapshotUrl": SNAPSHOT_QUERY, "snapshotInterval": 500,
             **common}]


def bad_messages() -> list[str]:
    """Refused messages that carry the password in every field a URL can be put in."""
    good = subscriptions()[0]
    return [json.dumps(message) for message in (
        {"type": "subscribe", "payload": {**good, "rtspUrl": RTSP.replace("rtsp:", "rtmp:")}},
        {"type": "subscribe", "payload": {**good, "rtspUrl": f"rtsp://admin:{PASSWORD}@"}},
        {"type": "subscribe", "payload": {**good, "rtspUrl": f"admin:{PASSWORD}@10.0.0.9/stream"}},
        {"type": "subscribe", "payload": {**good, "rtspUrl": RTSP + " x"}},
        {"type": "subscribe", "payload": {**good, "modelUrl": MODEL.replace("http:", "ftp:")}},
        {"type": "subscribe", "payload": {**good, "modelId": "seven"}},
        {"type": "subscribe", "payload": {**{k: v for k, v in good.items() if k != "rtspUrl"},
                                          "snapshotUrl": SNAPSHOT}},
        {"type": "setSubscriptionList", "subscriptions": [good, good]},
        {"type": "subscribe", "payload": {**good, "cropX1": 5}},
    )] + [json.dumps({"type": "subscribe", "payload": good})[:60], "{" + json.dumps(RTSP) + "}"]


def leaks(texts: Iterable[str]) -> list[str]:
    return [text[:300] for text in texts if any(secret in text for secret in SECRETS)]


def record_texts(records: Iterable[logging.LogRecord]) -> Iterator[str]:
    """A record as every handler could see it: message, arguments, extra fields and formatted traceback."""
    formatter = logging.Formatter()
    for record in records:
        yield f"{record.name}: {record.getMessage()} {vars(record)!r}"
        if record.exc_info:
            yield formatter.formatException(record.exc_info)


def assert_clean(what: str, texts: Iterable[str]) -> None:
    texts = list(texts)
    assert texts, f"{what}: nothing was checked"
    assert leaks(texts) == [], f"{what} leaked the password"


# ---- the broker: logs and stateReport ---------------------------------------------------------------

class FailingOnceRunner(RecordingRunner):
    """Fails its first apply, like a runner whose API is down: an exception with a traceback in the log."""

    async def apply(self, specs: dict[str, PodSpec]) -> None:
        if self.applies == 0:
            self.applies += 1
            raise RuntimeError(f"cannot start {len(specs)} pods")
        await super().apply(specs)


def test_the_broker_logs_and_state_report(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Broker(BrokerSettings(heartbeat_interval_sec=3600), FailingOnceRunner())
    reports = []
    with TestClient(build_app(broker)) as client, client.websocket_connect("/") as backend:
        reports.append(backend.receive_text())
        wanted = json.dumps({"type": "setSubscriptionList", "subscriptions": subscriptions()})
        for raw in [wanted, *bad_messages(), json.dumps({"type": "requestState"})]:
            backend.send_text(raw)
        reports.append(backend.receive_text())
        console = [client.get(path).text for path in CONSOLE]  # with the entries refused, and why
        for raw in [wanted, json.dumps({"type": "requestState"})]:
            backend.send_text(raw)
        reports.append(backend.receive_text())
    assert any("handling a backend message failed" in r.getMessage() and r.exc_info for r in caplog.records)
    assert "display-1;cam-1" in console[1] and '"refused":[{' in console[1]
    assert_clean("the console, entries refused", console)
    invalid = sum("invalid backend message" in r.getMessage() for r in caplog.records)
    refused = sum("subscription entry refused" in r.getMessage() for r in caplog.records)
    assert (invalid, refused) == (2, len(bad_messages()) - 2), "whole messages refused, and entries on their own"
    assert_clean("broker log records", record_texts(caplog.records))
    report = json.loads(reports[-1])
    # The one place credentials go: the heartbeat echoes each entry exactly as the backend sent it.
    sent = {s["subscriptionIdentifier"]: s for s in subscriptions()}
    assert {c["subscriptionIdentifier"]: c.get("rtspUrl") or c.get("snapshotUrl")
            for c in report["cameraConnections"]} == {
        identifier: entry.get("rtspUrl") or entry.get("snapshotUrl") for identifier, entry in sent.items()}


# ---- the Kubernetes runner: resources, and its errors when the API server is down -------------------

async def test_the_camera_subscription_resource_and_runner_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = BrokerSettings()
    wanted = [protocol.Subscription.model_validate(s) for s in subscriptions()]
    specs = plan(wanted, settings)
    resources = [build_resource(spec, "cameras", {"app.kubernetes.io/managed-by": "b"}) for spec in specs.values()]
    assert_clean("CameraSubscription resources", [json.dumps(resource) for resource in resources])
    secret = build_secret("cam-x", "cameras", next(iter(specs.values())), {})
    assert PASSWORD not in json.dumps(secret), "the Secret holds the URL base64-encoded, as Kubernetes does"
    pods = [build_pod(r["metadata"]["name"], "cameras", "uid-1", CameraSubscriptionSpec.model_validate(r["spec"]),
                      PodDefaults(auth_secret="cams-detector-auth"), revision="abc") for r in resources]
    assert_clean("camera pod manifests", [json.dumps(pod) for pod in pods])

    api = k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{CLOSED}"))
    runner = KubernetesRunner(api, settings)
    await runner.apply(specs)  # every write fails: logged per camera, retried on the next change
    assert runner.running() == {}
    assert sum("applying the camera subscription failed" in r.getMessage() for r in caplog.records) == len(specs)
    assert_clean("Kubernetes runner log records", record_texts(caplog.records))


# ---- a camera pod: model download and streams failing; logs, /healthz and /metrics --------------------

def pod_spec() -> PodSpec:
    displays = [DisplaySubscription(identifier="display-1;cam-1", model_url=MODEL, model_id=7, model_name="gas")]
    return PodSpec(name="cam-0123456789ab", stream=StreamSpec(url=RTSP, kind="rtsp"), subscriptions=displays,
                   broker_url=f"ws://127.0.0.1:{CLOSED}/internal/pods/cam-0123456789ab")


async def test_a_camera_pod_with_unreachable_model_and_cameras(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pod = CameraPod(pod_spec(), PodSettings(cache_dir=tmp_path / "cache", mpta_connect_timeout_s=1))
    running = asyncio.create_task(pod.run())  # loads the model first: the download fails and is retried
    rtsp = pod.hub.subscribe("display-1;cam-1", stream_config(pod_spec()))
    snapshot = pod.hub.subscribe("display-2;cam-2", stream_config(pod_spec().model_copy(
        update={"stream": StreamSpec(url=SNAPSHOT, kind="snapshot", snapshot_interval_ms=200)})))
    query = pod.hub.subscribe("display-3;cam-3", stream_config(pod_spec().model_copy(
        update={"stream": StreamSpec(url=SNAPSHOT_QUERY, kind="snapshot", snapshot_interval_ms=200)})))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                pod.model_error and all(s.status().last_error for s in (rtsp, snapshot, query))):
            await asyncio.sleep(0.1)
        assert pod.model_error and "deploy:***@" in pod.model_error
        errors = [s.status().last_error or "" for s in (rtsp, snapshot, query)]
        assert all(errors), errors
        with TestClient(build_pod_app(pod.latest_frame, pod.health, pod.metrics.registry)) as http:
            health, metrics = http.get("/healthz"), http.get("/metrics")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await pod.close()
    assert "detector_stream_online" in metrics.text
    assert_clean("camera pod /healthz, /metrics and stream errors",
                 [health.text, metrics.text, pod.report().model_dump_json(), *errors])
    assert_clean("camera pod log records", record_texts(caplog.records))


# ---- the detector command ----------------------------------------------------------------------------

def detector(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "detector.cli", *args], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "DETECTOR_MPTA_CONNECT_TIMEOUT_S": "2",
                                            "DETECTOR_LOG_LEVEL": "DEBUG", "DETECTOR_CACHE_DIR": str(cache)})


def test_the_detector_command_output(tmp_path: Path) -> None:
    validate = detector("mpta", "validate", MODEL, cache=tmp_path)
    assert validate.returncode == 1 and "ERROR http://deploy:***@" in validate.stderr
    walk = detector("protocol-test", "--url", f"ws://127.0.0.1:{CLOSED}/", "--model-url", MODEL,
                    "--rtsp-url", RTSP, "--timeout", "2", cache=tmp_path)
    assert walk.returncode == 1 and "FAIL  connect" in walk.stdout
    assert_clean("detector output", [validate.stdout, validate.stderr, walk.stdout, walk.stderr])


@pytest.mark.slow
def test_detector_pipeline_run_on_an_unreachable_camera(fixture_mpta: Path, tmp_path: Path) -> None:
    run = detector("pipeline", "run", "--mpta", str(fixture_mpta), "--source", RTSP, "--no-actions",
                   "--max-frames", "1", cache=tmp_path)
    assert run.returncode != 0 and "rtsp://admin:***@" in run.stdout + run.stderr
    assert_clean("detector pipeline run output", [run.stdout, run.stderr])


# ---- the operator: the resource's status and Kubernetes events -------------------------------------

@contextlib.asynccontextmanager
async def operator_posting_events(api: Api) -> AsyncIterator[None]:
    """The real operator (as in tests/operator/test_operator_kmock.py), with Kopf's event posting on."""
    # Every record of Kopf's per-object logger becomes an Event: what the events show is checked.
    async with running_operator(api.url, api.core, PodDefaults(auth_secret="cams-detector-auth"), namespace=NS,
                                pod_http_port=api.health_port, status_interval_s=0.3, event_level=logging.DEBUG):
        yield


@pytest.fixture
async def pod_health() -> AsyncIterator[HealthEndpoint]:
    async with HealthEndpoint().serving() as endpoint:
        yield endpoint


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator, pod_health: HealthEndpoint) -> Api:
    """kmock serving what the operator uses (see tests/operator/test_operator_kmock.py), events included."""
    kube.register_operator_api(kmock)
    return Api(kmock, pod_health.port)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_operator_status_and_events(cluster: Api, pod_health: HealthEndpoint, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """The resource the broker writes, run by the real operator; the pod reports a camera error with its URL."""
    caplog.set_level(logging.DEBUG)  # Kopf posts events from its log records: they must exist
    (pod,) = plan([protocol.Subscription.model_validate(subscriptions()[0])], BrokerSettings()).values()
    camera = CameraPod(pod, PodSettings(cache_dir=tmp_path))
    stream = camera.hub.subscribe("display-1;cam-1", stream_config(pod))
    try:
        error = await until(lambda: stream.status().last_error, timeout=15)
    finally:
        await camera.close()
    assert "rtsp://admin:***@" in error
    report = pod_health.health.report.model_copy(update={"online": False, "last_error": error})
    pod_health.health = pod_health.health.model_copy(update={"ok": False, "detail": error, "report": report})

    async with operator_posting_events(cluster):
        await cluster.create(build_resource(pod, NS, {})["spec"])
        ((name, manifest),) = (await until(lambda: cluster.pods())).items()
        await cluster.set_pod_status(name, running())
        status = await until(lambda: cluster.status().get("phase") == "Degraded" and cluster.status())
    assert "rtsp://admin:***@" in status["lastError"]
    # Kopf turns these records (on its per-object logger, with a reference to the resource) into Events.
    events = [record.getMessage() for record in caplog.records if hasattr(record, "k8s_ref")]
    assert any("succeeded" in event for event in events), events
    assert_clean("operator status, Kubernetes events, pod", [json.dumps(status), *events, json.dumps(manifest)])
    assert_clean("operator and camera log records", record_texts(caplog.records))


# ---- everything at once: `detector run`, real camera pods (child processes) ------------------------------

def pod_ports(worker: Worker) -> list[int]:
    return [connection.laddr.port for pod in worker.pods() for connection in pod.net_connections("inet")
            if connection.status == psutil.CONN_LISTEN]


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_detector_run_with_camera_pods(tmp_path: Path, fixture_mpta: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_LOG_LEVEL", "DEBUG")
    with serve_files(fixture_mpta) as base:
        model = base.replace("http://", f"http://deploy:{PASSWORD}@") + f"/{fixture_mpta.name}"
        wanted = [{**subscription, "modelUrl": model} for subscription in subscriptions()]
        worker = Worker(tmp_path)
        try:
            worker.wait_ready()
            async with websockets.connect(worker.url) as backend:
                for raw in bad_messages():  # first: one of them is a list (of one good entry and its duplicate)
                    await backend.send(raw)
                await backend.send(json.dumps({"type": "setSubscriptionList", "subscriptions": wanted}))
                deadline = time.monotonic() + 120  # the pods load the model first, then fail on the cameras
                while time.monotonic() < deadline and (
                        worker.log.read_text().count("stream down, reconnecting") < 3 or len(pod_ports(worker)) < 3):
                    await asyncio.sleep(0.5)
                assert len(pod_ports(worker)) == 3, worker.log.read_text()[-3000:]
                async with httpx.AsyncClient(timeout=5) as http:
                    pages = [(await http.get(f"http://127.0.0.1:{port}{path}")).text
                             for port in pod_ports(worker) for path in ("/metrics", "/healthz")]
                    console = await console_texts(http, f"http://127.0.0.1:{worker.port}")
                await backend.send(json.dumps({"type": "requestState"}))
                reports = [message async for message in _until_state_report(backend)]
        finally:
            worker.stop()
    log = worker.log.read_text()
    assert "rtsp://admin:***@" in log and "deploy:***@" in log, "the errors happened, masked"
    assert sum("detector_stream_online" in page for page in pages) == 3
    assert_clean("`detector run` and camera pod output", [log])
    assert_clean("camera pods' /metrics and /healthz", pages)
    assert "admin:***@" in console[1] and "viewer:***@" in console[1], "the streams' errors shown, masked"
    assert_clean("the console: page, snapshot, assets, event stream", console)
    assert_clean("messages to the backend, stateReport's echoed URLs left out", map(without_echo, reports))
    echoed = {c["subscriptionIdentifier"]: c.get("rtspUrl") or c.get("snapshotUrl")
              for c in json.loads(reports[-1])["cameraConnections"]}
    assert echoed == {s["subscriptionIdentifier"]: s.get("rtspUrl") or s.get("snapshotUrl") for s in wanted}


async def console_texts(http: httpx.AsyncClient, base: str) -> list[str]:
    """The console's page, snapshot (once every camera shows its error) and assets, and the first snapshot of
    its event stream."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(camera["state"] != "reconnecting" for camera in
                                              (await http.get(f"{base}/console/state")).json()["cameras"]):
        await asyncio.sleep(0.2)
    texts = [(await http.get(base + path)).text for path in CONSOLE]
    async with http.stream("GET", f"{base}/console/events") as events:
        async for line in events.aiter_lines():
            if line.startswith("data: "):
                return [*texts, line]
    raise AssertionError("the console's event stream ended without a snapshot")


def without_echo(raw: str) -> str:
    """A message to the backend without the one place credentials go: stateReport's echo of the URLs sent."""
    message = json.loads(raw)
    for camera in message.get("cameraConnections", []):
        camera.pop("rtspUrl", None)
        camera.pop("snapshotUrl", None)
    return json.dumps(message)


async def _until_state_report(backend: websockets.ClientConnection) -> AsyncIterator[str]:
    async for raw in backend:
        yield str(raw)
        if json.loads(raw).get("type") == "stateReport" and json.loads(raw)["cameraConnections"]:
            return
