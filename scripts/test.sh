#!/usr/bin/env bash
# Installs mesm with its test extras, checks lint/format, and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ruff format --check .
ruff check .
python -m pytest -q -p no:cacheprovider --durations=15 "$@"
