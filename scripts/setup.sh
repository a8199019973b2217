#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for jaxcnn: a virtual env in .venv with
# the package and its test dependencies, and the offline Fashion-MNIST mirror
# (Debian's dataset-fashion-mnist) when apt is available. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "jaxcnn needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)." >&2
  exit 1
fi

MIRROR=/usr/share/datasets/fashion-mnist
if [ ! -f "$MIRROR/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
  if { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    echo "Installing Debian's dataset-fashion-mnist (offline Fashion-MNIST)..."
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null || \
      echo "dataset-fashion-mnist not installed; TFDS will download Fashion-MNIST instead."
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
echo "jaxcnn is set up in $(pwd)/.venv"
