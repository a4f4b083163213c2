"""Broker settings: flags beat environment, environment beats the config file, the file beats defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.settings import BrokerSettings


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"port": 9100, "target_fps": 4, "max_retries": 5, "heartbeat_interval_sec": 3}))
    monkeypatch.setenv("DETECTOR_TARGET_FPS", "6")
    monkeypatch.setenv("DETECTOR_MAX_RETRIES", "7")
    settings = BrokerSettings.load(config, max_retries=9, port=None)
    assert settings.port == 9100  # file (no flag, no env)
    assert settings.target_fps == 6  # env over file
    assert settings.max_retries == 9  # flag over env
    assert settings.heartbeat_interval_sec == 3
    assert settings.reconnect_interval_sec == 30.0  # default


def test_bad_values_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"max_retries": -5}))
    with pytest.raises(ValueError, match="max_retries"):
        BrokerSettings.load(config)


def test_pod_broker_url_defaults_to_loopback() -> None:
    assert BrokerSettings(port=8123).pod_broker_url("cam-1") == "ws://127.0.0.1:8123/internal/pods/cam-1"
    assert BrokerSettings(public_url="ws://broker.svc:8000/").pod_broker_url("cam-1") == \
        "ws://broker.svc:8000/internal/pods/cam-1"
