#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check orchestrator tests
mypy
ansible-lint --offline --nocolor -q playbooks rollback
python3 -m pytest -q "$@"
