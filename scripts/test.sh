#!/usr/bin/env bash
# Set up (with test dependencies) and run the whole default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
