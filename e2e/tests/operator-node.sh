#!/usr/bin/env bash
# The operator's node killed in the middle of a planned switchover (kind), under
# the writer of e2e/switchover-lib.sh, on a PgCluster of 3 instances: another
# operator must take over (the relevo-operator Lease, a 10 s toleration of a
# lost node) and complete the switchover with nothing lost.
# NOT in the default e2e list: it still fails about one run in three. Run it with
# `e2e/run-e2e.sh operator-node`. After the fixes 911461a (a slow instance stayed
# unanswered under the probe's short bound) and 435e829 (a standby that had
# reconnected to the fenced old primary kept the move before the fault in
# Rebuilding), it passed 4 runs of 6 on 2026-12-03; each pass: killed in phase
# Fencing, Completed in 49-53 s, 0 rows lost. The failure in the CI run of 48af556
# is the old one: Failed "old primary demo-1 was not fenced within 30s; could not
# unfence demo-1: restore it by hand" (the new operator never saw demo-1 fenced).
source "$(dirname "$0")/../lib.sh"
if [[ $RELEVO_CLUSTER != kind ]]; then
  say "operator-node: needs the kind cluster (RELEVO_CLUSTER=kind); skipped"
  summary operator-node; exit
fi
source "$E2E_DIR/faults.sh"
source "$E2E_DIR/switchover-lib.sh"
so_init relevo-e2e-operator-node 3 || { summary operator-node; exit 1; }
trap 'node_recover_all; operator_prefers ""; so_cleanup' EXIT
so_allow_loss=0
ready_for_fault
op_node=$(k get nodes -o name | sed 's|node/||' | grep -vxF -e "$KIND_CONTROL_PLANE" -e "$(so_node)" | head -1)
operator_prefers "$op_node"
if [[ $(operator_node) == "$op_node" ]]; then
  pass "the operator runs on $op_node"
else
  fail "the operator runs on $(operator_node), not $op_node"
fi
old_operator=$(live_operator | awk '{print $1}')
kill_operator_node_midway() {
  local target phase= i watch_pid
  target=$(instance_on "$KIND_CONTROL_PLANE")
  planned ha-operator-node "$target"
  timeout 60 "$KUBECTL" -n "$so_ns" get switchovers.relevo.dev ha-operator-node -w \
    -o jsonpath='{.status.phase}{"\n"}' >"$SO_WORK/phases" 2>&1 & watch_pid=$!
  for ((i = 0; i < 600 && ${#phase} == 0; i++)); do
    phase=$(grep -m1 -vxE 'Pending|' "$SO_WORK/phases") || sleep 0.05
  done
  node_kill "$op_node"
  kill "$watch_pid" 2>/dev/null || true
  [[ $phase =~ ^(Fencing|CatchingUp|Promoting|Rebuilding)$ ]] \
    && pass "the operator's node $op_node killed with the switchover in phase $phase" \
    || fail "the operator's node killed with the switchover in phase '${phase:-none}', not in the middle"
}
run_scenario "ha: the operator's node killed during a planned switchover" kill_operator_node_midway
new_operator=$(live_operator | awk '{print $1}')
if [[ -n $new_operator && $new_operator != "$old_operator" ]]; then
  pass "a new operator ($new_operator on $(operator_node)) completed the switchover"
else
  fail "the switchover was not completed by a new operator (running: '${new_operator}', killed: $old_operator)"
fi
node_restart "$op_node"
so_recovered_at=$(now)
if wait_for "2 standbys streaming" 120 so_standbys_streaming 2; then
  pass "after $op_node returned, both standbys stream ($(awk -v s="$so_recovered_at" -v e="$(now)" 'BEGIN {printf "%.2f", e - s}')s)"
else
  fail "after $op_node returned, not both standbys stream"
fi
k -n "$so_ns" get switchovers.relevo.dev >&2
summary operator-node
