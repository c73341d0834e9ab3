#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check orchestrator tests
mypy
python3 -m pytest -q "$@"
