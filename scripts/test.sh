#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests start `python -m orchestrator` hundreds of times: let Python keep the bytecode
# it compiles (some environments set PYTHONDONTWRITEBYTECODE), or every one of those
# processes, and every pytest worker, compiles every module again.
unset PYTHONDONTWRITEBYTECODE
ruff check orchestrator tests
mypy
python3 .ci/floors.py  # imports only downward, no circle (README "Layout")
# ansible-lint needs half a minute of CPU and nothing the tests make: it runs beside them,
# and its failure fails the script all the same (its output is shown after the tests').
lint_log=$(mktemp)
trap 'rm -f "$lint_log"' EXIT
ansible-lint --offline --nocolor -q playbooks rollback >"$lint_log" 2>&1 &
lint=$!
# Three workers on two cores: a drill waits (bakes, soaks, health windows) part of its
# time and the tests of real services most of theirs, so with two workers the cores were
# idle 29% of the run (vmstat), with three 18% (19:38 -> 13:52 on this machine). The
# drills' time-scaled windows hold with three at once. Tests that share a fixed resource
# (the network namespaces, the execution-job token in the process table, a sleep's
# command line) or one expensive fixture are pinned to one worker with xdist_group, or
# made their own.
status=0
python3 -m pytest -q -n "${MIGRATE_TEST_WORKERS:-3}" --dist loadgroup "$@" || status=$?
if ! wait "$lint"; then
  echo "ansible-lint failed:" >&2
  cat "$lint_log" >&2
  status=1
fi
exit "$status"
