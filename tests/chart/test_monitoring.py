"""metrics.*: ServiceMonitor, PodMonitor, PrometheusRule and the Grafana dashboard; off by default, right when on.

kubernetes_validate knows no Prometheus Operator kinds: their structure is checked here (and the rules by promtool,
tests/chart/test_alert_rules.py); the dashboard's ConfigMap is validated like every other object.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from detector.contract.camerasubscription import CameraSubscriptionSpec
from detector_operator.manifests import PodDefaults, build_pod
from tests.chart.conftest import NAMESPACE, RELEASE, Render, Rendered
from tests.chart.test_values import SCHEMA, _merged
from tests.operator.test_manifests import SPEC, UID
from tests.support import metric_names

K8S = "1.37.0"
FULLNAME = f"{RELEASE}-detector"
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
ALL_ON: dict[str, Any] = {"metrics": {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
    "podMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "15s"},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Cameras"}},
}}


@pytest.fixture
def monitored(render: Render) -> Rendered:
    return render(ALL_ON)


def dashboard(rendered: Rendered) -> dict[str, Any]:
    (config_map,) = rendered.of_kind("ConfigMap")
    return metric_names.load_json(config_map["data"]["camera-detector.json"])


def test_everything_is_off_by_default(render: Render) -> None:
    default = render()
    assert [doc["kind"] for doc in default.documents if doc["kind"] in (*MONITORING_KINDS, "ConfigMap")] == []


def test_everything_renders_when_enabled_with_the_standard_labels(monitored: Rendered) -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in monitored.documents}
    assert {("ServiceMonitor", f"{FULLNAME}-broker"), ("PodMonitor", f"{FULLNAME}-camera-pods"),
            ("PrometheusRule", FULLNAME), ("ConfigMap", f"{FULLNAME}-dashboard")} <= kinds
    for kind in (*MONITORING_KINDS, "ConfigMap"):
        (doc,) = monitored.of_kind(kind)
        assert doc["apiVersion"] == ("v1" if kind == "ConfigMap" else "monitoring.coreos.com/v1")
        assert doc["metadata"]["namespace"] == NAMESPACE
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE and labels["app.kubernetes.io/component"] == "monitoring"
    assert monitored.one("ServiceMonitor", f"{FULLNAME}-broker")["metadata"]["labels"]["release"] == "kps"
    kubernetes_validate.validate(monitored.one("ConfigMap", f"{FULLNAME}-dashboard"), K8S, strict=True)


def test_the_service_monitor_scrapes_the_broker_service_with_its_token(monitored: Rendered, render: Render) -> None:
    monitor = monitored.one("ServiceMonitor", f"{FULLNAME}-broker")
    service = monitored.one("Service", f"{FULLNAME}-broker")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "30s", "10s")
    assert endpoint["authorization"] == {"type": "Bearer",
                                         "credentials": {"name": f"{FULLNAME}-auth", "key": "token"}}
    without_auth = render({**ALL_ON, "auth": {"enabled": False}}).one("ServiceMonitor", f"{FULLNAME}-broker")
    assert "authorization" not in without_auth["spec"]["endpoints"][0]
    existing = render({**ALL_ON, "auth": {"enabled": True, "existingSecret": "backend-token"}})
    credentials = existing.one("ServiceMonitor", f"{FULLNAME}-broker")["spec"]["endpoints"][0]["authorization"]
    assert credentials["credentials"]["name"] == "backend-token"


def test_the_pod_monitor_selects_the_camera_pods_the_operator_makes(monitored: Rendered) -> None:
    monitor = monitored.one("PodMonitor", f"{FULLNAME}-camera-pods")
    pod = build_pod("cam-001", NAMESPACE, UID, CameraSubscriptionSpec.model_validate(SPEC), PodDefaults(),
                    revision="a1b2c3")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = pod["spec"]["containers"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")


def test_the_dashboard_is_for_grafanas_sidecar(monitored: Rendered, render: Render) -> None:
    config_map = monitored.one("ConfigMap", f"{FULLNAME}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Cameras"}
    board = dashboard(monitored)
    assert board["uid"] == "camera-detector" and board["title"] == "Camera detector"
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    assert all(panel["datasource"]["uid"] == "${datasource}" and panel["targets"] for panel in panels)
    assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in panels)
    elsewhere = render({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                                         "label": "dashboards", "labelValue": "camera"}}})
    (moved,) = elsewhere.of_kind("ConfigMap")
    assert moved["metadata"]["namespace"] == "monitoring" and moved["metadata"]["labels"]["dashboards"] == "camera"


def test_every_queried_metric_is_a_documented_one(monitored: Rendered) -> None:
    """The dashboard and the rules query only metrics that README.md ("Watching it run") lists (and the tests in
    tests/broker/test_metrics.py and test_queried_metrics.py hold the list to what the code serves)."""
    rules = metric_names.rule_expressions(monitored.one("PrometheusRule", FULLNAME)["spec"])
    queried = metric_names.queried([*rules, *metric_names.dashboard_expressions(dashboard(monitored))])
    documented = metric_names.documented(metric_names.BROKER_SECTION) | metric_names.documented(
        metric_names.POD_SECTION)
    assert queried - documented == set()
    assert len(queried) > 20


@pytest.mark.parametrize("override", [
    {"serviceMonitor": {"enabled": True, "interval": "30 seconds"}},
    {"podMonitor": {"enabled": "yes"}},
    {"prometheusRule": {"enabled": True, "alertLabels": {"team": 7}}},
    {"grafanaDashboard": {"enabled": True, "namespace": "Not_A_Namespace"}},
    {"grafanaDashboard": {"enabled": True, "label": ""}},
    {"serviceMonitor": {"enabled": True, "selector": {}}},
])
def test_bad_monitoring_values_are_refused(override: dict[str, Any]) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(_merged({"metrics": override})))
    assert errors, override

