"""The ``detector`` command: composes the subcommands of every part of the product."""

from __future__ import annotations

import argparse
import os
import sys

from broker import commands as broker_commands
from broker import protocol_check
from broker.settings import SettingsError
from camera_pod.commands import mpta_cli, pipeline_cli
from camera_pod.settings import PodSettings
from detector.kit import logs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Camera detection worker")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (env DETECTOR_LOG_LEVEL)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None, help="env DETECTOR_LOG_FORMAT")
    subparsers = parser.add_subparsers(dest="command", required=True)
    mpta_cli.add_parser(subparsers)
    pipeline_cli.add_parser(subparsers)
    broker_commands.add_parser(subparsers)
    protocol_check.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    settings = PodSettings()
    logs.configure(args.log_level or settings.log_level, args.log_format or settings.log_format)
    try:
        return int(args.handler(args))
    except SettingsError as exc:  # a bad config file, variable or flag: say which, without a traceback
        print(f"detector {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
