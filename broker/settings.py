"""Broker settings: flags > env ``DETECTOR_*`` > a JSON config file > defaults.

The config file is ``--config FILE`` or else ``config.json`` in the working directory, as the original worker
read it; ``--config`` replaces ``./config.json`` (they are not merged). The original's keys (``poll_interval_ms``,
``max_streams``, ``target_fps``, ``reconnect_interval_sec``, ``max_retries``) are settings here too; a key that is
no setting is ignored with a warning (the original's file may hold others), a bad value is an error naming the
key and where it came from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from detector.kit.errors import PermanentError

log = logging.getLogger(__name__)
ENV_PREFIX = "DETECTOR_"
CONFIG_FILE = Path("config.json")  # read from the working directory when --config is not given
KUBERNETES_ONLY = ("namespace", "broker_id", "kube_apply_concurrency")


class SettingsError(PermanentError, ValueError):
    """Unusable settings: the message names the file, variable or flag and the key, never a secret value."""


class BrokerSettings(BaseSettings):
    # hide_input_in_errors: a refused value (the auth token) is never printed back.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True)

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = Field(None, description="how pods reach the broker; default ws://127.0.0.1:<port>")
    heartbeat_interval_sec: float = Field(2.0, gt=0)
    backend_grace_period_sec: float = Field(300.0, ge=0, description="cameras keep running without a backend")
    poll_interval_ms: int = Field(
        0, ge=0, le=3_600_000,
        description="the original's name: the least time between two frames a camera pod processes for a display "
                    "(frames in between are skipped, not decoded later); 0: no floor, as many as the pipeline takes")
    max_streams: int = Field(20, ge=1, description="camera streams (pods) at most")
    target_fps: float | None = Field(None, gt=0)
    reconnect_interval_sec: float = Field(30.0, ge=0.5)
    max_retries: int = Field(-1, ge=-1)
    event_mode: Literal["visit", "frame"] = "visit"
    stable_frames: int = Field(3, ge=1, description="agreeing frames before a visit is announced, at 5 frames/s; "
                                                    "the same span of time at the stream's measured frame rate")
    visit_gap_sec: float = Field(0.7, gt=0, description="processed frames without the car (two at least) spanning "
                                                        "this long end its visit")
    max_message_bytes: int = Field(1 << 20, ge=1024)
    event_max_age_sec: float = Field(600.0, gt=0, description="detections older than this when a backend is "
                                                              "there to take them are dropped, not delivered")
    max_kept_events: int = Field(10_000, ge=1, description="messages kept in memory while no backend is connected; "
                                                           "past it the pods keep the rest on their disks")
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "camera-detector",
                            description="local runner: <cache_dir>/broker/pods.json remembers the running cameras "
                                        "across broker restarts (camera pods read DETECTOR_CACHE_DIR themselves)")
    runner: Literal["local", "kubernetes"] = Field(
        "local", description="local: camera pods are child processes; kubernetes: CameraSubscriptions")
    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                           description="kubernetes runner: where the CameraSubscriptions live")
    broker_id: str = Field("detector-broker", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                           description="kubernetes runner: the managed-by label of this broker's resources")
    kube_apply_concurrency: int = Field(
        16, ge=1, le=256,
        description="kubernetes runner: cameras whose Secret and CameraSubscription are written at once")
    auth_token: SecretStr | None = Field(
        None, min_length=16, max_length=4096,
        description="shared token the backend (and camera pods) must present on /, /camera/, /internal/pods/, "
                    "/refusals and /metrics (Prometheus sends it as a bearer token); unset: no authentication "
                    "(the embedded default)")

    @field_validator("auth_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> BrokerSettings:
        """Precedence: flags (None: not given) > environment > ``config_file`` or ``./config.json`` > defaults."""
        path = config_path(config_file)
        from_file = read_config_file(path, known=cls.model_fields.keys()) if path is not None else {}
        environment = _environment(cls)
        given = {key: value for key, value in flags.items() if value is not None}
        origins = {**dict.fromkeys(from_file, str(path)),
                   **{key: ENV_PREFIX + key.upper() for key in environment},
                   **{key: "--" + key.replace("_", "-") for key in given}}
        try:
            settings = cls(**{**from_file, **environment, **given})
        except ValidationError as exc:
            raise SettingsError(_explain(exc, origins)) from None
        settings._warn_unused(origins)
        return settings

    def _warn_unused(self, origins: dict[str, str]) -> None:
        """The kubernetes runner's settings are accepted with the local one (a shared environment), said unused.

        (``cache_dir`` is not warned about with the kubernetes runner: the image sets DETECTOR_CACHE_DIR for the
        camera pods, which read it themselves.)
        """
        for key in (key for key in KUBERNETES_ONLY if self.runner == "local" and key in origins):
            log.warning("%s (from %s) has no effect with the local runner", key, origins[key])

    def pod_broker_url(self, pod: str) -> str:
        base = self.public_url or f"ws://127.0.0.1:{self.port}"
        return f"{base.rstrip('/')}/internal/pods/{pod}"


def config_path(explicit: Path | None) -> Path | None:
    """``--config FILE`` if given (it replaces ``./config.json``), else ``./config.json`` if there; logged."""
    implicit = Path.cwd() / CONFIG_FILE
    if explicit is None and not implicit.is_file():
        log.info("config file: none (no --config, no %s)", implicit)
        return None
    path = explicit or implicit
    log.info("config file: %s", path.resolve())
    if explicit is not None and implicit.is_file() and implicit.resolve() != explicit.resolve():
        log.info("%s not read: --config replaces it", implicit)
    return path


def read_config_file(path: Path, known: Any) -> dict[str, Any]:
    """The settings a JSON config file holds; its keys that are no setting are dropped with a warning."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"config file {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid JSON: line {exc.lineno} column {exc.colno}: "
                            f"{exc.msg}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"config file {path} must hold a JSON object of settings, not {type(document).__name__}")
    for key in sorted(set(document) - set(known)):
        log.warning("config file %s: %r is not a setting of detector run; ignored", path, key)
    return {key: value for key, value in document.items() if key in known}


def _environment(settings_class: type[BrokerSettings]) -> dict[str, Any]:
    """The ``DETECTOR_*`` variables that name a setting, as set (validated with the rest, so errors say where)."""
    return dict(EnvSettingsSource(settings_class)())


def _explain(error: ValidationError, origins: dict[str, str]) -> str:
    """One line per refused setting: where it came from, its name and why (the value is never repeated)."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        key = str(item["loc"][0]) if item["loc"] else None
        if key is None:  # a rule across settings
            lines.append(item["msg"].removeprefix("Value error, "))
        else:
            lines.append(f"{origins.get(key, 'default')}: {key}: {item['msg']}")
    return "invalid settings: " + "; ".join(lines)
