#!/usr/bin/env bash
# Set up (with test dependencies) and run the whole default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/install_browser.sh   # Debian's Chromium for the explorer's browser test
exec .venv/bin/python -m pytest "$@"
