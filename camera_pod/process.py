"""One camera pod process (``python -m camera_pod``): run it from a PodSpec (see spec_source: a file or the
environment).

The spec travels in the environment, not the command line: stream URLs carry credentials and the
command line of every process is visible to every user of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import traceback
from typing import NoReturn

import cv2
import uvicorn

from camera_pod import allocator
from camera_pod.http_api import build_app
from camera_pod.runtime import CameraPod
from camera_pod.settings import PodSettings
from camera_pod.spec_source import SpecError, load_spec
from detector.contract.pods import PodSpec
from detector.kit import logs

EXIT_WITH_PARENT_ENV = "DETECTOR_EXIT_WITH_PARENT"


async def _exit_with_parent(stop: asyncio.Event, parent: int) -> None:
    """Local runner: a pod must not outlive its broker, even one killed with SIGKILL.

    The broker names its PID: read here, after seconds of imports, ``os.getppid()`` could already be
    init's, and a pod waiting for that to change would wait forever.
    """
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    stop.set()


def _parent_to_follow(value: str | None) -> int | None:
    if not value:
        return None
    return os.getppid() if value == "1" else int(value)  # "1": whoever started us (older brokers)


async def serve(spec: PodSpec, settings: PodSettings, host: str, port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    pod = CameraPod(spec, settings, http_port=listener.getsockname()[1])
    app = build_app(pod.latest_frame, pod.health, pod.metrics.registry)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # we own SIGTERM
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = _parent_to_follow(os.environ.get(EXIT_WITH_PARENT_ENV))
    if parent is not None:
        asyncio.create_task(_exit_with_parent(stop, parent))  # noqa: RUF006 - lives as long as the loop
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    running = asyncio.create_task(pod.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    running.cancel()
    stopping.cancel()
    outcomes = await asyncio.gather(serving, running, return_exceptions=True)
    await pod.close()
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camera_pod", description=__doc__)
    parser.add_argument("--spec", help="PodSpec JSON file (default: env DETECTOR_POD_SPEC)")
    parser.add_argument("--host", default=os.environ.get("DETECTOR_POD_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DETECTOR_POD_PORT", "0")))
    args = parser.parse_args(argv)
    allocator.limit_arenas()  # before any of the pod's threads start
    # One camera per process, many side by side: OpenCV's pool would wake its threads for every small resize and
    # leave them spin-waiting (sched_yield), about a tenth of a 640x480 camera's CPU, for no gain at this size.
    cv2.setNumThreads(1)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    settings = PodSettings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        spec = load_spec(args.spec, os.environ)
    except SpecError as exc:
        raise SystemExit(f"camera_pod: {exc}") from None
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(spec, settings, args.host, args.port))
    finally:
        # Not asyncio.run: it would wait for the executor's threads (see exit_now); close() does not.
        loop.close()
    return 0


def exit_now(code: int) -> NoReturn:
    """Leave without waiting for worker threads: a model download or ONNX export still running in one
    (cancelled tasks do not stop threads) would hold a stopping pod for as long as it takes, and a pod whose
    broker died must go at once. Everything durable is closed by then (``CameraPod.close``); exports and
    extractions write to a temporary name and rename, so an interrupted one leaves nothing half-written."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)



def run_process() -> NoReturn:
    """The process's whole life: ``main``, then ``exit_now`` with its status."""
    try:
        status = main()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    exit_now(status)
