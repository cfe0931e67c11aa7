#!/usr/bin/env bash
# Set up analogsam on a fresh machine and run it:
#   ./dev.sh run     virtual environment + packages + Fashion-MNIST, then the default study
#   ./dev.sh test    virtual environment + packages, then the test suite
#   ./dev.sh setup   only the set-up
# Needs Python >= 3.10 with venv (python3 -m venv). Re-running skips what is already done.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
FASHION_MNIST=/usr/share/datasets/fashion-mnist

setup_python() {
  local stamp="$VENV/.analogsam-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  echo "==> creating $VENV and installing analogsam with torch 2.12.1 and aihwkit 1.1.0 (a few minutes, ~5 GB)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
  touch "$stamp"
}

setup_data() {
  # Fashion-MNIST comes from Debian's dataset-fashion-mnist package: no download at run time.
  if [ -f "$FASHION_MNIST/t10k-labels-idx1-ubyte.gz" ] || [ -n "${ANALOGSAM_DATA:-}" ]; then return; fi
  if ! command -v apt-get >/dev/null; then
    echo "note: no apt-get here; put the Fashion-MNIST IDX files in a folder and set ANALOGSAM_DATA to it" >&2
    return
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing Debian's dataset-fashion-mnist (into $FASHION_MNIST)"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
}

case "${1:-}" in
  setup) setup_python; setup_data ;;
  run) setup_python; setup_data; shift; exec "$VENV/bin/analogsam" run "$@" ;;
  test) setup_python; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  *) echo "usage: ./dev.sh run|test|setup [arguments for analogsam run / pytest]" >&2; exit 2 ;;
esac
