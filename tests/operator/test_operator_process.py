"""``python -m detector_operator`` as the chart runs it: kubeconfig login, peering, liveness, SIGTERM.

The API server is kmock (see test_operator_kmock for its limits); only the entry point is new here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest
import yaml
from kubernetes import client as k8s

from tests.operator.test_manifests import SPEC
from tests.support import kube
from tests.support.servers import free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL, NS = "detector.gasstation.dev", "v1", "camerasubscriptions", "detectors"


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "kmock", "user": "test", "namespace": NS}}]}))
    return path


async def wait_for(condition: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def test_the_operator_process_serves_liveness_peers_and_stops_on_sigterm(
        kmock: kmock.KubernetesEmulator, tmp_path: Path) -> None:
    kube.register_operator_api(kmock, peering=True)
    server = str(kmock.url).rstrip("/")
    custom = k8s.CustomObjectsApi(k8s.ApiClient(k8s.Configuration(host=server)))
    core = k8s.CoreV1Api(custom.api_client)
    await asyncio.to_thread(custom.create_namespaced_custom_object, "kopf.dev", "v1", NS, "kopfpeerings",
                            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                             "metadata": {"name": "detector", "namespace": NS, "resourceVersion": "1"}})
    port = free_port()
    environment = {**os.environ, "KUBECONFIG": str(kubeconfig(tmp_path / "config", server)),
                   "DETECTOR_NAMESPACE": NS, "DETECTOR_OPERATOR_HEALTH_PORT": str(port),
                   "DETECTOR_STATUS_INTERVAL_SEC": "0.5", "DETECTOR_LOG_FORMAT": "text",
                   "DETECTOR_CAMERA_IMAGE": "registry.example/camera:1.2.3"}
    log = tmp_path / "operator.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(sys.executable, "-P", "-m", "detector_operator",
                                                       env=environment, cwd=tmp_path, stderr=sink)
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            async def live() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            deadline = time.monotonic() + 30
            while not await live():
                assert process.returncode is None, "the operator exited"
                assert time.monotonic() < deadline, "no liveness endpoint"
                await asyncio.sleep(0.2)

        await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CameraSubscription", "spec": SPEC,
            "metadata": {"name": "cam-001", "namespace": NS, "uid": "uid-1", "resourceVersion": "1"}})
        pods = await wait_for(lambda: json.loads(core.list_namespaced_pod(NS, _preload_content=False).data)["items"])
        assert pods[0]["spec"]["containers"][0]["image"] == "registry.example/camera:1.2.3"
        peering = await asyncio.to_thread(custom.get_namespaced_custom_object, "kopf.dev", "v1", NS, "kopfpeerings",
                                          "detector")
        assert peering.get("status"), "the operator announces itself in the KopfPeering"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        print(log.read_text()[-5000:])  # shown by pytest when the test fails
    assert process.returncode == 0
