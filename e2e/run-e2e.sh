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
  if [[ $RELEVO_CLUSTER == kind ]]; then tests+=(faults ha operator-node); else tests+=(partition); fi
  # Last: it swaps the cluster-wide install for the namespaced one, and back.
  tests+=(namespaced)
fi
for test in "${tests[@]}"; do
  say "=== $test"
  "$E2E_DIR/tests/$test.sh" || failed+=("$test")
done
# What the operator used of its ClusterRole in these stories, from the API
# server's audit (kind only). A report for now, not a check: see e2e/rbac-audit.py.
if [[ $RELEVO_CLUSTER == kind ]]; then
  say "=== rbac audit (report)"
  source "$E2E_DIR/kind/lib.sh"
  podman exec "$KIND_CLUSTER-control-plane" sh -c 'cat $(ls -tr /var/log/kubernetes/audit/audit*.log 2>/dev/null) 2>/dev/null' \
    | /usr/bin/python3 "$E2E_DIR/rbac-audit.py" "$REPO_ROOT/manifests/base/rbac.yaml" >&2 || true
fi
if ((${#failed[@]})); then
  say "failed: ${failed[*]}"
  say "operator log tail:"; operator_logs --tail=40 >&2 || true
  exit 1
fi
