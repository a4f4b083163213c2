"""PodSpec ↔ CameraSubscription spec: the resource carries everything but the URL, and converts back losslessly."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from camera_pod.spec_source import SpecError, load_spec
from detector.contract.camerasubscription import (
    SecretKeyRef,
    pod_from_spec,
    resource,
    secret_model_urls,
    spec_from_pod,
)
from detector.contract.pods import CropBox, DisplaySubscription, PodSpec, StreamSpec
from tests.operator.test_manifests import _schema

URL = "rtsp://admin:s3cret@10.0.0.5:554/stream1"
POD = PodSpec(
    name="cam-0123456789ab", stream=StreamSpec(url=URL, kind="rtsp"),
    subscriptions=[
        DisplaySubscription(identifier="display-001;cam-001", model_url="https://m.example/a.mpta", model_id=7,
                            model_name="gas", crop=CropBox(x1=0, y1=0, x2=320, y2=240)),
        DisplaySubscription(identifier="display-002;cam-001", model_url="https://m.example/a.mpta", model_id=7,
                            model_name="gas")],
    broker_url="ws://broker:8000/internal/pods/cam-0123456789ab", target_fps=5, reconnect_interval_sec=12,
    max_retries=4, event_mode="frame", stable_frames=5, visit_gap_s=1.5)
SECRET = SecretKeyRef(name="cam-0123456789ab-stream", key="url")


def test_round_trip_keeps_every_field_and_no_credentials() -> None:
    spec = spec_from_pod(POD, SECRET)
    document = resource(POD.name, "detectors", spec, {"app.kubernetes.io/managed-by": "detector-broker"})
    assert "s3cret" not in json.dumps(document) and "10.0.0.5" not in json.dumps(document)
    jsonschema.validate(document, _schema())
    assert spec.camera == "cam-001"
    assert pod_from_spec(POD.name, spec, URL, POD.broker_url) == POD


def test_file_streams_never_become_resources() -> None:
    local = POD.model_copy(update={"stream": StreamSpec(url="/videos/a.mp4", kind="file")})
    with pytest.raises(ValueError, match="local runs only"):
        spec_from_pod(local, SECRET)


def test_a_cluster_pod_builds_its_spec_from_the_operator_environment() -> None:
    environ = {"DETECTOR_SUBSCRIPTION_SPEC": spec_from_pod(POD, SECRET).model_dump_json(),
               "DETECTOR_STREAM_URL": URL, "DETECTOR_POD_NAME": POD.name, "DETECTOR_BROKER_URL": POD.broker_url}
    assert load_spec(None, environ) == POD
    assert load_spec(None, {"DETECTOR_POD_SPEC": POD.model_dump_json()}) == POD


def test_a_restarted_cluster_pod_takes_the_current_displays_from_its_secret_not_those_of_its_creation() -> None:
    """The pod's environment holds the resource spec of the pod's creation; the Secret's ``displays`` key
    (read by the kubelet at every container start) holds the current ones, credentials included."""
    created = {"DETECTOR_SUBSCRIPTION_SPEC": spec_from_pod(POD, SECRET).model_dump_json(),
               "DETECTOR_STREAM_URL": URL, "DETECTOR_POD_NAME": POD.name, "DETECTOR_BROKER_URL": POD.broker_url}
    moved = POD.subscriptions[1].model_copy(update={"crop": CropBox(x1=10, y1=20, x2=330, y2=260),
                                                    "model_url": MODEL_WITH_PASSWORD, "model_id": 8})
    added = DisplaySubscription(identifier="display-003;cam-001", model_url="https://m.example/c.mpta",
                                model_id=9, model_name="c")
    current = POD.model_copy(update={"subscriptions": [moved, added]})
    started = load_spec(None, {**created, "DETECTOR_DISPLAYS": current.displays().model_dump_json()})
    assert started == current, "displays from the Secret; the stream and everything else from the resource"
    assert load_spec(None, created) == POD, "a Secret from an older broker has no displays key"
    with pytest.raises(SpecError, match="DETECTOR_DISPLAYS is not a valid display list") as caught:
        load_spec(None, {**created, "DETECTOR_DISPLAYS": '{"kind": "displays", "subscriptions": []}'})
    assert "m0del-pw" not in str(caught.value)


@pytest.mark.parametrize(("environ", "message"), [
    ({}, "no pod spec"),
    ({"DETECTOR_SUBSCRIPTION_SPEC": "{}", "DETECTOR_POD_NAME": "x", "DETECTOR_BROKER_URL": "ws://b"},
     "DETECTOR_STREAM_URL"),
    ({"DETECTOR_POD_SPEC": json.dumps({**POD.model_dump(mode="json"), "name": "Not_DNS"})}, "invalid pod spec: name"),
])
def test_missing_or_bad_spec_is_explained_without_secrets(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        load_spec(None, environ)
    assert "s3cret" not in str(caught.value)


def test_an_empty_secret_reference_is_refused() -> None:
    with pytest.raises(ValidationError):
        spec_from_pod(POD.model_copy(update={"stream": StreamSpec(url=URL, kind="rtsp")}),
                      SecretKeyRef(name="", key="url"))


MODEL_WITH_PASSWORD = "https://deploy:m0del-pw@m.example/b.mpta?token=t0k3n"


def test_a_model_url_with_credentials_is_masked_in_the_resource_and_restored_from_the_secret() -> None:
    first = POD.subscriptions[0].model_copy(update={"model_url": MODEL_WITH_PASSWORD})
    pod = POD.model_copy(update={"subscriptions": [first, POD.subscriptions[1]]})
    assert secret_model_urls(pod) == {"display-001;cam-001": MODEL_WITH_PASSWORD}
    assert secret_model_urls(POD) == {}, "plain URLs stay in the resource"
    spec = spec_from_pod(pod, SECRET)
    shown = json.dumps(resource(pod.name, "detectors", spec, {}))
    assert "m0del-pw" not in shown and "t0k3n" not in shown
    assert spec.subscriptions[0].modelUrl == "https://deploy:***@m.example/b.mpta?token=***"
    jsonschema.validate(json.loads(shown), _schema())
    assert pod_from_spec(pod.name, spec, URL, pod.broker_url, secret_model_urls(pod)) == pod
    environ = {"DETECTOR_SUBSCRIPTION_SPEC": spec.model_dump_json(), "DETECTOR_STREAM_URL": URL,
               "DETECTOR_POD_NAME": pod.name, "DETECTOR_BROKER_URL": pod.broker_url,
               "DETECTOR_MODEL_URLS": json.dumps(secret_model_urls(pod))}
    assert load_spec(None, environ) == pod
    with pytest.raises(SpecError, match="DETECTOR_MODEL_URLS is not a JSON object of URLs") as caught:
        load_spec(None, {**environ, "DETECTOR_MODEL_URLS": json.dumps([MODEL_WITH_PASSWORD])})
    assert "m0del-pw" not in str(caught.value)


@pytest.mark.parametrize(("kind", "url"), [("rtsp", "http://cam/x"), ("rtsp", "/dev/video0"),
                                           ("snapshot", "rtsp://cam/x"), ("snapshot", "file:///etc/passwd"),
                                           ("rtsp", "rtsp://admin:pw@")])
def test_a_stream_url_must_fit_its_kind(kind: str, url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        StreamSpec(url=url, kind=kind)  # type: ignore[arg-type]
    assert "stream URL" in str(caught.value) and "pw" not in str(caught.value)
    assert StreamSpec(url="/videos/a.mp4", kind="file").url == "/videos/a.mp4", "local paths: file streams only"
