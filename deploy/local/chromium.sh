#!/usr/bin/env bash
# Headless Chromium for the HTML report's browser test (tests/service/test_report.py).
# Idempotent: does nothing when a chromium binary is already on PATH. Debian's package; needs root
# (or sudo) and apt. Called by deploy/local/up.sh; safe to run by hand.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "chromium.sh: need root or sudo to install chromium" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing chromium (Debian package) for the report's browser test" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
