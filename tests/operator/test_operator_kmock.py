"""The real Kopf operator against kmock's Kubernetes emulator, driven through the API like a cluster would be.

kmock limits designed around (not hidden): resources are registered for discovery; `v1/namespaces` must be
discoverable but is never listed (scanning disabled: kmock cannot serve GET /api/v1/namespaces); no uid or
creationTimestamp is generated (seeded here); label selectors are ignored (the operator filters by label
too); there is no scheduler or kubelet (the test writes pod status); there is no garbage collector (the
test asserts owner references and deletes owned pods itself, as the cluster's GC would).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import kubernetes_validate
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from detector_operator.manifests import PodDefaults, StateVolume
from detector_operator.rolling import RollBudget
from tests.operator.test_manifests import SPEC
from tests.support import kube
from tests.support.operator_harness import HealthEndpoint, running_operator

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
GROUP, VERSION, PLURAL = "detector.gasstation.dev", "v1", "camerasubscriptions"
NS = "detectors"
UID = "5f0c7a1e-0000-4000-8000-000000000001"
STATUS_INTERVAL_S = 0.3


@pytest.fixture
async def health() -> AsyncIterator[HealthEndpoint]:
    async with HealthEndpoint().serving() as endpoint:
        yield endpoint


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator, health: HealthEndpoint) -> Api:
    kube.register_operator_api(kmock)
    return Api(kmock, health.port)


class Api:
    """What a user (kubectl), the kubelet and the garbage collector do, through the emulated API server.

    The client blocks and the emulator serves from this test's event loop: call it only from threads.
    """

    def __init__(self, emulator: kmock.KubernetesEmulator, health_port: int) -> None:
        self.emulator, self.url, self.health_port = emulator, str(emulator.url).rstrip("/"), health_port
        client = k8s.ApiClient(k8s.Configuration(host=self.url))
        self.core = k8s.CoreV1Api(client)
        self.custom = k8s.CustomObjectsApi(client)

    @contextlib.asynccontextmanager
    async def operator(self, defaults: PodDefaults | None = None, rolls: RollBudget | None = None,
                       ) -> AsyncIterator[None]:
        async with running_operator(self.url, self.core, defaults or PodDefaults(gpu=1), namespace=NS,
                                    pod_http_port=self.health_port, status_interval_s=STATUS_INTERVAL_S,
                                    rolls=rolls):
            yield

    async def create(self, spec: dict[str, Any], name: str = "cam-001", uid: str = UID) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CameraSubscription",
                "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1,
                             "resourceVersion": "1"},
                "spec": copy.deepcopy(spec)}
        await asyncio.to_thread(self.custom.create_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, body)

    async def change(self, spec: dict[str, Any], generation: int) -> None:
        body = {"metadata": {"generation": generation}, "spec": copy.deepcopy(spec)}
        await asyncio.to_thread(self.custom.patch_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, "cam-001",
                                body)

    async def delete(self) -> None:
        await asyncio.to_thread(self.custom.delete_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, "cam-001")

    def exists(self) -> bool:
        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "cam-001")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def status(self) -> dict[str, Any]:
        try:
            found = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "cam-001")
        except ApiException:
            return {}
        return dict(found.get("status") or {})

    def pods(self) -> dict[str, dict[str, Any]]:
        listed = json.loads(self.core.list_namespaced_pod(NS, _preload_content=False).data)
        return {item["metadata"]["name"]: item for item in listed["items"]}

    def claims(self) -> dict[str, dict[str, Any]]:
        listed = json.loads(self.core.list_namespaced_persistent_volume_claim(NS, _preload_content=False).data)
        return {item["metadata"]["name"]: item for item in listed["items"]}

    async def set_pod_status(self, name: str, status: dict[str, Any]) -> None:
        await asyncio.to_thread(self.core.patch_namespaced_pod_status, name, NS, {"status": status})

    async def collect_garbage(self) -> list[str]:
        """The cluster's GC: delete pods whose controller owner is gone."""
        owners = {item["metadata"].get("uid") for item in (await asyncio.to_thread(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL))["items"]}
        orphans = [name for name, pod in (await asyncio.to_thread(self.pods)).items()
                   if pod["metadata"]["ownerReferences"][0]["uid"] not in owners]
        for name in orphans:
            await asyncio.to_thread(self.core.delete_namespaced_pod, name, NS)
        return orphans


def running(ready: bool = True, **container_state: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running", "podIP": "127.0.0.1", "conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True" if ready else "False"}]}
    if container_state:
        status["containerStatuses"] = [{"name": "camera", "ready": ready, "restartCount": 4,
                                        "image": "camera", "imageID": "", "state": container_state}]
    return status


async def until(condition: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_create_builds_the_pod_and_status_follows_it(api: Api, health: HealthEndpoint) -> None:
    async with api.operator():
        await api.create(SPEC)
        pods = await until(lambda: api.pods())
        ((name, pod),) = pods.items()
        kubernetes_validate.validate(pod, "1.37.0", strict=True)
        assert pod["metadata"]["ownerReferences"] == [{
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CameraSubscription", "name": "cam-001", "uid": UID,
            "controller": True, "blockOwnerDeletion": True}]
        container = pod["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["securityContext"]["runAsNonRoot"] is True
        env = {item["name"]: item for item in container["env"]}
        assert env["DETECTOR_STREAM_URL"]["valueFrom"] == {"secretKeyRef": {"name": "cam-001-url", "key": "url"}}
        assert json.loads(env["DETECTOR_SUBSCRIPTION_SPEC"]["value"])["camera"] == "cam-001"
        status = await until(lambda: api.status().get("pod") == name and api.status())
        assert status["phase"] == "Pending" and status["subscribers"] == 2

        await api.set_pod_status(name, running())
        status = await until(lambda: api.status().get("phase") == "Running" and api.status())
        assert status["fps"] == 9.87 and status["lastFrameTime"] == "2025-11-24T16:00:00Z"
        assert status["podIP"] == "127.0.0.1" and status["conditions"][0]["status"] == "True"

        failing = health.health.report.model_copy(update={"last_error": "connection refused"})
        health.health = health.health.model_copy(update={"ok": False, "detail": "no frames", "report": failing})
        status = await until(lambda: api.status().get("phase") == "Degraded" and api.status())
        assert status["lastError"] == "connection refused"


async def test_a_spec_change_replaces_the_pod_once_the_new_one_is_ready(api: Api) -> None:
    async with api.operator():
        await api.create(SPEC)
        ((first, _),) = (await until(lambda: api.pods())).items()
        await api.set_pod_status(first, running())
        await until(lambda: api.status().get("phase") == "Running")

        await api.change({**SPEC, "targetFps": 5}, generation=2)
        pods = await until(lambda: len(api.pods()) == 2 and api.pods())
        (second,) = set(pods) - {first}
        assert json.loads({e["name"]: e for e in pods[second]["spec"]["containers"][0]["env"]}
                          ["DETECTOR_SUBSCRIPTION_SPEC"]["value"])["targetFps"] == 5
        await asyncio.sleep(4 * STATUS_INTERVAL_S)
        assert first in await asyncio.to_thread(api.pods), "the old pod serves until the new one is ready"

        await api.set_pod_status(second, running())
        await until(lambda: set(api.pods()) == {second})
        status = await until(lambda: api.status().get("pod") == second and api.status())
        assert status["observedGeneration"] == 2


async def test_a_display_change_keeps_the_pod_and_a_stream_change_rolls_it(api: Api) -> None:
    """Display subscriptions reach the running pod live (through the broker): the pod keeps its name and uid."""
    async with api.operator():
        await api.create(SPEC)
        ((first, manifest),) = (await until(lambda: api.pods())).items()
        await api.set_pod_status(first, running())
        await until(lambda: api.status().get("phase") == "Running")
        display = {**SPEC["subscriptions"][0], "crop": {"x1": 0, "y1": 0, "x2": 64, "y2": 64}}
        await api.change({**SPEC, "subscriptions": [display]}, generation=2)
        await until(lambda: api.status().get("observedGeneration") == 2)
        await asyncio.sleep(4 * STATUS_INTERVAL_S)
        pods = await asyncio.to_thread(api.pods)
        assert list(pods) == [first], "the same pod (kmock gives pods no uid: the name is what identifies it)"
        assert pods[first]["spec"] == manifest["spec"], "not replaced by another of the same name"

        await api.change({**SPEC, "subscriptions": [display], "stream": {**SPEC["stream"], "kind": "snapshot",
                                                                         "snapshotIntervalMs": 500}}, generation=3)
        pods = await until(lambda: len(api.pods()) == 2 and api.pods())
        assert first in pods, "a stream change rolls the pod: a new one beside the old until it is ready"


async def test_pod_failures_show_in_status_with_the_reason(api: Api) -> None:
    async with api.operator():
        await api.create(SPEC)
        ((name, _),) = (await until(lambda: api.pods())).items()
        await api.set_pod_status(name, running(ready=False, waiting={
            "reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}))
        status = await until(lambda: api.status().get("phase") == "Degraded" and api.status())
        assert status["lastError"].startswith("CrashLoopBackOff: back-off") and "restarts: 4" in status["lastError"]

        await api.set_pod_status(name, {"phase": "Failed", "reason": "Evicted",
                                        "message": "The node was low on resource: memory."})
        status = await until(lambda: api.status().get("phase") == "Failed" and api.status())
        assert status["lastError"] == "Evicted: The node was low on resource: memory."
        # An evicted pod never comes back: the operator replaces it (same revision, same name).
        await until(lambda: api.pods().get(name, {}).get("status", {}).get("phase") is None)


async def test_invalid_spec_fails_with_a_reason_and_no_pod(api: Api) -> None:
    async with api.operator():
        bad = {**SPEC, "subscriptions": [{**SPEC["subscriptions"][0], "identifier": "no-semicolon"}]}
        await api.create(bad)
        status = await until(lambda: api.status().get("phase") == "Failed" and api.status())
        assert "identifier" in status["lastError"]
        assert status["conditions"][0]["reason"] == "InvalidSpec"
        await asyncio.sleep(4 * STATUS_INTERVAL_S)
        assert await asyncio.to_thread(api.pods) == {}


async def test_deleting_the_resource_leaves_its_pods_to_the_garbage_collector(api: Api) -> None:
    async with api.operator():
        await api.create(SPEC)
        ((name, _),) = (await until(lambda: api.pods())).items()
        await api.delete()
        await until(lambda: not api.exists())  # Kopf's finalizer (it stops the status timer) comes off first
        assert await api.collect_garbage() == [name]
        await asyncio.sleep(4 * STATUS_INTERVAL_S)
        assert await asyncio.to_thread(api.pods) == {}, "nothing recreates the pod of a deleted resource"


async def test_the_state_claim_is_created_once_and_outlives_a_pod_replacement(api: Api) -> None:
    state = StateVolume(type="persistentVolumeClaim", storage_class="fast-ssd", size="2Gi")
    async with api.operator(PodDefaults(gpu=1, state_volume=state)):
        await api.create(SPEC)
        ((first, pod),) = (await until(lambda: api.pods())).items()
        claims = await asyncio.to_thread(api.claims)
        assert list(claims) == ["cam-001-state"], "the claim exists before the pod that mounts it"
        claim = claims["cam-001-state"]
        kubernetes_validate.validate(claim, "1.37.0", strict=True)
        assert claim["metadata"]["ownerReferences"] == [{
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CameraSubscription", "name": "cam-001", "uid": UID,
            "controller": True, "blockOwnerDeletion": True}], "collected with the resource, not with a pod"
        assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}},
                                 "storageClassName": "fast-ssd"}
        assert {"name": "state", "persistentVolumeClaim": {"claimName": "cam-001-state"}} in pod["spec"]["volumes"]
        await api.set_pod_status(first, running())
        await until(lambda: api.status().get("phase") == "Running")

        since = kube.mark(api.emulator)
        await api.change({**SPEC, "targetFps": 5}, generation=2)
        pods = await until(lambda: set(api.pods()) - {first} and api.pods())
        (second,) = pods
        assert {"name": "state", "persistentVolumeClaim": {"claimName": "cam-001-state"}} in \
            pods[second]["spec"]["volumes"], "the replacement mounts the same claim"
        changes = [(write.method, write.plural, write.name) for write in kube.writes(api.emulator, since)
                   if write.plural in ("pods", "persistentvolumeclaims")]
        # Recreate, not rolling: two pods never hold the ReadWriteOnce claim (and its queues) at once.
        assert changes.index(("DELETE", "pods", first)) < changes.index(("POST", "pods", second)), changes
        assert {method for method, plural, _ in changes if plural == "persistentvolumeclaims"} <= {"POST"}, \
            "the claim is never changed or deleted by the operator"
        assert await asyncio.to_thread(api.claims) == claims, "the same claim, untouched"

        await api.set_pod_status(second, running())
        status = await until(lambda: api.status().get("pod") == second and api.status().get("phase") == "Running"
                             and api.status())
        assert status["observedGeneration"] == 2
