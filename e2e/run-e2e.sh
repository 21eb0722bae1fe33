#!/usr/bin/env bash
# `make e2e`: installs relevo on the running cluster (the test bed unless
# KUBECONFIG says otherwise) and runs each story in e2e/tests, in order.
# `e2e/run-e2e.sh NAME...` runs the named stories instead, e.g. `switchover`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
"$E2E_DIR/install.sh"
failed=()
tests=("$@")
if ((${#tests[@]} == 0)); then
  tests=(bad-input pgcluster switchover pooler backups schedule)
  # Node faults need more than one node; pod partitions need the local bed's netns.
  # tests/operator-node.sh is not in the list: it still fails about one run in three.
  if [[ $RELEVO_CLUSTER == kind ]]; then tests+=(faults ha); else tests+=(partition); fi
fi
for test in "${tests[@]}"; do
  say "=== $test"
  "$E2E_DIR/tests/$test.sh" || failed+=("$test")
done
if ((${#failed[@]})); then
  say "failed: ${failed[*]}"
  say "operator log tail:"; k -n relevo-system logs deploy/relevo-operator --tail=40 >&2 || true
  exit 1
fi
