"""Camera pods in a Kubernetes cluster: one CameraSubscription, and one Secret with its URL, per PodSpec.

The broker only declares what should run; the operator turns each CameraSubscription into a camera pod
and reports the pod's address in the resource's status. The stream URL, credentials included, lives in
the Secret ``<name>-stream`` (key ``url``) and never in the resource; so do model URLs with credentials
(key ``models``; the resource shows them masked). Both are written by server-side
apply under the field manager ``detector-broker``, and only when the PodSpec changed (its digest is
remembered per name). Cameras are written concurrently, at most ``kube_apply_concurrency`` at once, each
one's Secret before its resource: every call is a round trip to the API server (~10-30 ms), so 1 000
cameras one at a time would take tens of seconds. A restarted broker adopts what its predecessor applied
(``recover``), so closing the broker stops nothing: the pods keep running in the cluster.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from broker.runners import kube
from broker.settings import BrokerSettings
from detector.contract.camerasubscription import (
    DISPLAYS_KEY,
    MANAGED_BY_LABEL,
    MODEL_URLS_KEY,
    CameraSubscriptionSpec,
    SecretKeyRef,
    pod_from_spec,
    resource,
    secret_model_urls,
    spec_from_pod,
)
from detector.contract.environment import POD_HTTP_PORT
from detector.contract.pods import PodSpec, ReceivedEntry, StreamReport
from detector.kit.redaction import redact_text

log = logging.getLogger(__name__)
T = TypeVar("T")

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "camera-detector"
URL_KEY = "url"
RECEIVED_KEY = "received"


def secret_name(name: str) -> str:
    return f"{name}-stream"


def _encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def received_entries(pod: PodSpec) -> dict[str, dict[str, Any]]:
    """The backend's entries as sent, by display identifier (what a restarted broker echoes in stateReport)."""
    return {d.identifier: d.received.model_dump(mode="json", exclude_none=True)
            for d in pod.subscriptions if d.received is not None}


def secret_data(pod: PodSpec) -> dict[str, str]:
    """What a pod's Secret holds, before encoding: its stream URL, its model URLs with credentials, and the
    backend's entries as sent (credentials included: a resource must never hold them)."""
    return {URL_KEY: pod.stream.url, MODEL_URLS_KEY: json.dumps(secret_model_urls(pod), sort_keys=True),
            RECEIVED_KEY: json.dumps(received_entries(pod), sort_keys=True),
            DISPLAYS_KEY: pod.displays().model_dump_json()}


def build_secret(name: str, namespace: str, pod: PodSpec, labels: dict[str, str]) -> dict[str, Any]:
    """Every key is always written (``{}`` when empty): an apply never leaves a stale one."""
    data = {key: _encoded(value) for key, value in secret_data(pod).items()}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(name), "namespace": namespace, "labels": dict(labels)},
            "data": data}


def build_resource(pod: PodSpec, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    spec = spec_from_pod(pod, SecretKeyRef(name=secret_name(pod.name), key=URL_KEY))
    return resource(pod.name, namespace, spec, labels)


def _decoded(encoded: Any) -> str:
    """A Secret's base64 value as text; "" when absent or not valid base64 UTF-8."""
    try:
        return base64.b64decode(encoded, validate=True).decode() if isinstance(encoded, str) else ""
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _describe(error: Exception) -> str:
    """For logs: an API error's body may echo what was sent (a Secret's data), so only its status is kept."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return redact_text(f"{type(error).__name__}: {error}")[:500]


def _with_received(pod: PodSpec, received: dict[str, Any]) -> PodSpec:
    """``pod`` with each display's entry as the backend sent it, where the Secret holds a valid one."""
    displays = []
    for display in pod.subscriptions:
        try:
            entry = ReceivedEntry.model_validate(received[display.identifier]) if display.identifier in received \
                else None
        except ValidationError:
            entry = None
        displays.append(display.model_copy(update={"received": entry}))
    return pod.model_copy(update={"subscriptions": displays})


async def _bounded(limit: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run ``jobs``, at most ``limit`` at once, in order of start; each job handles its own errors."""
    pending = iter(jobs)

    async def worker() -> None:
        for job in pending:  # shared: each job is taken by exactly one worker
            await job()

    async with asyncio.TaskGroup() as workers:
        for _ in range(min(limit, len(jobs))):
            workers.create_task(worker())


class KubernetesRunner:
    """The Runner of ``detector run --runner kubernetes``: CameraSubscriptions in ``settings.namespace``."""

    def __init__(self, api: client.ApiClient, settings: BrokerSettings, *, pod_http_port: int = POD_HTTP_PORT):
        self.namespace = settings.namespace
        self.labels = {MANAGED_BY_LABEL: settings.broker_id, PART_OF_LABEL: PART_OF}
        self.pod_http_port = pod_http_port
        self.concurrency = settings.kube_apply_concurrency
        self._broker_url: Callable[[str], str] = settings.pod_broker_url
        self._secrets = kube.Secrets(client.CoreV1Api(api), settings.namespace)
        self._subscriptions = kube.CameraSubscriptions(client.CustomObjectsApi(api), settings.namespace)
        self._applied: dict[str, PodSpec] = {}
        # Ours in the cluster but in no known state (a failed first write, a resource recover could not
        # read): the next apply writes it again if wanted and deletes it otherwise.
        self._adrift: set[str] = set()
        self._lock = asyncio.Lock()

    @classmethod
    def from_environment(cls, settings: BrokerSettings) -> KubernetesRunner:
        """In a pod: its service account; elsewhere: the current kubeconfig context."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        configuration = client.Configuration.get_default_copy()
        # urllib3 keeps cpu_count * 5 connections by default: fewer than the writers would discard the rest.
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0,
                                                    settings.kube_apply_concurrency + 1)
        return cls(client.ApiClient(configuration), settings)

    def running(self) -> dict[str, PodSpec]:
        return dict(self._applied)

    async def apply(self, specs: dict[str, PodSpec]) -> None:
        """Deletes, then writes, each ``concurrency`` cameras at once; one camera's failure stops no other."""
        async with self._lock:
            gone = sorted((self._applied.keys() | self._adrift) - specs.keys())
            changed = [(spec, self._applied.get(name)) for name, spec in specs.items()
                       if name not in self._applied or self._applied[name] != spec]
            if not gone and not changed:
                return
            # A pool of its own: asyncio.to_thread's default one has min(32, cores + 4) threads, 6 on 2 cores,
            # which would cap the bound below the setting.
            threads = ThreadPoolExecutor(min(self.concurrency, len(gone) + len(changed)),
                                         thread_name_prefix="kube-apply")
            try:
                await _bounded(self.concurrency, [functools.partial(self._remove, name, threads) for name in gone])
                await _bounded(self.concurrency, [functools.partial(self._write, spec, current, threads)
                                                  for spec, current in changed])
            finally:  # never waits: a cancelled apply leaves its in-flight calls to finish in their threads
                threads.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Nothing to stop: the cluster keeps the camera pods running and a restarted broker recovers them."""

    async def image_url(self, name: str, report: StreamReport | None) -> str | None:
        """The pod's address from the resource's status, read now (a replaced pod has a new address)."""
        found = await self._call(self._subscriptions.get, name)
        address = ((found or {}).get("status") or {}).get("podIP")
        if not isinstance(address, str) or not address:
            return None
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{self.pod_http_port}/image"

    async def recover(self) -> dict[str, PodSpec]:
        """Adopt the resources this broker id applied before a restart; delete Secrets left without one."""
        selector = f"{MANAGED_BY_LABEL}={self.labels[MANAGED_BY_LABEL]}"
        listed = await self._call(self._subscriptions.list, selector)
        ours = [item for item in listed if self._is_ours(item)]  # a selector is a request, not a guarantee
        async with self._lock:
            for item in ours:
                name = item["metadata"]["name"]
                pod = await self._rebuild(name, item.get("spec"))
                if pod is None:
                    self._adrift.add(name)
                else:
                    self._applied[name] = pod
            referenced = {secret_name(item["metadata"]["name"]) for item in ours} | {
                ((item.get("spec") or {}).get("stream") or {}).get("urlSecretRef", {}).get("name") for item in ours}
            await self._delete_orphan_secrets(referenced, selector)
            log.info("camera subscriptions recovered", extra={"pods": len(self._applied),
                                                              "skipped": len(self._adrift)})
            return dict(self._applied)

    # ---- internals ------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any, threads: Executor | None = None) -> T:
        if threads is None:
            return await asyncio.to_thread(function, *args)
        return await asyncio.get_running_loop().run_in_executor(threads, functools.partial(function, *args))

    def _is_ours(self, item: dict[str, Any]) -> bool:
        labels = (item.get("metadata") or {}).get("labels") or {}
        return bool(labels.get(MANAGED_BY_LABEL) == self.labels[MANAGED_BY_LABEL])

    async def _write(self, spec: PodSpec, current: PodSpec | None, threads: Executor) -> None:
        """Secret first (the resource references it), then the resource; on failure the next apply retries
        (the new digest is not remembered)."""
        try:
            body = build_resource(spec, self.namespace, self.labels)
            if current is None or secret_data(current) != secret_data(spec):
                secret = build_secret(spec.name, self.namespace, spec, self.labels)
                await self._call(kube.server_side_apply, self._secrets, secret, threads=threads)
            if current is None or build_resource(current, self.namespace, self.labels) != body:
                await self._call(kube.server_side_apply, self._subscriptions, body, threads=threads)
        except Exception as exc:  # one camera's failure never blocks the others
            log.error("applying the camera subscription failed; retried on the next apply",
                      extra={"pod": spec.name, "error": _describe(exc)})
            if current is None:
                self._adrift.add(spec.name)
            return
        self._applied[spec.name] = spec
        self._adrift.discard(spec.name)
        log.info("camera subscription applied", extra={"pod": spec.name, "subscriptions": len(spec.subscriptions),
                                                       "replaced": current is not None})

    async def _remove(self, name: str, threads: Executor) -> None:
        try:
            await self._call(self._subscriptions.delete, name, threads=threads)
            await self._call(self._secrets.delete, secret_name(name), threads=threads)
        except Exception as exc:  # kept as applied: the next apply tries again
            log.error("deleting the camera subscription failed", extra={"pod": name, "error": _describe(exc)})
            return
        self._applied.pop(name, None)
        self._adrift.discard(name)
        log.info("camera subscription deleted", extra={"pod": name})

    async def _rebuild(self, name: str, raw_spec: Any) -> PodSpec | None:
        """The PodSpec a resource and its Secret describe, or None (logged) when either is unusable."""
        try:
            spec = CameraSubscriptionSpec.model_validate(raw_spec)
        except ValidationError as exc:
            log.error("camera subscription has an invalid spec; not adopted",
                      extra={"pod": name, "error": redact_text(str(exc))[:500]})
            return None
        reference = spec.stream.urlSecretRef
        secret = await self._call(self._secrets.get, reference.name)
        data = (secret or {}).get("data") or {}
        url = _decoded(data.get(reference.key))
        if not url:
            log.error("camera subscription's URL Secret is missing or invalid; not adopted",
                      extra={"pod": name, "secret": reference.name, "found": secret is not None})
            return None
        try:
            model_urls = json.loads(_decoded(data.get(MODEL_URLS_KEY)) or "{}")
        except ValueError:
            model_urls = None
        if not isinstance(model_urls, dict):
            log.error("camera subscription's model URLs in its Secret are invalid; not adopted",
                      extra={"pod": name, "secret": reference.name})
            return None
        try:
            received = json.loads(_decoded(data.get(RECEIVED_KEY)) or "{}")
        except ValueError:
            received = None
        if not isinstance(received, dict):
            log.warning("camera subscription's received entries in its Secret are invalid; stateReport shows "
                        "them as rebuilt from the resource until the backend sends its list",
                        extra={"pod": name, "secret": reference.name})
            received = {}
        try:
            pod = pod_from_spec(name, spec, url, self._broker_url(name), model_urls)
            return _with_received(pod, received)
        except ValidationError as exc:
            log.error("camera subscription does not make a pod spec; not adopted",
                      extra={"pod": name, "error": redact_text(str(exc))[:500]})
            return None

    async def _delete_orphan_secrets(self, referenced: set[str | None], selector: str) -> None:
        for secret in await self._call(self._secrets.list, selector):
            name = secret["metadata"]["name"]
            if self._is_ours(secret) and name not in referenced:
                await self._call(self._secrets.delete, name)
                log.info("orphan URL Secret deleted", extra={"secret": name})
