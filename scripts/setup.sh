#!/usr/bin/env bash
# Set up a fresh machine for robens: a virtual environment with the pinned CPU torch (installed
# first, so nothing pulls CUDA wheels), the package with its test and sweep (Ray) extras, and
# the Debian Fashion-MNIST package where apt is available. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ROBENS_VENV:-.venv}
EXTRAS=${ROBENS_EXTRAS:-test,sweep}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null \
      || echo "warning: could not install dataset-fashion-mnist; use 'robens data download fashion-mnist'" >&2
  fi
fi
echo "robens is set up in $VENV ($("$VENV/bin/robens" --version))"
