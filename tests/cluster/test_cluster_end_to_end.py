"""Kubernetes mode end to end: every component real, only the cluster emulated.

backend WebSocket → broker (``detector run --runner kubernetes``: ``build_app`` + ``Broker`` +
``KubernetesRunner``) → CameraSubscription + URL Secret in kmock → the real Kopf operator → a Pod in kmock
→ ``tests.support.kubelet`` starts the Pod's container as ``python -P -m camera_pod`` with the manifest's
environment → the camera pod streams RTSP (GStreamer serving tests/fixtures/media/cars.mp4), runs the
fixture .mpta (fetched over HTTP) and sends detections to the broker → ``imageDetection`` to the backend,
``/camera/{id}/image`` through the pod IP in the resource's status, fps in the status from /healthz. A crop
change keeps the Pod (name, uid) and its process; another stream URL is a new resource and a new Pod (name,
uid), started once the old one is gone. Then an empty subscription list deletes the resource and the Secret,
the emulated garbage collector deletes the orphaned Pod and the kubelet stops the process.

kmock limits designed around here (see also tests/support/kube.py and test_operator_kmock.py):
- it generates no uid, resourceVersion or creationTimestamp, and the broker creates its resources without
  them (as it should: the API server fills them in). Kopf's JSON-patches ``test`` metadata.resourceVersion,
  and the operator's owner references need the uid, so ``ApiServer`` (tests/support/apiserver.py) adds the
  three to every created object (a Pod replaced by another of the same name would have another uid). Versions
  never advance after that (see ``ApiServer`` for why), so Kopf's optimistic-concurrency tests always pass
  and it may handle one creation more than once (``reconcile`` is idempotent);
- no scheduler, kubelet or garbage collector: ``Kubelet`` runs Pods, ``collect_garbage`` deletes Pods whose
  owner is gone; deletion is immediate (no graceful deletion with a deletionTimestamp on Pods);
- label selectors are ignored (the broker and the operator filter by label themselves).
The operator runs inside the test's own task: when Kopf stops it cancels every task created after it
started, so the broker, the kubelet and the backend connection are all started before it. Its stop still
takes ~5 s: Kopf waits that long for the kmock server's handlers of idle keep-alive connections that the
blocking ``kubernetes`` clients opened meanwhile, then cancels them (harmless).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import httpx
import kmock
import numpy as np
import psycopg
import pytest
import uvicorn
import websockets
from kubernetes import client as k8s

from broker.app import build_app
from broker.runners.kubernetes import KubernetesRunner, secret_name
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.environment import BROKER_URL_ENV, POD_NAME_ENV, STREAM_URL_ENV
from detector_operator.manifests import PodDefaults
from tests.conftest import POSTGRES_DSN
from tests.support import embedded, kube
from tests.support.apiserver import ApiServer
from tests.support.embedded import VIDEO, VISITS, Backend
from tests.support.kubelet import Kubelet, host_path
from tests.support.operator_harness import running_operator
from tests.support.servers import RtspServer, free_port

GROUP, VERSION, PLURAL = "detector.gasstation.dev", "v1", "camerasubscriptions"
CR, PODS, SECRETS = f"{GROUP}/{VERSION}/{PLURAL}", "v1/pods", "v1/secrets"
NS = "cameras"
BROKER_ID = "e2e-broker"
DISPLAY = "display-k8s-1"
SUBSCRIPTION = f"{DISPLAY};cam-k8s"
SERVICES_SECRET = "detector-services"
STATUS_INTERVAL_S = 0.5
# Dockerfile.camera's ENV, as the emulated "image" gives it (paths on volumes are remapped by the kubelet).
IMAGE_ENV = {"PATH": host_path(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp",
             "YOLO_OFFLINE": "1", "ULTRALYTICS_SAFE_LOAD": "1", "YOLO_CONFIG_DIR": "/tmp/ultralytics",
             "MPLCONFIGDIR": "/tmp/matplotlib", "DETECTOR_CACHE_DIR": "/var/cache/detector",
             "DETECTOR_LOG_FORMAT": "json"}


pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.kmock(cls=ApiServer)]


@dataclass(frozen=True)
class Cluster:
    """The emulated API server, as the test (kubectl, the garbage collector) reaches it."""

    emulator: kmock.KubernetesEmulator
    url: str
    core: k8s.CoreV1Api
    custom: k8s.CustomObjectsApi

    def live(self, resource: str) -> dict[str, dict[str, Any]]:
        return kube.live(self.emulator, resource, NS)

    async def collect_garbage(self) -> list[str]:
        """The cluster's GC: delete the Pods whose controller owner is gone (blocking calls in a thread)."""
        def collect() -> list[str]:
            resources: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
            owners = {item["metadata"]["uid"] for item in resources["items"]}
            listed: Any = self.core.list_namespaced_pod(NS, _preload_content=False)  # urllib3's response
            pods = json.loads(listed.data)["items"]
            orphans = [pod["metadata"]["name"] for pod in pods
                       if pod["metadata"]["ownerReferences"][0]["uid"] not in owners]
            for name in orphans:
                self.core.delete_namespaced_pod(name, NS)
            return orphans
        return await asyncio.to_thread(collect)


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator) -> Cluster:
    kube.register(kmock, CR, "CameraSubscription", subresources={"status"})
    kube.register(kmock, PODS, "Pod", subresources={"status"})
    kube.register(kmock, SECRETS, "Secret")
    kube.register(kmock, "v1/events", "Event")
    kube.register(kmock, "v1/namespaces", "Namespace", namespaced=False)  # discoverable, never listed
    kube.register(kmock, "apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition",
                  namespaced=False)
    api = kube.api_client(kmock)
    return Cluster(kmock, str(kmock.url).rstrip("/"), k8s.CoreV1Api(api), k8s.CustomObjectsApi(api))


@pytest.fixture
def pod_port() -> int:
    """The camera pods' HTTP port: every pod IP is 127.0.0.1 here, so one free port stands in for 8080."""
    return free_port()


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = RtspServer(VIDEO).start()
    yield server
    server.stop()


@pytest.fixture
def model_url(fixture_mpta: Path) -> Iterator[str]:
    """The fixture .mpta over HTTP: the CRD accepts only http(s) model URLs."""
    archive = fixture_mpta.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            found = self.path == "/gas_station.mpta"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(archive) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(archive)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/gas_station.mpta"
    server.shutdown()
    server.server_close()


@pytest.fixture
def clean_outputs() -> None:
    embedded.clean_outputs([DISPLAY])


@dataclass(frozen=True)
class BrokerServer:
    broker: Broker
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
async def broker(cluster: Cluster, pod_port: int) -> AsyncIterator[BrokerServer]:
    """``detector run --runner kubernetes`` minus the kubeconfig: its settings, runner, app and server options."""
    port = free_port()
    settings = BrokerSettings.load(None, host="127.0.0.1", port=port, runner="kubernetes", namespace=NS,
                                   broker_id=BROKER_ID, public_url=f"ws://127.0.0.1:{port}",
                                   heartbeat_interval_sec=1.0)
    service = Broker(settings, KubernetesRunner(kube.api_client(cluster.emulator), settings, pod_http_port=pod_port))
    server = uvicorn.Server(uvicorn.Config(build_app(service), host=settings.host, port=settings.port,
                                           log_config=None, access_log=False, ws_max_size=16 << 20))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the broker did not start"
        await asyncio.sleep(0.02)
    yield BrokerServer(service, port)
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def kubelet(cluster: Cluster, pod_port: int, tmp_path: Path) -> AsyncIterator[Kubelet]:
    node = Kubelet(cluster.core, NS, port=pod_port, workdir=tmp_path / "node", image_env=IMAGE_ENV)
    task = asyncio.create_task(node.run())
    yield node
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await node.close()


@contextlib.asynccontextmanager
async def operator(cluster: Cluster, broker_url: str, pod_port: int) -> AsyncIterator[None]:
    defaults = PodDefaults(broker_url=broker_url, services_secret=SERVICES_SECRET)
    async with running_operator(cluster.url, cluster.core, defaults, namespace=NS, pod_http_port=pod_port,
                                status_interval_s=STATUS_INTERVAL_S):
        yield


async def until(condition: Callable[[], Any], timeout: float, what: str, kubelet: Kubelet) -> Any:
    """``condition()``'s first truthy value (it must not block: kmock reads only); fails with the pods' logs."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            logs = {name: c.log_tail(2500) for name, c in {**kubelet.exited, **kubelet.containers}.items()}
            raise AssertionError(f"{what}: not within {timeout} s; camera pod logs: {logs}")
        await asyncio.sleep(0.1)
    return value


async def create_services_secret(cluster: Cluster) -> None:
    """What the Helm chart's services Secret holds: the camera pods' Redis/PostgreSQL, loaded with envFrom."""
    data = {"DETECTOR_REDIS_HOST": "127.0.0.1", "DETECTOR_POSTGRES_HOST": "127.0.0.1"}
    await asyncio.to_thread(cluster.core.create_namespaced_secret, NS, k8s.V1Secret.model_validate({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SERVICES_SECRET, "namespace": NS},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}))


def url_in(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["url"]).decode()


async def test_a_subscription_runs_as_a_camera_pod_in_the_cluster_and_stops_with_it(
        cluster: Cluster, broker: BrokerServer, kubelet: Kubelet, pod_port: int, rtsp: RtspServer,
        model_url: str, clean_outputs: None) -> None:
    await create_services_secret(cluster)
    backend = Backend(await websockets.connect(broker.url + "/", max_size=16 << 20))
    subscription = {"subscriptionIdentifier": SUBSCRIPTION, "rtspUrl": rtsp.url, "modelUrl": model_url,
                    "modelId": 42, "modelName": "gas-station", "cropX1": 100, "cropY1": 80, "cropX2": 560,
                    "cropY2": 400}
    try:
        async with operator(cluster, broker.url, pod_port):
            await backend.send({"type": "setSubscriptionList", "subscriptions": [subscription]})

            # The broker's declaration: one resource, its URL in a Secret only.
            ((name, resource),) = (await until(lambda: cluster.live(CR), 10, "CameraSubscription", kubelet)).items()
            assert [s["identifier"] for s in resource["spec"]["subscriptions"]] == [SUBSCRIPTION]
            assert resource["spec"]["stream"] == {"kind": "rtsp", "urlSecretRef": {"name": secret_name(name),
                                                                                   "key": "url"}}
            assert resource["metadata"]["labels"]["app.kubernetes.io/managed-by"] == BROKER_ID
            assert rtsp.url not in json.dumps(resource)
            assert url_in(cluster.live(SECRETS)[secret_name(name)]) == rtsp.url

            # The operator's Pod, started by the kubelet with the manifest's environment.
            pods = await until(lambda: cluster.live(PODS), 15, "the operator's Pod", kubelet)
            ((pod_name, pod),) = pods.items()
            assert pod["metadata"]["ownerReferences"][0]["uid"] == resource["metadata"]["uid"]
            container = await until(lambda: kubelet.containers.get(pod_name), 10, "the container", kubelet)
            assert pod["spec"]["containers"][0]["command"][-4:] == ["python", "-P", "-m", "camera_pod"]
            assert container.process.args == [sys.executable, "-P", "-m", "camera_pod"]
            assert container.environment[STREAM_URL_ENV] == rtsp.url, "secretKeyRef resolved from the Secret"
            assert container.environment["DETECTOR_REDIS_HOST"] == "127.0.0.1", "envFrom resolved"
            assert container.environment[POD_NAME_ENV] == name
            assert container.environment[BROKER_URL_ENV] == f"{broker.url}/internal/pods/{name}"
            assert container.environment["DETECTOR_POD_PORT"] == str(pod_port)

            # Detections through the broker to the backend; the pod's actions wrote the visit.
            await until(lambda: backend.of_type("imageDetection"), 120, "an imageDetection", kubelet)
            first = backend.of_type("imageDetection")[0]
            assert first["subscriptionIdentifier"] == SUBSCRIPTION
            detection = first["data"]["detection"]
            assert (detection["carBrand"], detection["bodyType"]) == VISITS[0]
            assert first["data"]["modelId"] == 42 and first["data"]["modelName"] == "gas-station"
            rows: list[tuple[Any, ...]] = []
            for _ in range(100):  # written through the pod's durable action outbox, moments after the event
                with psycopg.connect(POSTGRES_DSN) as connection:
                    rows = [tuple(row) for row in connection.execute(
                        "SELECT car_brand, car_body_type FROM gas_station_1.car_frontal_info "
                        "WHERE display_id = %s ORDER BY created_at", (DISPLAY,)).fetchall()]
                if rows and None not in rows[0]:  # the initial row, then its classifier results: two writes
                    break
                await asyncio.sleep(0.1)
            assert rows[:1] == [VISITS[0]], "the visit's row, written by the pod"
            await backend.until(lambda: backend.online() == {SUBSCRIPTION: True}, 5)

            # The latest frame, fetched by the broker from the pod IP in the resource's status.
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(f"http://127.0.0.1:{broker.port}/camera/{quote(SUBSCRIPTION)}/image")
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
            assert response.content[:3] == b"\xff\xd8\xff"
            image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (480, 640, 3), "the full, uncropped frame"

            # The operator's status timer: pod phase and readiness from the kubelet, fps from /healthz.
            status = await until(lambda: (s := cluster.live(CR)[name].get("status") or {}).get("phase") == "Running"
                                 and (s.get("fps") or 0) > 0 and s, 10, "status Running with fps", kubelet)
            assert status["pod"] == pod_name and status["podIP"] == "127.0.0.1" and status["subscribers"] == 1
            assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"
            assert status.get("lastError") is None  # a merge-patched null removes the key

            name, pod_name = await crop_then_stream_change(cluster, backend, kubelet, subscription, name, pod_name)

            # An empty list: the resource and its Secret go; the GC takes the Pod; the kubelet stops it.
            await backend.send({"type": "setSubscriptionList", "subscriptions": []})
            await until(lambda: not cluster.live(CR) and secret_name(name) not in cluster.live(SECRETS), 15,
                        "the resource (once Kopf's finalizer is off) and its Secret deleted", kubelet)
            assert set(cluster.live(SECRETS)) == {SERVICES_SECRET}, "only the broker's own Secret goes"
            assert await cluster.collect_garbage() == [pod_name]
            stopped = await until(lambda: kubelet.exited.get(pod_name), 20, "the process stopped", kubelet)
            assert stopped.exit_code == 0, stopped.log_tail()
            assert stopped.process.poll() == 0 and kubelet.containers == {}
            await backend.until(lambda: backend.online() == {}, 5)
    finally:
        await backend.socket.close()


async def crop_then_stream_change(cluster: Cluster, backend: Backend, kubelet: Kubelet, subscription: dict[str, Any],
                                  name: str, pod_name: str) -> tuple[str, str]:
    """A crop change patches the resource and reaches the running pod live: the same Pod (name and uid) and
    the same process. Another stream URL is another camera: a new resource and a new Pod (name and uid), whose
    process the kubelet starts once the old Pod is gone, ready once it streams. Returns the new resource's and
    Pod's names."""
    uid = cluster.live(PODS)[pod_name]["metadata"]["uid"]
    process = kubelet.containers[pod_name].process
    cropped = {**subscription, "cropX1": 0, "cropY1": 0, "cropX2": 320, "cropY2": 240}
    await backend.send({"type": "setSubscriptionList", "subscriptions": [cropped]})
    await until(lambda: cluster.live(CR)[name]["spec"]["subscriptions"][0].get("crop")
                == {"x1": 0, "y1": 0, "x2": 320, "y2": 240}, 10, "the crop in the resource", kubelet)
    await asyncio.sleep(4 * STATUS_INTERVAL_S)  # the operator's status timer and the kubelet's sync run meanwhile
    assert {n: pod["metadata"]["uid"] for n, pod in cluster.live(PODS).items()} == {pod_name: uid}
    assert kubelet.containers[pod_name].process is process and process.poll() is None, "the same process"

    moved = {**cropped, "rtspUrl": cropped["rtspUrl"].replace("127.0.0.1", "localhost")}
    await backend.send({"type": "setSubscriptionList", "subscriptions": [moved]})
    resources = await until(lambda: name not in (live := cluster.live(CR)) and live, 15,
                            "the new resource, the old one deleted", kubelet)
    ((moved_name, _),) = resources.items()
    assert await cluster.collect_garbage() == [pod_name]
    stopped = await until(lambda: kubelet.exited.get(pod_name), 20, "the old process stopped", kubelet)
    assert stopped.exit_code == 0, stopped.log_tail()
    ((moved_pod, manifest),) = (await until(lambda: cluster.live(PODS), 15, "the new Pod", kubelet)).items()
    assert moved_pod != pod_name and manifest["metadata"]["uid"] not in (uid, None), "a new Pod"
    container = await until(lambda: kubelet.containers.get(moved_pod), 20, "the new Pod's process", kubelet)
    assert container.environment[STREAM_URL_ENV] == moved["rtspUrl"]
    await until(lambda: container.ready, 60, "the new Pod ready (streaming from the new URL)", kubelet)
    return moved_name, moved_pod

