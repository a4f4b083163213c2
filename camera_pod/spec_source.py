"""Where a camera pod reads its PodSpec: a file, the local runner's env, or the operator's env in a cluster."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from detector.contract.camerasubscription import CameraSubscriptionSpec, pod_from_spec
from detector.contract.environment import (
    BROKER_URL_ENV,
    DISPLAYS_ENV,
    MODEL_URLS_ENV,
    POD_NAME_ENV,
    POD_SPEC_ENV,
    STREAM_URL_ENV,
    SUBSCRIPTION_SPEC_ENV,
)
from detector.contract.pods import Displays, PodSpec

_MODEL_URLS: TypeAdapter[dict[str, str]] = TypeAdapter(dict[str, str])


class SpecError(Exception):
    """No usable pod spec; the message says which variable is missing or wrong (never its value)."""


def load_spec(path: str | None, environ: Mapping[str, str]) -> PodSpec:
    try:
        if path:
            return PodSpec.model_validate_json(Path(path).read_text())
        if environ.get(POD_SPEC_ENV):
            return PodSpec.model_validate_json(environ[POD_SPEC_ENV])
        if environ.get(SUBSCRIPTION_SPEC_ENV):
            return _from_resource(environ)
    except ValidationError as exc:
        raise SpecError(f"invalid pod spec: {_describe(exc)}") from None
    raise SpecError(f"no pod spec: set {POD_SPEC_ENV}, or {SUBSCRIPTION_SPEC_ENV} with {STREAM_URL_ENV}, "
                    "or pass --spec FILE")


def _from_resource(environ: Mapping[str, str]) -> PodSpec:
    missing = [name for name in (STREAM_URL_ENV, POD_NAME_ENV, BROKER_URL_ENV) if not environ.get(name)]
    if missing:
        raise SpecError(f"{SUBSCRIPTION_SPEC_ENV} is set but {', '.join(missing)} is not")
    spec = CameraSubscriptionSpec.model_validate_json(environ[SUBSCRIPTION_SPEC_ENV])
    try:
        model_urls = _MODEL_URLS.validate_json(environ.get(MODEL_URLS_ENV) or "{}")
    except ValidationError:
        raise SpecError(f"{MODEL_URLS_ENV} is not a JSON object of URLs") from None
    pod = pod_from_spec(environ[POD_NAME_ENV], spec, environ[STREAM_URL_ENV], environ[BROKER_URL_ENV], model_urls)
    if not environ.get(DISPLAYS_ENV):  # a Secret written by a broker from before this key
        return pod
    try:
        current = Displays.model_validate_json(environ[DISPLAYS_ENV])
    except ValidationError as exc:
        raise SpecError(f"{DISPLAYS_ENV} is not a valid display list: {_describe(exc)}") from None
    return pod.model_copy(update={"subscriptions": current.subscriptions})


def _describe(error: ValidationError) -> str:
    # input values are left out on purpose: a stream URL carries credentials
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(spec)'}: {e['msg']}"
                     for e in error.errors(include_url=False, include_input=False))[:1000]
