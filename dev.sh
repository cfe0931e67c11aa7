#!/usr/bin/env bash
# Set up analogsam on a fresh machine and run it:
#   ./dev.sh run     virtual environment + packages + Fashion-MNIST, then the default study
#   ./dev.sh test    virtual environment + packages, then the test suite
#   ./dev.sh setup   only the set-up
#   ./dev.sh notebooks [PREFIX...]   execute the notebooks (all, or those whose names start so) at full size
#   ./dev.sh docs    the API reference, into docs/_build/html
# Needs CPython 3.10-3.13 with venv. The set-up takes, in this order, the first supported one of:
# $PYTHON, python3, python3.13 / 3.12 / 3.11 / 3.10 on PATH, then pyenv's versions; it says which
# (`./dev.sh python [3.X]` prints it, or the interpreter of that version).
# pyproject.toml pins the aihwkit + torch pair that works on that Python (README: "Dependencies, and why").
# Re-running skips what is already done.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
FASHION_MNIST=/usr/share/datasets/fashion-mnist
SUPPORTED="3.10 3.11 3.12 3.13"

minor_of() {  # "3.11" for a Python interpreter that runs, else nothing
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

is_supported() {
  local minor
  minor=$(minor_of "$1")
  [ -n "$minor" ] && [[ " $SUPPORTED " == *" $minor "* ]]
}

find_python() {  # [3.X]: the interpreter the set-up uses (of that version only, if given)
  local want=${1:-} candidate found
  local versions=${want:-3.13 3.12 3.11 3.10}
  if [ -n "$want" ] && [[ " $SUPPORTED " != *" $want "* ]]; then
    echo "error: Python $want is not supported: analogsam supports CPython $SUPPORTED" >&2
    return 1
  fi
  if [ -n "${PYTHON:-}" ] && [ -z "$want" ]; then
    if is_supported "$PYTHON"; then echo "$PYTHON"; return; fi
    local found_minor
    found_minor=$(minor_of "$PYTHON")
    echo "error: PYTHON=$PYTHON is ${found_minor:+Python $found_minor, }not one of the supported CPython $SUPPORTED: point PYTHON to one of those, or unset it" >&2
    return 1
  fi
  for candidate in python3 $(printf 'python%s ' $versions); do
    if command -v "$candidate" >/dev/null && is_supported "$candidate" \
        && { [ -z "$want" ] || [ "$(minor_of "$candidate")" = "$want" ]; }; then
      "$candidate" -c 'import sys; print(sys.executable)'; return  # (through a pyenv shim: the real one)
    fi
  done
  if command -v pyenv >/dev/null; then
    local root
    root=$(pyenv root)
    for candidate in $versions; do
      # the newest installed patch release of that minor version
      found=$(ls -d "$root/versions/$candidate".* 2>/dev/null | sort -V | tail -n 1 || true)
      if [ -n "$found" ] && is_supported "$found/bin/python3"; then echo "$found/bin/python3"; return; fi
    done
  fi
  echo "error: no supported Python${want:+ $want} found: analogsam needs CPython ${want:-$SUPPORTED} (tried \$PYTHON, python3, python3.13..python3.10 on PATH, pyenv's versions); install one, or set PYTHON=/path/to/python3.X" >&2
  return 1
}

setup_python() {
  local stamp="$VENV/.analogsam-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  local python
  python=$(find_python)
  echo "==> using Python $(minor_of "$python") ($python); creating $VENV and installing analogsam with the aihwkit + torch pair pinned for it (a few minutes, ~5 GB)"
  "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[dev,ray]'  # ray: the optional extra the Ray sweep test needs
  "$VENV/bin/python" -c 'import sys, torch, aihwkit; print(f"==> {sys.executable}: Python {sys.version.split()[0]}, torch {torch.__version__}, aihwkit {aihwkit.__version__}")'
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

run_notebooks() {  # [PREFIX...]: each notebook's .py source synced into its .ipynb, then executed there by papermill
  local py stem prefix start ran=0
  for py in notebooks/[0-9]*.py; do
    stem=$(basename "$py" .py)
    if [ $# -gt 0 ]; then
      for prefix in "$@"; do [[ $stem == "$prefix"* ]] && break; prefix=""; done
      [ -n "$prefix" ] || continue
    fi
    start=$SECONDS
    "$VENV/bin/jupytext" --quiet --sync "$py"
    # at its own (full-size) parameters, in notebooks/ (its relative paths start there); outputs saved in place
    "$VENV/bin/papermill" --cwd notebooks --no-progress-bar "notebooks/$stem.ipynb" "notebooks/$stem.ipynb"
    "$VENV/bin/jupytext" --quiet --sync "$py"  # the pair's timestamps in order (the cells are unchanged)
    echo "==> executed notebooks/$stem.ipynb in $((SECONDS - start)) s"
    ran=$((ran + 1))
  done
  if [ "$ran" -eq 0 ]; then
    echo "error: no notebook in notebooks/ starts with: $*; give a prefix such as 02, or none for all" >&2
    return 2
  fi
}

case "${1:-}" in
  setup) setup_python; setup_data ;;
  run) setup_python; setup_data; shift; exec "$VENV/bin/analogsam" run "$@" ;;
  test) setup_python; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  notebooks) setup_python; shift; run_notebooks "$@" ;;
  docs)  # docs/conf.py; the source folder is the repository root, so the README's links resolve as they are
    setup_python; shift
    "$VENV/bin/sphinx-build" -q -b html -c docs "$@" . docs/_build/html
    echo "==> docs/_build/html/index.html" ;;
  python) find_python "${2:-}" ;;
  *) echo "usage: ./dev.sh run|test|setup|notebooks|docs [arguments for analogsam run / pytest / sphinx-build] | python [3.X]" >&2; exit 2 ;;
esac
