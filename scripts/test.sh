#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check orchestrator tests
mypy
ansible-lint --offline --nocolor -q playbooks rollback
# two workers (the machine has 2 cores); tests that share a fixed resource (the network
# namespaces) are pinned to one worker with xdist_group
python3 -m pytest -q -n 2 --dist loadgroup "$@"
