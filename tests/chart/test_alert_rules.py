"""The chart's PrometheusRule: promtool checks the rendered rule groups and runs their unit tests
(tests/chart/alert_rules_test.yaml: each alert fires when it should, and not before)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import Render

HERE = Path(__file__).parent
ALERTS = {"DetectorCameraOffline", "DetectorNoBackend", "DetectorBacklogGrowing", "DetectorModelNotLoading",
          "DetectorCameraPodRestarting"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("the alert rule tests need promtool: apt-get install prometheus "
                    "(scripts/system-packages.sh installs it)")
    return found


def rule_groups(render: Render) -> dict[str, Any]:
    (rule,) = render({"metrics": {"prometheusRule": {"enabled": True}}}).of_kind("PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rendered_rules(render: Render, promtool: str, tmp_path: Path) -> None:
    groups = rule_groups(render)
    assert {rule["alert"] for group in groups["groups"] for rule in group["rules"]} == ALERTS
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    checked = run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_not_before(render: Render, promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(render)))
    shutil.copy(HERE / "alert_rules_test.yaml", tmp_path)
    tested = run(promtool, "test", "rules", "alert_rules_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alert_labels_are_added_to_every_alert(render: Render) -> None:
    (rule,) = render({"metrics": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "stations"},
                                                     "labels": {"release": "kps"}}}}).of_kind("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert all(alert["labels"]["team"] == "stations" and alert["labels"]["severity"] in {"warning", "critical"}
               for group in rule["spec"]["groups"] for alert in group["rules"])
