#!/usr/bin/env bash
# Create .venv/ and install the project with pinned torch. Idempotent and fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP="$VENV/.install-stamp"
# Re-install only when the dependency declaration or this script changed.
WANT=$(cat pyproject.toml setup.py scripts/install.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/detector" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -P -m venv "$VENV"
# This machine's pip config names an optional local index that may be absent; hide only that warning.
pip_quiet() {
  "$VENV/bin/python" -P -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
echo "installing into $VENV (torch 2.14.1 / torchvision 0.29.1 come from this machine's disk)..." >&2
pip_quiet install --upgrade pip setuptools wheel
pip_quiet install "torch==2.14.1" "torchvision==0.29.1"
pip_quiet install -e ".[test]"

# Ultralytics depends on the GUI build of OpenCV; a server wants the headless one (no X11/GL libs).
# Both install into the same cv2/ folder, so remove the GUI build and lay the headless one back down.
if "$VENV/bin/python" -P -m pip show -q opencv-python >/dev/null 2>&1; then
  pip_quiet uninstall -y opencv-python
  pip_quiet install --force-reinstall --no-deps opencv-python-headless
fi

"$VENV/bin/python" -P -c "import torch, torchvision, cv2, ultralytics, av, psycopg, redis, camera_pod" \
  || { echo "install check failed" >&2; exit 1; }
echo "$WANT" > "$STAMP"
