#!/usr/bin/env bash
# README's second command: install what is needed (idempotent), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/system-packages.sh
scripts/install.sh
export YOLO_OFFLINE=1
# -P: the repository root holds a package named `operator`; it must never shadow the stdlib one.
exec .venv/bin/python -P -m pytest "$@"
