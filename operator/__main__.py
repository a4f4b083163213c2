"""``python -m detector_operator``: the Kopf operator for CameraSubscriptions (settings from DETECTOR_* env)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from detector.kit import logs

from . import handlers
from .rolling import RollBudget
from .settings import OperatorSettings


def _core_api() -> k8s.CoreV1Api:
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # outside a cluster: the developer's kubeconfig
    return k8s.CoreV1Api()


async def run(settings: OperatorSettings) -> None:
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    handlers.register(registry, status_interval_s=settings.status_interval_sec)
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.posting.level = 20  # INFO and above become Kubernetes events on the resource
    # One namespace, resources known in advance: no cluster-wide watch of namespaces and CRDs, so the
    # operator needs no ClusterRole at all (API discovery is open to every authenticated client).
    kopf_settings.scanning.disabled = True
    async with httpx.AsyncClient(timeout=httpx.Timeout(3.0)) as http:
        context = handlers.OperatorContext(core=_core_api(), defaults=settings.pod_defaults(), http=http,
                                           rolls=RollBudget(limit=settings.max_concurrent_rolls),
                                           namespace=settings.namespace)
        await kopf.operator(
            registry=registry, settings=kopf_settings, namespaces=[settings.namespace], memo=kopf.Memo(context=context),
            peering_name=settings.peering, priority=settings.peering_priority,
            liveness_endpoint=f"http://0.0.0.0:{settings.operator_health_port}/healthz")


def main() -> None:
    settings = OperatorSettings()
    logs.configure(settings.log_level, settings.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings))


if __name__ == "__main__":
    main()
