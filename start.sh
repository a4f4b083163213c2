#!/usr/bin/env bash
# README's first command: set up .venv/ (idempotent) and start the embedded worker:
# the broker on ws://0.0.0.0:8000/ with camera pods as local processes.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
export YOLO_OFFLINE=1
exec .venv/bin/detector run "$@"
