#!/usr/bin/env bash
# Debian packages the tests need: a real RTSP server (GStreamer's gst-rtsp-server with python3-gi), and
# Go with sprig and go-yaml for tools/helm_render, which renders the Helm chart offline (tests/chart),
# Chromium (+ driver) for the console's real-browser tests, and Prometheus for promtool (alert rules).
# Idempotent: installs only what is missing.
set -euo pipefail
PACKAGES=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
          golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
          chromium chromium-driver prometheus)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
