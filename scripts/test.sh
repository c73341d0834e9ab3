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
# Two workers, one a core. Three (MIGRATE_TEST_WORKERS=3) take 14-15 min instead of 18-20
# here, since drills and the tests of real services wait part of their time (cores idle
# 29% with two, 18% with three), but under that load one test still races:
# test_a_watcher_whose_session_is_killed_while_a_fire_is_pending_stands_by[2] (a paused
# standby's lock try can land after the test's kill). Tests that share a fixed resource
# (the network namespaces, the execution-job token in the process table) or one
# expensive fixture are pinned to one worker with xdist_group; a process a test looks for
# or kills is its own.
status=0
python3 -m pytest -q -n "${MIGRATE_TEST_WORKERS:-2}" --dist loadgroup "$@" || status=$?
if ! wait "$lint"; then
  echo "ansible-lint failed:" >&2
  cat "$lint_log" >&2
  status=1
fi
exit "$status"
