"""Broker settings: flags > environment > a config file (``--config``, else ``./config.json``) > defaults.

Most cases go through ``detector run`` itself (the parser, ``BrokerSettings.load`` and the error path of
``detector.cli.main``) with the server stubbed out, in a temporary working directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker import commands
from broker.planning import plan
from broker.protocol import Subscription
from broker.settings import BrokerSettings
from detector import cli

# The original worker's config.json as it shipped.
ORIGINAL_CONFIG = {"poll_interval_ms": 100, "max_streams": 5, "target_fps": 2, "reconnect_interval_sec": 5,
                   "max_retries": -1}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and an environment without DETECTOR_* settings."""
    for name in [name for name in os.environ if name.startswith("DETECTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Runs ``detector run ARGS`` up to the server and returns (exit code, the settings it would serve with)."""
    seen: list[BrokerSettings] = []
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # cli.main installs its own handler on the test's stderr

    class FakeBroker:
        def __init__(self, settings: BrokerSettings, runner: object) -> None:
            seen.append(settings)

    monkeypatch.setattr(commands, "Broker", FakeBroker)
    monkeypatch.setattr(commands, "build_runner", lambda settings: None)
    monkeypatch.setattr(commands, "build_app", lambda broker: None)
    monkeypatch.setattr(commands.uvicorn, "run", lambda *args, **kwargs: None)

    def run(*args: str) -> tuple[int, BrokerSettings | None]:
        seen.clear()
        code = cli.main(["run", *args])
        return code, (seen[0] if seen else None)

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def write(path: Path, document: object) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_the_original_config_json_in_the_working_directory_is_read(workdir: Path, run_settings: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    write(workdir / "config.json", ORIGINAL_CONFIG)
    with caplog.at_level(logging.INFO, "broker.settings"):
        code, settings = run_settings()
    assert code == 0 and settings is not None
    assert (settings.poll_interval_ms, settings.max_streams, settings.target_fps, settings.reconnect_interval_sec,
            settings.max_retries) == (100, 5, 2.0, 5.0, -1)
    assert f"config file: {workdir / 'config.json'}" in caplog.text, "which file was read is logged"


def test_without_any_config_file_the_defaults_apply_and_that_is_logged(
        workdir: Path, run_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "broker.settings"):
        code, settings = run_settings()
    assert code == 0 and settings == BrokerSettings()
    assert "config file: none" in caplog.text


# max_streams from each source: default 20, ./config.json 11, --config 12, DETECTOR_MAX_STREAMS 13, the flag 14.
@pytest.mark.parametrize(("sources", "expected"), [
    ((), 20),
    (("cwd",), 11),
    (("config",), 12),
    (("cwd", "config"), 12),
    (("cwd", "env"), 13),
    (("config", "env"), 13),
    (("cwd", "config", "env"), 13),
    (("flag",), 14),
    (("cwd", "flag"), 14),
    (("cwd", "config", "env", "flag"), 14),
])
def test_precedence(sources: tuple[str, ...], expected: int, workdir: Path, tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch, run_settings: Any) -> None:
    args: list[str] = []
    if "cwd" in sources:
        write(workdir / "config.json", {"max_streams": 11})
    if "config" in sources:
        args += ["--config", str(write(tmp_path_factory.mktemp("elsewhere") / "worker.json", {"max_streams": 12}))]
    if "env" in sources:
        monkeypatch.setenv("DETECTOR_MAX_STREAMS", "13")
    if "flag" in sources:
        args += ["--max-streams", "14"]
    code, settings = run_settings(*args)
    assert code == 0 and settings is not None and settings.max_streams == expected


def test_config_replaces_the_working_directory_file_instead_of_merging_with_it(
        workdir: Path, tmp_path_factory: pytest.TempPathFactory, run_settings: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    write(workdir / "config.json", {"max_retries": 3})
    other = write(tmp_path_factory.mktemp("elsewhere") / "worker.json", {"target_fps": 4})
    with caplog.at_level(logging.INFO, "broker.settings"):
        code, settings = run_settings("--config", str(other))
    assert code == 0 and settings is not None
    assert settings.target_fps == 4 and settings.max_retries == -1, "nothing of ./config.json is used"
    assert "config.json not read: --config replaces it" in caplog.text


def test_every_source_fills_its_own_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    config = write(tmp_path / "worker.json", {"port": 9100, "target_fps": 4, "max_retries": 5,
                                              "heartbeat_interval_sec": 3})
    monkeypatch.setenv("DETECTOR_TARGET_FPS", "6")
    monkeypatch.setenv("DETECTOR_MAX_RETRIES", "7")
    settings = BrokerSettings.load(config, max_retries=9, port=None)
    assert settings.port == 9100  # file (no flag, no env)
    assert settings.target_fps == 6  # env over file
    assert settings.max_retries == 9  # flag over env
    assert settings.heartbeat_interval_sec == 3
    assert settings.reconnect_interval_sec == 30.0  # default


def test_an_unknown_key_is_a_warning_that_names_it(workdir: Path, run_settings: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    write(workdir / "config.json", {**ORIGINAL_CONFIG, "gpu_memory_fraction": 0.5})
    with caplog.at_level(logging.WARNING, "broker.settings"):
        code, settings = run_settings()
    assert code == 0 and settings is not None and settings.max_streams == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'gpu_memory_fraction'" in warnings[0] and "ignored" in warnings[0]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"max_streams": 5,\n  "target_fps": }', ["config.json", "not valid JSON", "line 2 column 17"]),
    ('{"max_streams": 5,}', ["config.json", "not valid JSON", "line 1"]),
    ("[1, 2]", ["config.json", "must hold a JSON object", "not list"]),
    ('{"max_retries": -5}', ["config.json: max_retries", "greater than or equal to -1"]),
    ('{"max_streams": "many"}', ["config.json: max_streams", "valid integer"]),
    ('{"poll_interval_ms": -1}', ["config.json: poll_interval_ms", "greater than or equal to 0"]),
    ('{"event_mode": "every"}', ["config.json: event_mode", "'visit' or 'frame'"]),
])
def test_a_bad_config_file_is_an_error_naming_the_file_and_the_key_or_line(
        text: str, expected: list[str], workdir: Path, run_settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir / "config.json", text)
    code, settings = run_settings()
    output = capsys.readouterr().err  # the log lines, then the error
    error = output.splitlines()[-1]
    assert code == 2 and settings is None
    assert error.startswith("detector run: error: ") and "Traceback" not in output
    for part in expected:
        assert part in error


@pytest.mark.parametrize(("env", "args", "expected"), [
    ({"DETECTOR_PORT": "eighty"}, [], "DETECTOR_PORT: port: Input should be a valid integer"),
    ({}, ["--max-streams", "0"], "--max-streams: max_streams: Input should be greater than or equal to 1"),
    ({}, ["--config", "missing.json"], "cannot read the config file missing.json"),
    ({"DETECTOR_AUTH_TOKEN": "short-secret"}, [], "DETECTOR_AUTH_TOKEN: auth_token"),
])
def test_bad_variables_flags_and_files_say_where(env: dict[str, str], args: list[str], expected: str, workdir: Path,
                                                 monkeypatch: pytest.MonkeyPatch, run_settings: Any,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _ = run_settings(*args)
    error = capsys.readouterr().err
    assert code == 2 and expected in error
    assert "short-secret" not in error, "a refused value is never printed back"


def test_settings_errors_are_value_errors(tmp_path: Path, workdir: Path) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        BrokerSettings.load(write(tmp_path / "worker.json", {"max_retries": -5}))


def test_poll_interval_reaches_every_pod_spec(workdir: Path) -> None:
    write(workdir / "config.json", ORIGINAL_CONFIG)
    subscriptions = [Subscription(subscriptionIdentifier=f"display-{n};cam-{n}", rtspUrl=f"rtsp://10.0.0.{n}/s",
                                  modelUrl="http://models/a.mpta", modelId=1, modelName="a") for n in (1, 2)]
    specs = plan(subscriptions, BrokerSettings.load())
    assert [(spec.poll_interval_ms, spec.target_fps) for spec in specs.values()] == [(100, 2.0), (100, 2.0)]
    assert all(spec.poll_interval_ms == 0 for spec in plan(subscriptions, BrokerSettings()).values()), \
        "unset: no floor (today's behaviour)"


def test_poll_interval_reaches_camera_pods_in_a_cluster_through_the_resource(workdir: Path) -> None:
    """The kubernetes runner writes it into each CameraSubscription; the pod rebuilt from it paces by it."""
    from broker.runners.kubernetes import build_resource
    from detector.contract.camerasubscription import CameraSubscriptionSpec, SecretKeyRef, pod_from_spec

    write(workdir / "config.json", ORIGINAL_CONFIG)
    settings = BrokerSettings.load(None, runner="kubernetes")
    subscriptions = [Subscription(subscriptionIdentifier="display-1;cam-1", rtspUrl="rtsp://10.0.0.1/s",
                                  modelUrl="http://models/a.mpta", modelId=1, modelName="a")]
    (spec,) = plan(subscriptions, settings).values()
    resource = build_resource(spec, "cameras", {})
    assert resource["spec"]["pollIntervalMs"] == 100
    rebuilt = pod_from_spec(spec.name, CameraSubscriptionSpec.model_validate(resource["spec"]), spec.stream.url,
                            spec.broker_url)
    assert rebuilt.poll_interval_ms == 100
    assert SecretKeyRef.model_validate(resource["spec"]["stream"]["urlSecretRef"]).key == "url"


def test_kubernetes_settings_with_the_local_runner_are_said_to_do_nothing(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DETECTOR_KUBE_APPLY_CONCURRENCY", "4")
    with caplog.at_level(logging.WARNING, "broker.settings"):
        BrokerSettings.load(None, namespace="cameras")
        assert [r.getMessage() for r in caplog.records] == [
            "namespace (from --namespace) has no effect with the local runner",
            "kube_apply_concurrency (from DETECTOR_KUBE_APPLY_CONCURRENCY) has no effect with the local runner"]
        caplog.clear()
        BrokerSettings.load(None, runner="kubernetes", namespace="cameras")
        assert not caplog.records


def test_pod_broker_url_defaults_to_loopback() -> None:
    assert BrokerSettings(port=8123).pod_broker_url("cam-1") == "ws://127.0.0.1:8123/internal/pods/cam-1"
    assert BrokerSettings(public_url="ws://broker.svc:8000/").pod_broker_url("cam-1") == \
        "ws://broker.svc:8000/internal/pods/cam-1"
