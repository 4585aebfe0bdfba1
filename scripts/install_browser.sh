#!/usr/bin/env bash
# Install what the explorer's end-to-end browser test needs, idempotently:
#   - Debian's headless Chromium (`chromium` package, /usr/bin/chromium), never a browser
#     download by `playwright install`;
#   - the `playwright` Python package (its API drives that Chromium) and `streamlit`,
#     into the project's .venv, with torch pinned on the same command line.
# Usage: scripts/install_browser.sh      (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0

if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  echo "installed $(/usr/bin/chromium --version)"
fi

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
if "$PY" -c "import playwright, streamlit" 2>/dev/null; then
  echo "playwright and streamlit already installed"
else
  "$PY" -m pip install --quiet "torch==$TORCH_VERSION" "playwright>=1.40" "streamlit>=1.67,<2"
  echo "installed playwright and streamlit"
fi
