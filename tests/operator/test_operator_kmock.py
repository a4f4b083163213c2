"""The real Kopf operator against kmock's Kubernetes emulator, driven through the API like a cluster would be.

kmock limits designed around (not hidden): resources are registered for discovery; `v1/namespaces` must be
discoverable but is never listed (scanning disabled: kmock cannot serve GET /api/v1/namespaces); no uid or
creationTimestamp is generated (``ApiServer`` fills them in on creation, as an API server does: a pod
replaced by another of the same name gets another uid); label selectors are ignored (the operator filters
by label too); there is no scheduler or kubelet (the test writes pod status); there is no garbage collector
(the test asserts owner references and deletes owned pods itself, as the cluster's GC would).

kmock serves from the test's own event loop, which also runs the operator: the blocking ``kubernetes``
client is called from threads only (``asyncio.to_thread``), or nothing answers it. A test that restarts the
operator drops the client's kept-alive connections in between (``Api.operator`` says why), or its next
calls on them wait for ever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import kubernetes_validate
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from detector_operator.manifests import SUBSCRIPTION_LABEL, PodDefaults, StateVolume
from detector_operator.rolling import RollBudget
from detector_operator.settings import OperatorSettings
from tests.operator.test_manifests import SPEC
from tests.support import kube
from tests.support.apiserver import ApiServer
from tests.support.operator_harness import HealthEndpoint, running_operator

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow, pytest.mark.kmock(cls=ApiServer)]
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
    The operator is given the same client.
    """

    def __init__(self, emulator: kmock.KubernetesEmulator, health_port: int) -> None:
        self.emulator, self.url, self.health_port = emulator, str(emulator.url).rstrip("/"), health_port
        self.client = k8s.ApiClient(k8s.Configuration(host=self.url))
        self.core = k8s.CoreV1Api(self.client)
        self.custom = k8s.CustomObjectsApi(self.client)

    @contextlib.asynccontextmanager
    async def operator(self, defaults: PodDefaults | None = None, rolls: RollBudget | None = None,
                       ) -> AsyncIterator[None]:
        try:
            async with running_operator(self.url, self.core, defaults or PodDefaults(gpu=1), namespace=NS,
                                        pod_http_port=self.health_port, status_interval_s=STATUS_INTERVAL_S,
                                        rolls=rolls):
                yield
        finally:
            # On stop Kopf cancels every task created since it started, the emulator's handlers of the
            # keep-alive connections opened meanwhile too: their sockets stay open but nothing reads them,
            # and a request sent on one is never answered (the client has no read timeout: it waits for
            # ever). Such connections are dropped here, before anything (a next operator) reuses them.
            self.client.rest_client.pool_manager.clear()

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

    def resource(self, name: str = "cam-001") -> dict[str, Any]:
        found: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(found)

    def status(self, name: str = "cam-001") -> dict[str, Any]:
        try:
            found = self.resource(name)
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


async def test_a_crop_change_keeps_the_pod_and_a_stream_url_change_rolls_it(api: Api) -> None:
    """Display subscriptions reach the running pod live (through the broker): a crop change patches the
    resource only, the pod keeps its name and uid; another stream URL (Secret) is a new pod, name and uid."""
    async with api.operator():
        await api.create(SPEC)
        ((first, manifest),) = (await until(lambda: api.pods())).items()
        uid = manifest["metadata"]["uid"]
        await api.set_pod_status(first, running())
        await until(lambda: api.status().get("phase") == "Running")

        display = {**SPEC["subscriptions"][0], "crop": {"x1": 0, "y1": 0, "x2": 64, "y2": 64}}
        cropped = {**SPEC, "subscriptions": [display, SPEC["subscriptions"][1]]}
        await api.change(cropped, generation=2)
        await until(lambda: api.status().get("observedGeneration") == 2)
        await asyncio.sleep(4 * STATUS_INTERVAL_S)
        assert (await asyncio.to_thread(api.resource))["spec"]["subscriptions"][0]["crop"] == display["crop"]
        pods = await asyncio.to_thread(api.pods)
        assert list(pods) == [first] and pods[first]["metadata"]["uid"] == uid, "the same pod: name and uid"
        assert pods[first]["spec"] == manifest["spec"]

        moved = {**cropped, "stream": {**SPEC["stream"], "urlSecretRef": {"name": "cam-001-url-2", "key": "url"}}}
        await api.change(moved, generation=3)
        pods = await until(lambda: len(api.pods()) == 2 and api.pods())
        (second,) = set(pods) - {first}
        assert pods[second]["metadata"]["uid"] not in (uid, None), "a new pod"
        assert pods[first]["metadata"]["uid"] == uid, "the old pod serves until the new one is ready"
        assert {"name": "DETECTOR_STREAM_URL", "valueFrom": {"secretKeyRef": {"name": "cam-001-url-2", "key": "url"}}} \
            in pods[second]["spec"]["containers"][0]["env"]
        await api.set_pod_status(second, running())
        await until(lambda: set(api.pods()) == {second})


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


ROLLED_IMAGE = "registry.example/camera:2"


@pytest.mark.timeout(90)
async def test_a_new_camera_image_rolls_no_more_pods_at_once_than_the_limit(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator restarted with another camera image (its settings, from the chart's environment): every
    resource gets a pod of the new revision, at most DETECTOR_MAX_CONCURRENT_ROLLS of them mid-roll at once
    (a new pod beside the old one, until the new one is ready), and all end on the new image."""
    names = await six_cameras_on_a_first_image(api, monkeypatch)
    monkeypatch.setenv("DETECTOR_CAMERA_IMAGE", ROLLED_IMAGE)
    settings = OperatorSettings()
    async with api.operator(settings.pod_defaults(), RollBudget(limit=settings.max_concurrent_rolls)):
        most = await run_new_pods(api, len(names), ready_after_s=3 * STATUS_INTERVAL_S)
        await until(lambda: all(api.status(name).get("pod") in api.pods() and api.status(name).get("phase")
                                == "Running" for name in names))
    assert most == 2, "never more than the limit mid-roll, and the limit used"
    assert most_mid_roll(kube.writes(api.emulator)) == 2, "every write counted, not only sampled"
    await assert_all_on_the_new_image(api, names)


async def test_an_operator_restarted_mid_roll_counts_the_rolls_under_way(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rolls under way when the operator restarts (new pods not ready yet): the next operator counts them
    against the limit from its start, so no third resource starts rolling until one of them ends."""
    names = await six_cameras_on_a_first_image(api, monkeypatch)
    monkeypatch.setenv("DETECTOR_CAMERA_IMAGE", ROLLED_IMAGE)
    settings = OperatorSettings()

    def new_pods() -> list[str]:
        return [name for name, pod in api.pods().items() if pod["spec"]["containers"][0]["image"] == ROLLED_IMAGE]

    async with api.operator(settings.pod_defaults(), RollBudget(limit=settings.max_concurrent_rolls)):
        await until(lambda: len(new_pods()) == 2)
    async with api.operator(settings.pod_defaults(), RollBudget(limit=settings.max_concurrent_rolls)):
        await asyncio.sleep(5 * STATUS_INTERVAL_S)  # every resource resumed and ticked: none may start a roll
        assert len(await asyncio.to_thread(new_pods)) == 2
        most = await run_new_pods(api, len(names), ready_after_s=3 * STATUS_INTERVAL_S)
    assert most == 2 and most_mid_roll(kube.writes(api.emulator)) == 2
    await assert_all_on_the_new_image(api, names)


async def six_cameras_on_a_first_image(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names = [f"cam-{index:03d}" for index in range(1, 7)]
    monkeypatch.setenv("DETECTOR_CAMERA_IMAGE", "registry.example/camera:1")
    monkeypatch.setenv("DETECTOR_MAX_CONCURRENT_ROLLS", "2")
    settings = OperatorSettings()
    async with api.operator(settings.pod_defaults(), RollBudget(limit=settings.max_concurrent_rolls)):
        for name in names:
            await api.create({**SPEC, "camera": name}, name=name, uid=str(uuid.uuid4()))
        old = await until(lambda: len(api.pods()) == len(names) and api.pods())
        for pod in old:
            await api.set_pod_status(pod, running())
        await until(lambda: all(api.status(name).get("phase") == "Running" for name in names))
    return names


async def assert_all_on_the_new_image(api: Api, names: list[str]) -> None:
    pods = await asyncio.to_thread(api.pods)
    assert sorted(pod["metadata"]["labels"][SUBSCRIPTION_LABEL] for pod in pods.values()) == names
    assert {pod["spec"]["containers"][0]["image"] for pod in pods.values()} == {ROLLED_IMAGE}


def subscription_of(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"][SUBSCRIPTION_LABEL])


async def run_new_pods(api: Api, resources: int, ready_after_s: float, timeout: float = 60) -> int:
    """The kubelet: each pod of the new image turns Running and ready ``ready_after_s`` after it appears,
    until every resource runs one such pod and nothing else. Returns the most resources seen mid-roll."""
    appeared: dict[str, float] = {}
    most, deadline = 0, time.monotonic() + timeout
    while True:
        pods = await asyncio.to_thread(api.pods)
        per_resource = collections.Counter(subscription_of(pod) for pod in pods.values())
        most = max(most, sum(count > 1 for count in per_resource.values()))
        new = [name for name, pod in pods.items() if pod["spec"]["containers"][0]["image"] == ROLLED_IMAGE]
        if len(new) == len(pods) == resources and all(pods[name].get("status") for name in new):
            return most
        for name in new:
            if time.monotonic() - appeared.setdefault(name, time.monotonic()) > ready_after_s \
                    and not pods[name].get("status"):
                await api.set_pod_status(name, running())
        assert time.monotonic() < deadline, f"the roll did not end: {sorted(pods)}"
        await asyncio.sleep(0.1)


def most_mid_roll(writes: list[kube.Write]) -> int:
    """The most resources with more than one pod at once, replaying every pod creation and deletion."""
    owners: dict[str, str] = {}
    most = 0
    for write in writes:
        if write.plural != "pods" or write.name is None or write.method not in ("POST", "DELETE"):
            continue
        if write.method == "POST":
            owners[write.name] = subscription_of(write.body)
        else:
            owners.pop(write.name, None)
        most = max(most, sum(count > 1 for count in collections.Counter(owners.values()).values()))
    return most
