#!/usr/bin/env bash
# README's second command: install what is needed (idempotent), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/system-packages.sh
scripts/install.sh
export YOLO_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
