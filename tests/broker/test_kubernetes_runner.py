"""The broker's Kubernetes runner against kmock's emulator: CameraSubscriptions and Secrets, writes, recovery.

Every write the runner makes is counted from the emulator's request log (POST/PUT/PATCH/DELETE), so "no
change, no write" is checked, not assumed. kmock answers a server-side apply PATCH of a missing object with
404: the runner then creates it (see ``broker.runners.kube.server_side_apply``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import httpx
import jsonschema
import kmock
import kubernetes_validate
import pytest
import yaml

from broker import protocol
from broker.app import build_app
from broker.planning import plan, unplan
from broker.runners.kubernetes import KubernetesRunner, secret_name
from broker.service import Broker
from broker.settings import BrokerSettings
from camera_pod.spec_source import load_spec
from detector.contract.camerasubscription import CameraSubscriptionSpec
from detector.contract.pods import CropBox, PodSpec
from detector_operator.manifests import PodDefaults, build_pod
from tests.support import kube
from tests.support.kube_metered import MeteredEmulator
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(30)

CR = "detector.gasstation.dev/v1/camerasubscriptions"
SECRETS = "v1/secrets"
NS = "cameras"
BROKER_ID = "test-broker"
MODEL = {"modelUrl": "https://models.example/gas.mpta", "modelId": 7, "modelName": "gas"}
CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "camerasubscriptions.yaml").read_text())
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"\xff\xd9"


def subscription(identifier: str, **fields: Any) -> protocol.Subscription:
    return protocol.Subscription(subscriptionIdentifier=identifier, **MODEL, **fields)


CROP = {"cropX1": 10, "cropY1": 20, "cropX2": 330, "cropY2": 260}
WANTED = [
    subscription("display-1;cam-a", rtspUrl="rtsp://user:pass@10.0.0.1:554/a", **CROP),  # shared camera...
    subscription("display-2;cam-a", rtspUrl="rtsp://user:pass@10.0.0.1:554/a"),  # ...without a crop here
    subscription("display-3;cam-b", snapshotUrl="http://user:pass@10.0.0.2/snap.jpg", snapshotInterval=500),
    subscription("display-4;cam-c", rtspUrl="rtsp://user:pass@10.0.0.3/c", **CROP),
]


def _schema() -> dict[str, Any]:
    (version,) = CRD["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.fixture
def emulator(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kube.register(kmock, CR, "CameraSubscription", subresources={"status"})
    kube.register(kmock, SECRETS, "Secret")
    return kmock


def new_broker(emulator: kmock.KubernetesEmulator, pod_http_port: int = 8080) -> Broker:
    settings = BrokerSettings(namespace=NS, broker_id=BROKER_ID, public_url="ws://detector-broker:8000")
    return Broker(settings, KubernetesRunner(kube.api_client(emulator), settings, pod_http_port=pod_http_port))


def name_of(broker: Broker, identifier: str) -> str:
    name = broker.pod_of(identifier)
    assert name is not None, identifier
    return name


def resources(emulator: kmock.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return kube.live(emulator, CR, NS)


def secrets(emulator: kmock.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return kube.live(emulator, SECRETS, NS)


def url_in(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["url"]).decode()


@pytest.fixture
async def broker(emulator: kmock.KubernetesEmulator) -> Broker:
    broker = new_broker(emulator)
    await broker.reconcile(WANTED)
    return broker


# ---- apply ----------------------------------------------------------------------------------------

async def test_one_resource_and_one_secret_per_camera(emulator: kmock.KubernetesEmulator, broker: Broker) -> None:
    names = {name_of(broker, s.subscriptionIdentifier) for s in WANTED}
    assert len(names) == 3 and set(resources(emulator)) == names
    assert set(secrets(emulator)) == {secret_name(name) for name in names}
    for name, document in resources(emulator).items():
        jsonschema.validate(document, _schema())
        assert document["metadata"]["labels"] == {"app.kubernetes.io/managed-by": BROKER_ID,
                                                  "app.kubernetes.io/part-of": "camera-detector"}
        assert "pass" not in json.dumps(document), "no credential in the resource"
        reference = document["spec"]["stream"]["urlSecretRef"]
        assert reference == {"name": secret_name(name), "key": "url"}
        assert url_in(secrets(emulator)[reference["name"]]) == broker.runner.running()[name].stream.url
    shared = resources(emulator)[name_of(broker, "display-1;cam-a")]["spec"]
    assert [s["identifier"] for s in shared["subscriptions"]] == ["display-1;cam-a", "display-2;cam-a"]
    assert shared["subscriptions"][0]["crop"] == {"x1": 10, "y1": 20, "x2": 330, "y2": 260}
    assert "crop" not in shared["subscriptions"][1]
    snapshot = resources(emulator)[name_of(broker, "display-3;cam-b")]["spec"]["stream"]
    assert snapshot["kind"] == "snapshot" and snapshot["snapshotIntervalMs"] == 500
    assert url_in(secrets(emulator)[secret_name(name_of(broker, "display-3;cam-b"))]) == \
        "http://user:pass@10.0.0.2/snap.jpg"


async def test_what_the_runner_sends_is_valid(emulator: kmock.KubernetesEmulator, broker: Broker) -> None:
    sent = [write for write in kube.writes(emulator) if write.method in ("PATCH", "POST")]
    assert {(w.plural, w.method) for w in sent} == {("secrets", "PATCH"), ("secrets", "POST"),
                                                    ("camerasubscriptions", "PATCH"),
                                                    ("camerasubscriptions", "POST")}
    applies = [r for r in emulator if str(r.method.value).upper() == "PATCH"]
    assert {r.headers.get("Content-Type") for r in applies} == {"application/apply-patch+yaml"}
    assert {r.params.get("fieldManager") for r in applies} == {"detector-broker"}
    assert {r.params.get("force") for r in applies} == {"true"}
    patched = {(w.plural, w.name): w.body for w in sent if w.method == "PATCH"}
    assert all(w.body == patched[w.plural, w.name] for w in sent if w.method == "POST"), "create = the apply body"
    for write in sent:
        if write.plural == "secrets":
            kubernetes_validate.validate(write.body, "1.37.0", strict=True)
            assert write.body["type"] == "Opaque"
        else:
            jsonschema.validate(write.body, _schema())
            assert "pass@" not in json.dumps(write.body)


async def test_the_same_list_again_writes_nothing(emulator: kmock.KubernetesEmulator, broker: Broker) -> None:
    since = kube.mark(emulator)
    await broker.reconcile(list(reversed(WANTED)))
    assert kube.writes(emulator, since) == []


async def test_a_shorter_list_deletes_only_what_is_gone(emulator: kmock.KubernetesEmulator, broker: Broker) -> None:
    gone, kept = name_of(broker, "display-4;cam-c"), name_of(broker, "display-3;cam-b")
    since = kube.mark(emulator)
    await broker.reconcile(WANTED[:3])
    assert {(w.method, w.plural, w.name) for w in kube.writes(emulator, since)} == {
        ("DELETE", "camerasubscriptions", gone), ("DELETE", "secrets", secret_name(gone))}
    assert gone not in resources(emulator) and secret_name(gone) not in secrets(emulator)
    assert kept in resources(emulator) and gone not in broker.runner.running()


async def test_a_changed_crop_reapplies_only_that_resource(emulator: kmock.KubernetesEmulator,
                                                           broker: Broker) -> None:
    changed = [*WANTED[:3], subscription("display-4;cam-c", rtspUrl="rtsp://user:pass@10.0.0.3/c",
                                         cropX1=0, cropY1=0, cropX2=64, cropY2=64)]
    name = name_of(broker, "display-4;cam-c")
    since = kube.mark(emulator)
    await broker.reconcile(changed)
    # The Secret keeps the entry as the backend sent it (for the heartbeat's echo), so it changes too.
    assert [(w.method, w.plural, w.name) for w in kube.writes(emulator, since)] == [
        ("PATCH", "secrets", secret_name(name)), ("PATCH", "camerasubscriptions", name)]
    assert resources(emulator)[name]["spec"]["subscriptions"][0]["crop"] == {"x1": 0, "y1": 0, "x2": 64, "y2": 64}


async def test_a_camera_pod_restarted_after_a_crop_change_starts_with_the_new_crop(
        emulator: kmock.KubernetesEmulator, broker: Broker) -> None:
    """The pod keeps the environment of its creation, but the kubelet resolves Secret references at every
    container start: a pod restarted while the broker is away still serves the current displays."""
    name = name_of(broker, "display-4;cam-c")
    created = build_pod(name, NS, "0b7c9f6e-1111-4a2b-9c3d-5e6f7a8b9c0d",
                        CameraSubscriptionSpec.model_validate(resources(emulator)[name]["spec"]), PodDefaults(),
                        revision="a1b2c3")
    await broker.reconcile([*WANTED[:3], subscription("display-4;cam-c", rtspUrl="rtsp://user:pass@10.0.0.3/c",
                                                      cropX1=0, cropY1=0, cropX2=64, cropY2=64)])
    secret_data = secrets(emulator)[secret_name(name)]["data"]

    def resolved(item: dict[str, Any]) -> str | None:
        reference = (item.get("valueFrom") or {}).get("secretKeyRef")
        if reference is None:
            return item.get("value")  # type: ignore[no-any-return]
        assert reference["name"] == secret_name(name)
        encoded = secret_data.get(reference["key"])
        return base64.b64decode(encoded).decode() if encoded is not None else None

    environ = {item["name"]: value for item in created["spec"]["containers"][0]["env"]
               if (value := resolved(item)) is not None}
    restarted = load_spec(None, environ)
    assert restarted.subscriptions[0].crop == CropBox(x1=0, y1=0, x2=64, y2=64)
    assert restarted == broker.runner.running()[name].model_copy(
        update={"subscriptions": broker.runner.running()[name].displays().subscriptions})


# ---- concurrency ----------------------------------------------------------------------------------

def api_for(emulator: kmock.KubernetesEmulator, concurrency: int) -> kube.client.ApiClient:
    configuration = kube.client.Configuration(host=str(emulator.url).rstrip("/"),
                                              connection_pool_maxsize=concurrency + 1)
    return kube.client.ApiClient(configuration)


def runner_with(emulator: kmock.KubernetesEmulator, concurrency: int,
                api: kube.client.ApiClient | None = None) -> KubernetesRunner:
    settings = BrokerSettings(namespace=NS, broker_id=BROKER_ID, kube_apply_concurrency=concurrency)
    return KubernetesRunner(api or api_for(emulator, concurrency), settings)


def connections_opened(api: kube.client.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools
    return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118  # it refuses iteration


def cameras(count: int, **fields: Any) -> dict[str, PodSpec]:
    wanted = [subscription(f"display-{i};cam-{i}", rtspUrl=f"rtsp://user:pass@10.0.1.{i}/live", **fields)
              for i in range(count)]
    return plan(wanted, BrokerSettings(max_streams=count))


def first_write(emulator: kmock.KubernetesEmulator, plural: str, name: str) -> int:
    return next(i for i, w in enumerate(kube.writes(emulator)) if (w.plural, w.name) == (plural, name))


@pytest.mark.kmock(cls=MeteredEmulator, latency=0.02, gather=8)  # 8 at once, however slow the threads
async def test_cameras_are_written_concurrently_within_the_bound(emulator: MeteredEmulator) -> None:
    api, specs = api_for(emulator, 8), cameras(60)
    runner = runner_with(emulator, 8, api)
    await runner.apply(specs)
    assert set(resources(emulator)) == set(specs) and set(runner.running()) == set(specs)
    assert set(secrets(emulator)) == {secret_name(name) for name in specs}
    created = [(w.plural, w.name) for w in kube.writes(emulator) if w.method == "POST"]
    assert len(created) == len(set(created)) == 2 * 60, "each object created once"
    peak = emulator.peak
    assert peak == 8, "as many requests in flight as the bound allows, never more"
    for name in specs:  # the resource references its Secret: the Secret is written first
        assert first_write(emulator, "secrets", secret_name(name)) < first_write(emulator,
                                                                                 "camerasubscriptions", name)
    assert connections_opened(api) <= 8, "each answer read, so its connection is reused"

    since = kube.mark(emulator)
    await runner.apply(dict(reversed(specs.items())))
    assert kube.writes(emulator, since) == [], "unchanged: no write"

    emulator.reset_peak()
    await runner.apply({})
    assert sorted(w.method for w in kube.writes(emulator, since)) == ["DELETE"] * 120
    assert resources(emulator) == {} and secrets(emulator) == {} and runner.running() == {}
    peak = emulator.peak
    assert peak == 8


@pytest.mark.kmock(cls=MeteredEmulator, latency=0.005)
async def test_a_bound_of_one_writes_one_request_at_a_time(emulator: MeteredEmulator) -> None:
    runner, specs = runner_with(emulator, 1), cameras(6)
    await runner.apply(specs)
    peak = emulator.peak
    assert set(resources(emulator)) == set(specs) and peak == 1


@pytest.mark.kmock(cls=MeteredEmulator, latency=0.01)
async def test_a_failing_camera_blocks_no_other_and_is_retried(emulator: MeteredEmulator,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    runner, specs = runner_with(emulator, 4), cameras(12)
    new, changed, removed = sorted(specs)[:3]
    emulator.refused = {secret_name(new)}
    with caplog.at_level(logging.ERROR, logger="broker.runners.kubernetes"):
        await runner.apply(specs)
    assert set(resources(emulator)) == set(runner.running()) == set(specs) - {new}
    assert all(w.name != new for w in kube.writes(emulator)), "no resource before its Secret"
    failed = [r for r in caplog.records if "applying the camera subscription failed" in r.getMessage()]
    assert [r.pod for r in failed] == [new]  # type: ignore[attr-defined]
    assert "pass" not in repr(failed[0].__dict__), "no credential in the log"

    emulator.refused = {changed}
    moved = {**specs, changed: cameras(12, **CROP)[changed]}
    since = kube.mark(emulator)
    await runner.apply(moved)  # the refused camera written again, whole; the changed one refused
    assert sorted((w.plural, w.name) for w in kube.writes(emulator, since) if w.method == "POST") == [
        ("camerasubscriptions", new), ("secrets", secret_name(new))]
    assert set(runner.running()) == set(specs) and runner.running()[changed] == specs[changed], "not remembered"

    emulator.refused = {removed}
    del moved[removed]
    await runner.apply(moved)  # the changed camera retried; the refused delete kept as applied
    assert runner.running()[changed] == moved[changed] and removed in runner.running()

    emulator.refused = set()
    since = kube.mark(emulator)
    await runner.apply(moved)
    assert [(w.method, w.plural, w.name) for w in kube.writes(emulator, since)] == [
        ("DELETE", "camerasubscriptions", removed), ("DELETE", "secrets", secret_name(removed))]
    assert runner.running() == moved and set(resources(emulator)) == set(moved)


@pytest.mark.kmock(cls=MeteredEmulator, latency=0.02, gather=64)  # all 64 at once, however slow the threads
async def test_from_environment_keeps_a_connection_per_writer(emulator: MeteredEmulator, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from kubernetes.config import kube_config

    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "kmock",
                  "clusters": [{"name": "kmock", "cluster": {"server": str(emulator.url).rstrip("/")}}],
                  "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                  "users": [{"name": "test", "user": {"token": "t"}}]}
    (tmp_path / "config").write_text(json.dumps(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # never the cluster the tests may run in
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "config"))
    monkeypatch.setattr(kube.client.Configuration, "_default", None)  # restored afterwards: a global
    settings = BrokerSettings(namespace=NS, broker_id=BROKER_ID, kube_apply_concurrency=64)
    runner = KubernetesRunner.from_environment(settings)
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        await runner.apply(cameras(64))
    assert len(resources(emulator)) == 64
    peak = emulator.peak
    assert peak == 64
    assert not [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]


# ---- restart --------------------------------------------------------------------------------------

def test_unplan_inverts_plan() -> None:
    settings = BrokerSettings()
    wanted = [*WANTED, subscription("display-5;cam-d", rtspUrl="rtsp://10.0.0.4/d", snapshotInterval=1000)]
    specs = plan(wanted, settings)
    assert set(unplan(list(specs.values()))) == set(wanted)
    assert plan(unplan(list(specs.values())), settings) == specs


async def test_a_restarted_broker_adopts_its_resources(emulator: kmock.KubernetesEmulator, broker: Broker) -> None:
    restarted = new_broker(emulator)
    async with build_app(restarted).router.lifespan_context(build_app(restarted)):  # restore() runs here
        assert restarted.runner.running() == broker.runner.running()
        assert restarted.subscriptions == broker.subscriptions
        for identifier in broker.subscriptions:
            assert restarted.pod_of(identifier) == broker.pod_of(identifier)
        since = kube.mark(emulator)
        await restarted.reconcile(WANTED)
        assert kube.writes(emulator, since) == []
    assert set(resources(emulator)) == set(broker.runner.running()), "closing the broker stops no camera"


async def test_a_restarted_broker_echoes_the_entries_exactly_as_sent(emulator: kmock.KubernetesEmulator) -> None:
    """The heartbeat echoes what the backend sent; in a cluster that lives in the camera's Secret, never in the
    resource (both URLs, four 0 crops, a snapshot interval sent with RTSP: all as sent)."""
    sent = [subscription("display-7;cam-e", rtspUrl="rtsp://user:pass@10.0.0.7/e",
                         snapshotUrl="http://user:pass@10.0.0.7/snap.jpg", snapshotInterval=5000),
            subscription("display-8;cam-f", rtspUrl="rtsp://user:pass@10.0.0.8/f", snapshotInterval=250,
                         cropX1=0, cropY1=0, cropX2=0, cropY2=0)]
    broker = new_broker(emulator)
    await broker.reconcile(sent)
    assert "user:pass" not in json.dumps(resources(emulator)), "credentials never in a resource"
    restarted = new_broker(emulator)
    async with build_app(restarted).router.lifespan_context(build_app(restarted)):
        assert restarted.subscriptions == broker.subscriptions
        assert restarted.state_report().to_wire()["cameraConnections"] == \
            broker.state_report().to_wire()["cameraConnections"]
        echoed = {c["subscriptionIdentifier"]: c for c in restarted.state_report().to_wire()["cameraConnections"]}
    assert (echoed["display-7;cam-e"]["snapshotUrl"], echoed["display-7;cam-e"]["rtspUrl"]) == (
        "http://user:pass@10.0.0.7/snap.jpg", None)
    assert (echoed["display-8;cam-f"]["snapshotInterval"], echoed["display-8;cam-f"]["cropX2"]) == (250, 0)


async def test_recovery_skips_a_resource_without_secret_and_deletes_orphans(
        emulator: kmock.KubernetesEmulator, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    broken = name_of(broker, "display-3;cam-b")
    core = kube.client.CoreV1Api(kube.api_client(emulator))
    await asyncio.to_thread(core.delete_namespaced_secret, secret_name(broken), NS)
    for name, labels in (("cam-000000000000-stream", {"app.kubernetes.io/managed-by": BROKER_ID}),
                         ("someone-elses", {})):
        await asyncio.to_thread(core.create_namespaced_secret, NS, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "data": {"url": "eA=="}})
    foreign = {**resources(emulator)[broken], "metadata": {
        "name": "cam-0123456789ab", "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "other-broker"}}}
    custom = kube.client.CustomObjectsApi(kube.api_client(emulator))
    await asyncio.to_thread(custom.create_namespaced_custom_object, *CR.split("/")[:2], NS, "camerasubscriptions",
                            foreign)

    restarted = new_broker(emulator)
    since = kube.mark(emulator)
    with caplog.at_level(logging.ERROR, logger="broker.runners.kubernetes"):
        await restarted.restore()
    assert [(w.method, w.name) for w in kube.writes(emulator, since)] == [("DELETE", "cam-000000000000-stream")]
    assert set(restarted.runner.running()) == set(broker.runner.running()) - {broken}
    assert "display-3;cam-b" not in restarted.subscriptions and len(restarted.subscriptions) == 3
    assert [r.pod for r in caplog.records if "Secret is missing" in r.getMessage()] == [broken]  # type: ignore[attr-defined]
    assert "someone-elses" in secrets(emulator) and "cam-0123456789ab" in resources(emulator), "not ours"

    since = kube.mark(emulator)
    await restarted.reconcile(WANTED)  # the skipped camera is written again, whole
    assert sorted((w.plural, w.name) for w in kube.writes(emulator, since) if w.method == "PATCH") == [
        ("camerasubscriptions", broken), ("secrets", secret_name(broken))]
    assert url_in(secrets(emulator)[secret_name(broken)]) == "http://user:pass@10.0.0.2/snap.jpg"
    await restarted.reconcile([])
    assert set(resources(emulator)) == {"cam-0123456789ab"}, "another broker's resource is never touched"


async def test_a_skipped_resource_no_longer_wanted_is_deleted(emulator: kmock.KubernetesEmulator,
                                                              broker: Broker) -> None:
    broken = name_of(broker, "display-3;cam-b")
    core = kube.client.CoreV1Api(kube.api_client(emulator))
    await asyncio.to_thread(core.delete_namespaced_secret, secret_name(broken), NS)
    restarted = new_broker(emulator)
    await restarted.restore()
    await restarted.reconcile([s for s in WANTED if s.subscriptionIdentifier != "display-3;cam-b"])
    assert broken not in resources(emulator)


# ---- images ---------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def camera_pod_http() -> AsyncIterator[int]:
    """What a camera pod serves on its HTTP port, reduced to ``GET /image``."""
    async def image(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=JPEG, content_type="image/jpeg")

    app = aiohttp.web.Application()
    app.router.add_get("/image", image)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_the_image_comes_from_the_pod_ip_in_the_status(emulator: kmock.KubernetesEmulator) -> None:
    async with camera_pod_http() as port:
        broker = new_broker(emulator, pod_http_port=port)
        await broker.reconcile(WANTED)
        transport = httpx.ASGITransport(app=build_app(broker))
        async with httpx.AsyncClient(transport=transport, base_url="http://broker") as http:
            before = await http.get("/camera/display-2;cam-a/image")
            emulator.objects[CR, NS, name_of(broker, "display-2;cam-a")].patch({"status": {"podIP": "127.0.0.1"}})
            after = await http.get("/camera/display-2;cam-a/image")
            unknown = await http.get("/camera/display-9;cam-z/image")
    assert before.status_code == 404
    assert before.json() == {"error": "unknown subscription or no frame yet: display-2;cam-a"}
    assert after.status_code == 200 and after.content == JPEG and after.headers["content-type"] == "image/jpeg"
    assert unknown.status_code == 404


async def test_an_unreachable_pod_is_a_503(emulator: kmock.KubernetesEmulator) -> None:
    broker = new_broker(emulator, pod_http_port=free_port())  # nothing listens there
    await broker.reconcile(WANTED)
    emulator.objects[CR, NS, name_of(broker, "display-1;cam-a")].patch({"status": {"podIP": "127.0.0.1"}})
    transport = httpx.ASGITransport(app=build_app(broker))
    async with httpx.AsyncClient(transport=transport, base_url="http://broker") as http:
        response = await http.get("/camera/display-1;cam-a/image")
    assert response.status_code == 503 and response.json()["error"].startswith("camera pod unreachable")


async def test_a_model_url_with_credentials_lives_in_the_secret(emulator: kmock.KubernetesEmulator,
                                                                broker: Broker) -> None:
    secret_model = "https://deploy:m0del-pw@models.example/gas.mpta"
    wanted = [*WANTED[:3], protocol.Subscription(subscriptionIdentifier="display-4;cam-c",
                                                 rtspUrl="rtsp://user:pass@10.0.0.3/c", modelUrl=secret_model,
                                                 modelId=7, modelName="gas")]
    name = name_of(broker, "display-4;cam-c")
    since = kube.mark(emulator)
    await broker.reconcile(wanted)
    assert {(w.plural, w.name) for w in kube.writes(emulator, since)} == {("camerasubscriptions", name),
                                                                          ("secrets", secret_name(name))}
    document = resources(emulator)[name]
    assert "m0del-pw" not in json.dumps(document)
    assert document["spec"]["subscriptions"][0]["modelUrl"] == "https://deploy:***@models.example/gas.mpta"
    data = secrets(emulator)[secret_name(name)]["data"]
    assert json.loads(base64.b64decode(data["models"])) == {"display-4;cam-c": secret_model}

    restarted = new_broker(emulator)
    await restarted.restore()
    assert restarted.runner.running()[name] == broker.runner.running()[name], "the real URL comes back"
    assert restarted.subscriptions["display-4;cam-c"].modelUrl == secret_model

    await broker.reconcile(WANTED)  # back to a plain model URL: no model URL in the Secret any more
    assert base64.b64decode(secrets(emulator)[secret_name(name)]["data"]["models"]) == b"{}"
