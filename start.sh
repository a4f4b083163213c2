#!/usr/bin/env bash
# README's first command: set up .venv (idempotent) and start the embedded worker.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
export YOLO_OFFLINE=1
# Until the broker lands (Step 3), "the worker" is the pipeline runner on the bundled demo video,
# writing to the local Redis and PostgreSQL exactly as a camera pod will.
exec .venv/bin/detector pipeline run --mpta "${DETECTOR_MPTA:-tests/fixtures/gas_station.mpta}" \
  --source "${DETECTOR_SOURCE:-tests/fixtures/media/cars.mp4}" --subscription "${DETECTOR_SUBSCRIPTION:-demo-display;demo-cam}" "$@"
