#!/usr/bin/env bash
# Set up lookingglass on a fresh machine: a .venv in the project root, PyTorch 2.13.0
# (the CPU build where there is no NVIDIA GPU), the package and its dependencies.
#   scripts/setup.sh          the library, CLI, plots and explorer
#   scripts/setup.sh --dev    also the test and benchmark dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0

[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet)

if .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "torch $TORCH_VERSION already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "${PIP[@]}" "torch==$TORCH_VERSION"                      # CUDA build from PyPI
else
  # No GPU: a CPU build. A local wheel (pip's find-links) first, without touching an
  # index; otherwise PyTorch's CPU wheel index (override with TORCH_CPU_INDEX).
  "${PIP[@]}" --no-index "torch==$TORCH_VERSION" 2>/dev/null \
    || "${PIP[@]}" "torch==$TORCH_VERSION" --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
fi

extras="[explorer]"
[ "${1:-}" = "--dev" ] && extras="[dev,explorer]"
# torch is pinned on the same command line so no dependency can swap in another build.
"${PIP[@]}" "torch==$TORCH_VERSION" -e ".$extras"
echo "lookingglass is set up in $(pwd)/.venv"
