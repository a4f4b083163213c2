"""values.schema.json: the chart's values (and a GPU override) pass, bad values are refused, as Helm would."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
GPU_VALUES: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "values-gpu.yaml").read_text())


def _merged(user: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Helm's coalescing: maps merge deeply, the user's other values win."""
    merged = copy.deepcopy(DEFAULTS if base is None else base)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(value, merged[key])
        else:
            merged[key] = value
    return merged


def _errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(values)]


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_chart_defaults_and_the_gpu_override_are_valid() -> None:
    assert _errors(DEFAULTS) == []
    assert _errors(_merged(GPU_VALUES)) == []


@pytest.mark.parametrize("state_volume", [
    {"type": "emptyDir"},
    {"type": "hostPath", "hostPath": "/srv/camera-detector"},
    {"type": "persistentVolumeClaim", "storageClassName": "local-path", "size": "512Mi"},
    {"type": "persistentVolumeClaim", "storageClassName": "ebs.gp3-encrypted", "size": "1.5Gi"},
])
def test_every_state_volume_type_is_accepted(state_volume: dict[str, Any]) -> None:
    assert _errors(_merged({"camera": {"stateVolume": state_volume}})) == []


def _documented_paths(schema: dict[str, Any], path: str = "") -> set[str]:
    found = set()
    for name, child in schema.get("properties", {}).items():
        found.add(f"{path}{name}")
        if "$ref" in child:
            child = SCHEMA["definitions"][child["$ref"].rsplit("/", 1)[1]]
        found |= _documented_paths(child, f"{path}{name}.")
    return found


def _value_paths(values: dict[str, Any], path: str = "") -> set[str]:
    found = set()
    for name, value in values.items():
        found.add(f"{path}{name}")
        if isinstance(value, dict) and not name.endswith(("resources", "nodeSelector", "annotations", "affinity")):
            found |= _value_paths(value, f"{path}{name}.")
    return found


def test_every_value_is_described_by_the_schema() -> None:
    assert _value_paths(DEFAULTS) - _documented_paths(SCHEMA) == set()


@pytest.mark.parametrize(("override", "where"), [
    ({"camera": {"gpu": "lots"}}, "camera.gpu"),
    ({"camera": {"gpu": -1}}, "camera.gpu"),
    ({"camera": {"gpu": 1.5}}, "camera.gpu"),
    ({"cameras": {"gpu": 1}}, "'cameras' was unexpected"),
    ({"camera": {"gpus": 1}}, "camera: Additional properties"),
    ({"camera": {"image": {"tag": 1.1}}}, "camera.image.tag"),
    ({"operator": {"image": {"repository": ""}}}, "operator.image.repository"),
    ({"camera": {"image": {"pullPolicy": "Sometimes"}}}, "camera.image.pullPolicy"),
    ({"camera": {"nodeSelector": {"nvidia.com/gpu.present": True}}}, "camera.nodeSelector"),
    ({"camera": {"tolerations": [{"key": "nvidia.com/gpu", "effect": "NoWay"}]}}, "camera.tolerations"),
    ({"camera": {"stateVolume": {"type": "nfs"}}}, "camera.stateVolume.type"),
    ({"camera": {"stateVolume": {"size": "lots"}}}, "camera.stateVolume.size"),
    ({"camera": {"stateVolume": {"size": 1}}}, "camera.stateVolume.size"),
    ({"camera": {"stateVolume": {"storageClassName": "Fast SSD"}}}, "camera.stateVolume.storageClassName"),
    ({"camera": {"stateVolume": {"hostPath": "var/lib/detector"}}}, "camera.stateVolume.hostPath"),
    ({"camera": {"stateVolume": {"accessMode": "ReadWriteMany"}}}, "camera.stateVolume: Additional properties"),
    ({"operator": {"replicas": "2"}}, "operator.replicas"),
    ({"operator": {"peering": {"name": "Not A Name"}}}, "operator.peering.name"),
    ({"operator": {"extraEnv": [{"value": "x"}]}}, "operator.extraEnv"),
    ({"broker": {"eventMode": "sometimes"}}, "broker.eventMode"),
    ({"broker": {"service": {"port": 70000}}}, "broker.service.port"),
    ({"broker": {"replicas": 2}}, "broker: Additional properties"),
    ({"broker": {"ingress": {"enabled": True}}}, "broker.ingress"),
    ({"services": {"existingSecret": None}}, "services.existingSecret"),
    ({"auth": {"enabled": "yes"}}, "auth.enabled"),
    ({"auth": {"existingSecret": "Not A Secret"}}, "auth.existingSecret"),
    ({"auth": {"token": "hunter2"}}, "auth: Additional properties"),
])
def test_bad_values_are_refused(override: dict[str, Any], where: str) -> None:
    errors = _errors(_merged(override))
    assert errors, f"accepted: {override}"
    assert any(where in error for error in errors), errors
