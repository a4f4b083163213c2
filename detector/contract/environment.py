"""Environment variables that hand a camera pod its work (the local runner and the operator both set them)."""

POD_SPEC_ENV = "DETECTOR_POD_SPEC"  # local runner: the whole PodSpec as JSON (a private child environment)
SUBSCRIPTION_SPEC_ENV = "DETECTOR_SUBSCRIPTION_SPEC"  # cluster: the CameraSubscription spec as JSON
STREAM_URL_ENV = "DETECTOR_STREAM_URL"  # cluster: from the Secret the resource references
MODEL_URLS_ENV = "DETECTOR_MODEL_URLS"  # cluster: model URLs with credentials, {identifier: url} JSON, same Secret
# cluster: the pod's current display subscriptions (a ``Displays`` message as JSON), same Secret. The kubelet
# reads it at every container start, so a pod restarted while its broker is away starts with the current
# displays, not with those of the pod's creation (the resource spec in its environment is not updated).
DISPLAYS_ENV = "DETECTOR_DISPLAYS"
POD_NAME_ENV = "DETECTOR_POD_NAME"
BROKER_URL_ENV = "DETECTOR_BROKER_URL"
AUTH_TOKEN_ENV = "DETECTOR_AUTH_TOKEN"  # the shared token pods present to the broker (cluster: from a Secret)
POD_HTTP_PORT = 8080  # cluster: camera pods serve /image, /healthz, /metrics here
