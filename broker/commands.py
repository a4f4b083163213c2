"""``detector run``: the broker, with camera pods as local processes or as CameraSubscriptions in a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from broker.app import build_app
from broker.runners import Runner
from broker.runners.local import LocalRunner
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.environment import AUTH_TOKEN_ENV

# On shutdown, HTTP requests in flight get this long, then are cut: an open console's event stream never ends.
SHUTDOWN_GRACE_S = 3


def run_command(args: argparse.Namespace) -> int:
    settings = BrokerSettings.load(
        Path(args.config) if args.config else None, host=args.host, port=args.port,
        heartbeat_interval_sec=args.heartbeat_interval_sec, target_fps=args.target_fps,
        reconnect_interval_sec=args.reconnect_interval_sec, max_retries=args.max_retries,
        max_streams=args.max_streams, poll_interval_ms=args.poll_interval_ms, event_mode=args.event_mode,
        runner=args.runner, namespace=args.namespace)
    broker = Broker(settings, build_runner(settings))
    uvicorn.run(build_app(broker), host=settings.host, port=settings.port, log_config=None, access_log=False,
                ws_max_size=16 << 20, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    return 0


def build_runner(settings: BrokerSettings) -> Runner:
    if settings.runner == "kubernetes":
        from broker.runners.kubernetes import KubernetesRunner  # the client is slow to import; local runs skip it

        return KubernetesRunner.from_environment(settings)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    return LocalRunner(environment={AUTH_TOKEN_ENV: token} if token else {},
                       state_file=settings.cache_dir / "broker" / "pods.json")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run", help="start the broker: camera pods as local processes (default) or, with --runner kubernetes, "
                    "as CameraSubscriptions the operator runs (what the Helm chart starts)")
    run.add_argument("--host", help="listen address (env DETECTOR_HOST, default 0.0.0.0)")
    run.add_argument("--port", type=int, help="listen port (env DETECTOR_PORT, default 8000)")
    run.add_argument("--config", help="JSON file with any of the settings below")
    run.add_argument("--runner", choices=("local", "kubernetes"),
                     help="local: child processes (env DETECTOR_RUNNER, default local); kubernetes: one "
                          "CameraSubscription per camera stream, in-cluster credentials or the current kubeconfig")
    run.add_argument("--namespace", help="kubernetes runner: namespace of the CameraSubscriptions "
                                         "(env DETECTOR_NAMESPACE, default default)")
    run.add_argument("--heartbeat-interval-sec", type=float, dest="heartbeat_interval_sec")
    run.add_argument("--target-fps", type=float, dest="target_fps")
    run.add_argument("--reconnect-interval-sec", type=float, dest="reconnect_interval_sec")
    run.add_argument("--max-retries", type=int, dest="max_retries", help="-1 = forever")
    run.add_argument("--max-streams", type=int, dest="max_streams")
    run.add_argument("--poll-interval-ms", type=int, dest="poll_interval_ms")
    run.add_argument("--event-mode", choices=("visit", "frame"), dest="event_mode",
                     help="visit: one imageDetection per vehicle visit (default); frame: the original per-frame")
    run.set_defaults(handler=run_command)
