"""The original's protocol against the broker in Kubernetes mode (one walk, every part real but the cluster).

The harness is tests/cluster/test_cluster_end_to_end.py's (imported, not copied): the broker with the
Kubernetes runner against kmock, the real Kopf operator, and a kubelet emulator that runs each Pod's
container as ``python -P -m camera_pod``. Checked, as in test_embedded_worker.py: per-entry tolerance of
setSubscriptionList, the heartbeat's exact echo (credentials included), sessionId left out without a session
and the backend's integer with one, and the load figures of every stateReport (schema-checked throughout).
"""

from __future__ import annotations

import time

import psutil
import pytest

from camera_pod.usage import memory_limit_bytes
from tests.cluster.test_cluster_end_to_end import (  # noqa: F401  (pytest fixtures, used by name)
    CR,
    SECRETS,
    ApiServer,
    BrokerServer,
    Cluster,
    broker,
    cluster,
    create_services_secret,
    kubelet,
    operator,
    pod_port,
    until,
)
from tests.conformance.conftest import Connect
from tests.conformance.flow import detections_of, echo_mismatches, entries, listed, session_ids
from tests.conformance.validation import problems
from tests.support import embedded
from tests.support.credentialed_rtsp import CredentialedRtspServer
from tests.support.kubelet import Kubelet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.kmock(cls=ApiServer)]
DISPLAY = "display-conf-k8s"
GOOD = f"{DISPLAY};cam-k8s"


async def test_the_original_protocol_in_cluster_mode(
        cluster: Cluster, broker: BrokerServer, kubelet: Kubelet, pod_port: int,  # noqa: F811
        rtsp_camera: CredentialedRtspServer, shared_model_url: str, validated_connect: Connect) -> None:
    embedded.clean_outputs([DISPLAY])
    await create_services_secret(cluster)
    good = {"subscriptionIdentifier": GOOD, "rtspUrl": rtsp_camera.url, "modelUrl": shared_model_url,
            "modelId": 101, "modelName": "Vehicle Detection", "cropX1": 40, "cropY1": 30, "cropX2": 620,
            "cropY2": 460}
    bad = [{**good, "subscriptionIdentifier": "display-conf-no-semicolon"},
           {**good, "subscriptionIdentifier": "display-conf-ftp;cam-k8s", "rtspUrl": "ftp://127.0.0.1/stream"},
           {**good, "subscriptionIdentifier": "display-conf-model;cam-k8s", "modelId": "one-o-one"},
           {**good, "modelName": "the second entry, refused"}]
    assert problems(good, "subscription") == []
    backend = await validated_connect(broker.url + "/")  # before the operator: Kopf cancels later tasks
    async with operator(cluster, broker.url, pod_port):
        await backend.send({"type": "setSubscriptionList", "subscriptions": [bad[0], good, *bad[1:]]},
                           check=False)

        # Per-entry tolerance: the good entry runs (as one resource), each bad one is refused alone.
        await backend.until(lambda: listed(backend) == {GOOD}, 30)
        resources = await until(lambda: cluster.live(CR), 10, "the good entry's CameraSubscription", kubelet)
        assert [s["identifier"] for r in resources.values() for s in r["spec"]["subscriptions"]] == [GOOD]

        # The heartbeat's echo: exactly as sent, the RTSP URL with its credentials.
        report = entries(backend)
        assert report is not None
        assert echo_mismatches(good, report[GOOD]) == []
        await backend.until(lambda: (entries(backend) or {}).get(GOOD, {}).get("online") is True, 120)

        # imageDetection without a session: no sessionId key; after setSessionId: the backend's integer.
        await backend.until(lambda: detections_of(backend, GOOD), 120)
        assert all("sessionId" not in m for m in detections_of(backend, GOOD)), \
            session_ids(detections_of(backend, GOOD))
        set_at = time.monotonic()
        await backend.send({"type": "setSessionId", "payload": {"displayIdentifier": DISPLAY, "sessionId": 777}})
        await backend.until(lambda: any("sessionId" in m for m in detections_of(backend, GOOD, set_at)), 120)
        carried = [m["sessionId"] for m in detections_of(backend, GOOD, set_at) if "sessionId" in m]
        assert carried[0] == 777 and type(carried[0]) is int

        # Load figures: every stateReport has them (schema: cpuUsage/memoryUsage 0-100, GPU figures % or null).
        reports = backend.of_type("stateReport")
        assert reports and all(problems(r) == [] for r in reports)
        running = reports[-1]
        assert running["cpuUsage"] >= 0 and 0 < running["memoryUsage"] <= 100
        # ...and they describe the camera pods, not the broker's machine: memory is the pods' resident memory
        # over their limits (no cgroup limit here: the machine's memory each).
        pods = [psutil.Process(container.process.pid) for container in kubelet.containers.values()]
        assert pods, "the camera pod runs"

        def pods_memory() -> float:
            return sum(p.memory_info().rss for p in pods) / (len(pods) * memory_limit_bytes()) * 100

        await backend.until(lambda: abs(backend.of_type("stateReport")[-1]["memoryUsage"] - pods_memory())
                            <= max(0.2, 0.25 * pods_memory()), 20)
        assert abs(psutil.virtual_memory().percent - pods_memory()) > 0.5, "the check can tell them apart"

        # The backend removes the camera: the heartbeat no longer lists it; the cluster lets it go.
        removed_at = time.monotonic()
        await backend.send({"type": "setSubscriptionList", "subscriptions": []})
        await backend.until(lambda: entries(backend, removed_at) == {}, 15)
        await until(lambda: not cluster.live(CR), 15, "the resource deleted", kubelet)
        pods = await cluster.collect_garbage()
        for name in pods:
            def stopped(name: str = name) -> object:
                return kubelet.exited.get(name)
            await until(stopped, 20, "the camera pod stopped", kubelet)
    assert set(cluster.live(SECRETS)) <= {"detector-services"}
    backend.assert_conforms()
