"""Every metric the chart's dashboard and alert rules query is one a running broker and camera pod really serve.

``detector run`` with a token, one RTSP camera with the fixture model, both /metrics scraped (the broker's with
the token, as the ServiceMonitor does) and parsed with prometheus_client's parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.conftest import Render
from tests.support import metric_names
from tests.support.embedded import Worker
from tests.support.embedded_fixtures import ready_worker
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # a worker, a camera pod, an RTSP server
TOKEN = "metrics-token-0123456789abcdef"
DISPLAY = "display-metrics-1;cam-001"


@pytest.fixture
def secured_worker(tmp_path: Path) -> Iterator[Worker]:
    with ready_worker(tmp_path, token=TOKEN) as running:
        yield running


def pod_port(worker: Worker) -> int:
    (pod,) = worker.pods()
    (port,) = [c.laddr.port for c in pod.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    return port


def queried(render: Render) -> tuple[set[str], set[str]]:
    """The metric names the alert rules query, and those the dashboard queries."""
    rendered = render({"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}})
    (rule,) = rendered.of_kind("PrometheusRule")
    (config_map,) = rendered.of_kind("ConfigMap")
    dashboard = metric_names.load_json(config_map["data"]["camera-detector.json"])
    return (metric_names.queried(metric_names.rule_expressions(rule["spec"])),
            metric_names.queried(metric_names.dashboard_expressions(dashboard)))


async def test_a_running_broker_and_camera_pod_serve_every_queried_metric(
        secured_worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str, connect: Any,
        render: Render) -> None:
    rtsp, _ = camera_servers
    backend = await connect(secured_worker.url, token=TOKEN)
    await backend.send({"type": "setSubscriptionList", "subscriptions": [
        {"subscriptionIdentifier": DISPLAY, "rtspUrl": rtsp.url, "modelUrl": model_url, "modelId": 42,
         "modelName": "gas-station"}]})
    await backend.until(lambda: backend.online().get(DISPLAY) is True, 90)
    broker_url = f"http://127.0.0.1:{secured_worker.port}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.get(broker_url)
        broker_page = (await http.get(broker_url, headers={"Authorization": f"Bearer {TOKEN}"})).text
        pod_page = (await http.get(f"http://127.0.0.1:{pod_port(secured_worker)}/metrics")).text
    assert refused.status_code == 401, "the broker's /metrics takes the token"

    from_broker, from_pod = metric_names.exposed(broker_page), metric_names.exposed(pod_page)
    in_rules, in_dashboard = queried(render)
    assert in_rules - from_broker == set(), "the alerts need the broker's /metrics only"
    assert in_dashboard - (from_broker | from_pod) == set()
    assert metric_names.documented(metric_names.BROKER_SECTION) <= from_broker
    assert metric_names.documented(metric_names.POD_SECTION) <= from_pod

    # The fleet as one scrape of the broker sees it: the camera's series, labelled by its pod, never a URL.
    samples = [(sample.name, dict(sample.labels)) for sample in _samples(broker_page)]
    (camera_pod,) = {labels["camera_pod"] for name, labels in samples if name == "detector_camera_online"}
    for name in in_rules - {"detector_broker_backend_connected", "detector_broker_backlog_messages"}:
        assert any(found == name and labels.get("camera_pod") == camera_pod for found, labels in samples), name
    assert ("detector_camera_online", {"camera_pod": camera_pod}) in samples
    assert (sample_value(broker_page, "detector_camera_online") == 1
            and sample_value(broker_page, "detector_broker_backend_connected") == 1)
    assert "rtsp" not in broker_page and "127.0.0.1" not in broker_page


def _samples(page: str) -> Iterator[Any]:
    for family in text_string_to_metric_families(page):
        yield from family.samples


def sample_value(page: str, name: str) -> float:
    (value,) = [sample.value for sample in _samples(page) if sample.name == name]
    return float(value)
